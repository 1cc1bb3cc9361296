"""How fast does this machine train and sample our models? (nanoGPT keeps a bench.py too.)

Three measurements, all in one run so they share the machine's state:
  1. dense matmul throughput (float32 GFLOP/s), the ceiling any training step is measured against;
  2. training throughput (tokens/s) of each default base model size on batches shaped like its
     task's data, and the share of the matmul ceiling it reaches, counting 6 FLOPs per parameter
     per token (forward + backward) plus attention (Kaplan et al. 2020; nanoGPT's estimate_mfu);
  3. sampling throughput (new tokens/s) of `sample.generate` with the KV cache, against the same
     sampler recomputing the whole sequence at every step, for n samples per prompt.

Run:
  python bench.py              # writes results/bench.md
  python bench.py --quick      # tiny sizes (for tests); writes out/quick-results/bench.md
"""
import argparse
import os
import sys
import time

import torch

import common
from model import GPT, GPTConfig, encode, pack
from sample import generate
from verify import TASKS

# The model every base uses (GPTConfig's defaults: 4 layers, 4 heads, 128 wide) and the batch
# size each task's base trains with
BATCH = {"arith": 64, "code": 32}


def timed(fn, repeats):
    """Median seconds of `repeats` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def matmul_gflops(n, repeats):
    """The best of `repeats` timings: the ceiling, so a busy moment cannot lower it."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    best = min(timed(lambda: a @ b, 3) for _ in range(repeats))
    return 2 * n ** 3 / best / 1e9


def train_throughput(task, cfg, batch_size, steps):
    """(tokens/s, model FLOPs/s) of finetune-style steps on the task's own batch shape."""
    torch.manual_seed(0)
    model = GPT(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    problems = TASKS[task].problems(batch_size, seed=0)
    idx, targets = pack([p.prompt for p in problems], [p.answer for p in problems])  # (B, T)

    def step():
        _, loss = model(idx, targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    seconds = timed(step, steps)
    tokens = idx.numel()
    n_params = model.num_params() - cfg.block_size * cfg.n_embd  # position table: a lookup
    T = idx.size(1)
    flops_per_token = 6 * n_params + 12 * cfg.n_layer * cfg.n_embd * T  # + attention (nanoGPT)
    return tokens / seconds, flops_per_token * tokens / seconds, model.num_params(), idx.shape


@torch.no_grad()
def generate_recompute(model, prompts, n, max_new_tokens, temperature, seed):
    """The sampler without a KV cache: every new token runs the whole sequence again."""
    gen = torch.Generator().manual_seed(seed)
    idx = torch.tensor([encode(p) for p in prompts]).repeat_interleave(n, dim=0)  # (B*n, L)
    for _ in range(max_new_tokens):
        logits, _ = model(idx)  # (B*n, L+t, vocab): all positions, every step
        probs = torch.softmax(logits[:, -1] / temperature, dim=-1)
        nxt = torch.multinomial(probs, 1, generator=gen)  # (B*n, 1)
        idx = torch.cat([idx, nxt], dim=1)
    return idx


def sample_throughput(task, cfg, n_prompts, n, new_tokens, repeats):
    """(cached tokens/s, recompute tokens/s) for n samples of `new_tokens` per prompt."""
    torch.manual_seed(0)
    # An untrained model: at temperature 1 a row ends with <|endoftext|> with chance ~1/257 per
    # step, but `generate` keeps stepping until every one of the n_prompts * n rows has ended,
    # so in practice both samplers run all new_tokens steps.
    model = GPT(cfg).eval()
    # prompts of one length, so both samplers process the same single batch
    problems = TASKS[task].problems(400, seed=0)
    lengths = [len(p.prompt) for p in problems]
    length = max(set(lengths), key=lengths.count)  # the commonest prompt length
    prompts = [p.prompt for p in problems if len(p.prompt) == length][:n_prompts]
    new_tokens = min(new_tokens, cfg.block_size - len(encode(prompts[0])))
    total = len(prompts) * n * new_tokens
    cached = timed(lambda: generate(model, prompts, n=n, max_new_tokens=new_tokens,
                                    temperature=1.0), repeats)
    full = timed(lambda: generate_recompute(model, prompts, n, new_tokens, 1.0, 0), repeats)
    return total / cached, total / full, len(encode(prompts[0])), new_tokens, len(prompts)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes and repeats (for tests)")
    parser.add_argument("--new_tokens", type=int, default=64, help="tokens generated per sample")
    parser.add_argument("-n", type=int, default=16, help="samples per prompt")
    parser.add_argument("--prompts", type=int, default=8, help="prompts per generate call")
    args = parser.parse_args()
    for name in ("new_tokens", "n", "prompts"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    threads = torch.get_num_threads()
    mm_n, reps, steps = (256, 3, 2) if args.quick else (1024, 10, 10)
    if args.quick:
        args.new_tokens, args.n, args.prompts = min(args.new_tokens, 8), min(args.n, 2), 2

    gflops = matmul_gflops(mm_n, reps)
    lines = [f"# Benchmark\n\nWritten by `python bench.py{' --quick' if args.quick else ''}` on "
             f"this machine's CPU ({threads} threads, torch {torch.__version__}).\n",
             f"Dense float32 matmul ({mm_n}x{mm_n}): **{gflops:.1f} GFLOP/s**.\n",
             "## Training (one AdamW step on a batch shaped like the task's data)\n",
             "| base | params | batch (B, T) | tokens/s | model GFLOP/s | share of matmul |",
             "|---|---|---|---|---|---|"]
    cfg = GPTConfig(n_layer=1, n_embd=32) if args.quick else GPTConfig()
    for task in ("arith", "code"):
        batch = 4 if args.quick else BATCH[task]
        tok_s, flop_s, n_params, shape = train_throughput(task, cfg, batch, steps)
        lines.append(f"| {task} | {n_params / 1e6:.2f}M | {tuple(shape)} | {tok_s:,.0f} | "
                     f"{flop_s / 1e9:.1f} | {flop_s / 1e9 / gflops:.0%} |")
    lines += ["", f"## Sampling ({args.n} samples per prompt, temperature 1)\n",
              "| base | prompts x prompt length | new tokens | KV cache tokens/s | "
              "full recompute tokens/s | speed-up |", "|---|---|---|---|---|---|"]
    for task in ("arith", "code"):
        cached, full, plen, new, n_prompts = sample_throughput(task, cfg, args.prompts, args.n,
                                                              args.new_tokens, max(1, reps // 3))
        lines.append(f"| {task} | {n_prompts} x {plen} | {new} | {cached:,.0f} | {full:,.0f} | "
                     f"{cached / full:.1f}x |")
    text = "\n".join(lines) + "\n"
    print(text)
    path = os.path.join(common.results_dir(args.quick), "bench.md")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
