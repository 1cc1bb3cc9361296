"""ReST: Reinforced Self-Training (Gulcehre et al. 2023, "Reinforced Self-Training (ReST) for
Language Modeling", arXiv 2308.08998).

The idea: alternate two loops. Grow: sample many answers from the current policy for every
training prompt, score each with a reward in [0, 1], and add them to the original (reference)
data. Improve: fine-tune on the part of that dataset whose reward exceeds a threshold tau, then
raise tau and fine-tune again, each time continuing from the previous policy with a lower
learning rate. The Grow data is reused by all the Improve steps, which is what makes ReST cheap
(offline RL). With the behaviour-cloning loss the paper found best, Improve step i minimises

    J(theta) = E_{(x, y) ~ D_g} [ 1[R(x, y) > tau_i] * ( - log p_theta(y | x) ) ]
    D_g = { (x, y) : x in the pool, y ~ pi_theta_{g-1}(. | x) }  union  D

Here the pool is unlabelled prompts (methods/sft.py's scarce regime), D the base's own labelled
problems D_gold (reward 1), and R the code task's graded reward: the share of a program's hidden
tests it passes (0, 1/6, ..., 1). Pool prompts are the environment, so their tests may score Grow
samples; their reference answers are never used; test problems are only ever scored.

Arms (all start from the same cached base model of the seed):
  rest_g1        one Grow step, then one Improve step per threshold in --thresholds
  rest_g2        rest_g1 followed by a second Grow from the improved policy and the same Improve
                 steps again (its steps are numbered after rest_g1's: it IS rest_g1 until then)
  bc_g1, bc_g2   the behaviour-cloning control: the same Improve steps (steps, rates, checks)
                 on D alone, no pool prompt and no sample: what the steps give without self-data
  rest_proxy_g1  as rest_g1 and rest_g2, but Grow samples are scored, and Improve steps checked,
  rest_proxy_g2  by a small LEARNED reward model (the proxy), as the paper used a learned metric

Each Improve step is kept only if the policy's reward on the labelled validation split (the
base's val problems; the proxy arms score it with the proxy) does not fall, the paper's choice of
checkpoints on a validation set; a step that is not kept leaves the policy unchanged.

The proxy reward model is a copy of the base model fine-tuned on a small labelled set (base
samples for other pool problems, labelled by the oracle) to write the number of hidden tests a
program passes after "prompt + program + '\\nscore: '". Its reward is the expected score,
sum_k p(k) * k / 6, over the digits 0..6.

Metrics per Improve step (step 0 = the base; the `grow` column says which Grow fed the step):
  test_reward    mean oracle graded reward of greedy programs on held-out test problems
  test_acc       share of test problems whose greedy program passes every hidden test
  proxy_reward   the reward model's mean score of those same greedy programs
  val_reward     the validation reward of the policy kept so far; accepted: 1 if this step's
                 policy was kept
  kept           training pairs (samples and D) above the threshold
  tau            the threshold of that Improve step

What was simplified, and why:
  - The paper trains each Improve step for up to 500k steps; here a fixed --steps (a few passes
    over the kept data) and the validation check keeps or drops the whole step.
  - Thresholds 0.5, 0.7, 0.9: with 6 hidden tests the reward only takes the values k/6, so they
    cut at >= 4/6, >= 5/6 and 6/6 passing tests (a threshold of 0 would keep programs passing
    1 of 6).
  - 32 samples per prompt on 400 pool prompts (the paper used 25 to 1000 per prompt).

Run:
  python methods/rest.py                      # code, seed 0 (a few minutes on a CPU)
  python methods/rest.py --seeds 0,1,2        # what results/rest-code.md was made with
  python methods/rest.py --task arith         # arith: reward = share of correct digits
  python methods/rest.py --no_proxy           # oracle-scored arms only (faster)
  python methods/rest.py --quick              # tiny budget, same code path (for tests)

What you should see: tutorials/05_rest.md reads the 3-seed table: whether rest's test reward
rises over its Improve steps and ends above bc's at the same steps, and whether the proxy's own
score of the greedy test programs climbs while the oracle's test reward does not (optimising a
learned reward).
"""
import copy
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root

import numpy as np
import torch

import common
from model import encode
from sample import generate, greedy
from sft import base_model, base_settings, finetune, gold_data

FLAGS = dict(
    train_problems=(400, "pool prompts"),
    test_problems=(300, "test problems"),
    samples=(32, "Grow samples per prompt"),
    temperature=(0.8, "Grow temperature"),
    grows=(2, "Grow steps (rest_g1, rest_g2, ...)"),
    thresholds=("0.5,0.7,0.9", "reward thresholds of the Improve steps of each Grow (rising)"),
    steps=(300, "fine-tuning steps per Improve"),
    batch_size=(32, "batch size"),
    lr=(5e-4, "learning rate of Improve step 1"),
    lr_decay=(0.7, "each Improve step's learning rate is the last one's times this (<= 1)"),
    warmup=(10, "warm-up steps of each fine-tune", 0),
    no_proxy=(False, "skip the learned reward model and the rest_proxy arms"),
    rm_problems=(150, "reward model: problems"),
    rm_samples=(4, "reward model: samples each"),
    rm_steps=(150, "reward model: training steps"),
)
QUICK = dict(train_problems=20, test_problems=20, samples=2, steps=3, rm_problems=10,
             rm_samples=2, rm_steps=3, thresholds="0,0.5")

