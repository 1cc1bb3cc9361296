import copy
import itertools
import json
import os

import pytest
import torch

from conftest import ROOT, run_script
from model import GPT, GPTConfig
import rerank
import verifier
import sft
from sample import majority_vote, pass_at_k
from verify import TASKS


def run(*args):
    return run_script(*args, timeout=300)


def test_majority_vote_ties_go_to_the_first_answer_seen():
    assert majority_vote(["12", "34", "34", "12"]) == "12"
    assert majority_vote(["34", "12", "12", "34"]) == "34"
    assert majority_vote(["5", "6", "6", "5", "7", "7"]) == "5"  # three-way tie
    assert rerank.pick_majority(["9", "34", "12", "12", "34"]) == 1  # index of the first "34"
    # top_clusters orders equal-sized clusters the same way, so maj == the first top cluster
    assert rerank.top_clusters(["9", "34", "12", "12", "34"], 3) == ["34", "12", "9"]


def test_rerank_picks_the_top_scored_sample_and_the_first_on_ties():
    answers = ["1", "2", "3", "4"]
    assert rerank.pick_rerank(answers, [0.1, 0.9, 0.3, 0.2]) == 1
    assert rerank.pick_rerank(answers, [0.5, 0.9, 0.9, 0.2]) == 1
    assert rerank.pick_rerank(answers, [0.1, 0.9, 0.3, 0.2], keep=["3", "4"]) == 2


def test_top_k_clusters_filter_out_a_rare_answer_the_verifier_likes():
    # a hand-built case: "c" x3, "b" x2, "a" x1, "d" x1. The verifier loves the rare "d".
    answers = ["a", "b", "b", "c", "c", "c", "d"]
    scores = [0.2, 0.6, 0.5, 0.4, 0.3, 0.45, 0.99]
    assert rerank.top_clusters(answers, 2) == ["c", "b"]
    assert rerank.top_clusters(answers, 8) == ["c", "b", "a", "d"]  # K > clusters: all of them
    assert rerank.pick_rerank(answers, scores) == 6  # RR.All is fooled by "d"
    assert rerank.pick_rerank(answers, scores, keep=rerank.top_clusters(answers, 2)) == 1
    assert rerank.pick_rerank(answers, scores, keep=rerank.top_clusters(answers, 1)) == 5
    # weighted vote: sums c = 1.15, b = 1.1, d = 0.99, a = 0.2 -> first sample of "c"
    assert rerank.pick_weighted(answers, scores) == 3


def test_pass_at_n_from_the_same_samples_equals_the_estimator_and_brute_force():
    correct = [False, True, False, False, True, False, False, False]
    answers = [str(i) for i in range(8)]
    scores = {"verifier": [0.5] * 8}
    for n in (1, 2, 4, 8):
        acc = rerank.per_problem_accuracy(answers, correct, scores, n)
        # brute force: the share of all n-subsets of the 8 samples that hold a correct one
        subsets = list(itertools.combinations(range(8), n))
        brute = sum(any(correct[i] for i in s) for s in subsets) / len(subsets)
        assert acc["pass@N"] == pytest.approx(brute) == pytest.approx(pass_at_k(8, 2, n))
        assert acc["pass@1"] == pytest.approx(2 / 8)


def test_groups_are_disjoint_slices_of_n_samples():
    # 4 samples, N = 2: groups ("7", "7") and ("8", "9"); maj picks "7" (right), then "8" (wrong)
    answers, correct = ["7", "7", "8", "9"], [True, True, False, True]
    scores = {"verifier": [0.1, 0.1, 0.2, 0.9], "small_verifier": [0.9, 0.1, 0.9, 0.1]}
    acc = rerank.per_problem_accuracy(answers, correct, scores, 2)
    assert acc["maj"] == 0.5 and acc["rr_all"] == 1.0 and acc["rr_top2"] == 1.0
    assert acc["small_rr_all"] == 0.5  # picks "7" (right), then "8" (wrong)
    assert rerank.per_problem_accuracy(answers, correct, scores, 4)["maj"] == 1.0


