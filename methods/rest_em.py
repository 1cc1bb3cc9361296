"""ReST-EM: a model trained on its own verified answers (Singh et al. 2023, "Beyond Human Data:
Scaling Self-Training for Problem-Solving with Language Models", arXiv 2312.06585).

The idea: a model fine-tuned on scarce human data already solves some unlabelled problems some of
the time. Sample K answers to every prompt of a large unlabelled pool, keep the ones a checker
marks correct, and fine-tune on them. Repeat. No human answer to a pool prompt is ever used, only
the checker. The paper reads this as EM for RL with a binary "the answer was right" variable:

    E-step:  D_i = { (x, y) : x in pool, y ~ p_theta_{i-1}(. | x), r(x, y) = 1 }
             (DISTINCT correct answers only, at most `cap` per prompt, so easy prompts, whose
             K samples are all the same right answer, count once)
    M-step:  theta_i = argmax_theta  sum_{(x, y) in D_gold + D_i}  log p_theta(y | x)
             trained FROM THE BASE MODEL theta_0, not from theta_{i-1}, until the accuracy on a
             labelled validation set stops rising (the paper: "while reward improves on a
             validation set"); the kept checkpoint is the best on it. The start itself is
             not a candidate: the base was picked as the best of its own checkpoints on that
             set, so its score there is optimistic, and an M-step compared with it would be
             dropped for noise

With r in {0, 1} the M-step is plain SFT on the kept set: sft.finetune_early_stopped.

Arms, one table (all start from the same scarce-data base of the seed, methods/sft.py, and every
M-step trains on the base's own 1,000 labelled problems D_gold plus what its filter kept):
  rest_em           the oracle filter above (binary reward), M-step from the base
  self_train        no filter: the model's greedy answer to every pool prompt becomes a label,
                    right or wrong (the error-avalanche control)
  rest_em_vote      no oracle: keep the majority answer of the K samples where at least a
                    `vote` share of them agree (majority-vote filtering, Lee et al. 2025)
  sft_more          the M-step on D_gold alone: what the same training recipe gives without any
                    pool data (is the base really at its plateau?)
  sft_gold_pool     the M-step on D_gold + the pool WITH its gold labels: the upper bound of any
                    self-training on this pool
  rest_em_continue  (opt-in) rest_em with each M-step from the last iterate (the paper found it
                    transfers worse)
  rest_em_small     (opt-in) rest_em on a third of the pool (the paper's APPS regressed)

Metrics per iteration (step 0 = the base):
  test_acc     greedy accuracy on the test split; pass@1, pass@16 from 16 samples at T = 0.8
  label_acc    share of the kept (prompt, answer) pairs that are right, audited with the oracle
               (never used for training by the arms without one; 1 for rest_em by construction)
  kept         pairs the M-step trained on besides D_gold; covered: distinct pool prompts among them
  m_steps      the step the M-step's early stopping kept
  gap_closed   (test_acc - base) / (sft_gold_pool - base), per seed: the share of what the
               pool's gold labels would give that the arm got without them

What was simplified, and why:
  - Scale: K = 8 samples per prompt (the paper: 32), 4,000 pool prompts, 3 iterations.
  - The M-step adds D_gold to the model's own answers: the base learned from D_gold, and an
    M-step from the base without it would first have to relearn it. The paper fine-tunes the
    pretrained model on D_i alone.
  - On arith every problem has one right answer, so "distinct correct answers" is the gold label
    of each problem the model solved at least once: the information is which pool prompts the
    model can solve. On code many programs pass; distinct programs are kept up to `cap`.
  - pass@k is measured at T = 0.8 as everywhere in this repo.

Run:
  python methods/rest_em.py                      # arith, seed 0
  python methods/rest_em.py --seeds 0,1,2        # what results/rest_em-arith.* were made with
  python methods/rest_em.py --task code
  python methods/rest_em.py --arms rest_em,rest_em_continue,rest_em_small
  python methods/rest_em.py --quick              # tiny budget, same code path (for tests)

What you should see: tutorials/06_rest_em.md reads the 3-seed table. The paper's claim holds if
rest_em's test accuracy rises above sft_more and closes part of the gap to sft_gold_pool;
self_train's label_acc is the model's own accuracy on the pool, and its errors become labels.
"""
import copy
import os
import sys
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root

