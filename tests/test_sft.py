import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import ROOT
from model import GPT, GPTConfig, pack
import common
import sft
from verify import TASKS


def run(*args):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_lr_schedule_warms_up_then_decays_to_the_floor():
    lr = 1e-3
    assert sft.lr_at(0, 100, lr, 10) == pytest.approx(1e-4)
    assert sft.lr_at(9, 100, lr, 10) == pytest.approx(1e-3)
    assert sft.lr_at(10, 100, lr, 10) == pytest.approx(1e-3)  # cosine starts at the peak
    assert sft.lr_at(55, 100, lr, 10) == pytest.approx(0.55e-3)  # halfway: (0.1 + 1) / 2
    assert sft.lr_at(100, 100, lr, 10) == pytest.approx(1e-4)


def test_finetune_lowers_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=32, block_size=32))
    problems = TASKS["arith"].problems(32, seed=0)
    pairs = [(p.prompt, p.answer) for p in problems]
    idx, targets = pack([p for p, _ in pairs], [c for _, c in pairs])
    with torch.no_grad():
        before = model(idx, targets)[1].item()
    losses = sft.finetune(model, pairs, steps=60, batch_size=16, lr=3e-3, warmup=5,
                          progress=False)
    with torch.no_grad():
        after = model(idx, targets)[1].item()
    assert after < before - 1.0 and len(losses) == 60


def test_base_model_is_cached_and_reloaded_identically(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "OUT", str(tmp_path))
    arith = TASKS["arith"]
    a = sft.base_model(arith, seed=0, quick=True, progress=False)
    files = os.listdir(tmp_path)
    assert len(files) == 1 and files[0].endswith(".pt")  # no temporary file left behind
    b = sft.base_model(arith, seed=0, quick=True, progress=False)
    for (na, pa), (nb, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert na == nb and torch.equal(pa, pb)
    # another seed is another model; a corrupt cache file is retrained, not a crash
    sft.base_model(arith, seed=1, quick=True, progress=False)
    assert len(os.listdir(tmp_path)) == 2
    with open(tmp_path / files[0], "wb") as f:
        f.write(b"truncated")
    c = sft.base_model(arith, seed=0, quick=True, progress=False)
    assert torch.equal(c.lm_head.weight, a.lm_head.weight)  # same seed, same training


def test_the_base_keeps_its_best_validation_checkpoint(tmp_path, monkeypatch):
    """Early stopping: whatever the validation accuracy does during training, the cached base
    is the checkpoint at the step where it was highest, and its meta says which."""
    monkeypatch.setattr(common, "OUT", str(tmp_path))
    scores = iter([0.1, 0.5, 0.3])  # validation accuracy at steps 10, 20, 30 (a made-up curve)
    states = {}

    def fake_evaluate(model, task, problems, **kw):
        step = 10 * (len(states) + 1)
        states[step] = {k: v.clone() for k, v in model.state_dict().items()}
        return {"greedy_acc": next(scores)}

    monkeypatch.setattr(sft, "evaluate", fake_evaluate)
    monkeypatch.setitem(sft.BASE_QUICK, "steps", 30)
    model = sft.base_model(TASKS["arith"], seed=0, quick=True, progress=False)
    assert model.meta["kept"] == {"val_acc": 0.5, "step": 20}
    for k, v in model.state_dict().items():
        assert torch.equal(v, states[20][k]), k


def test_gold_val_and_pool_never_share_a_prompt_and_the_abundant_base_sees_the_pool():
    task = TASKS["arith"]
    s = sft.base_settings(task, "scarce")
    gold, val = sft.gold_data(task, s, seed=0)
    pool = task.problems(2000, seed=0, split="pool")
    assert len(gold) == s["n_gold"] and len(val) == s["n_val"]
    sets = [{p.prompt for p in x} for x in (gold, val, pool, task.problems(500, 0, "test"))]
    assert all(not (a & b) for i, a in enumerate(sets) for b in sets[i + 1:])
    assert sft.gold_data(task, s, seed=0)[0] == gold  # deterministic
    abundant, _ = sft.gold_data(task, sft.base_settings(task, "abundant"), seed=0)
    assert {p.prompt for p in abundant} & sets[2]  # the first round's base saw pool prompts


def test_sft_quick_runs_end_to_end_and_writes_results():
    r = run("methods/sft.py", "--task", "code", "--quick")
    assert r.returncode == 0, r.stderr
    path = os.path.join(ROOT, "out", "quick-results", "sft-code.json")
    with open(path) as f:
        res = json.load(f)
    metrics = {row["metric"] for row in res["rows"]}
    assert {"test_acc", "pass@1", "pass@4"} <= metrics
    assert {row["arm"] for row in res["rows"]} == {"base", "sft_more", "sft_gold_pool",
                                                   "n_gold_100"}
    assert "| base | 0 |" in r.stdout


@pytest.mark.parametrize("args", [["--task", "chess"], ["--seeds", "a,b"], ["--samples", "0"],
                                  ["--device", "tpu"]])
def test_bad_flags_get_one_line_errors(args, one_line_error):
    assert one_line_error(sft.main, "--quick", *args)


def test_sample_cli_rejects_a_foreign_checkpoint(tmp_path):
    junk = tmp_path / "x.pt"
    junk.write_text("hello")
    r = run("sample.py", "--ckpt", str(junk), "--prompt", "1+1=")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0 and "not a checkpoint" in r.stderr


def test_early_stopping_keeps_the_best_checkpoint_and_stops_after_patience(monkeypatch):
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=32))
    scores = iter([0.5, 0.4, 0.45, 0.3, 0.2])  # at steps 2, 4, 6, ...: step 2 is the best
    kept_states = []

    def fake_evaluate(m, task, problems, **k):
        kept_states.append({k: v.clone() for k, v in m.state_dict().items()})
        return {"greedy_acc": next(scores)}

    monkeypatch.setattr(sft, "evaluate", fake_evaluate)
    pairs = [(p.prompt, p.answer) for p in TASKS["arith"].problems(8, seed=0)]
    kept = sft.finetune_early_stopped(model, TASKS["arith"], pairs, ["val"], steps=20,
                                      eval_every=2, patience=2, batch_size=4, lr=1e-2, warmup=1,
                                      progress=False)
    assert kept == {"val_acc": 0.5, "step": 2}  # stopped at step 6: two checks without a best
    assert len(kept_states) == 3
    assert all(torch.equal(v, kept_states[0][k]) for k, v in model.state_dict().items())


def test_the_curve_and_abundant_bases_never_shadow_the_default_one(tmp_path, monkeypatch):
    """sample.py and bench.py load the newest out/base-<task>-seed<s>-*.pt: the bases of the
    curve against N and of the abundant regime must not be picked up as the default."""
    monkeypatch.setattr(common, "OUT", str(tmp_path))
    monkeypatch.setitem(sft.BASE_QUICK, "steps", 2)
    task = TASKS["arith"]
    default = sft.base_model(task, seed=0, quick=True, progress=False)
    sft.base_model(task, seed=0, quick=True, n_gold=50, progress=False)  # trained after it
    same = sft.base_model(task, seed=0, quick=True, n_gold=sft.BASE_QUICK["n_gold"],
                          progress=False)  # the default N: the same cached model
    assert sorted(os.listdir(tmp_path)) == sorted([
        os.path.basename(common.find_checkpoint("quick-base-arith", 0)),
        os.path.basename(common.find_checkpoint("quick-base-arith-n50", 0))])
    assert all(torch.equal(a, b) for a, b in zip(default.state_dict().values(),
                                                 same.state_dict().values()))