def test_the_verifier_table_makes_every_arm_and_only_those():
    assert rerank.ARMS == ("pass@1", "maj", "filter_first", "filter_cluster",
                           "rr_all", "rr_top2", "rr_top4", "rr_top8", "weighted",
                           "xent_rr_all", "xent_rr_top4", "xent_weighted",
                           "small_rr_all", "small_rr_top4", "small_weighted",
                           "exec_rr_all", "exec_rr_top4", "exec_weighted", "pass@N")
    answers = ["1", "2", "2", "3"]
    picks = rerank.arm_picks(answers, {name: [0.1, 0.2, 0.3, 0.4] for name in rerank.VERIFIERS})
    assert set(picks) == set(rerank.ARMS) - {"pass@1", "pass@N"}
    assert picks["maj"] == 1 and picks["rr_all"] == picks["small_rr_all"] == 3
    assert picks["rr_top2"] == 2 and picks["xent_weighted"] == 1  # "2" sums 0.5 > 0.4


def test_execution_filters_pick_by_the_visible_examples_then_by_behaviour():
    # six programs; 1, 3, 4 and 5 pass the visible examples; on fresh inputs 3 and 5 agree
    keys = ["a", "b", "c", "d", "c", "d"]
    visible = [False, True, False, True, True, True]
    assert rerank.pick_filter_first(visible) == 1
    assert rerank.pick_filter_cluster(keys, visible) == 3  # "d" twice among the survivors
    assert rerank.pick_filter_first([False] * 3) == 0  # nothing passes: the first sample
    assert rerank.pick_filter_cluster(["x", "y", "y"], [False] * 3) == 1  # the majority
    picks = rerank.arm_picks(["p0", "p1", "p2", "p3", "p4", "p5"], {}, keys, visible)
    assert picks == {"maj": 2, "filter_first": 1, "filter_cluster": 3}  # maj: "c" first of 2


def test_behaviour_runs_programs_on_fresh_inputs_and_arith_answers_are_their_text():
    code = TASKS["code"].problems(1, seed=0)[0]
    inputs = rerank.fresh_inputs(code)
    assert inputs == rerank.fresh_inputs(code) and len(inputs) == rerank.FRESH_INPUTS
    assert all(3 <= len(xs) <= 5 and all(0 <= x <= 9 for x in xs) for xs in inputs)
    # two spellings of one behaviour cluster together; a syntax error is its own cluster
    same = rerank.behaviour(code, "rev | sort | rev", inputs)
    assert rerank.behaviour(code, "sort | rev", inputs) == same
    assert rerank.behaviour(code, "sort", [[3, 1, 2]]) == ("[1,2,3]",)
    assert rerank.behaviour(code, "no such step", inputs) is None
    assert rerank.passes_visible(TASKS["code"], code, code.answer)
    assert rerank.with_outputs(code, "len").startswith("len => ")
    arith = TASKS["arith"].problems(1, seed=0)[0]
    assert rerank.behaviour(arith, "42", []) == "42"
    assert rerank.passes_visible(TASKS["arith"], arith, "x")  # nothing to run: every answer


def test_auc_within_counts_each_distinct_answer_once():
    # one problem: the right "1" sampled 3 times (scored 0.99, 0.9, 0.9), the wrong "2" at 0.95
    # and "3" at 0.1. Over samples, right beats wrong in 4 of the 6 pairs (0.9 < 0.95 twice);
    # over distinct answers (each at its first sample) "1" at 0.99 beats both: 1.0
    answers = [["1", "2", "1", "1", "3"]]
    scores = [[0.99, 0.95, 0.9, 0.9, 0.1]]
    correct = [[True, False, True, True, False]]
    assert verifier.auc_within(scores, correct) == pytest.approx(4 / 6)
    assert verifier.auc_within(scores, correct, answers) == pytest.approx(1.0)


