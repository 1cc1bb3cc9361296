"""Supervised fine-tuning: the one training loop of the repo, and the base models.

The idea: show the model (prompt, reference answer) pairs and minimise the cross-entropy of the
answer's tokens given the prompt. The prompt's tokens get no loss (target -1), as in minGPT's
adder: the model is asked to answer, not to predict which problems get asked.

    L(theta) = - sum_{t in answer} log p_theta(y_t | x, y_<t)      (averaged over answer tokens)

`train` is the only optimisation loop in the repo: AdamW, a linear warm-up then cosine decay of
the learning rate, gradient clipping at 1. It takes the model and a function that returns the
loss of one batch. SFT passes the loss above (`finetune`); SPIN, the verifier of re-ranking and
weak-to-strong pass their own. The same loop, a different loss.

`base_model(task)` is where every method starts: a GPT trained from scratch on labelled data and
cached in out/, under a name keyed by every setting that shapes it (and the device, dtype, torch
version and thread count that trained it). By default it is the base the self-improvement papers
start from: fine-tuned on a SCARCE labelled set D_gold (the "human data": 1,000 problems) until
the accuracy on a labelled validation set stops rising, with a large pool of unlabelled prompts
left for the methods (verify.py's gold, val and pool parts of the train split). `--gold
abundant` builds the first round's base instead, trained on most of the train split, pool
included: the regime where self-training has nothing new to learn.

What `python methods/sft.py` measures, per seed (tutorials/01_sft.md reads it):
  base           greedy test accuracy, pass@1 and pass@16 at T = 0.8, train accuracy on D_gold
  sft_more       the base trained on D_gold again with its own recipe: a plateau if it does not
                 gain (more of the same human data does not help)
  sft_gold_pool  the base trained on D_gold + the pool WITH gold labels: the upper bound of any
                 self-training on the pool (the information the pool carries)
  n_gold_<N>     test accuracy of a base trained on N labelled problems (the curve against N)

Run:
  python methods/sft.py --task arith            # train (or load) the bases, evaluate, write results/
  python methods/sft.py --task code --seeds 0,1,2
  python methods/sft.py --gold abundant         # the first round's base
  python methods/sft.py --task arith --quick    # tiny model and budget, same path (for tests)

What you should see: greedy accuracy in the 20-80% band; sft_more no better than the base;
sft_gold_pool far above it; accuracy rising with N.
"""
import copy
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root

import torch
from tqdm import tqdm

import common
from model import GPT, GPTConfig, pack
from sample import evaluate

# The base model of each task, in two regimes of labelled ("gold") data (tutorials/01_sft.md):
#   scarce (the default: where the papers start): n_gold problems from the gold part of the
#     train split, trained until the greedy accuracy on n_val labelled problems of the val part
#     stops rising (checked every eval_every steps; the best checkpoint is kept, and training
#     stops after `patience` checks without a new best). Methods then
#     take prompts from the pool part, which no scarce base has seen.
#   abundant (the first round's recipe): most of the whole train split, pool included (9,000 of
#     the ~9,900 train prompts of 2-digit arithmetic; 20,000 of the list language's), for a
#     fixed number of steps: a base that has seen every pool prompt with its gold label, where
#     self-training has nothing new to learn.
# Changing any value trains a new base (the cache key is a hash of these).
BASES = {
    "scarce": {
        "arith": dict(n_layer=4, n_head=4, n_embd=128, block_size=32, n_gold=1000, n_val=300,
                      steps=5000, eval_every=250, patience=4, batch_size=32, lr=2e-3, warmup=100),
        "code": dict(n_layer=2, n_head=4, n_embd=128, block_size=256, n_gold=1000, n_val=200,
                     steps=900, eval_every=150, patience=4, batch_size=32, lr=3e-3, warmup=50),
    },
    "abundant": {
        "arith": dict(n_layer=4, n_head=4, n_embd=128, block_size=32, n_gold=9000, n_val=0,
                      steps=3500, eval_every=0, patience=0, batch_size=64, lr=1e-3, warmup=100),
        "code": dict(n_layer=4, n_head=4, n_embd=128, block_size=256, n_gold=20000, n_val=0,
                     steps=1000, eval_every=0, patience=0, batch_size=32, lr=2e-3, warmup=50),
    },
}
# The pool each task offers sft_gold_pool (2-digit arithmetic has ~11,000 prompts in all, 65% of
# its ~9,900 train prompts are pool; the list language has millions), and how many times the
# base's steps that arm trains for (the 2-layer code model needs twice as long for 20x the data)
POOL = {"arith": dict(n=6000, times=1), "code": dict(n=20000, times=2)}
BASE_QUICK = dict(n_layer=1, n_head=2, n_embd=32, n_gold=200, n_val=8, steps=20, eval_every=10,
                  patience=4, batch_size=16, lr=1e-3, warmup=5)

