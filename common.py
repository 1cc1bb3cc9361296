"""Shared plumbing of every script: the command line, seeds and devices, checkpoints cached in
out/, and the results files. No method lives here; methods/*.py, sample.py, run_all.py and
bench.py use it.

The command line. A method declares its hyper-parameters in one table near its top,

    FLAGS = dict(lr=(3e-4, "peak learning rate"), warmup=(10, "warm-up steps", 0), ...)

name -> (default, help) or (default, help, minimum), and a QUICK dict of the values `--quick`
uses (a tiny budget on the same code path, for tests). `parse_args` turns the table into flags
beside the common ones (--task, --seeds, --device, --dtype, --quick) and checks every value
before any compute: a number must be finite and > 0 (>= minimum where one is given), seeds
distinct, results/ and out/ writable. Bad input gets one line and exit status 2, not a traceback.

Precision. Everything runs in float32 unless `--dtype bf16` is asked for: bf16 changes what is
measured (argmax flips on near-ties, a verifier's logit difference gets coarse, SPIN's loss is a
small difference of large log-probabilities), and these models are too small for it to buy much.
Device, dtype, torch version and thread count go into every results file and checkpoint key.

Results (DESIGN.md): one tidy row per (arm, step, metric, seed) in results/<method>-<task>.json,
and a markdown table of mean ± std over seeds beside it. `run_seeds` writes them only when every
seed is done, so results/ never holds a partial run; the rows of finished seeds are kept in
out/partial/ as the run goes, so an interrupt loses at most the seed it was in. `--quick` runs
write to out/quick-results/: a smoke test never overwrites real results.
"""
import argparse
import contextlib
import glob
import hashlib
import json
import math
import os
import random
import re
import sys
import time

import numpy as np
import torch

from model import CheckpointError, load, pick_device, save
from verify import TASKS

ROOT = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(ROOT, "out")
RESULTS = os.path.join(ROOT, "results")
DTYPES = {"float32": None, "bf16": torch.bfloat16}


# ---------------------------------------------------------------------------------------------
# The command line

