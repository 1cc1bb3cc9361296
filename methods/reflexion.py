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
the second digit is wrong), and the model learns a repair format that reads it (the task's
retry_prompt, the same format intrinsic self-correction uses with "?" as the feedback):

    code   "<examples>prog: " + "sort | take 2\\nexample 1: got [1,2] expected [9,8]\\nprog: "
           -> "rev | take 2"
    arith  "123+45=" + "861;d2=" -> "861"  (compact: the arith base only has 32 positions)

Training data for the repairer come from the base model's own samples on training problems
(greedy + a few at temperature T). For each problem where one of them passes the hidden tests,
each failing attempt gives (repair prompt with its feedback -> that passing attempt), and every
attempt gives (repair prompt with "?" -> itself if it passes, else the passing attempt).
Loss: masked cross-entropy on the new attempt (methods/sft.py's `finetune`). The oracle labels
TRAINING samples only; at test time only the arms' own stop rules see it. Learning the repairer
and the loop itself are methods/revise.py, shared with methods/self_correct.py.

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
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root

import numpy as np

import common
import revise
from sample import generate, pass_at_k

FLAGS = dict(
    trials=(5, "repair trials T after trial 0"),
    problems=(300, "test problems"),
    train_problems=(1500, "training problems whose attempts teach the repair format"),
    train_samples=(4, "samples per training problem (besides the greedy attempt)"),
    temperature=(0.8, "temperature of training samples, repairs and resample"),
    ceiling_samples=(32, "samples per test problem for resample and the pass@n ceiling"),
    steps=(400, "repairer fine-tuning steps"),
    batch_size=(32, "repairer batch size"),
    lr=(3e-4, "repairer peak learning rate"),
)
QUICK = dict(trials=2, problems=6, train_problems=6, train_samples=2, ceiling_samples=4, steps=3)
ARMS = ("oracle_feedback", "resample", "self_check", "no_feedback")


# ---------------------------------------------------------------------------------------------
# The control and the metrics (the loop itself is revise.run_loop)

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


def ceiling(task, problems, samples, histories):
    """pass@n of the base's n samples (what it can produce at all), and the share of problems
    that no arm solved at any trial and none of the samples solved."""
    n = len(samples[0])
    correct = [sum(task.check(p, s).correct for s in ss) for p, ss in zip(problems, samples)]
    ever = [c > 0 for c in correct]
    for attempts in (a for h in histories for a in h):
        ever = [e or task.check(p, a).correct for e, p, a in zip(ever, problems, attempts)]
    return {f"pass@{n}": float(np.mean([pass_at_k(n, c, n) for c in correct])),
            "never_solved": 1.0 - float(np.mean(ever))}


# ---------------------------------------------------------------------------------------------

def run_seed(seed, task, device, quick, trials, problems, train_problems, train_samples,
             temperature, ceiling_samples, steps, batch_size, lr):
    base, repairer, test, first = revise.start(
        task, seed, device, quick, problems, train_problems, train_samples, temperature, steps,
        batch_size, lr, with_feedback=True, name="repair")
    hidden_pass = revise.oracle(task)
    loops = {  # arm -> its stop rule, and whether the feedback goes back into the prompt
        "oracle_feedback": dict(stop=hidden_pass, with_feedback=True),
        "self_check": dict(stop=task.visible_pass, with_feedback=True),
        "no_feedback": dict(stop=revise.never, with_feedback=False),
    }
    histories = {arm: revise.run_loop(repairer, task, test, first, trials, temperature, seed, **how)
                 for arm, how in loops.items()}
    samples = generate(base, [p.prompt for p in test], n=max(trials + 1, ceiling_samples),
                       max_new_tokens=task.max_new_tokens, temperature=temperature, seed=seed)
    curves = {arm: [float(np.mean([hidden_pass(p, a) for p, a in zip(test, attempts)]))
                    for attempts in h] for arm, h in histories.items()}
    curves["resample"] = resample_curve(task, test, samples, trials)

    rows = [row for arm in ARMS for t, solved in enumerate(curves[arm])
            for row in common.rows_of(arm, t, {"solved": solved})]
    final = histories["self_check"][-1]
    rows += common.rows_of("self_check", trials,
                           {"false_positive": false_positive_rate(task, test, final)})
    rows += common.rows_of("ceiling", trials, ceiling(task, test, samples, histories.values()))
    return rows


def main():
    args = common.parse_args(__doc__, FLAGS, QUICK, default_task="code")
    common.run_seeds("reflexion", args, run_seed, FLAGS)


if __name__ == "__main__":
    main()
