"""Sampling from the model, and the two estimators every method reports against.

- `generate`: n completions for each prompt. Prompts are prefilled together in one forward
  (shorter ones left-padded, the padding masked out and each row's positions counted from its
  own first token); the KV cache is then copied to n rows, so a prompt is never recomputed per
  sample. Each step feeds one token per row. Temperature 0 is argmax; otherwise softmax(logits / T),
  optionally cut to the top k, drawn with an explicit torch.Generator: same seed, same samples.
  A row stops at <|endoftext|>.
- `pass_at_k`: the unbiased estimator of Chen et al. (2021): with n samples of which c are
  correct, pass@k = 1 - C(n-c, k) / C(n, k), the chance that k of them drawn without replacement
  contain a correct one.
- `majority_vote`: the most common answer (self-consistency); ties go to the answer seen first.
- `evaluate`: greedy accuracy, sampled pass@1 and pass@k of a model on a list of problems.

Command line:
  python sample.py --task arith --prompt "123+45=" -n 4 --temperature 0.8
  python sample.py --task arith --eval          # greedy accuracy and pass@k on the test split
  python sample.py --ckpt out/some.pt --prompt "..."

Without --ckpt it samples from the newest cached base model of the task in out/ (trained by
`python methods/sft.py` or by any method on first use).
"""
import argparse
import math
from collections import Counter

import numpy as np
import torch

from model import EOT, KVCache, decode, encode


