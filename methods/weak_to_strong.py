"""Weak-to-strong generalization: can a strong student trained only on a weak teacher's labels
do better than its teacher?

Paper: Burns et al., "Weak-to-Strong Generalization: Eliciting Strong Capabilities With Weak
Supervision" (OpenAI, 2023; arXiv 2312.09390).

The idea. A small "weak" model is fine-tuned on ground truth and then labels new data. A bigger
"strong" model, pretrained so that it already holds the skill, is fine-tuned only on those weak
labels. If the student merely imitated its teacher it would inherit all its errors; if the labels
only have to *point at* a skill the student already has (elicitation), the student can be right
where its teacher was wrong. The paper measures how much of the gap to a ground-truth-trained
strong model (the ceiling) is recovered:

    PGR = (acc(w2s) - acc(weak)) / (acc(ceiling) - acc(weak))

PGR = 0: the student only copied its teacher; PGR = 1: weak labels were as good as ground truth.

Losses (per answer token t, p_s = student's distribution, p_w = the teacher's soft label):
    naive:      L = CE(p_s, p_w)                                = -sum_v p_w(v) log p_s(v)
    confidence: L = (1 - a) CE(p_s, p_w) + a CE(p_s, onehot(argmax p_s))          (paper Eq. 1)
with a warmed up linearly from 0 to a_max over 20% of the steps (a_max = 0.75 for the largest
student, 0.5 otherwise; the paper ramps from step 0; we start at half of training, see below).
The second term rewards the student for being confident in its OWN answer, so it can overrule
the teacher where it knows better.

Setup here (one seed):
  1. A ladder of three GPTs (S < M < L) pretrained on the multiplication table of the arith
     task at 3 digits: all 10,000 facts "123*4=" -> "294" (492 reversed, as everywhere in this
     repo), loss on the product. How much of the table a model holds grows with its size
     (S ~1/2, M ~5/6, L all of it): the skill is in the weights, in another format. The test
     facts are in this table on purpose (the toy's "pretraining leakage": the strong model is
     meant to know them); what no model has seen is the question asked as "123*4>".
  2. The task, in that NEW format: "123*4>" -> "294". Fine-tuning must map the new question
     onto the table the model already holds: that is what "elicit" means here.
  3. weak = a smaller ladder model fine-tuned on ground truth of half A (1000 facts). Its soft
     labels on half B (its greedy answer, and its next-token distribution along that answer).
  4. Arms per (weak, strong) pair: w2s_naive, w2s_conf, ceiling (strong fine-tuned on ground
     truth of B), and the control w2s_random_init (the strong architecture from scratch, on the
     same weak labels, 2x the steps at the pretraining learning rate; its fit_weak_labels row
     says how well it fits them). And w2s_boot for S -> L: L learns from the labels that the
     S -> M naive student writes on a third half C.

Simplified, and why:
  - Facts, not a rule. A first version pretrained the ladder on addition (a rule to generalise).
    Each size learned addition through a sharp phase transition whose step depended on the data
    order more than on the size, so skill was not monotone in size: over 3 seeds the "strong"
    ceiling (0.70 +- 0.17) did not beat the "weak" teacher (0.76 +- 0.11). How many facts a
    model stores grows smoothly with its size, so a table gives a reliable ladder.
  - The task is generative, not binary. A probe on this CPU found a binary "is a+b=c correct?"
    classifier on a model that adds perfectly stayed at chance (~53%) even with ground-truth
    labels: a 4-layer model cannot read its own answer off and compare it in one forward pass.
    Soft labels become token-level soft labels along the teacher's greedy answer
    (distillation), as in the paper's chess setting (next-move labels).
  - The new format changes one symbol and keeps every position: the models have learned
    absolute positions, and ad-hoc probes (not in the repo) found that a prefix token, which
    shifts every position, or swapped operands elicited far less of what a model knew, even
    from ground truth. Try it: exercise 2 of tutorials/04_weak_to_strong.md.
  - The confidence loss hardens with argmax per token, the multi-class form used by the
    EleutherAI re-implementation. The paper's batch-adaptive threshold (choose t so half the
    batch is positive) is a device for binary labels with a class prior; a digit token has ten
    classes and no prior to keep, so it is left out. `adaptive_threshold` shows it on binary
    probabilities for reference (and is tested), but the generative loss does not call it.
  - Early stopping would have to use weak-label validation (never ground truth); we train a
    fixed budget and report the weak-label validation accuracy (`weak_val_acc`) beside the test
    accuracy at every evaluation, so you can see what such early stopping would have picked.
  - The confidence loss's warm-up starts at half of training (--conf-start 0.5), not at step 0:
    before fine-tuning the students answer few facts in the new format (L ~1/4, M ~1/8 at
    step 0), and hardening those early answers trains them on their own mistakes. On seed 0
    the paper's schedule (--conf-start 0) gave M->L 0.822 against 0.846 with the later start,
    and S->M / S->L 0.280 / 0.306 against 0.302 / 0.334.
  - Bootstrapping is one chain, S -> M -> L, reported as the pair S -> L (arm w2s_boot): the
    S -> M naive student labels a third half C, and L learns from those labels. The paper
    chains several intermediate sizes; three sizes allow one step.

Run:
  python methods/weak_to_strong.py                 # seed 0 (pretrains the ladder on first use)
  python methods/weak_to_strong.py --seeds 0,1,2   # what wrote results/weak_to_strong-arith.*
  python methods/weak_to_strong.py --quick         # tiny ladder and budget, same path (tests)

What you should see: each ladder size's share of the table, the teachers' and ceilings'
accuracy, one line per student (its test accuracy; on the facts its teacher gets wrong, how
often it copies the teacher and how often it is right anyway), and the PGR matrix at the end
(weak size x strong size, per arm). A student that only imitates has PGR near 0; one that
elicits what pretraining put there has PGR > 0; the from-scratch control, which has nothing to
elicit, ends below its teacher. tutorials/04_weak_to_strong.md reads a 3-seed run.
"""
import hashlib
import json
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402
from tqdm import tqdm  # noqa: E402

