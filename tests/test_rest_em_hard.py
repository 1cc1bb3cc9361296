"""ReST-EM from easy to hard on code: the short-cut finder by hand, and the --quick run."""
import json
import os

import pytest

from conftest import ROOT, run_script
from dsl import run_or_error
import rest_em_hard
from verify import Problem

pytestmark = pytest.mark.usefixtures("one_thread")


def problem_of(steps, inputs):
    outs = [(xs, run_or_error(steps, xs)) for xs in inputs]
    return Problem(prompt="", answer="", tests=outs[3:], difficulty=len(steps),
                   examples=outs[:3])


def test_short_programs_are_every_program_the_generator_could_write():
    # 17 list steps (6 bare, add 1-3, mul 2-3, take 1-3, drop 1-3) and 4 int steps, last only
    assert len(rest_em_hard.short_programs(1)) == 17 + 4
    assert len(rest_em_hard.short_programs(2)) == 21 + 17 * 21
    assert [("sort", None), ("sum", None)] in rest_em_hard.short_programs(2)
    assert all(name not in ("sum", "max", "min", "len")
               for p in rest_em_hard.short_programs(2) for name, _ in p[:-1])


def test_reducible_finds_a_shorter_program_on_every_input_and_only_then():
    inputs = [[1, 2, 3], [5, 0, 4, 4], [9, 9, 1], [2, 7, 3, 3, 0], [6, 1, 8], [0, 0, 5, 2]]
    programs = rest_em_hard.short_programs(2)
    # "rev | sort | sum" is "sum": the order does not matter to a sum
    assert rest_em_hard.reducible(problem_of([("rev", None), ("sort", None), ("sum", None)],
                                             inputs), programs)
    # 3 * (x + 3) summed: 3 * sum + 9 * len; no program of two steps gives it
    assert not rest_em_hard.reducible(problem_of([("add", 3), ("mul", 3), ("sum", None)],
                                                 inputs), programs)
    # a program that agrees on the visible examples but not on a hidden test is not a short cut
    lying = problem_of([("rev", None), ("sort", None), ("sum", None)], inputs)
    lying.tests[-1] = (lying.tests[-1][0], 999)
    assert not rest_em_hard.reducible(lying, programs[:21])


def test_quick_run_end_to_end_writes_results():
    r = run_script("methods/rest_em_hard.py", "--quick", "--arms",
                   "sft_more,sft_gold_pool,rest_em,self_train", timeout=180)
    assert r.returncode == 0, r.stderr
    with open(os.path.join(ROOT, "out", "quick-results", "rest_em_hard-code.json")) as f:
        res = json.load(f)
    arms = {row["arm"] for row in res["rows"]}
    metrics = {row["metric"] for row in res["rows"]}
    assert arms == {"base", "sft_more", "sft_gold_pool", "rest_em", "self_train"}
    assert {"test_acc", "test_acc_long", "test_acc_short", "long_answers", "easy_acc",
            "short_share", "label_acc", "kept", "m_steps"} <= metrics


def test_bad_flags_get_one_line_errors(one_line_error):
    for args in (["--arms", "rest_em,vote"], ["--task", "arith"], ["--pool", "0"]):
        assert one_line_error(rest_em_hard.main, "--quick", *args)
