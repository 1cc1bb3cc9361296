import argparse
import json
import os

import pytest
import torch

from conftest import ROOT, run_script
from model import GPT, GPTConfig
import rest
from verify import TASKS


def run(*args):
    return run_script(*args, timeout=180)


pytestmark = pytest.mark.usefixtures("one_thread")

ARITH = TASKS["arith"]


def tiny_model(seed=0, block_size=64):
    torch.manual_seed(seed)
    return GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=block_size))


def tiny_args(**kw):
    a = dict(samples=3, temperature=0.8, grows=2, thresholds=[0.0, 0.5], steps=2, batch_size=4,
             lr=1e-3, lr_decay=0.5, warmup=1, quick=True)
    a.update(kw)
    return argparse.Namespace(**a)


def test_filter_keeps_exactly_the_samples_strictly_above_the_threshold():
    data = [("a", "x", 0.0), ("a", "y", 0.5), ("b", "z", 0.5 + 1e-9), ("b", "w", 1.0)]
    assert rest.above(data, 0.0) == [("a", "y"), ("b", "z"), ("b", "w")]
    assert rest.above(data, 0.5) == [("b", "z"), ("b", "w")]
    assert rest.above(data, 0.99) == [("b", "w")]
    assert rest.above(data, 1.0) == []


def test_grow_keeps_the_reference_data_in_the_mixture_and_scores_everything():
    train = ARITH.problems(5, seed=0)
    seen = []

    def reward_fn(problems, completions):
        seen.append(len(completions))
        return [ARITH.check(p, c).reward for p, c in zip(problems, completions)]

    data = rest.grow(tiny_model(), ARITH, train, tiny_args(), seed=0, reward_fn=reward_fn)
    assert len(data) == 5 * (3 + 1) and seen == [20]  # one batched call for all of D_g
    for p in train:
        assert (p.prompt, p.answer, 1.0) in data  # the reference answer, reward 1


def test_improve_steps_continue_from_the_last_policy_at_a_decaying_lr(monkeypatch):
    base = tiny_model()
    train = ARITH.problems(4, seed=0)
    calls = []

    def fake_finetune(model, pairs, steps, batch_size, lr, warmup, seed, desc, progress):
        calls.append((model, lr, len(pairs)))
        with torch.no_grad():
            model.lm_head.weight.add_(1.0)  # mark the model as trained

    def all_good(problems, completions):
        return [1.0] * len(completions)

    monkeypatch.setattr(rest, "finetune", fake_finetune)
    monkeypatch.setattr(rest, "evaluate_policy", lambda *a: {"test_reward": 0.0})
    before = base.lm_head.weight.clone()
    rows = rest.run_rest("rest", base, ARITH, train, train, None, tiny_args(), seed=0,
                         reward_fn=all_good)
    assert [lr for _, lr, _ in calls] == pytest.approx([1e-3, 5e-4, 2.5e-4, 1.25e-4])
    assert all(n == 4 * (3 + 1) for _, _, n in calls)  # all samples and the reference data
    assert torch.equal(base.lm_head.weight, before)  # the base itself is never trained
    # each step starts from the previous one: after step i the weights moved by i
    assert torch.allclose(calls[-1][0].lm_head.weight, before + 4.0)
    arms = sorted({(r["arm"], r["grow"], r["step"]) for r in rows})
    assert arms == [("rest_g1", 1, 1), ("rest_g1", 1, 2), ("rest_g2", 2, 3), ("rest_g2", 2, 4)]


def test_an_improve_step_with_nothing_above_the_threshold_is_reported_not_a_crash():
    train = ARITH.problems(3, seed=0)
    messages = []

    def zero(problems, completions):
        return [0.0] * len(completions)

    rows = rest.run_rest("rest", tiny_model(), ARITH, train, train, None,
                         tiny_args(grows=1), seed=0, reward_fn=zero, log=messages.append)
    assert len(messages) == 2 and "no sample has reward above 0.0" in messages[0]
    assert [r["value"] for r in rows if r["metric"] == "kept"] == [0, 0]


def test_reward_model_score_is_the_expected_digit_and_ignores_padding():
    rm = tiny_model()
    prompts, completions = ["12+3=", "1+1="], ["51", "2222222222"]
    together = rest.reward_model_scores(rm, prompts, completions)
    alone = rest.reward_model_scores(rm, prompts[:1], completions[:1])
    assert together[0] == pytest.approx(alone[0], abs=1e-6)  # right padding changes nothing
    # by hand: softmax over the logits of "0".."6" after the cue, weighted by k / 6
    from model import encode
    ids = torch.tensor([encode(rest.score_text(prompts[0], completions[0]))])
    with torch.no_grad():
        logits = rm(ids)[0][0, -1]
    p = torch.softmax(logits[[encode(str(k))[0] for k in range(7)]], dim=-1)
    assert alone[0] == pytest.approx(float((p * torch.arange(7) / 6).sum()), abs=1e-6)
    assert all(0.0 <= s <= 1.0 for s in together)


def test_quick_run_end_to_end_writes_results():
    r = run("methods/rest.py", "--quick", "--task", "arith")
    assert r.returncode == 0, r.stderr
    with open(os.path.join(ROOT, "out", "quick-results", "rest-arith.json")) as f:
        res = json.load(f)
    arms = {row["arm"] for row in res["rows"]}
    metrics = {row["metric"] for row in res["rows"]}
    assert arms == {"base", "rest_g1", "rest_g2", "rest_proxy_g1", "rest_proxy_g2"}
    assert {"test_reward", "test_acc", "proxy_reward", "kept", "tau"} <= metrics
    assert "| rest_g2 | 2 | 8 |" in r.stdout


@pytest.mark.parametrize("args", [["--task", "chess"], ["--thresholds", "0.5,0.2"],
                                  ["--thresholds", "a"], ["--lr_decay", "2"], ["--steps", "0"]])
def test_bad_flags_get_one_line_errors(args):
    r = run("methods/rest.py", "--quick", *args)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and "error:" in r.stderr.strip().splitlines()[-1]
