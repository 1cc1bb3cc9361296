import json
import os

import pytest
import torch

from conftest import ROOT, run_script
from model import GPT, GPTConfig
import revise
import self_correct as sc
from verify import TASKS

ARITH = TASKS["arith"]


def run(*args):
    return run_script("methods/self_correct.py", *args, timeout=120)


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(n_layer=1, n_head=2, n_embd=32, block_size=32)).eval()


def test_transitions_match_a_hand_built_case_and_sum_to_one():
    before = [True, True, True, False, False, False, False, True]
    after = [True, False, True, True, False, False, True, True]
    t = sc.transitions(before, after)
    assert t == {"c2c": 3 / 8, "c2i": 1 / 8, "i2c": 2 / 8, "i2i": 2 / 8}
    assert sum(t.values()) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        sc.transitions([True], [True, False])


def test_review_prompt_is_the_retry_prompt_without_feedback_and_fits_the_arith_block():
    limit = revise.prompt_limit(tiny_model(), ARITH)
    assert revise.retry_prompt(ARITH, "123+45=", "861", "?", limit) == "123+45=861;?="
    # the longest prompt and the longest answer the base may write still leave room to answer,
    # uncut
    longest = revise.retry_prompt(ARITH, "999+999=", "x" * ARITH.max_new_tokens, "?", limit)
    assert longest == "999+999=" + "x" * ARITH.max_new_tokens + ";?=" and len(longest) + 5 <= 32
    # garbled bytes are dropped, so characters are tokens
    assert revise.retry_prompt(ARITH, "1+1=", "2\ufffd", "?", limit) == "1+1=2;?="


def test_review_pairs_keep_a_right_answer_and_replace_a_wrong_one():
    p, q = ARITH.problems(2, seed=0, split="train")
    wrong = "0" if p.answer != "0" else "1"
    attempts = [[(wrong, False), (p.answer, True), (wrong, False)], [(wrong, False)]]
    pairs = revise.retry_pairs(ARITH, [p, q], attempts, 24, with_feedback=False)
    review = revise.retry_prompt(ARITH, p.prompt, wrong, "?", 24)
    assert pairs == [(review, p.answer), (p.prompt + p.answer + ";?=", p.answer),
                     (review, p.answer)]  # q, never solved, gives nothing


def test_oracle_stop_never_revisits_a_right_answer():
    problems = ARITH.problems(12, seed=3, split="test")
    first = [p.answer if i % 2 == 0 else "0" for i, p in enumerate(problems)]
    oracle = lambda p, a: ARITH.check(p, a).correct  # noqa: E731
    history = revise.run_loop(tiny_model(), ARITH, problems, first, rounds=3, temperature=1.0,
                              seed=0, stop=oracle, with_feedback=False)
    assert len(history) == 4 and history[0] == first
    for i, p in enumerate(problems):
        for r in range(1, 4):
            if ARITH.check(p, history[r - 1][i]).correct:
                assert history[r][i] == history[r - 1][i]
    # ... while intrinsic revises everything, right answers included
    intrinsic = revise.run_loop(tiny_model(), ARITH, problems, first, rounds=1, temperature=1.0,
                                seed=0, stop=revise.never, with_feedback=False)
    assert any(a != b for a, b in zip(intrinsic[1][::2], first[::2]))


def test_majority_vote_round_zero_is_the_first_answer_and_one_extra_vote_never_wins():
    problems = ARITH.problems(10, seed=4, split="test")
    first = [p.answer for p in problems]
    history = sc.run_majority_vote(tiny_model(), ARITH, problems, first, rounds=2,
                                   temperature=1.0, seed=0)
    assert history[0] == first and history[1] == first  # a 1-1 tie keeps the first answer


def test_quick_run_end_to_end_writes_results_with_consistent_transitions():
    r = run("--quick")
    assert r.returncode == 0, r.stderr
    with open(os.path.join(ROOT, "out", "quick-results", "self_correct-arith.json")) as f:
        res = json.load(f)
    rows = res["rows"]
    assert {row["arm"] for row in rows} == set(sc.ARMS)
    assert {row["metric"] for row in rows} == {"acc", "c2c", "c2i", "i2c", "i2i"}
    steps = {row["step"] for row in rows}
    assert steps == set(range(res["config"]["rounds"] + 1))
    acc = {(row["arm"], row["step"]): row["value"] for row in rows if row["metric"] == "acc"}
    assert len({acc[(arm, 0)] for arm in sc.ARMS}) == 1  # every arm starts from the same answers
    for step in steps - {0}:
        shares = [row["value"] for row in rows if row["step"] == step and row["arm"] == "intrinsic"
                  and row["metric"] != "acc"]
        assert len(shares) == 4 and sum(shares) == pytest.approx(1.0)
        # the transitions explain the change in accuracy
        c2i, i2c = [row["value"] for row in rows if row["step"] == step
                    and row["metric"] in ("c2i", "i2c")]
        assert acc[("intrinsic", step)] - acc[("intrinsic", step - 1)] == pytest.approx(i2c - c2i)
    assert "| intrinsic | 1 |" in r.stdout


@pytest.mark.parametrize("args", [["--task", "chess"], ["--rounds", "0"], ["--seeds", "x"],
                                  ["--revise_temperature", "-1"]])
def test_bad_flags_get_one_line_errors(args, one_line_error):
    assert one_line_error(sc.main, "--quick", *args)
