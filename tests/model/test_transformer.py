"""WindowMSA / RestormerBlock against a per-window reference computation."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from remdinet.model import RestormerBlock, WindowMSA


def naive_window_msa(msa, x):
    """Straightforward per-window loop (test oracle only)."""
    b, h, w, c = x.shape
    win, heads = msa.window, msa.heads
    ph, pw = (-h) % win, (-w) % win
    xp = F.pad(x.permute(0, 3, 1, 2), (0, pw, 0, ph), mode="replicate").permute(0, 2, 3, 1)
    out = torch.zeros_like(xp)
    for bi in range(b):
        for i in range(0, h + ph, win):
            for j in range(0, w + pw, win):
                t = xp[bi, i:i + win, j:j + win].reshape(-1, c)
                q, k, v = msa.qkv(t).chunk(3, dim=-1)
                hd = c // heads
                res = []
                for hh in range(heads):
                    sl = slice(hh * hd, (hh + 1) * hd)
                    att = (q[:, sl] @ k[:, sl].T / math.sqrt(hd)).softmax(dim=-1)
                    res.append(att @ v[:, sl])
                out[bi, i:i + win, j:j + win] = msa.proj(torch.cat(res, dim=-1)).view(win, win, c)
    return out[:, :h, :w]


def test_window_msa_matches_per_window_attention_with_padding():
    torch.manual_seed(0)
    msa = WindowMSA(dim=8, heads=2, window=4)
    x = torch.randn(2, 6, 9, 8)
    with torch.no_grad():
        assert torch.allclose(msa(x), naive_window_msa(msa, x), atol=1e-5)


def test_window_msa_keeps_windows_independent():
    torch.manual_seed(0)
    msa = WindowMSA(dim=8, heads=2, window=4)
    x = torch.randn(1, 8, 8, 8)
    y = x.clone()
    y[:, 4:, 4:] += 1.0  # change only the bottom-right window
    with torch.no_grad():
        a, b = msa(x), msa(y)
    assert torch.allclose(a[:, :4], b[:, :4]) and torch.allclose(a[:, 4:, :4], b[:, 4:, :4])


def test_restormer_block_has_reference_parameter_count():
    assert sum(p.numel() for p in RestormerBlock(128, 4, 8).parameters()) == 197_888
