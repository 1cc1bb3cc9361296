"""Figures of the results: one PNG per phenomenon, drawn from results/*.json.

What it draws (each only if its results file exists; otherwise it prints "skip ..."):
  reflexion_trials.png          reflexion-code: share of problems solved after each trial, per
                                arm, against the base model's pass@32 (the ceiling)
  self_correct_transitions.png  self_correct-arith: how each review round changes the answers
                                (right->right, right->wrong, wrong->right, wrong->wrong), and
                                accuracy per round for intrinsic, oracle_stop, majority_vote
  w2s_pgr.png                   weak_to_strong-arith: performance gap recovered (PGR) at the final
                                step, one heatmap per arm (rows: weak teacher, columns: student)
  w2s_curves.png                weak_to_strong-arith: student test accuracy during training, per
                                (teacher, student) pair, against the teacher and the ceiling
  rest_em_iterations.png        rest_em-arith: test_acc, train_acc and pass@16 per iteration
  rest_steps.png                rest-code: true test reward and learned (proxy) reward per
                                Improve step, for ReST scored by the oracle or by the proxy
  rerank_curves.png             rerank-arith: test accuracy against N samples per problem
  spin_iterations.png           spin-arith: test accuracy per iteration, and the held-out SPIN
                                loss against log 2

Lines are the mean over seeds; the shaded band is +- one sample standard deviation over seeds.
On arith the seeds' base models differ far more than the methods change them, so its accuracy
panels (self_correct, rest_em, rerank, spin) show each seed's change from its own start (step 0,
the base, or pass@1 for rerank), then mean +- std of those changes; the title gives the average
start.

Run:
  pip install matplotlib        # an optional extra: not in requirements.txt, not needed to train
  python figures.py             # reads results/, writes tutorials/figures/*.png
  python figures.py --results results --out /tmp/figs

In Python: `from figures import draw_all; draw_all("results", "tutorials/figures")` returns the
list of PNG paths it wrote. matplotlib is imported only when drawing starts, so this file can be
imported (and its helpers tested) without it.
"""
import argparse
import json
import math
import os
import re
import statistics
import sys

from common import mean_std

NEED_MATPLOTLIB = "figures need matplotlib: pip install matplotlib"
SIZE = (6, 4)   # inches, for a one-panel figure; panels of wider figures are about as large
DPI = 110


# ---------------------------------------------------------------------------------------------
# Reading rows: mean and std over seeds
# ---------------------------------------------------------------------------------------------

def matching(rows, arm, metric, **keys):
    """The rows of one (arm, metric), narrowed on extra keys (weak_to_strong: weak="S")."""
    return [r for r in rows if r["arm"] == arm and r["metric"] == metric
            and all(r.get(k) == v for k, v in keys.items())]


def by_step(rows, arm, metric, **keys):
    """(steps, means, stds) of one (arm, metric) over seeds, steps ascending.

    `keys` narrows further on the extra keys of a row (weak_to_strong: weak="S", strong="M").
    std is the sample std (ddof=1), as in the results' markdown tables; 0 for a single seed.
    """
    values = {}
    for r in matching(rows, arm, metric, **keys):
        values.setdefault(r.get("step", 0), []).append(r["value"])
    steps = sorted(values)
    stats = [mean_std(values[s]) for s in steps]
    return steps, [m for m, _ in stats], [s for _, s in stats]


def final(rows, arm, metric, **keys):
    """(mean, number of seeds) of (arm, metric) at its largest step, or None without rows."""
    steps, means, _ = by_step(rows, arm, metric, **keys)
    if not steps:
        return None
    seeds = sum(r.get("step", 0) == steps[-1] for r in matching(rows, arm, metric, **keys))
    return means[-1], seeds


def starting_from(rows, base_arm, arms):
    """rows, plus base_arm's step-0 rows copied into each of `arms`.

    Every arm starts from the same base model, but the methods write the base once (as its own
    arm, or only in the first arm); copying it lets each arm's line start at step 0.
    """
    start = [r for r in rows if r["arm"] == base_arm and r.get("step", 0) == 0]
    return rows + [dict(r, arm=a) for a in arms for r in start]


def starts(rows, arm, metric, step=0):
    """{seed: value} of (arm, metric) at `step`: each seed's own starting point."""
    return {r["seed"]: r["value"] for r in matching(rows, arm, metric) if r.get("step", 0) == step}


