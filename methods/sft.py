"""Supervised fine-tuning, and the base models every method starts from.

The idea: show the model (prompt, reference answer) pairs and minimise the cross-entropy of the
answer's tokens given the prompt. The prompt's tokens get no loss (target -1), as in minGPT's
adder: the model is asked to answer, not to predict which problems get asked.

    L(theta) = - sum_{t in answer} log p_theta(y_t | x, y_<t)      (averaged over answer tokens)

AdamW, a linear warm-up then cosine decay of the learning rate, gradient clipping at 1.

`base_model(task)` trains a GPT from scratch on the task's training split and caches it in out/,
under a name keyed by every setting that shapes it, so a change of settings trains a new one and
an unchanged one is loaded in a second. It is written atomically: an interrupted run leaves no
half-written checkpoint. Its budget is chosen on purpose to leave room to improve (DESIGN.md):
greedy test accuracy between 20% and 80%, and pass@16 far above pass@1, so that every later
method has something to gain. See tutorials/01_sft.md for how the budget was chosen.

Run:
  python methods/sft.py --task arith            # train (or load) the base, evaluate, write results/
  python methods/sft.py --task code --seeds 0,1,2
  python methods/sft.py --task arith --quick    # tiny model and budget, same path (for tests)

What you should see: the loss falling; greedy accuracy in the 20-80% band; pass@16 at T=0.8
well above sampled pass@1: the model often knows an answer that its first try misses.
"""
import hashlib
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

import common  # noqa: E402
from model import GPT, GPTConfig, CheckpointError, autocast, load, pack, save  # noqa: E402
from sample import evaluate  # noqa: E402
from verify import TASKS  # noqa: E402

# The base model of each task: architecture, data and budget. Changing any value trains a new
# base (the cache key is a hash of these). Chosen so the base lands in the 20-80% band.
BASE = {
    "arith": dict(n_layer=4, n_head=4, n_embd=128, block_size=32,
                  n_train=20000, steps=3500, batch_size=64, lr=1e-3, warmup=100),
    "code": dict(n_layer=4, n_head=4, n_embd=128, block_size=256,
                 n_train=20000, steps=1000, batch_size=32, lr=2e-3, warmup=50),
}
QUICK = dict(n_layer=1, n_head=2, n_embd=32, n_train=200, steps=20, batch_size=16, lr=1e-3,
             warmup=5)


def lr_at(step, steps, lr, warmup, min_frac=0.1):
    """Linear warm-up to `lr` over `warmup` steps, then cosine decay to min_frac * lr."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return lr * (min_frac + (1 - min_frac) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def adamw(model, lr, weight_decay):
    """AdamW with weight decay on matrices only (nanoGPT): not on biases or LayerNorm gains."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.98))


