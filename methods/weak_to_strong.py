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
     repo), loss on the product. A bigger model holds more of the table (the `pretrained` rows
     measure how much). The test facts are in it on purpose (the toy's "pretraining leakage":
     the strong model is meant to know them); what no model has seen is the NEW format:
  2. The task: "123*4>" -> "294". Fine-tuning must map the new question onto the table the
     model already holds: that is what "elicit" means here.
  3. weak = a smaller ladder model fine-tuned on ground truth of half A (1000 facts). Its soft
     labels on half B: its greedy answer, and its next-token distribution along that answer.
  4. Arms per (weak, strong) pair: w2s_naive, w2s_conf, ceiling (strong fine-tuned on ground
     truth of B), and the control w2s_random_init (the strong architecture from scratch, on the
     same weak labels, 2x the steps at the pretraining learning rate). And w2s_boot for S -> L:
     L learns from the labels that the S -> M naive student writes on a third half C.

Simplified, and why (tutorials/04_weak_to_strong.md has the runs behind each choice):
  - Facts, not a rule. A ladder pretrained on addition learned it through a sharp transition
    whose step depended on the data order more than on the size: the "strong" ceiling did not
    reliably beat the "weak" teacher. How many facts a model stores grows smoothly with size.
  - Generative, not binary. A binary "is a+b=c correct?" classifier on a model that adds
    perfectly stayed at chance even on ground truth: a 4-layer model cannot compute the sum and
    compare it in one forward pass. So the soft labels are token-level, along the teacher's
    greedy answer (distillation), as in the paper's chess setting (next-move labels).
  - The new format changes one symbol and keeps every position: the models have learned
    absolute positions, and a prefix token (which shifts every position) or swapped operands
    elicited far less of what a model knew, even from ground truth (exercise 2 of the tutorial).
  - The confidence loss hardens with argmax per token, the multi-class form of the EleutherAI
    re-implementation. The paper's batch-adaptive threshold (t such that half the batch is
    positive) keeps a class prior of binary labels; a ten-class digit has no prior to keep.
  - No early stopping: it could only use weak labels (never ground truth). We train a fixed
    budget and report the agreement with the teacher on held-out facts (`weak_val_acc`) at
    every evaluation, so you can see what such early stopping would pick.
  - The confidence loss's warm-up starts at half of training (--conf_start 0.5), not at step 0:
    at first the students answer few facts in the new format, and hardening those answers
    would train them on their own mistakes.
  - Bootstrapping is one chain, S -> M -> L, reported as the pair S -> L (arm w2s_boot). The
    paper chains several intermediate sizes; three sizes allow one step.

Run (arith only: the ladder learns its multiplication table):
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
import itertools
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root

import torch
from torch.nn import functional as F

import common
from model import GPT, GPTConfig, pack
from sample import evaluate, greedy
from sft import finetune, train
from verify import Problem

FLAGS = dict(
    steps=(300, "fine-tuning steps of every arm"),
    conf_start=(0.5, "share of training before the confidence loss starts its warm-up", 0),
    ladder_seed=(0, "seed of the pretrained ladder every seed starts from", 0),
    scratch_mult=(2, "the random-init control trains this many times longer"),
    scratch_lr=(1e-3, "peak learning rate of the random-init control (the pretraining one)"),
    half=(1000, "facts in each of halves A, B, C"),
    val=(200, "held-out weak-labelled facts"),
    problems=(500, "test facts"),
    batch_size=(64, "fine-tuning batch size"),
    lr=(3e-4, "peak fine-tuning learning rate"),
    warmup=(20, "learning-rate warm-up steps", 0),
    evals=(6, "test evaluations per w2s run"),
)
QUICK = dict(steps=10, half=40, val=20, problems=20, batch_size=8, evals=2, warmup=2)
ARMS = ("w2s_naive", "w2s_conf", "w2s_boot", "w2s_random_init")  # the PGR matrices printed

# The ladder, smallest first: weak teachers are every size but the largest, strong students every
# size but the smallest. Picked with side probes to hold clearly different shares of the table.
LADDER = dict(S=dict(n_layer=2, n_head=4, n_embd=48), M=dict(n_layer=2, n_head=4, n_embd=64),
              L=dict(n_layer=4, n_head=4, n_embd=128))
