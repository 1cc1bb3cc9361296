"""Rerun every method's default run for seeds 0, 1, 2, then rewrite the synthesis tables (a
default run sets no flag but --task, --seeds and --device, except the few in FLAGS_OF below).

    python run_all.py              # everything that is missing or stale, then report.py
    python run_all.py --dry-run    # say what would run and what is current, run nothing
    python run_all.py --only spin,rest_em
    python run_all.py --jobs 2     # two runs at a time (one per core), logs in out/logs/

A run is skipped when results/<method>-<task>.json was written by the same command (flags and
seeds), the same code, and on the same kind of machine: the record's `code` field is a hash of
the method's file and the shared files (common.code_version), so editing model.py marks every
result stale and editing spin.py only SPIN's; and a result made on another device, in another
dtype or with another number of threads is stale too (its numbers differ in the last digits, or
more). Each method writes its results file only when all its seeds are done, so an interrupted
run_all leaves every results file complete and resumes at the method it was running (that method
starts over; base models are cached in out/ and are not retrained).

Every run gets one torch thread (OMP_NUM_THREADS=1, --threads to change it) and the CPU
(--device to change it). Not for speed (the models are so small that one thread is about as
fast, and two jobs can then share a 2-core CPU) but for the numbers: a float sum split over a
different number of threads, or done by another device, rounds differently, and a fine-tuning
run drifts by up to a point. With one thread on the CPU, the same seed gives the same numbers on
machines with the same torch build and CPU instruction set.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import common

# (method, task): each method on its default task; the base models and their ceiling first
RUNS = [("sft", "arith"), ("sft", "code"), ("ceiling", "arith"), ("ceiling", "code"),
        ("self_correct", "arith"), ("reflexion", "code"), ("rerank", "arith"), ("rerank", "code"),
        ("rest_em", "arith"), ("rest", "code"), ("spin", "arith"), ("grpo", "arith"),
        ("grpo", "code"), ("weak_to_strong", "arith"), ("easy_to_hard", "add"),
        ("rest_em", "code"), ("rest_em_hard", "code")]
# The runs whose command line sets more than --task, --seeds and --device. ReST-EM on code: its
# file's defaults are sized for arith (4,000 prompts, M-steps of up to 3,000 steps); here half
# the pool, 300 test problems, M-steps on the code base's own recipe (lr 3e-3, checked every 150
# steps, at most 1,200) and no rest_em_vote (its vote compares program text, which is not a
# program's behaviour).
FLAGS_OF = {("rest_em", "code"): ["--pool", "2000", "--test_problems", "300", "--steps", "1200",
                                  "--eval_every", "150", "--lr", "3e-3", "--arms",
                                  "sft_more,sft_gold_pool,rest_em,self_train"]}


def argv_for(method, task, seeds, device):
    return ["--task", task, "--seeds", seeds, "--device", device] + FLAGS_OF.get((method, task), [])


def default_run(argv, flags=()):
    """True when a recorded command line set nothing but --task, --seeds and --device (and
    --no_progress, which changes no number) besides `flags`, the run's FLAGS_OF."""
    rest = [a for a in argv or [] if a != "--no_progress"]
    for flag in ("--task", "--seeds", "--device"):
        if flag in rest:
            i = rest.index(flag)
            del rest[i:i + 2]
    return argv is not None and rest == list(flags)


def status(method, task, seeds, device, threads):
    """('current' | 'missing' | 'stale: <why>', last wall seconds or None)."""
    path = os.path.join(common.RESULTS, f"{method}-{task}.json")
    if not os.path.exists(path):
        return "missing", None
    try:
        with open(path) as f:
            rec = json.load(f)
    except (OSError, json.JSONDecodeError):
        return "stale: unreadable", None
    made = rec.get("config", {})
    why = [reason for reason, bad in (
        ("code changed", rec.get("code") != common.code_version(method)),
        ("not a default run", rec.get("task") != task
         or not default_run(rec.get("argv"), FLAGS_OF.get((method, task), ()))),
        ("other seeds", rec.get("seeds") != seeds),
        (f"made on {made.get('device')}", made.get("device") != device),
        (f"made in {made.get('dtype')}", made.get("dtype") != "float32"),
        (f"made with {made.get('threads')} threads", made.get("threads") != threads)) if bad]
    return ("stale: " + ", ".join(why) if why else "current"), rec.get("wall_seconds")


