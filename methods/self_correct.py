"""Intrinsic self-correction: can a model fix its own answers without being told which are wrong?

Paper: Huang et al. (ICLR 2024), "Large Language Models Cannot Self-Correct Reasoning Yet"
(arXiv 2310.01798). Their loop asks a model to review its answer and improve it, for two rounds.
With an oracle that stops the loop as soon as the answer is right (the setting of several
earlier papers), GSM8K accuracy rises (GPT-3.5: 75.9 -> 84.3). Without it, the SAME loop turns
right answers wrong about as often as it fixes wrong ones, and accuracy falls (75.9 -> 74.7);
self-consistency at the same number of calls does better.

The idea here: teach the base model a review format, then run the same loop three ways.

    review prompt   "123+45=861?"      (task prompt + previous answer + "?")
    revised answer  "861"              (possibly unchanged)

    y_0 = base(x)                                   greedy first answer, 1 call
    y_r = reviewer(x + y_{r-1} + "?")   r = 1..R    one review call per round (R = 4 here)

Arms, all at r + 1 model calls after round r:
  intrinsic      always take the revision (no oracle: what a deployed model could do);
  oracle_stop    revise only answers the oracle marks wrong (the same reviewer; a right answer
                 is never touched again), i.e. the number earlier papers reported;
  majority_vote  self-consistency: the most common of the greedy answer and r samples at
                 temperature T (ties go to the greedy answer, so round 1 equals round 0).
For `intrinsic` we also log how each round changed the answers, as in the paper's Figure 1:
c2c (right stays right), c2i (right made wrong), i2c (wrong made right), i2i; they sum to 1.

How the reviewer is learned (inside this file, from the model's own samples): for training
problems, draw the base model's greedy answer and a few samples at temperature T. Keep the
problems where at least one of them is right, and train a copy of the base on
    (prompt + sampled answer + "?")  ->  the right answer
for every sampled answer: a right answer maps to itself (so the model can learn to keep it) and
a wrong one to the right one the model itself found. Loss: the usual masked cross-entropy on
the revised answer only (methods/sft.py's `finetune`),
    L = - sum_{t in revision} log p(y'_t | x, y, "?", y'_<t).
The oracle is used only to label TRAINING samples, never at test time in the intrinsic arm.

Simplified relative to the paper, and why:
  - One review call per round instead of two (critique, then improve): a 0.8M-parameter model
    cannot write a critique, so "critique + revise" is one learned step.
  - The reviewer is a fine-tuned copy of the base (the base itself has never seen the review
    format); round 0 is the base's own greedy answer, so every arm starts from the same answers.
  - The review format is compact on purpose: prompt (<= 8 chars) + previous answer (<= 12) +
    "?" + revision (<= 4 digits + end token) stays inside the arith base's 32-token block, so
    no position embedding has to be extended.
  - Only the latest answer is shown to the reviewer, not the whole dialogue.

Run:
  python methods/self_correct.py                       # arith, seed 0 (about 1 minute on a CPU)
  python methods/self_correct.py --seeds 0,1,2         # what results/self_correct-arith.md holds
  python methods/self_correct.py --task code
  python methods/self_correct.py --quick               # tiny budget, same path (for tests)

What you should see: oracle_stop climbs every round (it can only fix); intrinsic moves much
less, because a wrong revision of a right answer (c2i) costs what a fix (i2c) gains; whatever
it does, compare it with majority_vote at the same number of calls. See
tutorials/03_self_correction.md for the numbers of a real run and what they mean.
"""
import copy
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

import common  # noqa: E402
from sample import generate, majority_vote  # noqa: E402
from sft import base_model, finetune  # noqa: E402
from verify import TASKS  # noqa: E402

ARMS = ("intrinsic", "oracle_stop", "majority_vote")


# ---------------------------------------------------------------------------------------------
# The review format

def review_prompt(task, prompt, previous):
    """Task prompt + previous answer + a question asking to review it.
    arith: "123+45=" + "861" + "?" -> "123+45=861?".
    code: the prompt ends in "prog: ", so the answer goes on that line and a new line asks
    again: "...prog: sort | rev\\nprog? " (same idea, readable in a longer prompt).
    Non-ASCII bytes of a garbled answer are dropped, so one character is one token and the
    prompt stays inside the block (arith: 8 + 12 + 1 positions, then up to 11 for the answer)."""
    previous = previous.encode("ascii", "ignore").decode()
    if task.name == "code":
        return f"{prompt}{previous}\nprog? "
    return f"{prompt}{previous}?"


