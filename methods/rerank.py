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
computes the arithmetic it has to check. It is trained with the paper's margin loss on a right
sample y+ and a wrong sample y- of the SAME training problem x:

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
  python methods/rerank.py                       # arith, seed 0, about 3 minutes on a laptop CPU
  python methods/rerank.py --seeds 0,1,2         # what results/rerank-arith.* were written by
  python methods/rerank.py --task code
  python methods/rerank.py --quick               # tiny budget, same code path (for tests)

What you should see: pass@1 < maj@N < pass@N at every N > 1, with a large pass@N - maj@N gap
left for a verifier to close. Whether it closes any (rr_*, weighted above maj) is what the run
measures; the `auc_within` column (how well a verifier orders the samples of one problem) says
why. tutorials/07_rerank.md reports what happened, with bootstrap intervals.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

import common  # noqa: E402
from model import EOT, GPT, GPTConfig, autocast, encode  # noqa: E402
from sample import generate, majority_vote, pass_at_k  # noqa: E402
from sft import adamw, base_model, lr_at  # noqa: E402
from verify import TASKS  # noqa: E402

YES, NO = encode("C")[0], encode("I")[0]  # the verifier's two label tokens
TOP_KS = (2, 4, 8)  # RR.Top-K: re-rank within the K biggest answer clusters


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
    best = None
    for i, (a, s) in enumerate(zip(answers, scores)):
        if keep is not None and a not in keep:
            continue
        if best is None or s > scores[best]:
            best = i
    return best


def pick_weighted(answers, scores):
    """Weighted vote: the cluster with the largest SUM of verifier scores (first on ties)."""
    total = {}
    for a, s in zip(answers, scores):
        total[a] = total.get(a, 0.0) + s
    best = max(total.values())
    return next(i for i, a in enumerate(answers) if total[a] == best)


# The verifiers whose scores an arm can use, by arm-name prefix: the main verifier (margin loss),
# the same verifier trained with cross-entropy, and the small one (margin loss, from scratch).
VERIFIERS = {"": "verifier", "xent_": "xent_verifier", "small_": "small_verifier"}


def arm_picks(answers, scores):
    """{arm: chosen index} for one group of N samples; `scores` maps a VERIFIERS prefix to the
    samples' scores. The main verifier gets every top-K; the two ablations get K = 4 only."""
    picks = {"maj": pick_majority(answers)}
    for prefix, sc in scores.items():
        picks[prefix + "rr_all"] = pick_rerank(answers, sc)
        for k in (TOP_KS if prefix == "" else (4,)):
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
        group_scores = {prefix: sc[sl] for prefix, sc in scores.items()}
        for arm, i in arm_picks(answers[sl], group_scores).items():
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

def verifier_batch(prompts, completions, block_size):
    """Right-padded token ids (B, T) and the index of each row's last token (B,)."""
    rows = []
    for p, c in zip(prompts, completions):
        ids = (encode(p) + encode(c))[:block_size - 1] + [EOT]  # over-long samples are cut
        rows.append(ids)
    T = max(len(r) for r in rows)
    idx = torch.full((len(rows), T), EOT, dtype=torch.long)
    for i, r in enumerate(rows):
        idx[i, :len(r)] = torch.tensor(r)
    last = torch.tensor([len(r) - 1 for r in rows])
    return idx, last


def verifier_logit(model, prompts, completions):
    """z = logit("C") - logit("I") after each (prompt, completion): (B,), with autograd.
    sigmoid(z) = p(C) / (p(C) + p(I)) is the verifier's score."""
    device = next(model.parameters()).device
    idx, last = verifier_batch(prompts, completions, model.config.block_size)
    idx, last = idx.to(device), last.to(device)
    with autocast(device):
        logits, _ = model(idx)  # (B, T, vocab)
    at_end = logits[torch.arange(len(last), device=device), last].float()  # (B, vocab)
    return at_end[:, YES] - at_end[:, NO]  # (B,)


def margin_groups(examples):
    """[(prompt, right completions, wrong completions)] for every problem that has both: the
    only problems a pairwise (margin) loss can learn from."""
    by_prompt = {}
    for prompt, completion, ok in examples:
        by_prompt.setdefault(prompt, ([], []))[0 if ok else 1].append(completion)
    return [(p, r, w) for p, (r, w) in by_prompt.items() if r and w]


def verifier_loss(model, examples, groups, loss, batch_size, rng, margin=1.0):
    """One batch's loss. `xent`: binary cross-entropy on the C/I token of single samples.
    `margin`: max(0, log S(wrong) - log S(right) + margin) on a right and a wrong sample of the
    same problem, so only the ANSWER, never the problem, can tell them apart."""
    if loss == "xent":
        batch = [examples[i] for i in torch.randint(len(examples), (batch_size,), generator=rng)]
        z = verifier_logit(model, [b[0] for b in batch], [b[1] for b in batch])  # (B,)
        labels = torch.tensor([float(b[2]) for b in batch], device=z.device)  # (B,)
        return torch.nn.functional.binary_cross_entropy_with_logits(z, labels)
    prompts, rights, wrongs = [], [], []
    for g in torch.randint(len(groups), (batch_size,), generator=rng).tolist():
        prompt, right, wrong = groups[g]
        prompts.append(prompt)
        rights.append(right[torch.randint(len(right), (1,), generator=rng).item()])
        wrongs.append(wrong[torch.randint(len(wrong), (1,), generator=rng).item()])
    z = verifier_logit(model, prompts + prompts, rights + wrongs)  # (2B,): rights, then wrongs
    log_s = torch.nn.functional.logsigmoid(z)  # log S = log p(C) / (p(C) + p(I))
    return torch.relu(log_s[batch_size:] - log_s[:batch_size] + margin).mean()