class Parser(argparse.ArgumentParser):
    """argparse, but a bad flag gets exactly one line (no usage block) and exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def parse_seeds(text):
    """'0,1,2' -> [0, 1, 2]. Raises ValueError on anything else (negative or repeated seeds
    included: a seed run twice would report a fake ± 0)."""
    try:
        seeds = [int(s) for s in text.split(",") if s.strip() != ""]
    except ValueError:
        raise ValueError(f"--seeds must be comma-separated integers, got {text!r}") from None
    if not seeds or any(s < 0 for s in seeds):
        raise ValueError(f"--seeds needs non-negative integers, got {text!r}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds repeats a seed: {text!r}")
    return seeds


def _flag_type(default):
    """argparse type of a flag from its default; a float flag refuses nan and inf."""
    if isinstance(default, bool):
        return None
    if isinstance(default, int):
        return int
    if isinstance(default, float):
        def finite_float(text):
            value = float(text)
            if not math.isfinite(value):
                raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
            return value
        finite_float.__name__ = "number"
        return finite_float
    return str


def writable(*dirs):
    """The first of `dirs` this process cannot create or write a file in, else None."""
    for d in dirs:
        try:
            os.makedirs(d, exist_ok=True)
            probe = os.path.join(d, f".write-test-{os.getpid()}")
            with open(probe, "w"):
                pass
            os.remove(probe)
        except OSError:
            return d
    return None


def parse_args(doc, flags, quick, default_task, tasks=tuple(TASKS), argv=None):
    """The common flags plus one per entry of `flags`; returns the parsed namespace with
    .seeds a list, .device a device name and, under --quick, the QUICK values in place of the
    defaults of the flags not given."""
    p = Parser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default=default_task, help=f"task: {', '.join(tasks)} "
                                                        f"(default {default_task})")
    p.add_argument("--seeds", default="0", help="comma-separated seeds, e.g. 0,1,2 (default 0)")
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, mps")
    p.add_argument("--dtype", default="float32", choices=list(DTYPES),
                   help="float32 (default), or bf16 autocast: faster on a GPU, other numbers")
    p.add_argument("--quick", action="store_true", help="tiny budget, same code path (for tests)")
    for name, spec in flags.items():
        default, text = spec[0], spec[1]
        if isinstance(default, bool):
            p.add_argument(f"--{name}", action="store_true", help=text)
        else:
            p.add_argument(f"--{name}", type=_flag_type(default), default=default,
                           help=f"{text} (default {default})")
    args = p.parse_args(argv)
    if args.task not in tasks:
        p.error(f"unknown task {args.task!r}; choose from {', '.join(tasks)}")
    try:
        args.seeds = parse_seeds(args.seeds)
        args.device = pick_device(args.device)
    except ValueError as e:
        p.error(str(e))
    for name, spec in flags.items():
        value = getattr(args, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        low = spec[2] if len(spec) > 2 else None
        if (value < low) if low is not None else (value <= 0):
            p.error(f"--{name} must be {'>= ' + str(low) if low is not None else '> 0'}, "
                    f"got {value}")
    if args.quick:  # QUICK replaces the defaults, never a flag the user gave
        given = {a[2:].split("=")[0] for a in (sys.argv[1:] if argv is None else argv)
                 if a.startswith("--")}
        for name, value in quick.items():
            if name not in given:
                setattr(args, name, value)
    bad = writable(results_dir(args.quick), OUT)
    if bad:
        p.error(f"cannot write to {bad}: results and checkpoints go there")
    if args.device.startswith("cuda"):  # the same numbers run after run, where torch can
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    return args


def fail(message):
    """Bad input found after parsing: one line on stderr, exit status 2 (as argparse does)."""
    print(f"{os.path.basename(sys.argv[0])}: error: {message}", file=sys.stderr)
    sys.exit(2)


def comma_list(text, choices, flag):
    """'a,b' -> ['a', 'b'], each one of `choices`; anything else fails with one line."""
    items = [x.strip() for x in text.split(",") if x.strip()]
    if not items or any(x not in choices for x in items):
        fail(f"--{flag} takes a comma-separated subset of {', '.join(choices)}; got {text!r}")
    return items


# ---------------------------------------------------------------------------------------------
# Seeds, precision, the run of every seed

def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def precision(device, dtype):
    """The autocast context of `--dtype`: nothing for float32 (the default)."""
    if DTYPES[dtype] is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=DTYPES[dtype])


def machine(device, dtype):
    """What made a number: recorded in every results file and checkpoint key."""
    return dict(device=torch.device(device).type, dtype=dtype, torch=torch.__version__,
                threads=torch.get_num_threads())


def run_seeds(method, args, run_seed, flags, derived=None, name=None):
    """Call run_seed(seed, task, device, quick, **hyper-parameters) for every seed of --seeds;
    it returns tidy rows without the seed. The hyper-parameters are the flags' values and any
    `derived` from them; all are recorded in the results. Writes the results when all seeds are
    done (each finished seed's rows go to out/partial/ meanwhile) as <name>-<task>.json (name:
    the method's, unless given); prints the table, returns the rows."""
    task = TASKS[args.task]
    hyper = dict({name: getattr(args, name) for name in flags}, **(derived or {}))
    config = dict(hyper, **machine(args.device, args.dtype))
    name = name or method
    partial = os.path.join(OUT, "partial", f"{name}-{args.task}.json")
    rows, start = [], time.time()
    for seed in args.seeds:
        t0 = time.time()
        seed_everything(seed)
        with precision(args.device, args.dtype):
            rows += [dict(r, seed=seed) for r in run_seed(seed, task, args.device, args.quick,
                                                          **hyper)]
        print(f"seed {seed} done in {time.time() - t0:.0f} s", flush=True)
        if len(args.seeds) > 1:
            _write(partial, json.dumps(dict(method=method, seeds_done=args.seeds[:args.seeds.index(
                seed) + 1], rows=rows)) + "\n")
    table = write_results(method, args.task, args.seeds, config, rows, time.time() - start,
                          quick=args.quick, name=name)
    if os.path.exists(partial):
        os.remove(partial)
    print(table)
    return rows


def rows_of(arm, step, metrics, **keys):
    """Tidy rows of one measurement: {arm, **keys, step, metric, value} per metric."""
    return [dict(arm=arm, **keys, step=step, metric=m, value=round(float(v), 4))
            for m, v in metrics.items()]


def run_arms(run, arms, seed):
    """Run the arms named in `arms` (a comma-separated subset of run's keys), each a function
    returning {step: metrics}; print every step and return the tidy rows of all of them."""
    rows = []
    for arm in comma_list(arms, list(run), "arms"):
        for step, metrics in run[arm]().items():
            show(f"seed {seed} {arm:<16} step {step}", metrics)
            rows += rows_of(arm, step, metrics)
    return rows


def show(label, metrics):
    """Print one measurement on one line: 'label: test_acc 0.512  same 0.230'."""
    print(f"{label}: " + "  ".join(f"{k} {v:.3f}" for k, v in metrics.items()), flush=True)


# ---------------------------------------------------------------------------------------------
# Checkpoints cached in out/

def checkpoint_path(name, settings, seed):
    """out/<name>-seed<seed>-<key>.pt, the key a hash of every setting that shapes the model."""
    key = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
    return os.path.join(OUT, f"{name}-seed{seed}-{key}.pt")


def find_checkpoint(name, seed):
    """The newest out/<name>-seed<seed>-*.pt, or None."""
    paths = glob.glob(os.path.join(OUT, f"{name}-seed{seed}-*.pt"))
    return max(paths, key=os.path.getmtime) if paths else None


def cached(path, train, device, **meta):
    """The model saved at `path`, or train() -> model, saved there with `meta` (atomically, with
    a checksum). A dict in meta is read after training, so train() may fill it in. An unreadable
    or corrupt file is retrained with a one-line notice. Cached models are always trained in
    float32, whatever --dtype a method runs in."""
    if os.path.exists(path):
        try:
            return load(path, device)
        except CheckpointError as e:
            print(f"{e}; training it again", file=sys.stderr)
    start = time.time()
    with torch.autocast(torch.device(device).type, enabled=False):
        model = train()
    meta = dict(meta, train_seconds=round(time.time() - start, 1))
    save(model, path, **meta)
    model.meta = meta
    return model


# ---------------------------------------------------------------------------------------------
# Results files

def results_dir(quick):
    return os.path.join(OUT, "quick-results") if quick else RESULTS


# Files every method's numbers depend on; with the method's file, and the methods/ modules it
# imports, they make its code version.
CORE_SOURCES = ("model.py", "sample.py", "verify.py", "dsl.py", "common.py", "methods/sft.py")


def code_version(method):
    """A short hash of the source a method's results depend on (run_all.py reruns a result whose
    record carries another one)."""
    files = list(CORE_SOURCES) + [f"methods/{method}.py"]
    with open(os.path.join(ROOT, files[-1])) as f:
        for name in re.findall(r"^(?:from|import) (\w+)", f.read(), flags=re.M):
            rel = f"methods/{name}.py"
            if rel not in files and os.path.exists(os.path.join(ROOT, rel)):
                files.append(rel)
    h = hashlib.sha1()
    for rel in files:
        with open(os.path.join(ROOT, rel), "rb") as f:
            h.update(rel.encode() + b"\0" + f.read())
    return h.hexdigest()[:10]


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def write_results(method, task, seeds, config, rows, wall_seconds, quick=False, name=None):
    """Write results/<name>-<task>.json and .md (atomically; name: the method's unless given);
    returns the markdown table. The record also carries the code version and the command
    line that produced it."""
    base = os.path.join(results_dir(quick), f"{name or method}-{task}")
    record = {"method": method, "task": task, "seeds": list(seeds), "config": config,
              "code": code_version(method), "argv": sys.argv[1:],
              "wall_seconds": round(wall_seconds, 1), "rows": rows}
    table = markdown_table(rows)
    made_on = ", ".join(f"{k} {config[k]}" for k in ("device", "dtype", "torch", "threads")
                        if k in config)
    command = " ".join([f"python methods/{method}.py"] + sys.argv[1:])
    md = (f"# {name or method} on {task}\n\nWritten by `{command}`; mean ± std over seeds "
          f"{list(seeds)}, {wall_seconds:.0f} s wall time ({made_on}).\n\n{table}\n")
    _write(base + ".json", json.dumps(record, indent=1) + "\n")
    _write(base + ".md", md)
    return table


def mean_std(values):
    """(mean, sample std over seeds); std is 0 for a single value."""
    values = [float(v) for v in values]
    m = float(np.mean(values))
    return m, (float(np.std(values, ddof=1)) if len(values) > 1 else 0.0)


def fmt(values, signed=False):
    """'0.512 ± 0.013' (sample std), just the mean for one value, '' for none."""
    values = list(values)
    if not values:
        return ""
    m, s = mean_std(values)
    text = f"{m:+.3f}" if signed else f"{m:.3f}"
    return text if len(values) < 2 else f"{text} ± {s:.3f}"


def markdown_table(rows):
    """Pivot tidy rows: one line per (arm, extra keys, step), one column per metric."""
    key_names = []
    for r in rows:
        for k in r:
            if k not in ("metric", "value", "seed") and k not in key_names:
                key_names.append(k)
    metrics = list(dict.fromkeys(r["metric"] for r in rows))
    cells = {}
    for r in rows:
        key = tuple(r.get(k, "") for k in key_names)
        cells.setdefault(key, {}).setdefault(r["metric"], []).append(r["value"])
    lines = ["| " + " | ".join(key_names + metrics) + " |",
             "|" + "---|" * (len(key_names) + len(metrics))]
    for key, by_metric in cells.items():
        lines.append("| " + " | ".join([str(k) for k in key] +
                                       [fmt(by_metric.get(m, [])) for m in metrics]) + " |")
    return "\n".join(lines)