import common  # noqa: E402
from model import GPT, GPTConfig, CheckpointError, autocast, load, pack, save  # noqa: E402
from sample import generate  # noqa: E402
from sft import finetune, lr_at  # noqa: E402
from verify import TASKS, Problem  # noqa: E402

# The ladder: three sizes, smallest first. Weak teachers are every size but the largest, strong
# students every size but the smallest. Sizes were picked with side probes so that the three
# hold clearly different shares of the table: S ~1/2, M ~5/6, L all of it (the `pretrained` rows).
LADDER = {
    "S": dict(n_layer=2, n_head=4, n_embd=48),
    "M": dict(n_layer=2, n_head=4, n_embd=64),
    "L": dict(n_layer=4, n_head=4, n_embd=128),
}
# Pretraining (the whole multiplication table, old format); changing it re-pretrains the ladder
PRETRAIN = dict(digits=3, steps=3000, batch_size=64, lr=1e-3, warmup=100, block_size=24)
QUICK_LADDER = {
    "S": dict(n_layer=1, n_head=1, n_embd=16),
    "M": dict(n_layer=1, n_head=2, n_embd=32),
    "L": dict(n_layer=2, n_head=2, n_embd=32),
}
QUICK_PRETRAIN = dict(digits=2, steps=20, batch_size=16, lr=1e-3, warmup=5, block_size=24)

BOS = "\n"  # every sequence starts with a newline: pretraining text and task prompts alike


# ---------------------------------------------------------------------------------------------
# Data: the multiplication table, in the pretraining format and in the task's new format

def table(digits):
    """Every product a*b with a < 10**digits and b < 10: the multiplication half of the arith
    task at this difficulty (10,000 facts at 3 digits)."""
    return [(a, b) for a in range(10 ** digits) for b in range(10)]


def answer(a, b):
    return str(a * b)[::-1]  # reversed digits, as everywhere in this repo


def pretrain_pair(a, b):
    """The pretraining format: '\\n123*4=' -> '294' (492 reversed). Loss on the product only:
    the operands are uniform random draws, there is nothing to learn in them."""
    return f"{BOS}{a}*{b}=", answer(a, b)


