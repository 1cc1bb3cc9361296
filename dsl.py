"""The list language of the `code` task, and its interpreter.

A program is steps joined by "|", applied left to right: "sort | add 2 | take 3". Each step maps
a list of ints to a list, except the last, which may map a list to an int (sum, max, min, len).
The interpreter is ordinary Python over a parsed list of (name, argument) pairs: the model's text
is only ever matched against a grammar, never executed (no eval, no exec), and every step's
result is bounded in length and size, so running any string costs O(steps * MAX_LEN).

    steps = parse_program("sort | take 2")     # [("sort", None), ("take", 2)]
    run_program(steps, [3, 1, 2])              # [1, 2]
"""
import re

MAX_STEPS = 8          # longer programs are a syntax error
MAX_LEN = 64           # a longer list is a runtime error
MAX_INT = 10 ** 6      # a bigger |int| is a runtime error (so mul 999 | mul 999 ... stays small)


class DSLError(Exception):
    """Any failure of a program. Internal to the interpreter: check() catches it."""


class DSLSyntaxError(DSLError):
    def __init__(self, step):
        super().__init__(step)
        self.step = step  # the offending piece of text


class DSLRuntimeError(DSLError):
    pass


def _uniq(xs):
    seen, out = set(), []
    for x in xs:
        if x not in seen:
            seen.add(x)
            out.append(x)
    return out


def _cumsum(xs):
    out, total = [], 0
    for x in xs:
        total += x
        out.append(total)
    return out


def _nonempty(f):
    def g(xs):
        if not xs:
            raise DSLRuntimeError("empty list")
        return f(xs)
    return g


def _count(k):
    if k < 0:  # the grammar already forbids it; keep the interpreter safe on its own too
        raise DSLRuntimeError("negative count")
    return k


# name -> function(list, k). k is None for steps without an argument.
LIST_OPS = {
    "sort":   lambda xs, k: sorted(xs),
    "rev":    lambda xs, k: xs[::-1],
    "add":    lambda xs, k: [x + k for x in xs],
    "mul":    lambda xs, k: [x * k for x in xs],
    "evens":  lambda xs, k: [x for x in xs if x % 2 == 0],
    "odds":   lambda xs, k: [x for x in xs if x % 2 == 1],
    "take":   lambda xs, k: xs[:_count(k)],
    "drop":   lambda xs, k: xs[_count(k):],
    "uniq":   lambda xs, k: _uniq(xs),
    "cumsum": lambda xs, k: _cumsum(xs),
}
INT_OPS = {  # list -> int; only allowed as the last step
    "sum": lambda xs, k: sum(xs),
    "max": lambda xs, k: _nonempty(max)(xs),
    "min": lambda xs, k: _nonempty(min)(xs),
    "len": lambda xs, k: len(xs),
}
OPS = {**LIST_OPS, **INT_OPS}

# The grammar of one step. [0-9] rather than \d: \d would also accept non-ASCII digits.
_BARE_STEP = re.compile(r"sort|rev|evens|odds|uniq|cumsum|sum|max|min|len")
_ADD_MUL_STEP = re.compile(r"(add|mul) (-?[0-9]{1,3})")
_TAKE_DROP_STEP = re.compile(r"(take|drop) ([0-9]{1,3})")


def parse_program(text):
    """Program text -> list of (name, k) steps. Raises DSLSyntaxError."""
    # maxsplit keeps the work bounded even for a string made of pipes
    pieces = text.split("|", MAX_STEPS)
    if len(pieces) > MAX_STEPS:
        raise DSLSyntaxError(f"more than {MAX_STEPS} steps")
    steps = []
    for i, piece in enumerate(pieces):
        s = piece.strip()
        if i > 0 and steps[-1][0] in INT_OPS:
            raise DSLSyntaxError(s)  # this step would receive a number, not a list
        if _BARE_STEP.fullmatch(s):
            steps.append((s, None))
        elif m := (_ADD_MUL_STEP.fullmatch(s) or _TAKE_DROP_STEP.fullmatch(s)):
            steps.append((m.group(1), int(m.group(2))))
        else:
            raise DSLSyntaxError(s)
    return steps


def _check_bounds(value):
    if isinstance(value, int):
        if abs(value) > MAX_INT:
            raise DSLRuntimeError("integer too large")
        return
    if len(value) > MAX_LEN:
        raise DSLRuntimeError("list too long")
    if any(abs(x) > MAX_INT for x in value):
        raise DSLRuntimeError("integer too large")


def run_program(steps, xs):
    """Apply parsed steps to an input list. Raises DSLRuntimeError.
    Bounds are checked after every step, so the cost is O(steps * MAX_LEN)."""
    value = list(xs)
    _check_bounds(value)
    for name, k in steps:
        if isinstance(value, int):
            raise DSLRuntimeError(f"{name} needs a list")
        value = OPS[name](value, k)
        _check_bounds(value)
    return value


ERROR = "error"  # what a failed run "outputs"; never equal to a list or an int


def run_or_error(steps, xs):
    try:
        return run_program(steps, xs)
    except DSLError:
        return ERROR


def fmt(value):
    """Values as they appear in prompts and feedback: 7, [1,2,3] (no spaces: chars are tokens)."""
    if isinstance(value, list):
        return "[" + ",".join(str(x) for x in value) + "]"
    return str(value)


def format_step(name, k):
    return name if k is None else f"{name} {k}"
