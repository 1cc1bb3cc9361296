import copy
import json
import math
import os
import subprocess
import sys

import pytest
import torch

from conftest import ROOT
from model import GPT, GPTConfig, encode
import spin

LOG2 = torch.tensor(math.log(2.0))  # float32 log 2, what -logsigmoid(0) returns

PROMPTS = ["12+34=", "5*7=", "999+1="]
REAL = ["64", "53", "0001"]
GEN = ["65", "35", "1"]


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=32))


def nudged(model, seed=1):
    """A copy of `model` with every weight moved a little: a model that is not its opponent."""
    other = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return other


def test_loss_is_exactly_log2_when_model_and_opponent_are_the_same_weights():
    model = tiny_model()
    opponent = spin.frozen_copy(model)
    loss, logits = spin.batch_loss(model, opponent, list(zip(PROMPTS, REAL, GEN)), lam=0.1)
    assert torch.equal(logits, torch.zeros(3))
    assert torch.equal(loss.detach(), LOG2)
    # and the held-out metrics at step 0: indistinguishable by construction
    m = spin.pair_metrics(model, opponent, list(zip(PROMPTS, REAL, GEN)), lam=0.1)
    assert m["heldout_loss"] == pytest.approx(math.log(2), abs=1e-7)
    assert m["reward_acc"] == 0.5 and m["margin"] == 0.0


def test_loss_equals_a_hand_computed_value():
    # pair 1: the model raised log p(y) by 0.5 and lowered log p(y') by 0.5 -> logits 1.0
    # pair 2: it did the opposite by 2.0 in total -> logits -2.0
    pi_real, pi_gen = torch.tensor([-1.0, -3.0]), torch.tensor([-2.0, -1.0])
    opp_real, opp_gen = torch.tensor([-1.5, -2.0]), torch.tensor([-1.5, -2.0])
    loss, logits = spin.spin_loss(pi_real, pi_gen, opp_real, opp_gen, lam=0.1)
    assert logits.tolist() == [1.0, -2.0]
    # -log sigmoid(z) = log(1 + exp(-z)), at z = 0.1 * 1.0 and 0.1 * -2.0
    expected = (math.log(1 + math.exp(-0.1)) + math.log(1 + math.exp(0.2))) / 2
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx((0.64440 + 0.79814) / 2, abs=1e-4)  # worked out on paper


def test_sequence_logprob_sums_every_completion_token_and_the_end_token():
    model = tiny_model()
    prompt, completion = "12+34=", "64"
    ids = encode(prompt) + encode(completion) + [256]  # 256 = <|endoftext|>
    with torch.no_grad():
        logits, _ = model(torch.tensor([ids[:-1]]))  # (1, T, vocab)
        logp = torch.log_softmax(logits[0], dim=-1)  # (T, vocab)
        # the completion's tokens "6", "4", <|endoftext|> are predicted at positions 5, 6, 7
        by_hand = sum(logp[t, ids[t + 1]].item() for t in range(len(encode(prompt)) - 1, len(ids) - 1))
        got = spin.seq_logprob(model, [prompt], [completion])
    assert got.shape == (1,) and got.item() == pytest.approx(by_hand, abs=1e-5)


def test_gradient_is_exactly_zero_when_every_generation_equals_the_data():
    model = tiny_model()
    opponent = spin.frozen_copy(model)
    model = nudged(model)  # even a model far from its opponent gets no signal from y' == y
    loss, logits = spin.batch_loss(model, opponent, list(zip(PROMPTS, REAL, REAL)), lam=0.1)
    assert torch.equal(logits.detach(), torch.zeros(3))
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.count_nonzero(p.grad) == 0, name
    # while a pair with y' != y does move the model
    model.zero_grad()
    loss, _ = spin.batch_loss(model, opponent, list(zip(PROMPTS, REAL, GEN)), lam=0.1)
    loss.backward()
    assert any(torch.count_nonzero(p.grad) > 0 for p in model.parameters())


def test_nll_anchor_adds_alpha_times_the_real_answers_per_token_nll():
    model = tiny_model()
    opponent = spin.frozen_copy(model)
    batch = list(zip(PROMPTS, REAL, GEN))
    plain, _ = spin.batch_loss(model, opponent, batch, lam=1.0)
    anchored, _ = spin.batch_loss(model, opponent, batch, lam=1.0, alpha=0.5)
    with torch.no_grad():
        logp, n = spin.answer_logprob(model, PROMPTS, REAL)
    # the answers "64", "53", "0001" have 2, 2 and 4 digits, plus the end token each
    assert n.tolist() == [3.0, 3.0, 5.0]
    nll = (-logp / n).mean()
    assert anchored.item() == pytest.approx(plain.item() + 0.5 * nll.item(), abs=1e-6)


def test_opponent_never_changes_during_an_iteration_while_the_model_does():
    model = tiny_model()
    opponent = spin.frozen_copy(model)
    before = {k: v.clone() for k, v in opponent.state_dict().items()}
    pairs = list(zip(PROMPTS, REAL, GEN))
    losses = spin.spin_train(model, opponent, pairs, steps=5, batch_size=2, lr=1e-2, warmup=1,
                             lam=0.1, seed=0, progress=False)
    assert len(losses) == 5 and losses[0] == pytest.approx(math.log(2), abs=1e-6)
    for k, v in opponent.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert not all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert all(not p.requires_grad for p in opponent.parameters())


def test_generations_are_cut_to_fit_the_model():
    # 12 bytes that are not UTF-8 come back from decode() as 12 U+FFFD, 36 bytes
    text = "\ufffd" * 12
    cut = spin.fit("999+999=", text, block_size=32)
    assert len(encode("999+999=")) + len(encode(cut)) + 1 <= 32
    assert spin.fit("1+1=", "2", block_size=32) == "2"


def run(*args):
    # one thread: the --quick model is tiny, and on a busy 2-core machine extra threads only wait
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "methods/spin.py", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_quick_run_writes_every_arm_and_metric():
    r = run("--quick", "--no_progress")
    assert r.returncode == 0, r.stderr
    with open(os.path.join(ROOT, "out", "quick-results", "spin-arith.json")) as f:
        res = json.load(f)
    arms = {row["arm"] for row in res["rows"]}
    assert arms == {"spin", "spin_nll", "sft_more", "spin_long"}
    metrics = {row["metric"] for row in res["rows"] if row["arm"] == "spin"}
    assert metrics == {"test_acc", "train_acc", "heldout_loss", "reward_acc", "margin", "same",
                       "gold_nll", "heldout_nll", "logp_real", "logp_gen", "same_gold", "gain"}
    step0 = {row["metric"]: row["value"] for row in res["rows"]
             if row["arm"] == "spin" and row["step"] == 0}
    assert step0["heldout_loss"] == pytest.approx(math.log(2), abs=1e-3)
    assert step0["reward_acc"] == 0.5
    assert "| spin | 2 |" in r.stdout and "| spin_long | 2 |" in r.stdout
    # every arm starts from the same measured base
    for arm in arms:
        assert {row["metric"]: row["value"] for row in res["rows"]
                if row["arm"] == arm and row["step"] == 0} == step0


@pytest.mark.parametrize("args", [["--task", "chess"], ["--lam", "0"], ["--iterations", "-1"],
                                  ["--arms", "spin,dpo"], ["--seeds", "x"]])
def test_bad_flags_get_one_line_errors(args, one_line_error):
    assert one_line_error(spin.main, "--quick", *args)