def test_auc_and_bootstrap_on_hand_computed_cases():
    # (correct, wrong) pairs: 0.9>0.2, 0.9>0.5, 0.4>0.2 ordered right, 0.4<0.5 wrong -> 3/4
    assert verifier.auc([0.9, 0.4, 0.2, 0.5], [1, 1, 0, 0]) == pytest.approx(3 / 4)
    assert verifier.auc([0.5, 0.5], [1, 0]) == pytest.approx(0.5)
    assert verifier.auc([0.1, 0.2, 0.9], [0, 0, 1]) == pytest.approx(1.0)
    lo, hi = rerank.bootstrap_ci([1.0] * 10)
    assert lo == hi == 1.0
    lo, hi = rerank.bootstrap_ci([0.0, 1.0] * 50, seed=0)
    assert lo < 0.5 < hi and hi - lo < 0.25
    # within problems: problem 1 ranks perfectly, problem 2 backwards, problem 3 has no pair
    assert verifier.auc_within([[0.9, 0.1], [0.9, 0.1], [0.5, 0.5]],
                             [[True, False], [False, True], [True, True]]) == pytest.approx(0.5)


def test_verifier_score_is_p_correct_over_p_correct_plus_p_incorrect():
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=32, block_size=32)).eval()
    prompts, completions = ["12+5=", "3*4="], ["71", "21"]
    with torch.no_grad():
        z = verifier.verifier_logit(model, prompts, completions)
        for i, (p, c) in enumerate(zip(prompts, completions)):
            ids = torch.tensor([verifier.encode(p + c) + [verifier.EOT]])
            probs = torch.softmax(model(ids)[0][0, -1], dim=-1)  # next token after the answer
            expected = probs[verifier.YES] / (probs[verifier.YES] + probs[verifier.NO])
            assert torch.sigmoid(z[i]).item() == pytest.approx(expected.item(), rel=1e-5)
        table = verifier.verifier_scores(model, list(zip(prompts, completions)) * 3, progress=False)
    assert len(table) == 2  # duplicates are scored once


def test_margin_groups_keep_only_problems_with_a_right_and_a_wrong_sample():
    examples = [("a", "1", True), ("a", "2", False), ("a", "3", False), ("b", "4", True),
                ("c", "5", False), ("a", "1", True)]
    assert verifier.margin_groups(examples) == [("a", ["1", "1"], ["2", "3"])]
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=32, block_size=32))
    with pytest.raises(ValueError, match="margin loss needs"):  # no problem gives a pair
        verifier.train_verifier(model, examples[3:5], 2, 4, 1e-3, 0, loss="margin", progress=False)


def test_margin_loss_is_hand_computable():
    # a "model" whose logits at the end position are fixed per completion: z(right) = 2, z(wrong) = 0
    class Fixed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))
            self.config = GPTConfig(block_size=32)

        def forward(self, idx):
            logits = torch.zeros(idx.shape[0], idx.shape[1], 257) + self.w
            right = (idx == verifier.encode("2")[0]).any(dim=1)  # (B,)
            logits[right, :, verifier.YES] = 2.0
            return logits, None
    groups = [("1+1=", ["2"], ["3"])]
    rng = torch.Generator().manual_seed(0)
    loss = verifier.margin_loss(Fixed(), groups, 4, rng, margin=1.0)
    # log S(right) = log sigmoid(2) = -0.1269, log S(wrong) = log sigmoid(0) = -0.6931
    # max(0, -0.6931 + 0.1269 + 1) = 0.4338
    assert loss.item() == pytest.approx(0.4338, abs=1e-4)
    # cross-entropy on single samples: -log sigmoid(2) = 0.1269 for a right "2" labelled right,
    # -log(1 - sigmoid(0)) = 0.6931 for a "3" labelled wrong
    assert verifier.xent_loss(Fixed(), [("1+1=", "2", True)], 4, rng).item() == pytest.approx(
        0.1269, abs=1e-4)
    assert verifier.xent_loss(Fixed(), [("1+1=", "3", False)], 4, rng).item() == pytest.approx(
        0.6931, abs=1e-4)