SCORE_LEVELS = 6  # the reward model writes 0..6: how many of 6 parts of the answer are right
SCORE_CUE = "\nscore: "


def warn(message):
    print(message, file=sys.stderr)


def parse_thresholds(text):
    """'0,0.5' -> [0.0, 0.5]; raises ValueError unless they rise strictly, each in [0, 1)."""
    try:
        taus = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ValueError(f"--thresholds must be comma-separated numbers, got {text!r}") from None
    if not taus or any(not 0 <= t < 1 for t in taus) or taus != sorted(set(taus)):
        raise ValueError(f"--thresholds must rise strictly, each in [0, 1); got {text!r}")
    return taus


# ---------------------------------------------------------------------------------------------
# Grow: sample from the policy, score every sample, add the reference data

def grow(policy, task, train, reference, samples, temperature, seed, reward_fn):
    """D_g: `samples` samples per pool prompt of `train` from `policy`, scored by
    reward_fn(problems, completions), plus the reference data D (the base's labelled problems
    D_gold, reward 1): (prompt, completion, reward) triples."""
    outs = generate(policy, [p.prompt for p in train], n=samples,
                    max_new_tokens=task.max_new_tokens, temperature=temperature, seed=seed)
    problems, completions = [], []
    for p, ss in zip(train, outs):
        for s in ss:
            # a sample cut mid-character decodes to U+FFFD, which re-encodes to 3 bytes; the
            # rare one that no longer fits the context cannot be trained on, so drop it
            if len(encode(p.prompt + s)) + 1 > policy.config.block_size:
                continue
            problems.append(p)
            completions.append(s)
    rewards = reward_fn(problems, completions) if problems else []
    return ([(p.prompt, s, r) for p, s, r in zip(problems, completions, rewards)]
            + [(p.prompt, p.answer, 1.0) for p in reference])  # the original data stays in


def above(data, tau):
    """The (prompt, completion) pairs whose reward is strictly above tau: F = 1[R > tau]."""
    return [(x, y) for x, y, r in data if r > tau]


# ---------------------------------------------------------------------------------------------
# The proxy: a small learned reward model

def score_text(prompt, completion):
    return prompt + completion + SCORE_CUE


def reward_model_scores(rm, prompts, completions, batch=256):
    """The reward model's expected score in [0, 1] for each (prompt, completion)."""
    device = next(rm.parameters()).device
    digits = [encode(str(k))[0] for k in range(SCORE_LEVELS + 1)]
    levels = torch.arange(SCORE_LEVELS + 1, dtype=torch.float32, device=device) / SCORE_LEVELS
    out = []
    rm.eval()
    with torch.no_grad():
        for i in range(0, len(prompts), batch):
            texts = [score_text(p, c)
                     for p, c in zip(prompts[i:i + batch], completions[i:i + batch])]
            # keep the end (the cue) of a text too long for the context
            ids = [encode(t)[-rm.config.block_size:] for t in texts]
            idx = torch.zeros(len(ids), max(map(len, ids)), dtype=torch.long)  # right-padded
            for j, row in enumerate(ids):
                idx[j, :len(row)] = torch.tensor(row)
            logits, _ = rm(idx.to(device))  # (B, T, vocab); causal, so padding is never seen
            last = torch.tensor([len(r) - 1 for r in ids], device=device)
            digit_logits = logits[torch.arange(len(ids), device=device), last][:, digits]  # (B, 7)
            out += (torch.softmax(digit_logits.float(), dim=-1) @ levels).tolist()
    return out


def train_reward_model(base, task, rm_problems, rm_samples, rm_steps, temperature, batch_size,
                       lr, warmup, seed, progress=True):
    """Fine-tune a copy of the base to predict round(6 * oracle reward) of base samples on a
    small labelled set of training problems (not the ones ReST trains the policy on)."""
    problems = task.problems(rm_problems, seed=2000 + seed, split="pool")
    samples = generate(base, [p.prompt for p in problems], n=rm_samples,
                       max_new_tokens=task.max_new_tokens, temperature=temperature,
                       seed=seed + 7)
    pairs = []
    for p, ss in zip(problems, samples):
        for s in ss + [p.answer]:
            text = score_text(p.prompt, s)
            if len(encode(text)) + 2 > base.config.block_size:  # + the digit and end token
                continue  # a rambling sample that does not fit the context: not a label
            pairs.append((text, str(round(SCORE_LEVELS * task.check(p, s).reward))))
    rm = copy.deepcopy(base)
    finetune(rm, pairs, steps=rm_steps, batch_size=batch_size, lr=lr, warmup=warmup, seed=seed,
             desc=f"reward model seed {seed}", progress=progress)
    return rm


# ---------------------------------------------------------------------------------------------
# Evaluation: greedy programs on the test problems, scored by the oracle and by the proxy

