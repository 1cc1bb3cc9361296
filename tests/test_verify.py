"""Tests for verify.py: the tasks, their oracles and the list-language interpreter.

Plain pytest, CPU only, a few seconds. Run from the repo root:
    python -m pytest tests/test_verify.py -q
"""

import dataclasses
import os
import random
import subprocess
import sys
import time

import pytest

from conftest import ROOT
import dsl
import verify
from verify import TASKS, Problem, Verdict

ARITH = TASKS["arith"]
CODE = TASKS["code"]


# -----------------------------------------------------------------------------
# the contract

def test_contract_names():
    assert set(TASKS) >= {"arith", "code"}
    assert [f.name for f in dataclasses.fields(Problem)][:4] == ["prompt", "answer", "tests",
                                                                 "difficulty"]
    assert [f.name for f in dataclasses.fields(Verdict)] == ["correct", "reward", "feedback"]
    for name, task in TASKS.items():
        assert task.name == name
        assert task.default_difficulty in task.difficulties
        assert isinstance(task.max_new_tokens, int)
    assert ARITH.default_difficulty == verify.ARITH_DIGITS
    assert CODE.default_difficulty == verify.CODE_STEPS
    assert list(CODE.difficulties) == [1, 2, 3, 4]


# -----------------------------------------------------------------------------
# problems: reference answers, determinism, disjoint splits

def _many_problems(task):
    """>= 1000 problems of a task over both splits and difficulties 1..4."""
    problems = []
    for split in ("train", "test"):
        for d in (1, 2, 3, 4):
            # 1-digit arithmetic has only 200 prompts (26 in test), so ask for fewer there
            n = 20 if (task is ARITH and d == 1) else 170
            problems += task.problems(n, seed=1, split=split, difficulty=d)
    return problems


@pytest.mark.parametrize("name", ["arith", "code"])
def test_reference_answers_are_correct(name):
    task = TASKS[name]
    problems = _many_problems(task)
    assert len(problems) >= 1000
    for p in problems:
        v = task.check(p, p.answer)
        assert v == Verdict(True, 1.0, v.feedback), (p, v)
        # the generation budget covers every reference answer plus the end token
        assert len(p.answer) + 1 <= task.max_tokens(p.difficulty)


@pytest.mark.parametrize("name,difficulty", [("arith", 3), ("code", 2)])
def test_splits_deterministic_and_disjoint(name, difficulty):
    task = TASKS[name]
    train = task.problems(2000, seed=0, split="train", difficulty=difficulty)
    test = task.problems(2000, seed=0, split="test", difficulty=difficulty)
    # deterministic: same arguments, same problems
    assert [p.prompt for p in task.problems(2000, 0, "train", difficulty)] == \
        [p.prompt for p in train]
    # asking for fewer gives a prefix of the same sequence
    assert task.problems(50, seed=0, split="test", difficulty=difficulty) == test[:50]
    # no duplicates within a call
    assert len({p.prompt for p in train}) == len(train)
    assert len({p.prompt for p in test}) == len(test)
    # disjoint, and by construction: every prompt sits in its own hash bucket
    assert not ({p.prompt for p in train} & {p.prompt for p in test})
    assert all(verify.split_of(p.prompt) == "train" for p in train)
    assert all(verify.split_of(p.prompt) == "test" for p in test)
    # other seeds give other problems, still in the right split
    other = task.problems(200, seed=1, split="train", difficulty=difficulty)
    assert [p.prompt for p in other] != [p.prompt for p in train[:200]]
    assert all(verify.split_of(p.prompt) == "train" for p in other)


@pytest.mark.parametrize("name", ["arith", "code"])
def test_gold_val_and_pool_are_disjoint_parts_of_train_for_every_seed(name):
    task = TASKS[name]
    parts = {split: {p.prompt for seed in (0, 1) for p in task.problems(300, seed, split)}
             for split in ("gold", "val", "pool", "test")}
    for a in parts:
        for b in parts:
            assert a == b or not (parts[a] & parts[b]), (a, b)  # across seeds too
    for split in ("gold", "val", "pool"):
        assert all(verify.split_of(p) == "train" and verify.part_of(p) == split
                   for p in parts[split])
    assert task.problems(300, 0, "pool") == task.problems(300, 0, "pool")
    # the parts cover the train split in the announced shares (30 / 5 / 65 percent)
    train = task.problems(4000, seed=2, split="train")
    shares = {part: sum(verify.part_of(p.prompt) == part for p in train) / 4000
              for part, _ in verify.TRAIN_PARTS}
    for part, percent in verify.TRAIN_PARTS:
        assert abs(shares[part] - percent / 100) < 0.03, shares


