"""SPIN: self-play fine-tuning (Chen, Deng, Yuan, Ji, Gu, ICML 2024, arXiv 2401.01335).

The idea. You have an SFT model and the SFT data it was trained on, and no new data. SPIN plays
a game against itself: the model of the previous iteration (the "opponent") writes its own answer
y' to every SFT prompt x, and the new model learns to tell the real answer y from that generated
one, by raising its likelihood of y and lowering that of y', both measured relative to the
opponent. When the model's own answers look like the data, the two cannot be told apart any
more, the gradient vanishes, and the loop has converged: SPIN's fixed point is p_theta = p_data.

The loss (the paper's Eq. 4.7; the authors' code calls lambda "beta"):

    logits = [log p_theta(y|x) - log p_opp(y|x)] - [log p_theta(y'|x) - log p_opp(y'|x)]
    L_SPIN = mean over pairs of  -log sigmoid(lambda * logits)        y' ~ p_opp(.|x)

with log-probabilities summed over the completion's tokens (its end token included). Two facts
every student should check in the code and the tests:
  - at the start of an iteration the model IS the opponent, so logits = 0 and the loss is
    exactly log 2 = 0.693; how far it can fall below log 2 measures how distinguishable the data
    still are from the model's own answers;
  - when y' == y the two brackets are identical, the logits are 0 for every theta, and the pair
    contributes exactly zero gradient. SPIN can only learn from prompts where the model's own
    answer differs from the data, so we measure `same` (share of generations equal to the data)
    before anything else.

Algorithm 1 of the paper, as implemented below:

    theta_0 = the SFT model
    for t = 0 .. T-1:
        opponent = frozen copy of theta_t
        for each SFT pair (x, y): sample y' ~ opponent(.|x)           (temperature 1)
        pairs = this iteration's (x, y, y') + the previous iteration's (x, y, y')
        theta_{t+1} = theta_t trained on L_SPIN against that opponent for a few epochs

The starting model: the cached base model of the task (`base_model(task, seed)`, methods/sft.py)
and, as its SFT data, the first `--n_data` prompts of the very training set that base was trained
on, with their reference answers. That is the paper's setting (zephyr-7b-sft-full and prompts from
its own SFT set, UltraChat). It fits SPIN's precondition without a second SFT run: the base was
stopped long before it fits its training data (on arith it answers its own training prompts about
as often as unseen test prompts, 30-65% depending on the seed), so its own answers differ from the
data on most prompts. A fresh small-data SFT model would be a second, weaker base to explain, and
from scratch on 1000 examples a model this size learns almost no arithmetic.

Arms (one line of the table per arm and iteration; step 0 = the starting model, shared by all):
  spin       T iterations as above.
  sft_more   the control: plain SFT (methods/sft.py's finetune, same learning rate, no weight
             decay) on the same (x, y) pairs, the same number of optimizer steps and batch size
             as each SPIN iteration, so every real answer is seen as often. If SPIN only matched
             this, self-play would add nothing over training longer on the data.
  spin_long  iteration 0 trained as long as all T iterations together, against the one opponent
             theta_0 and its generations: what iterating buys over training longer. It is
             evaluated at the same step counts as spin's iteration boundaries.

Metrics per step t (the model theta_t after iteration t):
  test_acc      greedy accuracy on the task's test split
  train_acc     greedy accuracy on the SFT prompts (the data SPIN is fitting)
  heldout_loss  L_SPIN of theta_t against its opponent theta_{t-1}, on held-out training prompts
                with y' sampled from theta_{t-1}: log 2 at the start of the iteration, lower at
                its end by as much as the data could still be told from the model's answers
  reward_acc    share of those held-out pairs whose real reward lambda*(log p_theta(y) -
                log p_opp(y)) beats the generated one's (a tie, y' == y, counts one half)
  margin        mean of real reward minus generated reward on those pairs
  same          share of theta_t's own samples on the SFT prompts equal to the data (these are
                the generations the next iteration trains on)

What was simplified, and why:
  - Scale: a 0.8M-parameter GPT, 1000 SFT pairs instead of 50k, one sample per prompt.
  - Optimizer: AdamW without weight decay and a constant learning rate after a short warm-up,
    not RMSProp with a linear decay. A constant rate makes spin and spin_long differ only in the
    refreshed opponent. The rate, 3e-5, is the base's SFT rate (1e-3) over 33, as the paper's
    5e-7 is zephyr's SFT rate (2e-5) over 40: SPIN's pairwise gradient is a small difference
    of two large ones, and at SFT-like rates it wrecks the model (tutorials/08_spin.md).
  - lambda stays at `--lam` for every iteration (the paper raises it to 5 at iteration 3).
  - y' is sampled at temperature 1 (the theory's y' ~ p_theta_t); the authors' script calls
    generate() without sampling flags (greedy unless the model's config samples).

Run:
  python methods/spin.py                     # arith, seed 0: the iteration table (~1 min on CPU)
  python methods/spin.py --seeds 0,1,2       # what results/spin-arith.md was made with
  python methods/spin.py --lam 1.0           # sweep lambda (the tabular theory says: > 1/2)
  python methods/spin.py --task code         # the list-language task (prompts ~10x longer: slower)
  python methods/spin.py --quick             # tiny budget, same code path (for tests)

What you should see: at step 0, heldout_loss = 0.693 and reward_acc = 0.5 exactly, and `same`
well below 1 (there is something to learn). After each iteration, heldout_loss below log 2 and
reward_acc above 0.5: the model learns to tell the data from its own answers. The paper's
diminishing gains did NOT appear on arith at this scale: test_acc falls a little under spin,
more under spin_long, and stays flat under sft_more. tutorials/08_spin.md has the 3-seed table
and the reasons.
"""
import copy
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402
from tqdm import tqdm  # noqa: E402

