"""Easy to hard: a model teaches itself longer additions, with no oracle.

Paper: Lee, Yang, Kim, Papailiopoulos et al., "Self-Improving Transformers Overcome Easy-to-Hard
and Length Generalization Challenges" (ICML 2025; arXiv 2502.01612).

The idea. Train a small transformer on reversed addition of numbers of up to d0 digits. Such a
model is usually right one digit beyond what it was trained on, and wrong further out. So: for
round r = 1, 2, ... take prompts one digit longer than the frontier, let the models label them,
throw away the labels that look unreliable WITHOUT looking at the truth, add the rest to the data
and train on. If the kept labels are right often enough, the frontier moves out by one digit per
round; if not, the errors are trained in and compound (the avalanche). The oracle (a + b) is used
here only to audit: the accuracy of the kept labels and the test accuracy per length.

The filter (Lee et al.'s majority vote over models trained with different seeds, plus a length
filter). Each of the M models of the ensemble answers the prompt a+b and the prompt b+a greedily,
giving 2M votes y_1..y_2M; the label kept for the prompt is

    y* = the most common vote,   kept iff  #{j : y_j = y*} >= agree * 2M  and  len(y*) = L + 1

and every model of the ensemble trains on the kept labels of round r together with its original
data and the kept labels of earlier rounds, continuing from its last checkpoint (the newest
round's labels are replicated to half of the data, so they are not drowned):

    theta_r = argmin_theta  - sum_{(x, y) in D_0 u S_1 u ... u S_r}  log p_theta(y | x)

Arms (all start from the same M cached bases):
  filtered          the ensemble's vote and the length filter above: no ground truth anywhere
  unfiltered        each model labels its own prompts greedily and keeps every label (the
                    error-avalanche control)
  oracle_filtered   each model's own greedy labels, kept only where they are right: the upper
                    bound of what filtering could give

The format (what makes a length generalize). Numbers are written reversed (least significant
digit first, so the carry flows left to right as the model writes) and zero-padded: operands
AND answer have L + 1 digits ("0702+5100=5802" is 207 + 15 = 222 at L = 3). A position scheme
decides whether a model trained on 1-3 digits can place digit 4 at all; we tried (tutorial 10):
learned absolute positions and no position embedding at all (NoPE) learn 1-3 digits and
nothing beyond; the "abacus" scheme of McLeish et al. 2024, a position that is the digit's index
inside its number, works once it is relative: here the queries and keys are rotated (RoPE, Su
et al. 2021) by that digit index, so the token that writes answer digit k finds operand digits
k by their equal index, whatever the length. "=" opens the answer's run of indices. The
rotation lives in this file (DigitRoPE below) on top of GPTConfig(pos_embedding="none"), so the
other methods' model is untouched; KV-cached decoding carries each row's digit count across
steps.

Simplified relative to the paper, and why:
  - 2 layers, 64 wide, d0 = 3, 5 rounds of 1,000 steps: the CPU budget (the paper: 6-layer
    models, 10,000 steps for the base and 1,000 more a round, 16 to 100+ digits, on GPUs). At
    500 steps a round the models were right one digit out less often, and on the check
    ensemble (seeds 3, 4, 5) the frontier stopped at 4 digits (tutorial 10).
  - The length filter checks the answer's width (L + 1 digits, as the format fixes it); labels
    are the first L + 1 tokens a model writes (a model past its frontier may not stop).
  - Votes: 3 models x (a+b, b+a). The probes behind tutorial 10 found that one model's samples,
    or one model at several offsets, agree on their errors (a single model's mistakes are
    confident and systematic); different seeds' models do not.
  - --seeds are the ensemble's members: they share the filtered arm's labels, so the per-seed
    numbers of that arm are three models of ONE run, not three independent runs.

Run:
  python methods/easy_to_hard.py                 # the ensemble of seeds 0,1,2 (~10 min per
                                                 # model on one CPU core: see the header of
                                                 # results/easy_to_hard-add.md)
  python methods/easy_to_hard.py --arms filtered # one arm
  python methods/easy_to_hard.py --quick         # tiny budget, same code path (for tests)

What you should see (tutorials/10_easy_to_hard.md reads the table): the bases solve 1-3 digits
and almost nothing at 4; the filtered arm's solved length grows round after round while its
kept labels stay nearly all right, until the position scheme's limit stops it (the labels' audit
shows where); the unfiltered arm keeps every label, its label accuracy collapses and its solved
length stalls; the oracle-filtered arm bounds both. The vote works only while the models are
right one digit out often enough and wrong in different ways: where all of them make the same
mistake it keeps wrong labels, and label_acc says so (run --seeds 3,4,5 to see another
ensemble).
"""
import copy
import json
import math
import os
import random
import sys
import time
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root