def test_default_difficulty_is_used():
    assert ARITH.problems(5, 0) == ARITH.problems(5, 0, difficulty=verify.ARITH_DIGITS)
    # code mixes 1- and 2-step programs by default; asking for a level gives only that level
    assert {p.difficulty for p in CODE.problems(50, 0)} == set(verify.CODE_DEFAULT_MIX)
    assert all(p.difficulty == 3 for p in CODE.problems(20, 0, difficulty=3))


def test_problems_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        ARITH.problems(3, 0, split="validation")
    with pytest.raises(ValueError, match="could only find"):
        ARITH.problems(100, 0, split="test", difficulty=1)  # only 26 such prompts exist
    with pytest.raises(ValueError, match="difficulty"):
        CODE.problems(3, 0, difficulty=5)
    with pytest.raises(ValueError):
        ARITH.problems(-1, 0)
    assert ARITH.problems(0, 0) == []


# -----------------------------------------------------------------------------
# arith

def test_arith_format():
    for p in ARITH.problems(300, seed=0, difficulty=3):
        a, op, b = p.prompt[:-1].partition("+") if "+" in p.prompt else p.prompt[:-1].partition("*")
        assert p.prompt.endswith("=")
        result = int(a) + int(b) if op == "+" else int(a) * int(b)
        if op == "*":
            assert 0 <= int(b) <= 9
        assert p.tests == result
        assert p.answer == str(result)[::-1]
    ops = [("+" in p.prompt) for p in ARITH.problems(1000, seed=0)]
    assert 400 < sum(ops) < 600  # about half additions, half multiplications


def test_arith_check_cases():
    p = Problem(prompt="123+45=", answer="861", tests=168, difficulty=3)
    assert ARITH.check(p, "861") == Verdict(True, 1.0, "correct")
    assert ARITH.check(p, "868") == Verdict(False, 2 / 3, "digit 3 is wrong")
    assert ARITH.check(p, "161") == Verdict(False, 2 / 3, "digit 1 is wrong")
    assert ARITH.check(p, "86") == Verdict(False, 2 / 3, "too short")
    assert ARITH.check(p, "8610") == Verdict(False, 3 / 4, "too long")
    assert ARITH.check(p, "0861").correct is False  # right value, wrong form
    assert ARITH.check(p, "168").correct is False   # not reversed
    for bad in ["", " 861", "861 ", "-861", "8 61", "+861", "abc", "８６１", "٨٦١"]:
        assert ARITH.check(p, bad) == Verdict(False, 0.0, "not a number"), bad


def test_arith_corrupted_answer_is_wrong():
    rng = random.Random(0)
    for p in ARITH.problems(500, seed=2, difficulty=4):
        i = rng.randrange(len(p.answer))
        wrong_digit = rng.choice([c for c in "0123456789" if c != p.answer[i]])
        bad = p.answer[:i] + wrong_digit + p.answer[i + 1:]
        v = ARITH.check(p, bad)
        assert not v.correct and v.reward < 1.0
        assert v.reward == (len(p.answer) - 1) / len(p.answer)
        assert v.feedback == f"digit {i + 1} is wrong"


def test_arith_visible_pass_is_a_format_check():
    p = ARITH.problems(1, 0)[0]
    assert ARITH.visible_pass(p, p.answer)
    assert ARITH.visible_pass(p, "9" * len(p.answer + "1"))  # well-formed, even if wrong
    assert not ARITH.visible_pass(p, "12a")
    assert not ARITH.visible_pass(p, None)


# -----------------------------------------------------------------------------
# code: the interpreter

def run(text, xs):
    return dsl.run_program(dsl.parse_program(text), xs)


