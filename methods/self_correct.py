"""Intrinsic self-correction: can a model fix its own answers without being told which are wrong?

Paper: Huang et al. (ICLR 2024), "Large Language Models Cannot Self-Correct Reasoning Yet"
(arXiv 2310.01798). Their loop asks a model to review its answer and improve it, for two rounds.
With an oracle that stops the loop as soon as the answer is right (the setting of several
earlier papers), GSM8K accuracy rises (GPT-3.5: 75.9 -> 84.3). Without it, the SAME loop turns
right answers wrong about as often as it fixes wrong ones, and accuracy falls (75.9 -> 74.7);
self-consistency at the same number of calls does better.

The idea here: teach the base model a review format, then run the same loop three ways.

    review prompt   "123+45=861;?="    (task.retry_prompt(prompt, previous answer, "?");
                                        code: "<examples>prog: sort | rev\\n?\\nprog: ")
    revised answer  "861"              (possibly unchanged)

    y_0 = base(x)                                   greedy first answer, 1 call
    y_r = reviewer(x + y_{r-1} + "?")   r = 1..R    one review call per round (R = 4 here)

The review prompt is Reflexion's retry prompt with "?" where the feedback would be: intrinsic
runs the loop of methods/reflexion.py's no_feedback arm, oracle_stop that of its oracle arm
without the feedback. The loop and the learning of the reviser are methods/revise.py.

Arms, all at r + 1 model calls after round r:
  intrinsic      always take the revision (no oracle: what a deployed model could do);
  oracle_stop    revise only answers the oracle marks wrong (the same reviewer; a right answer
                 is never touched again), i.e. the number earlier papers reported;
  majority_vote  self-consistency: the most common of the greedy answer and r samples at
                 temperature T (ties go to the greedy answer, so round 1 equals round 0).
For `intrinsic` we also log how each round changed the answers, as in the paper's Figure 1:
c2c (right stays right), c2i (right made wrong), i2c (wrong made right), i2i; they sum to 1.

How the reviewer is learned (methods/revise.py, from the model's own samples): for training
problems, draw the base model's greedy answer and a few samples at temperature T. Keep the
problems where at least one of them is right, and train a copy of the base on
    retry_prompt(prompt, sampled answer, "?")  ->  the right answer
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
    ";?=" + revision (<= 4 digits + end token) stays inside the arith base's 32-token block,
    so no position embedding has to be extended.
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
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root

import numpy as np

import common
import revise
from sample import generate, majority_vote

FLAGS = dict(
    rounds=(4, "review rounds R (the paper stops at 2; 4 shows where it settles)"),
    problems=(500, "test problems"),
    train_problems=(2000, "training problems whose answers teach the review format"),
    train_samples=(4, "samples per training problem (besides the greedy answer)"),
    temperature=(0.8, "temperature of the training samples and of majority_vote's votes"),
    revise_temperature=(0.0, "temperature of the review calls (0 = greedy)", 0),
    steps=(600, "reviewer fine-tuning steps"),
    batch_size=(64, "reviewer batch size"),
    lr=(3e-4, "reviewer peak learning rate"),
)
QUICK = dict(problems=20, train_problems=40, train_samples=2, steps=5)
ARMS = ("intrinsic", "oracle_stop", "majority_vote")


# ---------------------------------------------------------------------------------------------
# The control (the review loop itself is revise.run_loop)

def run_majority_vote(base, task, problems, first, rounds, temperature, seed):
    """Self-consistency at equal calls: after round r, vote over the greedy answer and r
    samples at `temperature` (the first vote is the greedy answer, so a tie keeps it)."""
    prompts = [p.prompt for p in problems]
    samples = generate(base, prompts, n=max(1, rounds), max_new_tokens=task.max_new_tokens,
                       temperature=temperature, seed=seed)
    return [[majority_vote([g] + ss[:r]) for g, ss in zip(first, samples)]
            for r in range(rounds + 1)]


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


def rows_for_seed(task, problems, histories):
    """Tidy rows: acc per arm and round, and intrinsic's transitions from round r-1 to r."""
    right = {arm: [correctness(task, problems, answers) for answers in history]
             for arm, history in histories.items()}
    rows = [row for arm in ARMS for r, ok in enumerate(right[arm])
            for row in common.rows_of(arm, r, {"acc": float(np.mean(ok))})]
    steps = right["intrinsic"]
    for r in range(1, len(steps)):
        rows += common.rows_of("intrinsic", r, transitions(steps[r - 1], steps[r]))
    return rows


def show_changes(task, problems, history, per_kind=3):
    """Print a few of round 1's changed answers of each kind, to see what the reviewer does."""
    for kind, want in (("right -> wrong", (True, False)), ("wrong -> right", (False, True))):
        shown = [f"{p.prompt.splitlines()[-1]}{a} -> {b}"  # code: only the "prog: " line
                 for p, a, b in zip(problems, history[0], history[1])
                 if (task.check(p, a).correct, task.check(p, b).correct) == want][:per_kind]
        print(f"  round 1, {kind}: " + ("   ".join(shown) or "none"))


# ---------------------------------------------------------------------------------------------

def run_seed(seed, task, device, quick, rounds, problems, train_problems, train_samples,
             temperature, revise_temperature, steps, batch_size, lr):
    base, reviewer, test, first = revise.start(
        task, seed, device, quick, problems, train_problems, train_samples, temperature, steps,
        batch_size, lr, with_feedback=False, name="review")

    def review(stop):  # the same reviewer and prompts; only the stop rule differs
        return revise.run_loop(reviewer, task, test, first, rounds, revise_temperature, seed,
                               stop=stop, with_feedback=False)

    arms = {
        "intrinsic": lambda: review(revise.never),
        "oracle_stop": lambda: review(revise.oracle(task)),
        "majority_vote": lambda: run_majority_vote(base, task, test, first, rounds, temperature,
                                                   seed),
    }
    histories = {arm: run() for arm, run in arms.items()}
    show_changes(task, test, histories["intrinsic"])
    return rows_for_seed(task, test, histories)


def main():
    args = common.parse_args(__doc__, FLAGS, QUICK, default_task="arith")
    common.run_seeds("self_correct", args, run_seed, FLAGS)


if __name__ == "__main__":
    main()
