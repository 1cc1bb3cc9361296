import json
import os

import pytest
import torch

from conftest import ROOT, run_script
from model import GPT, GPTConfig
import reflexion as rx
import revise
from sample import pass_at_k
from verify import TASKS, fmt

ARITH, CODE = TASKS["arith"], TASKS["code"]


def run(*args):
    return run_script("methods/reflexion.py", *args, timeout=120)


def tiny_model(block_size, seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(n_layer=1, n_head=2, n_embd=32, block_size=block_size)).eval()


def test_feedback_and_repair_prompt_never_contain_a_hidden_test():
    problems = CODE.problems(40, seed=5, split="test")
    attempts = ["sort", "rev | take 2", "sum", "cumsum | max", "sor", "", "add 1 | mul 2 | evens"]
    for p in problems:
        # the hidden inputs (3 to 6 numbers each) that the visible prompt does not show
        secret = {fmt(xs) for xs, _ in p.tests} - {fmt(xs) for xs, _ in p.examples}
        for a in attempts + [p.answer]:
            fb = CODE.feedback(p, a)
            memory = revise.retry_prompt(CODE, p.prompt, a, fb, 240)[len(p.prompt):]
            assert fb in memory
            for s in secret:
                assert s not in memory


def test_repair_prompt_format_and_it_fits_the_block():
    # 2-digit arith: a budget of 2 * 2 + 6 = 10 tokens, half of it (+ 2) kept free: 32 - 7
    assert revise.prompt_limit(tiny_model(32), ARITH) == 25
    assert revise.prompt_limit(tiny_model(256), CODE) == 240
    assert revise.retry_prompt(ARITH, "123+45=", "861", "d2", 24) == "123+45=861;d2="
    p = CODE.problems(1, seed=0)[0]
    text = revise.retry_prompt(CODE, p.prompt, "sort", "example 1: got [1] expected [2]", 240)
    assert text == p.prompt + "sort\nexample 1: got [1] expected [2]\nprog: "  # no padding
    # too long: the memory is cut from its end, the feedback first, then the attempt
    cut = revise.retry_prompt(ARITH, "999+999=", "9" * 12, "not a number", 24)
    assert cut == "999+999=" + "9" * 12 + ";no="
    long = revise.retry_prompt(ARITH, "999+999=", "\ufffd" + "9" * 40, "not a number", 24)
    assert long == "999+999=" + "9" * 14 + ";="
    # garbled bytes are dropped from the attempt and from the feedback that quotes it
    assert revise.retry_prompt(CODE, "prog: ", "s\ufffdo", "syntax error: s\ufffdo", 240) == \
        "prog: so\nsyntax error: so\nprog: "
    assert ARITH.feedback(ARITH.problems(1, seed=0)[0], "0") in ("d1", "d2", "d3", "d4",
                                                                 "too short")


def test_repair_pairs_teach_a_fix_for_every_failing_attempt_with_and_without_feedback():
    p, q = ARITH.problems(2, seed=0, split="train")
    wrong = "0" if p.answer != "0" else "1"
    attempts = [[(p.answer, True), (wrong, False)], [(wrong, False)]]  # q: never solved

    def retry(a, fb):
        return revise.retry_prompt(ARITH, p.prompt, a, fb, 24)

    assert revise.retry_pairs(ARITH, [p, q], attempts, 24, with_feedback=True) == [
        (retry(p.answer, "?"), p.answer),                       # a right attempt: keep it
        (retry(wrong, ARITH.feedback(p, wrong)), p.answer),     # a wrong one: fix it ...
        (retry(wrong, "?"), p.answer)]                          # ... with or without feedback
    # --quick only: the reference answer stands in where the model never solved the problem
    ref = revise.retry_pairs(ARITH, [q], attempts[1:], 24, with_feedback=True, use_reference=True)
    assert [target for _, target in ref] == [q.answer, q.answer]


def test_resample_at_trial_t_is_pass_at_t_plus_1_of_the_same_samples():
    problems = ARITH.problems(3, seed=0, split="test")
    right = [p.answer for p in problems]
    samples = [[right[0], "1", "2", "3"],          # 1 of 4 right
               [right[1], right[1], "1", "2"],     # 2 of 4 right
               ["1", "2", "3", "4"]]               # never
    curve = rx.resample_curve(ARITH, problems, samples, trials=3)
    assert curve[0] == pytest.approx((1 / 4 + 2 / 4 + 0) / 3)
    assert curve[1] == pytest.approx((1 / 2 + 5 / 6 + 0) / 3)  # 1 - C(3,2)/C(4,2); 1 - 1/6
    for t in range(4):
        assert curve[t] == pytest.approx(sum(pass_at_k(4, c, t + 1) for c in (1, 2, 0)) / 3)


def test_false_positive_rate_is_hidden_failures_among_visible_passes():
    p = ARITH.problems(1, seed=0, split="test")[0]
    wrong = str((int(p.answer) + 1) % 10) + p.answer[1:]
    # arith's self-check is only "is it a number?": a wrong number passes it
    assert rx.false_positive_rate(ARITH, [p, p, p], [p.answer, wrong, "x"]) == 0.5


def test_oracle_stopped_loop_never_revisits_a_solved_problem():
    problems = CODE.problems(8, seed=1, split="test")
    first = [p.answer if i % 2 == 0 else "rev" for i, p in enumerate(problems)]
    stop = lambda p, a: CODE.check(p, a).correct  # noqa: E731
    attempts = revise.run_loop(tiny_model(256), CODE, problems, first, rounds=3,
                               temperature=1.0, seed=0, stop=stop, with_feedback=True)
    assert len(attempts) == 4 and attempts[0] == first
    for i, p in enumerate(problems):
        for t in range(1, 4):
            if stop(p, attempts[t - 1][i]):
                assert attempts[t][i] == attempts[t - 1][i]
    # without a stop rule the same loop rewrites solved problems too
    never = revise.run_loop(tiny_model(256), CODE, problems, first, rounds=1, temperature=1.0,
                            seed=0, stop=revise.never, with_feedback=False)
    assert never[1][::2] != first[::2]


def test_quick_run_end_to_end_writes_results():
    r = run("--quick")
    assert r.returncode == 0, r.stderr
    with open(os.path.join(ROOT, "out", "quick-results", "reflexion-code.json")) as f:
        res = json.load(f)
    rows = res["rows"]
    assert {row["arm"] for row in rows} == set(rx.ARMS) | {"ceiling"}
    T = res["config"]["trials"]
    for arm in rx.ARMS:
        curve = [row["value"] for row in rows if row["arm"] == arm and row["metric"] == "solved"]
        assert len(curve) == T + 1 and all(0 <= v <= 1 for v in curve)
        if arm in ("oracle_feedback", "resample"):  # oracle-stopped: never goes down
            assert all(b >= a for a, b in zip(curve, curve[1:]))
    metrics = {row["metric"] for row in rows}
    assert {"solved", "false_positive", "never_solved"} <= metrics
    assert "| oracle_feedback | 0 |" in r.stdout


@pytest.mark.parametrize("args", [["--task", "chess"], ["--trials", "0"], ["--seeds", "-1"],
                                  ["--temperature", "0"]])
def test_bad_flags_get_one_line_errors(args, one_line_error):
    assert one_line_error(rx.main, "--quick", *args)
