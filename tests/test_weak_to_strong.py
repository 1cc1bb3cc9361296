import copy
import json
import math
import os
import subprocess
import sys

import pytest
import torch
from torch.nn import functional as F

import common
from conftest import ROOT
from model import EOT, GPT, GPTConfig, pack
from sample import generate, greedy
from sft import finetune
import weak_to_strong as w2s
from verify import TASKS


def test_pgr_on_hand_made_numbers():
    assert w2s.pgr(0.2, 0.5, 0.8) == pytest.approx(0.5)  # half the gap recovered
    assert w2s.pgr(0.3, 0.3, 0.9) == pytest.approx(0.0)  # pure imitation
    assert w2s.pgr(0.3, 0.9, 0.9) == pytest.approx(1.0)  # as good as ground truth
    assert w2s.pgr(0.4, 0.2, 0.8) == pytest.approx(-0.5)  # worse than the teacher
    assert w2s.pgr(0.5, 0.6, 0.5) is None  # no gap: PGR is undefined, not a huge number


def test_pgr_matrix_averages_the_final_step_over_seeds():
    def row(weak, strong, step, value, seed):
        return dict(arm="w2s_naive", weak=weak, strong=strong, step=step, metric="pgr",
                    value=value, seed=seed)
    rows = [row("S", "M", 0, 0.9, 0), row("S", "M", 10, 0.2, 0), row("M", "L", 10, -0.5, 0),
            row("S", "M", 0, 0.7, 1), row("S", "M", 10, 0.4, 1),
            dict(row("S", "L", 10, 0.8, 0), arm="w2s_conf")]  # another arm: not in this matrix
    lines = w2s.pgr_matrix(rows, "w2s_naive").splitlines()
    assert lines[1].split() == ["weak\\strong", "M", "L"]
    assert lines[2].split() == ["S", "0.30"] and lines[3].split() == ["M", "-0.50"]
    assert lines[3].index("-0.50") > lines[2].index("0.30")  # M -> L sits in the L column


def test_confidence_loss_equals_a_hand_computed_value():
    # one answer token with 2 classes; a second, masked token must not count
    logits = torch.tensor([[[0.0, math.log(3.0)], [5.0, -5.0]]])  # (1, 2, 2): p_s = [.25, .75]
    weak = torch.tensor([[[0.6, 0.4], [1.0, 0.0]]])  # (1, 2, 2)
    mask = torch.tensor([[1.0, 0.0]])
    # alpha 0.5: target = 0.5 * [0.6, 0.4] + 0.5 * onehot(argmax p_s = 1) = [0.3, 0.7]
    expected = -(0.3 * math.log(0.25) + 0.7 * math.log(0.75))
    assert w2s.w2s_loss(logits, weak, mask, 0.5).item() == pytest.approx(expected, rel=1e-5)
    # alpha 0 is the naive loss: CE against the weak soft label only
    naive = -(0.6 * math.log(0.25) + 0.4 * math.log(0.75))
    assert w2s.w2s_loss(logits, weak, mask, 0.0).item() == pytest.approx(naive, rel=1e-5)


def test_confidence_hardening_is_a_label_not_a_gradient_path():
    logits = torch.randn(2, 3, 5, requires_grad=True)
    weak = torch.softmax(torch.randn(2, 3, 5), -1)
    w2s.w2s_loss(logits, weak, torch.ones(2, 3), 1.0).backward()
    # with alpha 1 the target is the student's own argmax: the gradient is softmax - onehot
    p = torch.softmax(logits.detach(), -1)
    onehot = F.one_hot(logits.detach().argmax(-1), 5).float()
    assert torch.allclose(logits.grad, (p - onehot) / 6, atol=1e-6)


def test_soft_labels_that_are_one_hot_give_the_models_own_loss():
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=24))
    idx, targets = pack(["\n12*3>", "\n400*5>"], ["63", "0002"])
    logits, loss = model(idx, targets)
    onehot = F.one_hot(targets.clamp(min=0), logits.size(-1)).float()
    mask = (targets != -1).float()
    assert w2s.w2s_loss(logits, onehot, mask, 0.0).item() == pytest.approx(loss.item(), rel=1e-5)