@torch.no_grad()
def generate(model, prompts, n=1, max_new_tokens=32, temperature=0.0, top_k=None, seed=0,
             max_rows=512):
    """n completions for each prompt -> list (one per prompt) of n strings, prompt stripped and
    cut at <|endoftext|>. Prompts are sorted by length and decoded in chunks of at most
    `max_rows` sequences (memory); a chunk's shorter prompts are left-padded (KVCache.pad)."""
    if not (temperature >= 0 and math.isfinite(temperature)):
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    model.eval()
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    ids = [encode(p) for p in prompts]
    if any(not x for x in ids):
        raise ValueError("an empty prompt: give the model something to continue")
    order = sorted(range(len(prompts)), key=lambda i: len(ids[i]))  # little padding per chunk
    per_chunk = max(1, max_rows // n)
    out = [None] * len(prompts)
    for s in range(0, len(order), per_chunk):
        chunk = order[s:s + per_chunk]
        L = max(len(ids[i]) for i in chunk)
        pad = torch.tensor([L - len(ids[i]) for i in chunk], device=device)  # (B,)
        idx = torch.tensor([[EOT] * (L - len(ids[i])) + ids[i] for i in chunk],
                           device=device)  # (B, L), left-padded
        rows = _decode(model, idx, pad if bool(pad.any()) else None, n, max_new_tokens,
                       temperature, top_k, gen)
        for j, i in enumerate(chunk):
            out[i] = rows[j * n:(j + 1) * n]
    return out


def _decode(model, idx, pad, n, max_new_tokens, temperature, top_k, gen):
    """Prefill the (B, L) prompts once, copy the cache to n rows each, then one token per row
    per step until every row has ended (or max_new_tokens). Returns B*n strings."""
    B, L = idx.shape
    block = model.config.block_size
    if L >= block:
        raise ValueError(f"prompt of {L} tokens does not fit block_size {block}")
    max_new_tokens = min(max_new_tokens, block - L)
    cache = KVCache(model.config, B, L + max_new_tokens, idx.device, pad=pad)
    logits, _ = model(idx, cache=cache)  # (B, L, vocab): prefill once per prompt
    logits = logits[:, -1].repeat_interleave(n, dim=0)  # (B*n, vocab)
    cache.repeat(n)  # the n samples of a prompt share its prefix
    done = torch.zeros(B * n, dtype=torch.bool, device=idx.device)
    # asking "has every row ended?" makes a GPU wait for its queue: ask every 8 steps there,
    # every step on the CPU, where the answer is free
    check_every = 1 if idx.device.type == "cpu" else 8
    steps = []
    for t in range(max_new_tokens):
        nxt = _pick(logits.float(), temperature, top_k, gen)  # (B*n,)
        nxt = torch.where(done, torch.full_like(nxt, EOT), nxt)
        steps.append(nxt)
        done |= nxt == EOT
        if t == max_new_tokens - 1 or (t % check_every == check_every - 1 and bool(done.all())):
            break
        logits, _ = model(nxt.unsqueeze(1), cache=cache)  # (B*n, 1, vocab)
        logits = logits[:, -1]
    tokens = torch.stack(steps, dim=1).tolist()  # (B*n, steps)
    texts = []
    for row in tokens:
        if EOT in row:
            row = row[:row.index(EOT)]
        texts.append(decode(row))
    return texts


def _pick(logits, temperature, top_k, gen):
    """logits (R, vocab) -> next token ids (R,)."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (R, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=gen).squeeze(1)


def pass_at_k(n, c, k):
    """Unbiased pass@k from n samples with c correct: 1 - C(n-c, k)/C(n, k), computed as a
    product so it never overflows (Chen et al. 2021)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def majority_vote(answers):
    """Most common answer; a tie goes to the one that appeared first. None if empty."""
    if not answers:
        return None
    counts = Counter(answers)
    best = max(counts.values())
    return next(a for a in answers if counts[a] == best)


def evaluate(model, task, problems, n=0, temperature=0.8, top_k=None, seed=0, ks=(1,),
             vote=False):
    """Greedy accuracy on `problems` and, with n > 0 samples per problem at `temperature`, the
    unbiased pass@k for every k in ks (and with vote, maj@n: how often the majority answer of
    the n samples is right). Returns {"greedy_acc": .., "pass@1": .., ...}.
    This is the one place greedy accuracy is computed; `greedy` gives the answers too."""
    result = {"greedy_acc": float(np.mean(greedy(model, task, problems)[1]))}
    if n > 0:
        samples, correct = sample_and_check(model, task, problems, n, temperature, top_k, seed)
        for k in ks:
            result[f"pass@{k}"] = float(np.mean([pass_at_k(n, sum(c), k) for c in correct]))
        if vote:
            result[f"maj@{n}"] = float(np.mean([task.check(p, majority_vote(ss)).correct
                                                for p, ss in zip(problems, samples)]))
    return result


def sample_and_check(model, task, problems, n, temperature, top_k=None, seed=0, max_rows=512):
    """n samples per problem and the oracle's verdict on each: (samples, correct), both lists
    (one per problem) of n items."""
    samples = generate(model, [p.prompt for p in problems], n=n,
                       max_new_tokens=budget(task, problems), temperature=temperature,
                       top_k=top_k, seed=seed, max_rows=max_rows)
    return samples, [[task.check(p, s).correct for s in ss] for p, ss in zip(problems, samples)]


def greedy(model, task, problems):
    """The model's greedy answer to each problem, and whether the oracle marks it right."""
    outs = generate(model, [p.prompt for p in problems], n=1,
                    max_new_tokens=budget(task, problems))
    answers = [o[0] for o in outs]
    return answers, [task.check(p, a).correct for p, a in zip(problems, answers)]


def budget(task, problems):
    """Tokens to generate for a list of problems: the budget of the hardest of them."""
    return max(task.max_tokens(p.difficulty) for p in problems)


def main(argv=None):
    import common
    parser = common.Parser(description=__doc__.split("\n\n")[0],
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", help="checkpoint to sample from (default: the newest cached "
                                       "base model of --task and --base_seed in out/)")
    parser.add_argument("--task", default="arith", help="the task (arith, code)")
    parser.add_argument("--base_seed", type=int, default=0, help="which seed's base model")
    parser.add_argument("--prompt", help="a prompt to complete (default: a few test problems)")
    parser.add_argument("-n", type=int, default=4, help="samples per prompt")
    parser.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    parser.add_argument("--top_k", type=int, default=None, help="sample only from the k likeliest")
    parser.add_argument("--max_new_tokens", type=int, default=None, help="default: the task's")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval", action="store_true",
                        help="print greedy accuracy and pass@1/pass@k on the test split")
    parser.add_argument("--problems", type=int, default=500, help="test problems for --eval")
    parser.add_argument("--k", type=int, default=16, help="k of pass@k for --eval (n = k samples)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    args = parser.parse_args(argv)

    from model import CheckpointError, VOCAB_SIZE, load, pick_device
    from verify import TASKS
    if args.task not in TASKS:
        parser.error(f"unknown task {args.task!r}; choose from {', '.join(TASKS)}")
    if args.n < 1 or args.k < 1 or args.problems < 1:
        parser.error("-n, --k and --problems must be >= 1")
    if not (math.isfinite(args.temperature) and args.temperature >= 0):
        parser.error(f"--temperature must be a finite number >= 0, got {args.temperature}")
    if args.top_k is not None and not 1 <= args.top_k <= VOCAB_SIZE:
        parser.error(f"--top_k must be in 1..{VOCAB_SIZE}, got {args.top_k}")
    if args.max_new_tokens is not None and args.max_new_tokens < 1:
        parser.error(f"--max_new_tokens must be >= 1, got {args.max_new_tokens}")
    if args.prompt is not None and args.prompt == "":
        parser.error("--prompt is empty: give the model something to continue")
    task = TASKS[args.task]
    path = args.ckpt or common.find_checkpoint(f"base-{args.task}", args.base_seed)
    if path is None:
        parser.error(f"no cached {args.task} base model of seed {args.base_seed} in out/; "
                     f"train one with `python methods/sft.py --task {args.task}` or pass --ckpt")
    try:
        model = load(path, pick_device(args.device))
    except (CheckpointError, ValueError) as e:
        parser.error(str(e))

    if args.eval:
        problems = task.problems(args.problems, seed=0, split="test")
        r = evaluate(model, task, problems, n=args.k, temperature=args.temperature,
                     top_k=args.top_k, seed=args.seed, ks=sorted({1, args.k}))
        print(f"{args.task}: {len(problems)} test problems, T={args.temperature}")
        for name, value in r.items():
            print(f"  {name:<10} {value:.3f}")
        return
    if args.prompt is not None:
        problems, prompts = None, [args.prompt]
    else:
        problems = task.problems(3, seed=args.seed, split="test")
        prompts = [p.prompt for p in problems]
    max_new = args.max_new_tokens or task.max_new_tokens
    try:
        outs = generate(model, prompts, n=args.n, max_new_tokens=max_new,
                        temperature=args.temperature, top_k=args.top_k, seed=args.seed)
    except ValueError as e:
        parser.error(str(e))
    for i, (prompt, samples) in enumerate(zip(prompts, outs)):
        print(prompt, end="" if prompt.endswith("\n") else "\n")
        for s in samples:
            mark = ""
            if problems is not None:
                mark = "  ok" if task.check(problems[i], s).correct else "  x"
            print(f"  -> {s!r}{mark}")


if __name__ == "__main__":
    main()
