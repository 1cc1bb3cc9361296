"""Closing the pass@1 -> pass@N gap: execution, majority voting and a learned verifier.

Paper: Liu, Singh, Freeman, Co-Reyes, Liu. "Improving Large Language Model Fine-tuning for
Solving Math Problems" (2023, arXiv 2310.10047), the solution re-ranking part; execution
filtering and behaviour clustering as in AlphaCode (Li et al. 2022); the verifier's scale as in
Cobbe et al. 2021.

The idea. A model that gets a problem right in one of 64 tries "knows" more than its first answer
shows: pass@64 is far above pass@1. Ways to turn N samples into ONE answer, no oracle at test time:
  - execution (code): run each sample on the VISIBLE examples of the prompt (part of the
    problem, not the hidden tests) and keep those that reproduce them; answer with the first
    survivor (`filter_first`), or cluster the survivors by their outputs on fresh random inputs
    and answer from the biggest cluster (`filter_cluster`);
  - majority vote (self-consistency, `maj`): the biggest cluster of equal answers (arith: equal
    text; code: equal behaviour on the fresh inputs);
  - re-rank with a verifier (methods/verifier.py): a copy of the generator fine-tuned on its OWN
    samples of pool problems, labelled by the oracle, to score (problem, answer); answer with the
    top-scored sample (rr_all), or the top-scored within the K biggest clusters (rr_topK: the
    vote filters out rare wrong answers the verifier likes), or the cluster with the largest sum
    of scores (weighted). Score: S(x, y) = p("C") / (p("C") + p("I")), trained with the paper's
    margin loss on a right and a wrong sample of the same problem,

        L_margin = max(0, log S(x, y-) - log S(x, y+) + lambda)                   (lambda = 1)

Why margin: re-ranking compares samples of ONE problem, and the margin loss only ever sees such
comparisons; cross-entropy on single samples (`xent_`) can lower its loss by learning which
PROBLEMS are hard without reading the answer. `small_`: a 1-layer GPT from scratch with the
margin loss (a verifier weaker than the generator). `exec_` (code): the main verifier's recipe
reading the program followed by its outputs on the visible inputs, which it can compare with the
expected outputs in the prompt: checking made as easy as the problem allows.

Why two tasks. On code, checking is easier than generating: the visible examples let a solver
check a program without the answer. On arith, checking a reversed sum IS computing it; there is
nothing to execute (the filters reduce to the first sample and the vote), and a verifier made
from the generator has no easier job than the generator: the labelled null.

Evaluation. N_max = 64 samples per test problem at temperature 0.8. For N < N_max the samples
are cut into N_max/N disjoint groups of N and each arm is averaged over the groups. pass@N is the
unbiased estimator computed from the same samples. Confidence intervals: a percentile bootstrap
over test problems. AUCs are over DISTINCT answers of a problem (an answer sampled 40 times is
one answer to rank; on code, programs that behave alike on the fresh inputs are one answer),
pooled and within problems.

Training the verifiers. 16 samples of 1,000 pool problems (Cobbe et al.: 100 of 7,500), a fifth
of the problems held out: every 50 steps the within-problem AUC on them is measured, the best
checkpoint is kept and training stops after 3 checks without a new best (`heldout_auc` of the
kept checkpoint, `start_auc` of the starting weights, `kept_step`, and `heldout_problems`, how
many held-out problems have both right and wrong answers: only those can be ranked).

Simplified relative to the papers: a GPT of 0.8M (arith) or 0.4M (code) parameters; far fewer
samples and problems than Cobbe et al. (the CPU budget: --train_problems and --train_samples
scale it up); no step-by-step solutions.

Run:
  python methods/rerank.py --task code           # execution, voting and verifiers on code
  python methods/rerank.py                       # arith, seed 0: the null
  python methods/rerank.py --seeds 0,1,2         # what results/rerank-<task>.* were written by
  python methods/rerank.py --quick               # tiny budget, same code path (for tests)

What you should see: pass@1 < maj@N < pass@N at every N > 1. On code, filter_first and
filter_cluster far above pass@1 and close to pass@N; on arith, the verifiers' within-problem AUC
near 0.5 and re-ranking no better than the vote. tutorials/07_rerank.md reads the 3-seed runs.
"""
import copy
import os
import random
import sys
import zlib

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root

