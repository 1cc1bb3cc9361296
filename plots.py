"""Reading results rows as mean +- std over seeds, and the matplotlib helpers figures.py draws
with. matplotlib is imported only when drawing starts, so this file (and figures.py) can be
imported, and its helpers tested, without it."""
import math
import os
import statistics

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
    if steps:
        band(ax, steps, means, stds, label=label or arm, color=color)


def band(ax, xs, means, stds, label=None, color=None):
    """A line with markers through (xs, means), +- stds as a shaded band."""
    drawn = ax.plot(xs, means, marker="o", markersize=4, label=label, color=color)[0]
    ax.fill_between(xs, [m - s for m, s in zip(means, stds)],
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
