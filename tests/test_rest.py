import json
import os

import pytest
import torch

from conftest import ROOT, run_script
from model import GPT, GPTConfig, encode
import rest
from sample import evaluate
from verify import TASKS


def run(*args):
    return run_script(*args, timeout=180)


pytestmark = pytest.mark.usefixtures("one_thread")

ARITH = TASKS["arith"]
TUNE = dict(steps=2, batch_size=4, warmup=1, progress=False)  # finetune's other settings


def tiny_model(seed=0, block_size=64):
    torch.manual_seed(seed)
    return GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=block_size))


def oracle(problems, completions):
    return [ARITH.check(p, c).reward for p, c in zip(problems, completions)]


def test_filter_keeps_exactly_the_samples_strictly_above_the_threshold():
    data = [("a", "x", 0.0), ("a", "y", 0.5), ("b", "z", 0.5 + 1e-9), ("b", "w", 1.0)]
    assert rest.above(data, 0.0) == [("a", "y"), ("b", "z"), ("b", "w")]
    assert rest.above(data, 0.5) == [("b", "z"), ("b", "w")]
    assert rest.above(data, 0.99) == [("b", "w")]
    assert rest.above(data, 1.0) == []


def test_thresholds_must_rise_strictly_inside_0_1():
    assert rest.parse_thresholds("0,0.5,0.7,0.9") == [0.0, 0.5, 0.7, 0.9]
    assert rest.parse_thresholds(" 0.2 ,") == [0.2]
    for bad in ["", "a", "0.5,0.2", "0.5,0.5", "0,1", "-0.1"]:
        with pytest.raises(ValueError):
            rest.parse_thresholds(bad)


def test_grow_keeps_the_reference_data_in_the_mixture_and_scores_every_sample():
    train = ARITH.problems(5, seed=0, split="pool")
    gold = ARITH.problems(2, seed=0, split="gold")
    seen = []

    def reward_fn(problems, completions):
        seen.append(len(completions))
        return oracle(problems, completions)

    data = rest.grow(tiny_model(), ARITH, train, gold, samples=3, temperature=0.8, seed=0,
                     reward_fn=reward_fn)
    assert len(data) == 5 * 3 + 2 and seen == [15]  # one batched call for all the samples
    assert data[-2:] == [(p.prompt, p.answer, 1.0) for p in gold]  # D, reward 1
    # the rest are exactly the 3 samples of each pool prompt, in order: no pool label is added
    assert [x for x, _, _ in data[:-2]] == [p.prompt for p in train for _ in range(3)]


def test_improve_steps_continue_from_the_last_policy_at_a_decaying_lr(monkeypatch):
    base = tiny_model()
    train = ARITH.problems(4, seed=0)
    calls, grown = [], []

    def fake_finetune(model, pairs, steps, batch_size, lr, warmup, seed, desc, progress):
        calls.append((model, lr, len(pairs), seed))
        with torch.no_grad():
            model.lm_head.weight.add_(1.0)  # mark the model as trained

    def grow_fn(policy, seed):
        grown.append((policy, seed))
        return rest.grow(policy, ARITH, train, train, samples=3, temperature=0.8, seed=seed,
                         reward_fn=lambda problems, completions: [1.0] * len(completions))

    monkeypatch.setattr(rest, "finetune", fake_finetune)
    before = base.lm_head.weight.clone()
    curve = rest.run_rest("rest", base, grow_fn, lambda policy: {"test_reward": 0.0},
                          lambda policy: 0.5, grows=2, thresholds=[0.0, 0.5], lr=1e-3,
                          lr_decay=0.5, seed=3, **TUNE)
    assert [lr for _, lr, _, _ in calls] == pytest.approx([1e-3, 5e-4, 2.5e-4, 1.25e-4])
    assert [s for _, _, _, s in calls] == [3001, 3002, 3003, 3004]
    assert all(n == 4 * (3 + 1) for _, _, n, _ in calls)  # all samples and the reference data
    assert torch.equal(base.lm_head.weight, before)  # the base itself is never trained
    # each step starts from the previous one: after step i the weights moved by i
    assert torch.allclose(calls[-1][0].lm_head.weight, before + 4.0)
    # Grow 1 samples the base, Grow 2 the policy of the last Improve step of Grow 1
    assert grown[0][0] is base and grown[1][0] is calls[1][0]
    assert [s for _, s in grown] == [3001, 3002]
    assert list(curve) == [(1, 1), (1, 2), (2, 3), (2, 4)]
    assert [m["tau"] for m in curve.values()] == [0.0, 0.5, 0.0, 0.5]
    assert all(m["kept"] == 16 and m["test_reward"] == 0.0 for m in curve.values())
    assert all(m["accepted"] == 1 for m in curve.values())  # val reward never fell (0.5 = 0.5)


def test_an_improve_step_that_lowers_the_validation_reward_is_not_kept(monkeypatch):
    base = tiny_model()
    made = []

    def fake_finetune(model, pairs, **kw):
        made.append(model)

    monkeypatch.setattr(rest, "finetune", fake_finetune)
    val = iter([0.5, 0.6, 0.4, 0.7])  # the base, then the candidate of each Improve step
    curve = rest.run_rest("rest", base, lambda policy, seed: [("x", "y", 1.0)],
                          lambda policy: {"policy": policy}, lambda policy: next(val), grows=1,
                          thresholds=[0.0, 0.3, 0.6], lr=1e-3, lr_decay=1.0, seed=0, **TUNE)
    assert [m["accepted"] for m in curve.values()] == [1, 0, 1]
    assert [m["val_reward"] for m in curve.values()] == [0.6, 0.6, 0.7]
    # step 2's candidate is dropped: step 3 continues from step 1's policy
    assert curve[1, 2]["policy"] is made[0] and curve[1, 3]["policy"] is made[2]