def build_review_pairs(model, task, problems, n_samples, temperature, seed, use_reference=False):
    """The reviewer's training data, from the model's own answers on training problems.
    For each problem: the greedy answer and n_samples samples at `temperature`. If one of them
    is right, every answer a gives the pair (review_prompt(a), right answer): keep a right
    answer, replace a wrong one. Problems the model never solves give nothing (it has no right
    answer of its own to learn from), unless use_reference (only for --quick, whose untrained
    tiny base solves nothing): then the reference answer stands in.
    Returns (pairs, share of sampled answers that were right)."""
    prompts = [p.prompt for p in problems]
    greedy = generate(model, prompts, n=1, max_new_tokens=task.max_new_tokens, seed=seed)
    sampled = generate(model, prompts, n=n_samples, max_new_tokens=task.max_new_tokens,
                       temperature=temperature, seed=seed)
    pairs, n_right, n_all = [], 0, 0
    for p, g, ss in zip(problems, greedy, sampled):
        answers = g + ss
        right = [a for a in answers if task.check(p, a).correct]
        n_right += len(right)
        n_all += len(answers)
        if not right and use_reference:
            right = [p.answer]
        if not right:
            continue
        for a in answers:
            target = a if a in right else right[0]
            pairs.append((review_prompt(task, p.prompt, a), target))
    return pairs, n_right / max(1, n_all)


