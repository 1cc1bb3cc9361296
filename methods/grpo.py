"""GRPO: online reinforcement learning from the oracle's reward (Shao et al. 2024, DeepSeekMath,
arXiv 2402.03300), and what it does to pass@k (Yue et al. 2025, arXiv 2504.13837).

The idea. Since ReST-EM, the field's answer to "can a model improve itself with a verifier?" is
online RL with verifiable rewards: sample a group of G answers to each prompt from the current
policy, score them with the checker, and push up the answers that beat their group's average.
No value network: the group is the baseline. Yue et al. then asked whether this creates new
ability or only sharpens what the base can already sample: across models and benchmarks RL
raised pass@1, but at large k the base model's pass@k overtook the RL model's. This file
measures both curves on the same problems.

The loss. For a prompt x, G samples o_1..o_G ~ pi_old(.|x) and rewards r_i from the oracle:

    A_i = (r_i - mean(r)) / (std(r) + 1e-4)          group-normalised advantage, every token of o_i
    ratio_it = pi_theta(o_it | x, o_i<t) / pi_old(o_it | x, o_i<t)
    KL_it = min(pi_ref / pi_theta - log(pi_ref / pi_theta) - 1, 10)   (k3, >= 0; capped)
    J(theta) = 1/G sum_i 1/|o_i| sum_t [ min(ratio_it A_i, clip(ratio_it, 1-eps, 1+eps) A_i)
                                          - beta KL_it ]
    loss = -J, for `inner_steps` optimizer steps on each batch (pi_old: the policy that sampled it;
    pi_ref: the base model)

REINFORCE, the minimal relative (nanochat's chat_rl.py): A_i = r_i - mean(r), one step per batch
(on-policy, so ratio = 1 and the clip never acts), beta = 0. Its gradient is
-1/G sum_i A_i 1/|o_i| sum_t grad log pi_theta(o_it): the same function `grpo_loss` computes
with those settings.

Arms (all from the same cached base model; prompts from the pool, never the gold data):
  grpo       clipped ratio (eps 0.2), `inner_steps` steps per batch, KL to the base (beta)
  reinforce  group-mean baseline, on-policy, no std, no clip, no KL
  rest_em    ReST-EM (methods/rest_em.py's rest_em arm, with its defaults: T = 0.8, at most 4
             distinct verified answers a prompt, M-steps early-stopped on the base's val set) at
             an equal number of sampled completions: offline, it samples G answers per pool
             prompt, keeps the distinct verified ones and fine-tunes the base on D_gold + them,
             `rest_em_iterations` times (its step is the iteration; `samples` says how many
             completions each row has cost; kept, covered, label_acc and m_steps its E/M-steps')

Metrics at each evaluation step (step 0 = the base):
  test_acc        greedy accuracy on the test split
  samples         completions sampled for training so far (the budget the arms share)
  reward          mean oracle reward of the training samples since the last evaluation
  kl              mean k3 KL to the base per token of those samples
  entropy         mean entropy (nats) of the policy's next-token distribution along them
  pass@k          k in 1, 4, 16, 64 (unbiased, from 64 samples per test problem at T = 0.8), at
                  step 0 and at the end; and the whole curve k = 1..64 of both for the figure

What was simplified, and why:
  - Scale: G = 8 answers per prompt (the paper: 64), a few hundred steps, a 0.8M (arith) or
    0.4M (code) parameter model.
  - One sample per prompt and step instead of a replay of many minibatches per batch: the
    outer loop is sft.train's, with a fresh batch every `inner_steps` optimizer steps.
  - Rewards: binary (exactly right) by default; --graded uses the task's graded reward (digits
    right on arith, share of hidden tests on code).
  - A sample whose bytes are not valid UTF-8 comes back from generate as text with U+FFFD: it
    is scored (it is wrong) but left out of the loss, since the text's bytes are not the tokens
    that were sampled and their log-probabilities would be another sequence's. With it the
    k3 term is capped at 10 per token (as verl does): one token the policy has made ~e^-10 less
    likely than the base otherwise dominates a batch's loss (a first run hit a mean KL of 806).

Run:
  python methods/grpo.py                     # arith, seed 0 (a few minutes on a CPU)
  python methods/grpo.py --seeds 0,1,2       # what results/grpo-arith.* were written by
  python methods/grpo.py --task code         # 100 steps per arm (arith: 300)
  python methods/grpo.py --quick             # tiny budget, same code path (for tests)

What you should see: test_acc and pass@1 rising over the steps while entropy falls; then the
pass@k curves of base and trained model side by side. Whether the base overtakes at large k
(Yue et al.) depends on where the base's room comes from: tutorials/11_grpo.md reads it.
"""
import copy
import itertools
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root

