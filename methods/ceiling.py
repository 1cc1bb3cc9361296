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
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

import common  # noqa: E402
from sample import generate, pass_at_k  # noqa: E402
from sft import base_model  # noqa: E402
from verify import TASKS  # noqa: E402

KS = (1, 2, 4, 5, 6, 8, 16, 32, 64)
PREFIXES = (300, 500)  # the test-set sizes the methods use; reflexion and rest use the first 300


def main():
    parser = common.parser_for(__doc__, default_task="arith")
    parser.add_argument("--problems", type=int, default=500, help="test problems")
    parser.add_argument("--samples", type=int, default=64, help="n: samples per problem (>= max k)")
    parser.add_argument("--temperature", type=float, default=0.8, help="sampling temperature")
    args = parser.parse_args()
    seeds, device = common.check_args(parser, args)
    common.positive(parser, problems=args.problems, samples=args.samples,
                    temperature=args.temperature)
    if args.quick:
        args.problems, args.samples = 12, 8
    ks = [k for k in KS if k <= args.samples]
    prefixes = sorted({min(p, args.problems) for p in PREFIXES} | {args.problems})

    task = TASKS[args.task]
    problems = task.problems(args.problems, seed=0, split="test")
    prompts = [p.prompt for p in problems]
    config = dict(problems=args.problems, samples=args.samples, temperature=args.temperature,
                  ks=ks, prefixes=prefixes)
    rows, start = [], time.time()
    for i, seed in enumerate(seeds):
        model = base_model(args.task, seed=seed, device=device, quick=args.quick)
        greedy = generate(model, prompts, n=1, max_new_tokens=task.max_new_tokens, seed=seed)
        right = np.array([task.check(p, g[0]).correct for p, g in zip(problems, greedy)])
        samples = generate(model, prompts, n=args.samples, max_new_tokens=task.max_new_tokens,
                           temperature=args.temperature, seed=seed)
        # correct[j] = how many of problem j's n samples are right
        correct = [sum(task.check(p, s).correct for s in ss) for p, ss in zip(problems, samples)]
        for n_test in prefixes:
            curve = {"greedy_acc": right[:n_test].mean()}
            curve.update({f"pass@{k}": np.mean([pass_at_k(args.samples, c, k)
                                                for c in correct[:n_test]]) for k in ks})
            rows += [dict(arm="base", n_test=n_test, step=0, metric=m, value=round(float(v), 4),
                          seed=seed) for m, v in curve.items()]
        # the last prefix is the whole test set
        print(f"seed {seed}: " + "  ".join(f"{m} {v:.3f}" for m, v in curve.items()))
        table = common.write_results("ceiling", args.task, seeds[:i + 1], config, rows,
                                     time.time() - start, quick=args.quick)
    print(table)


if __name__ == "__main__":
    main()
