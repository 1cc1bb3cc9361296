"""figures.py: the seed statistics (no matplotlib needed), the message when matplotlib is missing,
and, where matplotlib is installed, one PNG per figure from small hand-made results files."""
import json
import math
import sys

import pytest

import figures
import plots
from conftest import run_script


def test_by_step_mean_and_sample_std():
    rows = [dict(arm="a", metric="m", step=1, seed=0, value=0.2),
            dict(arm="a", metric="m", step=1, seed=1, value=0.4),
            dict(arm="a", metric="m", step=0, seed=0, value=0.1),   # one seed: std 0
            dict(arm="b", metric="m", step=1, seed=0, value=9.0),   # other arm: ignored
            dict(arm="a", metric="x", step=1, seed=0, value=9.0)]   # other metric: ignored
    steps, means, stds = plots.by_step(rows, "a", "m")
    assert steps == [0, 1]
    assert means == pytest.approx([0.1, 0.3])
    assert stds == pytest.approx([0.0, math.sqrt(0.02)])   # ddof=1: 0.1414...
    assert plots.final(rows, "a", "m") == (pytest.approx(0.3), 2)
    assert plots.final(rows, "c", "m") is None


def test_by_step_extra_keys():
    rows = [dict(arm="w2s", weak="S", strong="M", metric="pgr", step=5, seed=0, value=0.5),
            dict(arm="w2s", weak="S", strong="L", metric="pgr", step=5, seed=0, value=-1.0)]
    assert plots.by_step(rows, "w2s", "pgr", weak="S", strong="L")[1] == [-1.0]


def test_change_from_start_per_seed():
    rows = [dict(arm="a", metric="m", step=0, seed=0, value=0.5),
            dict(arm="a", metric="m", step=1, seed=0, value=0.4),
            dict(arm="a", metric="m", step=0, seed=1, value=0.3),
            dict(arm="a", metric="m", step=1, seed=1, value=0.25),
            dict(arm="a", metric="m", step=1, seed=2, value=0.9),    # no start: dropped
            dict(arm="a", metric="x", step=1, seed=0, value=9.0)]    # other metric: ignored
    steps, means, stds = plots.by_step(plots.change_from_start(rows, "m", ["a"]), "a", "m")
    assert steps == [0, 1]
    assert means == pytest.approx([0.0, -0.075])                  # -0.1 and -0.05
    assert stds == pytest.approx([0.0, 0.0354], abs=1e-4)         # ddof=1: 0.025 * sqrt(2)
    # another arm's start (rerank: every curve against pass@1 at N = 1)
    rows += [dict(arm="b", metric="m", step=4, seed=0, value=0.7),
             dict(arm="b", metric="m", step=4, seed=1, value=0.3)]
    changed = plots.change_from_start(rows, "m", ["b"], start_arm="a", start_step=1)
    assert plots.by_step(changed, "b", "m")[:2] == ([4], [pytest.approx(0.175)])   # .3, .05
    assert plots.starts(rows, "a", "m") == {0: 0.5, 1: 0.3}


def test_change_lines_draws_changes_a_zero_line_and_returns_the_mean_start():
    pytest.importorskip("matplotlib")
    rows = [dict(arm="a", metric="m", step=s, seed=seed, value=v)
            for seed, values in enumerate([(0.5, 0.4), (0.3, 0.25)]) for s, v in enumerate(values)]
    fig, (ax,) = plots.matplotlib_figure()()
    assert plots.change_lines(ax, rows, "m", ["a"]) == pytest.approx(0.4)
    curve, zero = ax.lines
    assert list(curve.get_ydata()) == pytest.approx([0.0, -0.075])
    assert list(zero.get_ydata()) == [0, 0] and zero.get_linestyle() == "--"
    assert ax.get_ylabel().startswith("change in test accuracy")


def test_draw_all_without_matplotlib_raises_clear_error(monkeypatch, tmp_path):
    for name in [m for m in sys.modules if m.split(".")[0] == "matplotlib"] + ["matplotlib"]:
        monkeypatch.setitem(sys.modules, name, None)   # import matplotlib(.x) now fails,
        # even where an earlier test already imported it
    with pytest.raises(ImportError, match="pip install matplotlib"):
        figures.draw_all(str(tmp_path), str(tmp_path / "out"))


def test_cli_without_matplotlib_prints_one_line(tmp_path):
    args = ["--results", str(tmp_path), "--out", str(tmp_path / "o")]
    code = ("import sys; sys.modules['matplotlib'] = None; import figures; "
            f"sys.exit(figures.main({args!r}))")
    out = run_script("-c", code, timeout=60)
    assert out.returncode == 1
    assert out.stderr.strip() == figures.NEED_MATPLOTLIB
    assert out.stdout == ""