import numpy as np
import torch

import common
import rest_em
from model import completion_logprobs
from sample import evaluate, generate, pass_at_k, sample_and_check
from sft import base_model, base_settings, gold_data, train

FLAGS = dict(
    steps=(0, "optimizer steps per arm (0: the task's, STEPS)", 0),
    prompts=(32, "pool prompts per batch"),
    group=(8, "G: samples per prompt"),
    temperature=(1.0, "temperature of the policy's samples"),
    lr=(3e-4, "learning rate (AdamW, constant after the warm-up)"),
    warmup=(10, "warm-up steps", 0),
    inner_steps=(2, "grpo: optimizer steps per sampled batch (reinforce: always 1)"),
    clip=(0.2, "grpo: epsilon of the clipped ratio"),
    beta=(0.04, "grpo: coefficient of the KL penalty to the base", 0),
    graded=(False, "graded reward (share of digits or tests right) instead of binary"),
    pool=(4000, "pool prompts to draw batches from"),
    test_problems=(500, "test problems"),
    eval_every=(50, "greedy test accuracy every this many steps"),
    eval_samples=(64, "samples per test problem for pass@k (at the start and the end)"),
    rest_em_iterations=(3, "rest_em: E/M iterations sharing grpo's budget of samples"),
    arms=("grpo,reinforce,rest_em", "arms to run, comma-separated"),
)
QUICK = dict(steps=4, prompts=4, group=4, pool=16, test_problems=8, eval_every=2,
             eval_samples=4)
ARMS = ("grpo", "reinforce", "rest_em")
# rest_em's M-step and filter: methods/rest_em.py's defaults (its QUICK ones with --quick)
# default steps per task: on code a step samples 256 programs and costs ~3x an arith step
STEPS = {"arith": 300, "code": 100}
REST_EM = ("steps", "eval_every", "patience", "batch_size", "lr", "warmup")
EVAL_TEMPERATURE = 0.8  # pass@k's temperature everywhere in this repo (methods/ceiling.py)
KL_CAP = 10.0  # per token (verl's choice): one runaway token cannot dominate a batch


# ---------------------------------------------------------------------------------------------
# The loss

def group_advantages(rewards, normalise=True):
    """rewards (P, G) -> advantages (P, G): minus the group mean, and over the group's std
    (GRPO) or not (REINFORCE). A group whose answers all score the same gets 0."""
    adv = rewards - rewards.mean(dim=1, keepdim=True)  # (P, G)
    if normalise:
        adv = adv / (rewards.std(dim=1, keepdim=True) + 1e-4)  # std: unbiased, as GRPO's code
    return adv


def grpo_loss(logp, logp_old, logp_ref, mask, adv, clip, beta):
    """-J of the docstring. logp, logp_old, logp_ref, mask: (N, T) per answer token (the policy
    being trained, the policy that sampled, the base); adv: (N,). clip = None: no clipping;
    beta = 0: no KL. Returns (loss, mean KL per token)."""
    ratio = torch.exp(logp - logp_old)  # (N, T); 1 on the first step after sampling
    unclipped = ratio * adv[:, None]  # (N, T)
    clipped = ratio.clamp(1 - clip, 1 + clip) * adv[:, None] if clip is not None else unclipped
    log_r = logp_ref - logp  # (N, T): log pi_ref / pi_theta
    kl = (torch.exp(log_r) - log_r - 1).clamp(max=KL_CAP)  # (N, T), k3, capped
    per_token = torch.minimum(unclipped, clipped) - beta * kl  # (N, T)
    per_answer = (per_token * mask).sum(1) / mask.sum(1).clamp(min=1)  # (N,): 1/|o_i| sum_t
    mean_kl = (kl * mask).sum() / mask.sum().clamp(min=1)
    return -per_answer.mean(), mean_kl


