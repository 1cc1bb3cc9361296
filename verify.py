"""
The tasks and their oracles.

Every method in this repo needs the same three things from a task: problems to train and test
on, a reference answer to imitate, and a checker that says whether a model's answer is right.
Because the tasks are synthetic, the checker is a short program, not a human or another model,
so "was the model right?" has an exact answer. That is what makes self-improvement measurable.

Two tasks:

arith   Multi-digit arithmetic. Difficulty d = number of digits. Half the problems are
        additions a+b (a, b < 10**d), half are multiplications a*b of a d-digit number by a
        single digit. The prompt is written normally, "123+45=", but the answer is the result's
        digits REVERSED, "861" for 168: the model writes the least significant digit first, the
        way you carry by hand, so each digit depends only on what it has already written (the
        minGPT adder trick, also Lee et al. 2023). The answer is parsed strictly (digits only)
        and the reward is graded: the share of digit positions that are right.

code    Programming by example in a tiny list language (DeepCoder-style). The prompt shows three
        input/output examples and the model writes a program such as "sort | add 2 | take 3".
        Steps are joined by " | " and applied left to right. Difficulty = number of steps (1-4);
        with no difficulty given, problems mix 1- and 2-step programs (CODE_DEFAULT_MIX).
        The program is run by a small, bounded interpreter (dsl.py; no eval/exec: model output
        is never run as Python) on six HIDDEN inputs; reward = share of hidden tests passed.
        Any program that behaves like the reference is correct, whatever its text. An oracle's
        feedback (Reflexion-style methods) only talks about the visible examples.

Prompts are split into train and test, and train again into gold, val and pool (SPLITS), by
stable hashes of the prompt text: no two splits ever share a prompt, whatever seed or size.

    task = TASKS["arith"]; problems = task.problems(100, seed=0, split="gold")
    task.check(problems[0], "861")   # Verdict(correct=..., reward=..., feedback=...)
    python verify.py --task code -n 3 --split pool   # print a few problems
"""

import argparse
import random
import re
import zlib
from dataclasses import dataclass, field

from dsl import (ERROR, LIST_OPS, OPS, DSLSyntaxError, fmt, format_step, parse_program,
                 run_or_error)

# The difficulty each task uses when none is given (tutorials/01_sft.md says why these).
ARITH_DIGITS = 2
CODE_STEPS = 2
# With no difficulty given, code problems mix 1- and 2-step programs: a model that only saw
# 2-step programs learns the primitives slowly (and fails 1-step ones); the mix teaches each.
CODE_DEFAULT_MIX = (1, 2)

# A checker must answer quickly on ANY string: anything longer than this cannot be an answer to
# either task and is rejected before any parsing.
MAX_COMPLETION_CHARS = 200

# "train" and "test" split every task's prompts by a stable hash. The train split is cut again,
# by a second hash, into the three parts of the scarce-data setting (DESIGN.md, tutorials/01):
# gold, the labelled "human data" a base model is trained on; val, labelled problems to stop its
# training on; pool, the prompts self-improvement methods may use, with whatever reward their
# paper allows. Parts never share a prompt, whatever seeds or sizes are asked for.
SPLITS = ("train", "test", "gold", "val", "pool")
TRAIN_PARTS = (("gold", 30), ("val", 5), ("pool", 65))  # percent of the train split


# -----------------------------------------------------------------------------
# The shared contract: what a problem is and what a check returns.

@dataclass
class Problem:
    prompt: str          # the text the model is conditioned on
    answer: str          # the reference completion (SFT trains on prompt + answer + end token)
    tests: object        # hidden checks: arith -> the integer result, code -> [(input, output)]
    difficulty: int
    examples: list = field(default_factory=list)  # code only: the visible (input, output) pairs


@dataclass
class Verdict:
    correct: bool
    reward: float        # graded, in [0, 1]; 1.0 exactly when correct
    feedback: str        # what an oracle would tell the model (code: visible examples only)


def split_of(prompt):
    """The split a prompt belongs to, decided by a stable hash of its text (~10% go to test).
    crc32 is the same on every machine and every run, unlike Python's built-in hash()."""
    return "test" if zlib.crc32(prompt.encode("utf-8")) % 10 == 0 else "train"


