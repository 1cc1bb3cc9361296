"""ReST-EM from easy to hard, on code: a model that saw 1- and 2-step programs trains on its own
verified 3-step programs (Singh et al. 2023, arXiv 2312.06585; the easy-to-hard question of
Lee et al. 2025, with an oracle).

The idea. methods/rest_em.py asks its pool the same kind of question its labelled data asked.
Here the pool is harder than anything labelled: the code base learned from 1,000 problems whose
programs have 1 or 2 steps, and the pool's problems need 3. The base can still sample some
3-step programs that pass (and some 3-step problems have a shorter solution it already knows);
ReST-EM keeps the distinct passing ones and fine-tunes on them. Does the model learn to write
programs longer than any it was shown, or only find the short cuts?

    E-step:  D_i = { (x, y) : x in the 3-step pool, y ~ p_theta_{i-1}(. | x), all tests pass }
             (distinct programs, at most `cap` per prompt)
    M-step:  theta_i = argmax_theta  sum_{(x, y) in D_gold + D_i}  log p_theta(y | x), from the
             base, early-stopped on 3-step val problems (their tests, never their programs)

It is rest_em.py's E-step, M-step and arms (rest_em.run_arm); only the problems differ.

Short cuts. About two in five 3-step problems are solved by some program of 1 or 2 steps
("rev | sort | sum" is "sum"): a model can pass them without writing 3 steps.
`reducible` finds them by trying every program of at most 2 steps on all of a problem's inputs;
test_acc_long is the accuracy on the rest, the problems that need 3 steps.

Arms (every M-step on the base's own D_gold plus what its filter kept):
  rest_em        the oracle filter on the 3-step pool, 3 iterations, each M-step from the base
  self_train     (opt-in) every greedy answer becomes a label, right or wrong
  sft_more       the M-step on D_gold alone, stopped on the 3-step val set (no pool data)
  sft_gold_pool  the M-step on D_gold + the 3-step pool with its reference programs (the upper
                 bound: what labelled hard data would give)

Metrics per iteration (step 0 = the base): test_acc (greedy, 3-step test problems), pass@1,
pass@16; test_acc_long (the test problems no program of <= 2 steps solves) and
test_acc_short; long_answers, the share of the greedy test answers that have 3 steps or more
(does the model write longer programs at all?); easy_acc (greedy on the base's own 1-2-step
mix: is it forgotten?); kept, covered, label_acc, m_steps; gap_closed (rest_em.gap_closed).

Simplified, and why: as rest_em.py (K = 8 samples, 2,000 pool prompts, 3 iterations), with
the code base's own training recipe for every M-step (lr 3e-3, checked every 150 steps, at most
1,200 steps) and without self_train by default (its labels would be the base's greedy answers,
wrong on most 3-step problems: see the base's test_acc; methods/rest_em.py has that control on
code), so a seed takes well under an hour on one CPU core (the header of
results/rest_em_hard-code.md says how long). rest_em.py's E-step budget of tokens is the 2-step
one (28 characters): a 3-step program has at most 24 and the end token.

Run:
  python methods/rest_em_hard.py --seeds 0,1,2   # what results/rest_em_hard-code.* were made with
  python methods/rest_em_hard.py --quick         # tiny budget, same code path (for tests)

What you should see: tutorials/06_rest_em.md reads the table. If rest_em's test_acc_long rises
with its long_answers, the model learned longer programs from its own verified samples; if only
test_acc_short rises, it learned the short cuts. At this size it is neither: the base writes a
3-step program in under 1% of its answers, its verified samples are short cuts, and the
iterations leave every accuracy where it was. Even sft_gold_pool's reference programs, which
make most answers 3-step programs, barely move accuracy: the premise (a model that can already
sample some right answers of the new kind) fails before ReST-EM starts.
"""
import itertools
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root

import numpy as np

import common
import rest_em
from dsl import ERROR, INT_OPS, LIST_OPS, run_or_error
from sample import evaluate, greedy
from sft import base_model, base_settings, gold_data

