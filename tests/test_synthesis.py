"""The synthesis tools: methods/ceiling.py end to end, report.py's tables on hand-made results,
run_all.py's notion of a current result."""
import json
import os

import pytest

import common
import report
import run_all
from conftest import run_script


def test_ceiling_quick_writes_a_rising_pass_at_k_curve():
    r = run_script("methods/ceiling.py", "--quick", "--seeds", "0,1", timeout=180)
    assert r.returncode == 0, r.stderr
    with open(os.path.join(common.OUT, "quick-results", "ceiling-arith.json")) as f:
        rec = json.load(f)
    assert rec["code"] == common.code_version("ceiling") and rec["seeds"] == [0, 1]
    for seed in (0, 1):
        curve = [report.values(rec, "base", f"pass@{k}", step=0, n_test=12)[seed]
                 for k in rec["config"]["ks"]]
        assert all(0 <= a <= b <= 1 for a, b in zip(curve, curve[1:]))  # pass@k never falls in k


def write(d, method, task, rows, config, seeds=(0, 1), wall=20.0):
    with open(os.path.join(d, f"{method}-{task}.json"), "w") as f:
        json.dump(dict(method=method, task=task, seeds=list(seeds), config=config,
                       wall_seconds=wall, rows=rows), f)


def test_synthesis_table_on_hand_made_results(tmp_path):
    acc = {(0, 0): 0.5, (0, 1): 0.3, (2, 0): 0.4, (2, 1): 0.2}   # (step, seed) -> accuracy
    rows = [dict(arm="intrinsic", metric="acc", step=st, seed=sd, value=v)
            for (st, sd), v in acc.items()]
    rows.append(dict(arm="intrinsic", metric="acc", step=1, seed=0, value=0.9))  # not the last
    write(tmp_path, "self_correct", "arith", rows,
          dict(problems=10, rounds=2, train_problems=5, train_samples=2))
    ceil = [dict(arm="base", n_test=10, step=0, metric=m, seed=sd, value=v)
            for m, sd, v in (("greedy_acc", 0, 0.5), ("greedy_acc", 1, 0.3),
                             ("pass@3", 0, 0.7), ("pass@3", 1, 0.6))]
    write(tmp_path, "ceiling", "arith", ceil, dict(problems=10))
    table = report.synthesis_table("arith", results=str(tmp_path))
    line = next(l for l in table.splitlines() if "intrinsic" in l)
    cells = [c.strip() for c in line.strip("|").split("|")]
    # base greedy, before, after, gain (-0.1 on both seeds), k = 1 + rounds, pass@3,
    # after - pass@3 (-0.3 and -0.4), samples drawn = 10 test problems * 3 attempts + the
    # reviewer's data, 5 training problems * (1 greedy + 2 samples), seconds per seed
    assert cells[1:] == ["0.400 ± 0.141", "0.400 ± 0.141", "0.300 ± 0.141", "-0.100 ± 0.000",
                         "3", "0.650 ± 0.071", "-0.350 ± 0.071", "45", "10"]
    assert report.synthesis_table("code", results=str(tmp_path)) == ""


def test_e2h_table_on_hand_made_results(tmp_path):
    rows = [dict(arm="base", step=0, metric="solved_len", seed=s, value=3.0) for s in (0, 1)]
    for step, (solved, acc) in enumerate([((4, 4), 0.9), ((5, 4), 0.5)], start=1):
        for seed in (0, 1):
            rows += [dict(arm="filtered", step=step, seed=seed, metric=m, value=v) for m, v in
                     (("length", 3 + step), ("kept", 100.0), ("label_acc", acc),
                      ("solved_len", float(solved[seed])))]
    write(tmp_path, "easy_to_hard", "add", rows, dict(d0=3))
    lines = report.e2h_table(str(tmp_path)).splitlines()
    assert lines[2] == "| base | 0 | 1-3 (gold) | | | 3.000 ± 0.000 | 3 3 |"
    assert lines[4] == ("| filtered | 2 | 5 | 100.000 ± 0.000 | 0.500 ± 0.000 | "
                        "4.500 ± 0.707 | 5 4 |")