import torch
from torch import nn

import common
from model import GPT, GPTConfig
from sample import generate
from sft import finetune
from verify import split_of

FLAGS = dict(
    d0=(3, "the base is trained on operands of 1..d0 digits"),
    rounds=(5, "self-improvement rounds (each one digit longer)"),
    n_layer=(2, "layers"),
    n_head=(4, "attention heads"),
    n_embd=(64, "width"),
    rope_scale=(0.7, "radians per digit index of the fastest rotary component"),
    offset=(20, "training shifts each row's digit indices by a random 0..offset"),
    base_problems=(20000, "base: labelled problems, uniform over lengths 1..d0"),
    base_steps=(8000, "base: optimizer steps (at 4000 one seed of three had not learned 3 digits)"),
    base_lr=(3e-3, "base: peak learning rate (cosine to a tenth)"),
    labels=(2000, "prompts labelled per round"),
    agree=(0.8, "filtered: share of the ensemble's votes that must agree on a label"),
    original=(3000, "labelled problems of 1..d0 digits kept in every round's data"),
    steps=(1000, "optimizer steps per round, from the last checkpoint"),
    lr=(1e-3, "peak learning rate of a round"),
    warmup=(20, "warm-up steps of a round", 0),
    batch_size=(64, "batch size"),
    test_problems=(200, "test problems per length"),
    max_len=(10, "test lengths 1..max_len"),
    arms=("filtered,unfiltered,oracle_filtered", "arms to run, comma-separated"),
)
QUICK = dict(rounds=2, base_problems=300, base_steps=30, labels=20, original=30, steps=5,
             test_problems=5, max_len=5)
ARMS = ("filtered", "unfiltered", "oracle_filtered")
NEW_SHARE = 0.5  # the newest round's labels are replicated up to this share of a round's data


# ---------------------------------------------------------------------------------------------
# The position scheme: rotary embedding on the digit index

def digit_index(idx, cache=None):
    """(B, T) token ids -> (B, T) digit indices: 0 for a non-digit, else 1 + the number of digits
    right before it in the same number; "=" opens the answer's run (index 1), so the token that
    writes answer digit k has index k, like operand digits k. With a KV cache the run continues
    from the cached tokens (cache.digit_run, (B,)), which this updates."""
    B, T = idx.shape
    t = torch.arange(T, device=idx.device).expand(B, T)  # (B, T)
    is_eq = idx == ord("=")
    in_run = ((idx >= ord("0")) & (idx <= ord("9"))) | is_eq
    # where the run holding t starts: just after a non-digit, or at "="; -1: before this chunk
    start = torch.where(in_run, torch.full_like(t, -1), t + 1)
    start = torch.where(is_eq, t, start).cummax(dim=1).values  # (B, T)
    before = torch.zeros(B, 1, dtype=torch.long, device=idx.device)
    if cache is not None:
        before = getattr(cache, "digit_run", before).view(B, 1)
    index = torch.where(start >= 0, t + 1 - start, t + 1 + before) * in_run  # (B, T)
    if cache is not None:
        cache.digit_run = index[:, -1].clone()
    return index