FLAGS = dict(
    arms=("sft_more,sft_gold_pool,rest_em", "comma-separated arms (and self_train)"),
    pool=(2000, "unlabelled pool prompts", 1),
    iterations=(3, "E/M iterations per arm"),
    samples=(8, "K: samples per prompt, E-step"),
    temperature=(0.8, "E-step temperature"),
    cap=(4, "distinct passing programs kept per prompt"),
    steps=(1200, "M-step: at most this many steps (early-stopped on the hard val set)"),
    eval_every=(150, "M-step: validation accuracy every this many steps"),
    patience=(4, "M-step: stop after this many checks without a new best"),
    batch_size=(32, "M-step batch size"),
    lr=(3e-3, "M-step peak learning rate (the code base's own)"),
    warmup=(50, "M-step warm-up steps", 0),
    n_val=(200, "hard val problems the M-steps stop on"),
    test_problems=(300, "hard test problems (and as many easy ones for easy_acc)"),
    eval_samples=(16, "samples per test problem for pass@k"),
)
QUICK = dict(pool=20, test_problems=10, samples=4, eval_samples=4, steps=10, eval_every=5,
             iterations=2, n_val=8)
HARD = 3  # steps of the pool's, val's and test's programs; the base saw 1 and 2
ARMS = ("sft_more", "sft_gold_pool", "rest_em", "self_train")  # rest_em.ARMS' entries


# ---------------------------------------------------------------------------------------------
# Short cuts: the hard problems a shorter program solves

def short_programs(max_steps=2):
    """Every program of 1..max_steps steps the task's generator could write (verify.CodeTask:
    add 1-3, mul 2-3, take/drop 1-3; an int step only last), as lists of (name, k)."""
    ks = {"add": (1, 2, 3), "mul": (2, 3), "take": (1, 2, 3), "drop": (1, 2, 3)}
    list_steps = [(name, k) for name in LIST_OPS for k in ks.get(name, (None,))]
    last_steps = list_steps + [(name, None) for name in INT_OPS]
    return [list(head) + [last] for n in range(1, max_steps + 1)
            for head in itertools.product(list_steps, repeat=n - 1) for last in last_steps]


def reducible(problem, programs):
    """True if one of `programs` gives every output of the problem (visible and hidden)."""
    pairs = list(problem.examples) + list(problem.tests)
    return any(all(run_or_error(steps, xs) == y != ERROR for xs, y in pairs)
               for steps in programs)


# ---------------------------------------------------------------------------------------------

def run_seed(seed, task, device, quick, arms, pool, iterations, samples,
             temperature, cap, steps, eval_every, patience, batch_size, lr, warmup, n_val,
             test_problems, eval_samples):
    progress = not quick
    base = base_model(task, seed=seed, device=device, quick=quick, progress=progress)
    gold, _ = gold_data(task, base_settings(task, quick=quick), seed)  # 1- and 2-step programs
    gold_pairs = [(p.prompt, p.answer) for p in gold]
    hard_pool = task.problems(pool, seed=seed, split="pool", difficulty=HARD)
    val = task.problems(n_val, seed=seed, split="val", difficulty=HARD)
    test = task.problems(test_problems, seed=0, split="test", difficulty=HARD)
    easy_test = task.problems(test_problems, seed=0, split="test")
    short = np.array([reducible(p, short_programs(HARD - 1)) for p in test])  # (test_problems,)

    def measure(model):
        r = evaluate(model, task, test, n=eval_samples, temperature=rest_em.EVAL_TEMPERATURE,
                     seed=seed, ks=sorted({1, eval_samples}))
        answers, right = greedy(model, task, test)
        right = np.array(right)  # (test_problems,)
        return {"test_acc": r.pop("greedy_acc"), **r,
                "test_acc_long": float(right[~short].mean()) if (~short).any() else 0.0,
                "test_acc_short": float(right[short].mean()) if short.any() else 0.0,
                "long_answers": float(np.mean([a.count("|") + 1 >= HARD for a in answers])),
                "easy_acc": evaluate(model, task, easy_test)["greedy_acc"]}

    start = dict(measure(base), short_share=float(short.mean()))
    common.show(f"seed {seed} base", start)
    tune = dict(steps=steps, eval_every=eval_every, patience=patience, batch_size=batch_size,
                lr=lr, warmup=warmup, progress=progress)
    at = dict(base=base, task=task, gold_pairs=gold_pairs, pool=hard_pool, val=val,
              iterations=iterations, samples=samples, temperature=temperature, cap=cap,
              vote=0.5, measure=measure, seed=seed, tune=tune)
    run = {arm: lambda arm=arm: rest_em.run_arm(arm, **at) for arm in ARMS}
    return rest_em.gap_closed(common.rows_of("base", 0, start) + common.run_arms(run, arms, seed))


def main():
    args = common.parse_args(__doc__, FLAGS, QUICK, default_task="code", tasks=("code",))
    common.comma_list(args.arms, ARMS, "arms")  # a bad arm fails now, not after a seed
    common.run_seeds("rest_em_hard", args, run_seed, FLAGS)


if __name__ == "__main__":
    main()