def task_problem(a, b, digits):
    """The task in its new format: '\\n123*4>' -> '294'. The '>' never occurs in pretraining;
    every token keeps its position, so only the question mark is new. A verify.Problem, so the
    repo's arith oracle grades it (correct iff the reversed digits are exactly right)."""
    return Problem(prompt=f"{BOS}{a}*{b}>", answer=answer(a, b), tests=a * b, difficulty=digits)


def splits(seed, digits, n_half, n_val, n_test):
    """Disjoint facts for one seed: half A (teachers' ground truth), half B (weak labels),
    B_val (held-out weak labels), test, and half C (the bootstrapping chain's middle labels).
    Every one of them is in the pretraining table."""
    facts = table(digits)
    random.Random(f"w2s-{seed}-{digits}").shuffle(facts)
    need = 3 * n_half + n_val + n_test
    if need > len(facts):
        raise ValueError(f"the {digits}-digit table has {len(facts)} facts; "
                         f"3 halves + val + test need {need}")
    a_end, b_end = n_half, 2 * n_half
    test_end = b_end + n_val + n_test
    return (facts[:a_end], facts[a_end:b_end], facts[b_end:b_end + n_val],
            facts[b_end + n_val:test_end], facts[test_end:need])


# ---------------------------------------------------------------------------------------------
# The pretrained ladder, cached in out/

def ladder_settings(size, quick=False):
    s = dict((QUICK_LADDER if quick else LADDER)[size])
    s.update(QUICK_PRETRAIN if quick else PRETRAIN)
    s["data"] = "multiplication table"  # the key changes with the data, not only the settings
    return s


def ladder_path(size, seed, quick=False):
    key = hashlib.sha1(json.dumps(ladder_settings(size, quick), sort_keys=True).encode())
    return os.path.join(common.OUT, f"w2s-{size}-seed{seed}-{key.hexdigest()[:10]}.pt")


def pretrained(size, seed, device="cpu", quick=False, progress=True):
    """The ladder model `size` of `seed`: pretrained on first use, then loaded from out/."""
    path = ladder_path(size, seed, quick)
    if os.path.exists(path):
        try:
            return load(path, device)
        except CheckpointError as e:
            print(f"cached ladder model unreadable ({e}); pretraining again", file=sys.stderr)
    s = ladder_settings(size, quick)
    common.seed_everything(seed)
    # the whole table, test facts included: the strong model is meant to know them (the toy's
    # "pretraining leakage"); what it has never seen is the task's format
    pairs = [pretrain_pair(a, b) for a, b in table(s["digits"])]
    model = GPT(GPTConfig(n_layer=s["n_layer"], n_head=s["n_head"], n_embd=s["n_embd"],
                          block_size=s["block_size"])).to(device)
    start = time.time()
    finetune(model, pairs, steps=s["steps"], batch_size=s["batch_size"], lr=s["lr"],
             warmup=s["warmup"], seed=seed, desc=f"pretrain {size} seed {seed}", progress=progress)
    seconds = time.time() - start
    save(model, path, size=size, seed=seed, settings=s, train_seconds=seconds)
    model.meta = dict(size=size, seed=seed, settings=s, train_seconds=seconds)
    return model


# ---------------------------------------------------------------------------------------------
# The losses

def alpha_at(step, steps, alpha_max, warmup_frac=0.2, start_frac=0.0):
    """The confidence loss weight: 0 until start_frac of training, then linear up to alpha_max
    over the next warmup_frac, then constant. start_frac = 0 is the paper's schedule (App. A.4);
    the run starts later (--conf-start) because here the student answers few facts in the new
    format at first, and hardening its own early answers would train it on its mistakes."""
    step = step - start_frac * steps
    if step < 0:
        return 0.0
    warm = warmup_frac * steps
    if warm <= 0:
        return alpha_max
    return alpha_max * min(1.0, step / warm)


def adaptive_threshold(p, prior=0.5):
    """Binary case of the paper's hardening, for reference (the generative loss does not use it):
    t = the (1 - prior) quantile of p(positive) over the batch, so a `prior` share of the batch
    is hardened to positive. p: (B,) -> hardened labels (B,) of 0.0 / 1.0."""
    t = torch.quantile(p, 1.0 - prior)
    return (p > t).float()