import common  # noqa: E402
from model import autocast, completion_logprobs, encode  # noqa: E402
from sample import generate  # noqa: E402
from sft import base_model, finetune, lr_at  # noqa: E402
from verify import TASKS  # noqa: E402


# ---------------------------------------------------------------------------------------------
# The loss

def seq_logprob(model, prompts, completions):
    """log p(completion + <|endoftext|> | prompt), summed over the completion's tokens -> (B,)."""
    logp, mask = completion_logprobs(model, prompts, completions)  # (B, T), (B, T); logp is 0 off mask
    return logp.sum(dim=1)  # (B,)


def spin_loss(pi_real, pi_gen, opp_real, opp_gen, lam):
    """The SPIN loss from summed log-probs, each (B,): the model's (pi) and the opponent's (opp)
    of the real answer y and of the generated answer y'. Returns (mean loss, logits (B,))."""
    logits = (pi_real - opp_real) - (pi_gen - opp_gen)  # (B,)
    return -F.logsigmoid(lam * logits).mean(), logits


def batch_loss(model, opponent, batch, lam):
    """L_SPIN of `model` against the frozen `opponent` on a list of (prompt, y, y') triples.
    Returns (mean loss, logits (B,))."""
    prompts = [x for x, _, _ in batch]
    real = [y for _, y, _ in batch]
    gen = [g for _, _, g in batch]
    pi_real = seq_logprob(model, prompts, real)  # (B,)
    pi_gen = seq_logprob(model, prompts, gen)  # (B,)
    with torch.no_grad():  # the opponent is a fixed function of the data: no graph, no gradient
        opp_real = seq_logprob(opponent, prompts, real)  # (B,)
        opp_gen = seq_logprob(opponent, prompts, gen)  # (B,)
    # y' == y is one sequence: use one score for both, so its logit is 0 and its gradient
    # cancels exactly, not just up to float rounding (the tied embedding sums several paths)
    same = torch.tensor([y == g for y, g in zip(real, gen)], device=pi_real.device)  # (B,)
    pi_gen = torch.where(same, pi_real, pi_gen)  # (B,)
    opp_gen = torch.where(same, opp_real, opp_gen)  # (B,)
    return spin_loss(pi_real, pi_gen, opp_real, opp_gen, lam)


