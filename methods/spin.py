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
  spin_long  iteration 0 trained as long as all T iterations together (one run of the loop at a
             constant rate), against the one opponent theta_0 and its generations: what
             iterating buys over training longer. It is evaluated at the same step counts as
             spin's iteration boundaries.

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
  python methods/spin.py                     # arith, seed 0: the iteration table (a few minutes on a CPU)
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

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root

import torch
from torch.nn import functional as F

import common
from model import completion_logprobs, encode
from sample import evaluate, generate
from sft import base_model, finetune, train

FLAGS = dict(
    lam=(0.1, "lambda (the paper's beta): the scale of the loss's log-ratio margin"),
    iterations=(4, "SPIN iterations T"),
    epochs=(2.0, "epochs over the pairs per iteration"),
    n_data=(1000, "SFT pairs SPIN plays on"),
    n_heldout=(500, "held-out training prompts for heldout_loss, reward_acc and margin"),
    n_test=(500, "test problems for test_acc"),
    batch_size=(64, "pairs per optimizer step"),
    lr=(3e-5, "learning rate (AdamW, constant after the warm-up)"),
    warmup=(10, "linear warm-up steps", 0),
    temperature=(1.0, "temperature of y' ~ opponent"),
    arms=("spin,sft_more,spin_long", "arms to run, comma-separated"),
    no_progress=(False, "no progress bars"),
)
QUICK = dict(iterations=2, epochs=1.0, n_data=16, n_heldout=8, n_test=8, batch_size=8)
ARMS = ("spin", "sft_more", "spin_long")


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
    B = len(batch)
    # one forward per model over the real answers, then the generated ones: (2B,) -> two (B,)
    pi_real, pi_gen = seq_logprob(model, prompts + prompts, real + gen).split(B)
    with torch.no_grad():  # the opponent is a fixed function of the data: no graph, no gradient
        opp_real, opp_gen = seq_logprob(opponent, prompts + prompts, real + gen).split(B)
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
               progress=True, **loop):
    """`steps` optimizer steps of L_SPIN on `pairs`, shuffled epoch by epoch: the repo's one
    training loop (sft.train) with the SPIN loss, no weight decay (as the paper) and a constant
    rate after the warm-up. Returns the loss per step."""
    order = []

    def spin_batch_loss(rng):
        nonlocal order
        if len(order) < batch_size:  # a new epoch: reshuffle all pairs
            order += torch.randperm(len(pairs), generator=rng).tolist()
        batch, order = [pairs[i] for i in order[:batch_size]], order[batch_size:]
        return batch_loss(model, opponent, batch, lam)[0]

    return train(model, spin_batch_loss, steps, lr, warmup, weight_decay=0.0, seed=seed,
                 final_frac=1.0, desc=desc, progress=progress, **loop)


def steps_per_iteration(n_data, iterations, epochs, batch_size):
    """Optimizer steps of each iteration: `epochs` passes over its pairs, which are this
    iteration's n_data generations plus the previous iteration's (none before the first)."""
    return [max(1, math.ceil(epochs * n_data * (1 if t == 0 else 2) / batch_size))
            for t in range(iterations)]


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


def accuracies(model, task, data, test):
    return dict(test_acc=evaluate(model, task, test)["greedy_acc"],
                train_acc=evaluate(model, task, data)["greedy_acc"])


def same_share(model, problems, temperature, seed, max_new_tokens):
    """Share of the model's samples on `problems` that equal the data's answers, and the pairs."""
    pairs = make_pairs(model, problems, temperature, seed, max_new_tokens)
    return sum(g == y for _, y, g in pairs) / len(pairs), pairs


def measure(model, opponent, task, data, test, heldout_pairs, lam, temperature, seed):
    """Every metric of one step; also returns the model's own pairs on the SFT prompts."""
    row = accuracies(model, task, data, test)
    row.update(pair_metrics(model, opponent, heldout_pairs, lam))
    row["same"], pairs = same_share(model, data, temperature, seed, task.max_new_tokens)
    return row, pairs


# ---------------------------------------------------------------------------------------------
# The three arms. Each returns {step: metrics} for steps 1..T (step 0 is spin's).