def soft_ce(logits, targets, mask):
    """Cross-entropy against soft targets, averaged over answer tokens.
    logits, targets: (B, T, V); mask: (B, T) with 1 on answer tokens."""
    logp = torch.log_softmax(logits.float(), dim=-1)  # (B, T, V)
    per_token = -(targets * logp).sum(-1)  # (B, T)
    return (per_token * mask).sum() / mask.sum()


def w2s_loss(logits, weak_probs, mask, alpha):
    """Eq. 1 per token: (1 - alpha) CE(p_s, p_w) + alpha CE(p_s, onehot(argmax p_s)).
    With alpha = 0 it is the naive loss. The hardened target is detached: it is a label."""
    hard = F.one_hot(logits.detach().argmax(-1), logits.size(-1)).float()  # (B, T, V)
    targets = (1 - alpha) * weak_probs + alpha * hard
    return soft_ce(logits, targets, mask)


def pgr(weak_acc, w2s_acc, ceiling_acc):
    """Performance gap recovered; None when the ceiling does not beat the teacher (undefined)."""
    gap = ceiling_acc - weak_acc
    if gap <= 0:
        return None
    return (w2s_acc - weak_acc) / gap


# ---------------------------------------------------------------------------------------------
# Weak labels, evaluation, and training on soft labels

@torch.no_grad()
def weak_labels(weak, problems, max_new_tokens):
    """The teacher's greedy answers and its next-token distributions along them.
    Returns (answers: list of str, probs: (N, T, V) tensor aligned with pack(prompts, answers))."""
    prompts = [p.prompt for p in problems]
    answers = [g[0] for g in generate(weak, prompts, max_new_tokens=max_new_tokens)]
    device = next(weak.parameters()).device
    idx, targets = pack(prompts, answers)
    logits, _ = weak(idx.to(device))  # (N, T, V)
    probs = torch.softmax(logits.float(), dim=-1).cpu()  # (N, T, V)
    return answers, probs


def greedy_answers(model, problems, max_new_tokens):
    return [g[0] for g in generate(model, [p.prompt for p in problems],
                                   max_new_tokens=max_new_tokens)]


def accuracy(task, problems, answers):
    return sum(task.check(p, a).correct for p, a in zip(problems, answers)) / len(problems)


def agreement(answers, reference):
    return sum(a == r for a, r in zip(answers, reference)) / len(answers)


def train_on_weak_labels(model, prompts, answers, probs, steps, batch_size, lr, warmup,
                         alpha_max=0.0, conf_start=0.0, seed=0, eval_every=None, evaluate=None,
                         desc="w2s",
                         progress=True):
    """Fine-tune `model` on soft labels `probs` (N, T, V) along the teacher's `answers`.
    alpha_max = 0: naive loss; > 0: confidence loss. Same optimiser as sft.finetune.
    Calls evaluate(step) at step 0, every eval_every steps and at the end; returns its results."""
    device = next(model.parameters()).device
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.98))
    idx_all, targets_all = pack(prompts, answers)  # (N, T): same padding as the labels' probs
    rng = torch.Generator().manual_seed(seed)
    curve = {}
    for step in tqdm(range(steps + 1), desc=desc, disable=not progress, leave=False,
                     mininterval=1.0):
        if evaluate is not None and eval_every and (step % eval_every == 0 or step == steps):
            curve[step] = evaluate(step)
        if step == steps:
            break
        model.train()
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, lr, warmup)
        batch = torch.randint(len(prompts), (batch_size,), generator=rng)  # (B,)
        idx, targets = idx_all[batch].to(device), targets_all[batch].to(device)  # (B, T)
        with autocast(device):
            logits, _ = model(idx)  # (B, T, V)
        mask = (targets != -1).float()  # (B, T): the answer's tokens and its end token
        alpha = alpha_at(step, steps, alpha_max, start_frac=conf_start)
        loss = w2s_loss(logits, probs[batch].to(device), mask, alpha)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    model.eval()
    return curve


# ---------------------------------------------------------------------------------------------
# One seed: teachers, ceilings, and every (weak, strong) pair

