"""The base model's own ceiling: how often k samples contain a right answer (pass@k).

Not a paper's method but the yardstick for all of them. A model that improves itself from its
own samples, judged by an oracle, can at best learn to give on the first try the answers it
already finds within k tries. So for every method run_all.py sets the accuracy the method
reached against the base model's pass@k, with k the number of samples per problem the method
spent. This file measures that curve once, for k = 1, 2, 4, 5, 6, 8, 16, 32, 64, on the test set
every method shares (task.problems(n, seed=0, split="test"); a 300-problem method uses its first
300 problems, so pass@k is also reported on that prefix).

    pass@k = E_problems[ 1 - C(n - c, k) / C(n, k) ]     (n samples drawn, c of them correct)

the unbiased estimator of Chen et al. (2021), sample.pass_at_k, from n = 64 samples at T = 0.8.

Run:
  python methods/ceiling.py --task arith --seeds 0,1,2   # what wrote results/ceiling-arith.*
  python methods/ceiling.py --task code --seeds 0,1,2
  python methods/ceiling.py --quick                      # tiny budget, same path (tests)

What you should see: pass@k rising steeply with k, far above greedy accuracy: the room to
improve that every self-improvement method is trying to turn into first-try accuracy.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root

import numpy as np

import common
from sample import greedy, pass_at_k, sample_and_check
from sft import base_model

FLAGS = dict(
    problems=(500, "test problems"),
    samples=(64, "n: samples per problem (>= max k)"),
    temperature=(0.8, "sampling temperature"),
)
QUICK = dict(problems=12, samples=8)
KS = (1, 2, 4, 5, 6, 8, 16, 32, 64)
PREFIXES = (300, 500)  # the test-set sizes the methods use; reflexion and rest use the first 300


def curve_points(problems, samples):
    """The k's of pass@k that n = `samples` allow, and the test-set prefixes to report (the
    last is the whole test set)."""
    return ([k for k in KS if k <= samples],
            sorted({min(p, problems) for p in PREFIXES} | {problems}))


def run_seed(seed, task, device, quick, problems, samples, temperature, ks, prefixes):
    """Greedy accuracy and pass@k of one seed's base model, on every prefix of the test set."""
    model = base_model(task, seed=seed, device=device, quick=quick)
    test = task.problems(problems, seed=0, split="test")
    right = greedy(model, task, test)[1]
    # correct[j] = how many of problem j's n samples are right
    correct = [sum(c) for c in sample_and_check(model, task, test, samples, temperature,
                                                seed=seed)[1]]
    rows = []
    for n_test in prefixes:
        curve = {"greedy_acc": np.mean(right[:n_test]),
                 **{f"pass@{k}": np.mean([pass_at_k(samples, c, k) for c in correct[:n_test]])
                    for k in ks}}
        rows += common.rows_of("base", 0, curve, n_test=n_test)
    common.show(f"seed {seed}", curve)  # the last prefix: the whole test set
    return rows


def main():
    args = common.parse_args(__doc__, FLAGS, QUICK, default_task="arith")
    ks, prefixes = curve_points(args.problems, args.samples)
    common.run_seeds("ceiling", args, run_seed, FLAGS, derived=dict(ks=ks, prefixes=prefixes))


if __name__ == "__main__":
    main()