# Pretraining (the whole multiplication table, old format); changing it re-pretrains the ladder
PRETRAIN = dict(digits=3, steps=3000, batch_size=64, lr=1e-3, warmup=100, block_size=24)
QUICK_LADDER = dict(S=dict(n_layer=1, n_head=1, n_embd=16), M=dict(n_layer=1, n_head=2, n_embd=32),
                    L=dict(n_layer=2, n_head=2, n_embd=32))
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
    """Disjoint facts for one seed, all in the pretraining table: half A (the teachers' ground
    truth), half B (weak labels), B_val (held-out weak labels: the only validation a w2s run may
    use), test, and half C (labelled by the middle student of the chain S -> M -> L)."""
    facts = table(digits)
    random.Random(f"w2s-{seed}-{digits}").shuffle(facts)
    need = 3 * n_half + n_val + n_test
    if need > len(facts):
        raise ValueError(f"the {digits}-digit table has {len(facts)} facts; "
                         f"3 halves + val + test need {need}")
    b, v = 2 * n_half, 2 * n_half + n_val  # where half B and B_val start
    return facts[:n_half], facts[n_half:b], facts[b:v], facts[v:v + n_test], facts[v + n_test:need]


# ---------------------------------------------------------------------------------------------
# The pretrained ladder, cached in out/

def ladder_settings(size, quick=False):
    s = dict((QUICK_LADDER if quick else LADDER)[size])
    s.update(QUICK_PRETRAIN if quick else PRETRAIN)
    s["data"] = "multiplication table"  # the key changes with the data, not only the settings
    return s


def pretrained(size, seed, device="cpu", quick=False, progress=True):
    """The ladder model `size` of `seed`: pretrained on first use, then loaded from out/."""
    s, name = ladder_settings(size, quick), f"{'quick-' if quick else ''}w2s-{size}"
    path = common.checkpoint_path(name, dict(s, **common.machine(device, "float32")), seed)

    def pretrain():
        common.seed_everything(seed)
        pairs = [pretrain_pair(a, b) for a, b in table(s["digits"])]
        shape = {k: s[k] for k in ("n_layer", "n_head", "n_embd", "block_size")}
        model = GPT(GPTConfig(**shape)).to(device)
        finetune(model, pairs, steps=s["steps"], batch_size=s["batch_size"], lr=s["lr"],
                 warmup=s["warmup"], seed=seed, desc=f"pretrain {size} seed {seed}",
                 progress=progress)
        return model

    return common.cached(path, pretrain, device, size=size, seed=seed, settings=s)


# ---------------------------------------------------------------------------------------------
# The losses

def alpha_at(step, steps, alpha_max, warmup_frac=0.2, start_frac=0.0):
    """The confidence loss weight: 0 until start_frac of training, then linear up to alpha_max
    over the next warmup_frac, then constant (start_frac = 0: the paper's schedule, App. A.4)."""
    step, warm = step - start_frac * steps, warmup_frac * steps
    if step < 0:
        return 0.0
    return alpha_max if warm <= 0 else alpha_max * min(1.0, step / warm)


def w2s_loss(logits, weak_probs, mask, alpha):
    """Eq. 1 per token: (1 - alpha) CE(p_s, p_w) + alpha CE(p_s, onehot(argmax p_s)), averaged
    over answer tokens; with alpha = 0 it is the naive loss. The hardened target is detached: it
    is a label. logits, weak_probs: (B, T, V); mask: (B, T) with 1 on answer tokens."""
    hard = F.one_hot(logits.detach().argmax(-1), logits.size(-1)).float()  # (B, T, V)
    targets = (1 - alpha) * weak_probs + alpha * hard  # (B, T, V): one soft target per token
    per_token = -(targets * torch.log_softmax(logits.float(), dim=-1)).sum(-1)  # (B, T)
    return (per_token * mask).sum() / mask.sum()


def pgr(weak_acc, w2s_acc, ceiling_acc):
    """Performance gap recovered; None when the ceiling does not beat the teacher (undefined)."""
    gap = ceiling_acc - weak_acc
    return (w2s_acc - weak_acc) / gap if gap > 0 else None


# ---------------------------------------------------------------------------------------------
# Weak labels, and training on them

@torch.no_grad()
def weak_labels(teacher, task, problems, val_problems):
    """What a teacher hands its students: its greedy answers `ans` on `problems` (`right`: which
    are correct), its next-token distributions `probs` (N, T, V) along them, aligned with
    pack(prompts, ans), and its answers `val` on the held-out facts."""
    answers, right = greedy(teacher, task, problems)
    device = next(teacher.parameters()).device
    idx, _ = pack([p.prompt for p in problems], answers)  # (N, T)
    logits, _ = teacher(idx.to(device))  # (N, T, V)
    probs = torch.softmax(logits.float(), dim=-1).cpu()  # (N, T, V)
    return dict(problems=problems, ans=answers, right=right, probs=probs,
                val=greedy(teacher, task, val_problems)[0])


def agreement(answers, reference):
    return sum(a == r for a, r in zip(answers, reference)) / len(answers)