def rows_for(arms, metrics, steps, seeds=(0, 1), **extra):
    """One row per (arm, metric, step, seed), values that differ by all four."""
    return [dict(arm=a, metric=m, step=s, seed=seed, value=0.1 + 0.01 * (i + s + seed), **extra)
            for i, a in enumerate(arms) for m in metrics for s in steps for seed in seeds]


def tiny_results():
    w2s = (rows_for(["weak"], ["test_acc"], [10], weak="S", strong="-")
           + rows_for(["ceiling"], ["test_acc"], [10], weak="-", strong="M")
           + rows_for(["w2s_naive", "w2s_conf"], ["test_acc", "pgr"], [0, 10], weak="S", strong="M")
           + rows_for(["w2s_naive"], ["test_acc"], [0, 10], weak="M", strong="L"))  # no pgr: blank
    return {
        "reflexion-code": rows_for(["oracle_feedback", "resample", "self_check", "no_feedback"],
                                   ["solved"], [0, 1, 2])
        + rows_for(["ceiling"], ["pass@32"], [2]),
        "self_correct-arith": rows_for(["intrinsic"], ["c2c", "c2i", "i2c", "i2i"], [1, 2])
        + rows_for(["intrinsic", "oracle_stop", "majority_vote"], ["acc"], [0, 1, 2]),
        "weak_to_strong-arith": w2s,
        "rest-code": rows_for(["base"], ["test_reward", "proxy_reward"], [0], grow=0)
        + rows_for(["rest_g1", "rest_proxy_g1"], ["test_reward", "proxy_reward"], [1, 2], grow=1)
        + rows_for(["rest_g2", "rest_proxy_g2"], ["test_reward", "proxy_reward"], [3, 4], grow=2),
        "rest_em-arith": rows_for(["base"], ["test_acc", "pass@16"], [0])
        + rows_for(["rest_em", "self_train"], ["test_acc", "label_acc"], [1, 2])
        + rows_for(["sft_gold_pool"], ["test_acc"], [1]),
        "rest_em_hard-code": rows_for(["base"], ["test_acc_long", "test_acc_short",
                                                 "long_answers"], [0])
        + rows_for(["rest_em"], ["test_acc_long", "test_acc_short", "long_answers"], [1, 2])
        + rows_for(["sft_more"], ["test_acc_long", "test_acc_short", "long_answers"], [1]),
        "sft-arith": rows_for(["base"], ["test_acc"], [0])
        + rows_for(["n_gold_250", "n_gold_1000"], ["test_acc"], [0])
        + rows_for(["sft_more", "sft_gold_pool"], ["test_acc"], [1]),
        "grpo-arith": rows_for(["base"], ["test_acc", "pass@1", "pass@4"], [0])
        + rows_for(["grpo"], ["test_acc", "samples"], [2, 4])
        + rows_for(["grpo"], ["pass@1", "pass@4"], [4])
        + rows_for(["rest_em"], ["test_acc", "samples"], [1, 2])
        + rows_for(["rest_em"], ["pass@1", "pass@4"], [2]),
        "rerank-arith": rows_for(["pass@1", "maj", "rr_all", "weighted", "pass@N"], ["test_acc"],
                                 [1, 4, 16]),
        "spin-arith": rows_for(["spin", "spin_nll", "sft_more"],
                               ["test_acc", "gold_nll", "reward_acc", "same"], [0, 1, 2]),
        "easy_to_hard-add": rows_for(["base"], ["solved_len", "acc@1", "acc@2", "acc@3"], [0])
        + rows_for(["filtered", "unfiltered"],
                   ["length", "solved_len", "acc@1", "acc@2", "acc@3"], [1, 2]),
    }


def test_draw_all_writes_every_png(tmp_path):
    pytest.importorskip("matplotlib")
    results = tmp_path / "results"
    results.mkdir()
    for name, rows in tiny_results().items():
        method, task = name.split("-")
        (results / f"{name}.json").write_text(json.dumps(dict(
            method=method, task=task, seeds=[0, 1], config={}, wall_seconds=1.0, rows=rows)))
    out = tmp_path / "figs"
    written = figures.draw_all(str(results), str(out))
    names = ["reflexion_trials.png", "self_correct_transitions.png", "w2s_pgr.png",
             "w2s_curves.png", "rest_steps.png", "rest_em_iterations.png", "rest_em_hard.png",
             "rerank_curves_arith.png",
             "spin_iterations.png", "sft_curve_arith.png", "grpo_passk.png",
             "easy_to_hard_lengths.png"]
    assert sorted(written) == sorted(str(out / n) for n in names)
    for path in written:
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_draw_all_skips_missing_files(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    assert figures.draw_all(str(tmp_path), str(tmp_path / "figs")) == []
    said = capsys.readouterr().out
    assert f"skip spin: {tmp_path / 'spin-arith.json'} missing" in said
    assert said.count("skip ") == len(figures.FIGURES)
