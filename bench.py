"""How fast does this machine train and sample our models? (nanoGPT keeps a bench.py too.)

Four measurements, all in one run so they share the machine's state:
  1. dense matmul throughput (float32 GFLOP/s), the ceiling any training step is measured against;
  2. training throughput (tokens/s) of the base model size on batches shaped like each task's
     data, and the share of the matmul ceiling it reaches, counting 6 FLOPs per parameter per
     token (forward + backward) plus attention (Kaplan et al. 2020; nanoGPT's estimate_mfu);
  3. sampling throughput (new tokens/s) of `sample.generate` with the KV cache, against the same
     sampler recomputing the whole sequence at every step, for n samples per prompt;
  4. greedy evaluation throughput (problems/s) on each task's test set, with `sample.generate`
     batching prompts of every length together (left padding), against one call per prompt
     length (how generate batched before: code prompts have dozens of lengths, so its batches
     were a handful of prompts each). The model is the cached base of seed 0 if out/ has one,
     else an untrained one of the same size (which always writes max_new_tokens tokens).

Run:
  python bench.py              # writes results/bench.md
  python bench.py --device cuda
  python bench.py --quick      # tiny sizes (for tests); writes out/quick-results/bench.md
"""
import argparse
import os
import time
from collections import defaultdict

import torch

import common
from model import GPT, GPTConfig, encode, load, pack, pick_device
from sample import budget, generate
from verify import TASKS

# The model every base uses (GPTConfig's defaults: 4 layers, 4 heads, 128 wide) and the batch
# size each task's base trains with
BATCH = {"arith": 64, "code": 32}
TEST_PROBLEMS = {"arith": 500, "code": 300}  # the test sets the methods evaluate on


def timed(fn, repeats, device):
    """Median seconds of `repeats` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def matmul_gflops(n, repeats, device):
    """The best of `repeats` timings: the ceiling, so a busy moment cannot lower it."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    best = min(timed(lambda: a @ b, 3, device) for _ in range(repeats))
    return 2 * n ** 3 / best / 1e9


