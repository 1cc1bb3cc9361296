import json
import os

import pytest
import torch

from conftest import ROOT, run_script
from model import GPT, GPTConfig
import rest_em
from sample import evaluate
from verify import TASKS


def run(*args):
    return run_script(*args, timeout=120)


pytestmark = pytest.mark.usefixtures("one_thread")

ARITH = TASKS["arith"]
TUNE = dict(steps=2, batch_size=4, lr=1e-3, warmup=1, progress=False)  # the M-step's settings


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=32))


def test_filter_keeps_exactly_the_correct_samples_and_respects_the_cap():
    p1, p2, p3 = ARITH.problems(3, seed=0)
    wrong = "9" * 9  # longer than any 3-digit answer: never correct
    samples = [[p1.answer, wrong, p1.answer, p1.answer, p1.answer],  # 4 correct, cap 2
               [wrong, p2.answer + "0", wrong],                       # none correct
               [p3.answer, "x", wrong]]                                # 1 correct
    pairs, coverage = rest_em.filter_correct(ARITH, [p1, p2, p3], samples, cap=2)
    assert pairs == [(p1.prompt, p1.answer), (p1.prompt, p1.answer), (p3.prompt, p3.answer)]
    assert coverage == pytest.approx(2 / 3)
    pairs, _ = rest_em.filter_correct(ARITH, [p1, p2, p3], samples, cap=10)
    assert len(pairs) == 5  # all four of p1 and the one of p3


@pytest.mark.parametrize("restart", [True, False])
@pytest.mark.parametrize("reuse", [True, False])
def test_m_step_starts_from_the_base_only_when_it_should(monkeypatch, restart, reuse):
    base = tiny_model()
    train = ARITH.problems(4, seed=0)
    starts, made, drawn = [], [], []

    def fake_m_step(start, pairs, steps, batch_size, lr, warmup, seed, desc, progress):
        starts.append(start)  # record who each M-step started from
        model = tiny_model(seed=len(made) + 1)
        made.append(model)
        return model

    def oracle_samples(model, problems, seed):  # every sample correct
        drawn.append((model, seed))
        return [[p.answer] * 4 for p in problems]

    monkeypatch.setattr(rest_em, "m_step", fake_m_step)
    base_samples = [[p.answer] * 4 for p in train] if reuse else None
    curve = rest_em.run_em("arm", base, ARITH, train, restart=restart, iterations=3, cap=2,
                           draw=oracle_samples, measure=lambda model, problems: {}, seed=5,
                           base_samples=base_samples, **TUNE)
    assert len(starts) == 3 and starts[0] is base
    if restart:
        assert all(s is base for s in starts)
    else:
        assert starts[1] is made[0] and starts[2] is made[1]
    # the E-step of iteration i+1 samples the model of iteration i (the base's samples once)
    assert [s for _, s in drawn] == ([] if reuse else [5000]) + [5001, 5002, 5003]
    assert [m for m, _ in drawn[-3:]] == made
    assert list(curve) == [1, 2, 3]
    assert [m["kept"] for m in curve.values()] == [4 * 2] * 3  # cap 2 of 4 correct, 4 problems
    assert all(m["coverage"] == 1.0 for m in curve.values())


def test_m_step_fine_tunes_a_copy_and_leaves_the_start_untouched():
    base = tiny_model()
    before = {k: v.clone() for k, v in base.state_dict().items()}
    pairs = [(p.prompt, p.answer) for p in ARITH.problems(8, seed=0)]
    new = rest_em.m_step(base, pairs, seed=0, desc="t", **dict(TUNE, steps=3))
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())
    assert not torch.equal(new.lm_head.weight, base.lm_head.weight)