def rotate(x, cos, sin):
    """Rotary embedding (Su et al. 2021): turn each pair (x_2i, x_2i+1) of every head by its angle.
    x (B, T, nh, hs); cos, sin (B, T, 1, hs/2)."""
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)


class RotaryQKV(nn.Linear):
    """The attention's q/k/v projection with the rotation applied to q and k. Rotating here,
    before model.py's attention caches the keys, keeps that attention (and its KV cache) as is:
    q_i . k_j then depends on the two tokens' digit indices only through their difference."""

    def forward(self, x):
        qkv = super().forward(x)  # (B, T, 3C)
        B, T, C3 = qkv.shape
        q, k, v = qkv.split(C3 // 3, dim=2)
        nh = self.n_head
        q = rotate(q.view(B, T, nh, -1), *self.angles).view(B, T, -1)
        k = rotate(k.view(B, T, nh, -1), *self.angles).view(B, T, -1)
        return torch.cat((q, k, v), dim=2)


class DigitRoPE(GPT):
    """A GPT with no position embedding (GPTConfig(pos_embedding="none")) whose queries and keys
    are rotated by each token's digit index (times rope_scale rad for the fastest component). In
    training every row's digit indices are shifted by a random 0..offset: only differences
    between digits matter to the rotation, but digit-to-non-digit pairs see every offset."""

    def __init__(self, config, rope_scale, offset):
        assert config.pos_embedding == "none", "DigitRoPE adds its own positions"
        super().__init__(config)
        self.rope_scale, self.offset = rope_scale, offset
        for block in self.transformer.h:
            old = block.attn.c_attn
            block.attn.c_attn = RotaryQKV(old.in_features, old.out_features)
            block.attn.c_attn.load_state_dict(old.state_dict())
            block.attn.c_attn.n_head = config.n_head

    def forward(self, idx, targets=None, cache=None):
        index = digit_index(idx, cache)  # (B, T)
        if self.training and self.offset > 0:
            shift = torch.randint(0, self.offset + 1, (idx.size(0), 1), device=idx.device)
            index = index + shift * (index > 0)
        hs = self.config.n_embd // self.config.n_head
        freq = self.rope_scale / 10000 ** (torch.arange(0, hs, 2, device=idx.device) / hs)
        angle = index.unsqueeze(-1).float() * freq  # (B, T, hs/2)
        angles = (angle.cos().unsqueeze(2), angle.sin().unsqueeze(2))  # (B, T, 1, hs/2) each
        for block in self.transformer.h:
            block.attn.c_attn.angles = angles
        return super().forward(idx, targets, cache)


def as_digit_rope(gpt, rope_scale, offset):
    """A DigitRoPE with the weights of `gpt` (a checkpoint loads as a plain GPT: the rotation
    has no weights, so its state dict is the same)."""
    model = DigitRoPE(gpt.config, rope_scale, offset)
    model.load_state_dict(gpt.state_dict())
    model.meta = getattr(gpt, "meta", {})
    return model.to(next(gpt.parameters()).device).eval()


# ---------------------------------------------------------------------------------------------
# The task: reversed, zero-padded addition; test accuracy per length

def problem(a, b, L):
    """(prompt, answer) of a + b at length L: operands and answer as L + 1 digits, reversed."""
    return (f"{str(a).zfill(L + 1)[::-1]}+{str(b).zfill(L + 1)[::-1]}=",
            str(a + b).zfill(L + 1)[::-1])


def problems(n, L, split, seed):
    """n problems with operands below 10^L from `split` (verify.split_of: ~10% of prompts are
    test); drawn with replacement (there are only 100 one-digit problems)."""
    rng = random.Random(f"add-{split}-{L}-{seed}")
    out = []
    for _ in range(100 * n + 1000):
        p = problem(rng.randrange(10 ** L), rng.randrange(10 ** L), L)
        if split_of(p[0]) == split:
            out.append(p)
            if len(out) == n:
                break
    return out


def answers(model, prompts, L):
    """The model's greedy answers cut to the answer's width, L + 1 tokens (a row that stops
    earlier stays short)."""
    return [o[0] for o in generate(model, prompts, n=1, max_new_tokens=L + 1)]


def accuracy_by_length(model, lengths, n):
    """{L: share of n test problems of length L answered exactly (and then stopped)}."""
    acc = {}
    for L in lengths:
        test = problems(n, L, "test", seed=0)
        outs = generate(model, [p for p, _ in test], n=1, max_new_tokens=L + 3)
        acc[L] = sum(o[0] == a for o, (_, a) in zip(outs, test)) / len(test)
    return acc


def length_metrics(acc):
    """solved_len and acc@L for every length L, as a row's metrics."""
    return dict(solved_len=solved_len(acc), **{f"acc@{L}": a for L, a in acc.items()})


def solved_len(acc, threshold=0.95):
    """The longest L with accuracy >= threshold at L and at every shorter length."""
    solved = 0
    for L in sorted(acc):
        if acc[L] < threshold:
            break
        solved = L
    return solved


# ---------------------------------------------------------------------------------------------
# The filters: which self-labels a round keeps

def swapped(prompt):
    a, b = prompt[:-1].split("+")
    return f"{b}+{a}="


def vote(prompts, votes, L, agree):
    """The ensemble's filter: votes[j][i] is vote j on prompt i; keep prompt i's most common
    well-formed vote (L + 1 digits) if at least `agree` of all votes are that label.
    Returns [(prompt, label)]."""
    kept = []
    for i, prompt in enumerate(prompts):
        ok = [v[i] for v in votes if len(v[i]) == L + 1 and v[i].isdigit()]
        if not ok:
            continue
        label, count = Counter(ok).most_common(1)[0]
        if count >= math.ceil(agree * len(votes)):
            kept.append((prompt, label))
    return kept


def label_round(arm, models, r, L, n, agree):
    """Round r's self-labels of length L for every model of the ensemble: {seed: [(p, y)]}, and
    each one's audit (the oracle checks the kept labels; it chose them only in oracle_filtered)."""
    truth = {}
    if arm == "filtered":  # the same prompts for all; each model votes on a+b and on b+a
        probs = problems(n, L, "train", seed=f"round{r}")
        truth.update(probs)
        prompts = [p for p, _ in probs]
        votes = []
        for model in models.values():
            votes += [answers(model, prompts, L), answers(model, [swapped(p) for p in prompts], L)]
        shared = vote(prompts, votes, L, agree)
        kept = {s: shared for s in models}
    else:  # each model labels prompts of its own with its greedy answers
        kept = {}
        for s, model in models.items():
            probs = problems(n, L, "train", seed=f"round{r}-model{s}")
            truth.update(probs)
            labels = answers(model, [p for p, _ in probs], L)
            kept[s] = [(p, y) for (p, a), y in zip(probs, labels)
                       if arm == "unfiltered" or y == a]
    audit = {s: dict(kept=len(k), label_acc=sum(truth[p] == y for p, y in k) / max(1, len(k)))
             for s, k in kept.items()}
    return kept, audit


def train_round(model, original, rounds, steps, lr, warmup, batch_size, seed):
    """Continue training on the original data, the older rounds' labels and the newest round's,
    the newest replicated up to NEW_SHARE of the data."""
    old = original + [pair for labels in rounds[:-1] for pair in labels]
    new = rounds[-1]
    copies = max(1, round(NEW_SHARE * len(old) / max(1, (1 - NEW_SHARE) * len(new))))
    finetune(model, old + new * copies, steps=steps, batch_size=batch_size, lr=lr,
             warmup=warmup, seed=seed, progress=False)


# ---------------------------------------------------------------------------------------------
# Bases, arms, the command line

def base_model(seed, device, d0, n_layer, n_head, n_embd, rope_scale, offset, base_problems,
               base_steps, base_lr, batch_size, quick):
    """A DigitRoPE trained on reversed addition of 1..d0 digits, cached in out/."""
    settings = dict(d0=d0, n_layer=n_layer, n_head=n_head, n_embd=n_embd, rope_scale=rope_scale,
                    offset=offset, problems=base_problems, steps=base_steps, lr=base_lr,
                    batch_size=batch_size)

    def train():
        common.seed_everything(seed)
        config = GPTConfig(n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=64,
                           pos_embedding="none")
        model = DigitRoPE(config, rope_scale, offset).to(device)
        data = [pair for L in range(1, d0 + 1)
                for pair in problems(base_problems // d0, L, "train", seed)]
        finetune(model, data, steps=base_steps, batch_size=batch_size, lr=base_lr, warmup=100,
                 seed=seed, desc=f"base seed {seed}", progress=not quick)
        return model

    path = common.checkpoint_path("easy_to_hard-base",
                                  dict(settings, **common.machine(device, "float32")), seed)
    return as_digit_rope(common.cached(path, train, device, seed=seed, settings=settings),
                         rope_scale, offset)


def run_arm(arm, bases, d0, rounds, labels, agree, original, steps, lr, warmup, batch_size,
            lengths, test_problems):
    """One arm, every model of the ensemble: tidy rows (with their seed) per round."""
    models = {s: copy.deepcopy(m) for s, m in bases.items()}
    data = {s: [pair for L in range(1, d0 + 1) for pair in problems(original // d0, L, "train", s)]
            for s in models}
    selfdata = {s: [] for s in models}
    rows = []
    for r in range(1, rounds + 1):
        L = d0 + r  # one digit past the last round's
        kept, audit = label_round(arm, models, r, L, labels, agree)
        for s, model in models.items():
            selfdata[s].append(kept[s])
            train_round(model, data[s], selfdata[s], steps, lr, warmup, batch_size,
                        seed=1000 * s + r)
            acc = accuracy_by_length(model, lengths, test_problems)
            metrics = dict(length=L, **audit[s], **length_metrics(acc))
            common.show(f"{arm:<16} seed {s} round {r}", metrics)
            rows += [dict(row, seed=s) for row in common.rows_of(arm, r, metrics)]
    return rows


def main():
    args = common.parse_args(__doc__, FLAGS, QUICK, default_task="add", tasks=("add",))
    arms = common.comma_list(args.arms, ARMS, "arms")
    hyper = {name: getattr(args, name) for name in FLAGS}
    lengths = list(range(1, args.max_len + 1))
    start = time.time()
    bases, rows = {}, []
    for s in args.seeds:
        common.seed_everything(s)
        bases[s] = base_model(s, args.device, args.d0, args.n_layer, args.n_head, args.n_embd,
                              args.rope_scale, args.offset, args.base_problems, args.base_steps,
                              args.base_lr, args.batch_size, args.quick)
        acc = accuracy_by_length(bases[s], lengths, args.test_problems)
        metrics = length_metrics(acc)
        common.show(f"base seed {s}", metrics)
        if metrics["solved_len"] < args.d0:  # the rounds assume a base that has its lengths
            print(f"warning: base seed {s} solves only {metrics['solved_len']} of its {args.d0} "
                  "trained lengths (try more --base_steps)", flush=True)
        rows += [dict(row, seed=s) for row in common.rows_of("base", 0, metrics)]
    config = dict(hyper, **common.machine(args.device, args.dtype))
    partial = os.path.join(common.OUT, "partial", "easy_to_hard-add.json")
    for arm in arms:
        common.seed_everything(args.seeds[0])
        with common.precision(args.device, args.dtype):
            rows += run_arm(arm, bases, args.d0, args.rounds, args.labels, args.agree,
                            args.original, args.steps, args.lr, args.warmup, args.batch_size,
                            lengths, args.test_problems)
        # an interrupted run keeps the arms it finished here (results/ gets only whole runs)
        common._write(partial, json.dumps(dict(arms_done=arms[:arms.index(arm) + 1], rows=rows)))
    print(common.write_results("easy_to_hard", "add", args.seeds, config, rows,
                               time.time() - start, quick=args.quick))
    os.remove(partial)


if __name__ == "__main__":
    main()