def train_throughput(task, cfg, batch_size, steps, device):
    """(tokens/s, model FLOPs/s) of finetune-style steps on the task's own batch shape."""
    torch.manual_seed(0)
    model = GPT(cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    problems = TASKS[task].problems(batch_size, seed=0)
    idx, targets = pack([p.prompt for p in problems], [p.answer for p in problems])  # (B, T)
    idx, targets = idx.to(device), targets.to(device)

    def step():
        _, loss = model(idx, targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    seconds = timed(step, steps, device)
    tokens = idx.numel()
    n_params = model.num_params() - cfg.block_size * cfg.n_embd  # position table: a lookup
    T = idx.size(1)
    flops_per_token = 6 * n_params + 12 * cfg.n_layer * cfg.n_embd * T  # + attention (nanoGPT)
    return tokens / seconds, flops_per_token * tokens / seconds, model.num_params(), idx.shape


@torch.no_grad()
def generate_recompute(model, prompts, n, max_new_tokens, temperature, seed):
    """The sampler without a KV cache: every new token runs the whole sequence again."""
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    idx = torch.tensor([encode(p) for p in prompts], device=device).repeat_interleave(n, dim=0)
    for _ in range(max_new_tokens):
        logits, _ = model(idx)  # (B*n, L+t, vocab): all positions, every step
        probs = torch.softmax(logits[:, -1] / temperature, dim=-1)
        nxt = torch.multinomial(probs, 1, generator=gen)  # (B*n, 1)
        idx = torch.cat([idx, nxt], dim=1)
    return idx


def sample_throughput(task, cfg, n_prompts, n, new_tokens, repeats, device):
    """(cached tokens/s, recompute tokens/s) for n samples of `new_tokens` per prompt."""
    torch.manual_seed(0)
    # An untrained model: at temperature 1 a row ends with <|endoftext|> with chance ~1/257 per
    # step, but `generate` keeps stepping until every one of the n_prompts * n rows has ended,
    # so in practice both samplers run all new_tokens steps.
    model = GPT(cfg).to(device).eval()
    # prompts of one length, so both samplers process the same single batch
    problems = TASKS[task].problems(400, seed=0)
    lengths = [len(p.prompt) for p in problems]
    length = max(set(lengths), key=lengths.count)  # the commonest prompt length
    prompts = [p.prompt for p in problems if len(p.prompt) == length][:n_prompts]
    new_tokens = min(new_tokens, cfg.block_size - len(encode(prompts[0])))
    total = len(prompts) * n * new_tokens
    cached = timed(lambda: generate(model, prompts, n=n, max_new_tokens=new_tokens,
                                    temperature=1.0), repeats, device)
    full = timed(lambda: generate_recompute(model, prompts, n, new_tokens, 1.0, 0), repeats,
                 device)
    return total / cached, total / full, len(encode(prompts[0])), new_tokens, len(prompts)


def greedy_by_length(model, prompts, max_new_tokens):
    """Greedy answers with one generate call per prompt length: no padding, small batches."""
    by_length = defaultdict(list)
    for i, p in enumerate(prompts):
        by_length[len(encode(p))].append(i)
    out = [None] * len(prompts)
    for ids in by_length.values():
        for i, o in zip(ids, generate(model, [prompts[i] for i in ids], n=1,
                                      max_new_tokens=max_new_tokens)):
            out[i] = o
    return out


def eval_throughput(task, cfg, n_problems, repeats, device):
    """(problems/s padded, problems/s by length, same answers?, which model, lengths)."""
    path = common.find_checkpoint(f"base-{task}", 0)
    model, which = None, "untrained"
    if path:
        try:
            model, which = load(path, device), "cached base"
        except Exception:  # noqa: BLE001 -- any unreadable cache: measure an untrained model
            model = None
    if model is None:
        torch.manual_seed(0)
        model = GPT(cfg).to(device).eval()
    problems = TASKS[task].problems(n_problems, seed=0, split="test")
    prompts, budget_ = [p.prompt for p in problems], budget(TASKS[task], problems)
    padded = timed(lambda: generate(model, prompts, n=1, max_new_tokens=budget_), repeats, device)
    by_length = timed(lambda: greedy_by_length(model, prompts, budget_), repeats, device)
    same = generate(model, prompts, n=1, max_new_tokens=budget_) == greedy_by_length(
        model, prompts, budget_)
    n_lengths = len({len(encode(p)) for p in prompts})
    return len(prompts) / padded, len(prompts) / by_length, same, which, n_lengths


def main():
    parser = common.Parser(description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes and repeats (for tests)")
    parser.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, mps")
    parser.add_argument("--new_tokens", type=int, default=64, help="tokens generated per sample")
    parser.add_argument("-n", type=int, default=16, help="samples per prompt")
    parser.add_argument("--prompts", type=int, default=8, help="prompts per generate call")
    args = parser.parse_args()
    for name in ("new_tokens", "n", "prompts"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    try:
        device = pick_device(args.device)
    except ValueError as e:
        parser.error(str(e))
    threads = torch.get_num_threads()
    mm_n, reps, steps = (256, 3, 2) if args.quick else (1024, 10, 10)
    if args.quick:
        args.new_tokens, args.n, args.prompts = min(args.new_tokens, 8), min(args.n, 2), 2

    gflops = matmul_gflops(mm_n, reps, device)
    lines = [f"# Benchmark\n\nWritten by `python bench.py{' --quick' if args.quick else ''}` on "
             f"{device} ({threads} threads, torch {torch.__version__}).\n",
             f"Dense float32 matmul ({mm_n}x{mm_n}): **{gflops:.1f} GFLOP/s**.\n",
             "## Training (one AdamW step on a batch shaped like the task's data)\n",
             "| base | params | batch (B, T) | tokens/s | model GFLOP/s | share of matmul |",
             "|---|---|---|---|---|---|"]
    cfg = GPTConfig(n_layer=1, n_embd=32) if args.quick else GPTConfig()
    for task in ("arith", "code"):
        batch = 4 if args.quick else BATCH[task]
        tok_s, flop_s, n_params, shape = train_throughput(task, cfg, batch, steps, device)
        lines.append(f"| {task} | {n_params / 1e6:.2f}M | {tuple(shape)} | {tok_s:,.0f} | "
                     f"{flop_s / 1e9:.1f} | {flop_s / 1e9 / gflops:.0%} |")
    lines += ["", f"## Sampling ({args.n} samples per prompt, temperature 1)\n",
              "| base | prompts x prompt length | new tokens | KV cache tokens/s | "
              "full recompute tokens/s | speed-up |", "|---|---|---|---|---|---|"]
    for task in ("arith", "code"):
        cached, full, plen, new, n_prompts = sample_throughput(
            task, cfg, args.prompts, args.n, args.new_tokens, max(1, reps // 3), device)
        lines.append(f"| {task} | {n_prompts} x {plen} | {new} | {cached:,.0f} | {full:,.0f} | "
                     f"{cached / full:.1f}x |")
    lines += ["", "## Greedy evaluation on the test set (problems/s)\n",
              "| task | model | problems | prompt lengths | all lengths in one batch | "
              "one batch per length | speed-up | same answers |", "|---|---|---|---|---|---|---|---|"]
    for task in ("arith", "code"):
        n_problems = 20 if args.quick else TEST_PROBLEMS[task]
        padded, by_length, same, which, n_lengths = eval_throughput(
            task, cfg, n_problems, max(1, reps // 3), device)
        lines.append(f"| {task} | {which} | {n_problems} | {n_lengths} | {padded:,.1f} | "
                     f"{by_length:,.1f} | {padded / by_length:.1f}x | {'yes' if same else 'NO'} |")
    text = "\n".join(lines) + "\n"
    print(text)
    path = os.path.join(common.results_dir(args.quick), "bench.md")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
