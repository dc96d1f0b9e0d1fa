"""Building blocks shared by every model: init, RMSNorm, SwiGLU, attention with RoPE, the
post-norm block, the input embedding with its puzzle-identifier prefix.

Parameters are kept in float32; activations run in the dtype the model was built with
(`dtype`, float32 or bfloat16) and weights are cast to it at use, as the reference does.
Normalisation always computes in float32.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

CosSin = tuple[Tensor, Tensor]


def trunc_normal_(tensor: Tensor, std: float = 1.0, lower: float = -2.0, upper: float = 2.0,
                  generator: torch.Generator | None = None) -> Tensor:
    """Fill `tensor` from a normal truncated to [lower, upper] standard deviations whose
    *resulting* standard deviation is `std` (JAX's convention; PyTorch's trunc_normal_ gives a
    smaller one)."""
    with torch.no_grad():
        if std == 0:
            return tensor.zero_()
        sqrt2 = math.sqrt(2.0)
        a, b = math.erf(lower / sqrt2), math.erf(upper / sqrt2)
        z = (b - a) / 2
        c = (2 * math.pi) ** -0.5
        pdf_u, pdf_l = c * math.exp(-0.5 * upper**2), c * math.exp(-0.5 * lower**2)
        corrected = std / math.sqrt(1 - (upper * pdf_u - lower * pdf_l) / z - ((pdf_u - pdf_l) / z) ** 2)
        tensor.uniform_(a, b, generator=generator)
        tensor.erfinv_()
        tensor.mul_(sqrt2 * corrected)
        return tensor.clamp_(lower * corrected, upper * corrected)


def rms_norm(x: Tensor, eps: float) -> Tensor:
    """Parameter-free RMSNorm computed in float32, returned in the input dtype."""
    dtype = x.dtype
    x = x.float()
    x = x * torch.rsqrt(x.square().mean(-1, keepdim=True) + eps)
    return x.to(dtype)


def swiglu_width(width: int, expansion: float) -> int:
    """Inner width of a SwiGLU: round(2/3 * expansion * width) rounded up to a multiple of 256."""
    inner = round(expansion * width * 2 / 3)
    return -(inner // -256) * 256


class Linear(nn.Module):
    """A linear layer with truncated LeCun-normal init whose weight is cast to the input dtype."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(trunc_normal_(torch.empty(out_features, in_features), std=in_features**-0.5))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        bias = self.bias.to(x.dtype) if self.bias is not None else None
        return F.linear(x, self.weight.to(x.dtype), bias)


