"""The tokenizer and the model: a small GPT with a KV cache, in one file.

Tokenizer: a tiktoken `Encoding` built here, in code. Its vocabulary is the 256 byte values plus
one special token, <|endoftext|>, which ends every answer. With no merges, every character of
our tasks ("123+45=", "sort | add 2") is exactly one token, so a student can read token ids off
the text. Nothing is downloaded.

Model: nanoGPT's GPT (Radford et al. 2019, Karpathy's nanoGPT): token + learned position
embeddings, pre-LayerNorm blocks of causal self-attention and an MLP, a final LayerNorm and an
output head whose weights are tied to the token embedding. Two additions for self-improvement
methods, which sample a lot and score a lot:
  - a KV cache, so generating token t costs one row of attention instead of a forward over the
    whole sequence (sample.py prefills a prompt once and copies the cache to n samples);
  - `completion_logprobs`: log p(completion | prompt) per token, which SPIN's loss, verifiers
    and weak-to-strong's soft labels all need.

`save(model, path, **meta)` / `load(path)` keep the config (and so the tokenizer's size) and a
checksum with the weights; loading anything else, or a corrupt file, fails with a one-line
`CheckpointError`.
"""
import hashlib
import math
import os
from dataclasses import dataclass, asdict

import tiktoken
import torch
import torch.nn as nn
from torch.nn import functional as F

# ---------------------------------------------------------------------------------------------
# Tokenizer

EOT = 256  # <|endoftext|>: ends every completion; also used as padding (its targets are masked)
VOCAB_SIZE = 257

_ENC = tiktoken.Encoding(
    name="bytes",
    pat_str=r"(?s).",  # split into single characters; with no merges each byte is a token
    mergeable_ranks={bytes([i]): i for i in range(256)},
    special_tokens={"<|endoftext|>": EOT},
)


def encode(text):
    """str -> list of token ids (one per UTF-8 byte). Special-token text is encoded as plain
    bytes, so a model's output can never smuggle in an <|endoftext|>."""
    return _ENC.encode(text, disallowed_special=())


def decode(ids):
    """list of token ids -> str; <|endoftext|> is dropped; invalid UTF-8 becomes U+FFFD."""
    return _ENC.decode([i for i in ids if i != EOT], errors="replace")


# ---------------------------------------------------------------------------------------------
# Model

@dataclass
class GPTConfig:
    block_size: int = 256  # longest sequence (prompt + completion) the model can see
    vocab_size: int = VOCAB_SIZE
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    # "learned": absolute positions, a learned vector per position (GPT-2). "none": no position
    # embedding at all (NoPE, Kazemnejad et al. 2023): the causal mask alone tells a token where
    # it is, which lets a model run past the lengths it was trained on (Lee et al. 2025)
    pos_embedding: str = "learned"


class KVCache:
    """Keys and values of every layer for the tokens seen so far, preallocated to `max_len`.
    k, v: (n_layer, B, nh, max_len, hs); `pos` = number of positions filled. With prompts of
    different lengths, each row is LEFT-padded: `pad` (B,) says how many of its first positions
    are padding, which no query may attend to and which the row's positions do not count."""

    def __init__(self, config, batch_size, max_len, device, dtype=torch.float32, pad=None):
        hs = config.n_embd // config.n_head
        shape = (config.n_layer, batch_size, config.n_head, max_len, hs)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.pos = 0
        self.pad = pad  # (B,) long, or None: no row is padded

    def repeat(self, n):
        """Copy each row n times (prefill a prompt once, then sample n continuations)."""
        self.k = self.k.repeat_interleave(n, dim=1)
        self.v = self.v.repeat_interleave(n, dim=1)
        if self.pad is not None:
            self.pad = self.pad.repeat_interleave(n)
        return self

    def mask(self, T):
        """Which keys the T new queries may see: (B, 1, T, pos + T) bool. Key j is visible to
        query i when it is not in the future (j <= i, positions counted in the cache) and not
        padding (j >= pad); a padding query sees itself, so no row of the softmax is empty."""
        start = self.pos
        i = torch.arange(start, start + T, device=self.k.device).view(1, T, 1)  # (1, T, 1)
        j = torch.arange(start + T, device=self.k.device).view(1, 1, start + T)  # (1, 1, S)
        pad = self.pad.view(-1, 1, 1)  # (B, 1, 1)
        return ((j <= i) & (j >= pad) | (j == i)).unsqueeze(1)  # (B, 1, T, S)


class CausalSelfAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        assert config.n_embd % config.n_head == 0
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)
        self.n_head = config.n_head
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x, cache=None, layer=0):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        if cache is None:
            y = F.scaled_dot_product_attention(
                q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0)
        else:
            # write this step's keys/values after the cached ones, attend over all of them
            start = cache.pos
            cache.k[layer, :, :, start:start + T] = k
            cache.v[layer, :, :, start:start + T] = v
            k = cache.k[layer, :, :, :start + T]  # (B, nh, start+T, hs)
            v = cache.v[layer, :, :, :start + T]
            if cache.pad is not None:  # left-padded rows: never attend to their padding
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=cache.mask(T))
            elif T == 1:  # one new token may see every cached position
                y = F.scaled_dot_product_attention(q, k, v)
            else:  # prefill: query i sees keys 0..start+i
                mask = torch.ones(T, start + T, dtype=torch.bool, device=x.device).tril(start)
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd)
        self.mlp = MLP(config)

    def forward(self, x, cache=None, layer=0):
        x = x + self.attn(self.ln_1(x), cache, layer)  # pre-LN: normalise the branch input only
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            wpe=nn.Embedding(config.block_size, config.n_embd) if config.pos_embedding ==
            "learned" else nn.Identity(),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=nn.LayerNorm(config.n_embd),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying
        self.apply(self._init_weights)
        # GPT-2's scaled init of the residual projections keeps the residual stream's variance
        # from growing with depth
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self):
        return sum(p.numel() for p in self.parameters())  # tied weights are counted once

    def forward(self, idx, targets=None, cache=None):
        """idx: (B, T) token ids. targets: (B, T), -1 = no loss at that position.
        With a cache, idx holds only the new tokens and positions continue from cache.pos.
        Returns (logits (B, T, vocab), mean cross-entropy or None)."""
        B, T = idx.size()
        start = cache.pos if cache is not None else 0
        assert start + T <= self.config.block_size, \
            f"sequence of {start + T} tokens exceeds block_size {self.config.block_size}"
        x = self.transformer.wte(idx)  # (B, T, C)
        if self.config.pos_embedding == "learned":
            pos = torch.arange(start, start + T, dtype=torch.long, device=idx.device)  # (T,)
            if cache is not None and cache.pad is not None:  # a left-padded row counts from its text
                pos = (pos.view(1, T) - cache.pad.view(-1, 1)).clamp(min=0)  # (B, T)
            x = x + self.transformer.wpe(pos)  # (B, T, C)
        x = self.transformer.drop(x)
        for i, block in enumerate(self.transformer.h):
            x = block(x, cache, i)
        if cache is not None:
            cache.pos += T
        logits = self.lm_head(self.transformer.ln_f(x))  # (B, T, vocab)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.view(-1),
                                   ignore_index=-1)
        return logits, loss


# ---------------------------------------------------------------------------------------------
# (prompt, completion) batches and their log-probabilities

def pack(prompts, completions, block_size=None):
    """Tokenise (prompt, completion + <|endoftext|>) pairs into a right-padded batch.
    Returns idx (B, T) and targets (B, T) where targets[i, t] is the token at t+1 if it belongs
    to the completion (its end-of-text included), else -1: the loss sees only the answer."""
    rows = []
    for p, c in zip(prompts, completions):
        p_ids, c_ids = encode(p), encode(c) + [EOT]
        ids = p_ids + c_ids
        if block_size is not None and len(ids) > block_size + 1:
            raise ValueError(f"prompt + completion of {len(ids)} tokens exceeds block_size")
        tgt = [-1] * (len(p_ids) - 1) + c_ids  # predict completion tokens from their prefix
        rows.append((ids[:-1], tgt))
    T = max(len(ids) for ids, _ in rows)
    idx = torch.full((len(rows), T), EOT, dtype=torch.long)
    targets = torch.full((len(rows), T), -1, dtype=torch.long)
    for i, (ids, tgt) in enumerate(rows):
        idx[i, :len(ids)] = torch.tensor(ids)
        targets[i, :len(tgt)] = torch.tensor(tgt)
    return idx, targets