import common
from sample import evaluate, generate, greedy
from sft import base_model, base_settings, finetune_early_stopped, gold_data

FLAGS = dict(
    arms=("sft_more,sft_gold_pool,rest_em,self_train,rest_em_vote", "comma-separated arms"),
    pool=(4000, "unlabelled pool prompts (rest_em_small uses a third of them)", 3),
    iterations=(3, "E/M iterations per arm"),
    samples=(8, "K: samples per prompt, E-step"),
    temperature=(0.8, "E-step temperature"),
    cap=(4, "distinct correct answers kept per prompt"),
    vote=(0.5, "rest_em_vote: share of the K samples that must agree on an answer"),
    steps=(3000, "M-step: at most this many steps (early-stopped on the base's val set)"),
    eval_every=(250, "M-step: validation accuracy every this many steps"),
    patience=(4, "M-step: stop after this many checks without a new best"),
    batch_size=(32, "M-step batch size"),
    lr=(1e-3, "M-step peak learning rate"),
    warmup=(50, "M-step warm-up steps", 0),
    test_problems=(500, "test problems"),
    eval_samples=(16, "samples per test problem for pass@k"),
)
QUICK = dict(pool=30, test_problems=20, samples=4, eval_samples=4, steps=10, eval_every=5,
             iterations=2)
# What each arm keeps from the pool, and where its M-step starts
ARMS = {
    "sft_more": dict(filter=None),
    "sft_gold_pool": dict(filter="gold"),
    "rest_em": dict(filter="oracle", restart=True),
    "self_train": dict(filter="none", restart=True),
    "rest_em_vote": dict(filter="vote", restart=True),
    "rest_em_continue": dict(filter="oracle", restart=False),
    "rest_em_small": dict(filter="oracle", restart=True, small=True),
}
EVAL_TEMPERATURE = 0.8


# ---------------------------------------------------------------------------------------------
# E-step: answer every pool prompt, keep what the filter trusts

def e_step(model, task, pool, how, samples, temperature, cap, vote, seed):
    """The (prompt, answer) pairs the filter `how` keeps from the model's answers on `pool`, and
    their audit: {kept, covered, label_acc} (the oracle only audits, except for "oracle")."""
    if how == "gold":  # the upper bound: the pool's own labels
        kept = [(p, [p.answer]) for p in pool]
    elif how == "none":  # self-training: the greedy answer, unchecked
        kept = [(p, [a]) for p, a in zip(pool, greedy(model, task, pool)[0])]
    else:
        outs = generate(model, [p.prompt for p in pool], n=samples,
                        max_new_tokens=task.max_new_tokens, temperature=temperature, seed=seed)
        kept = []
        for p, ss in zip(pool, outs):
            if how == "oracle":  # distinct correct answers, in the order they were sampled
                good = list(dict.fromkeys(s for s in ss if task.check(p, s).correct))[:cap]
            else:  # vote: the most common answer, if enough of the samples agree
                answer, count = Counter(ss).most_common(1)[0]
                good = [answer] if count >= vote * samples else []
            if good:
                kept.append((p, good))
    pairs = [(p.prompt, a) for p, answers in kept for a in answers]
    right = sum(task.check(p, a).correct for p, answers in kept for a in answers)
    return pairs, dict(kept=len(pairs), covered=len(kept), label_acc=right / max(1, len(pairs)))


# ---------------------------------------------------------------------------------------------
# M-step: fine-tune on D_gold + the kept pairs, early-stopped on the labelled val set