def run_spin(start, task, data, heldout, test, schedule, lam, lr, warmup, batch_size,
             temperature, seed, progress):
    """T iterations of SPIN from `start`, and step 0 (the start against itself)."""
    model = copy.deepcopy(start)
    # step 0: the model against itself, so heldout_loss = log 2 and reward_acc = 1/2 by construction
    opp_pairs = make_pairs(model, heldout, temperature, seed * 1000, task.max_new_tokens)
    metrics, own = measure(model, frozen_copy(model), task, data, test, opp_pairs, lam,
                           temperature, seed * 1000 + 1)
    curve, previous = {0: metrics}, []
    for t, steps in enumerate(schedule):
        opponent = frozen_copy(model)
        pairs = own + previous  # this iteration's generations + the previous iteration's
        spin_train(model, opponent, pairs, steps, batch_size, lr, warmup, lam,
                   seed=seed * 1000 + t, desc=f"spin iter {t + 1}", progress=progress)
        # held-out pairs from the opponent of this iteration: how well can theta_{t+1} tell them?
        heldout_pairs = make_pairs(opponent, heldout, temperature, seed * 1000 + 10 * t + 2,
                                   task.max_new_tokens)
        previous = own
        curve[t + 1], own = measure(model, opponent, task, data, test, heldout_pairs, lam,
                                    temperature, seed * 1000 + 10 * t + 11)
    return curve


def run_sft_more(start, task, data, test, schedule, lr, warmup, batch_size, seed, progress):
    """Plain SFT on the same (x, y) pairs, the same steps per segment as spin's iterations."""
    model = copy.deepcopy(start)
    pairs = [(p.prompt, p.answer) for p in data]
    curve = {}
    for t, steps in enumerate(schedule):
        finetune(model, pairs, steps=steps, batch_size=batch_size, lr=lr, warmup=warmup,
                 weight_decay=0.0, seed=seed * 1000 + t, desc=f"sft_more {t + 1}",
                 progress=progress)
        curve[t + 1] = accuracies(model, task, data, test)
    return curve


def run_spin_long(start, task, data, heldout, test, schedule, lam, lr, warmup, batch_size,
                  temperature, seed, progress):
    """One SPIN iteration against theta_0, as long as all of spin's iterations together."""
    model = copy.deepcopy(start)
    opponent = frozen_copy(model)
    # the same samples of theta_0 as spin's first iteration (same seeds)
    _, pairs = same_share(model, data, temperature, seed * 1000 + 1, task.max_new_tokens)
    heldout_pairs = make_pairs(opponent, heldout, temperature, seed * 1000 + 2,
                               task.max_new_tokens)
    boundaries = [sum(schedule[:t + 1]) for t in range(len(schedule))]
    curve = {}

    def at_boundary(step):
        curve[boundaries.index(step) + 1] = dict(
            accuracies(model, task, data, test), **pair_metrics(model, opponent, heldout_pairs, lam))

    spin_train(model, opponent, pairs, boundaries[-1], batch_size, lr, warmup, lam,
               seed=seed * 1000 + 500, desc="spin_long", progress=progress,
               evaluate_at=boundaries, evaluate=at_boundary)
    return curve


# ---------------------------------------------------------------------------------------------

def run_seed(seed, task, device, quick, lam, iterations, epochs, n_data, n_heldout, n_test,
             batch_size, lr, warmup, temperature, arms, no_progress):
    start = base_model(task, seed=seed, device=device, quick=quick, progress=not no_progress)
    # the SFT data: the first n_data prompts the base was trained on; held out: the next ones
    train_set = task.problems(n_data + n_heldout, seed=seed, split="train")
    data, heldout = train_set[:n_data], train_set[n_data:]
    test = task.problems(n_test, seed=0, split="test")
    schedule = steps_per_iteration(n_data, iterations, epochs, batch_size)
    progress = not no_progress
    run = {
        "spin": lambda: run_spin(start, task, data, heldout, test, schedule, lam, lr, warmup,
                                 batch_size, temperature, seed, progress),
        "sft_more": lambda: run_sft_more(start, task, data, test, schedule, lr, warmup,
                                         batch_size, seed, progress),
        "spin_long": lambda: run_spin_long(start, task, data, heldout, test, schedule, lam, lr,
                                           warmup, batch_size, temperature, seed, progress),
    }
    return common.run_arms(run, arms, seed)


def main():
    args = common.parse_args(__doc__, FLAGS, QUICK, default_task="arith")
    common.comma_list(args.arms, ARMS, "arms")  # a bad arm fails now, not after a seed
    common.run_seeds("spin", args, run_seed, FLAGS)


if __name__ == "__main__":
    main()
