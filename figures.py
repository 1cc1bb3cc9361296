"""Figures of the results: one PNG per phenomenon, drawn from results/*.json.

What it draws (each only if its results file exists; otherwise it prints "skip ..."):
  sft_curve_<task>.png          sft-<task>: the base's test accuracy against N labelled
                                problems, with sft_more and sft_gold_pool beside it
  reflexion_trials.png          reflexion-code: share of problems solved after each trial, per
                                arm, against the base model's pass@32 (the ceiling)
  self_correct_transitions.png  self_correct-arith: how each review round changes the answers
                                (right->right, right->wrong, wrong->right, wrong->wrong), and
                                accuracy per round for intrinsic, oracle_stop, majority_vote
  w2s_pgr.png                   weak_to_strong-arith: performance gap recovered (PGR) at the final
                                step, one heatmap per arm (rows: weak teacher, columns: student)
  w2s_curves.png                weak_to_strong-arith: student test accuracy during training, per
                                (teacher, student) pair, against the teacher and the ceiling
  rest_em_iterations.png        rest_em-arith: test accuracy and the filters' audited label
                                accuracy per iteration, per arm (rest_em_iterations_code.png:
                                rest_em-code)
  rest_em_hard.png              rest_em_hard-code: accuracy on the 3-step problems that need 3
                                steps and on those a shorter program solves, and the share of
                                3-step answers, per iteration
  rest_steps.png                rest-code: true test reward and learned (proxy) reward per
                                Improve step, for ReST scored by the oracle or by the proxy
  rerank_curves_<task>.png      rerank-<task>: test accuracy against N samples per problem
  spin_iterations.png           spin-arith: test accuracy, gold NLL, end-of-iteration reward
                                accuracy and `same` per iteration, per arm
  grpo_passk.png                grpo-arith: test accuracy against the completions sampled, and
                                pass@k of the base and of each trained model (grpo_passk_code.png:
                                grpo-code)
  easy_to_hard_lengths.png      easy_to_hard-add: test accuracy per operand length and round, one
                                heat map per arm, and solved_len per round
                                (easy_to_hard_lengths_seeds345.png: the check ensemble)

Lines are the mean over seeds; the shaded band is +- one sample standard deviation over seeds.
Where seeds start far apart, the accuracy panels of self_correct and rerank show each seed's
change from its own start (step 0, or pass@1 for rerank), then mean +- std of those changes; the
title gives the average start. The scarce-data bases start close together, so the rest_em, spin
and grpo panels show accuracy itself.

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
import sys

from figures_training import (draw_easy_to_hard, draw_grpo, draw_rest, draw_rest_em,
                               draw_rest_em_hard, draw_spin)
from plots import (NEED_MATPLOTLIB, arms_in, by_step, change_lines, final, first_seen,
                   integer_steps, line, matplotlib_figure, save, seeds_note)


# ---------------------------------------------------------------------------------------------
# One function per figure: (parsed results JSON, output folder, new_figure) -> written paths.
# The figures of the methods that train on their own outputs are in figures_training.py.
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


def draw_rerank(data, out_dir, new_figure):
    rows = data["rows"]  # the step of a row is N, the number of samples drawn per problem
    fig, (ax,) = new_figure()
    labels = {"pass@1": "pass@1 (one sample)", "maj": "majority vote of N",
              "filter_first": "first that passes the visible examples",
              "filter_cluster": "biggest behaviour cluster among those",
              "rr_all": "verifier picks 1 of N", "exec_rr_all": "verifier with outputs picks 1",
              "weighted": "verifier-weighted vote", "pass@N": "pass@N (any of N right)"}
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
    return [save(fig, out_dir, f"rerank_curves_{data['task']}.png")]


def draw_sft(data, out_dir, new_figure):
    rows = data["rows"]
    curve = sorted(int(a[7:]) for a in {r["arm"] for r in rows} if a.startswith("n_gold_"))
    fig, (ax,) = new_figure()
    means = [by_step(rows, f"n_gold_{n}", "test_acc")[1][0] for n in curve]
    stds = [by_step(rows, f"n_gold_{n}", "test_acc")[2][0] for n in curve]
    ax.errorbar(curve, means, yerr=stds, marker="o", capsize=3, label="base on N gold problems")
    # the controls start from the default base: draw them at its N (the curve's point whose
    # accuracy is the base's, seed by seed)
    base = by_step(rows, "base", "test_acc")[1]
    at = next((n for n in curve if by_step(rows, f"n_gold_{n}", "test_acc")[1] == base),
              curve[len(curve) // 2])
    for arm, marker in (("sft_more", "s"), ("sft_gold_pool", "^")):
        if by_step(rows, arm, "test_acc")[0]:
            _, m, sd = by_step(rows, arm, "test_acc")
            ax.errorbar([at], m, yerr=sd, marker=marker, capsize=3,
                        linestyle="none", label=f"{arm} (from the default base)")
    ax.set_xscale("log")
    ax.set_xlabel("N = labelled problems (log scale)")
    ax.set_ylabel("greedy test accuracy")
    ax.set_title(f"the base against the number of labelled problems\n({seeds_note(data)})",
                 fontsize=9)
    ax.legend(fontsize=7)
    return [save(fig, out_dir, f"sft_curve_{data['task']}.png")]


# (results file, drawing function), in the order of the tutorials
FIGURES = [
    ("sft-arith.json", draw_sft),
    ("sft-code.json", draw_sft),
    ("reflexion-code.json", draw_reflexion),
    ("self_correct-arith.json", draw_self_correct),
    ("weak_to_strong-arith.json", draw_weak_to_strong),
    ("rest-code.json", draw_rest),
    ("rest_em-arith.json", draw_rest_em),
    ("rest_em-code.json", draw_rest_em),
    ("rest_em_hard-code.json", draw_rest_em_hard),
    ("rerank-arith.json", draw_rerank),
    ("rerank-code.json", draw_rerank),
    ("spin-arith.json", draw_spin),
    ("grpo-arith.json", draw_grpo),
    ("grpo-code.json", draw_grpo),
    ("easy_to_hard-add.json", draw_easy_to_hard),
    ("easy_to_hard-add-seeds345.json", draw_easy_to_hard),
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