def test_alpha_warms_up_linearly_over_the_first_fifth_then_stays():
    assert w2s.alpha_at(0, 100, 0.5) == 0.0
    assert w2s.alpha_at(10, 100, 0.5) == pytest.approx(0.25)
    assert w2s.alpha_at(20, 100, 0.5) == pytest.approx(0.5)
    assert w2s.alpha_at(99, 100, 0.75) == pytest.approx(0.75)
    assert w2s.alpha_at(5, 100, 0.75, warmup_frac=0.0) == 0.75
    # the run's delayed start: nothing for the first half, then the same 20% ramp
    assert w2s.alpha_at(49, 100, 0.75, start_frac=0.5) == 0.0
    assert w2s.alpha_at(60, 100, 0.75, start_frac=0.5) == pytest.approx(0.375)
    assert w2s.alpha_at(70, 100, 0.75, start_frac=0.5) == pytest.approx(0.75)


def taught_teacher(n=64, steps=40):
    """A tiny model fine-tuned a few steps on 3-digit facts, and those facts. (A random model
    writes bytes that are not valid UTF-8, and those do not survive decode -> encode.)"""
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=24))
    problems = [w2s.task_problem(a, b, 3) for a, b in w2s.splits(0, 3, n, 0, 0)[0]]
    finetune(model, [(p.prompt, p.answer) for p in problems], steps=steps, batch_size=16,
             lr=3e-3, warmup=5, progress=False)
    return model, problems


def test_weak_labels_are_the_teachers_greedy_answers_and_its_distributions():
    model, problems = taught_teacher()
    task = TASKS["arith"]
    problems, val = problems[:8], problems[8:12]
    labels = w2s.weak_labels(model, task, problems, val)
    assert labels["ans"] == [g[0] for g in generate(model, [p.prompt for p in problems],
                                                    max_new_tokens=task.max_tokens(3))]
    assert labels["right"] == [task.check(p, a).correct for p, a in zip(problems, labels["ans"])]
    assert labels["val"] == greedy(model, task, val)[0]  # its answers on the held-out facts
    idx, targets = pack([p.prompt for p in problems], labels["ans"])
    probs = labels["probs"]
    assert probs.shape == (8, idx.size(1), model.config.vocab_size)
    assert torch.allclose(probs.sum(-1), torch.ones(8, idx.size(1)))
    # greedy decoding picks the argmax, so along the answer the soft label's argmax is the answer
    # (pack appends an end token, which a teacher cut off at max_new_tokens never chose)
    mask = (targets != -1) & (targets != EOT)
    assert mask.sum() > 0 and torch.equal(probs.argmax(-1)[mask], targets[mask])


def test_naive_loss_on_one_hot_labels_trains_exactly_like_sft():
    # weak_to_strong's training is sft.train with another loss: on one-hot labels of the
    # answers the naive loss is the SFT loss, and the batches are drawn the same way
    teacher, problems = taught_teacher(n=32, steps=5)
    answers = [p.answer for p in problems]
    idx, targets = pack([p.prompt for p in problems], answers)
    onehot = F.one_hot(targets.clamp(min=0), teacher.config.vocab_size).float()
    labels = dict(problems=problems, ans=answers, probs=onehot)
    a, b = copy.deepcopy(teacher), copy.deepcopy(teacher)
    seen = []
    losses = w2s.train_on_weak_labels(a, labels, steps=6, batch_size=8, lr=1e-3, warmup=2,
                                      seed=3, evaluate_at=(0, 3, 6), evaluate=seen.append,
                                      progress=False)
    sft_losses = finetune(b, [(p.prompt, p.answer) for p in problems], steps=6, batch_size=8,
                          lr=1e-3, warmup=2, seed=3, progress=False)
    assert seen == [0, 3, 6] and len(losses) == 6
    assert losses == pytest.approx(sft_losses, rel=1e-5)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.allclose(pa, pb, atol=1e-6)


def test_the_confidence_weight_follows_the_step_of_the_loop(monkeypatch):
    teacher, problems = taught_teacher(n=16, steps=5)
    labels = w2s.weak_labels(teacher, TASKS["arith"], problems, problems[:2])
    calls = []
    real = w2s.alpha_at
    monkeypatch.setattr(w2s, "alpha_at", lambda step, *a, **k: calls.append(step) or real(
        step, *a, **k))
    w2s.train_on_weak_labels(teacher, labels, steps=7, batch_size=4, lr=1e-3, warmup=1,
                             alpha_max=0.75, conf_start=0.5, progress=False)
    assert calls == list(range(7))  # one weight per optimizer step, in order