# What `python methods/sft.py` measures: the base, the two arms that say whether it is at a
# plateau and whether the pool carries information, and test accuracy against n_gold
FLAGS = dict(
    gold=("scarce", "the regime of labelled data: scarce or abundant"),
    problems=(500, "test problems to evaluate on"),
    samples=(16, "samples per problem for pass@k"),
    temperature=(0.8, "sampling temperature"),
    n_pool=(0, "sft_gold_pool: pool problems with their gold labels (0: the task's POOL)", 0),
    n_curve=("", "the n_gold of the curve, arms n_gold_<N> ('': the task's CURVE; 'none')"),
    retrain=(False, "ignore the cached base model"),
)
QUICK = dict(problems=20, samples=4, n_pool=40, n_curve="100")
# The curve of test accuracy against the number of labelled problems (tutorials/01_sft.md); the
# gold part of 2-digit arithmetic holds ~3,000 prompts
CURVE = {"arith": "250,500,1000,2500", "code": "500,1000,4000"}
GOLD = ("scarce", "abundant")


# ---------------------------------------------------------------------------------------------
# The training loop

def lr_at(step, steps, lr, warmup, final_frac=0.1):
    """Linear warm-up to `lr` over `warmup` steps, then cosine decay to final_frac * lr
    (final_frac = 1: constant after the warm-up)."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return lr * (final_frac + (1 - final_frac) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def adamw(model, lr, weight_decay):
    """AdamW with weight decay on matrices only (nanoGPT): not on biases or LayerNorm gains."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.98))


def train(model, batch_loss, steps, lr, warmup=0, weight_decay=0.1, clip=1.0, seed=0,
          final_frac=0.1, evaluate_at=(), evaluate=None, desc="train", progress=True):
    """The training loop: `steps` AdamW steps on batch_loss(rng), the loss of one batch drawn
    with the seeded generator rng. For every s in evaluate_at, evaluate(s) is called after s
    steps (s = 0: before the first); if it returns True, training stops there (early
    stopping). Returns the loss of every step taken."""
    opt = adamw(model, lr, weight_decay)
    rng = torch.Generator().manual_seed(seed)
    losses = []
    bar = tqdm(range(steps), desc=desc, disable=not progress, leave=False, mininterval=1.0)
    for step in bar:
        if evaluate is not None and step in evaluate_at and evaluate(step):
            break
        model.train()
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, lr, warmup, final_frac)
        loss = batch_loss(rng)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        losses.append(loss.detach())  # no .item() here: it would wait for the device every step
        if step % 50 == 0 and progress:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    else:  # not stopped early: the evaluation after the last step
        model.eval()
        if evaluate is not None and steps in evaluate_at:
            evaluate(steps)
    model.eval()
    return torch.stack(losses).tolist() if losses else []


