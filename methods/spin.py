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
        for each labelled pair (x, y): sample y' ~ opponent(.|x)       (temperature 1)
        pairs = this iteration's (x, y, y') + the previous iteration's (x, y, y')
        theta_{t+1} = theta_t trained on L_SPIN against that opponent for a few epochs

`spin_nll` adds an anchor on the data's likelihood (Pang et al. 2024, iterative reasoning
preference optimisation): L = L_SPIN + alpha * (-log p_theta(y|x) / |y|), the real answer's
per-token NLL. Without it the DPO-style loss may lower log p(y) as long as it lowers log p(y')
more ("likelihood displacement").

The starting model and its data. The start is the cached scarce-data base (methods/sft.py): 1,000
labelled problems D_gold, trained until a validation accuracy stopped rising. That base nearly
reproduces D_gold (its samples on D_gold equal the data 89-100% of the time: `same_gold` at
step 0), so on D_gold SPIN would be at or near its fixed point before it starts: a pair with
y' == y gives exactly zero gradient. So by default (`--data fresh`) SPIN plays on n_data
LABELLED problems the base never saw: the gold part of the train split after D_gold. (On 2-digit
arithmetic that slice is almost all additions: the gold part holds only a few hundred distinct
multiplications and D_gold has taken them; so the slice is easier than the test split.) The
control `sft_more` trains on the same slice: the paper's claim is SPIN against SFT on the same
data. `--data gold` plays on D_gold itself.

Arms (one line of the table per arm and iteration; step 0 = the starting model, shared by all):
  spin       T iterations as above (Eq. 4.7).
  spin_nll   the same with the NLL anchor (alpha).
  sft_more   the control: plain SFT on the same (x, y) pairs with the same optimizer (AdamW, no
             weight decay), the same constant rate after the same warm-up and the same number
             of steps per segment as a SPIN iteration, so every real answer is seen as often.
  spin_long  SPIN against theta_0 and its answers throughout, for as many steps as all T
             iterations: what refreshing the opponent buys over training longer.

Metrics after each iteration t (theta_t, measured against theta_{t-1}, the model the iteration
started from; for spin that is its opponent):
  test_acc      greedy accuracy on the task's test split; gain: its change over the iteration
  train_acc     greedy accuracy on the labelled pairs SPIN plays on
  gold_nll      per-token NLL of the real answers of those pairs: with one right answer per
                prompt, KL(p_data || p_theta) per token, 0 at SPIN's fixed point
  heldout_nll   the same on held-out labelled problems
  logp_real     mean log p_theta(y|x) of the real answers; logp_gen: of theta_t's own samples
  heldout_loss  L_SPIN of theta_t against theta_{t-1} on held-out problems, y' ~ theta_{t-1}
  reward_acc    on those held-out pairs, the share where the real answer's reward
                lambda*(log p_theta(y) - log p_{t-1}(y)) beats the generated one's (a tie,
                y' == y, counts one half): the discriminator's accuracy at the END of the
                iteration, 0.5 at the fixed point; margin: mean real minus generated reward
  same          share of theta_t's samples on the pairs' prompts that equal the data
  same_gold     (step 0 only) the same on D_gold: why SPIN does not play on D_gold by default

What was simplified, and why:
  - Scale: a 0.8M-parameter GPT, 1000 labelled pairs instead of 50k, one sample per prompt.
  - lambda = 1, not the paper's 0.1: the paper's answers have hundreds of tokens; on answers of
    4 tokens lambda = 0.1 keeps lambda * logits near 0.16, so sigmoid never saturates and the
    loss acts as unlikelihood on every token of y' (tutorials/08_spin.md has the sweep).
  - Optimizer: AdamW without weight decay and a constant rate (1e-4, the base's 2e-3 over 20)
    after a short warm-up, not RMSProp with a linear decay; lambda stays fixed (the paper
    raises it at iteration 3).
  - y' is sampled at temperature 1 (the theory's y' ~ p_theta_t).

Run:
  python methods/spin.py                     # arith, seed 0: the iteration table (minutes on a CPU)
  python methods/spin.py --seeds 0,1,2       # what results/spin-arith.* were made with
  python methods/spin.py --lam 0.1 --arms spin,spin_nll --seeds 0,1,2
                                             # the sweep: results/spin_lam0.1-arith.*
  python methods/spin.py --data gold         # play on the base's own D_gold: the fixed point
  python methods/spin.py --quick             # tiny budget, same code path (for tests)

What you should see: at step 0, heldout_loss = 0.693 and reward_acc = 0.5 exactly, same_gold
near 1 and `same` on the fresh slice lower. Then, iteration by iteration, `same` rising, gold_nll
falling and the end-of-iteration reward_acc staying near 0.5: p_theta moving to p_data. Whether
test accuracy gains and whether SPIN beats sft_more: tutorials/08_spin.md reads the 3-seed run.
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
from sft import base_model, base_settings, finetune, train

FLAGS = dict(
    lam=(1.0, "lambda (the paper's beta): the scale of the loss's log-ratio margin"),
    alpha=(1.0, "spin_nll: weight of the per-token NLL of the real answer"),
    iterations=(6, "SPIN iterations T"),
    epochs=(2.0, "epochs over the pairs per iteration"),
    data=("fresh", "the labelled data SPIN plays on: fresh (gold problems the base never saw) "
                   "or gold (the base's own D_gold)"),
    n_data=(1000, "labelled pairs SPIN plays on"),
    n_heldout=(500, "held-out labelled problems for heldout_nll, reward_acc and margin"),
    n_test=(500, "test problems for test_acc"),
    batch_size=(64, "pairs per optimizer step"),
    lr=(1e-4, "learning rate (AdamW, constant after the warm-up)"),
    warmup=(10, "linear warm-up steps", 0),
    temperature=(1.0, "temperature of y' ~ opponent"),
    arms=("spin,spin_nll,sft_more,spin_long", "arms to run, comma-separated"),
    no_progress=(False, "no progress bars"),
)
QUICK = dict(iterations=2, epochs=1.0, n_data=16, n_heldout=8, n_test=8, batch_size=8)
# What each arm trains with: the loss, whether the opponent (and its answers) is refreshed every
# iteration, and the weight of the real answer's NLL
ARMS = {
    "spin": dict(loss="spin", refresh=True, nll=False),
    "spin_nll": dict(loss="spin", refresh=True, nll=True),
    "sft_more": dict(loss="sft"),
    "spin_long": dict(loss="spin", refresh=False, nll=False),
}
DATA = ("fresh", "gold")


# ---------------------------------------------------------------------------------------------
# The loss

def answer_logprob(model, prompts, completions):
    """log p(completion + <|endoftext|> | prompt), summed over the completion's tokens, and the
    number of those tokens: two (B,) tensors."""
    logp, mask = completion_logprobs(model, prompts, completions)  # (B, T), (B, T); logp 0 off mask
    return logp.sum(dim=1), mask.sum(dim=1)  # (B,), (B,)


def seq_logprob(model, prompts, completions):
    """log p(completion + <|endoftext|> | prompt), summed over the completion's tokens -> (B,)."""
    return answer_logprob(model, prompts, completions)[0]


def spin_loss(pi_real, pi_gen, opp_real, opp_gen, lam):
    """The SPIN loss from summed log-probs, each (B,): the model's (pi) and the opponent's (opp)
    of the real answer y and of the generated answer y'. Returns (mean loss, logits (B,))."""
    logits = (pi_real - opp_real) - (pi_gen - opp_gen)  # (B,)
    return -F.logsigmoid(lam * logits).mean(), logits


def batch_loss(model, opponent, batch, lam, alpha=0.0):
    """L_SPIN + alpha * NLL of `model` against the frozen `opponent` on (prompt, y, y') triples,
    where NLL is the real answer's mean per-token negative log-likelihood (Pang et al. 2024).
    Returns (mean loss, logits (B,))."""
    prompts = [x for x, _, _ in batch]
    real = [y for _, y, _ in batch]
    gen = [g for _, _, g in batch]
    B = len(batch)
    # one forward per model over the real answers and the generated ones: (2B,) -> two (B,)
    logp, n_tokens = answer_logprob(model, prompts + prompts, real + gen)  # (2B,), (2B,)
    pi_real, pi_gen = logp.split(B)
    with torch.no_grad():  # the opponent is a fixed function of the data: no graph, no gradient
        opp_real, opp_gen = seq_logprob(opponent, prompts + prompts, real + gen).split(B)
    # y' == y is one sequence: use one score for both, so its logit is 0 and its gradient
    # cancels exactly, not just up to float rounding (the tied embedding sums several paths)
    same = torch.tensor([y == g for y, g in zip(real, gen)], device=pi_real.device)  # (B,)
    pi_gen = torch.where(same, pi_real, pi_gen)  # (B,)
    opp_gen = torch.where(same, opp_real, opp_gen)  # (B,)
    loss, logits = spin_loss(pi_real, pi_gen, opp_real, opp_gen, lam)
    if alpha:
        loss = loss + alpha * (-pi_real / n_tokens[:B]).mean()
    return loss, logits


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


def spin_train(model, opponent, pairs, steps, batch_size, lr, warmup, lam, seed, alpha=0.0,
               desc="spin", progress=True):
    """`steps` optimizer steps of L_SPIN (+ alpha * NLL) on `pairs`, shuffled epoch by epoch: the
    repo's one training loop (sft.train) with the SPIN loss, no weight decay (as the paper) and a
    constant rate after the warm-up. Returns the loss per step."""
    order = []

    def spin_batch_loss(rng):
        nonlocal order
        if len(order) < batch_size:  # a new epoch: reshuffle all pairs
            order += torch.randperm(len(pairs), generator=rng).tolist()
        batch, order = [pairs[i] for i in order[:batch_size]], order[batch_size:]
        return batch_loss(model, opponent, batch, lam, alpha)[0]

    return train(model, spin_batch_loss, steps, lr, warmup, weight_decay=0.0, seed=seed,
                 final_frac=1.0, desc=desc, progress=progress)


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


@torch.no_grad()
def logprobs(model, pairs, batch_size=256):
    """Mean log p(y) and log p(y') (summed over tokens) of (x, y, y') pairs, and the mean
    per-token NLL of y: for a task with one answer per prompt, KL(p_data || p_theta) per token."""
    real, gen, nll = [], [], []
    for s in range(0, len(pairs), batch_size):
        batch = pairs[s:s + batch_size]
        prompts = [x for x, _, _ in batch]
        lp, n = answer_logprob(model, prompts + prompts, [y for _, y, _ in batch] +
                               [g for _, _, g in batch])  # (2B,), (2B,)
        B = len(batch)
        real += lp[:B].tolist()
        gen += lp[B:].tolist()
        nll += (-lp[:B] / n[:B]).tolist()
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    return dict(logp_real=mean(real), logp_gen=mean(gen), nll=mean(nll))


def measure(model, start, task, data, heldout, test, lam, temperature, seed):
    """Every metric of theta_t, measured against `start` (theta_{t-1}, the model the iteration
    began from: for spin its opponent). Also returns theta_t's own pairs on the data."""
    row = dict(test_acc=evaluate(model, task, test)["greedy_acc"],
               train_acc=evaluate(model, task, data)["greedy_acc"])
    # the discriminator at the END of the iteration: does theta_t still tell the data from the
    # answers of the model it started from, on problems it never trained on?
    held = make_pairs(start, heldout, temperature, seed, task.max_new_tokens)
    row.update(pair_metrics(model, start, held, lam))
    own = make_pairs(model, data, temperature, seed + 1, task.max_new_tokens)
    row["same"] = sum(g == y for _, y, g in own) / len(own)
    lp = logprobs(model, own)
    row.update(gold_nll=lp["nll"], heldout_nll=logprobs(model, held)["nll"],
               logp_real=lp["logp_real"], logp_gen=lp["logp_gen"])
    return row, own


# ---------------------------------------------------------------------------------------------
# The arms: T segments from the same start, each measured at its end

def run_arm(arm, start, step0, own0, task, data, heldout, test, schedule, lam, alpha, lr, warmup,
            batch_size, temperature, seed, progress):
    """`arm` (a row of ARMS) for len(schedule) segments from `start`; {step: metrics}."""
    how = ARMS[arm]
    model = copy.deepcopy(start)
    curve, own, previous, opponent = {0: step0}, own0, [], frozen_copy(start)
    for t, steps in enumerate(schedule):
        begin = frozen_copy(model)  # theta_{t}: the model this segment starts from
        desc = f"{arm} {t + 1}/{len(schedule)}"
        if how["loss"] == "sft":  # the control: plain SFT on the same (x, y), same rate and steps
            finetune(model, [(p.prompt, p.answer) for p in data], steps=steps,
                     batch_size=batch_size, lr=lr, warmup=warmup, weight_decay=0.0,
                     final_frac=1.0, seed=seed * 1000 + t, desc=desc, progress=progress)
        else:
            if how["refresh"]:  # the opponent is the previous iteration's model, and its answers
                opponent, pairs = begin, own + previous
            else:  # spin_long: theta_0 and its answers stay the opponent throughout
                pairs = own0
            spin_train(model, opponent, pairs, steps, batch_size, lr, warmup, lam,
                       seed=seed * 1000 + t, alpha=alpha if how["nll"] else 0.0, desc=desc,
                       progress=progress)
        previous = own
        curve[t + 1], own = measure(model, begin, task, data, heldout, test, lam, temperature,
                                    seed * 1000 + 10 * (t + 1))
        curve[t + 1]["gain"] = curve[t + 1]["test_acc"] - curve[t]["test_acc"]
    return curve


def spin_data(task, seed, quick, data, n_data, n_heldout):
    """The labelled pairs SPIN plays on, and held-out labelled problems after them.
    fresh: gold-part problems after the base's D_gold (labelled, never seen by the base);
    gold: D_gold itself (the paper's setting: the SFT model's own data)."""
    n_gold = base_settings(task, quick=quick)["n_gold"]
    gold = task.problems(n_gold + n_data + n_heldout, seed=seed, split="gold")
    if data == "gold":
        return gold[:n_data], gold[n_gold + n_data:]
    return gold[n_gold:n_gold + n_data], gold[n_gold + n_data:]


def run_seed(seed, task, device, quick, lam, alpha, iterations, epochs, data, n_data, n_heldout,
             n_test, batch_size, lr, warmup, temperature, arms, no_progress):
    progress = not no_progress
    start = base_model(task, seed=seed, device=device, quick=quick, progress=progress)
    pairs_data, heldout = spin_data(task, seed, quick, data, n_data, n_heldout)
    test = task.problems(n_test, seed=0, split="test")
    schedule = steps_per_iteration(n_data, iterations, epochs, batch_size)
    # step 0, shared by every arm: the base against itself (heldout_loss = log 2, reward_acc =
    # 1/2 by construction), and how often its samples on D_gold already equal the data
    step0, own0 = measure(start, start, task, pairs_data, heldout, test, lam, temperature,
                          seed * 1000)
    gold = spin_data(task, seed, quick, "gold", n_data, 0)[0]
    step0["same_gold"] = sum(g == y for _, y, g in make_pairs(
        start, gold, temperature, seed * 1000 + 2, task.max_new_tokens)) / len(gold)
    at = dict(start=start, step0=step0, own0=own0, task=task, data=pairs_data, heldout=heldout,
              test=test, schedule=schedule, lam=lam, alpha=alpha, lr=lr, warmup=warmup,
              batch_size=batch_size, temperature=temperature, seed=seed, progress=progress)
    return common.run_arms({arm: lambda arm=arm: run_arm(arm, **at) for arm in ARMS}, arms, seed)


def main():
    args = common.parse_args(__doc__, FLAGS, QUICK, default_task="arith")
    common.comma_list(args.arms, list(ARMS), "arms")  # a bad arm fails now, not after a seed
    common.comma_list(args.data, DATA, "data")
    # a lambda sweep's runs go to results/spin_lam<lambda>-<task>.*, beside the default's
    lam = FLAGS["lam"][0]
    common.run_seeds("spin", args, run_seed, FLAGS,
                     name="spin" if args.lam == lam else f"spin_lam{args.lam:g}")


if __name__ == "__main__":
    main()