def train_on_weak_labels(model, labels, steps, batch_size, lr, warmup, alpha_max=0.0,
                         conf_start=0.0, seed=0, evaluate_at=(), evaluate=None, desc="w2s",
                         progress=True):
    """Fine-tune `model` on the soft labels of `labels` (weak_labels' dict) with the repo's
    training loop. alpha_max = 0: the naive loss; > 0: the confidence loss, whose weight
    depends on the step, so the loss counts its own calls (one per step)."""
    device = next(model.parameters()).device
    prompts = [p.prompt for p in labels["problems"]]
    idx_all, targets_all = pack(prompts, labels["ans"])  # (N, T): the padding of labels' probs
    step = itertools.count()

    def soft_label_loss(rng):
        alpha = alpha_at(next(step), steps, alpha_max, start_frac=conf_start)
        batch = torch.randint(len(prompts), (batch_size,), generator=rng)  # (B,)
        idx, targets = idx_all[batch].to(device), targets_all[batch].to(device)  # (B, T)
        logits, _ = model(idx)  # (B, T, V)
        mask = (targets != -1).float()  # (B, T): the answer's tokens and its end token
        return w2s_loss(logits, labels["probs"][batch].to(device), mask, alpha)

    return train(model, soft_label_loss, steps, lr, warmup, seed=seed, evaluate_at=evaluate_at,
                 evaluate=evaluate, desc=desc, progress=progress)