def run_phase(runs, args, env, start):
    """Run `runs`, args.jobs at a time (with more than one, each run's output goes to
    out/logs/<method>-<task>.log); return the ones that failed."""
    waiting, running, failed = list(runs), [], []
    os.makedirs(os.path.join(common.OUT, "logs"), exist_ok=True)
    while waiting or running:
        while waiting and len(running) < args.jobs:
            m, t = waiting.pop(0)
            cmd = [sys.executable, os.path.join("methods", f"{m}.py")] + argv_for(
                m, t, args.seeds, args.device)
            path = os.path.join(common.OUT, "logs", f"{m}-{t}.log")
            log = None if args.jobs == 1 else open(path, "w")
            print(f"\n=== start {' '.join(cmd[1:])}   ({(time.time() - start) / 60:.1f} min so far)"
                  + (f", log in out/logs/{m}-{t}.log" if log else ""), flush=True)
            proc = subprocess.Popen(cmd, cwd=common.ROOT, env=env, stdout=log,
                                    stderr=subprocess.STDOUT if log else None)
            running.append((m, t, time.time(), log, proc))
        time.sleep(1)
        for job in [j for j in running if j[4].poll() is not None]:
            m, t, t0, log, proc = job
            running.remove(job)
            if log:
                log.close()
            done = "done" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
            print(f"=== {m} {t}: {done} in {(time.time() - t0) / 60:.1f} min", flush=True)
            if proc.returncode != 0:
                failed.append(f"{m} {t}")
    return failed


def main():
    p = common.Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="0,1,2", help="seeds of every run (default 0,1,2)")
    p.add_argument("--only", default="", help="comma-separated methods to consider (default all)")
    p.add_argument("--force", action="store_true", help="rerun even the current results")
    p.add_argument("--dry-run", action="store_true", help="show what would run, run nothing")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "mps"],
                   help="device of every run (default cpu: the device results/ was made on)")
    p.add_argument("--jobs", type=int, default=1,
                   help="runs at a time (default 1; 2 on a 2-core CPU: the base models are "
                        "trained first, then the methods share them)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads per run (default 1: numbers that do not depend on the "
                        "core count)")
    args = p.parse_args()
    methods = list(dict.fromkeys(m for m, _ in RUNS))
    only = [m.strip() for m in args.only.split(",") if m.strip()]
    unknown = [m for m in only if m not in methods]
    if unknown:
        p.error(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(methods)}")
    try:
        seeds = common.parse_seeds(args.seeds)
    except ValueError as e:
        p.error(str(e))
    if args.threads < 1 or args.jobs < 1:
        p.error(f"--threads and --jobs must be >= 1, got {args.threads} and {args.jobs}")
    bad = common.writable(common.RESULTS, common.OUT)
    if bad:
        p.error(f"cannot write to {bad}: results and checkpoints go there")

    plan = [(m, t) for m, t in RUNS if not only or m in only]
    todo = []
    for m, t in plan:
        state, last = status(m, t, seeds, args.device, args.threads)
        run = args.force or state != "current"
        todo += [(m, t)] if run else []
        took = f", last run {last / 60:.1f} min" if last else ""
        print(f"  {m:<15} {t:<6} {'-> run' if run else '(skip)':<7} {state}{took}")
    if args.dry_run:
        return

    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    start, failed = time.time(), []
    # the sft runs train the base models every other method loads: they go first, on their own
    for phase in ([r for r in todo if r[0] == "sft"], [r for r in todo if r[0] != "sft"]):
        try:
            failed += run_phase(phase, args, env, start)
        except KeyboardInterrupt:
            sys.exit("\ninterrupted; every results file is complete (an interrupted method keeps "
                     "its last full run); rerun `python run_all.py` to resume")
    print(f"\nall runs finished in {(time.time() - start) / 60:.1f} min")
    subprocess.call([sys.executable, "report.py"], cwd=common.ROOT)
    if failed:
        sys.exit(f"failed: {', '.join(failed)} (see the output above)")


if __name__ == "__main__":
    main()
