"""Closing the pass@1 -> pass@N gap: majority voting and a learned verifier.

Paper: Liu, Singh, Freeman, Co-Reyes, Liu. "Improving Large Language Model Fine-tuning for
Solving Math Problems" (2023, arXiv 2310.10047), the solution re-ranking part.

The idea. A model that gets a problem right in one of 64 tries "knows" more than its first answer
shows: pass@64 is far above pass@1. Three ways to turn N samples into ONE answer, no oracle at
test time:
  - majority vote (self-consistency): group the samples by final answer, answer with the
    biggest group;
  - re-rank with a verifier: a copy of the model fine-tuned to say whether a (problem, answer)
    is correct, trained on the generator's OWN samples of training problems, labelled by the
    oracle; answer with the sample it scores highest (RR.All);
  - both (solution-cluster re-ranking, RR.Top-K): keep only the K biggest answer groups, then
    let the verifier pick inside them. The paper's point: the verifier is fooled by rare wrong
    answers, and the vote filters those out first. And a weighted vote (W.RR): each group's
    score is the SUM of its members' verifier scores.

The verifier reads "prompt completion <|endoftext|>" and, at the end-of-text position, predicts
one token: "C" (correct) or "I" (incorrect). Its score is the paper's S_cls:

    S(x, y) = p("C") / (p("C") + p("I")) = sigmoid(z),   z = logit_C - logit_I

It starts from the generator's own weights (the base model), not from scratch: it already
computes the arithmetic it has to check. It is trained (methods/sft.py's one training loop) with
the paper's margin loss on a right sample y+ and a wrong sample y- of the SAME training problem x:

    L_margin = max(0, log S(x, y-) - log S(x, y+) + lambda)                       (lambda = 1)

We also train the paper's other choice, cross-entropy on the label token of single samples,

    L_xent = - [ l * log S(x, y) + (1 - l) * log(1 - S(x, y)) ]   (l = 1 if the oracle says right)

as the `xent_` ablation. Why margin is the main one: re-ranking compares samples of ONE problem,
and the margin loss only ever sees such comparisons. Cross-entropy can get its loss down by
learning which PROBLEMS are hard (3-digit times 1-digit is wrong far more often than addition)
without looking at the answer; that gives a high pooled AUC and no help in choosing among the
samples of one problem. The price: problems whose training samples are all right or all wrong
give the margin loss no pair. The `small_` ablation is a 1-layer GPT trained from scratch with
the margin loss on the same samples: the toy version of the paper's finding that a verifier
weaker than the generator cannot re-rank its samples.

Evaluation. N_max = 64 samples per test problem at temperature 0.8. For N < N_max the samples
are cut into N_max/N disjoint groups of N and each arm is averaged over the groups, so every N
uses all samples (less noise than one group). pass@N is the unbiased estimator of Chen et al.
computed from the same samples. Confidence intervals: a percentile bootstrap over test problems.

Simplified relative to the paper: a 0.8M-parameter GPT and arithmetic instead of PaLM 2 and MATH;
answers are clustered by their exact text (arith has one way to write a right answer; for code
two different programs that behave alike stay in different clusters); no step-by-step
solutions, so the verifier judges a final answer only; 16 samples per training problem instead
of 64 (more problems instead); no multi-task sequential fine-tuning of the generator afterwards.

Run:
  python methods/rerank.py                       # arith, seed 0: a few minutes on a CPU
  python methods/rerank.py --seeds 0,1,2         # what results/rerank-arith.* were written by
  python methods/rerank.py --task code
  python methods/rerank.py --quick               # tiny budget, same code path (for tests)

What you should see: pass@1 < maj@N < pass@N at every N > 1, with a large pass@N - maj@N gap
left for a verifier to close. Whether it closes any (rr_*, weighted above maj) is what the run
measures; the `auc_within` column (how well a verifier orders the samples of one problem) says
why. tutorials/07_rerank.md reports what happened, with bootstrap intervals.
"""
import copy
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

import common
from model import EOT, GPT, GPTConfig, encode
from sample import majority_vote, pass_at_k, sample_and_check
from sft import base_model, train