def student(model, task, labels, teacher, ceiling_acc, test, b_val, steps, lr, alpha_max,
            conf_start, batch_size, warmup, evals, seed, desc, progress):
    """Train one student on `labels`; returns its curve {step: metrics} (evals + 1 points) and,
    at the end, what it does where its `teacher` (the original weak model) is wrong."""
    curve, final = {}, {}

    def measure(step):
        final["ans"], right = greedy(model, task, test)
        acc = sum(right) / len(right)
        curve[step] = dict(test_acc=acc, weak_val_acc=agreement(greedy(model, task, b_val)[0],
                                                                labels["val"]))
        gap = pgr(teacher["test_acc"], acc, ceiling_acc)
        if gap is not None:
            curve[step]["pgr"] = gap

    every = max(1, steps // evals)
    train_on_weak_labels(model, labels, steps, batch_size, lr, warmup, alpha_max, conf_start,
                         seed, evaluate_at=[*range(0, steps, every), steps], evaluate=measure,
                         desc=desc, progress=progress)
    # on the test facts the teacher gets wrong: how often the student writes the teacher's exact
    # answer, and how often it is right there (knowledge no label pointed at: elicitation)
    ans, wrong = final["ans"], [i for i, ok in enumerate(teacher["test_right"]) if not ok]
    n = max(1, len(wrong))
    return curve, dict(
        agree_on_weak_errors=sum(ans[i] == teacher["test_ans"][i] for i in wrong) / n,
        right_on_weak_errors=sum(task.check(test[i], ans[i]).correct for i in wrong) / n,
        # how well it fits the labels it was trained on: the control should fit them too
        fit_weak_labels=agreement(greedy(model, task, labels["problems"])[0], labels["ans"]))


# ---------------------------------------------------------------------------------------------
# One seed: teachers, ceilings, and every (weak, strong) pair

def run_seed(seed, task, device, quick, steps, conf_start, ladder_seed, scratch_mult,
             scratch_lr, half, val, problems, batch_size, lr, warmup, evals):
    """Everything for one seed; the pretrained ladder is the shared one of ladder_seed."""
    digits = (QUICK_PRETRAIN if quick else PRETRAIN)["digits"]
    sizes, progress, rows = list(LADDER), not quick, []
    facts = splits(seed, digits, half, val, problems)
    half_a, half_b, b_val, test, half_c = ([task_problem(a, b, digits) for a, b in part]
                                           for part in facts)

    def ladder(size, truth=(), desc=""):  # a fresh copy, fine-tuned on the ground truth `truth`
        model = pretrained(size, ladder_seed, device, quick, progress)
        if truth:
            finetune(model, [(p.prompt, p.answer) for p in truth], steps=steps, seed=seed,
                     batch_size=batch_size, lr=lr, warmup=warmup, desc=desc, progress=progress)
        return model

    def from_scratch(size):  # the control: the strong architecture, fresh random weights
        config = ladder(size).config
        torch.manual_seed(seed)
        return GPT(config).to(device)

    def record(label, arm, step, metrics, weak="-", strong="-"):
        common.show(label, metrics)
        rows.extend(common.rows_of(arm, step, metrics, weak=weak, strong=strong))

    # what pretraining put there: each size's accuracy on the test facts in the pretraining
    # format ("123*4=" -> "294"), which no fine-tuning has touched
    old_format = [Problem(*pretrain_pair(a, b), tests=a * b, difficulty=digits)
                  for a, b in facts[3]]
    for s in sizes:
        model = ladder(s)
        record(f"  ladder {s} ({model.num_params() / 1e6:.3f}M params)", "pretrained", 0,
               dict(lm_acc=evaluate(model, task, old_format)["greedy_acc"]), strong=s)
    weak = {}  # every size but the largest, fine-tuned on ground truth of half A, labels half B
    for w in sizes[:-1]:
        model = ladder(w, half_a, f"weak {w}")
        weak[w] = weak_labels(model, task, half_b, b_val)
        weak[w]["test_ans"], weak[w]["test_right"] = greedy(model, task, test)
        weak[w]["test_acc"] = sum(weak[w]["test_right"]) / len(test)
        record(f"seed {seed} weak {w}", "weak", steps, dict(
            test_acc=weak[w]["test_acc"], label_acc=sum(weak[w]["right"]) / len(half_b)), weak=w)
    ceiling = {}  # every size but the smallest, fine-tuned on ground truth of half B
    for s in sizes[1:]:
        ceiling[s] = evaluate(ladder(s, half_b, f"ceiling {s}"), task, test)["greedy_acc"]
        record(f"seed {seed} ceiling {s}", "ceiling", steps, dict(test_acc=ceiling[s]), strong=s)

    chain = None  # the labels of the S -> M naive student on half C, once it is trained
    for w, s in [(w, s) for i, w in enumerate(sizes) for s in sizes[i + 1:]]:
        # the arms of the pair: where the student starts, what it learns from, and how (the
        # control gets the pretraining learning rate and more steps, to fit the weak labels)
        arms = dict(
            w2s_naive=dict(start=ladder, labels=weak[w], alpha_max=0.0, steps=steps, lr=lr),
            # the paper: alpha_max 0.75 for the largest students, 0.5 for the others
            w2s_conf=dict(start=ladder, labels=weak[w], alpha_max=0.75 if s == sizes[-1] else 0.5,
                          steps=steps, lr=lr),
            w2s_random_init=dict(start=from_scratch, labels=weak[w], alpha_max=0.0,
                                 steps=scratch_mult * steps, lr=scratch_lr))
        if (w, s) == (sizes[0], sizes[-1]) and chain is not None:
            # bootstrapping: the largest student learns from the middle student's labels on C
            # (that student learned from S); PGR and copying are still measured against S
            arms["w2s_boot"] = dict(start=ladder, labels=chain, alpha_max=0.0, steps=steps, lr=lr)
        for arm, a in arms.items():
            model = a["start"](s)
            curve, final = student(model, task, a["labels"], weak[w], ceiling[s], test, b_val,
                                   a["steps"], a["lr"], a["alpha_max"], conf_start, batch_size,
                                   warmup, evals, seed, f"{arm} {w}->{s}", progress)
            for step, metrics in list(curve.items()) + [(a["steps"], final)]:
                rows += common.rows_of(arm, step, metrics, weak=w, strong=s)
            common.show(f"seed {seed} {arm} {w}->{s}", dict(curve[a["steps"]], **final))
            if (arm, w, s) == ("w2s_naive", sizes[0], sizes[1]):
                chain = weak_labels(model, task, half_c, b_val)  # how right: vs S's label_acc
                record(f"seed {seed} chain {w}->{s}->{sizes[-1]}", "w2s_boot", 0, dict(
                    chain_label_acc=sum(chain["right"]) / len(half_c)), weak=w, strong=sizes[-1])
    return rows


def pgr_matrix(rows, arm):
    """Mean PGR at the end of training, weak size x strong size, as printable text."""
    # rows come in step order, so the last pgr of a (pair, seed) is its final one
    final = {(r["weak"], r["strong"], r["seed"]): r["value"] for r in rows
             if r["arm"] == arm and r["metric"] == "pgr"}
    sizes = list(LADDER)
    lines = [f"PGR, {arm} (rows: weak teacher, columns: strong student; mean over seeds)",
             "weak\\strong " + "".join(f"{s:>9}" for s in sizes[1:])]
    for w in sizes[:-1]:
        cells = [[v for (ww, ss, _), v in final.items() if (ww, ss) == (w, s)] for s in sizes[1:]]
        lines.append(f"{w:<12}" + "".join(f"{sum(c) / len(c):9.2f}" if c else " " * 9
                                          for c in cells))
    return "\n".join(lines)


def main():
    args = common.parse_args(__doc__, FLAGS, QUICK, default_task="arith", tasks=("arith",))
    if args.conf_start >= 1:
        common.fail(f"--conf_start must be in [0, 1), got {args.conf_start}")
    n_facts = len(table((QUICK_PRETRAIN if args.quick else PRETRAIN)["digits"]))
    if 3 * args.half + args.val + args.problems > n_facts:
        common.fail(f"3 x --half + --val + --problems must fit in the table's {n_facts} facts")
    rows = common.run_seeds("weak_to_strong", args, run_seed, FLAGS)
    for arm in ARMS:
        print(f"\n{pgr_matrix(rows, arm)}")


if __name__ == "__main__":
    main()