def test_the_ladder_is_cached_under_its_settings(one_thread):
    first = w2s.pretrained("S", 0, quick=True, progress=False)
    again = w2s.pretrained("S", 0, quick=True, progress=False)
    assert first.meta["settings"] == w2s.ladder_settings("S", quick=True)
    assert all(torch.equal(x, y) for x, y in zip(first.parameters(), again.parameters()))
    assert first.config.n_embd == w2s.QUICK_LADDER["S"]["n_embd"]
    assert common.find_checkpoint("quick-w2s-S", 0) is not None  # out/, keyed by the settings


def test_splits_are_disjoint_deterministic_and_inside_the_pretraining_table():
    a, b, val, test, c = w2s.splits(0, 2, 200, 100, 200)
    assert (len(a), len(b), len(val), len(test), len(c)) == (200, 200, 100, 200, 200)
    facts = [f for part in (a, b, val, test, c) for f in part]
    assert len(set(facts)) == len(facts)  # no fact in two parts
    assert set(facts) <= set(w2s.table(2)) and len(w2s.table(2)) == 1000
    assert w2s.splits(0, 2, 200, 100, 200) == (a, b, val, test, c)
    assert w2s.splits(1, 2, 200, 100, 200)[3] != test  # another seed, other facts
    # the sets are cut in order, so a later set's size never moves an earlier one (that is how
    # half C could be added after the test set without changing A, B, val or test)
    assert w2s.splits(0, 2, 200, 100, 100)[:3] == (a, b, val)
    with pytest.raises(ValueError):
        w2s.splits(0, 2, 300, 100, 100)  # 1100 facts asked of a 1000-fact table


def test_task_format_and_pretraining_format_share_every_position_but_one():
    prompt, answer = w2s.pretrain_pair(123, 4)
    p = w2s.task_problem(123, 4, 3)
    assert (prompt, answer) == ("\n123*4=", "294") and p.prompt == "\n123*4>"
    assert [x == y for x, y in zip(prompt, p.prompt)].count(False) == 1
    assert TASKS["arith"].check(p, "294").correct and not TASKS["arith"].check(p, "492").correct
    assert TASKS["arith"].check(w2s.task_problem(250, 4, 3), "0001").correct  # 1000 reversed


def run(*args):
    env = dict(os.environ, OMP_NUM_THREADS="1")  # tiny models: one thread is fastest
    return subprocess.run([sys.executable, "methods/weak_to_strong.py", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env=env)


def test_bad_flags_are_one_line_errors(one_line_error):
    for args in (["--steps", "0"], ["--task", "code"], ["--seeds", "x"], ["--conf_start", "1"],
                 ["--half", "4000"]):
        assert one_line_error(w2s.main, *args)


def test_quick_run_end_to_end_writes_results_and_a_pgr_matrix():
    r = run("--quick")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "PGR, w2s_naive" in r.stdout and "weak\\strong" in r.stdout
    with open(os.path.join(ROOT, "out", "quick-results", "weak_to_strong-arith.json")) as f:
        record = json.load(f)
    rows = record["rows"]
    arms = {r["arm"] for r in rows}
    assert arms == {"pretrained", "weak", "ceiling", "w2s_naive", "w2s_conf", "w2s_random_init",
                    "w2s_boot"}
    pairs = {(r["weak"], r["strong"]) for r in rows if r["metric"] == "agree_on_weak_errors"}
    assert pairs == {("S", "M"), ("S", "L"), ("M", "L")}
    fits = {(r["arm"], r["weak"], r["strong"]) for r in rows if r["metric"] == "fit_weak_labels"}
    assert len(fits) == 10  # every w2s arm of every pair says how well it fits its labels
    boot = {(r["weak"], r["strong"]) for r in rows if r["arm"] == "w2s_boot"}
    assert boot == {("S", "L")}  # the chain S -> M -> L is reported as the pair S -> L
    assert all(0.0 <= r["value"] <= 1.0 for r in rows
               if r["metric"] in ("test_acc", "weak_val_acc", "fit_weak_labels"))
