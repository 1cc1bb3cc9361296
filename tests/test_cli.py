"""Bad input gets one line and exit status 2 before any compute; results are always whole runs;
a corrupt cached checkpoint is retrained; GPU paths where a GPU exists."""
import json

import pytest
import torch

import common
import run_all
import sample
from conftest import run_script
from model import GPT, GPTConfig

FLAGS = dict(lr=(1e-3, "rate"), warmup=(10, "warm-up", 0), temperature=(0.8, "T"),
             arms=("a,b", "arms"), quiet=(False, "no bars"))


def one_line_exit(capsys, fn):
    """fn() must exit with status 2 and one line on stderr; returns that line."""
    with pytest.raises(SystemExit) as e:
        fn()
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err and "error:" in err
    return err


@pytest.mark.parametrize("argv, says", [
    (["--lr", "nan"], "finite"), (["--lr", "inf"], "finite"), (["--temperature=-inf"], "finite"),
    (["--lr", "0"], "> 0"), (["--warmup", "-1"], ">= 0"), (["--lr", "x"], "invalid"),
    (["--seeds", "0,0,1"], "repeats"), (["--seeds", "-1"], "non-negative"),
    (["--seeds", "a"], "integers"), (["--task", "chess"], "unknown task"),
    (["--device", "tpu"], "unknown device"), (["--dtype", "fp8"], "invalid choice")])
def test_bad_flags_fail_in_one_line(capsys, argv, says):
    err = one_line_exit(capsys, lambda: common.parse_args("doc", FLAGS, {}, "arith", argv=argv))
    assert says in err


def test_flags_parse_with_their_types_and_quick_values():
    args = common.parse_args("doc", FLAGS, {"lr": 5e-4}, "arith",
                             argv=["--seeds", "2,0", "--warmup", "0", "--quick", "--quiet"])
    assert args.seeds == [2, 0] and args.warmup == 0 and args.lr == 5e-4 and args.quiet
    assert args.device in ("cpu", "cuda", "mps") and args.dtype == "float32"


def test_unwritable_results_or_out_fail_before_any_compute(capsys, monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setattr(common, "OUT", str(blocker / "out"))  # cannot be created: a file's child
    err = one_line_exit(capsys, lambda: common.parse_args("doc", FLAGS, {}, "arith", argv=[]))
    assert "cannot write" in err


def test_results_are_written_only_when_every_seed_is_done(monkeypatch, tmp_path):
    monkeypatch.setattr(common, "OUT", str(tmp_path / "out"))
    monkeypatch.setattr(common, "RESULTS", str(tmp_path / "results"))
    args = common.parse_args("doc", FLAGS, {}, "arith", argv=["--seeds", "0,1,2"])
    results = tmp_path / "results" / "spin-arith.json"   # spin: any method with a code version
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text('{"committed": true}')

    def run_seed(seed, task, device, quick, **hyper):
        if seed == 1:
            raise KeyboardInterrupt  # the user stops the run during the second seed
        return [dict(arm="a", step=0, metric="m", value=0.5)]

    with pytest.raises(KeyboardInterrupt):
        common.run_seeds("spin", args, run_seed, FLAGS)
    assert json.loads(results.read_text()) == {"committed": True}  # the committed run survives
    partial = json.loads((tmp_path / "out" / "partial" / "spin-arith.json").read_text())
    assert partial["seeds_done"] == [0] and partial["rows"][0]["seed"] == 0  # seed 0 is kept

    rows = common.run_seeds("spin", args, lambda seed, *context, **hyper: [
        dict(arm="a", step=0, metric="m", value=seed)], FLAGS)
    record = json.loads(results.read_text())
    assert record["seeds"] == [0, 1, 2] and len(rows) == 3
    assert {"device", "dtype", "torch", "threads"} <= set(record["config"])
    assert not (tmp_path / "out" / "partial" / "spin-arith.json").exists()


def test_a_corrupt_cached_checkpoint_is_retrained_with_a_notice(tmp_path, capsys):
    path = str(tmp_path / "m.pt")
    calls = []

    def train():
        calls.append(1)
        torch.manual_seed(0)
        return GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=16))

    first = common.cached(path, train, "cpu")
    again = common.cached(path, train, "cpu")
    assert len(calls) == 1 and torch.equal(first.lm_head.weight, again.lm_head.weight)
    ck = torch.load(path, weights_only=True)
    ck["state_dict"]["lm_head.weight"][0, 0] += 1.0  # a flipped weight on disk
    torch.save(ck, path)
    common.cached(path, train, "cpu")
    assert len(calls) == 2 and "checksum" in capsys.readouterr().err


def test_run_all_counts_a_result_from_another_machine_as_stale(monkeypatch, tmp_path):
    monkeypatch.setattr(common, "RESULTS", str(tmp_path))
    record = dict(method="spin", task="arith", seeds=[0, 1, 2], code=common.code_version("spin"),
                  argv=["--task", "arith", "--seeds", "0,1,2", "--device", "cpu"],
                  config=dict(device="cpu", dtype="float32", threads=1), wall_seconds=1.0)
    path = tmp_path / "spin-arith.json"
    for change, says in ((dict(), "current"), (dict(device="cuda"), "made on cuda"),
                         (dict(dtype="bf16"), "made in bf16"), (dict(threads=2), "2 threads")):
        path.write_text(json.dumps(dict(record, config=dict(record["config"], **change))))
        state, _ = run_all.status("spin", "arith", [0, 1, 2], "cpu", 1)
        assert says in state


@pytest.mark.parametrize("argv, says", [
    (["--prompt", ""], "empty"), (["--top_k", "0"], "top_k"), (["--top_k", "-3"], "top_k"),
    (["--top_k", "258"], "top_k"), (["--max_new_tokens", "-5"], "max_new_tokens"),
    (["--max_new_tokens", "0"], "max_new_tokens"), (["--temperature", "-1"], "temperature"),
    (["--temperature", "inf"], "temperature"), (["--temperature", "nan"], "temperature"),
    (["--task", "chess"], "unknown task")])
def test_sample_cli_rejects_bad_input_in_one_line(capsys, argv, says):
    assert says in one_line_exit(capsys, lambda: sample.main(argv))


def test_a_method_rejects_nan_and_repeated_seeds_as_a_script():
    for argv in (["--lam", "nan"], ["--seeds", "0,0,1"], ["--arms", "spin,dpo"]):
        r = run_script("methods/spin.py", "--quick", *argv, timeout=120)
        err = r.stderr.strip()
        assert r.returncode == 2 and err.count("\n") == 0 and "Traceback" not in err, err


GPUS = [d for d, ok in (("cuda", torch.cuda.is_available()),
                        ("mps", getattr(torch.backends, "mps", None) is not None
                         and torch.backends.mps.is_available())) if ok]


@pytest.mark.skipif(not GPUS, reason="no CUDA or MPS device here")
@pytest.mark.parametrize("device", GPUS)
def test_greedy_output_on_the_gpu_equals_the_cpu(device):
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=32)).eval()
    prompts = ["12+34=", "5*7=", "999+1=", "1"]
    on_cpu = sample.generate(model, prompts, n=1, max_new_tokens=8)
    on_gpu = sample.generate(model.to(device), prompts, n=1, max_new_tokens=8)
    assert on_gpu == on_cpu


@pytest.mark.skipif(not GPUS, reason="no CUDA or MPS device here")
@pytest.mark.parametrize("device", GPUS)
def test_a_quick_method_run_on_the_gpu(device):
    r = run_script("methods/spin.py", "--quick", "--no_progress", "--device", device, timeout=300)
    assert r.returncode == 0, r.stderr