import numpy as np
import torch

import common
from dsl import DSLError, fmt, parse_program, run_or_error
from model import GPT, GPTConfig
from sample import majority_vote, pass_at_k, sample_and_check
from sft import base_model
from verifier import auc, auc_within, distinct, margin_groups, train_verifier, verifier_scores

FLAGS = dict(
    problems=(300, "test problems"),
    samples=(64, "N_max: samples per test problem"),
    ns=("1,4,16,64", "the N of maj@N, rr@N, pass@N; each must divide --samples"),
    temperature=(0.8, "sampling temperature"),
    train_problems=(1000, "pool problems the verifiers' samples come from (a fifth of them held "
                          "out for early stopping)"),
    train_samples=(16, "generator samples per training problem (labelled by the oracle)"),
    verifier_steps=(600, "verifier training steps at most"),
    eval_every=(50, "verifier: within-problem AUC on the held-out problems every this many steps"),
    patience=(3, "verifier: stop after this many checks without a new best (the best is kept)"),
    batch_size=(32, "verifier batch size"),
    lr=(3e-4, "verifier peak learning rate"),
    warmup=(50, "learning-rate warm-up steps", 0),
    with_reference=(False, "add each training problem's reference answer as one more right "
                           "sample (on with --quick, whose tiny base is never right)"),
    margin=(1.0, "lambda of the margin loss, in nats of log S"),
    small_layers=(1, "small verifier: layers"),
    small_embd=(64, "small verifier: width (even: it has 2 heads)"),
    small_lr=(1e-3, "small verifier peak learning rate (it starts from scratch)"),
    verifiers=("", "verifiers to train, comma-separated ('': the task's VERIFIER_SETS)"),
)
QUICK = dict(problems=12, samples=8, ns="1,4,8", train_problems=20, train_samples=4,
             verifier_steps=10, eval_every=5, warmup=2, with_reference=True)

TOP_KS = (2, 4, 8)  # RR.Top-K: re-rank within the K biggest answer clusters
# The verifiers, in training order: the main one (margin loss, from the generator's weights),
# the same with cross-entropy, and the small one (margin loss, from scratch). `prefix` starts
# the names of the arms that use its scores; the two ablations get RR.Top-4 only.
VERIFIERS = {
    "verifier": dict(prefix="", top_ks=TOP_KS),
    "xent_verifier": dict(prefix="xent_", top_ks=(4,)),
    "small_verifier": dict(prefix="small_", top_ks=(4,)),
    # the main verifier's recipe, reading the program's outputs on the visible inputs too
    "exec_verifier": dict(prefix="exec_", top_ks=(4,)),
}
ARMS = ("pass@1", "maj", "filter_first", "filter_cluster",
        *[v["prefix"] + arm for v in VERIFIERS.values()
          for arm in ("rr_all", *[f"rr_top{k}" for k in v["top_ks"]], "weighted")],
        "pass@N")
# The verifiers a default run trains: on arith the main one and its two ablations; on code the
# main one without and with the program's outputs on the visible examples (the ablations' story
# is arith's, and each verifier on code's long prompts costs minutes)
VERIFIER_SETS = {"arith": "verifier,xent_verifier,small_verifier", "code": "verifier,exec_verifier"}
FRESH_INPUTS = 10  # random inputs per code problem on which programs are clustered by behaviour


# ---------------------------------------------------------------------------------------------
# Executing a sample: what the problem lets a solver run without the hidden tests

def fresh_inputs(problem, n=FRESH_INPUTS):
    """n random input lists drawn as the task draws its own (3 to 5 digits), seeded by the
    prompt: inputs whose right outputs nobody knows."""
    rng = random.Random(zlib.crc32(problem.prompt.encode()))
    return [[rng.randrange(10) for _ in range(rng.randint(3, 5))] for _ in range(n)]


def behaviour(problem, completion, inputs):
    """What a sample does, for clustering. Code: its outputs on `inputs` (every program that
    does not parse is the same behaviour, None). Arith has nothing to run: the answer's text."""
    if not problem.examples:
        return completion
    try:
        steps = parse_program(completion)
    except DSLError:
        return None
    return tuple(fmt(run_or_error(steps, xs)) for xs in inputs)


