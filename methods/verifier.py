"""The verifier of re-ranking (methods/rerank.py): a copy of the generator fine-tuned to say
whether a (problem, answer) is right, and the AUCs that say how well it ranks answers.

It reads "prompt completion <|endoftext|>" and, at the end-of-text position, predicts one token:
"C" (correct) or "I" (incorrect). Its score is S(x, y) = p("C") / (p("C") + p("I")) =
sigmoid(logit_C - logit_I). Two losses (rerank.py's docstring says why margin is the main one):

    L_margin = max(0, log S(x, y-) - log S(x, y+) + lambda)     a right and a wrong answer of x
    L_xent   = - [ l log S(x, y) + (1 - l) log(1 - S(x, y)) ]   single answers, l = oracle label
"""
import copy

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from model import EOT, encode
from sft import train

YES, NO = encode("C")[0], encode("I")[0]  # the verifier's two label tokens


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
                   seed=0, desc="verifier", progress=True, heldout=None, eval_every=50,
                   patience=3):
    """Train `model` to score (prompt, completion, correct?) examples with the "margin" or the
    "xent" loss: the repo's one training loop (sft.train), batches drawn with replacement by its
    seeded generator. With `heldout` (a function: model -> within-problem AUC on held-out
    problems), early stopping: the AUC is checked every eval_every steps, the best checkpoint is
    kept (loaded into `model` at the end) and training stops after `patience` checks without a
    new best. Returns (the loss of every step, {heldout_auc, step} of the kept checkpoint and
    start_auc, the held-out AUC of the starting weights)."""
    groups = margin_groups(examples)
    data, batch_loss = {
        "xent": (examples, lambda rng: xent_loss(model, examples, batch_size, rng)),
        "margin": (groups, lambda rng: margin_loss(model, groups, batch_size, rng, margin)),
    }[loss]
    if not data:
        raise ValueError(f"no training data for the {loss} loss (the margin loss needs a problem "
                         "with both a right and a wrong sample)")
    kept = {}

    def keep_best(step):  # True: stop
        value = heldout(model)
        if step == 0:
            kept["start_auc"] = value
        if "step" not in kept or value > kept["heldout_auc"]:
            kept.update(heldout_auc=value, step=step, state=copy.deepcopy(model.state_dict()))
        return step - kept["step"] >= patience * eval_every

    every = range(0, steps + 1, eval_every) if heldout is not None else ()
    losses = train(model, batch_loss, steps, lr, warmup, seed=seed, desc=desc, progress=progress,
                   evaluate_at=every, evaluate=keep_best)
    if kept:
        model.load_state_dict(kept.pop("state"))
    return losses, kept


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
# How well scores rank answers

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


def distinct(answers, *columns):
    """The columns (lists parallel to `answers`) at the first sample of each distinct answer:
    an answer sampled 40 times is one answer to rank, not 40."""
    first = list({a: i for i, a in reversed(list(enumerate(answers)))}.values())[::-1]
    return [[col[i] for i in sorted(first)] for col in columns]


def auc_within(scores, correct, answers=None):
    """Mean AUC inside each problem that has both right and wrong answers, over its DISTINCT
    answers when `answers` is given. This, not the pooled AUC, is what re-ranking needs: a
    verifier that only knows which PROBLEMS are easy has a high pooled AUC and a within-problem
    AUC of 0.5."""
    if answers is not None:
        scores, correct = zip(*[distinct(a, s, c) for a, s, c in zip(answers, scores, correct)])
    values = [auc(s, c) for s, c in zip(scores, correct) if 0 < sum(c) < len(c)]
    return float(np.mean(values)) if values else float("nan")