def evaluate_policy(policy, task, test, rm):
    answers, correct = greedy(policy, task, test)
    r = {"test_reward": float(np.mean([task.check(p, a).reward for p, a in zip(test, answers)])),
         "test_acc": float(np.mean(correct))}
    if rm is not None:
        r["proxy_reward"] = float(np.mean(reward_model_scores(rm, [p.prompt for p in test],
                                                              answers)))
    return r


# ---------------------------------------------------------------------------------------------
# One ReST run: G Grow steps, each followed by one Improve step per threshold

def run_rest(arm, base, grow_fn, measure, validate, grows, thresholds, lr, lr_decay, seed,
             log=warn, **tune):
    """`grows` Grow steps from `base`, each followed by one Improve step per threshold; returns
    {(grow, step): metrics} for every Improve step. grow_fn(policy, seed) is a Grow (D_g as
    (prompt, completion, reward) triples), measure(policy) the metrics of a policy,
    validate(policy) its reward on the validation split: an Improve step whose policy scores
    below the current one there is not kept (`accepted` 0), as the paper picks its checkpoints
    on a validation set. `tune`: the rest of finetune's settings."""
    curve, policy, step = {}, base, 0
    best = validate(base)
    for g in range(1, grows + 1):
        data = grow_fn(policy, seed * 1000 + g)
        for tau in thresholds:
            step += 1
            pairs, accepted = above(data, tau), 0
            if not pairs:
                log(f"{arm} seed {seed} grow {g} tau {tau}: no sample has reward above {tau}; "
                    f"skipping this Improve step, the policy is unchanged")
            else:  # continue from the previous policy, at a lower learning rate each step
                candidate = copy.deepcopy(policy)
                finetune(candidate, pairs, lr=lr * lr_decay ** (step - 1),
                         seed=seed * 1000 + step, desc=f"{arm} seed {seed} g{g} tau {tau}",
                         **tune)
                score = validate(candidate)
                if score >= best:
                    policy, best, accepted = candidate, score, 1
            curve[g, step] = dict(tau=tau, kept=len(pairs), val_reward=best, accepted=accepted,
                                  **measure(policy))
    return curve


# ---------------------------------------------------------------------------------------------

def run_seed(seed, task, device, quick, train_problems, test_problems, samples, temperature,
             grows, thresholds, steps, batch_size, lr, lr_decay, warmup, no_proxy, rm_problems,
             rm_samples, rm_steps):
    progress = not quick
    base = base_model(task, seed=seed, device=device, quick=quick, progress=progress)
    train = task.problems(train_problems, seed=1000 + seed, split="pool")
    test = task.problems(test_problems, seed=0, split="test")
    gold, val = gold_data(task, base_settings(task, quick=quick), seed)
    taus = parse_thresholds(thresholds)
    rm = None if no_proxy else train_reward_model(
        base, task, rm_problems, rm_samples, rm_steps, temperature, batch_size, lr, warmup, seed,
        progress)

    def measure(policy):
        return evaluate_policy(policy, task, test, rm)

    def oracle(problems, completions):
        return [task.check(p, c).reward for p, c in zip(problems, completions)]

    def proxy(problems, completions):
        return reward_model_scores(rm, [p.prompt for p in problems], completions)

    def validated_by(reward_fn):  # the mean reward of the greedy programs on the val split
        return lambda policy: float(np.mean(reward_fn(val, greedy(policy, task, val)[0])))

    metrics = measure(base)
    common.show(f"seed {seed} base", metrics)
    rows = common.rows_of("base", 0, metrics, grow=0)
    # the arms: which pool prompts their Grow samples, the reward R that scores the samples and
    # the validation, and the reference data D. bc: behaviour cloning of D alone, the same
    # Improve steps (no pool prompt, no sample)
    arms = {"rest": (train, oracle), "bc": ([], oracle)}
    if rm is not None:
        arms["rest_proxy"] = (train, proxy)
    for arm, (prompts, reward_fn) in arms.items():
        def grow_fn(policy, grow_seed, prompts=prompts, reward_fn=reward_fn):
            return grow(policy, task, prompts, gold, samples, temperature, grow_seed, reward_fn)

        curve = run_rest(arm, base, grow_fn, measure, validated_by(reward_fn), grows, taus, lr,
                         lr_decay, seed, steps=steps, batch_size=batch_size, warmup=warmup,
                         progress=progress)
        for (g, step), metrics in curve.items():
            common.show(f"seed {seed} {arm}_g{g} step {step}", metrics)
            rows += common.rows_of(f"{arm}_g{g}", step, metrics, grow=g)
    return rows


def main():
    args = common.parse_args(__doc__, FLAGS, QUICK, default_task="code")
    if args.lr_decay > 1:
        common.fail(f"--lr_decay must be in (0, 1], got {args.lr_decay}")
    try:
        parse_thresholds(args.thresholds)
    except ValueError as e:
        common.fail(str(e))
    common.run_seeds("rest", args, run_seed, FLAGS)


if __name__ == "__main__":
    main()