def test_sft_gold_is_one_m_step_from_the_base_on_the_reference_answers(monkeypatch):
    base = tiny_model()
    train = ARITH.problems(5, seed=0)
    calls = []

    def fake_m_step(start, pairs, seed, desc, **tune):
        calls.append((start, pairs, tune))
        return start

    monkeypatch.setattr(rest_em, "m_step", fake_m_step)
    curve = rest_em.run_sft_gold(base, train, lambda model, problems: {"x": 1.0}, seed=0, **TUNE)
    assert len(calls) == 1 and calls[0][0] is base and calls[0][2] == TUNE
    assert calls[0][1] == [(p.prompt, p.answer) for p in train]
    assert curve == {1: {"kept": 5, "x": 1.0}}


def test_test_metrics_has_greedy_pass_at_k_and_majority_vote():
    model = tiny_model()
    test = ARITH.problems(6, seed=0, split="test")
    harder = ARITH.problems(6, seed=0, split="test", difficulty=4)
    r = rest_em.test_metrics(model, ARITH, test, harder, eval_samples=4, eval_temperature=0.8,
                             seed=0)
    assert list(r) == ["test_acc", "pass@1", "pass@4", "maj@4", "harder_test_acc"]  # no pass@16
    assert r["test_acc"] == evaluate(model, ARITH, test)["greedy_acc"]
    assert r["harder_test_acc"] == evaluate(model, ARITH, harder)["greedy_acc"]
    assert r["pass@1"] <= r["pass@4"] and all(0.0 <= v <= 1.0 for v in r.values())


def test_an_empty_e_step_is_reported_not_a_crash():
    base = tiny_model()  # untrained: never writes a correct answer
    train = ARITH.problems(4, seed=0)
    test = ARITH.problems(4, seed=0, split="test")
    messages = []

    def draw(model, problems, seed):
        return rest_em.sample_train(model, ARITH, problems, samples=4, temperature=0.7, top_k=40,
                                    seed=seed)

    def measure(model, problems):
        return rest_em.test_metrics(model, ARITH, test, test, 4, 0.8, seed=0)

    curve = rest_em.run_em("rest_em", base, ARITH, train, restart=True, iterations=2, cap=2,
                           draw=draw, measure=measure, seed=0, log=messages.append, **TUNE)
    assert len(messages) == 2 and "no correct sample among 4 x 4" in messages[0]
    assert [m["kept"] for m in curve.values()] == [0, 0]


def test_quick_run_end_to_end_writes_results():
    r = run("methods/rest_em.py", "--quick")
    assert r.returncode == 0, r.stderr
    with open(os.path.join(ROOT, "out", "quick-results", "rest_em-arith.json")) as f:
        res = json.load(f)
    arms = {row["arm"] for row in res["rows"]}
    metrics = {row["metric"] for row in res["rows"]}
    assert arms == {"base", "rest_em", "rest_em_continue", "rest_em_small", "sft_gold"}
    assert {"test_acc", "train_acc", "coverage", "pass@1", "pass@4", "maj@4",
            "harder_test_acc"} <= metrics
    assert all(row["seed"] == 0 for row in res["rows"])
    assert "| rest_em | 2 |" in r.stdout


def test_run_seed_runs_only_the_arms_asked_for():
    hyper = {name: spec[0] for name, spec in rest_em.FLAGS.items()}
    hyper.update(rest_em.QUICK, arms="sft_gold,rest_em_small", iterations=1)
    rows = rest_em.run_seed(0, ARITH, "cpu", True, **hyper)
    assert [(r["arm"], r["step"]) for r in rows if r["metric"] == "test_acc"] == [
        ("base", 0), ("sft_gold", 1), ("rest_em_small", 1)]  # in the order asked for
    assert all("seed" not in r for r in rows)  # common.run_seeds adds it


@pytest.mark.parametrize("args", [["--task", "chess"], ["--cap", "0"], ["--arms", "rest_em,x"],
                                  ["--samples", "-1"], ["--train_problems", "2"],
                                  ["--warmup", "-1"]])
def test_bad_flags_get_one_line_errors(args):
    r = run("methods/rest_em.py", "--quick", *args)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and "error:" in r.stderr.strip().splitlines()[-1]