class Embedding(nn.Module):
    """A token (or position) embedding table with truncated-normal init."""

    def __init__(self, num: int, dim: int, init_std: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(trunc_normal_(torch.empty(num, dim), std=init_std))

    def forward(self, ids: Tensor, dtype: torch.dtype) -> Tensor:
        return F.embedding(ids, self.weight.to(dtype))


class SwiGLU(nn.Module):
    """`down(silu(gate(x)) * up(x))` with gate and up packed in one matrix (gate first)."""

    def __init__(self, width: int, expansion: float) -> None:
        super().__init__()
        inner = swiglu_width(width, expansion)
        self.gate_up = Linear(width, 2 * inner)
        self.down = Linear(inner, width)

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class ConvSwiGLU(SwiGLU):
    """SwiGLU with local mixing over the token grid (URM's ConvSwiGLU, in 2-D):
    `down(silu(conv(silu(gate(x)) * up(x))))`, where conv is a depthwise k x k convolution over the
    rows x columns grid of the tokens; the prefix positions (puzzle embedding) skip the convolution."""

    def __init__(self, width: int, expansion: float, kernel: int, grid: tuple[int, int], prefix: int) -> None:
        super().__init__(width, expansion)
        inner = swiglu_width(width, expansion)
        conv = nn.Conv2d(inner, inner, kernel, groups=inner)  # for PyTorch's default initialisation
        self.conv_weight = nn.Parameter(conv.weight.detach().clone())
        self.conv_bias = nn.Parameter(conv.bias.detach().clone())  # type: ignore[union-attr]
        self.grid, self.prefix, self.kernel = grid, prefix, kernel

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        h = F.silu(gate) * up
        batch, _, inner = h.shape
        cells = h[:, self.prefix:].transpose(1, 2).reshape(batch, inner, *self.grid)
        cells = F.conv2d(cells, self.conv_weight.to(h.dtype), self.conv_bias.to(h.dtype),
                         padding=self.kernel // 2, groups=inner)
        h = torch.cat((h[:, :self.prefix], cells.flatten(2).transpose(1, 2)), dim=1)
        return self.down(F.silu(h))


class RotaryEmbedding(nn.Module):
    """Cos/sin tables of rotary position embeddings for every position (prefix included)."""

    cos: Tensor
    sin: Tensor

    def __init__(self, head_dim: int, positions: int, theta: float) -> None:
        super().__init__()
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        freqs = torch.outer(torch.arange(positions, dtype=torch.float32), inv_freq)
        # Halves rotate together (the "rotate_half" layout), so duplicate rather than interleave.
        emb = torch.cat((freqs, freqs), dim=-1)
        self.register_buffer("cos", emb.cos(), persistent=False)
        self.register_buffer("sin", emb.sin(), persistent=False)

    def forward(self) -> CosSin:
        return self.cos, self.sin


def _rotate_half(x: Tensor) -> Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate `x` [batch, seq, heads, head_dim] by position; computed in the tables' float32."""
    dtype = x.dtype
    x = x.to(cos.dtype)
    cos, sin = cos.unsqueeze(-2), sin.unsqueeze(-2)
    return (x * cos + _rotate_half(x) * sin).to(dtype)


class Attention(nn.Module):
    """Non-causal multi-head self-attention, fused qkv projection, no biases."""

    def __init__(self, hidden_size: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.qkv = Linear(hidden_size, 3 * hidden_size)
        self.out = Linear(hidden_size, hidden_size)

    def forward(self, x: Tensor, cos_sin: CosSin | None) -> Tensor:
        batch, seq, hidden = x.shape
        qkv = self.qkv(x).view(batch, seq, 3 * self.num_heads, self.head_dim)
        q, k, v = qkv.split(self.num_heads, dim=2)
        if cos_sin is not None:
            q, k = apply_rotary(q, *cos_sin), apply_rotary(k, *cos_sin)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # -> [batch, heads, seq, head_dim]
        out = F.scaled_dot_product_attention(q, k, v, is_causal=False)
        return self.out(out.transpose(1, 2).reshape(batch, seq, hidden))


class Block(nn.Module):
    """Post-norm block: `h = rms(h + mix(h)); h = rms(h + SwiGLU(h))`.

    `mix` is self-attention, or with `token_mlp_width` a SwiGLU across the token axis (the
    MLP-mixer variant, which needs a fixed sequence length).
    """

    def __init__(self, hidden_size: int, num_heads: int, expansion: float, eps: float,
                 token_mlp_width: int | None = None, mlp: SwiGLU | None = None) -> None:
        super().__init__()
        self.eps = eps
        self.attn: Attention | None = None
        self.token_mlp: SwiGLU | None = None
        if token_mlp_width is not None:
            self.token_mlp = SwiGLU(token_mlp_width, expansion)
        else:
            self.attn = Attention(hidden_size, num_heads)
        self.mlp = mlp or SwiGLU(hidden_size, expansion)

    def forward(self, h: Tensor, cos_sin: CosSin | None) -> Tensor:
        if self.token_mlp is not None:
            # Mix across positions: the SwiGLU runs on the transposed [batch, hidden, seq] tensor.
            t = h.transpose(1, 2)
            h = rms_norm(t + self.token_mlp(t), self.eps).transpose(1, 2)
        else:
            assert self.attn is not None
            h = rms_norm(h + self.attn(h, cos_sin), self.eps)
        return rms_norm(h + self.mlp(h), self.eps)


class Stack(nn.Module):
    """The network f(h, injection): add the injection, then run the blocks."""

    def __init__(self, blocks: list[Block]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(blocks)

    def forward(self, h: Tensor, injection: Tensor | None, cos_sin: CosSin | None) -> Tensor:
        if injection is not None:
            h = h + injection
        for layer in self.layers:
            h = layer(h, cos_sin)
        return h


class PuzzleEmbedding(nn.Module):
    """Per-puzzle embedding table (a buffer, not a Parameter: it is updated by sign-SGD).

    In a training forward with gradients enabled, the batch's rows are gathered into a leaf
    tensor `local_weights` (with `local_ids`) that receives the gradient; the embedding
    optimizer reads both and updates only those rows of `weight`.
    """

    weight: Tensor

    def __init__(self, num_ids: int, dim: int) -> None:
        super().__init__()
        self.register_buffer("weight", torch.zeros(num_ids, dim))  # zero init, as published
        self.local_ids: Tensor | None = None
        self.local_weights: Tensor | None = None

    def forward(self, ids: Tensor, dtype: torch.dtype) -> Tensor:
        rows = self.weight[ids.long()]
        if self.training and torch.is_grad_enabled():
            rows = rows.detach().requires_grad_(True)
            self.local_ids, self.local_weights = ids, rows
        return rows.to(dtype)


class InputEmbedding(nn.Module):
    """x: token embedding with the puzzle-identifier prefix and positions, scaled by sqrt(hidden)."""

    def __init__(self, *, vocab_size: int, hidden_size: int, seq_len: int, prefix_len: int,
                 num_puzzle_identifiers: int, puzzle_emb_ndim: int, pos_encodings: str) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.prefix_len = prefix_len
        self.scale = math.sqrt(hidden_size)
        self.tokens = Embedding(vocab_size, hidden_size, init_std=1.0 / self.scale)
        self.puzzle = PuzzleEmbedding(num_puzzle_identifiers, puzzle_emb_ndim) if puzzle_emb_ndim > 0 else None
        self.positions = (Embedding(seq_len + prefix_len, hidden_size, init_std=1.0 / self.scale)
                          if pos_encodings == "learned" else None)

    def forward(self, inputs: Tensor, puzzle_identifiers: Tensor, dtype: torch.dtype) -> Tensor:
        x = self.tokens(inputs.long(), dtype)
        if self.puzzle is not None:
            p = self.puzzle(puzzle_identifiers, dtype)
            pad = self.prefix_len * self.hidden_size - p.shape[-1]
            if pad > 0:
                p = F.pad(p, (0, pad))
            x = torch.cat((p.view(-1, self.prefix_len, self.hidden_size), x), dim=-2)
        if self.positions is not None:
            # 1/sqrt(2) keeps the variance of the sum equal to that of each term.
            x = 0.707106781 * (x + self.positions.weight.to(dtype))
        return self.scale * x
