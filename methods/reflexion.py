"""Reflexion: retry with feedback until the answer is right, and what that loop can really do.

Paper: Shinn et al. (NeurIPS 2023), "Reflexion: Language Agents with Verbal Reinforcement
Learning" (arXiv 2303.11366). An actor tries a task; an evaluator scores the attempt; a
self-reflection step turns the failure into text kept in a small memory; the actor tries again
with that memory in its prompt. No weight changes between trials: the "learning" is in context.
On HumanEval it reports 80% -> 91% pass@1; the curve of solved tasks rises for a trial or two and
then stays flat.

The loop here, per test problem (memory = the last attempt and its feedback, Omega = 1):

    y_0 = actor(x)                                            trial 0: the base, greedy
    for t = 1..T:
        if stop(y_{t-1}): keep y_{t-1}
        y_t = repairer(x + y_{t-1} + feedback(y_{t-1}))       one call per trial

Four arms, compared at equal model calls (t + 1 after trial t):
  oracle_feedback  stop when the HIDDEN tests pass (the oracle; as in the paper's HotPotQA
                   runs); the feedback put back in the prompt is about the visible examples only
                   (task.feedback), never a hidden test.
  resample         oracle stop, but each trial is a fresh independent sample of the base at
                   temperature T: the share solved after trial t is pass@(t+1), computed with the
                   unbiased estimator from the same n samples per problem. This is the control
                   that makes the curve honest: oracle_feedback - resample is what feedback adds.
  self_check       Reflexion proper: stop when the VISIBLE examples pass (task.visible_pass, the
                   check an agent can run on its own), submit that attempt. Its false-positive
                   rate = P(hidden tests fail | visible examples pass) at the last trial.
  no_feedback      always repair, with "?" where the feedback would be (no tests, no stop), for
                   the fixed number of rounds; the paper's Table 3 "reflection without tests".
Metric `solved` after trial t: the share of test problems whose submitted attempt passes the
hidden tests (for the oracle-stopped arms this is cumulative: a solved problem stays solved).
The `ceiling` rows put the plateau next to the base's own pass@n at large n, and `never_solved`
counts the problems that no arm solved at any trial and none of the n samples solved.

What replaces the paper's verbal reflection: a 0.8M-parameter model cannot write "my program
sorted the list but the examples want it reversed". The reflection is therefore the feedback
text itself, templated by the task ("example 2: got [3,1] expected [1,3]", or for arith "d2":
the second digit is wrong), and the model learns, inside this file, a repair format that reads it:

    code   "<examples>prog: " + "sort | take 2\\nexample 1: got [1,2] expected [9,8]  \\nprog: "
           -> "rev | take 2"      (the feedback line padded with spaces: see repair_prompt)
    arith  "123+45=" + "861;d2=" -> "861"  (compact: the arith base only has 32 positions)

Training data for the repairer come from the base model's own samples on training problems
(greedy + a few at temperature T). For each problem where one of them passes the hidden tests,
each failing attempt gives (repair prompt with its feedback -> that passing attempt), and every
attempt gives (repair prompt with "?" -> itself if it passes, else the passing attempt).
Loss: masked cross-entropy on the new attempt (methods/sft.py's `finetune`). The oracle labels
TRAINING samples only; at test time only the arms' own stop rules see it.

Simplified relative to the paper: no self-generated unit tests (the visible examples in the
prompt play that role, as HumanEval's doctests do); one memory slot; the actor and the
self-reflection model are one small repairer; repairs are sampled at temperature T (greedy
repairs of the same prompt would repeat the same attempt forever).

Run:
  python methods/reflexion.py                          # code, seed 0 (a few minutes on a CPU)
  python methods/reflexion.py --seeds 0,1,2            # what results/reflexion-code.md holds
  python methods/reflexion.py --task arith
  python methods/reflexion.py --quick                  # tiny budget, same path (for tests)

What you should see: the paper's shape is a fast rise for a trial or two and then a plateau,
which cannot exceed the base's own pass@n ceiling (the loop only finds what the model can
produce). Read every curve against resample at the same calls (is the feedback worth more than
a fresh sample?); self_check pays for its lack of an oracle with false positives; no_feedback
has no stop rule and can only keep or break what it has. See tutorials/02_reflexion.md.
"""
import copy
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