@pytest.mark.parametrize("program,xs,want", [
    ("sort", [3, 1, 2, 1], [1, 1, 2, 3]),
    ("rev", [3, 1, 2], [2, 1, 3]),
    ("add 2", [3, 1, 0], [5, 3, 2]),
    ("add -1", [3, 1, 0], [2, 0, -1]),
    ("mul 3", [3, 1, 0], [9, 3, 0]),
    ("evens", [3, 4, 0, 7, 8], [4, 0, 8]),
    ("odds", [3, 4, 0, 7, 8], [3, 7]),
    ("take 2", [5, 6, 7], [5, 6]),
    ("take 9", [5, 6, 7], [5, 6, 7]),
    ("drop 1", [5, 6, 7], [6, 7]),
    ("drop 5", [5, 6, 7], []),
    ("uniq", [3, 1, 3, 2, 1], [3, 1, 2]),
    ("cumsum", [1, 2, 3, 4], [1, 3, 6, 10]),
    ("sum", [1, 2, 3, 4], 10),
    ("sum", [], 0),
    ("max", [3, 9, 2], 9),
    ("min", [3, 9, 2], 2),
    ("len", [3, 9, 2], 3),
    ("len", [], 0),
    ("sort | add 2 | take 3", [4, 1, 3, 2], [3, 4, 5]),
    ("evens | sum", [1, 2, 3, 4], 6),
    ("  rev|take 1 ", [1, 2, 3], [3]),  # spaces around steps do not matter
])
def test_interpreter_primitives(program, xs, want):
    assert run(program, xs) == want


def test_interpreter_does_not_mutate_input():
    xs = [3, 1, 2]
    run("sort | rev", xs)
    assert xs == [3, 1, 2]


@pytest.mark.parametrize("program,xs", [
    ("mul 999 | mul 999 | mul 999", [9]),          # integer bound
    ("add 999 | cumsum", [999_000] * 3),
    ("sum", [1_000_000, 1]),
    ("max", []),                                    # max of an empty list
    ("evens | min", [1, 3]),
    ("sort", list(range(dsl.MAX_LEN + 1))),      # input too long
    ("sort", [10 ** 7]),                            # input integer too large
])
def test_interpreter_runtime_errors(program, xs):
    with pytest.raises(dsl.DSLRuntimeError):
        run(program, xs)
    assert dsl.run_or_error(dsl.parse_program(program), xs) == dsl.ERROR


@pytest.mark.parametrize("program", [
    "", "sortt", "add", "add 1000", "add 99999999999999999999", "take -1", "add +1",
    "add  1", "sum | sum", "max | sort", "sort |", "| sort", "map", "add ٣", "SORT",
    " | ".join(["rev"] * 9), "|" * 150,
])
def test_interpreter_syntax_errors(program):
    with pytest.raises(dsl.DSLSyntaxError):
        dsl.parse_program(program)


def test_interpreter_step_limit():
    assert len(dsl.parse_program(" | ".join(["rev"] * dsl.MAX_STEPS))) == dsl.MAX_STEPS


# -----------------------------------------------------------------------------
# code: problems and the oracle

def test_code_problem_shape():
    for d in (1, 2, 3, 4):
        for p in CODE.problems(100, seed=3, difficulty=d):
            assert p.difficulty == d
            assert len(dsl.parse_program(p.answer)) == d
            assert len(p.examples) == 3 and len(p.tests) == 6
            assert p.prompt == CODE.format_prompt(p.examples)
            assert p.prompt.endswith("prog: ")
            inputs = [xs for xs, _ in p.examples + p.tests]
            assert len({tuple(xs) for xs in inputs}) == 9  # hidden inputs are new
            assert all(3 <= len(xs) <= 6 and all(0 <= x <= 9 for x in xs) for xs in inputs)
            assert not all(y == [] for _, y in p.examples)
            assert not all(y == xs for xs, y in p.examples)
            steps = p.answer.split(" | ")
            assert all(a.split()[0] != b.split()[0] for a, b in zip(steps, steps[1:]))


def hand_problem(answer, examples, tests):
    return Problem(prompt=CODE.format_prompt(examples), answer=answer, tests=tests,
                   difficulty=1, examples=examples)


def test_code_prompt_format():
    p = hand_problem("sort", [([3, 1, 2], [1, 2, 3]), ([5, 4], [4, 5]), ([1, 2], 3)], [])
    assert p.prompt == "in [3,1,2] out [1,2,3]\nin [5,4] out [4,5]\nin [1,2] out 3\nprog: "


