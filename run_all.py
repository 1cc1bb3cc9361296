"""Rerun every method's default run for seeds 0, 1, 2, then rewrite the synthesis tables.

    python run_all.py              # everything that is missing or stale, then report.py
    python run_all.py --dry-run    # say what would run and what is current, run nothing
    python run_all.py --only spin,rest_em

A run is skipped when results/<method>-<task>.json was written by the same command (flags and
seeds) and the same code: the record's `code` field is a hash of the method's file and the
shared files (methods/common.code_version), so editing model.py marks every result stale and
editing spin.py only SPIN's. Results are written per method, so an interrupted run_all resumes
at the method it was running (that method starts over; the base models and the weak-to-strong
ladder are cached in out/ and are not retrained).

Every run gets one torch thread (OMP_NUM_THREADS=1, --threads to change it). Not for speed
(the models are so small that one thread is about as fast, and two jobs can then share a 2-core
CPU) but for the numbers: a float sum split over a different number of threads rounds
differently, and a fine-tuning run drifts by up to a point. With one thread, the same seed gives the
same numbers on machines with the same torch build and CPU instruction set.

On this 2-core CPU a full run took about 68 minutes: 52 for everything but weak-to-strong and 16
for it (the 52 while another one-thread job shared the CPU, the 16 alone in an hour when this
machine ran about half as fast as usual). A fresh clone adds about
12 minutes to train the six base models and 4 for the weak-to-strong ladder. The order puts the
base models and their pass@k ceiling first, since every other method starts from them.
"""
import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(ROOT, "methods"))

import common  # noqa: E402

# (method, task): each method on its default task; the base models and their ceiling first
RUNS = [("sft", "arith"), ("sft", "code"), ("ceiling", "arith"), ("ceiling", "code"),
        ("self_correct", "arith"), ("reflexion", "code"), ("rerank", "arith"),
        ("rest_em", "arith"), ("rest", "code"), ("spin", "arith"), ("weak_to_strong", "arith")]


def argv_for(task, seeds):
    return ["--task", task, "--seeds", seeds]


def default_run(argv):
    """True when a recorded command line set nothing but --task and --seeds (a default run)."""
    rest = list(argv or [])
    for flag in ("--task", "--seeds"):
        if flag in rest:
            i = rest.index(flag)
            del rest[i:i + 2]
    return argv is not None and not rest


def status(method, task, seeds):
    """('current' | 'missing' | 'stale: <why>', last wall seconds or None)."""
    path = os.path.join(common.results_dir(False), f"{method}-{task}.json")
    if not os.path.exists(path):
        return "missing", None
    try:
        with open(path) as f:
            rec = json.load(f)
    except (OSError, json.JSONDecodeError):
        return "stale: unreadable", None
    why = [reason for reason, bad in (
        ("code changed", rec.get("code") != common.code_version(method)),
        ("not a default run", not default_run(rec.get("argv")) or rec.get("task") != task),
        ("other seeds", rec.get("seeds") != [int(s) for s in seeds.split(",")])) if bad]
    return ("stale: " + ", ".join(why) if why else "current"), rec.get("wall_seconds")


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="0,1,2", help="seeds of every run (default 0,1,2)")
    p.add_argument("--only", default="", help="comma-separated methods to consider (default all)")
    p.add_argument("--force", action="store_true", help="rerun even the current results")
    p.add_argument("--dry-run", action="store_true", help="show what would run, run nothing")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads per run (default 1: numbers that do not depend on the core count)")
    args = p.parse_args()
    methods = list(dict.fromkeys(m for m, _ in RUNS))
    only = [m.strip() for m in args.only.split(",") if m.strip()]
    unknown = [m for m in only if m not in methods]
    if unknown:
        p.error(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(methods)}")
    try:
        if not all(int(s) >= 0 for s in args.seeds.split(",")):
            raise ValueError
    except ValueError:
        p.error(f"--seeds must be comma-separated non-negative integers, got {args.seeds!r}")

    if args.threads < 1:
        p.error(f"--threads must be >= 1, got {args.threads}")
    plan = [(m, t) for m, t in RUNS if not only or m in only]
    todo = []
    for m, t in plan:
        state, last = status(m, t, args.seeds)
        run = args.force or state != "current"
        todo += [(m, t)] if run else []
        took = f", last run {last / 60:.1f} min" if last else ""
        print(f"  {m:<15} {t:<6} {'-> run' if run else '(skip)':<7} {state}{took}")
    if args.dry_run:
        return

    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    start, failed = time.time(), []
    for i, (m, t) in enumerate(todo):
        cmd = [sys.executable, os.path.join("methods", f"{m}.py")] + argv_for(t, args.seeds)
        print(f"\n=== [{i + 1}/{len(todo)}] {' '.join(cmd[1:])}   "
              f"({(time.time() - start) / 60:.1f} min so far)", flush=True)
        t0 = time.time()
        try:
            code = subprocess.call(cmd, cwd=ROOT, env=env)
        except KeyboardInterrupt:
            sys.exit(f"\ninterrupted during {m} {t}; finished results are kept, "
                     "rerun `python run_all.py` to resume")
        print(f"=== {m} {t}: {'done' if code == 0 else f'FAILED (exit {code})'} "
              f"in {(time.time() - t0) / 60:.1f} min", flush=True)
        if code != 0:
            failed.append(f"{m} {t}")
    print(f"\nall runs finished in {(time.time() - start) / 60:.1f} min")
    subprocess.call([sys.executable, "report.py"], cwd=ROOT)
    if failed:
        sys.exit(f"failed: {', '.join(failed)} (see the output above)")


if __name__ == "__main__":
    main()