def finetune(model, pairs, steps=1000, batch_size=64, lr=1e-3, warmup=100, weight_decay=0.1,
             seed=0, desc="sft", progress=True, **loop):
    """Masked next-token training on (prompt, completion) pairs; returns the loss per step.
    Batches are drawn uniformly with replacement from `pairs`."""
    if not pairs:
        raise ValueError("finetune needs at least one (prompt, completion) pair")
    device = next(model.parameters()).device

    def sft_loss(rng):
        batch = torch.randint(len(pairs), (batch_size,), generator=rng).tolist()
        idx, targets = pack([pairs[i][0] for i in batch], [pairs[i][1] for i in batch],
                            model.config.block_size)  # (B, T), (B, T): -1 off the answer
        _, loss = model(idx.to(device), targets.to(device))
        return loss

    return train(model, sft_loss, steps, lr, warmup, weight_decay, seed=seed, desc=desc,
                 progress=progress, **loop)


def finetune_early_stopped(model, task, pairs, val, steps, eval_every, patience, seed=0,
                           **tune):
    """`finetune` with early stopping on the greedy accuracy on the labelled problems `val`,
    checked every eval_every steps: the best checkpoint is kept (loaded into `model` at the end)
    and training stops after `patience` checks without a new best. No val: plain finetune.
    Returns {val_acc, step} of the kept checkpoint ({} without val)."""
    kept = {}

    def keep_best(step):
        acc = evaluate(model, task, val)["greedy_acc"]
        if acc > kept.get("val_acc", -1.0):
            kept.update(val_acc=acc, step=step, state=copy.deepcopy(model.state_dict()))
        return step - kept["step"] >= patience * eval_every

    every = range(eval_every, steps + 1, eval_every) if val else ()
    finetune(model, pairs, steps=steps, seed=seed, evaluate_at=every, evaluate=keep_best, **tune)
    if kept:
        model.load_state_dict(kept.pop("state"))
    return kept


# ---------------------------------------------------------------------------------------------
# The base models, cached in out/

def base_settings(task, gold="scarce", quick=False, n_gold=None):
    settings = dict(BASES[gold][task.name])
    if quick:
        settings.update(BASE_QUICK)
    if n_gold is not None:
        settings["n_gold"] = n_gold
    settings.update(difficulty=task.default_difficulty, gold=gold)
    return settings


def gold_data(task, settings, seed):
    """The labelled problems a base learns from, and those it stops on (scarce: the gold and
    val parts of the train split; abundant: the whole train split, and no early stopping)."""
    scarce = settings["gold"] == "scarce"
    gold = task.problems(settings["n_gold"], seed=seed, split="gold" if scarce else "train")
    val = task.problems(settings["n_val"], seed=seed, split="val") if settings["n_val"] else []
    return gold, val


def base_model(task, seed=0, device="cpu", quick=False, gold="scarce", n_gold=None,
               retrain=False, progress=True):
    """The base model for `task` (trained on first use, then loaded from out/). Its meta holds
    the step it was kept at, its validation accuracy and how long it trained."""
    s = base_settings(task, gold, quick, n_gold)
    # the default base is out/base-<task>-seed<s>-<key>.pt (what sample.py and bench.py load);
    # the abundant base and the bases of the curve against N carry their regime in the name
    other_n = n_gold is not None and n_gold != base_settings(task, gold, quick)["n_gold"]
    variant = ("" if gold == "scarce" else f"-{gold}") + (f"-n{n_gold}" if other_n else "")
    name = f"{'quick-' if quick else ''}base-{task.name}{variant}"
    path = common.checkpoint_path(name, dict(s, **common.machine(device, "float32")), seed)
    if retrain and os.path.exists(path):
        os.remove(path)
    kept = {}

    def train_base():
        common.seed_everything(seed)
        data, val = gold_data(task, s, seed)
        model = GPT(GPTConfig(n_layer=s["n_layer"], n_head=s["n_head"], n_embd=s["n_embd"],
                              block_size=s["block_size"])).to(device)
        kept.update(finetune_early_stopped(
            model, task, [(p.prompt, p.answer) for p in data], val, steps=s["steps"],
            eval_every=s["eval_every"], patience=s["patience"], batch_size=s["batch_size"],
            lr=s["lr"], warmup=s["warmup"], seed=seed, desc=f"base {task.name} seed {seed}",
            progress=progress))
        return model

    return common.cached(path, train_base, device, task=task.name, seed=seed, settings=s,
                         kept=kept)


