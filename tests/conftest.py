import os
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for p in (ROOT, os.path.join(ROOT, "methods")):
    if p not in sys.path:
        sys.path.insert(0, p)


def run_script(*args, timeout=300):
    """Run `python *args` from the repo root. One thread: the models in tests are tiny, and on a
    CPU shared with other jobs torch's spinning thread pool makes them 5-15x slower."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.fixture
def one_thread():
    """The same, in-process: one torch thread for the test, restored after it."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def one_line_error(monkeypatch, capsys):
    """check(main, *args): True if a method's main(), run in-process with those command-line
    arguments, stops with exit code 2 and an "error:" last line on stderr (what a user sees for
    bad input; any other exception fails the test). In-process, because a subprocess per bad
    flag spends its second or two importing torch."""
    def check(main, *args):
        monkeypatch.setattr(sys, "argv", ["method.py", *args])
        with pytest.raises(SystemExit) as stop:
            main()
        err = capsys.readouterr().err.strip().splitlines()
        return stop.value.code == 2 and bool(err) and "error:" in err[-1]
    return check