FLAGS = dict(
    problems=(500, "test problems"),
    samples=(64, "N_max: samples per test problem"),
    ns=("1,4,16,64", "the N of maj@N, rr@N, pass@N; each must divide --samples"),
    temperature=(0.8, "sampling temperature"),
    train_problems=(2000, "training problems the verifiers' samples come from"),
    train_samples=(16, "generator samples per training problem (labelled by the oracle)"),
    verifier_steps=(600, "verifier training steps"),
    batch_size=(64, "verifier batch size"),
    lr=(3e-4, "verifier peak learning rate"),
    warmup=(50, "learning-rate warm-up steps", 0),
    with_reference=(False, "add each training problem's reference answer as one more right "
                           "sample (on with --quick, whose tiny base is never right)"),
    margin=(1.0, "lambda of the margin loss, in nats of log S"),
    small_layers=(1, "small verifier: layers"),
    small_embd=(64, "small verifier: width (even: it has 2 heads)"),
    small_lr=(1e-3, "small verifier peak learning rate (it starts from scratch)"),
)
QUICK = dict(problems=12, samples=8, ns="1,4,8", train_problems=20, train_samples=4,
             verifier_steps=10, warmup=2, with_reference=True)

YES, NO = encode("C")[0], encode("I")[0]  # the verifier's two label tokens
TOP_KS = (2, 4, 8)  # RR.Top-K: re-rank within the K biggest answer clusters
# The verifiers, in training order: the main one (margin loss, from the generator's weights),
# the same with cross-entropy, and the small one (margin loss, from scratch). `prefix` starts
# the names of the arms that use its scores; the two ablations get RR.Top-4 only.
VERIFIERS = {
    "verifier": dict(prefix="", top_ks=TOP_KS),
    "xent_verifier": dict(prefix="xent_", top_ks=(4,)),
    "small_verifier": dict(prefix="small_", top_ks=(4,)),
}
ARMS = ("pass@1", "maj",
        *[v["prefix"] + arm for v in VERIFIERS.values()
          for arm in ("rr_all", *[f"rr_top{k}" for k in v["top_ks"]], "weighted")],
        "pass@N")


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


def arm_picks(answers, scores):
    """{arm: chosen index} for one group of N samples; `scores` maps a name of VERIFIERS to the
    samples' scores under that verifier."""
    picks = {"maj": pick_majority(answers)}
    for name, sc in scores.items():
        prefix = VERIFIERS[name]["prefix"]
        picks[prefix + "rr_all"] = pick_rerank(answers, sc)
        for k in VERIFIERS[name]["top_ks"]:
            picks[f"{prefix}rr_top{k}"] = pick_rerank(answers, sc, keep=top_clusters(answers, k))
        picks[prefix + "weighted"] = pick_weighted(answers, sc)
    return picks