def run_seed(seed, args, device, quick):
    """Everything for one seed; the pretrained ladder is the shared one of --ladder-seed."""
    task = TASKS["arith"]
    digits = (QUICK_PRETRAIN if quick else PRETRAIN)["digits"]
    max_new = task.max_tokens(digits)
    sizes = list(LADDER)
    # half A trains the teachers on ground truth, half B gets weak labels; B_val (held out of B)
    # measures agreement with the weak labels: the only validation a w2s run may use. Half C is
    # labelled by an intermediate student for the bootstrapping chain S -> M -> L
    fact_a, fact_b, fact_val, fact_test, fact_c = splits(seed, digits, args.half, args.val,
                                                         args.problems)
    half_a, half_b, b_val, test, half_c = ([task_problem(a, b, digits) for a, b in facts] for facts
                                           in (fact_a, fact_b, fact_val, fact_test, fact_c))
    ft = dict(batch_size=args.batch_size, lr=args.lr, warmup=args.warmup, progress=not quick)
    rows = []

    def row(arm, step, metric, value, weak="-", strong="-"):
        rows.append(dict(arm=arm, weak=weak, strong=strong, step=step, metric=metric,
                         value=round(value, 4), seed=seed))

    ladder = {s: pretrained(s, args.ladder_seed, device, quick, progress=not quick) for s in sizes}
    # what pretraining put there: each size's accuracy on the test facts in the pretraining
    # format ("123*4=" -> "294"), which no fine-tuning has touched
    old_format = [Problem(*pretrain_pair(a, b), tests=a * b, difficulty=digits)
                  for a, b in fact_test]
    for s in sizes:
        lm_acc = accuracy(task, old_format, greedy_answers(ladder[s], old_format, max_new))
        row("pretrained", 0, "lm_acc", lm_acc, strong=s)
        print(f"  ladder {s}: {ladder[s].num_params() / 1e6:.3f}M params, "
              f"{lm_acc:.3f} right on the test facts in the pretraining format")

    # weak teachers: every size but the largest, fine-tuned on ground truth of half A
    weak = {}
    for w in sizes[:-1]:
        model = pretrained(w, args.ladder_seed, device, quick, progress=False)
        finetune(model, [(p.prompt, p.answer) for p in half_a], steps=args.steps, seed=seed,
                 desc=f"weak {w}", **ft)
        test_ans = greedy_answers(model, test, max_new)
        b_ans, b_probs = weak_labels(model, half_b, max_new)
        weak[w] = dict(test_ans=test_ans, acc=accuracy(task, test, test_ans),
                       b_ans=b_ans, b_probs=b_probs,
                       label_acc=accuracy(task, half_b, b_ans),
                       val_ans=greedy_answers(model, b_val, max_new))
        row("weak", args.steps, "test_acc", weak[w]["acc"], weak=w)
        row("weak", args.steps, "label_acc", weak[w]["label_acc"], weak=w)
        print(f"  seed {seed} weak {w}: test_acc {weak[w]['acc']:.3f}, "
              f"its labels on B {weak[w]['label_acc']:.3f} correct")

    # ceilings: every size but the smallest, fine-tuned on ground truth of half B
    ceiling = {}
    for s in sizes[1:]:
        model = pretrained(s, args.ladder_seed, device, quick, progress=False)
        finetune(model, [(p.prompt, p.answer) for p in half_b], steps=args.steps, seed=seed,
                 desc=f"ceiling {s}", **ft)
        ceiling[s] = accuracy(task, test, greedy_answers(model, test, max_new))
        row("ceiling", args.steps, "test_acc", ceiling[s], strong=s)
        print(f"  seed {seed} ceiling {s}: test_acc {ceiling[s]:.3f}")

    pairs = [(w, s) for i, w in enumerate(sizes) for s in sizes[i + 1:]]
    chain = None  # the labels of the S -> M naive student on half C, once it is trained
    for w, s in pairs:
        lab = weak[w]
        on_b = dict(problems=half_b, ans=lab["b_ans"], probs=lab["b_probs"], val=lab["val_ans"])
        alpha_max = 0.75 if s == sizes[-1] else 0.5  # paper: 0.75 for the largest students
        # the control trains from scratch, so it gets the pretraining learning rate and more
        # steps, to fit the weak labels of B (its fit_weak_labels row says how well it does)
        arms = [("w2s_naive", 0.0, args.steps, args.lr, True, on_b),
                ("w2s_conf", alpha_max, args.steps, args.lr, True, on_b),
                ("w2s_random_init", 0.0, args.scratch_mult * args.steps, args.scratch_lr, False,
                 on_b)]
        if (w, s) == (sizes[0], sizes[-1]) and chain is not None:
            # bootstrapping: the largest student learns from the middle student's labels on C
            # (that student learned from S); PGR and copying are still measured against S
            arms.append(("w2s_boot", 0.0, args.steps, args.lr, True, chain))
        for arm, alpha, steps, lr, from_ladder, labels in arms:
            if from_ladder:
                model = pretrained(s, args.ladder_seed, device, quick, progress=False)
            else:  # the control: same architecture, fresh random weights
                torch.manual_seed(seed)
                model = GPT(ladder[s].config).to(device)

            def evaluate(step):
                ans = greedy_answers(model, test, max_new)
                acc = accuracy(task, test, ans)
                val = agreement(greedy_answers(model, b_val, max_new), labels["val"])
                return acc, val, ans

            curve = train_on_weak_labels(
                model, [p.prompt for p in labels["problems"]], labels["ans"], labels["probs"],
                steps, args.batch_size, lr, args.warmup, alpha_max=alpha,
                conf_start=args.conf_start, seed=seed,
                eval_every=max(1, steps // args.evals), evaluate=evaluate,
                desc=f"{arm} {w}->{s}", progress=not quick)
            for step, (acc, val, _) in curve.items():
                row(arm, step, "test_acc", acc, weak=w, strong=s)
                row(arm, step, "weak_val_acc", val, weak=w, strong=s)
                g = pgr(lab["acc"], acc, ceiling[s])
                if g is not None:
                    row(arm, step, "pgr", g, weak=w, strong=s)
            acc, val, ans = curve[steps]
            # how often the student repeats its teacher's answer where the teacher is wrong
            wrong = [i for i, p in enumerate(test) if not task.check(p, lab["test_ans"][i]).correct]
            copies = sum(ans[i] == lab["test_ans"][i] for i in wrong) / max(1, len(wrong))
            row(arm, steps, "agree_on_weak_errors", copies, weak=w, strong=s)
            # and how often it is right there: knowledge no label pointed at (elicitation)
            fixes = sum(task.check(test[i], ans[i]).correct for i in wrong) / max(1, len(wrong))
            row(arm, steps, "right_on_weak_errors", fixes, weak=w, strong=s)
            # how well it fits the labels it was trained on: the control should fit them too
            fit = agreement(greedy_answers(model, labels["problems"], max_new), labels["ans"])
            row(arm, steps, "fit_weak_labels", fit, weak=w, strong=s)
            print(f"  seed {seed} {arm} {w}->{s}: test_acc {acc:.3f} (weak {lab['acc']:.3f}, "
                  f"ceiling {ceiling[s]:.3f}); where the teacher is wrong it copies {copies:.2f}, "
                  f"is right on {fixes:.2f}; fits {fit:.2f} of its labels")
            if (arm, w, s) == ("w2s_naive", sizes[0], sizes[1]):
                c_ans, c_probs = weak_labels(model, half_c, max_new)
                chain = dict(problems=half_c, ans=c_ans, probs=c_probs,
                             val=greedy_answers(model, b_val, max_new))
                # how right the chain's middle labels are (S's own labels on B: label_acc)
                row("w2s_boot", 0, "chain_label_acc", accuracy(task, half_c, c_ans),
                    weak=sizes[0], strong=sizes[-1])
    return rows


def pgr_matrix(rows, arm):
    """Mean PGR at the end of training, weak size x strong size, as printable text."""
    finals = {}
    for r in rows:
        if r["arm"] == arm and r["metric"] == "pgr":
            key = (r["weak"], r["strong"], r["seed"])
            if key not in finals or r["step"] > finals[key][0]:
                finals[key] = (r["step"], r["value"])
    sizes = list(LADDER)
    lines = [f"PGR, {arm} (rows: weak teacher, columns: strong student; mean over seeds)",
             "weak\\strong " + "".join(f"{s:>9}" for s in sizes[1:])]
    for w in sizes[:-1]:
        cells = []
        for s in sizes[1:]:
            vals = [v for (ww, ss, _), (_, v) in finals.items() if ww == w and ss == s]
            cells.append(f"{sum(vals) / len(vals):9.2f}" if vals else f"{'':>9}")
        lines.append(f"{w:<12}" + "".join(cells))
    return "\n".join(lines)


def main():
    parser = common.parser_for(__doc__, default_task="arith")
    parser.add_argument("--steps", type=int, default=300, help="fine-tuning steps of every arm")
    parser.add_argument("--conf-start", type=float, default=0.5,
                        help="share of training before the confidence loss starts its warm-up")
    parser.add_argument("--ladder-seed", type=int, default=0,
                        help="seed of the pretrained ladder every seed starts from")
    parser.add_argument("--scratch-mult", type=int, default=2,
                        help="the random-init control trains this many times longer")
    parser.add_argument("--scratch-lr", type=float, default=1e-3,
                        help="peak learning rate of the random-init control (the pretraining one)")
    parser.add_argument("--half", type=int, default=1000, help="facts in each of halves A, B, C")
    parser.add_argument("--val", type=int, default=200, help="held-out weak-labelled facts")
    parser.add_argument("--problems", type=int, default=500, help="test facts")
    parser.add_argument("--batch-size", type=int, default=64, help="fine-tuning batch size")
    parser.add_argument("--lr", type=float, default=3e-4, help="peak fine-tuning learning rate")
    parser.add_argument("--warmup", type=int, default=20, help="learning-rate warm-up steps")
    parser.add_argument("--evals", type=int, default=6, help="test evaluations per w2s run")
    args = parser.parse_args()
    seeds, device = common.check_args(parser, args)
    if args.task != "arith":
        parser.error("weak_to_strong runs on arith only (its ladder learns the multiplication "
                     "table)")
    common.positive(parser, steps=args.steps, scratch_mult=args.scratch_mult, half=args.half,
                    val=args.val, problems=args.problems, batch_size=args.batch_size, lr=args.lr,
                    scratch_lr=args.scratch_lr, evals=args.evals)
    if not 0 <= args.conf_start < 1:
        parser.error(f"--conf-start must be in [0, 1), got {args.conf_start}")
    if args.ladder_seed < 0:
        parser.error(f"--ladder-seed must be >= 0, got {args.ladder_seed}")
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0, got {args.warmup}")
    if args.quick:
        args.steps, args.half, args.val, args.problems = 10, 40, 20, 20
        args.batch_size, args.evals, args.warmup = 8, 2, 2
    digits = (QUICK_PRETRAIN if args.quick else PRETRAIN)["digits"]
    if 3 * args.half + args.val + args.problems > len(table(digits)):
        parser.error(f"--half x 3 + --val + --problems must fit in the {len(table(digits))} facts "
                     f"of the {digits}-digit table")

    config = dict(ladder_seed=args.ladder_seed, ladder=QUICK_LADDER if args.quick else LADDER,
                  pretrain=QUICK_PRETRAIN if args.quick else PRETRAIN, steps=args.steps,
                  scratch_mult=args.scratch_mult, scratch_lr=args.scratch_lr,
                  conf_start=args.conf_start, half=args.half,
                  val=args.val, problems=args.problems, batch_size=args.batch_size, lr=args.lr,
                  warmup=args.warmup, evals=args.evals)
    rows, start = [], time.time()
    for i, seed in enumerate(seeds):
        t0 = time.time()
        rows += run_seed(seed, args, device, args.quick)
        print(f"seed {seed} done in {time.time() - t0:.0f} s")
        summary = common.write_results("weak_to_strong", args.task, seeds[:i + 1], config, rows,
                                       time.time() - start, quick=args.quick)
    print(summary)
    for arm in ("w2s_naive", "w2s_conf", "w2s_boot", "w2s_random_init"):
        print()
        print(pgr_matrix(rows, arm))


if __name__ == "__main__":
    main()