# ---------------------------------------------------------------------------------------------
# Generating the opponent's answers, and training against it

def fit(prompt, text, block_size):
    """Cut `text` so prompt + text + <|endoftext|> fits the model. Needed because generate()
    returns text: sampled bytes that are not valid UTF-8 come back as U+FFFD, 3 bytes each, so an
    untrained model's 12 garbage tokens can re-encode to 36."""
    while text and len(encode(prompt)) + len(encode(text)) + 1 > block_size:
        text = text[:-1]
    return text


def make_pairs(opponent, problems, temperature, seed, max_new_tokens):
    """(prompt, real answer, opponent's sampled answer) for every problem."""
    samples = generate(opponent, [p.prompt for p in problems], n=1, max_new_tokens=max_new_tokens,
                       temperature=temperature, seed=seed)
    block = opponent.config.block_size
    return [(p.prompt, p.answer, fit(p.prompt, s[0], block)) for p, s in zip(problems, samples)]


def frozen_copy(model):
    """The opponent: a copy of the model that no optimizer ever sees."""
    opponent = copy.deepcopy(model).eval()
    for p in opponent.parameters():
        p.requires_grad_(False)
    return opponent


def spin_train(model, opponent, pairs, steps, batch_size, lr, warmup, lam, seed, desc="spin",
               progress=True, optimizer=None, first_step=0):
    """`steps` optimizer steps of L_SPIN on `pairs`, shuffled epoch by epoch (seeded).
    Returns (losses, optimizer); pass the optimizer and first_step back in to continue one run
    (spin_long) instead of starting a fresh one (a new SPIN iteration)."""
    device = next(model.parameters()).device
    if optimizer is None:  # the paper uses no weight decay
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=0.0)
    rng = torch.Generator().manual_seed(seed)
    order = []
    model.train()
    losses = []
    bar = tqdm(range(steps), desc=desc, disable=not progress, leave=False, mininterval=1.0)
    for step in bar:
        if len(order) < batch_size:  # a new epoch: reshuffle all pairs
            order += torch.randperm(len(pairs), generator=rng).tolist()
        batch = [pairs[i] for i in order[:batch_size]]
        order = order[batch_size:]
        for g in optimizer.param_groups:  # warm up, then constant
            g["lr"] = lr_at(first_step + step, first_step + steps, lr, warmup, min_frac=1.0)
        with autocast(device):
            loss, _ = batch_loss(model, opponent, batch, lam)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    return losses, optimizer


def steps_for(n_pairs, epochs, batch_size):
    return max(1, math.ceil(epochs * n_pairs / batch_size))


# ---------------------------------------------------------------------------------------------
# Measuring

@torch.no_grad()
def pair_metrics(model, opponent, pairs, lam, batch_size=256):
    """heldout_loss, reward_acc and margin of `model` against `opponent` on (x, y, y') pairs."""
    losses, wins, margins = [], [], []
    for s in range(0, len(pairs), batch_size):
        batch = pairs[s:s + batch_size]
        loss, logits = batch_loss(model, opponent, batch, lam)
        losses.append(loss.item() * len(batch))
        for (_, y, g), z in zip(batch, logits.tolist()):
            margins.append(lam * z)  # real reward - generated reward
            wins.append(0.5 if g == y or z == 0 else float(z > 0))  # a tie counts one half
    n = len(pairs)
    return dict(heldout_loss=sum(losses) / n, reward_acc=sum(wins) / n, margin=sum(margins) / n)


def accuracy(model, task, problems):
    """Greedy exact-answer accuracy."""
    outs = generate(model, [p.prompt for p in problems], n=1, max_new_tokens=task.max_new_tokens)
    return sum(task.check(p, o[0]).correct for p, o in zip(problems, outs)) / len(problems)