def change_from_start(rows, metric, arms, start_arm=None, start_step=0):
    """The `metric` rows of `arms`, each value minus the same seed's start.

    The start is (start_arm, start_step), or the arm's own step-0 value when start_arm is None.
    by_step() of these rows gives the mean and std over seeds of the per-seed changes, which
    leaves out how far apart the seeds' starting points are. Seeds without a start are dropped.
    """
    changed = []
    for arm in arms:
        start = starts(rows, start_arm or arm, metric, start_step)
        changed += [dict(r, value=r["value"] - start[r["seed"]])
                    for r in matching(rows, arm, metric) if r["seed"] in start]
    return changed


def first_seen(rows, key, arms):
    """The values of rows[key] among `arms`, in the order they first appear (model sizes)."""
    seen = []
    for r in rows:
        if r["arm"] in arms and r[key] not in seen:
            seen.append(r[key])
    return seen


def arms_in(rows, wanted):
    """The arms of `wanted` that the file has, in `wanted`'s order."""
    have = {r["arm"] for r in rows}
    return [a for a in wanted if a in have]


# ---------------------------------------------------------------------------------------------
# Drawing helpers
# ---------------------------------------------------------------------------------------------

def matplotlib_figure():
    """matplotlib's Figure class, with the Agg canvas; ImportError with a one-line fix if missing.

    Figures are made without pyplot: nothing global (no GUI backend, no open-figure list) changes
    for a caller such as a notebook.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError(NEED_MATPLOTLIB) from e

    def new_figure(ncols=1, nrows=1, width=None, height=None):
        # constrained layout: room for labels, suptitles, colour bars and legends outside the axes
        fig = Figure(figsize=(width or SIZE[0] * ncols, height or SIZE[1] * nrows), dpi=DPI,
                     layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(nrows, ncols, squeeze=False)
        return fig, [ax for row in axes for ax in row]
    return new_figure


def line(ax, rows, arm, metric, label=None, color=None, **keys):
    """Mean over seeds as a line with markers, +- one std as a band. Nothing if no rows."""
    steps, means, stds = by_step(rows, arm, metric, **keys)
    if not steps:
        return
    drawn = ax.plot(steps, means, marker="o", markersize=4, label=label or arm, color=color)[0]
    ax.fill_between(steps, [m - s for m, s in zip(means, stds)],
                    [m + s for m, s in zip(means, stds)], color=drawn.get_color(), alpha=0.12,
                    linewidth=0)


def change_lines(ax, rows, metric, arms, start_arm=None, start_step=0, labels=None,
                 ylabel="change in test accuracy\nvs each seed's base"):
    """One line() per arm of its per-seed change from the start (see change_from_start), and a
    dashed line at 0 (no change). Returns the starts' mean over seeds (nan without any), for a note.
    """
    changed = change_from_start(rows, metric, arms, start_arm, start_step)
    for i, arm in enumerate(arms):
        line(ax, changed, arm, metric, label=(labels or {}).get(arm), color=f"C{i}")
    ax.axhline(0, color="black", linestyle="--", linewidth=1)
    ax.set_ylabel(ylabel)
    start = starts(rows, start_arm or (arms[0] if arms else None), metric, start_step)
    return statistics.fmean(start.values()) if start else math.nan


def integer_steps(ax):
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def save(fig, out_dir, name):
    path = os.path.join(out_dir, name)
    fig.savefig(path)
    return path


def seeds_note(data):
    n = len(data.get("seeds", []))
    return f"{data['task']}, {n} seed{'s' if n != 1 else ''}; band: ± 1 std over seeds"


# ---------------------------------------------------------------------------------------------
# One function per figure: (parsed results JSON, output folder, new_figure) -> written paths
# ---------------------------------------------------------------------------------------------

def draw_reflexion(data, out_dir, new_figure):
    rows = data["rows"]
    fig, (ax,) = new_figure()
    for arm in arms_in(rows, ["oracle_feedback", "resample", "self_check", "no_feedback"]):
        line(ax, rows, arm, "solved")
    ceiling = final(rows, "ceiling", "pass@32")
    if ceiling:  # what the base can produce at all: the most any retry loop could reach
        ax.axhline(ceiling[0], color="black", linestyle="--", linewidth=1,
                   label=f"base pass@32 = {ceiling[0]:.2f}")
    integer_steps(ax)
    ax.set_xlabel("trial (0 = the base model's first, greedy attempt)")
    ax.set_ylabel("share of test problems solved")
    ax.set_title(f"Reflexion: retries vs. fresh samples ({seeds_note(data)})", fontsize=9)
    # below the ceiling line, above the early trials: the one empty corner
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(0, 0.9))
    return [save(fig, out_dir, "reflexion_trials.png")]


def draw_self_correct(data, out_dir, new_figure):
    rows = data["rows"]
    fig, (bars, acc) = new_figure(ncols=2, width=11)
    # Stacked shares of the intrinsic arm's answers per round: they sum to 1, and the accuracy
    # change of a round is i2c - c2i, so the two thin middle bands carry the whole story.
    kinds = [("c2c", "right stays right", "#9ecae1"), ("c2i", "right -> wrong", "#d62728"),
             ("i2c", "wrong -> right", "#2ca02c"), ("i2i", "wrong stays wrong", "#d9d9d9")]
    rounds = by_step(rows, "intrinsic", "c2c")[0]
    mean = {m: dict(zip(*by_step(rows, "intrinsic", m)[:2])) for m, _, _ in kinds}
    bottom = [0.0] * len(rounds)
    for metric, label, color in kinds:
        share = [mean[metric].get(s, 0.0) for s in rounds]
        bars.bar(rounds, share, bottom=bottom, color=color, label=label, width=0.6)
        bottom = [b + v for b, v in zip(bottom, share)]
    for s in rounds:  # the two small shares, written out: they are too thin to read off the bars
        bars.text(s, 1.02, f"-{mean['c2i'].get(s, 0.0):.1%}\n+{mean['i2c'].get(s, 0.0):.1%}",
                  ha="center", va="bottom", fontsize=7)
    bars.set_ylim(0, 1.25)
    bars.set_xticks(rounds)
    bars.set_xlabel("review round")
    bars.set_ylabel("share of test problems (mean over seeds)")
    bars.set_title("intrinsic self-correction: what each round does\n"
                   "(above the bars: right -> wrong, wrong -> right)", fontsize=9)
    bars.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=4)

    arms = arms_in(rows, ["intrinsic", "oracle_stop", "majority_vote"])
    first = change_lines(acc, rows, "acc", arms,
                         ylabel="change in test accuracy\nvs each seed's first answer")
    integer_steps(acc)
    acc.set_xlabel("review round (0 = the first answer)")
    acc.set_title(f"accuracy per round ({seeds_note(data)})\n"
                  f"as change from round 0; the first answer: {first:.2f} on average", fontsize=9)
    acc.legend(fontsize=8)
    return [save(fig, out_dir, "self_correct_transitions.png")]


def draw_weak_to_strong(data, out_dir, new_figure):
    rows = data["rows"]
    arms = [a for a in dict.fromkeys(r["arm"] for r in rows) if a.startswith("w2s_")]
    weaks, strongs = first_seen(rows, "weak", arms), first_seen(rows, "strong", arms)
    pairs = list(dict.fromkeys((r["weak"], r["strong"]) for r in rows if r["arm"] in arms))
    return [_w2s_pgr(data, out_dir, new_figure, arms, weaks, strongs),
            _w2s_curves(data, out_dir, new_figure, arms, pairs)]


def _w2s_pgr(data, out_dir, new_figure, arms, weaks, strongs):
    fig, axes = new_figure(ncols=max(len(arms), 1), width=max(3.6 * len(arms), 4),
                           height=1.6 + 0.7 * max(len(weaks), 1))
    # PGR divides by the teacher-to-ceiling gap, so a tiny gap gives values like -400: the colour
    # is clipped to [-1, 1] (0 = the student only copied its teacher, 1 = it reached the ceiling)
    # and the true value is written in the cell.
    for ax, arm in zip(axes, arms):
        grid = [[float("nan")] * len(strongs) for _ in weaks]
        for i, w in enumerate(weaks):
            for j, s in enumerate(strongs):
                cell = final(data["rows"], arm, "pgr", weak=w, strong=s)
                if cell is None:
                    continue  # no pair, or PGR undefined on every seed: left blank
                grid[i][j] = cell[0]
                text = f"{cell[0]:.0f}" if abs(cell[0]) >= 10 else f"{cell[0]:.2f}"
                ax.text(j, i, f"{text}\n(n={cell[1]})", ha="center", va="center", fontsize=8,
                        color="white" if abs(cell[0]) > 0.6 else "black")
        image = ax.imshow(grid, cmap="RdBu", vmin=-1, vmax=1)
        ax.set_xticks(range(len(strongs)), strongs)
        ax.set_yticks(range(len(weaks)), weaks)
        ax.set_xlabel("strong student")
        ax.set_title(arm, fontsize=9)
    axes[0].set_ylabel("weak teacher")
    if arms:
        fig.colorbar(image, ax=axes, shrink=0.8, label="PGR (colour clipped to [-1, 1])")
    fig.suptitle(f"weak-to-strong: performance gap recovered at the final step ({data['task']}),\n"
                 "mean over the n seeds where it is defined; blank: no such pair, or never defined",
                 fontsize=9)
    return save(fig, out_dir, "w2s_pgr.png")


def _w2s_curves(data, out_dir, new_figure, arms, pairs):
    rows = data["rows"]
    ncols = min(len(pairs), 3) or 1
    nrows = max(math.ceil(len(pairs) / ncols), 1)
    fig, axes = new_figure(ncols=ncols, nrows=nrows, width=4.2 * ncols, height=3.6 * nrows)
    colors = {arm: f"C{i}" for i, arm in enumerate(arms)}
    for ax, (w, s) in zip(axes, pairs):
        for arm in arms:
            line(ax, rows, arm, "test_acc", color=colors[arm], weak=w, strong=s)
        # The two references PGR is measured between: the teacher and the student trained on truth
        teacher = final(rows, "weak", "test_acc", weak=w)
        ceiling = final(rows, "ceiling", "test_acc", strong=s)
        if teacher:
            ax.axhline(teacher[0], color="gray", linestyle="--", linewidth=1,
                       label="weak teacher's own accuracy")
        if ceiling:
            ax.axhline(ceiling[0], color="black", linestyle=":", linewidth=1.2,
                       label="ceiling: student trained on the truth")
        ax.set_title(f"teacher {w} -> student {s}", fontsize=9)
        ax.set_xlabel("fine-tuning step of the student")
        ax.set_ylabel("test accuracy")
    for ax in axes[len(pairs):]:
        ax.axis("off")
    # one legend below all panels: the same arms and reference lines in every panel
    handles = {}
    for ax in axes:
        handles.update(zip(*reversed(ax.get_legend_handles_labels())))
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncol=5,
               fontsize=8)
    fig.suptitle(f"weak-to-strong: student accuracy while learning from the teacher's labels "
                 f"({seeds_note(data)})", fontsize=9)
    return save(fig, out_dir, "w2s_curves.png")


def draw_rest_em(data, out_dir, new_figure):
    arms = ["rest_em", "rest_em_continue", "rest_em_small", "sft_gold"]
    rows = starting_from(data["rows"], "base", arms)
    arms = arms_in(rows, arms)
    metrics = [("test_acc", "greedy test accuracy"), ("train_acc", "greedy train accuracy"),
               ("pass@16", "test pass@16 (16 samples)")]
    fig, axes = new_figure(ncols=3, width=13, height=4)
    for ax, (metric, label) in zip(axes, metrics):
        what = label.split(" (")[0]
        base = change_lines(ax, rows, metric, arms, ylabel=f"change in {what}\nvs each seed's base")
        integer_steps(ax)
        ax.set_xlabel("iteration (0 = the base model)")
        ax.set_title(f"{label}\n(base: {base:.2f} on average)", fontsize=9)
    axes[1].legend(fontsize=7, loc="upper left")   # the train panel's lines all rise from 0
    fig.suptitle(f"ReST-EM: self-training on its own verified answers ({seeds_note(data)}; "
                 f"change from each seed's own base)", fontsize=9)
    return [save(fig, out_dir, "rest_em_iterations.png")]


def draw_rest(data, out_dir, new_figure):
    # rest_g2 continues rest_g1 (its Improve steps are numbered after g1's), so the arms of one
    # scoring, rest_g1, rest_g2, ..., are one line; the base (step 0) starts each line.
    family = {r["arm"]: re.sub(r"_g\d+$", "", r["arm"]) for r in data["rows"]}
    rows = [dict(r, arm=family[r["arm"]]) for r in data["rows"]]
    lines = arms_in(rows, [a for a in dict.fromkeys(family.values()) if a != "base"])
    rows = starting_from(rows, "base", lines)
    labels = {"rest": "rest (oracle reward)", "rest_proxy": "rest_proxy (learned reward)"}
    # a new Grow starts at the first step fed by it: a vertical line before that step
    grows = {}
    for r in data["rows"]:
        if r.get("grow", 0) > 1:
            grows[r["grow"]] = min(grows.get(r["grow"], r["step"]), r["step"])
    fig, axes = new_figure(ncols=2, width=11)
    panels = [("test_reward", "true test reward (oracle: share of hidden tests)"),
              ("proxy_reward", "proxy reward (learned reward model's score)")]
    for ax, (metric, label) in zip(axes, panels):
        for i, arm in enumerate(lines):
            line(ax, rows, arm, metric, label=labels.get(arm, arm), color=f"C{i}")
        for g, step in sorted(grows.items()):
            ax.axvline(step - 0.5, color="gray", linestyle=":", linewidth=1)
            ax.text(step - 0.45, 0.98, f"Grow {g}", transform=ax.get_xaxis_transform(),
                    fontsize=7, va="top", color="gray")
        integer_steps(ax)
        ax.set_xlabel("Improve step (0 = base; threshold rises within a Grow)")
        ax.set_ylabel(label.split(" (")[0])
        ax.set_title(label, fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(f"ReST: Grow and Improve, scored by the truth or by a learned reward "
                 f"({seeds_note(data)})", fontsize=9)
    return [save(fig, out_dir, "rest_steps.png")]


def draw_rerank(data, out_dir, new_figure):
    rows = data["rows"]  # the step of a row is N, the number of samples drawn per problem
    fig, (ax,) = new_figure()
    labels = {"pass@1": "pass@1 (one sample)", "maj": "majority vote of N",
              "rr_all": "verifier picks 1 of N", "weighted": "verifier-weighted vote",
              "pass@N": "pass@N (any of N right)"}
    arms = arms_in(rows, list(labels))
    # every curve, pass@N too, against the same seed's pass@1 (one sample, N = 1)
    one = change_lines(ax, rows, "test_acc", arms, start_arm="pass@1", start_step=1,
                       labels=labels, ylabel="change in test accuracy\nvs each seed's pass@1")
    ns = sorted({n for arm in arms for n in by_step(rows, arm, "test_acc")[0]})
    ax.set_xscale("log", base=2)
    ax.set_xticks(ns, [str(n) for n in ns])
    ax.minorticks_off()
    ax.set_xlabel("N = samples per problem (log scale)")
    ax.set_title(f"Re-ranking N samples ({seeds_note(data)};\nchange from each seed's pass@1, "
                 f"which is {one:.2f} on average)", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    return [save(fig, out_dir, "rerank_curves.png")]


def draw_spin(data, out_dir, new_figure):
    arms = ["spin", "sft_more", "spin_long"]
    rows = starting_from(data["rows"], "spin", ["sft_more", "spin_long"])
    fig, (acc, loss) = new_figure(ncols=2, width=11)
    sft = change_lines(acc, rows, "test_acc", arms_in(rows, arms),
                       ylabel="change in greedy test accuracy\nvs each seed's SFT model")
    acc.set_xlabel("iteration (0 = the SFT model)")
    acc.set_title(f"test accuracy, as change from iteration 0\n"
                  f"(SFT model: {sft:.2f} on average)", fontsize=9)
    acc.legend(fontsize=8)
    line(loss, rows, "spin", "heldout_loss", label="spin: held-out SPIN loss")
    # log 2 is the loss of logits 0: a model that cannot tell the data from its own answers
    loss.axhline(math.log(2), color="black", linestyle="--", linewidth=1,
                 label="log 2 = cannot tell them apart")
    loss.set_xlabel("iteration (loss at the end of it)")
    loss.set_ylabel("held-out SPIN loss")
    loss.set_title("can the model tell the data from its own answers?", fontsize=9)
    loss.legend(fontsize=8, loc="lower left")
    for ax in (acc, loss):
        integer_steps(ax)
    fig.suptitle(f"SPIN: self-play fine-tuning ({seeds_note(data)})", fontsize=9)
    return [save(fig, out_dir, "spin_iterations.png")]


# (results file, drawing function), in the order of the tutorials
FIGURES = [
    ("reflexion-code.json", draw_reflexion),
    ("self_correct-arith.json", draw_self_correct),
    ("weak_to_strong-arith.json", draw_weak_to_strong),
    ("rest-code.json", draw_rest),
    ("rest_em-arith.json", draw_rest_em),
    ("rerank-arith.json", draw_rerank),
    ("spin-arith.json", draw_spin),
]


def draw_all(results_dir="results", out_dir="tutorials/figures"):
    """Draw every figure whose results file exists; return the PNG paths written."""
    new_figure = matplotlib_figure()
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for name, draw in FIGURES:
        path = os.path.join(results_dir, name)
        if not os.path.exists(path):
            print(f"skip {name.split('-')[0]}: {path} missing")
            continue
        with open(path) as f:
            written += draw(json.load(f), out_dir, new_figure)
    return written


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Draw the results/*.json files as PNG figures (needs: pip install matplotlib).")
    parser.add_argument("--results", default="results", help="folder of the results JSON files")
    parser.add_argument("--out", default="tutorials/figures", help="folder to write the PNGs to")
    args = parser.parse_args(argv)
    try:
        written = draw_all(args.results, args.out)
    except ImportError as e:
        if str(e) != NEED_MATPLOTLIB:
            raise  # a real bug, not a missing extra: keep its traceback
        print(NEED_MATPLOTLIB, file=sys.stderr)
        return 1
    for path in written:
        print("wrote", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
