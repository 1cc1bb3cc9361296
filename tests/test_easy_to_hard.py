import json
import math
import os

import pytest
import torch

import common
import easy_to_hard as e2h
from conftest import run_script
from model import EOT, GPTConfig, KVCache, encode, load, save
from sample import generate


def tiny(offset=0):
    torch.manual_seed(0)
    config = GPTConfig(n_layer=2, n_head=4, n_embd=32, block_size=32, pos_embedding="none")
    return e2h.DigitRoPE(config, rope_scale=0.7, offset=offset).eval()


def test_digit_index_counts_within_each_number_and_equals_opens_the_answer():
    idx = torch.tensor([encode("12+345=9876")])
    assert e2h.digit_index(idx).tolist() == [[1, 2, 0, 1, 2, 3, 1, 2, 3, 4, 5]]
    # left padding (EOT) is not a digit: the row's indices do not move
    padded = torch.tensor([[EOT, EOT] + encode("1+2=3")])
    assert e2h.digit_index(padded).tolist() == [[0, 0, 1, 0, 1, 1, 2]]


def test_digit_index_continues_a_number_across_cached_chunks():
    class Cache:  # digit_index only reads and writes cache.digit_run
        pass
    cache = Cache()
    whole = e2h.digit_index(torch.tensor([encode("12+34=56")]))
    first = e2h.digit_index(torch.tensor([encode("12+3")]), cache)
    rest = [e2h.digit_index(torch.tensor([[t]]), cache) for t in encode("4=56")]
    assert torch.cat([first] + rest, dim=1).tolist() == whole.tolist()


def test_rotation_by_hand_and_it_keeps_norms():
    x = torch.tensor([1.0, 0.0, 0.0, 2.0]).view(1, 1, 1, 4)  # two pairs: (1, 0), (0, 2)
    angle = torch.tensor([math.pi / 2, math.pi]).view(1, 1, 1, 2)
    y = e2h.rotate(x, angle.cos(), angle.sin())
    assert y.flatten().tolist() == pytest.approx([0.0, 1.0, 0.0, -2.0], abs=1e-6)
    z = torch.randn(2, 3, 4, 8)
    a = torch.randn(2, 3, 1, 4)
    assert e2h.rotate(z, a.cos(), a.sin()).norm(dim=-1) == pytest.approx(z.norm(dim=-1))


def test_shifting_every_digit_index_changes_nothing_among_digits():
    # RoPE: q_i . k_j depends on the indices only through i - j, so a row of digits gives the
    # same logits whatever random offset training adds to its indices
    m = tiny(offset=50)
    idx = torch.tensor([encode("1234567")])
    plain, _ = m(idx)
    m.train()
    torch.manual_seed(3)
    shifted, _ = m(idx)
    assert torch.allclose(plain, shifted, atol=1e-4)
    # with a non-digit in the row the shift is seen (digit-to-"+" pairs change)
    torch.manual_seed(3)
    mixed, _ = m(torch.tensor([encode("123+456")]))
    assert not torch.allclose(mixed, m.eval()(torch.tensor([encode("123+456")]))[0], atol=1e-4)


def test_kv_cached_left_padded_decoding_equals_the_full_forward():
    m = tiny()
    rows = ["12+345=9876", "1+2=34567", "99999+1=00"]
    P = 5  # the last P tokens of each row are fed one at a time through the cache
    ids = [encode(r) for r in rows]
    prefix = [x[:len(x) - P] for x in ids]
    width = max(len(x) for x in prefix)
    idx = torch.tensor([[EOT] * (width - len(x)) + x for x in prefix])
    cache = KVCache(m.config, 3, width + P, "cpu", pad=torch.tensor([width - len(x) for x in prefix]))
    with torch.no_grad():
        logits, _ = m(idx, cache=cache)
        steps = [logits[:, -1]]
        for t in range(P - 1):
            logits, _ = m(torch.tensor([[x[len(x) - P + t]] for x in ids]), cache=cache)
            steps.append(logits[:, -1])
        for i, x in enumerate(ids):
            full, _ = m(torch.tensor([x]))
            want = full[0, len(x) - P - 1:len(x) - 1]
            got = torch.stack([s[i] for s in steps])
            assert torch.allclose(want, got, atol=1e-5)


def test_save_and_load_give_the_same_model(tmp_path):
    m = tiny()
    path = str(tmp_path / "m.pt")
    save(m, path)
    back = e2h.as_digit_rope(load(path), 0.7, 0)
    prompts = ["12+345=", "1+2="]
    assert generate(back, prompts, max_new_tokens=4) == generate(m, prompts, max_new_tokens=4)


def test_problems_are_reversed_zero_padded_and_in_their_split():
    assert e2h.problem(207, 15, 3) == ("7020+5100=", "2220")
    assert e2h.problem(999, 1, 3) == ("9990+1000=", "0001")
    test = e2h.problems(20, 2, "test", seed=0)
    assert len(test) == 20
    assert all(e2h.split_of(p) == "test" and len(a) == 3 for p, a in test)


def test_solved_len_needs_every_shorter_length():
    assert e2h.solved_len({1: 1.0, 2: 0.96, 3: 0.9, 4: 1.0}) == 2
    assert e2h.solved_len({1: 0.5, 2: 1.0}) == 0


def test_the_vote_keeps_only_agreed_well_formed_labels():
    prompts = ["a", "b", "c", "d"]
    votes = [["123", "111", "12", "9x9"],
             ["123", "222", "12", "9x9"],
             ["123", "111", "12", "9x9"],
             ["124", "111", "12", "9x9"]]
    # L = 2: a label has 3 digits; "c" has none well formed, "d" none that are digits
    assert e2h.vote(prompts, votes, 2, agree=0.75) == [("a", "123"), ("b", "111")]
    assert e2h.vote(prompts, votes, 2, agree=1.0) == []


def test_quick_run_writes_every_arm_per_round():
    r = run_script("methods/easy_to_hard.py", "--quick", "--seeds", "0,1", timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    with open(os.path.join(common.OUT, "quick-results", "easy_to_hard-add.json")) as f:
        rec = json.load(f)
    got = {(row["arm"], row["step"], row["seed"]) for row in rec["rows"]
           if row["metric"] == "solved_len"}
    assert {(arm, 2, s) for arm in e2h.ARMS for s in (0, 1)} <= got
    assert {("base", 0, s) for s in (0, 1)} <= got
    oracle = [row["value"] for row in rec["rows"]
              if row["arm"] == "oracle_filtered" and row["metric"] == "label_acc"
              and any(k["arm"] == "oracle_filtered" and k["metric"] == "kept" and k["value"] > 0
                      and k["step"] == row["step"] and k["seed"] == row["seed"]
                      for k in rec["rows"])]
    assert all(v == 1.0 for v in oracle)  # the oracle's filter keeps only right labels
    # the bases are cached: a second run loads them (a checkpoint whose metadata torch's safe
    # loader refuses would be retrained every time, with a notice on stderr)
    again = run_script("methods/easy_to_hard.py", "--quick", "--seeds", "0,1", "--arms",
                       "filtered", timeout=300)
    assert again.returncode == 0 and "not a checkpoint" not in again.stderr, again.stderr[-2000:]
