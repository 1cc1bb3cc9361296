import argparse
import json
import os

import pytest
import torch

from conftest import ROOT, run_script
from model import GPT, GPTConfig
import rest_em
from verify import TASKS


def run(*args):
    return run_script(*args, timeout=120)


pytestmark = pytest.mark.usefixtures("one_thread")

ARITH = TASKS["arith"]


def tiny_args(**kw):
    a = dict(samples=4, temperature=0.7, top_k=40, cap=2, steps=2, batch_size=4, lr=1e-3,
             warmup=1, iterations=2, eval_samples=4, eval_temperature=0.8, quick=True)
    a.update(kw)
    return argparse.Namespace(**a)


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


@pytest.mark.parametrize("arm, restarts", [("rest_em", True), ("rest_em_continue", False)])
def test_m_step_starts_from_the_base_only_when_it_should(monkeypatch, arm, restarts):
    base = tiny_model()
    train = ARITH.problems(4, seed=0)
    test = ARITH.problems(4, seed=0, split="test")
    starts, made = [], []

    def fake_m_step(start, pairs, args, seed, desc):  # record who each M-step started from
        starts.append(start)
        model = tiny_model(seed=len(made) + 1)
        made.append(model)
        return model

    def oracle_samples(model, task, problems, args, seed):  # every sample correct
        return [[p.answer] * args.samples for p in problems]

    monkeypatch.setattr(rest_em, "m_step", fake_m_step)
    monkeypatch.setattr(rest_em, "sample_train", oracle_samples)
    rows = rest_em.run_arm(arm, base, ARITH, train, test, test, tiny_args(iterations=3), seed=0)
    assert len(starts) == 3 and starts[0] is base
    if restarts:
        assert all(s is base for s in starts)
    else:
        assert starts[1] is made[0] and starts[2] is made[1]
    kept = [r["value"] for r in rows if r["metric"] == "kept"]
    assert kept == [4 * 2] * 3  # cap 2 of the 4 correct samples, for each of 4 problems


def test_m_step_fine_tunes_a_copy_and_leaves_the_start_untouched():
    base = tiny_model()
    before = {k: v.clone() for k, v in base.state_dict().items()}
    pairs = [(p.prompt, p.answer) for p in ARITH.problems(8, seed=0)]
    new = rest_em.m_step(base, pairs, tiny_args(steps=3), seed=0, desc="t")
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())
    assert not torch.equal(new.lm_head.weight, base.lm_head.weight)


def test_an_empty_e_step_is_reported_not_a_crash():
    base = tiny_model()  # untrained: never writes a correct answer
    train = ARITH.problems(4, seed=0)
    test = ARITH.problems(4, seed=0, split="test")
    messages = []
    rows = rest_em.run_arm("rest_em", base, ARITH, train, test, test, tiny_args(), seed=0,
                           log=messages.append)
    assert len(messages) == 2 and "no correct sample" in messages[0]
    assert [r["value"] for r in rows if r["metric"] == "kept"] == [0, 0]


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
    assert "| rest_em | 2 |" in r.stdout


@pytest.mark.parametrize("args", [["--task", "chess"], ["--cap", "0"], ["--arms", "rest_em,x"],
                                  ["--samples", "-1"]])
def test_bad_flags_get_one_line_errors(args):
    r = run("methods/rest_em.py", "--quick", *args)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and "error:" in r.stderr.strip().splitlines()[-1]
