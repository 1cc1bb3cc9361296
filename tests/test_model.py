import math

import pytest
import torch

from model import (EOT, GPT, GPTConfig, CheckpointError, KVCache, completion_logprobs, decode,
                   encode, load, pack, save)
from sample import generate, majority_vote, pass_at_k


def small_model(seed=0, **kw):
    torch.manual_seed(seed)
    cfg = dict(n_layer=2, n_head=2, n_embd=32, block_size=64)
    cfg.update(kw)
    return GPT(GPTConfig(**cfg)).eval()


def test_tokenizer_roundtrip_and_one_token_per_char():
    text = "123+45=\nsort | add 2 [1,2,3]"
    ids = encode(text)
    assert len(ids) == len(text) and decode(ids) == text
    # the special token's text is ordinary bytes, never the end-of-text id
    assert EOT not in encode("<|endoftext|>")
    assert decode([ord("a"), EOT, ord("b")]) == "ab"


def test_causal_future_token_never_changes_earlier_logits():
    m = small_model()
    x = torch.randint(0, 256, (2, 20))
    y = x.clone()
    y[:, 12:] = torch.randint(0, 256, (2, 8))
    with torch.no_grad():
        lx, _ = m(x)
        ly, _ = m(y)
    assert torch.allclose(lx[:, :12], ly[:, :12], atol=1e-6)
    assert not torch.allclose(lx[:, 12:], ly[:, 12:])


def test_left_padded_batch_equals_each_prompt_alone():
    """Prompts of different lengths in one left-padded batch, prefilled and then decoded with
    the cache: every row's logits equal those of its prompt run alone, without padding."""
    m = small_model()
    prompts = [[5, 6, 7, 8, 9, 10], [11, 12, 13], [14]]
    nxt = [[1, 2], [3, 4], [5, 6]]  # two more tokens per row, fed one at a time
    L = max(len(p) for p in prompts)
    pad = torch.tensor([L - len(p) for p in prompts])
    idx = torch.tensor([[EOT] * (L - len(p)) + p for p in prompts])  # (3, L)
    with torch.no_grad():
        cache = KVCache(m.config, 3, L + 2, "cpu", pad=pad)
        first = m(idx, cache=cache)[0][:, -1]  # (3, vocab): after each whole prompt
        later = [m(torch.tensor([[n[t]] for n in nxt]), cache=cache)[0][:, -1] for t in range(2)]
        for i, p in enumerate(prompts):
            alone = m(torch.tensor([p + nxt[i]]))[0][0]  # (T, vocab)
            assert torch.allclose(first[i], alone[len(p) - 1], atol=1e-5)
            for t in range(2):
                assert torch.allclose(later[t][i], alone[len(p) + t], atol=1e-5)


def test_generate_batches_prompts_of_any_length_like_one_at_a_time():
    m = small_model()
    prompts = ["1+1=", "123+456=", "9*9=", "55+5=", "7"]
    for n, temperature in ((1, 0.0), (1, 1.0), (3, 1.0)):
        together = generate(m, prompts, n=n, max_new_tokens=6, temperature=temperature)
        assert [len(t) for t in together] == [n] * len(prompts)
        if temperature == 0:  # greedy does not depend on the batch
            assert together == [generate(m, [p], n=1, max_new_tokens=6)[0] for p in prompts]
    with pytest.raises(ValueError):
        generate(m, ["1+1=", ""], n=1)
    with pytest.raises(ValueError):
        generate(m, ["1+1="], temperature=float("inf"))


def test_kv_cache_forward_equals_full_forward():
    m = small_model()
    x = torch.randint(0, 256, (3, 16))
    with torch.no_grad():
        full, _ = m(x)
        cache = KVCache(m.config, 3, 16, "cpu", torch.float32)
        first, _ = m(x[:, :10], cache=cache)  # prefill 10 tokens, then one at a time
        steps = [m(x[:, t:t + 1], cache=cache)[0] for t in range(10, 16)]
    cached = torch.cat([first] + steps, dim=1)
    assert torch.allclose(full, cached, atol=1e-5)


def greedy_by_recompute(model, prompt, max_new):
    ids = encode(prompt)
    out = []
    with torch.no_grad():
        for _ in range(max_new):
            logits, _ = model(torch.tensor([ids + out]))
            nxt = int(logits[0, -1].argmax())
            if nxt == EOT:
                break
            out.append(nxt)
    return decode(out)


def test_kv_cache_greedy_generation_equals_full_recompute():
    m = small_model(seed=3)
    prompts = ["12+34=", "99*7=", "1+1=", "in [1,2] out [2,1]\nprog: "]
    got = generate(m, prompts, n=2, max_new_tokens=20, temperature=0.0)
    for p, g in zip(prompts, got):
        want = greedy_by_recompute(m, p, 20)
        assert g == [want, want]