def m_step(start, task, gold_pairs, pairs, val, seed, desc, tune):
    """A copy of `start` fine-tuned on gold_pairs + pairs (start is left untouched), and the
    step its early stopping kept."""
    model = copy.deepcopy(start)
    kept = finetune_early_stopped(model, task, gold_pairs + pairs, val, seed=seed, desc=desc,
                                  **tune)
    return model, kept.get("step", tune["steps"])


def run_arm(arm, base, task, gold_pairs, pool, val, iterations, samples, temperature, cap, vote,
            measure, seed, tune):
    """`iterations` E/M iterations of one arm from the base: {step: metrics}."""
    how = ARMS[arm]
    if how.get("small"):
        pool = pool[:len(pool) // 3]
    model, curve = base, {}
    for it in range(1, (1 if how["filter"] in (None, "gold") else iterations) + 1):
        pairs, audit = ([], dict(kept=0, covered=0)) if how["filter"] is None else e_step(
            model, task, pool, how["filter"], samples, temperature, cap, vote, seed * 1000 + it)
        start = base if how.get("restart", True) else model
        model, m_steps = m_step(start, task, gold_pairs, pairs, val, seed * 1000 + it,
                                f"{arm} seed {seed} iter {it}", tune)
        curve[it] = dict(measure(model), **audit, m_steps=m_steps)
    return curve


def gap_closed(rows):
    """Add gap_closed = (test_acc - base) / (sft_gold_pool - base) to every arm's steps."""
    acc = {(r["arm"], r["step"]): r["value"] for r in rows if r["metric"] == "test_acc"}
    base, top = acc[("base", 0)], acc.get(("sft_gold_pool", 1))
    if top is None or top <= base:
        return rows
    return rows + [dict(arm=arm, step=step, metric="gap_closed",
                        value=round((a - base) / (top - base), 4))
                   for (arm, step), a in acc.items() if arm != "base"]


# ---------------------------------------------------------------------------------------------

def run_seed(seed, task, device, quick, arms, pool, iterations, samples, temperature, cap, vote,
             steps, eval_every, patience, batch_size, lr, warmup, test_problems, eval_samples):
    progress = not quick
    base = base_model(task, seed=seed, device=device, quick=quick, progress=progress)
    gold, val = gold_data(task, base_settings(task, quick=quick), seed)
    gold_pairs = [(p.prompt, p.answer) for p in gold]
    pool_problems = task.problems(pool, seed=seed, split="pool")
    test = task.problems(test_problems, seed=0, split="test")

    def measure(model):
        r = evaluate(model, task, test, n=eval_samples, temperature=EVAL_TEMPERATURE, seed=seed,
                     ks=sorted({1, eval_samples}))
        return {"test_acc": r.pop("greedy_acc"), **r}

    start = measure(base)
    common.show(f"seed {seed} base", start)
    tune = dict(steps=steps, eval_every=eval_every, patience=patience, batch_size=batch_size,
                lr=lr, warmup=warmup, progress=progress)
    at = dict(base=base, task=task, gold_pairs=gold_pairs, pool=pool_problems, val=val,
              iterations=iterations, samples=samples, temperature=temperature, cap=cap,
              vote=vote, measure=measure, seed=seed, tune=tune)
    run = {arm: lambda arm=arm: run_arm(arm, **at) for arm in ARMS}
    return gap_closed(common.rows_of("base", 0, start) + common.run_arms(run, arms, seed))


def main():
    args = common.parse_args(__doc__, FLAGS, QUICK, default_task="arith")
    common.comma_list(args.arms, list(ARMS), "arms")  # a bad arm fails now, not after a seed
    if not 0 < args.vote <= 1:
        common.fail(f"--vote is a share of the samples, in (0, 1]; got {args.vote}")
    common.run_seeds("rest_em", args, run_seed, FLAGS)


if __name__ == "__main__":
    main()