import common  # noqa: E402
from sample import generate, pass_at_k  # noqa: E402
from sft import base_model, finetune  # noqa: E402
from verify import TASKS  # noqa: E402

ARMS = ("oracle_feedback", "resample", "self_check", "no_feedback")
NO_FEEDBACK = "?"


# ---------------------------------------------------------------------------------------------
# The repair format

def feedback_text(task, problem, completion):
    """What goes back into the prompt after a failed attempt.
    code: task.feedback, which talks about the VISIBLE examples only.
    arith: the oracle's verdict, compacted to fit 32 positions ("digit 2 is wrong" -> "d2")."""
    if task.name == "code":
        return task.feedback(problem, completion)
    fb = task.check(problem, completion).feedback
    return fb.replace("digit ", "d").replace(" is wrong", "")


def repair_prompt(task, prompt, previous, feedback, limit, bucket=16):
    """Prompt + memory (the last attempt and its feedback) + the cue to try again, at most
    `limit` tokens: the memory is cut if it would not fit. Non-ASCII bytes of a garbled attempt
    are dropped first, so that one character is one token.
    code only: the feedback line is padded with spaces to make the whole prompt a multiple of
    `bucket` characters. sample.generate batches prompts of EXACTLY equal length together, and
    code prompts have a hundred different lengths; the padding cuts that to a dozen batches and
    the run's time by several times. The repairer is trained on the same padded format."""
    if task.name == "code":
        memory, cue = f"{previous}\n{feedback}", "prog: "
        memory = memory.encode("ascii", "ignore").decode()
        pad = -(len(prompt) + len(memory) + 1 + len(cue)) % bucket
        memory += " " * pad + "\n"
    else:
        memory, cue = f"{previous};{feedback}", "="
        memory = memory.encode("ascii", "ignore").decode()
    room = max(0, limit - len(prompt) - len(cue))
    return prompt + memory[:room] + cue