def test_an_improve_step_with_nothing_above_the_threshold_is_reported_not_a_crash():
    train = ARITH.problems(3, seed=0)
    messages = []

    def grow_fn(policy, seed):
        return rest.grow(policy, ARITH, train, [], samples=3, temperature=0.8, seed=seed,
                         reward_fn=lambda problems, completions: [0.0] * len(completions))

    curve = rest.run_rest("rest", tiny_model(), grow_fn,
                          lambda policy: rest.evaluate_policy(policy, ARITH, train, None),
                          lambda policy: 0.0, grows=1, thresholds=[0.0, 0.5], lr=1e-3,
                          lr_decay=0.5, seed=0, log=messages.append, **TUNE)
    assert len(messages) == 2 and "no sample has reward above 0.0" in messages[0]
    assert [m["kept"] for m in curve.values()] == [0, 0]


def test_evaluate_policy_scores_the_greedy_answers_with_the_oracle_and_the_proxy():
    test = ARITH.problems(6, seed=0, split="test")
    policy, rm = tiny_model(), tiny_model(seed=1)
    r = rest.evaluate_policy(policy, ARITH, test, rm)
    assert set(r) == {"test_reward", "test_acc", "proxy_reward"}
    assert r["test_acc"] == evaluate(policy, ARITH, test)["greedy_acc"]
    assert 0.0 <= r["test_acc"] <= r["test_reward"] <= 1.0  # correct means reward 1
    assert 0.0 <= r["proxy_reward"] <= 1.0
    assert "proxy_reward" not in rest.evaluate_policy(policy, ARITH, test, None)


def test_reward_model_is_a_trained_copy_and_leaves_the_base_untouched():
    base = tiny_model()
    before = {k: v.clone() for k, v in base.state_dict().items()}
    rm = rest.train_reward_model(base, ARITH, rm_problems=4, rm_samples=2, rm_steps=2,
                                 temperature=0.8, batch_size=4, lr=1e-3, warmup=1, seed=0,
                                 progress=False)
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())
    assert not torch.equal(rm.lm_head.weight, base.lm_head.weight)


def test_reward_model_score_is_the_expected_digit_and_ignores_padding():
    rm = tiny_model()
    prompts, completions = ["12+3=", "1+1="], ["51", "2222222222"]
    together = rest.reward_model_scores(rm, prompts, completions)
    alone = rest.reward_model_scores(rm, prompts[:1], completions[:1])
    assert together[0] == pytest.approx(alone[0], abs=1e-6)  # right padding changes nothing
    # by hand: softmax over the logits of "0".."6" after the cue, weighted by k / 6
    ids = torch.tensor([encode(rest.score_text(prompts[0], completions[0]))])
    with torch.no_grad():
        logits = rm(ids)[0][0, -1]
    p = torch.softmax(logits[[encode(str(k))[0] for k in range(7)]], dim=-1)
    assert alone[0] == pytest.approx(float((p * torch.arange(7) / 6).sum()), abs=1e-6)
    assert all(0.0 <= s <= 1.0 for s in together)


def test_run_seed_without_the_proxy_runs_only_the_oracle_arm():
    hyper = {name: spec[0] for name, spec in rest.FLAGS.items()}
    hyper.update(rest.QUICK, no_proxy=True, grows=1, thresholds="0,0.5")
    rows = rest.run_seed(0, ARITH, "cpu", True, **hyper)
    assert sorted({(r["arm"], r["grow"], r["step"]) for r in rows}) == [
        ("base", 0, 0), ("bc_g1", 1, 1), ("bc_g1", 1, 2), ("rest_g1", 1, 1), ("rest_g1", 1, 2)]
    assert "proxy_reward" not in {r["metric"] for r in rows}
    assert all("seed" not in r for r in rows)  # common.run_seeds adds it


def test_quick_run_end_to_end_writes_results():
    r = run("methods/rest.py", "--quick", "--task", "arith")
    assert r.returncode == 0, r.stderr
    with open(os.path.join(ROOT, "out", "quick-results", "rest-arith.json")) as f:
        res = json.load(f)
    arms = {row["arm"] for row in res["rows"]}
    metrics = {row["metric"] for row in res["rows"]}
    assert arms == {"base", "rest_g1", "rest_g2", "bc_g1", "bc_g2", "rest_proxy_g1",
                    "rest_proxy_g2"}
    assert {"test_reward", "test_acc", "proxy_reward", "kept", "tau", "val_reward",
            "accepted"} <= metrics
    assert all(row["seed"] == 0 for row in res["rows"])
    assert "| rest_g2 | 2 | 4 |" in r.stdout


@pytest.mark.parametrize("args", [["--task", "chess"], ["--thresholds", "0.5,0.2"],
                                  ["--thresholds", "a"], ["--lr_decay", "2"], ["--steps", "0"],
                                  ["--warmup", "-1"], ["--temperature", "nan"]])
def test_bad_flags_get_one_line_errors(args, one_line_error):
    assert one_line_error(rest.main, "--quick", *args)