# ---------------------------------------------------------------------------------------------
# Sampling a batch, and training on it

def sample_batch(model, task, pool, rng, prompts, group, temperature, graded):
    """`prompts` pool problems drawn with rng, `group` answers to each from the current policy,
    and their rewards: (problems, answers (P*G strings), rewards (P, G))."""
    picked = [pool[i] for i in torch.randint(len(pool), (prompts,), generator=rng).tolist()]
    seed = int(torch.randint(2 ** 31, (1,), generator=rng))
    outs = generate(model, [p.prompt for p in picked], n=group,
                    max_new_tokens=task.max_new_tokens, temperature=temperature, seed=seed)
    verdicts = [[task.check(p, o) for o in os_] for p, os_ in zip(picked, outs)]
    rewards = torch.tensor([[v.reward if graded else float(v.correct) for v in vs]
                            for vs in verdicts])  # (P, G)
    return picked, [o for os_ in outs for o in os_], rewards


def rl_train(model, base, task, pool, steps, prompts, group, temperature, graded, lr, warmup,
             inner_steps, clip, beta, normalise, seed, log, evaluate_at, evaluate, desc,
             progress):
    """`steps` optimizer steps of the GRPO loss; a new batch is sampled every `inner_steps`.
    Appends each step's reward, kl and entropy (of its batch) to `log`."""
    calls = itertools.count()
    batch = {}

    def rl_loss(rng):
        if next(calls) % inner_steps == 0:  # a new batch from the current policy
            picked, answers, rewards = sample_batch(model, task, pool, rng, prompts, group,
                                                    temperature, graded)
            x = [p.prompt for p in picked for _ in range(group)]
            with torch.no_grad():
                old, mask, entropy = completion_logprobs(model, x, answers, entropy=True)
                ref, _ = completion_logprobs(base, x, answers)
            faithful = torch.tensor([float("\ufffd" not in a) for a in answers])  # (P*G,)
            mask = mask * faithful[:, None]  # text that is not what was sampled: no loss
            batch.update(x=x, answers=answers, old=old, ref=ref, mask=mask,
                         adv=group_advantages(rewards, normalise).flatten(),
                         reward=rewards.mean().item(),
                         entropy=((entropy * mask).sum() / mask.sum()).item())
            model.train()
        logp, _ = completion_logprobs(model, batch["x"], batch["answers"])
        loss, kl = grpo_loss(logp, batch["old"], batch["ref"], batch["mask"], batch["adv"],
                             clip, beta)
        log.append(dict(reward=batch["reward"], kl=kl.item(), entropy=batch["entropy"]))
        return loss

    train(model, rl_loss, steps, lr, warmup, weight_decay=0.0, seed=seed, final_frac=1.0,
          evaluate_at=evaluate_at, evaluate=evaluate, desc=desc, progress=progress)


# ---------------------------------------------------------------------------------------------
# Measuring

def pass_curve(model, task, test, n, seed):
    """{k: pass@k} for k = 1, 2, 4, ..., n from n samples per test problem at T = 0.8."""
    correct = [sum(c) for c in sample_and_check(model, task, test, n, EVAL_TEMPERATURE,
                                                seed=seed)[1]]
    ks = [k for k in (2 ** i for i in range(7)) if k <= n]
    return {k: float(np.mean([pass_at_k(n, c, k) for c in correct])) for k in ks}


