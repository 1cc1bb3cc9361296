import json
import math
import os

import pytest
import torch

import common
import grpo
from conftest import run_script
from model import GPT, GPTConfig
from verify import TASKS


def test_group_advantages_by_hand():
    r = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    # mean 0.5, unbiased std sqrt(4 * 0.25 / 3) = 0.57735: +-0.5 / (0.57735 + 1e-4)
    a = grpo.group_advantages(r)
    assert a[0].tolist() == pytest.approx([0.86588, -0.86588, -0.86588, 0.86588], abs=1e-5)
    assert a[1].tolist() == [0.0] * 4  # a group that all scored the same teaches nothing
    assert grpo.group_advantages(r, normalise=False)[0].tolist() == [0.5, -0.5, -0.5, 0.5]


def test_on_policy_loss_is_reinforce_with_length_normalised_answers():
    # two answers, 3 and 1 tokens (the 4th column of the second is padding)
    logp = torch.tensor([[-1.0, -2.0, -0.5, 0.0], [-0.3, 0.0, 0.0, 0.0]], requires_grad=True)
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    adv = torch.tensor([2.0, -1.0])
    loss, kl = grpo.grpo_loss(logp, logp.detach(), logp.detach(), mask, adv, clip=0.2, beta=0.04)
    assert loss.item() == pytest.approx(-(2.0 + -1.0) / 2)  # ratio 1, KL 0: -mean(A)
    assert kl.item() == 0.0
    loss.backward()
    # d(-J)/d logp_it = -A_i / (N |o_i|) on answer tokens, 0 on padding
    want = [[-2 / 6] * 3 + [0.0], [1 / 2, 0.0, 0.0, 0.0]]
    assert logp.grad.tolist() == [pytest.approx(w) for w in want]


def test_clipping_stops_the_gradient_only_where_the_paper_says():
    old = torch.zeros(2, 1)
    logp = torch.full((2, 1), math.log(1.5), requires_grad=True)  # ratio 1.5 on both
    mask = torch.ones(2, 1)
    adv = torch.tensor([1.0, -1.0])
    loss, _ = grpo.grpo_loss(logp, old, logp.detach(), mask, adv, clip=0.2, beta=0.0)
    # A > 0: min(1.5 A, 1.2 A) = 1.2 A, clipped (no gradient); A < 0: min(-1.5, -1.2) = -1.5
    assert loss.item() == pytest.approx(-(1.2 - 1.5) / 2)
    loss.backward()
    assert logp.grad[0, 0].item() == 0.0
    assert logp.grad[1, 0].item() == pytest.approx(-(-1.0) * 1.5 / 2)  # -d/dlogp of ratio*A / N


def test_k3_kl_by_hand():
    logp = torch.log(torch.tensor([[0.5, 0.25]]))
    ref = torch.log(torch.tensor([[0.25, 0.25]]))  # pi_ref / pi = 0.5 and 1
    _, kl = grpo.grpo_loss(logp, logp, ref, torch.ones(1, 2), torch.zeros(1), clip=None, beta=1.0)
    assert kl.item() == pytest.approx((0.5 - math.log(0.5) - 1 + 0.0) / 2)  # 0.0966
    # a token the policy made e^-20 as likely as the base: k3 = e^20 - 21 ~ 5e8, capped at 10,
    # so one runaway token cannot swamp the batch (and its gradient through the KL is 0)
    logp = torch.tensor([[-20.0, math.log(0.5)]], requires_grad=True)
    ref = torch.tensor([[0.0, math.log(0.25)]])
    _, kl = grpo.grpo_loss(logp, logp.detach(), ref, torch.ones(1, 2), torch.zeros(1), clip=None,
                           beta=1.0)
    assert kl.item() == pytest.approx((grpo.KL_CAP + 0.5 - math.log(0.5) - 1) / 2)
    kl.backward()
    assert logp.grad[0, 0].item() == 0.0


def test_a_batch_is_sampled_every_inner_steps_and_rewards_come_from_the_oracle(monkeypatch):
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=32))
    base = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=32))
    task = TASKS["arith"]
    pool = task.problems(10, seed=0, split="pool")
    drawn = []
    real = grpo.sample_batch

    def counting(*a, **kw):
        out = real(*a, **kw)
        drawn.append(out)
        return out

    monkeypatch.setattr(grpo, "sample_batch", counting)
    log = []
    grpo.rl_train(model, base, task, pool, steps=6, prompts=2, group=3, temperature=1.0,
                  graded=True, lr=1e-3, warmup=0, inner_steps=2, clip=0.2, beta=0.04,
                  normalise=True, seed=0, log=log, evaluate_at=(), evaluate=None, desc="t",
                  progress=False)
    assert len(drawn) == 3 and len(log) == 6
    problems, answers, rewards = drawn[0]
    assert rewards.shape == (2, 3) and len(answers) == 6
    assert rewards[0, 1].item() == task.check(problems[0], answers[1]).reward


def test_quick_run_writes_every_arm_and_the_pass_at_k_of_the_base():
    r = run_script("methods/grpo.py", "--quick", timeout=300)
    assert r.returncode == 0, r.stderr
    with open(os.path.join(common.OUT, "quick-results", "grpo-arith.json")) as f:
        rows = json.load(f)["rows"]
    assert {row["arm"] for row in rows} == {"base", "grpo", "reinforce", "rest_em"}
    base = {row["metric"] for row in rows if row["arm"] == "base"}
    assert {"test_acc", "pass@1", "pass@4"} <= base
    last = {row["metric"] for row in rows if row["arm"] == "grpo" and row["step"] == 4}
    assert {"test_acc", "reward", "kl", "entropy", "pass@1", "pass@4", "samples"} <= last
    # rest_em spends (up to rounding down to whole prompts) the completions grpo sampled
    spent = {row["arm"]: row["value"] for row in rows if row["metric"] == "samples"
             and row["step"] == max(r["step"] for r in rows if r["arm"] == row["arm"])}
    assert spent["grpo"] == 4 / 2 * 4 * 4  # steps / inner_steps * prompts * group
    assert spent["grpo"] - 3 * 4 < spent["rest_em"] <= spent["grpo"]
