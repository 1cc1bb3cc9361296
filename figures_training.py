"""The figures of the methods that train on their own outputs: ReST, ReST-EM, SPIN, GRPO and
easy to hard (figures.py lists every figure, and draws them all). Each function takes a parsed
results JSON, the output folder and plots.matplotlib_figure()'s new_figure, and returns the paths
it wrote."""
import re

from plots import arms_in, band, by_step, integer_steps, line, save, seeds_note, starting_from


def draw_rest_em(data, out_dir, new_figure):
    arms = ["rest_em", "rest_em_vote", "self_train", "rest_em_continue", "rest_em_small",
            "sft_more", "sft_gold_pool"]
    arms = arms_in(data["rows"], arms)  # the arms the run had, before the base is copied in
    rows = starting_from(data["rows"], "base", arms)
    fig, (acc, labels) = new_figure(ncols=2, width=11)
    for i, arm in enumerate(arms):
        line(acc, rows, arm, "test_acc", color=f"C{i}")
        line(labels, data["rows"], arm, "label_acc", color=f"C{i}")
    acc.set_ylabel("greedy test accuracy")
    acc.set_title("test accuracy per iteration (0 = the base;\nthe controls are one M-step)",
                  fontsize=9)
    labels.set_ylabel("share of kept labels that are right")
    labels.set_title("label accuracy of each filter, audited by the oracle", fontsize=9)
    for ax in (acc, labels):
        integer_steps(ax)
        ax.set_xlabel("iteration")
        ax.legend(fontsize=7)
    fig.suptitle(f"ReST-EM on the pool: filters against the pool's gold labels "
                 f"({seeds_note(data)})", fontsize=9)
    name = "rest_em_iterations.png" if data["task"] == "arith" else \
        f"rest_em_iterations_{data['task']}.png"
    return [save(fig, out_dir, name)]


def draw_rest_em_hard(data, out_dir, new_figure):
    arms = arms_in(data["rows"], ["rest_em", "self_train", "sft_more", "sft_gold_pool"])
    rows = starting_from(data["rows"], "base", arms)
    panels = [("test_acc_long", "3-step test problems no shorter program solves"),
              ("test_acc_short", "3-step test problems a shorter program solves"),
              ("long_answers", "greedy test answers with 3 steps or more")]
    fig, axes = new_figure(ncols=3, width=14, height=4)
    for ax, (metric, label) in zip(axes, panels):
        for i, arm in enumerate(arms):
            line(ax, rows, arm, metric, color=f"C{i}")
        integer_steps(ax)
        ax.set_xlabel("iteration (0 = the base; the controls are one M-step)")
        ax.set_ylabel("greedy accuracy" if metric.startswith("test") else "share of answers")
        ax.set_title(label, fontsize=9)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"ReST-EM from 1-2-step to 3-step programs: the long way or the short cut? "
                 f"({seeds_note(data)})", fontsize=9)
    return [save(fig, out_dir, "rest_em_hard.png")]


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


def draw_spin(data, out_dir, new_figure):
    rows = data["rows"]  # every arm has the shared step 0
    arms = arms_in(rows, ["spin", "spin_nll", "sft_more", "spin_long"])
    panels = [("test_acc", "greedy test accuracy"),
              ("gold_nll", "per-token NLL of the real answers\n(KL(p_data || p_theta))"),
              ("reward_acc", "reward accuracy at the end of the iteration\n(0.5: cannot tell)"),
              ("same", "share of own samples equal to the data")]
    fig, axes = new_figure(ncols=2, nrows=2, width=11, height=7.5)
    for ax, (metric, label) in zip(axes, panels):
        for i, arm in enumerate(arms):
            line(ax, rows, arm, metric, color=f"C{i}")
        if metric == "reward_acc":
            ax.axhline(0.5, color="black", linestyle="--", linewidth=1)
        integer_steps(ax)
        ax.set_xlabel("iteration (0 = the SFT base)")
        ax.set_ylabel(label.split("\n")[0])
        ax.set_title(label, fontsize=9)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"SPIN: does p_theta move to p_data? ({seeds_note(data)})", fontsize=9)
    return [save(fig, out_dir, "spin_iterations.png")]