def measure(model, task, test, data, samples, temperature, seed):
    """Greedy test accuracy, pass@1 and pass@k on the test split, and greedy accuracy on the
    labelled data it was trained on (how far it fits them)."""
    ks = sorted({1, samples})
    r = evaluate(model, task, test, n=samples, temperature=temperature, seed=seed, ks=ks)
    return {"test_acc": r.pop("greedy_acc"), **r,
            "train_acc": evaluate(model, task, data)["greedy_acc"]}


def more_sft(base, pairs, settings, seed, desc, progress, times=1):
    """A copy of the base trained on `pairs` with the base's own recipe (rate, warm-up, cosine
    decay, batch) for `times` as many steps as the base was given."""
    model = copy.deepcopy(base)
    finetune(model, pairs, steps=times * settings["steps"], batch_size=settings["batch_size"],
             lr=settings["lr"], warmup=settings["warmup"], seed=seed + 1, desc=desc,
             progress=progress)
    return model


def run_seed(seed, task, device, quick, gold, problems, samples, temperature, n_pool, n_curve,
             retrain):
    """The base of one seed against its two controls, and the curve of accuracy against N."""
    progress = not quick
    base = base_model(task, seed=seed, device=device, quick=quick, gold=gold, retrain=retrain,
                      progress=progress)
    s = base_settings(task, gold, quick)
    data, _ = gold_data(task, s, seed)
    pairs = [(p.prompt, p.answer) for p in data]
    test = task.problems(problems, seed=0, split="test")
    at = dict(task=task, test=test, data=data, samples=samples, temperature=temperature,
              seed=seed)
    start = dict(measure(base, **at), kept_step=base.meta["kept"].get("step", s["steps"]),
                 train_seconds=base.meta["train_seconds"])
    # pass@k - pass@1: how much more often k tries contain an answer than one try does
    start[f"pass@{samples}-pass@1"] = start[f"pass@{samples}"] - start["pass@1"]
    pool = task.problems(n_pool or POOL[task.name]["n"], seed=seed, split="pool")
    run = {
        "base": lambda: {0: start},
        # more of the same labelled data: does the base sit at its plateau?
        "sft_more": lambda: {1: measure(more_sft(base, pairs, s, seed, "sft_more", progress),
                                        **at)},
        # the pool with its gold labels: the upper bound of any self-training on the pool
        "sft_gold_pool": lambda: {1: measure(more_sft(
            base, pairs + [(p.prompt, p.answer) for p in pool], s, seed, "sft_gold_pool",
            progress, times=POOL[task.name]["times"]), **at)},
    }
    curve = CURVE[task.name] if n_curve == "" else "" if n_curve == "none" else n_curve
    for n in [int(x) for x in curve.split(",") if x.strip()]:
        run[f"n_gold_{n}"] = lambda n=n: {0: {"test_acc": evaluate(base_model(
            task, seed=seed, device=device, quick=quick, gold=gold, n_gold=n, progress=progress),
            task, test)["greedy_acc"]}}
    return common.run_arms(run, ",".join(run), seed)


def main():
    args = common.parse_args(__doc__, FLAGS, QUICK, default_task="arith")
    common.comma_list(args.gold, GOLD, "gold")
    try:
        [int(x) for x in args.n_curve.split(",") if x.strip() and args.n_curve != "none"]
    except ValueError:
        common.fail(f"--n_curve takes comma-separated integers, got {args.n_curve!r}")
    # the abundant regime's numbers go to results/sft_abundant-<task>.*, beside the default's
    common.run_seeds("sft", args, run_seed, FLAGS,
                     name="sft" if args.gold == "scarce" else "sft_abundant")


if __name__ == "__main__":
    main()