def same_share(model, problems, temperature, seed, max_new_tokens):
    """Share of the model's samples on `problems` that equal the data's answers, and the pairs."""
    pairs = make_pairs(model, problems, temperature, seed, max_new_tokens)
    return sum(g == y for _, y, g in pairs) / len(pairs), pairs


def measure(model, opponent, task, data, test, heldout_pairs, lam, temperature, seed):
    """Every metric of one step; also returns the model's own pairs on the SFT prompts."""
    row = dict(test_acc=accuracy(model, task, test), train_acc=accuracy(model, task, data))
    row.update(pair_metrics(model, opponent, heldout_pairs, lam))
    row["same"], pairs = same_share(model, data, temperature, seed, task.max_new_tokens)
    return row, pairs


# ---------------------------------------------------------------------------------------------
# The three arms

def run_spin(start, task, data, heldout, test, args, seed, log):
    """T iterations of SPIN from `start`. log(step, metrics) records each step."""
    model = copy.deepcopy(start)
    # step 0: the model against itself, so heldout_loss = log 2 and reward_acc = 1/2 by construction
    opp_pairs = make_pairs(model, heldout, args.temperature, seed * 1000, task.max_new_tokens)
    metrics, own = measure(model, frozen_copy(model), task, data, test, opp_pairs, args.lam,
                           args.temperature, seed * 1000 + 1)
    log(0, metrics)
    previous = []
    steps_per_iteration = []
    for t in range(args.iterations):
        opponent = frozen_copy(model)
        pairs = own + previous  # this iteration's generations + the previous iteration's
        steps = steps_for(len(pairs), args.epochs, args.batch_size)
        steps_per_iteration.append(steps)
        spin_train(model, opponent, pairs, steps, args.batch_size, args.lr, args.warmup, args.lam,
                   seed=seed * 1000 + t, desc=f"spin iter {t + 1}", progress=args.progress)
        # held-out pairs from the opponent of this iteration: how well can theta_{t+1} tell them?
        heldout_pairs = make_pairs(opponent, heldout, args.temperature, seed * 1000 + 10 * t + 2,
                                   task.max_new_tokens)
        previous = own
        metrics, own = measure(model, opponent, task, data, test, heldout_pairs, args.lam,
                               args.temperature, seed * 1000 + 10 * t + 11)
        log(t + 1, metrics)
    return steps_per_iteration


def run_sft_more(start, task, data, test, args, seed, steps_per_iteration, log):
    """Plain SFT on the same (x, y) pairs, the same steps per segment as spin's iterations."""
    model = copy.deepcopy(start)
    pairs = [(p.prompt, p.answer) for p in data]
    for t, steps in enumerate(steps_per_iteration):
        finetune(model, pairs, steps=steps, batch_size=args.batch_size, lr=args.lr,
                 warmup=args.warmup, weight_decay=0.0, seed=seed * 1000 + t, desc=f"sft_more {t + 1}",
                 progress=args.progress)
        log(t + 1, dict(test_acc=accuracy(model, task, test), train_acc=accuracy(model, task, data)))


def run_spin_long(start, task, data, heldout, test, args, seed, steps_per_iteration, log):
    """One SPIN iteration against theta_0, as long as all of spin's iterations together."""
    model = copy.deepcopy(start)
    opponent = frozen_copy(model)
    # the same samples of theta_0 as spin's first iteration (same seeds)
    _, pairs = same_share(model, data, args.temperature, seed * 1000 + 1, task.max_new_tokens)
    heldout_pairs = make_pairs(opponent, heldout, args.temperature, seed * 1000 + 2,
                               task.max_new_tokens)
    optimizer, done, total = None, 0, sum(steps_per_iteration)
    for t, steps in enumerate(steps_per_iteration):
        _, optimizer = spin_train(model, opponent, pairs, steps, args.batch_size, args.lr,
                                  args.warmup, args.lam, seed=seed * 1000 + 500 + t,
                                  desc=f"spin_long {done + steps}/{total}", progress=args.progress,
                                  optimizer=optimizer, first_step=done)
        done += steps
        metrics = dict(test_acc=accuracy(model, task, test), train_acc=accuracy(model, task, data))
        metrics.update(pair_metrics(model, opponent, heldout_pairs, args.lam))
        log(t + 1, metrics)


