"""What every method script shares: the common flags, seeding, and the results files.

Results format (DESIGN.md): one tidy row per (arm, step, metric, seed), written to
results/<method>-<task>.json, and a markdown table of mean ± std over seeds beside it. Rows may
carry extra keys (weak-to-strong's `weak` and `strong`); they become columns of the table.
`--quick` runs write to out/quick-results/ instead, so a smoke test never overwrites real results.
"""
import argparse
import hashlib
import json
import os
import random
import sys

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # `python methods/x.py` puts methods/ on the path, not the repo root
    sys.path.insert(0, ROOT)

from model import pick_device  # noqa: E402
from verify import TASKS  # noqa: E402

OUT = os.path.join(ROOT, "out")


def parser_for(doc, default_task):
    """An ArgumentParser with the flags every script takes (DESIGN.md, Command line)."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default=default_task, help=f"task: {', '.join(TASKS)} (default {default_task})")
    p.add_argument("--seeds", default="0", help="comma-separated seeds, e.g. 0,1,2 (default 0)")
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, mps")
    p.add_argument("--quick", action="store_true", help="tiny budget, same code path (for tests)")
    return p


def check_args(parser, args):
    """Validate the common flags; returns (seeds, device). Bad input -> one line, exit 2."""
    if args.task not in TASKS:
        parser.error(f"unknown task {args.task!r}; choose from {', '.join(TASKS)}")
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip() != ""]
    except ValueError:
        parser.error(f"--seeds must be comma-separated integers, got {args.seeds!r}")
    if not seeds or any(s < 0 for s in seeds):
        parser.error("--seeds needs at least one non-negative integer")
    try:
        device = pick_device(args.device)
    except ValueError as e:
        parser.error(str(e))
    return seeds, device


def positive(parser, **values):
    """parser.error unless every named value is > 0."""
    for name, v in values.items():
        if v is None or v <= 0:
            parser.error(f"--{name} must be > 0, got {v}")


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def results_dir(quick):
    return os.path.join(OUT, "quick-results") if quick else os.path.join(ROOT, "results")


# Files every method's numbers depend on; with the method's own file they make its code version.
CORE_SOURCES = ("model.py", "sample.py", "verify.py", "methods/common.py", "methods/sft.py")


def code_version(method):
    """A short hash of the source a method's results depend on (run_all.py skips a run whose
    results carry the current one). Changing any of these files marks the results stale."""
    h = hashlib.sha1()
    for rel in CORE_SOURCES + (f"methods/{method}.py",):
        with open(os.path.join(ROOT, rel), "rb") as f:
            h.update(rel.encode() + b"\0" + f.read())
    return h.hexdigest()[:10]


def write_results(method, task, seeds, config, rows, wall_seconds, quick=False):
    """Write results/<method>-<task>.json and .md (atomically); returns the markdown table.
    The record also carries the code version and the command-line flags that produced it."""
    d = results_dir(quick)
    os.makedirs(d, exist_ok=True)
    base = os.path.join(d, f"{method}-{task}")
    record = {"method": method, "task": task, "seeds": list(seeds), "config": config,
              "code": code_version(method), "argv": sys.argv[1:],
              "wall_seconds": round(wall_seconds, 1), "rows": rows}
    table = markdown_table(rows)
    md = (f"# {method} on {task}\n\nWritten by `python methods/{method}.py --task {task} "
          f"--seeds {','.join(map(str, seeds))}`; mean ± std over seeds {list(seeds)}, "
          f"{wall_seconds:.0f} s wall time.\n\n{table}\n")
    for path, text in ((base + ".json", json.dumps(record, indent=1) + "\n"), (base + ".md", md)):
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    return table


def mean_std(values):
    """'0.512 ± 0.013' (sample std over seeds), or just the mean for one value."""
    m = float(np.mean(values))
    if len(values) < 2:
        return f"{m:.3f}"
    return f"{m:.3f} ± {float(np.std(values, ddof=1)):.3f}"


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
        vals = [mean_std(by_metric[m]) if m in by_metric else "" for m in metrics]
        lines.append("| " + " | ".join([str(k) for k in key] + vals) + " |")
    return "\n".join(lines)