def train_verifier(model, examples, steps, batch_size, lr, warmup, loss="margin", margin=1.0,
                   weight_decay=0.1, seed=0, desc="verifier", progress=True):
    """Train `model` to score (prompt, completion, correct?) examples with the `loss` of
    verifier_loss; batches drawn with replacement by a seeded generator. Returns the losses."""
    groups = margin_groups(examples)
    if not examples or (loss == "margin" and not groups):
        raise ValueError(f"no training data for the {loss} loss (the margin loss needs a problem "
                         "with both a right and a wrong sample)")
    device = next(model.parameters()).device
    opt = adamw(model, lr, weight_decay)
    rng = torch.Generator().manual_seed(seed)
    model.train()
    losses = []
    bar = tqdm(range(steps), desc=desc, disable=not progress, leave=False, mininterval=1.0)
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, lr, warmup)
        value = verifier_loss(model, examples, groups, loss, batch_size, rng, margin)
        opt.zero_grad(set_to_none=True)
        value.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(value.item())
        if step % 50 == 0:
            bar.set_postfix(loss=f"{value.item():.3f}")
    model.eval()
    return losses


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

def sample_and_label(model, task, problems, n, temperature, seed):
    """n samples per problem and the oracle's verdicts: (samples, correct), lists of lists."""
    samples = generate(model, [p.prompt for p in problems], n=n,
                       max_new_tokens=task.max_new_tokens, temperature=temperature, seed=seed,
                       max_rows=4096)
    correct = [[task.check(p, s).correct for s in ss] for p, ss in zip(problems, samples)]
    return samples, correct


def run_seed(args, task, test_problems, seed, device):
    """Sample, train the three verifiers, score, and compute every arm. Returns tidy rows."""
    t0 = time.time()
    gen = base_model(args.task, seed=seed, device=device, quick=args.quick)
    common.seed_everything(seed)

    # 1. the verifiers' training data: the generator's own samples of TRAINING problems
    train_problems = task.problems(args.train_problems, seed=1000 + seed, split="train")
    tr_samples, tr_correct = sample_and_label(gen, task, train_problems, args.train_samples,
                                              args.temperature, seed + 1)
    examples = [(p.prompt, s, c) for p, ss, cs in zip(train_problems, tr_samples, tr_correct)
                for s, c in zip(ss, cs)]
    if args.with_reference:  # off by default (the paper uses the generator's samples only)
        examples += [(p.prompt, p.answer, True) for p in train_problems]
    share = float(np.mean([e[2] for e in examples]))

    # 2. the test samples: N_max per test problem
    samples, correct = sample_and_label(gen, task, test_problems, args.samples,
                                        args.temperature, seed)
    t_sample = time.time() - t0

    # 3. verifier = the generator's weights, fine-tuned to score C vs I; the main one with the
    # margin loss, an ablation with cross-entropy; and a small one from scratch (margin loss)
    verifiers = {}
    for name, loss in (("verifier", "margin"), ("xent_verifier", "xent")):
        v = GPT(gen.config).to(device)
        v.load_state_dict(gen.state_dict())
        verifiers[name] = (v, train_verifier(v, examples, args.verifier_steps, args.batch_size,
                                             args.lr, args.warmup, loss=loss, margin=args.margin,
                                             seed=seed, desc=f"{name} seed {seed}"))
    torch.manual_seed(seed)
    small = GPT(GPTConfig(n_layer=args.small_layers, n_head=2, n_embd=args.small_embd,
                          block_size=gen.config.block_size)).to(device)
    verifiers["small_verifier"] = (small, train_verifier(
        small, examples, args.verifier_steps, args.batch_size, args.small_lr, args.warmup,
        loss="margin", margin=args.margin, seed=seed, desc=f"small_verifier seed {seed}"))

    # 4. score every test sample with every verifier: scores[prefix][problem][sample]
    pairs = [(p.prompt, s) for p, ss in zip(test_problems, samples) for s in ss]
    scores = {}
    for prefix, name in VERIFIERS.items():
        table = verifier_scores(verifiers[name][0], pairs)
        scores[prefix] = [[table[(p.prompt, s)] for s in ss] for p, ss in zip(test_problems, samples)]

    # 5. every arm at every N, with a bootstrap interval over problems
    rows = []
    for n in args.ns:
        per_problem = [per_problem_accuracy(samples[j], correct[j],
                                            {k: sc[j] for k, sc in scores.items()}, n)
                       for j in range(len(test_problems))]
        for arm in ARMS:
            values = [acc[arm] for acc in per_problem]
            lo, hi = bootstrap_ci(values, seed=seed)
            for metric, value in (("test_acc", float(np.mean(values))), ("ci_lo", lo), ("ci_hi", hi)):
                rows.append(dict(arm=arm, step=n, metric=metric, value=round(value, 4), seed=seed))
    # how well each verifier separates right from wrong: pooled over all test samples, and
    # within problems (what re-ranking needs)
    flat_labels = [c for cs in correct for c in cs]
    for prefix, name in VERIFIERS.items():
        flat = [s for ss in scores[prefix] for s in ss]
        for metric, value in (("auc", auc(flat, flat_labels)),
                              ("auc_within", auc_within(scores[prefix], correct)),
                              ("train_loss", float(np.mean(verifiers[name][1][-20:])))):
            if not np.isnan(value):  # undefined if every test sample is right (or wrong)
                rows.append(dict(arm=name, step=0, metric=metric, value=round(value, 4), seed=seed))
    print(f"seed {seed}: {len(examples)} verifier examples ({share:.0%} correct, "
          f"{len(margin_groups(examples))} problems with right and wrong samples), sampling "
          f"{t_sample:.0f} s, total {time.time() - t0:.0f} s")
    return rows