def test_code_judges_behaviour_not_text():
    examples = [([3, 1, 2], [1, 2, 3]), ([9, 0, 4, 4], [0, 4, 4, 9]), ([5, 6, 1], [1, 5, 6])]
    tests = [([2, 2, 1], [1, 2, 2]), ([7, 3, 5, 1], [1, 3, 5, 7]), ([0, 9, 8], [0, 8, 9])]
    p = hand_problem("sort", examples, tests)
    for same in ["sort", "rev | rev | sort", "rev | sort", "sort | rev | rev", "sort|take 999"]:
        assert CODE.check(p, same) == Verdict(True, 1.0, "passes the examples"), same


def test_code_agreeing_on_visible_is_not_enough():
    # "sort | uniq" agrees with "sort" on the visible examples (no repeats there) but not on
    # hidden inputs with repeated values.
    examples = [([3, 1, 2], [1, 2, 3]), ([9, 0, 4], [0, 4, 9]), ([5, 6, 1], [1, 5, 6])]
    tests = [([2, 2, 1], [1, 2, 2]), ([7, 3, 5, 1], [1, 3, 5, 7]), ([8, 8, 8], [8, 8, 8])]
    p = hand_problem("sort", examples, tests)
    v = CODE.check(p, "sort | uniq")
    assert CODE.visible_pass(p, "sort | uniq")
    assert v == Verdict(False, 1 / 3, "passes the examples")


@pytest.mark.parametrize("k", range(5))
def test_code_reward_is_share_of_hidden_tests(k):
    # reference "add 1"; the wrong program "cumsum | add 1" agrees exactly on inputs whose
    # running sum equals the list itself, i.e. [0, ..., 0, x].
    examples = [([1, 2, 3], [2, 3, 4])]
    agree = [([0, 0, 4], [1, 1, 5]), ([0, 0, 0, 7], [1, 1, 1, 8]), ([0, 2], [1, 3]),
             ([0, 0, 0, 0, 9], [1, 1, 1, 1, 10])]
    differ = [([1, 1, 1], [2, 2, 2]), ([3, 5, 0], [4, 6, 1]), ([6, 2, 2], [7, 3, 3]),
              ([1, 2, 0, 0], [2, 3, 1, 1])]
    p = hand_problem("add 1", examples, agree[:k] + differ[:4 - k])
    v = CODE.check(p, "cumsum | add 1")
    assert v.reward == k / 4
    assert v.correct == (k == 4)


def test_code_feedback_names_first_wrong_visible_example():
    examples = [([3, 1, 2], [1, 2, 3]), ([9, 0, 4], [0, 4, 9]), ([5, 0], [0, 5])]
    p = hand_problem("sort", examples, [([2, 1], [1, 2])])
    assert CODE.check(p, "rev").feedback == "example 1: got [2,1,3] expected [1,2,3]"
    assert CODE.check(p, "take 2 | sort").feedback == "example 1: got [1,3] expected [1,2,3]"
    assert CODE.check(p, "sum").feedback == "example 1: got 6 expected [1,2,3]"
    assert CODE.check(p, "drop 2 | min | add 1").feedback == "syntax error: add 1"
    assert CODE.check(p, "reverse").feedback == "syntax error: reverse"
    assert CODE.check(p, "x" * 50).feedback == "syntax error: " + "x" * 20
    p2 = hand_problem("max", [([3, 1], 3), ([5], 5)], [([1, 2], 2)])
    assert CODE.check(p2, "evens | max").feedback == "example 1: got error expected 3"
    assert not CODE.visible_pass(p2, "evens | max")


def _hidden_strings(p):
    return [dsl.fmt(v) for xs, y in p.tests for v in (xs, y)]