# ---------------------------------------------------------------------------------------------

def main():
    parser = common.parser_for(__doc__, default_task="arith")
    parser.add_argument("--lam", type=float, default=0.1, help="lambda (beta): the loss's scale")
    parser.add_argument("--iterations", type=int, default=4, help="SPIN iterations T")
    parser.add_argument("--epochs", type=float, default=2, help="epochs over the pairs per iteration")
    parser.add_argument("--n_data", type=int, default=1000, help="SFT pairs SPIN plays on")
    parser.add_argument("--n_heldout", type=int, default=500,
                        help="held-out training prompts for heldout_loss, reward_acc and margin")
    parser.add_argument("--n_test", type=int, default=500, help="test problems for test_acc")
    parser.add_argument("--batch_size", type=int, default=64, help="pairs per optimizer step")
    parser.add_argument("--lr", type=float, default=3e-5, help="learning rate (AdamW, constant)")
    parser.add_argument("--warmup", type=int, default=10, help="linear warm-up steps")
    parser.add_argument("--temperature", type=float, default=1.0, help="temperature of y' ~ opponent")
    parser.add_argument("--arms", default="spin,sft_more,spin_long",
                        help="which arms to run, comma-separated (spin always runs)")
    parser.add_argument("--no_progress", dest="progress", action="store_false",
                        help="no progress bars")
    args = parser.parse_args()
    seeds, device = common.check_args(parser, args)
    common.positive(parser, lam=args.lam, iterations=args.iterations, epochs=args.epochs,
                    n_data=args.n_data, n_heldout=args.n_heldout, n_test=args.n_test,
                    batch_size=args.batch_size, lr=args.lr, temperature=args.temperature)
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0, got {args.warmup}")
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    if any(a not in ("spin", "sft_more", "spin_long") for a in arms):
        parser.error(f"--arms takes spin, sft_more, spin_long; got {args.arms!r}")
    if args.quick:
        args.iterations, args.epochs = min(args.iterations, 2), min(args.epochs, 1)
        args.n_data, args.n_heldout, args.n_test = (min(args.n_data, 16), min(args.n_heldout, 8),
                                                    min(args.n_test, 8))
        args.batch_size = min(args.batch_size, 8)

    task = TASKS[args.task]
    test = task.problems(args.n_test, seed=0, split="test")
    config = {k: v for k, v in vars(args).items() if k not in ("seeds", "device", "progress")}
    rows, start_time = [], time.time()
    table = ""
    for seed in seeds:
        common.seed_everything(seed)
        start = base_model(args.task, seed=seed, device=device, quick=args.quick,
                           progress=args.progress)
        # the SFT data: the first n_data prompts the base was trained on; held out: the next ones
        train = task.problems(args.n_data + args.n_heldout, seed=seed, split="train")
        data, heldout = train[:args.n_data], train[args.n_data:]

        def logger(arm):
            def log(step, metrics):
                for name, value in metrics.items():
                    rows.append(dict(arm=arm, step=step, metric=name, value=round(value, 4),
                                     seed=seed))
                print(f"seed {seed} {arm:<9} step {step}: " +
                      "  ".join(f"{k} {v:.3f}" for k, v in metrics.items()), flush=True)
            return log

        steps_per_iteration = run_spin(start, task, data, heldout, test, args, seed, logger("spin"))
        if "sft_more" in arms:
            run_sft_more(start, task, data, test, args, seed, steps_per_iteration, logger("sft_more"))
        if "spin_long" in arms:
            run_spin_long(start, task, data, heldout, test, args, seed, steps_per_iteration,
                          logger("spin_long"))
        done = seeds[:seeds.index(seed) + 1]
        table = common.write_results("spin", args.task, done, config, rows,
                                     time.time() - start_time, quick=args.quick)
    print(table)


if __name__ == "__main__":
    main()