def passes_visible(task, problem, completion):
    """Does the sample reproduce the visible examples of the prompt? (True without examples.)"""
    return task.visible_pass(problem, completion) if problem.examples else True


def with_outputs(problem, completion):
    """The sample as exec_verifier reads it: the program, then its outputs on the visible
    inputs ("sort | rev => [3,2,1] [9,4] [5]"), which the prompt's expected outputs sit above."""
    try:
        steps = parse_program(completion)
        outs = [fmt(run_or_error(steps, xs)) for xs, _ in problem.examples]
    except DSLError:
        outs = ["syntax"]
    return f"{completion} => {' '.join(outs)}"


# ---------------------------------------------------------------------------------------------
# Turning N samples into one answer. Each function returns the INDEX of the chosen sample.
# Ties always go to the sample seen first, so every arm is deterministic.

def top_clusters(answers, k):
    """The answers of the k biggest clusters (identical answers), biggest first; equal sizes are
    ordered by first appearance, the same rule as sample.majority_vote."""
    counts, first = {}, {}
    for i, a in enumerate(answers):
        counts[a] = counts.get(a, 0) + 1
        first.setdefault(a, i)
    order = sorted(counts, key=lambda a: (-counts[a], first[a]))
    return order[:k]


def pick_majority(answers):
    """Self-consistency: a sample of the most common answer (its first occurrence)."""
    return answers.index(majority_vote(answers))


def pick_rerank(answers, scores, keep=None):
    """The highest-scored sample (first on ties); with `keep`, only among answers in `keep`."""
    candidates = [i for i, a in enumerate(answers) if keep is None or a in keep]
    return max(candidates, key=lambda i: scores[i])  # max returns the first of equal maxima


def pick_weighted(answers, scores):
    """Weighted vote: the cluster with the largest SUM of verifier scores (first on ties)."""
    total = {}
    for a, s in zip(answers, scores):
        total[a] = total.get(a, 0.0) + s
    best = max(total.values())
    return next(i for i, a in enumerate(answers) if total[a] == best)


def pick_filter_first(visible):
    """The first sample that reproduces the visible examples (none does: the first sample)."""
    return visible.index(True) if True in visible else 0


def pick_filter_cluster(keys, visible):
    """Among the samples that reproduce the visible examples, one of the biggest cluster of
    equal behaviour on fresh inputs (AlphaCode); none does: the majority behaviour."""
    survivors = [i for i, ok in enumerate(visible) if ok]
    if not survivors:
        return pick_majority(keys)
    return survivors[pick_majority([keys[i] for i in survivors])]


def arm_picks(answers, scores, keys=None, visible=None):
    """{arm: chosen index} for one group of N samples; `scores` maps a name of VERIFIERS to the
    samples' scores under that verifier. Clusters are samples of equal `keys` (their behaviour;
    default: equal text), `visible` says which pass the visible examples (default: all)."""
    keys = answers if keys is None else keys
    visible = [True] * len(answers) if visible is None else visible
    picks = {"maj": pick_majority(keys), "filter_first": pick_filter_first(visible),
             "filter_cluster": pick_filter_cluster(keys, visible)}
    for name, sc in scores.items():
        prefix = VERIFIERS[name]["prefix"]
        picks[prefix + "rr_all"] = pick_rerank(keys, sc)
        for k in VERIFIERS[name]["top_ks"]:
            picks[f"{prefix}rr_top{k}"] = pick_rerank(keys, sc, keep=top_clusters(keys, k))
        picks[prefix + "weighted"] = pick_weighted(keys, sc)
    return picks