def completion_logprobs(model, prompts, completions, entropy=False):
    """log p(completion + <|endoftext|> | prompt) under `model`, per token.
    Returns (logp, mask), both (B, T): logp[i, t] is the log-probability of the t-th target token
    and mask is 1 where that token belongs to the completion. Sum logp * mask over t for the
    sequence log-likelihood (SPIN sums, as its paper does). Keeps the autograd graph, so it can
    be used inside a loss; wrap in torch.no_grad() to score. With entropy=True also returns the
    entropy (nats) of the model's next-token distribution at each position, (B, T)."""
    device = next(model.parameters()).device
    idx, targets = pack(prompts, completions)
    block = model.config.block_size  # a sampled answer too long for the model is cut there
    idx, targets = idx[:, :block].to(device), targets[:, :block].to(device)
    logits, _ = model(idx)  # (B, T, vocab)
    mask = (targets != -1)
    logp_all = torch.log_softmax(logits.float(), dim=-1)  # (B, T, vocab)
    logp = logp_all.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # (B, T)
    if entropy:
        ent = -(logp_all.exp() * logp_all).sum(-1)  # (B, T)
        return logp * mask, mask.float(), ent * mask
    return logp * mask, mask.float()


# ---------------------------------------------------------------------------------------------
# Checkpoints and devices

class CheckpointError(Exception):
    """A file that is missing, corrupt, not a checkpoint of this codebase, or of another shape."""


FORMAT = "self-improve-gpt/2"


def checksum(state_dict):
    """sha256 of the weights' bytes, in a fixed order: a flipped byte anywhere changes it."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        h.update(name.encode() + state_dict[name].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def save(model, path, **meta):
    """Write weights + config + a checksum of the weights (+ any metadata) atomically: a crash
    mid-write never leaves a half-written file under `path`."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    state = model.state_dict()
    torch.save({"format": FORMAT, "config": asdict(model.config), "state_dict": state,
                "checksum": checksum(state), "meta": meta}, tmp)
    os.replace(tmp, path)


def load(path, device="cpu"):
    """Read a checkpoint written by `save`; returns a GPT in eval mode (its `meta` attached).
    Anything else (no file, another format, a config that makes no model, weights that fail
    their checksum) raises a CheckpointError with a one-line message."""
    if not os.path.isfile(path):
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path} is not a checkpoint ({type(e).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a checkpoint of this codebase (format {FORMAT})")
    try:
        config = GPTConfig(**ckpt["config"])
        if config.n_embd % config.n_head or min(config.n_layer, config.n_head, config.n_embd,
                                                config.block_size) < 1 or \
                config.pos_embedding not in ("learned", "none"):
            raise ValueError(f"bad config {asdict(config)}")
        if checksum(ckpt["state_dict"]) != ckpt["checksum"]:
            raise ValueError("its weights fail their checksum (the file is corrupt)")
        model = GPT(config)
        model.load_state_dict(ckpt["state_dict"])
    except (TypeError, ValueError, RuntimeError, KeyError, AttributeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path} is not a usable checkpoint: {first}") from None
    model.meta = ckpt.get("meta", {})
    return model.to(device).eval()


def pick_device(name="auto"):
    """'auto' -> cuda, then mps, then cpu."""
    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if name not in ("cpu", "cuda", "mps") and not name.startswith("cuda:"):
        raise ValueError(f"unknown device {name!r} (use auto, cpu, cuda or mps)")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but no CUDA device is available")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ValueError("--device mps asked for, but MPS is not available")
    return name