def test_hard_table_on_hand_made_results(tmp_path):
    rows = [dict(arm="base", step=0, metric=m, seed=s, value=v) for s in (0, 1)
            for m, v in (("test_acc", 0.1), ("test_acc_long", 0.0 + 0.1 * s))]
    rows += [dict(arm="rest_em", step=1, metric=m, seed=s, value=v) for s in (0, 1)
             for m, v in (("test_acc", 0.2), ("kept", 50.0 + 10 * s))]
    write(tmp_path, "rest_em_hard", "code", rows, {})
    lines = report.hard_table(str(tmp_path)).splitlines()
    assert lines[0].startswith("| arm | iteration | test_acc | test_acc_long |")
    assert lines[2] == "| base | 0 | 0.100 ± 0.000 | 0.050 ± 0.071 |  |  |  |  |  |"
    assert lines[3] == "| rest_em | 1 | 0.200 ± 0.000 |  |  |  |  | 55.000 ± 7.071 |  |"
    assert report.hard_table(str(tmp_path / "none")) == ""


def test_replace_block_keeps_the_hand_written_text(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text(f"intro\n{report.BEGIN}\nold table\n{report.END}\noutro\n")
    report.replace_block(str(doc), "new table")
    assert doc.read_text() == f"intro\n{report.BEGIN}\nnew table\n{report.END}\noutro\n"
    (tmp_path / "bare.md").write_text("no markers\n")
    with pytest.raises(SystemExit, match="no"):
        report.replace_block(str(tmp_path / "bare.md"), "x")


def test_run_all_counts_only_default_runs_of_the_current_code():
    assert run_all.default_run(["--task", "arith", "--seeds", "0,1,2"])
    assert run_all.default_run(["--seeds", "0,1,2"])
    assert run_all.default_run(["--task", "code", "--seeds", "0,1,2", "--device", "cpu"])
    assert not run_all.default_run(["--seeds", "0,1,2", "--steps", "10"])
    assert not run_all.default_run(["--quick"])
    assert not run_all.default_run(None)   # results written before the field existed
    flags = run_all.FLAGS_OF[("rest_em", "code")]  # a run whose defaults live in run_all
    assert run_all.default_run(run_all.argv_for("rest_em", "code", "0,1,2", "cpu"), flags)
    assert not run_all.default_run(["--task", "code", "--seeds", "0,1,2"], flags)
    assert not run_all.default_run(["--seeds", "0,1,2"] + flags + ["--pool", "10"], flags)


def test_run_all_dry_run_lists_every_method_and_runs_nothing():
    r = run_script("run_all.py", "--dry-run", timeout=60)
    assert r.returncode == 0, r.stderr
    for method, _ in run_all.RUNS:
        assert method in r.stdout
    bad = run_script("run_all.py", "--only", "nope", timeout=60)
    assert bad.returncode == 2 and "unknown method" in bad.stderr


def test_ceiling_and_w2s_tables_on_hand_made_results(tmp_path):
    ceil = [dict(arm="base", n_test=4, step=0, metric=m, seed=sd, value=v)
            for m, sd, v in (("greedy_acc", 0, 0.25), ("greedy_acc", 1, 0.75), ("pass@1", 0, 0.2),
                             ("pass@1", 1, 0.4), ("pass@4", 0, 0.5), ("pass@4", 1, 1.0),
                             ("pass@16", 0, 0.5), ("pass@16", 1, 1.0), ("pass@64", 0, 1.0),
                             ("pass@64", 1, 1.0))]
    write(tmp_path, "ceiling", "arith", ceil, dict(problems=4))
    assert report.ceiling_table(str(tmp_path)).splitlines()[2] == (
        "| arith | 0.500 ± 0.354 | 0.300 ± 0.141 | 0.750 ± 0.354 | 0.750 ± 0.354 | 1.000 ± 0.000 |")

    def r(arm, metric, value, seed, weak="-", strong="-", step=10):
        return dict(arm=arm, weak=weak, strong=strong, step=step, metric=metric, value=value,
                    seed=seed)
    rows = [r("weak", "test_acc", 0.5, 0, weak="S"), r("ceiling", "test_acc", 0.9, 0, strong="M"),
            r("w2s_naive", "test_acc", 0.1, 0, "S", "M", step=0),   # an early step: not reported
            r("w2s_naive", "test_acc", 0.7, 0, "S", "M"), r("w2s_naive", "pgr", 0.5, 0, "S", "M"),
            r("w2s_conf", "test_acc", 0.8, 0, "S", "M"), r("w2s_conf", "pgr", 0.75, 0, "S", "M")]
    write(tmp_path, "weak_to_strong", "arith", rows, {}, seeds=(0,))
    line = report.w2s_table(str(tmp_path)).splitlines()[2]
    # weak, naive, conf, boot and control (not run: empty), ceiling, PGR naive, conf, boot
    assert line == "| S -> M | 0.500 | 0.700 | 0.800 |  |  | 0.900 | +0.500 | +0.750 |  |"