@pytest.mark.parametrize("loss", ["xent", "margin"])
def test_train_verifier_learns_to_prefer_the_right_answer(loss, one_thread, monkeypatch):
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=32, block_size=32))
    examples = [("1+1=", "2", True), ("1+1=", "3", False)] * 8
    calls = []  # the verifier trains in the repo's one loop, sft.train
    monkeypatch.setattr(verifier, "train", lambda *a, **k: calls.append(a) or sft.train(*a, **k))
    losses, kept = verifier.train_verifier(model, examples, steps=40, batch_size=8, lr=3e-3,
                                           warmup=5, loss=loss, progress=False)
    assert kept == {}  # no held-out problems: no early stopping
    assert len(calls) == 1 and calls[0][0] is model and len(losses) == 40
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
    with torch.no_grad():
        z = verifier.verifier_logit(model, ["1+1=", "1+1="], ["2", "3"])
    assert z[0] > z[1]


def test_early_stopping_keeps_the_checkpoint_with_the_best_heldout_auc(one_thread):
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=32, block_size=32))
    examples = [("1+1=", "2", True), ("1+1=", "3", False)] * 8
    seen = []  # a made-up held-out AUC: best at the 2nd check (step 10), then worse
    curve = iter([0.5, 0.9, 0.6, 0.7, 0.8, 0.95])

    def heldout(m):
        seen.append(copy.deepcopy(m.state_dict()))
        return next(curve)
    losses, kept = verifier.train_verifier(model, examples, steps=100, batch_size=4, lr=3e-3,
                                           warmup=0, progress=False, heldout=heldout,
                                           eval_every=10, patience=3)
    # checks at steps 0, 10, 20, 30, 40: no new best for 3 checks after step 10 -> stop at 40
    assert kept == {"start_auc": 0.5, "heldout_auc": 0.9, "step": 10}
    assert len(losses) == 40 and len(seen) == 5
    assert all(torch.equal(v, seen[1][k]) for k, v in model.state_dict().items())


def test_rerank_quick_runs_end_to_end_and_writes_results():  # ~6 s on one thread
    r = run("methods/rerank.py", "--quick")
    assert r.returncode == 0, r.stderr
    with open(os.path.join(ROOT, "out", "quick-results", "rerank-arith.json")) as f:
        res = json.load(f)
    arms = {row["arm"] for row in res["rows"]}
    # arith has no visible examples to run: no exec_verifier, and the filters pick as if all passed
    exec_arms = {a for a in rerank.ARMS if a.startswith("exec_")}
    assert set(rerank.ARMS) - exec_arms <= arms and not exec_arms & arms
    assert set(rerank.VERIFIERS) - {"exec_verifier"} <= arms
    by = {(row["arm"], row["step"], row["metric"]): row["value"] for row in res["rows"]}
    for n in (1, 4, 8):
        assert by[("pass@1", n, "test_acc")] <= by[("pass@N", n, "test_acc")] + 1e-9
        assert by[("maj", n, "ci_lo")] <= by[("maj", n, "test_acc")] <= by[("maj", n, "ci_hi")]
        assert by[("maj", n, "test_acc")] <= by[("pass@N", n, "test_acc")] + 1e-9
    assert by[("maj", 1, "test_acc")] == by[("rr_all", 1, "test_acc")]  # N = 1: nothing to choose
    assert "| maj | 8 |" in r.stdout
    for n in (1, 4, 8):  # filter_first is the first sample, filter_cluster the majority
        assert by[("filter_cluster", n, "test_acc")] == by[("maj", n, "test_acc")]


def test_rerank_quick_on_code_runs_the_programs():
    r = run("methods/rerank.py", "--quick", "--task", "code", "--verifiers", "exec_verifier")
    assert r.returncode == 0, r.stderr
    with open(os.path.join(ROOT, "out", "quick-results", "rerank-code.json")) as f:
        arms = {row["arm"] for row in json.load(f)["rows"]}
    assert {"filter_first", "filter_cluster", "exec_rr_all", "exec_verifier"} <= arms
    assert "verifier" not in arms and "rr_all" not in arms  # only the verifier asked for


@pytest.mark.parametrize("args", [["--ns", "1,3"], ["--ns", "x"], ["--samples", "0"],
                                  ["--task", "chess"], ["--small_embd", "33"],
                                  ["--verifiers", "oracle"]])
def test_bad_flags_get_one_line_errors(args, one_line_error):
    assert one_line_error(rerank.main, *args)