def per_problem_accuracy(answers, correct, scores, n, keys=None, visible=None):
    """One problem's N_max samples cut into N_max/n disjoint groups of n. Returns {arm: share of
    groups whose chosen answer is correct}; pass@1 and pass@N come from the estimator."""
    n_max = len(answers)
    keys = answers if keys is None else keys
    visible = [True] * n_max if visible is None else visible
    hits = {}
    for g in range(n_max // n):
        sl = slice(g * n, (g + 1) * n)
        picks = arm_picks(answers[sl], {name: sc[sl] for name, sc in scores.items()}, keys[sl],
                          visible[sl])
        for arm, i in picks.items():
            hits[arm] = hits.get(arm, 0) + int(correct[sl][i])
    acc = {arm: h / (n_max // n) for arm, h in hits.items()}
    c = int(sum(correct))
    acc["pass@1"] = pass_at_k(n_max, c, 1)
    acc["pass@N"] = pass_at_k(n_max, c, n)
    return acc


def bootstrap_ci(values, reps=1000, seed=0, alpha=0.05):
    """Percentile bootstrap over problems of the mean of `values`: (low, high)."""
    v = np.asarray(values, dtype=float)  # (P,)
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), size=(reps, len(v)))].mean(axis=1)  # (reps,)
    return float(np.quantile(means, alpha / 2)), float(np.quantile(means, 1 - alpha / 2))


# ---------------------------------------------------------------------------------------------
# One seed end to end

def sizes(ns, samples):
    """--ns '1,4,16,64' -> [1, 4, 16, 64]; every N must divide the N_max = `samples`."""
    try:
        out = sorted({int(x) for x in ns.split(",") if x.strip()})
    except ValueError:
        common.fail(f"--ns must be comma-separated integers, got {ns!r}")
    if not out or any(n < 1 or samples % n for n in out):
        common.fail(f"every N in --ns must be >= 1 and divide --samples {samples}, got {ns!r}")
    return out


