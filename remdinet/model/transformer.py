"""Windowed self-attention and the pre-norm transformer block of the decoder (§1.4.2, §1.4.3).

Both work on channels-last tensors B×H×W×C. Windows are formed with reshape/permute only, and all
windows of the batch go through one ``scaled_dot_product_attention`` call.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class WindowMSA(nn.Module):
    """Multi-head self-attention inside non-overlapping w×w windows; no positional bias, no shift."""

    def __init__(self, dim: int, heads: int, window: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"WindowMSA: dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.window = window
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        win = self.window
        ph, pw = (-h) % win, (-w) % win
        if ph or pw:
            # Replicate padding by index: F.pad(mode="replicate") on the permuted view breaks the
            # backward of torch.compile's replication_pad2d (wrong stride assumption).
            rows = torch.arange(h + ph, device=x.device).clamp_(max=h - 1)
            cols = torch.arange(w + pw, device=x.device).clamp_(max=w - 1)
            x = x[:, rows][:, :, cols]
        hp, wp = h + ph, w + pw
        nh, nw, tokens = hp // win, wp // win, win * win
        t = x.reshape(b, nh, win, nw, win, c).transpose(2, 3).reshape(b * nh * nw, tokens, c)
        q, k, v = self.qkv(t).view(-1, tokens, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(-1, tokens, c)
        out = self.proj(out).view(b, nh, nw, win, win, c).transpose(2, 3).reshape(b, hp, wp, c)
        return out[:, :h, :w]


class RestormerBlock(nn.Module):
    """``h + WindowMSA(LN(h))`` then ``h + MLP(LN(h))``; the MLP hidden size is 2·int(dim·mlp_ratio)
    as in the reference (512 for dim 128)."""

    def __init__(self, dim: int, heads: int, window: int, mlp_ratio: float = 2.0) -> None:
        super().__init__()
        hidden = 2 * int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = WindowMSA(dim, heads, window)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))