def run_rl(base, task, pool, test, settings, seed, steps, eval_every, eval_samples, progress):
    """One RL arm from the base: {step: metrics}."""
    model = copy.deepcopy(base)
    curve, log = {}, []
    every = sorted(set(range(eval_every, steps, eval_every)) | {steps})
    per_batch = settings["prompts"] * settings["group"]

    def at(step):  # the training samples' numbers are the mean over the steps since the last
        since = log[-eval_every:]
        curve[step] = {"test_acc": evaluate(model, task, test)["greedy_acc"],
                       "samples": per_batch * -(-step // settings["inner_steps"]),
                       **{name: float(np.mean([entry[name] for entry in since]))
                          for name in ("reward", "kl", "entropy")}}

    rl_train(model, base, task, pool, steps, seed=seed, log=log, evaluate_at=every, evaluate=at,
             desc=f"seed {seed}", progress=progress, **settings)
    final = pass_curve(model, task, test, eval_samples, seed)
    curve[steps].update({f"pass@{k}": v for k, v in final.items()})
    return curve


def run_rest_em(base, task, pool, test, seed, quick, budget, group, iterations, eval_samples):
    """ReST-EM (methods/rest_em.py's rest_em arm, its defaults) from the same base with the same
    number of sampled completions as grpo: `iterations` E-steps of `group` samples on
    budget / (iterations * group) pool prompts. {iteration: metrics}."""
    flags = dict({k: v[0] for k, v in rest_em.FLAGS.items()}, **(rest_em.QUICK if quick else {}))
    tune = dict({k: flags[k] for k in REST_EM}, progress=not quick)
    gold, val = gold_data(task, base_settings(task, quick=quick), seed)
    prompts = pool[:max(1, budget // (iterations * group))]
    last = {}

    def measure(model):  # run_arm calls it after every M-step; the last model gets pass@k
        last["model"] = model
        return {"test_acc": evaluate(model, task, test)["greedy_acc"]}

    curve = rest_em.run_arm("rest_em", base, task, [(p.prompt, p.answer) for p in gold], prompts,
                            val, iterations, group, flags["temperature"], flags["cap"],
                            flags["vote"], measure, seed, tune)
    for it in curve:
        curve[it]["samples"] = it * len(prompts) * group
    final = pass_curve(last["model"], task, test, eval_samples, seed)
    curve[iterations].update({f"pass@{k}": v for k, v in final.items()})
    return curve


# ---------------------------------------------------------------------------------------------

def run_seed(seed, task, device, quick, steps, prompts, group, temperature, lr, warmup,
             inner_steps, clip, beta, graded, pool, test_problems, eval_every, eval_samples,
             rest_em_iterations, arms):
    progress = not quick
    base = base_model(task, seed=seed, device=device, quick=quick, progress=progress)
    pool_problems = task.problems(pool, seed=seed, split="pool")
    test = task.problems(test_problems, seed=0, split="test")
    shared = dict(prompts=prompts, group=group, temperature=temperature, graded=graded, lr=lr,
                  warmup=warmup)
    start = {"test_acc": evaluate(base, task, test)["greedy_acc"],
             **{f"pass@{k}": v for k, v in pass_curve(base, task, test, eval_samples,
                                                        seed).items()}}
    common.show(f"seed {seed} base", start)
    run = {
        "grpo": lambda: run_rl(base, task, pool_problems, test, dict(
            shared, inner_steps=inner_steps, clip=clip, beta=beta, normalise=True), seed,
            steps, eval_every, eval_samples, progress),
        "reinforce": lambda: run_rl(base, task, pool_problems, test, dict(
            shared, inner_steps=1, clip=None, beta=0.0, normalise=False), seed,
            steps, eval_every, eval_samples, progress),
        # ReST-EM with as many sampled completions as grpo draws in its `steps`
        "rest_em": lambda: run_rest_em(base, task, pool_problems, test, seed, quick,
                                       -(-steps // inner_steps) * prompts * group, group,
                                       rest_em_iterations, eval_samples),
    }
    return common.rows_of("base", 0, start) + common.run_arms(run, arms, seed)


def main():
    args = common.parse_args(__doc__, FLAGS, QUICK, default_task="arith")
    common.comma_list(args.arms, ARMS, "arms")  # a bad arm fails now, not after a seed
    args.steps = args.steps or STEPS[args.task]
    common.run_seeds("grpo", args, run_seed, FLAGS)


if __name__ == "__main__":
    main()