def train_reviewer(base, pairs, steps, batch_size, lr, seed, progress=True):
    """A copy of the base fine-tuned on the review pairs (the base itself stays untouched)."""
    reviewer = copy.deepcopy(base)
    losses = finetune(reviewer, pairs, steps=steps, batch_size=batch_size, lr=lr,
                      warmup=max(1, steps // 10), seed=seed, desc="reviewer", progress=progress)
    return reviewer, losses


def revise(reviewer, task, problems, answers, temperature, seed):
    """One review call per problem: the reviewer's revision of each answer."""
    prompts = [review_prompt(task, p.prompt, a) for p, a in zip(problems, answers)]
    outs = generate(reviewer, prompts, n=1, max_new_tokens=task.max_new_tokens,
                    temperature=temperature, seed=seed)
    return [o[0] for o in outs]


# ---------------------------------------------------------------------------------------------
# The three arms. Each returns rounds[r][i] = the answer for problem i after round r.

def run_intrinsic(reviewer, task, problems, first, rounds, temperature, seed):
    """Always revise: no oracle, the model alone decides whether to change its answer."""
    history = [list(first)]
    for r in range(1, rounds + 1):
        history.append(revise(reviewer, task, problems, history[-1], temperature, seed + r))
    return history


def run_oracle_stop(reviewer, task, problems, first, rounds, temperature, seed):
    """Revise only the answers the oracle marks wrong; a right answer is never revisited."""
    history = [list(first)]
    for r in range(1, rounds + 1):
        current = list(history[-1])
        wrong = [i for i, p in enumerate(problems) if not task.check(p, current[i]).correct]
        if wrong:
            fixed = revise(reviewer, task, [problems[i] for i in wrong],
                           [current[i] for i in wrong], temperature, seed + r)
            for i, a in zip(wrong, fixed):
                current[i] = a
        history.append(current)
    return history


def run_majority_vote(base, task, problems, first, rounds, temperature, seed):
    """Self-consistency at equal calls: after round r, vote over the greedy answer and r
    samples at `temperature` (the first vote is the greedy answer, so a tie keeps it)."""
    prompts = [p.prompt for p in problems]
    samples = generate(base, prompts, n=max(1, rounds), max_new_tokens=task.max_new_tokens,
                       temperature=temperature, seed=seed)
    history = []
    for r in range(rounds + 1):
        history.append([majority_vote([g] + ss[:r]) for g, ss in zip(first, samples)])
    return history


# ---------------------------------------------------------------------------------------------
# Metrics

def transitions(before, after):
    """Shares of problems by (right before?, right after?) for two lists of booleans:
    c2c, c2i, i2c, i2i (they sum to 1)."""
    n = len(before)
    if n == 0 or len(after) != n:
        raise ValueError("need two equally long, non-empty lists")
    counts = {"c2c": 0, "c2i": 0, "i2c": 0, "i2i": 0}
    for b, a in zip(before, after):
        counts[("c" if b else "i") + "2" + ("c" if a else "i")] += 1
    return {k: v / n for k, v in counts.items()}


def correctness(task, problems, answers):
    return [task.check(p, a).correct for p, a in zip(problems, answers)]


def rows_for_seed(task, problems, histories, seed):
    """Tidy rows: acc per arm and round, and intrinsic's transitions from round r-1 to r."""
    rows = []
    for arm in ARMS:
        right = [correctness(task, problems, answers) for answers in histories[arm]]
        for r, ok in enumerate(right):
            rows.append(dict(arm=arm, step=r, metric="acc", value=float(np.mean(ok)), seed=seed))
            if arm == "intrinsic" and r > 0:
                for name, share in transitions(right[r - 1], ok).items():
                    rows.append(dict(arm=arm, step=r, metric=name, value=share, seed=seed))
    return rows


def show_changes(task, problems, history, per_kind=3):
    """Print a few of round 1's changed answers of each kind, to see what the reviewer does."""
    for kind, want in (("right -> wrong", (True, False)), ("wrong -> right", (False, True))):
        shown = [f"{p.prompt.splitlines()[-1]}{a} -> {b}"  # code: only the "prog: " line
                 for p, a, b in zip(problems, history[0], history[1])
                 if (task.check(p, a).correct, task.check(p, b).correct) == want][:per_kind]
        print(f"  round 1, {kind}: " + ("   ".join(shown) or "none"))


# ---------------------------------------------------------------------------------------------

def run_seed(args, task, test_problems, seed, device):
    common.seed_everything(seed)
    base = base_model(args.task, seed=seed, device=device, quick=args.quick)
    # training problems drawn with another seed than the base's (they overlap in part: there
    # are only 10,000 distinct 3-digit-by-1-digit products); the test split is never touched
    train = task.problems(args.train_problems, seed=1000 + seed, split="train")
    pairs, share_right = build_review_pairs(base, task, train, args.train_samples,
                                            args.temperature, seed, use_reference=args.quick)
    if not pairs:
        raise SystemExit("error: the base model solved none of the training problems, "
                         "so there is no right answer to learn a review from")
    reviewer, losses = train_reviewer(base, pairs, args.steps, args.batch_size, args.lr, seed)
    print(f"seed {seed}: {len(pairs)} review pairs ({share_right:.0%} of the model's own "
          f"training answers right); reviewer loss {losses[0]:.3f} -> {np.mean(losses[-20:]):.3f}")

    prompts = [p.prompt for p in test_problems]
    first = [g[0] for g in generate(base, prompts, n=1, max_new_tokens=task.max_new_tokens,
                                    seed=seed)]
    histories = {
        "intrinsic": run_intrinsic(reviewer, task, test_problems, first, args.rounds,
                                   args.revise_temperature, seed),
        "oracle_stop": run_oracle_stop(reviewer, task, test_problems, first, args.rounds,
                                       args.revise_temperature, seed),
        "majority_vote": run_majority_vote(base, task, test_problems, first, args.rounds,
                                           args.temperature, seed),
    }
    show_changes(task, test_problems, histories["intrinsic"])
    return rows_for_seed(task, test_problems, histories, seed)


def main():
    parser = common.parser_for(__doc__, default_task="arith")
    parser.add_argument("--rounds", type=int, default=4,
                        help="review rounds R (the paper stops at 2; 4 shows where it settles)")
    parser.add_argument("--problems", type=int, default=500, help="test problems")
    parser.add_argument("--train_problems", type=int, default=2000,
                        help="training problems whose answers teach the review format")
    parser.add_argument("--train_samples", type=int, default=4,
                        help="samples per training problem (besides the greedy answer)")
    parser.add_argument("--temperature", type=float, default=0.8,
                        help="temperature of the training samples and of majority_vote's votes")
    parser.add_argument("--revise_temperature", type=float, default=0.0,
                        help="temperature of the review calls (0 = greedy)")
    parser.add_argument("--steps", type=int, default=600, help="reviewer fine-tuning steps")
    parser.add_argument("--batch_size", type=int, default=64, help="reviewer batch size")
    parser.add_argument("--lr", type=float, default=3e-4, help="reviewer peak learning rate")
    args = parser.parse_args()
    seeds, device = common.check_args(parser, args)
    common.positive(parser, rounds=args.rounds, problems=args.problems,
                    train_problems=args.train_problems, train_samples=args.train_samples,
                    temperature=args.temperature, steps=args.steps, batch_size=args.batch_size,
                    lr=args.lr)
    if args.revise_temperature < 0:
        parser.error(f"--revise_temperature must be >= 0, got {args.revise_temperature}")
    if args.quick:
        args.problems, args.train_problems = min(args.problems, 20), min(args.train_problems, 40)
        args.train_samples, args.steps = min(args.train_samples, 2), min(args.steps, 5)

    task = TASKS[args.task]
    test_problems = task.problems(args.problems, seed=0, split="test")
    config = {k: v for k, v in vars(args).items() if k not in ("seeds", "device", "quick")}
    rows, start = [], time.time()
    for i, seed in enumerate(seeds):
        rows += run_seed(args, task, test_problems, seed, device)
        # write after every seed: an interrupted run keeps the seeds it finished
        table = common.write_results("self_correct", args.task, seeds[:i + 1], config, rows,
                                     time.time() - start, quick=args.quick)
    print(table)


if __name__ == "__main__":
    main()