def part_of(prompt):
    """The part of the train split a train prompt belongs to (gold, val or pool), by a second
    stable hash of its text."""
    h = zlib.crc32(b"part:" + prompt.encode("utf-8")) % 100
    for part, percent in TRAIN_PARTS:
        if h < percent:
            return part
        h -= percent


def in_split(prompt, split):
    """True iff `prompt` belongs to `split` (a part of train belongs to train too)."""
    if split in ("train", "test"):
        return split_of(prompt) == split
    return split_of(prompt) == "train" and part_of(prompt) == split


class Task:
    """What the tasks share: the deterministic, split-respecting problem generator and a
    `check` that never raises. Subclasses implement `sample`, `_check` and `visible_pass`."""

    name = ""
    difficulties = range(1, 2)
    default_difficulty = 1  # the hardest level of the default problems
    default_mix = None      # or a tuple of levels that difficulty=None draws from uniformly

    def max_tokens(self, difficulty=None):
        """A generation budget (in characters, an upper bound on tokens) for this difficulty."""
        raise NotImplementedError

    @property
    def max_new_tokens(self):
        """The generation budget at the default difficulty."""
        return self.max_tokens(self.default_difficulty)

    def resolve_difficulty(self, difficulty):
        if difficulty is None:
            return self.default_difficulty
        if difficulty not in self.difficulties:
            lo, hi = self.difficulties[0], self.difficulties[-1]
            raise ValueError(f"{self.name}: difficulty must be in {lo}..{hi}, got {difficulty!r}")
        return difficulty

    def problems(self, n, seed, split="train", difficulty=None):
        """n distinct problems of one split. Same arguments -> same problems.

        We draw candidates from a seeded generator and keep the ones whose prompt hashes into
        the requested split. Because the split is a function of the prompt text alone, train
        and test (and gold, val and pool inside train) can never overlap, no matter which seeds
        or sizes anyone asks for."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        if not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be a non-negative integer, got {n!r}")
        d = self.resolve_difficulty(difficulty)
        mix = self.default_mix if difficulty is None and self.default_mix else (d,)
        rng = random.Random(f"{seed}-{split}-{'-'.join(map(str, mix))}")
        out, seen = [], set()
        # Small pools (1-digit arithmetic has 200 prompts) run out: say so, do not loop forever
        tries = 0
        while len(out) < n:
            tries += 1
            if tries > 1000 + 200 * n:
                raise ValueError(
                    f"{self.name}: could only find {len(out)} distinct {split} problems at "
                    f"difficulty {d} (asked for {n}); ask for fewer or raise the difficulty")
            p = self.sample(rng, rng.choice(mix) if len(mix) > 1 else d)
            if p is None or p.prompt in seen or not in_split(p.prompt, split):
                continue
            seen.add(p.prompt)
            out.append(p)
        return out

    def check(self, problem, completion):
        """Grade a completion. Never raises: a bug or a weird input gives a zero Verdict."""
        try:
            if len(completion) > MAX_COMPLETION_CHARS:  # before any regex: bounded time
                return Verdict(False, 0.0, "too long")
            return self._check(problem, completion)
        except Exception as e:  # noqa: BLE001 -- the contract is "never raises"
            return Verdict(False, 0.0, f"error: {type(e).__name__}")

    def visible_pass(self, problem, completion):
        """The self-check a model could run WITHOUT the oracle. Never raises."""
        raise NotImplementedError

    def feedback(self, problem, completion):
        """What the oracle tells the model about a completion, in the words a retry prompt
        carries (Reflexion). Never raises."""
        return self.check(problem, completion).feedback

    def retry_prompt(self, prompt, previous, feedback):
        """The prompt of another try: the problem, the previous answer, what was said about it
        (or "?" when nothing was), and the cue to answer again."""
        raise NotImplementedError

    def sample(self, rng, difficulty):  # subclasses: sample and _check
        raise NotImplementedError

    def _check(self, problem, completion):
        raise NotImplementedError


# -----------------------------------------------------------------------------
# arith: a+b and a*b with the answer's digits reversed

_DIGITS = re.compile(r"[0-9]{1,%d}" % MAX_COMPLETION_CHARS)  # ASCII only: no sign, no spaces


class ArithTask(Task):
    name = "arith"
    difficulties = range(1, 10)  # 1..9 digits

    def __init__(self):
        self.default_difficulty = ARITH_DIGITS

    def max_tokens(self, difficulty=None):
        d = self.resolve_difficulty(difficulty)
        # The answer has at most d+1 digits (a carry, or a 1-digit multiplier), plus the end
        # token. The rest is slack, so a model that overshoots is graded "too long", not cut.
        return 2 * d + 6

    def sample(self, rng, d):
        a = rng.randrange(10 ** d)
        if rng.random() < 0.5:
            b = rng.randrange(10 ** d)
            prompt, result = f"{a}+{b}=", a + b
        else:
            b = rng.randrange(10)  # d-digit by 1-digit: full d x d is too hard for a tiny model
            prompt, result = f"{a}*{b}=", a * b
        return Problem(prompt=prompt, answer=str(result)[::-1], tests=result, difficulty=d)

    def _check(self, problem, completion):
        if not _DIGITS.fullmatch(completion):
            return Verdict(False, 0.0, "not a number")
        answer = problem.answer
        # The exact reversed string is required: "0861" has the right value but is not the
        # form the task asks for.
        if completion == answer and int(completion[::-1]) == problem.tests:
            return Verdict(True, 1.0, "correct")
        matches = sum(c == a for c, a in zip(completion, answer))
        reward = matches / max(len(completion), len(answer))
        for i, (c, a) in enumerate(zip(completion, answer), start=1):
            if c != a:
                return Verdict(False, reward, f"digit {i} is wrong")
        return Verdict(False, reward, "too short" if len(completion) < len(answer) else "too long")

    def feedback(self, problem, completion):
        """The oracle's verdict, compact enough for the arith models' 32 positions:
        "digit 2 is wrong" -> "d2"."""
        return self.check(problem, completion).feedback.replace("digit ", "d").replace(
            " is wrong", "")

    def retry_prompt(self, prompt, previous, feedback):
        """"123+45=" + "861" + ";" + "d2" + "=": the answer comes after the last "="."""
        return f"{prompt}{previous};{feedback}="

    def visible_pass(self, problem, completion):
        """arith shows no worked examples, so the only thing a model can check on its own is
        the format: True iff the completion is a well-formed number. (It says nothing about
        whether the number is right; that is the point of the self-correction experiments.)"""
        try:
            return len(completion) <= MAX_COMPLETION_CHARS and bool(_DIGITS.fullmatch(completion))
        except Exception:  # noqa: BLE001
            return False


# -----------------------------------------------------------------------------
# code: the task

class CodeTask(Task):
    name = "code"
    difficulties = range(1, 5)  # 1..4 steps
    n_visible = 3
    n_hidden = 6

    def __init__(self):
        self.default_difficulty = CODE_STEPS
        self.default_mix = CODE_DEFAULT_MIX

    def max_tokens(self, difficulty=None):
        d = self.resolve_difficulty(difficulty)
        # The longest step ("cumsum", "take 3") is 6 chars, plus " | " between steps: at most
        # 9d - 3 chars and the end token. 10d + 8 leaves room for a slightly longer program.
        return 10 * d + 8

    @staticmethod
    def _random_step(rng, last):
        # The last step may reduce the list to an int; earlier steps must keep a list.
        names = list(OPS) if last else list(LIST_OPS)
        name = rng.choice(names)
        k = {"add": (1, 3), "mul": (2, 3), "take": (1, 3), "drop": (1, 3)}.get(name)
        return (name, None if k is None else rng.randint(*k))

    def _random_program(self, rng, d):
        steps = []
        for i in range(d):
            while True:
                step = self._random_step(rng, last=(i == d - 1))
                # "rev | rev", "sort | sort", "add 1 | add 2": the same step twice in a row is
                # either pointless or a longer way to write one step.
                if not steps or steps[-1][0] != step[0]:
                    break
            steps.append(step)
        return steps

    @staticmethod
    def _random_input(rng):
        return [rng.randrange(10) for _ in range(rng.randint(3, 5))]

    def _distinct_inputs(self, rng, n, avoid):
        out = []
        while len(out) < n:
            xs = self._random_input(rng)
            if xs not in avoid and xs not in out:
                out.append(xs)
        return out

    def sample(self, rng, d):
        steps = self._random_program(rng, d)
        visible = self._distinct_inputs(rng, self.n_visible, avoid=[])
        hidden = self._distinct_inputs(rng, self.n_hidden, avoid=visible)
        outs = [run_or_error(steps, xs) for xs in visible + hidden]
        if ERROR in outs:
            return None  # e.g. "evens | max" on a list with no even number
        vis_outs = outs[:self.n_visible]
        if all(y == [] for y in vis_outs):
            return None  # every example empty: nothing to learn from
        if all(y == xs for xs, y in zip(visible, vis_outs)):
            return None  # looks like the identity: the examples tell nothing
        examples = list(zip(visible, vis_outs))
        tests = list(zip(hidden, outs[self.n_visible:]))
        answer = " | ".join(format_step(*s) for s in steps)
        return Problem(prompt=self.format_prompt(examples), answer=answer, tests=tests,
                       difficulty=d, examples=examples)

    @staticmethod
    def format_prompt(examples):
        lines = [f"in {fmt(xs)} out {fmt(y)}\n" for xs, y in examples]
        return "".join(lines) + "prog: "

    # -- checking --

    def _check(self, problem, completion):
        try:
            steps = parse_program(completion)
        except DSLSyntaxError as e:
            return Verdict(False, 0.0, f"syntax error: {e.step[:20]}")
        passed = sum(run_or_error(steps, xs) == y for xs, y in problem.tests)
        reward = passed / len(problem.tests)
        return Verdict(passed == len(problem.tests), reward,
                       self._visible_feedback(problem.examples, steps))

    @staticmethod
    def _visible_feedback(examples, steps):
        """The oracle's words (Verdict.feedback, Task.feedback): about the VISIBLE examples
        only, which are already in the prompt; a word about a hidden test would leak it."""
        for i, (xs, want) in enumerate(examples, start=1):
            got = run_or_error(steps, xs)
            if got != want:
                return f"example {i}: got {fmt(got)} expected {fmt(want)}"
        return "passes the examples"

    def retry_prompt(self, prompt, previous, feedback):
        """The examples, the last program, the feedback on its own line, and "prog: " again."""
        return f"{prompt}{previous}\n{feedback}\nprog: "

    def visible_pass(self, problem, completion):
        """True iff the program reproduces every visible example. This is the check a
        Reflexion-style agent can run on its own, without the hidden tests."""
        try:
            if len(completion) > MAX_COMPLETION_CHARS:
                return False
            steps = parse_program(completion)
            return all(run_or_error(steps, xs) == y for xs, y in problem.examples)
        except Exception:  # noqa: BLE001 -- syntax errors and anything else: not a pass
            return False


TASKS = {"arith": ArithTask(), "code": CodeTask()}


# -----------------------------------------------------------------------------
# python verify.py --task code -n 3

def main(argv=None):
    parser = argparse.ArgumentParser(description="Print sample problems of a task.")
    parser.add_argument("--task", choices=sorted(TASKS), default="arith")
    parser.add_argument("-n", type=int, default=3, help="number of problems to print")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", choices=SPLITS, default="train")
    parser.add_argument("--difficulty", type=int, default=None,
                        help="arith: number of digits; code: number of steps")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error(f"-n must be at least 1, got {args.n}")
    task = TASKS[args.task]
    try:
        problems = task.problems(args.n, args.seed, args.split, args.difficulty)
    except ValueError as e:
        parser.error(str(e))
    for i, p in enumerate(problems, start=1):
        print(f"--- {task.name} problem {i} ({args.split}, difficulty {p.difficulty}) ---")
        print(p.prompt + p.answer)  # what SFT trains on (plus the end token)
        hidden = (", ".join(f"{fmt(xs)} -> {fmt(y)}" for xs, y in p.tests)
                  if isinstance(p.tests, list) else p.tests)
        print(f"reference answer: {p.answer!r}   hidden: {hidden}")


if __name__ == "__main__":
    main()
