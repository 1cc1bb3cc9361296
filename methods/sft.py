"""Supervised fine-tuning: the one training loop of the repo, and the base models.

The idea: show the model (prompt, reference answer) pairs and minimise the cross-entropy of the
answer's tokens given the prompt. The prompt's tokens get no loss (target -1), as in minGPT's
adder: the model is asked to answer, not to predict which problems get asked.

    L(theta) = - sum_{t in answer} log p_theta(y_t | x, y_<t)      (averaged over answer tokens)

`train` is the only optimisation loop in the repo: AdamW, a linear warm-up then cosine decay of
the learning rate, gradient clipping at 1. It takes the model and a function that returns the
loss of one batch. SFT passes the loss above (`finetune`); SPIN, the verifier of re-ranking and
weak-to-strong pass their own. The same loop, a different loss.

`base_model(task)` trains a GPT from scratch on the task's training split and caches it in out/,
under a name keyed by every setting that shapes it (and the device, dtype, torch version and
thread count that trained it), so a change of settings trains a new one and an unchanged one is
loaded in a second. See tutorials/01_sft.md for how its budget was chosen: greedy test accuracy
between 20% and 80%, and pass@16 far above pass@1, so that every later method has room to gain.

Run:
  python methods/sft.py --task arith            # train (or load) the base, evaluate, write results/
  python methods/sft.py --task code --seeds 0,1,2
  python methods/sft.py --task arith --quick    # tiny model and budget, same path (for tests)

What you should see: the loss falling; greedy accuracy in the 20-80% band; pass@16 at T=0.8
well above sampled pass@1: the model often knows an answer that its first try misses.
"""
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root

import torch
from tqdm import tqdm

import common
from model import GPT, GPTConfig, pack
from sample import evaluate

# The base model of each task: architecture, data and budget. Changing any value trains a new
# base (the cache key is a hash of these). Chosen so the base lands in the 20-80% band.
BASE = {
    "arith": dict(n_layer=4, n_head=4, n_embd=128, block_size=32,
                  n_train=20000, steps=3500, batch_size=64, lr=1e-3, warmup=100),
    "code": dict(n_layer=4, n_head=4, n_embd=128, block_size=256,
                 n_train=20000, steps=1000, batch_size=32, lr=2e-3, warmup=50),
}
BASE_QUICK = dict(n_layer=1, n_head=2, n_embd=32, n_train=200, steps=20, batch_size=16, lr=1e-3,
                  warmup=5)

# The evaluation `python methods/sft.py` runs on the base
FLAGS = dict(
    problems=(500, "test problems to evaluate on"),
    samples=(16, "samples per problem for pass@k"),
    temperature=(0.8, "sampling temperature"),
    retrain=(False, "ignore the cached base model"),
)
QUICK = dict(problems=20, samples=4)


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
    steps (s = 0: before the first). Returns the loss of every step."""
    opt = adamw(model, lr, weight_decay)
    rng = torch.Generator().manual_seed(seed)
    losses = []
    bar = tqdm(range(steps), desc=desc, disable=not progress, leave=False, mininterval=1.0)
    for step in bar:
        if evaluate is not None and step in evaluate_at:
            evaluate(step)
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
    model.eval()
    if evaluate is not None and steps in evaluate_at:
        evaluate(steps)
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


# ---------------------------------------------------------------------------------------------
# The base models, cached in out/

def base_settings(task, quick=False):
    settings = dict(BASE[task.name])
    if quick:
        settings.update(BASE_QUICK)
    settings["difficulty"] = task.default_difficulty
    return settings


def base_model(task, seed=0, device="cpu", quick=False, retrain=False, progress=True):
    """The base model for `task` (trained on first use, then loaded from out/)."""
    s = base_settings(task, quick)
    name = f"{'quick-' if quick else ''}base-{task.name}"
    path = common.checkpoint_path(name, dict(s, **common.machine(device, "float32")), seed)
    if retrain and os.path.exists(path):
        os.remove(path)

    def train_base():
        common.seed_everything(seed)
        pairs = [(p.prompt, p.answer) for p in task.problems(s["n_train"], seed=seed)]
        model = GPT(GPTConfig(n_layer=s["n_layer"], n_head=s["n_head"], n_embd=s["n_embd"],
                              block_size=s["block_size"])).to(device)
        finetune(model, pairs, steps=s["steps"], batch_size=s["batch_size"], lr=s["lr"],
                 warmup=s["warmup"], seed=seed, desc=f"base {task.name} seed {seed}",
                 progress=progress)
        return model

    return common.cached(path, train_base, device, task=task.name, seed=seed, settings=s)


def run_seed(seed, task, device, quick, problems, samples, temperature, retrain):
    """Evaluate one seed's base: greedy accuracy, pass@1 and pass@k on the test split."""
    model = base_model(task, seed=seed, device=device, quick=quick, retrain=retrain)
    ks = sorted({1, samples})
    r = evaluate(model, task, task.problems(problems, seed=0, split="test"), n=samples,
                 temperature=temperature, seed=seed, ks=ks)
    metrics = {"test_acc": r["greedy_acc"], **{f"pass@{k}": r[f"pass@{k}"] for k in ks},
               # the room to improve: how much more often k tries contain an answer than one
               f"pass@{ks[-1]}-pass@1": r[f"pass@{ks[-1]}"] - r["pass@1"],
               "train_seconds": model.meta.get("train_seconds", 0.0)}
    common.show(f"seed {seed} ({model.num_params() / 1e6:.2f}M params)", metrics)
    return common.rows_of("base", 0, metrics)


def main():
    args = common.parse_args(__doc__, FLAGS, QUICK, default_task="arith")
    common.run_seeds("sft", args, run_seed, FLAGS)


if __name__ == "__main__":
    main()