def run_seed(seed, task, device, quick, problems, samples, ns, temperature, train_problems,
             train_samples, verifier_steps, eval_every, patience, batch_size, lr, warmup,
             with_reference, margin, small_layers, small_embd, small_lr, verifiers):
    """Sample, train the verifiers, score, and compute every arm at every N."""
    gen = base_model(task, seed=seed, device=device, quick=quick)
    test = task.problems(problems, seed=0, split="test")
    runnable = bool(test[0].examples)  # code: samples can be run on the visible examples
    names = [v for v in common.comma_list(verifiers or VERIFIER_SETS[task.name], list(VERIFIERS),
                                          "verifiers") if runnable or v != "exec_verifier"]

    # 1. the verifiers' training data: the generator's own samples of pool problems; a fifth
    # of the problems held out, on which early stopping measures the within-problem AUC
    train_set = task.problems(train_problems, seed=1000 + seed, split="pool")
    tr_samples, tr_correct = sample_and_check(gen, task, train_set, train_samples, temperature,
                                              seed=seed + 1)
    held = len(train_set) // 5
    heldout = [(p, ss, cs, [behaviour(p, s, fresh_inputs(p)) for s in ss])
               for p, ss, cs in zip(train_set[:held], tr_samples[:held], tr_correct[:held])]
    triples = [(p, s, c) for p, ss, cs in zip(train_set[held:], tr_samples[held:],
                                              tr_correct[held:]) for s, c in zip(ss, cs)]
    if with_reference:  # off by default (the paper uses the generator's samples only)
        triples += [(p, p.answer, True) for p in train_set[held:]]
    examples = [(p.prompt, s, c) for p, s, c in triples]
    shown = [(p.prompt, with_outputs(p, s), c) for p, s, c in triples] if runnable else []
    print(f"seed {seed}: {len(examples)} verifier examples "
          f"({np.mean([e[2] for e in examples]):.0%} correct, {len(margin_groups(examples))} "
          f"problems with right and wrong samples)", flush=True)

    # 2. the test samples: N_max per test problem; what each does, and whether it passes the
    # visible examples (both computed without the hidden tests)
    test_samples, correct = sample_and_check(gen, task, test, samples, temperature, seed=seed)
    keys = [[behaviour(p, s, fresh_inputs(p)) for s in ss] for p, ss in zip(test, test_samples)]
    visible = [[passes_visible(task, p, s) for s in ss] for p, ss in zip(test, test_samples)]

    # 3. the verifiers: each from its starting weights, with its loss, rate and view of a sample
    def small():  # from scratch, its initial weights drawn from the seed
        torch.manual_seed(seed)
        return GPT(GPTConfig(n_layer=small_layers, n_head=2, n_embd=small_embd,
                             block_size=gen.config.block_size)).to(device)

    recipe = {"verifier": (lambda: copy.deepcopy(gen), "margin", lr, examples),
              "xent_verifier": (lambda: copy.deepcopy(gen), "xent", lr, examples),
              "small_verifier": (small, "margin", small_lr, examples),
              "exec_verifier": (lambda: copy.deepcopy(gen), "margin", lr, shown)}
    view = {name: (with_outputs if name == "exec_verifier" else lambda p, s: s) for name in names}

    def heldout_auc(model, see):  # within-problem AUC over distinct behaviours, held-out problems
        table = verifier_scores(model, [(p.prompt, see(p, s)) for p, ss, _, _ in heldout
                                        for s in ss], progress=False)
        return auc_within([[table[(p.prompt, see(p, s))] for s in ss] for p, ss, _, _ in heldout],
                          [cs for _, _, cs, _ in heldout], [ks for _, _, _, ks in heldout])

    scores, losses, kept = {}, {}, {}
    for name in names:
        make, loss, rate, data = recipe[name]
        model = make()
        losses[name], kept[name] = train_verifier(
            model, data, verifier_steps, batch_size, rate, warmup, loss, margin, seed=seed,
            desc=f"{name} seed {seed}", heldout=lambda m: heldout_auc(m, view[name]),
            eval_every=eval_every, patience=patience)
        # 4. score every test sample: scores[name][problem][sample]
        pairs = [(p.prompt, view[name](p, s)) for p, ss in zip(test, test_samples) for s in ss]
        table = verifier_scores(model, pairs)
        scores[name] = [[table[(p.prompt, view[name](p, s))] for s in ss]
                        for p, ss in zip(test, test_samples)]

    # 5. every arm at every N, with a bootstrap interval over problems
    rows = []
    for n in sizes(ns, samples):
        per_problem = [per_problem_accuracy(test_samples[j], correct[j],
                                            {name: sc[j] for name, sc in scores.items()}, n,
                                            keys[j], visible[j])
                       for j in range(len(test))]
        for arm in [a for a in ARMS if a in per_problem[0]]:
            values = [acc[arm] for acc in per_problem]
            lo, hi = bootstrap_ci(values, seed=seed)
            rows += common.rows_of(arm, n, dict(test_acc=np.mean(values), ci_lo=lo, ci_hi=hi))
    # how well each verifier separates right from wrong answers: pooled, and within problems
    # (what re-ranking needs), over DISTINCT answers (code: distinct behaviours); left out where
    # undefined. heldout_auc and kept_step: the checkpoint early stopping kept; train_loss: the
    # last 20 training steps before it
    rankable = sum(0 < sum(c) < len(c) for c in (distinct(ks, cs)[0] for _, _, cs, ks in heldout))
    for name in names:
        flat = [distinct(ks, sc, cs) for ks, sc, cs in zip(keys, scores[name], correct)]
        before = losses[name][:kept[name].get("step")]  # the steps up to the kept checkpoint
        metrics = dict(auc=auc([s for f in flat for s in f[0]], [c for f in flat for c in f[1]]),
                       auc_within=auc_within(scores[name], correct, keys),
                       heldout_auc=kept[name].get("heldout_auc", float("nan")),
                       start_auc=kept[name].get("start_auc", float("nan")),
                       kept_step=kept[name].get("step", float("nan")),
                       heldout_problems=rankable,
                       train_loss=np.mean(before[-20:]) if before else float("nan"))
        metrics = {m: v for m, v in metrics.items() if not np.isnan(v)}
        common.show(f"seed {seed} {name}", metrics)
        rows += common.rows_of(name, 0, metrics)
    return rows


def main():
    args = common.parse_args(__doc__, FLAGS, QUICK, default_task="arith")
    sizes(args.ns, args.samples)  # a bad --ns fails now, not after a seed
    if args.small_embd % 2:
        common.fail(f"--small_embd must be an even number (2 heads), got {args.small_embd}")
    common.comma_list(args.verifiers or VERIFIER_SETS[args.task], list(VERIFIERS), "verifiers")
    common.run_seeds("rerank", args, run_seed, FLAGS)


if __name__ == "__main__":
    main()