def draw_grpo(data, out_dir, new_figure):
    rows = data["rows"]
    arms = arms_in(rows, ["grpo", "reinforce", "rest_em"])
    fig, (acc, curve) = new_figure(ncols=2, width=11)
    base_acc = by_step(rows, "base", "test_acc")[1]
    for i, arm in enumerate(arms):  # x: completions sampled so far; the base at 0
        steps, means, stds = by_step(rows, arm, "test_acc")
        spent = dict(zip(*by_step(rows, arm, "samples")[:2]))
        band(acc, [0] + [spent[s] for s in steps], base_acc[:1] + means, [0.0] + stds,
             label=arm, color=f"C{i}")
    acc.set_xlabel("completions sampled for training")
    acc.set_ylabel("greedy test accuracy")
    acc.set_title("test accuracy against the sampling budget", fontsize=9)
    acc.legend(fontsize=8)
    for i, arm in enumerate(["base"] + arms):
        last = max(by_step(rows, arm, "test_acc")[0])
        ks = sorted(int(r["metric"][5:]) for r in rows if r["arm"] == arm and r["step"] == last
                    and r["metric"].startswith("pass@") and r["seed"] == rows[0]["seed"])
        means = [final_at(rows, arm, f"pass@{k}", last) for k in ks]
        curve.plot(ks, means, marker="o", markersize=4, label=arm if arm != "base" else
                   "base model", color="black" if arm == "base" else f"C{i - 1}",
                   linestyle="--" if arm == "base" else "-")
    curve.set_xscale("log", base=2)
    curve.set_xlabel("k (log scale)")
    curve.set_ylabel("pass@k on the test split (T = 0.8)")
    curve.set_title("pass@k after training against the base's", fontsize=9)
    curve.legend(fontsize=8)
    fig.suptitle(f"RL with the oracle's reward ({seeds_note(data)})", fontsize=9)
    name = "grpo_passk.png" if data["task"] == "arith" else f"grpo_passk_{data['task']}.png"
    return [save(fig, out_dir, name)]


def draw_easy_to_hard(data, out_dir, new_figure):
    arms = arms_in(data["rows"], ["filtered", "unfiltered", "oracle_filtered"])
    rows = starting_from(data["rows"], "base", arms)  # round 0 of every arm: the base
    lengths = sorted(int(r["metric"][4:]) for r in data["rows"]
                     if r["arm"] == "base" and r["metric"].startswith("acc@")
                     and r["seed"] == rows[0]["seed"])
    fig, axes = new_figure(ncols=len(arms) + 1, width=4.2 * (len(arms) + 1), height=3.6)
    image = None
    for ax, arm in zip(axes, arms):
        rounds = by_step(rows, arm, "solved_len")[0]
        grid = [by_step(rows, arm, f"acc@{n}")[1] for n in lengths]  # (lengths, rounds)
        image = ax.imshow(grid, origin="lower", aspect="auto", vmin=0, vmax=1, cmap="viridis",
                          extent=(-0.5, len(rounds) - 0.5, lengths[0] - 0.5, lengths[-1] + 0.5))
        ax.plot(*by_step(rows, arm, "length")[:2], "w--", linewidth=1, label="length labelled")
        ax.set_xticks(range(len(rounds)))
        ax.set_xlabel("round (0 = base)")
        ax.set_ylabel("operand digits")
        ax.set_title(f"{arm}: test accuracy per length", fontsize=9)
        ax.legend(fontsize=7, loc="upper left")
    fig.colorbar(image, ax=axes[:len(arms)], shrink=0.8, label="accuracy (mean over seeds)")
    solved = axes[-1]
    for i, arm in enumerate(arms):
        line(solved, rows, arm, "solved_len", color=f"C{i}")
    integer_steps(solved)
    solved.set_xlabel("round")
    solved.set_ylabel("solved_len (>= 95% at it and below)")
    solved.set_title("the frontier per arm", fontsize=9)
    solved.legend(fontsize=8)
    fig.suptitle(f"easy to hard: self-labelled longer additions ({seeds_note(data)})", fontsize=9)
    seeds = data.get("seeds", [])
    name = ("easy_to_hard_lengths.png" if not seeds or seeds[0] == 0 else  # the default run's
            f"easy_to_hard_lengths_seeds{''.join(str(s) for s in seeds)}.png")  # a check's
    return [save(fig, out_dir, name)]


def final_at(rows, arm, metric, step):
    """Mean over seeds of (arm, metric) at `step`."""
    steps, means, _ = by_step(rows, arm, metric)
    return means[steps.index(step)]