ARMS = (["pass@1", "maj", "rr_all"] + [f"rr_top{k}" for k in TOP_KS] + ["weighted"] +
        [f"{p}{a}" for p in ("xent_", "small_") for a in ("rr_all", "rr_top4", "weighted")] +
        ["pass@N"])


def main():
    parser = common.parser_for(__doc__, default_task="arith")
    parser.add_argument("--problems", type=int, default=500, help="test problems")
    parser.add_argument("--samples", type=int, default=64, help="N_max: samples per test problem")
    parser.add_argument("--ns", default="1,4,16,64",
                        help="the N of maj@N, rr@N, pass@N; each must divide --samples")
    parser.add_argument("--temperature", type=float, default=0.8, help="sampling temperature")
    parser.add_argument("--train_problems", type=int, default=2000,
                        help="training problems the verifiers' samples come from")
    parser.add_argument("--train_samples", type=int, default=16,
                        help="generator samples per training problem (labelled by the oracle)")
    parser.add_argument("--verifier_steps", type=int, default=600, help="verifier training steps")
    parser.add_argument("--batch_size", type=int, default=64, help="verifier batch size")
    parser.add_argument("--lr", type=float, default=3e-4, help="verifier peak learning rate")
    parser.add_argument("--warmup", type=int, default=50, help="learning-rate warm-up steps")
    parser.add_argument("--with_reference", action="store_true",
                        help="add each training problem's reference answer as one more right "
                             "sample (on with --quick, whose tiny base is never right)")
    parser.add_argument("--margin", type=float, default=1.0,
                        help="lambda of the margin loss, in nats of log S")
    parser.add_argument("--small_layers", type=int, default=1, help="small verifier: layers")
    parser.add_argument("--small_embd", type=int, default=64, help="small verifier: width")
    parser.add_argument("--small_lr", type=float, default=1e-3,
                        help="small verifier peak learning rate (it starts from scratch)")
    args = parser.parse_args()
    seeds, device = common.check_args(parser, args)
    common.positive(parser, problems=args.problems, samples=args.samples,
                    temperature=args.temperature, train_problems=args.train_problems,
                    train_samples=args.train_samples, verifier_steps=args.verifier_steps,
                    batch_size=args.batch_size, lr=args.lr, small_layers=args.small_layers,
                    small_lr=args.small_lr, margin=args.margin)
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0, got {args.warmup}")
    if args.small_embd <= 0 or args.small_embd % 2:
        parser.error(f"--small_embd must be a positive even number, got {args.small_embd}")
    try:
        ns = sorted({int(x) for x in args.ns.split(",") if x.strip()})
    except ValueError:
        parser.error(f"--ns must be comma-separated integers, got {args.ns!r}")
    if args.quick:  # same code path, seconds instead of minutes
        args.problems, args.samples, ns = min(args.problems, 12), min(args.samples, 8), [1, 4, 8]
        args.train_problems, args.train_samples = min(args.train_problems, 20), 4
        args.verifier_steps, args.warmup, args.with_reference = min(args.verifier_steps, 10), 2, True
    if not ns or any(n < 1 or args.samples % n for n in ns):
        parser.error(f"every N in --ns must be >= 1 and divide --samples {args.samples}, got {ns}")
    args.ns = ns

    task = TASKS[args.task]
    test_problems = task.problems(args.problems, seed=0, split="test")
    config = {k: v for k, v in vars(args).items() if k not in ("seeds", "device", "quick", "task")}
    rows, start = [], time.time()
    for i, seed in enumerate(seeds):
        rows += run_seed(args, task, test_problems, seed, device)
        table = common.write_results("rerank", args.task, seeds[:i + 1], config, rows,
                                     time.time() - start, quick=args.quick)
    print(table)


if __name__ == "__main__":
    main()