def per_problem_accuracy(answers, correct, scores, n):
    """One problem's N_max samples cut into N_max/n disjoint groups of n. Returns {arm: share of
    groups whose chosen answer is correct}; pass@1 and pass@N come from the estimator."""
    n_max = len(answers)
    hits = {}
    for g in range(n_max // n):
        sl = slice(g * n, (g + 1) * n)
        for arm, i in arm_picks(answers[sl], {name: sc[sl] for name, sc in scores.items()}).items():
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


def auc(scores, labels):
    """Area under the ROC curve: P(score of a correct sample > score of a wrong one), ties
    count half (Mann-Whitney U from average ranks). NaN if one class is missing."""
    s, y = np.asarray(scores, dtype=float), np.asarray(labels, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    uniq, inv, counts = np.unique(s, return_inverse=True, return_counts=True)
    last = np.cumsum(counts)  # rank (1-based) of the last member of each run of equal scores
    avg_rank = (last - (counts - 1) / 2.0)[inv]  # (M,) average rank of every sample
    return float((avg_rank[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def auc_within(scores, correct):
    """Mean AUC inside each problem that has both right and wrong samples. This, not the pooled
    AUC, is what re-ranking needs: a verifier that only knows which PROBLEMS are easy has a high
    pooled AUC and a within-problem AUC of 0.5."""
    values = [auc(s, c) for s, c in zip(scores, correct) if 0 < sum(c) < len(c)]
    return float(np.mean(values)) if values else float("nan")


# ---------------------------------------------------------------------------------------------
# The verifier: "prompt completion <|endoftext|>" -> p("C") vs p("I") at the last position

def verifier_logit(model, prompts, completions):
    """z = logit("C") - logit("I") at the end of each "prompt completion <|endoftext|>": (B,),
    with autograd. sigmoid(z) = p(C) / (p(C) + p(I)) is the verifier's score."""
    device = next(model.parameters()).device
    rows = [(encode(p) + encode(c))[:model.config.block_size - 1] + [EOT]  # over-long: cut
            for p, c in zip(prompts, completions)]
    idx = torch.full((len(rows), max(len(r) for r in rows)), EOT, dtype=torch.long)  # (B, T)
    for i, r in enumerate(rows):  # right-padded
        idx[i, :len(r)] = torch.tensor(r)
    last = torch.tensor([len(r) - 1 for r in rows], device=device)  # (B,): each row's last token
    logits, _ = model(idx.to(device))  # (B, T, vocab)
    at_end = logits[torch.arange(len(rows), device=device), last].float()  # (B, vocab)
    return at_end[:, YES] - at_end[:, NO]  # (B,)


def margin_groups(examples):
    """[(prompt, right completions, wrong completions)] for every problem that has both: the
    only problems a pairwise (margin) loss can learn from."""
    by_prompt = {}
    for prompt, completion, ok in examples:
        by_prompt.setdefault(prompt, ([], []))[0 if ok else 1].append(completion)
    return [(p, r, w) for p, (r, w) in by_prompt.items() if r and w]


def xent_loss(model, examples, batch_size, rng):
    """Binary cross-entropy on the C/I token of single (prompt, completion, correct?) samples."""
    batch = [examples[i] for i in torch.randint(len(examples), (batch_size,), generator=rng)]
    z = verifier_logit(model, [b[0] for b in batch], [b[1] for b in batch])  # (B,)
    labels = torch.tensor([float(b[2]) for b in batch], device=z.device)  # (B,)
    return F.binary_cross_entropy_with_logits(z, labels)


def margin_loss(model, groups, batch_size, rng, margin=1.0):
    """max(0, log S(wrong) - log S(right) + margin) on a right and a wrong sample of the same
    problem (a margin_groups entry), so only the ANSWER, never the problem, can tell them apart."""
    prompts, rights, wrongs = [], [], []
    for g in torch.randint(len(groups), (batch_size,), generator=rng).tolist():
        prompt, right, wrong = groups[g]
        prompts.append(prompt)
        rights.append(right[torch.randint(len(right), (1,), generator=rng).item()])
        wrongs.append(wrong[torch.randint(len(wrong), (1,), generator=rng).item()])
    z = verifier_logit(model, prompts + prompts, rights + wrongs)  # (2B,): rights, then wrongs
    log_s = F.logsigmoid(z)  # log S = log p(C) / (p(C) + p(I))
    return torch.relu(log_s[batch_size:] - log_s[:batch_size] + margin).mean()


def train_verifier(model, examples, steps, batch_size, lr, warmup, loss="margin", margin=1.0,
                   seed=0, desc="verifier", progress=True):
    """Train `model` to score (prompt, completion, correct?) examples with the "margin" or the
    "xent" loss: the repo's one training loop (sft.train), batches drawn with replacement by its
    seeded generator. Returns the loss of every step."""
    groups = margin_groups(examples)
    data, batch_loss = {
        "xent": (examples, lambda rng: xent_loss(model, examples, batch_size, rng)),
        "margin": (groups, lambda rng: margin_loss(model, groups, batch_size, rng, margin)),
    }[loss]
    if not data:
        raise ValueError(f"no training data for the {loss} loss (the margin loss needs a problem "
                         "with both a right and a wrong sample)")
    return train(model, batch_loss, steps, lr, warmup, seed=seed, desc=desc, progress=progress)


@torch.no_grad()
def verifier_scores(model, pairs, batch_size=1024, progress=True):
    """{(prompt, completion): score in [0, 1]} for each distinct pair (duplicates scored once)."""
    model.eval()
    distinct = list(dict.fromkeys(pairs))
    out = {}
    for s in tqdm(range(0, len(distinct), batch_size), desc="score", disable=not progress,
                  leave=False):
        chunk = distinct[s:s + batch_size]
        z = verifier_logit(model, [c[0] for c in chunk], [c[1] for c in chunk])  # (B,)
        for pair, p in zip(chunk, torch.sigmoid(z).tolist()):
            out[pair] = p
    return out


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
             train_samples, verifier_steps, batch_size, lr, warmup, with_reference, margin,
             small_layers, small_embd, small_lr):
    """Sample, train the three verifiers, score, and compute every arm at every N."""
    gen = base_model(task, seed=seed, device=device, quick=quick)
    test = task.problems(problems, seed=0, split="test")

    # 1. the verifiers' training data: the generator's own samples of TRAINING problems
    train_set = task.problems(train_problems, seed=1000 + seed, split="pool")
    tr_samples, tr_correct = sample_and_check(gen, task, train_set, train_samples, temperature,
                                              seed=seed + 1)
    examples = [(p.prompt, s, c) for p, ss, cs in zip(train_set, tr_samples, tr_correct)
                for s, c in zip(ss, cs)]
    if with_reference:  # off by default (the paper uses the generator's samples only)
        examples += [(p.prompt, p.answer, True) for p in train_set]
    print(f"seed {seed}: {len(examples)} verifier examples "
          f"({np.mean([e[2] for e in examples]):.0%} correct, {len(margin_groups(examples))} "
          f"problems with right and wrong samples)", flush=True)

    # 2. the test samples: N_max per test problem
    test_samples, correct = sample_and_check(gen, task, test, samples, temperature, seed=seed)

    # 3. the verifiers: each from its starting weights, with its loss and learning rate
    def trained(name, model, loss, rate):
        return model, train_verifier(model, examples, verifier_steps, batch_size, rate, warmup,
                                     loss, margin, seed=seed, desc=f"{name} seed {seed}")

    def small():  # from scratch, its initial weights drawn from the seed
        torch.manual_seed(seed)
        return GPT(GPTConfig(n_layer=small_layers, n_head=2, n_embd=small_embd,
                             block_size=gen.config.block_size)).to(device)

    make = {"verifier": lambda: trained("verifier", copy.deepcopy(gen), "margin", lr),
            "xent_verifier": lambda: trained("xent_verifier", copy.deepcopy(gen), "xent", lr),
            "small_verifier": lambda: trained("small_verifier", small(), "margin", small_lr)}
    models, losses = {}, {}
    for name in VERIFIERS:
        models[name], losses[name] = make[name]()

    # 4. score every test sample with every verifier: scores[name][problem][sample]
    pairs = [(p.prompt, s) for p, ss in zip(test, test_samples) for s in ss]
    scores = {}
    for name, model in models.items():
        table = verifier_scores(model, pairs)
        scores[name] = [[table[(p.prompt, s)] for s in ss] for p, ss in zip(test, test_samples)]

    # 5. every arm at every N, with a bootstrap interval over problems
    rows = []
    for n in sizes(ns, samples):
        per_problem = [per_problem_accuracy(test_samples[j], correct[j],
                                            {name: sc[j] for name, sc in scores.items()}, n)
                       for j in range(len(test))]
        for arm in ARMS:
            values = [acc[arm] for acc in per_problem]
            lo, hi = bootstrap_ci(values, seed=seed)
            rows += common.rows_of(arm, n, dict(test_acc=np.mean(values), ci_lo=lo, ci_hi=hi))
    # how well each verifier separates right from wrong: pooled over all test samples, and
    # within problems (what re-ranking needs); left out where undefined (all right, or all wrong)
    flat_labels = [c for cs in correct for c in cs]
    for name in VERIFIERS:
        metrics = dict(auc=auc([s for ss in scores[name] for s in ss], flat_labels),
                       auc_within=auc_within(scores[name], correct),
                       train_loss=np.mean(losses[name][-20:]))
        metrics = {m: v for m, v in metrics.items() if not np.isnan(v)}
        common.show(f"seed {seed} {name}", metrics)
        rows += common.rows_of(name, 0, metrics)
    return rows


def main():
    args = common.parse_args(__doc__, FLAGS, QUICK, default_task="arith")
    sizes(args.ns, args.samples)  # a bad --ns fails now, not after a seed
    if args.small_embd % 2:
        common.fail(f"--small_embd must be an even number (2 heads), got {args.small_embd}")
    common.run_seeds("rerank", args, run_seed, FLAGS)


if __name__ == "__main__":
    main()