def finetune(model, pairs, steps=1000, batch_size=64, lr=1e-3, warmup=100, weight_decay=0.1,
             seed=0, desc="sft", progress=True):
    """Masked next-token training on (prompt, completion) pairs; returns the loss per step.
    Batches are drawn uniformly with replacement from `pairs` by a seeded generator."""
    if not pairs:
        raise ValueError("finetune needs at least one (prompt, completion) pair")
    device = next(model.parameters()).device
    opt = adamw(model, lr, weight_decay)
    rng = torch.Generator().manual_seed(seed)
    model.train()
    losses = []
    bar = tqdm(range(steps), desc=desc, disable=not progress, leave=False, mininterval=1.0)
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, lr, warmup)
        batch = torch.randint(len(pairs), (batch_size,), generator=rng).tolist()
        idx, targets = pack([pairs[i][0] for i in batch], [pairs[i][1] for i in batch],
                            model.config.block_size)
        with autocast(device):
            _, loss = model(idx.to(device), targets.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    return losses


def base_settings(task, quick=False):
    settings = dict(BASE[task])
    if quick:
        settings.update(QUICK)
    settings["difficulty"] = TASKS[task].default_difficulty
    return settings


def base_path(task, seed=0, quick=False):
    settings = base_settings(task, quick)
    key = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
    return os.path.join(common.OUT, f"base-{task}-seed{seed}-{key}.pt")


def base_model(task, seed=0, device="cpu", quick=False, retrain=False, progress=True):
    """The base model for `task` (trained on first use, then loaded from out/)."""
    path = base_path(task, seed, quick)
    if os.path.exists(path) and not retrain:
        try:
            return load(path, device)
        except CheckpointError as e:
            print(f"cached base unreadable ({e}); retraining", file=sys.stderr)
    s = base_settings(task, quick)
    common.seed_everything(seed)
    t = TASKS[task]
    problems = t.problems(s["n_train"], seed=seed, split="train")
    pairs = [(p.prompt, p.answer) for p in problems]
    model = GPT(GPTConfig(n_layer=s["n_layer"], n_head=s["n_head"], n_embd=s["n_embd"],
                          block_size=s["block_size"])).to(device)
    start = time.time()
    losses = finetune(model, pairs, steps=s["steps"], batch_size=s["batch_size"], lr=s["lr"],
                      warmup=s["warmup"], seed=seed, desc=f"base {task} seed {seed}",
                      progress=progress)
    seconds = time.time() - start
    save(model, path, task=task, seed=seed, settings=s, train_seconds=seconds,
         final_loss=sum(losses[-20:]) / len(losses[-20:]))
    model.meta = dict(task=task, seed=seed, settings=s, train_seconds=seconds)
    return model


def main():
    parser = common.parser_for(__doc__, default_task="arith")
    parser.add_argument("--problems", type=int, default=500, help="test problems to evaluate on")
    parser.add_argument("--samples", type=int, default=16, help="samples per problem for pass@k")
    parser.add_argument("--temperature", type=float, default=0.8, help="sampling temperature")
    parser.add_argument("--retrain", action="store_true", help="ignore the cached base model")
    args = parser.parse_args()
    seeds, device = common.check_args(parser, args)
    common.positive(parser, problems=args.problems, samples=args.samples,
                    temperature=args.temperature)
    if args.quick:
        args.problems, args.samples = min(args.problems, 20), min(args.samples, 4)

    task = TASKS[args.task]
    problems = task.problems(args.problems, seed=0, split="test")
    ks = sorted({1, args.samples})
    rows, start = [], time.time()
    for seed in seeds:
        t0 = time.time()
        model = base_model(args.task, seed=seed, device=device, quick=args.quick,
                           retrain=args.retrain)
        r = evaluate(model, task, problems, n=args.samples, temperature=args.temperature,
                     seed=seed, ks=ks)
        print(f"seed {seed}: greedy {r['greedy_acc']:.3f}  " +
              "  ".join(f"pass@{k} {r[f'pass@{k}']:.3f}" for k in ks) +
              f"  ({model.num_params() / 1e6:.2f}M params, trained in "
              f"{model.meta.get('train_seconds', 0):.0f} s, this run {time.time() - t0:.0f} s)")
        rows.append(dict(arm="base", step=0, metric="test_acc", value=r["greedy_acc"], seed=seed))
        for k in ks:
            rows.append(dict(arm="base", step=0, metric=f"pass@{k}", value=r[f"pass@{k}"], seed=seed))
        # the room to improve: how much more often 16 tries contain an answer than one try does
        rows.append(dict(arm="base", step=0, metric=f"pass@{ks[-1]}-pass@1",
                         value=r[f"pass@{ks[-1]}"] - r["pass@1"], seed=seed))
        rows.append(dict(arm="base", step=0, metric="train_seconds",
                         value=round(model.meta.get("train_seconds", 0.0), 1), seed=seed))
        config = dict(base_settings(args.task, args.quick), problems=len(problems),
                      samples=args.samples, temperature=args.temperature)
        table = common.write_results("sft", args.task, seeds[:seeds.index(seed) + 1], config,
                                     rows, time.time() - start, quick=args.quick)
    print(table)


if __name__ == "__main__":
    main()