def prompt_limit(model, task):
    """Longest repair prompt: the block minus room for an answer (half the task's budget)."""
    return model.config.block_size - (task.max_new_tokens // 2 + 2)


def build_repair_pairs(model, task, problems, n_samples, temperature, seed, use_reference=False):
    """The repairer's training data, from the model's own attempts on training problems.
    Returns (pairs, share of attempts that pass the hidden tests). Problems the model never
    solves give nothing, unless use_reference (only for --quick, whose untrained tiny base
    solves nothing): then the reference answer stands in."""
    prompts = [p.prompt for p in problems]
    greedy = generate(model, prompts, n=1, max_new_tokens=task.max_new_tokens, seed=seed)
    sampled = generate(model, prompts, n=n_samples, max_new_tokens=task.max_new_tokens,
                       temperature=temperature, seed=seed)
    limit = prompt_limit(model, task)
    pairs, n_right, n_all = [], 0, 0
    for p, g, ss in zip(problems, greedy, sampled):
        attempts = g + ss
        right = [a for a in attempts if task.check(p, a).correct]
        n_right += len(right)
        n_all += len(attempts)
        if not right and use_reference:
            right = [p.answer]
        if not right:
            continue
        for a in attempts:
            ok = a in right
            if not ok:  # with feedback: only failing attempts are ever repaired
                fb = feedback_text(task, p, a)
                pairs.append((repair_prompt(task, p.prompt, a, fb, limit), right[0]))
            pairs.append((repair_prompt(task, p.prompt, a, NO_FEEDBACK, limit),
                          a if ok else right[0]))
    return pairs, n_right / max(1, n_all)


def repair(model, task, problems, attempts, feedbacks, temperature, seed):
    """One repair call per problem -> the new attempts."""
    limit = prompt_limit(model, task)
    prompts = [repair_prompt(task, p.prompt, a, fb, limit)
               for p, a, fb in zip(problems, attempts, feedbacks)]
    outs = generate(model, prompts, n=1, max_new_tokens=task.max_new_tokens,
                    temperature=temperature, seed=seed)
    return [o[0] for o in outs]


# ---------------------------------------------------------------------------------------------
# The arms. Each returns attempts[t][i] (problem i's submitted attempt after trial t).

def run_loop(repairer, task, problems, first, trials, temperature, seed, stop, with_feedback):
    """The Reflexion loop. stop(problem, attempt) -> bool decides which attempts are final;
    those are never revisited. with_feedback=False puts "?" where the feedback would be."""
    attempts = [list(first)]
    for t in range(1, trials + 1):
        current = list(attempts[-1])
        todo = [i for i, p in enumerate(problems) if not stop(p, current[i])]
        if todo:
            fbs = [feedback_text(task, problems[i], current[i]) if with_feedback else NO_FEEDBACK
                   for i in todo]
            new = repair(repairer, task, [problems[i] for i in todo], [current[i] for i in todo],
                         fbs, temperature, seed + t)
            for i, a in zip(todo, new):
                current[i] = a
        attempts.append(current)
    return attempts


def resample_curve(task, problems, samples, trials):
    """solved after trial t = mean over problems of pass@(t+1) from the same n samples."""
    n = len(samples[0])
    correct = [sum(task.check(p, s).correct for s in ss) for p, ss in zip(problems, samples)]
    return [float(np.mean([pass_at_k(n, c, t + 1) for c in correct])) for t in range(trials + 1)]


def false_positive_rate(task, problems, attempts):
    """P(hidden tests fail | visible examples pass) over the submitted attempts."""
    passed_visible = [(p, a) for p, a in zip(problems, attempts) if task.visible_pass(p, a)]
    if not passed_visible:
        return 0.0
    return float(np.mean([not task.check(p, a).correct for p, a in passed_visible]))


# ---------------------------------------------------------------------------------------------

def run_seed(args, task, test_problems, seed, device):
    common.seed_everything(seed)
    base = base_model(args.task, seed=seed, device=device, quick=args.quick)
    train = task.problems(args.train_problems, seed=1000 + seed, split="train")
    pairs, share_right = build_repair_pairs(base, task, train, args.train_samples,
                                            args.temperature, seed, use_reference=args.quick)
    if not pairs:
        raise SystemExit("error: the base model solved none of the training problems, "
                         "so there is no passing attempt to learn a repair from")
    repairer = copy.deepcopy(base)
    losses = finetune(repairer, pairs, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                      warmup=max(1, args.steps // 10), seed=seed, desc="repairer")
    print(f"seed {seed}: {len(pairs)} repair pairs ({share_right:.0%} of the model's own "
          f"training attempts pass); repairer loss {losses[0]:.3f} -> {np.mean(losses[-20:]):.3f}")

    prompts = [p.prompt for p in test_problems]
    first = [g[0] for g in generate(base, prompts, n=1, max_new_tokens=task.max_new_tokens,
                                    seed=seed)]
    hidden = lambda p, a: task.check(p, a).correct  # noqa: E731 -- the oracle's stop rule
    never = lambda p, a: False  # noqa: E731
    T, temp = args.trials, args.temperature
    histories = {
        "oracle_feedback": run_loop(repairer, task, test_problems, first, T, temp, seed,
                                    stop=hidden, with_feedback=True),
        "self_check": run_loop(repairer, task, test_problems, first, T, temp, seed,
                               stop=task.visible_pass, with_feedback=True),
        "no_feedback": run_loop(repairer, task, test_problems, first, T, temp, seed,
                                stop=never, with_feedback=False),
    }
    n = max(T + 1, args.ceiling_samples)
    samples = generate(base, prompts, n=n, max_new_tokens=task.max_new_tokens, temperature=temp,
                       seed=seed)
    curves = {arm: [float(np.mean([hidden(p, a) for p, a in zip(test_problems, attempts)]))
                    for attempts in h] for arm, h in histories.items()}
    curves["resample"] = resample_curve(task, test_problems, samples, T)

    rows = []
    for arm in ARMS:
        for t, value in enumerate(curves[arm]):
            rows.append(dict(arm=arm, step=t, metric="solved", value=value, seed=seed))
    rows.append(dict(arm="self_check", step=T, metric="false_positive",
                     value=false_positive_rate(task, test_problems, histories["self_check"][-1]),
                     seed=seed))
    # the ceiling: what the base can produce at all, and what nobody ever solves
    ever = [any(hidden(p, s) for s in ss) for p, ss in zip(test_problems, samples)]
    for h in histories.values():
        for attempts in h:
            ever = [e or hidden(p, a) for e, p, a in zip(ever, test_problems, attempts)]
    correct = [sum(hidden(p, s) for s in ss) for p, ss in zip(test_problems, samples)]
    rows.append(dict(arm="ceiling", step=T, metric=f"pass@{n}",
                     value=float(np.mean([pass_at_k(n, c, n) for c in correct])), seed=seed))
    rows.append(dict(arm="ceiling", step=T, metric="never_solved",
                     value=1.0 - float(np.mean(ever)), seed=seed))
    return rows


def main():
    parser = common.parser_for(__doc__, default_task="code")
    parser.add_argument("--trials", type=int, default=5, help="repair trials T after trial 0")
    parser.add_argument("--problems", type=int, default=300, help="test problems")
    parser.add_argument("--train_problems", type=int, default=1500,
                        help="training problems whose attempts teach the repair format")
    parser.add_argument("--train_samples", type=int, default=4,
                        help="samples per training problem (besides the greedy attempt)")
    parser.add_argument("--temperature", type=float, default=0.8,
                        help="temperature of training samples, repairs and resample")
    parser.add_argument("--ceiling_samples", type=int, default=32,
                        help="samples per test problem for resample and the pass@n ceiling")
    parser.add_argument("--steps", type=int, default=400, help="repairer fine-tuning steps")
    parser.add_argument("--batch_size", type=int, default=32, help="repairer batch size")
    parser.add_argument("--lr", type=float, default=3e-4, help="repairer peak learning rate")
    args = parser.parse_args()
    seeds, device = common.check_args(parser, args)
    common.positive(parser, trials=args.trials, problems=args.problems,
                    train_problems=args.train_problems, train_samples=args.train_samples,
                    temperature=args.temperature, ceiling_samples=args.ceiling_samples,
                    steps=args.steps, batch_size=args.batch_size, lr=args.lr)
    if args.quick:
        args.problems, args.train_problems = min(args.problems, 6), min(args.train_problems, 6)
        args.train_samples, args.steps = min(args.train_samples, 2), min(args.steps, 3)
        args.trials, args.ceiling_samples = min(args.trials, 2), min(args.ceiling_samples, 4)

    task = TASKS[args.task]
    test_problems = task.problems(args.problems, seed=0, split="test")
    config = {k: v for k, v in vars(args).items() if k not in ("seeds", "device", "quick")}
    rows, start = [], time.time()
    for i, seed in enumerate(seeds):
        rows += run_seed(args, task, test_problems, seed, device)
        # write after every seed: an interrupted run keeps the seeds it finished
        table = common.write_results("reflexion", args.task, seeds[:i + 1], config, rows,
                                     time.time() - start, quick=args.quick)
    print(table)


if __name__ == "__main__":
    main()