def test_code_feedback_never_leaks_hidden_tests_hand_built():
    # Visible values are small, hidden values large and distinct, so any hidden input or
    # output appearing in feedback could only have come from the hidden tests.
    examples = [([3, 1, 2], [4, 2, 3]), ([0, 2, 5], [1, 3, 6]), ([7, 7], [8, 8])]
    tests = [([41, 43, 47], [42, 44, 48]), ([53, 59], [54, 60]), ([61, 67, 71, 73], [62, 68, 72, 74])]
    p = hand_problem("add 1", examples, tests)
    wrong = ["sort", "rev", "add 2", "mul 3", "evens", "odds", "take 1", "drop 1", "uniq",
             "cumsum", "sum", "max", "min", "len", "add 1 | sort", "evens | max", "bogus",
             "add 1 | rev", "add 1", "", "|||"]
    leaked_words = _hidden_strings(p) + ["41", "53", "61", "hidden", "test"]
    for w in wrong:
        fb = CODE.check(p, w).feedback
        assert not any(s in fb for s in leaked_words), (w, fb)


def test_code_feedback_depends_on_visible_examples_only():
    problems = CODE.problems(300, seed=4, split="test", difficulty=2)
    rng = random.Random(0)
    others = [q.answer for q in CODE.problems(40, seed=5, difficulty=3)]
    for p in problems:
        # the same problem with the hidden tests replaced: feedback must not change
        blind = Problem(p.prompt, p.answer, tests=[([0], 0)], difficulty=p.difficulty,
                        examples=p.examples)
        for completion in [rng.choice(others), p.answer + " | rev", "sort", "bad step"]:
            v = CODE.check(p, completion)
            assert v.feedback == CODE.feedback(blind, completion)
            assert v.feedback == CODE.check(blind, completion).feedback
            assert (v.feedback == "passes the examples") == CODE.visible_pass(p, completion)


# -----------------------------------------------------------------------------
# hostile completions: never raise, answer quickly, score zero

def _hostile_strings():
    rng = random.Random(0)
    random_bytes = bytes(rng.randrange(256) for _ in range(150)).decode("utf-8", errors="replace")
    return [
        random_bytes,
        "x" * 100_000,
        "1" * 100_000,
        "[" * 10_000,
        "add 99999999999999999999",
        "mul 3 | " * 50,
        "mul 3 | " * 24,
        "\x00",
        "sort\x00",
        "ソート | 逆",
        "٣٤٥",
        "sum | sum",
        "|" * 100_000,
        "|" * 199,
        "(a+)+$" * 30,
        "\n" * 150,
    ]


@pytest.mark.parametrize("name", ["arith", "code"])
def test_hostile_completions(name):
    task = TASKS[name]
    p = task.problems(1, seed=0)[0]
    for s in _hostile_strings():
        t0 = time.perf_counter()
        v = task.check(p, s)
        task.visible_pass(p, s)
        elapsed = time.perf_counter() - t0
        assert isinstance(v, Verdict)
        assert (v.correct, v.reward) == (False, 0.0), (s[:40], v)
        assert elapsed < 0.010, (s[:40], elapsed)


@pytest.mark.parametrize("name", ["arith", "code"])
def test_check_never_raises_on_non_strings(name):
    task = TASKS[name]
    p = task.problems(1, seed=0)[0]
    for junk in [None, 123, b"861", ["sort"]]:
        v = task.check(p, junk)
        assert (v.correct, v.reward) == (False, 0.0)
        assert v.feedback.startswith(("error:", "too long", "not a number", "syntax error"))


@pytest.mark.parametrize("name", ["arith", "code"])
def test_reward_in_range_on_random_completions(name):
    task = TASKS[name]
    rng = random.Random(1)
    alphabet = "0123456789 |sortevnadulmikpcx-"
    for p in task.problems(200, seed=6):
        for _ in range(5):
            s = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
            v = task.check(p, s)
            assert 0.0 <= v.reward <= 1.0
            assert v.correct == (v.reward == 1.0)


# -----------------------------------------------------------------------------
# command line

def _cli(*args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "verify.py"), *args],
                          capture_output=True, text=True, timeout=30)


def test_cli():
    r = _cli("--task", "code", "-n", "2", "--seed", "1", "--split", "test", "--difficulty", "3")
    assert r.returncode == 0 and r.stdout.count("reference answer:") == 2 and r.stderr == ""
    for bad in (["--task", "chess"], ["-n", "0"], ["--split", "dev"], ["--difficulty", "99"]):
        r = _cli(*bad)
        assert r.returncode == 2, bad
        assert "Traceback" not in r.stderr and "error:" in r.stderr
