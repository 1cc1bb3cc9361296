import json
import os

import pytest
import torch

from conftest import ROOT, run_script
from model import GPT, GPTConfig
import rest_em
from verify import TASKS, Problem, Verdict


def run(*args):
    return run_script(*args, timeout=180)


pytestmark = pytest.mark.usefixtures("one_thread")

ARITH = TASKS["arith"]
TUNE = dict(steps=2, eval_every=1, patience=1, batch_size=4, lr=1e-3, warmup=1, progress=False)


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=32))


class TwoAnswers:
    """A task where "a" and "b" are both right answers to every problem (as two programs can be)."""
    max_new_tokens = 4

    def check(self, problem, completion):
        return Verdict(completion in ("a", "b"), float(completion in ("a", "b")), "")


POOL = [Problem(prompt=f"q{i}=", answer="a", tests=None, difficulty=1) for i in range(3)]


def fake_generate(outs):
    return lambda model, prompts, n, **kw: [outs[i] for i in range(len(prompts))]


def test_oracle_filter_keeps_distinct_correct_answers_up_to_the_cap(monkeypatch):
    monkeypatch.setattr(rest_em, "generate", fake_generate(
        [["a", "a", "b", "x"],   # two distinct right answers, the copy of "a" counts once
         ["x", "y", "x", "x"],   # none right
         ["b", "a", "b", "b"]]))  # cap 1: the first right answer sampled
    pairs, audit = rest_em.e_step(None, TwoAnswers(), POOL, "oracle", samples=4, temperature=1,
                                  cap=2, vote=0.5, seed=0)
    assert pairs == [("q0=", "a"), ("q0=", "b"), ("q2=", "b"), ("q2=", "a")]
    assert audit == dict(kept=4, covered=2, label_acc=1.0)
    pairs, _ = rest_em.e_step(None, TwoAnswers(), POOL, "oracle", 4, 1, cap=1, vote=0.5, seed=0)
    assert pairs == [("q0=", "a"), ("q2=", "b")]


def test_vote_filter_never_asks_the_oracle_to_choose_and_is_audited(monkeypatch):
    monkeypatch.setattr(rest_em, "generate", fake_generate(
        [["a", "a", "b", "x"],   # "a" has 2 of 4: kept at vote 0.5
         ["x", "x", "x", "y"],   # "x" has 3 of 4: kept, and wrong
         ["b", "a", "c", "d"]]))  # no answer twice: dropped
    pairs, audit = rest_em.e_step(None, TwoAnswers(), POOL, "vote", samples=4, temperature=1,
                                  cap=4, vote=0.5, seed=0)
    assert pairs == [("q0=", "a"), ("q1=", "x")]
    assert audit == dict(kept=2, covered=2, label_acc=0.5)
    pairs, _ = rest_em.e_step(None, TwoAnswers(), POOL, "vote", 4, 1, cap=4, vote=0.75, seed=0)
    assert pairs == [("q1=", "x")]


def test_self_training_keeps_every_greedy_answer_and_gold_keeps_the_labels(monkeypatch):
    monkeypatch.setattr(rest_em, "greedy", lambda model, task, pool: (["a", "x", "b"], None))
    pairs, audit = rest_em.e_step(None, TwoAnswers(), POOL, "none", 4, 1, cap=4, vote=0.5, seed=0)
    assert pairs == [("q0=", "a"), ("q1=", "x"), ("q2=", "b")]
    assert audit == dict(kept=3, covered=3, label_acc=pytest.approx(2 / 3))
    pairs, audit = rest_em.e_step(None, TwoAnswers(), POOL, "gold", 4, 1, cap=4, vote=0.5, seed=0)
    assert pairs == [(p.prompt, "a") for p in POOL] and audit["label_acc"] == 1.0


@pytest.mark.parametrize("arm,starts_from_base", [("rest_em", [True] * 3),
                                                  ("rest_em_continue", [True, False, False])])
def test_m_step_starts_from_the_base_only_when_it_should(monkeypatch, arm, starts_from_base):
    base, made, starts, sampled_by = tiny_model(), [], [], []

    def fake_e_step(model, task, pool, how, *args):
        sampled_by.append(model)
        return [("q0=", "a")], dict(kept=1, covered=1, label_acc=1.0)

    def fake_m_step(start, task, gold_pairs, pairs, val, seed, desc, tune):
        starts.append(start)
        assert gold_pairs == [("g=", "1")] and pairs == [("q0=", "a")]
        made.append(tiny_model(len(made) + 1))
        return made[-1], 7

    monkeypatch.setattr(rest_em, "e_step", fake_e_step)
    monkeypatch.setattr(rest_em, "m_step", fake_m_step)
    curve = rest_em.run_arm(arm, base, ARITH, [("g=", "1")], POOL, [], iterations=3, samples=4,
                            temperature=1, cap=2, vote=0.5, measure=lambda m: {"test_acc": 0.0},
                            seed=0, tune=TUNE)
    assert [s is base for s in starts] == starts_from_base
    assert sampled_by == [base] + made[:2]  # each E-step samples the latest model
    assert curve[3] == dict(test_acc=0.0, kept=1, covered=1, label_acc=1.0, m_steps=7)


def test_gap_closed_is_the_share_of_the_gap_to_the_pools_gold_labels():
    rows = [dict(arm="base", step=0, metric="test_acc", value=0.6),
            dict(arm="sft_gold_pool", step=1, metric="test_acc", value=0.9),
            dict(arm="rest_em", step=2, metric="test_acc", value=0.75),
            dict(arm="self_train", step=1, metric="test_acc", value=0.54)]
    got = {(r["arm"], r["step"]): r["value"] for r in rest_em.gap_closed(rows)
           if r["metric"] == "gap_closed"}
    assert got == {("sft_gold_pool", 1): 1.0, ("rest_em", 2): 0.5, ("self_train", 1): -0.2}


def test_m_step_fine_tunes_a_copy_and_leaves_the_start_untouched():
    base = tiny_model()
    before = {k: v.clone() for k, v in base.state_dict().items()}
    pairs = [(p.prompt, p.answer) for p in ARITH.problems(8, seed=0)]
    new, step = rest_em.m_step(base, ARITH, pairs, [], ARITH.problems(4, seed=0, split="val"),
                               seed=0, desc="t", tune=TUNE)
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())
    assert step in (1, 2)


def test_quick_run_end_to_end_writes_results():
    r = run("methods/rest_em.py", "--quick", "--arms", ",".join(rest_em.ARMS))
    assert r.returncode == 0, r.stderr
    with open(os.path.join(ROOT, "out", "quick-results", "rest_em-arith.json")) as f:
        res = json.load(f)
    arms = {row["arm"] for row in res["rows"]}
    metrics = {row["metric"] for row in res["rows"]}
    assert arms == {"base"} | set(rest_em.ARMS)
    assert {"test_acc", "pass@1", "pass@4", "label_acc", "kept", "covered", "m_steps"} <= metrics
    assert "| rest_em | 2 |" in r.stdout and "| sft_gold_pool | 1 |" in r.stdout


@pytest.mark.parametrize("args", [["--task", "chess"], ["--cap", "0"], ["--arms", "rest_em,x"],
                                  ["--samples", "-1"], ["--pool", "2"], ["--vote", "1.5"],
                                  ["--warmup", "-1"]])
def test_bad_flags_get_one_line_errors(args, one_line_error):
    assert one_line_error(rest_em.main, "--quick", *args)