def test_generate_stops_at_end_of_text():
    m = small_model()
    with torch.no_grad():  # make <|endoftext|> overwhelmingly likely
        m.lm_head.weight[EOT] += 5.0 * m.transformer.ln_f.bias.new_ones(32)
        m.transformer.ln_f.bias.fill_(1.0)
    out = generate(m, ["1+1="], n=3, max_new_tokens=10, temperature=1.0)
    assert out == [["", "", ""]]


def test_same_seed_same_samples_and_different_seed_differs():
    m = small_model()
    prompts = ["12+34=", "5*6="]
    a = generate(m, prompts, n=8, max_new_tokens=8, temperature=1.0, seed=7)
    b = generate(m, prompts, n=8, max_new_tokens=8, temperature=1.0, seed=7)
    c = generate(m, prompts, n=8, max_new_tokens=8, temperature=1.0, seed=8)
    assert a == b and a != c
    assert all(len(s) == 8 for s in a)


def test_pass_at_k_matches_the_binomial_formula():
    for n, c, k in [(5, 0, 1), (5, 0, 3), (5, 5, 1), (5, 5, 5), (10, 3, 1), (10, 3, 4),
                    (10, 8, 3), (16, 1, 16), (20, 17, 4), (6, 2, 5)]:
        want = 1.0 - math.comb(n - c, k) / math.comb(n, k)
        assert pass_at_k(n, c, k) == pytest.approx(want, abs=1e-12)
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(4, 2, 3) == 1.0  # n - c < k: every draw of 3 holds a correct one
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)


def test_majority_vote_ties_go_to_first_seen():
    assert majority_vote(["3", "4", "4", "3", "5"]) == "3"
    assert majority_vote(["a", "b", "b"]) == "b"
    assert majority_vote([]) is None


def test_pack_masks_the_prompt_and_learns_end_of_text():
    idx, tgt = pack(["ab=", "a="], ["12", "3456"])
    assert idx.shape == tgt.shape == (2, 6)
    # row 0: "ab=12<eot>": inputs "ab=12", targets [-, -, '1', '2', EOT], then padding
    assert idx[0, :5].tolist() == encode("ab=12")
    assert tgt[0].tolist() == [-1, -1, ord("1"), ord("2"), EOT, -1]
    assert tgt[1].tolist() == [-1, ord("3"), ord("4"), ord("5"), ord("6"), EOT]


def test_completion_logprobs_sum_equals_chain_rule():
    m = small_model()
    prompt, completion = "12+34=", "64"
    logp, mask = completion_logprobs(m, [prompt], [completion])
    total = float((logp * mask).sum().detach())
    ids = encode(prompt)
    want = 0.0
    with torch.no_grad():
        for tok in encode(completion) + [EOT]:
            logits, _ = m(torch.tensor([ids]))
            want += float(torch.log_softmax(logits[0, -1], -1)[tok])
            ids.append(tok)
    assert total == pytest.approx(want, abs=1e-4)
    assert int(mask.sum()) == 3


def test_save_load_gives_identical_logits(tmp_path):
    m = small_model()
    path = str(tmp_path / "m.pt")
    save(m, path, note="hi")
    m2 = load(path)
    x = torch.randint(0, 256, (2, 10))
    with torch.no_grad():
        assert torch.equal(m(x)[0], m2(x)[0])
    assert m2.meta["note"] == "hi" and m2.config == m.config


def test_load_rejects_foreign_files_with_one_line_errors(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    other = tmp_path / "dict.pt"
    torch.save({"weights": 1}, other)
    wrong = tmp_path / "wrong.pt"
    m = small_model()
    save(m, str(wrong))
    ck = torch.load(wrong, weights_only=True)
    ck["config"]["n_embd"] = 64  # the weights no longer fit the config
    torch.save(ck, wrong)
    heads = tmp_path / "heads.pt"
    save(m, str(heads))
    ck = torch.load(heads, weights_only=True)
    ck["config"]["n_head"] = 3  # does not divide n_embd: no such model
    torch.save(ck, heads)
    flipped = tmp_path / "flipped.pt"
    save(m, str(flipped))
    ck = torch.load(flipped, weights_only=True)
    ck["state_dict"]["lm_head.weight"][3, 7] += 1e-3  # one weight changed after saving
    torch.save(ck, flipped)
    for path in (tmp_path / "missing.pt", junk, other, wrong, heads, flipped):
        with pytest.raises(CheckpointError) as e:
            load(str(path))
        assert "\n" not in str(e.value)
    with pytest.raises(CheckpointError, match="checksum"):
        load(str(flipped))
