"""ARC augmentation and the canvas encoding (30x30, or N x N for small-canvas datasets), with their
inverses.

A *variant* of a task is a dihedral transform (0-7) plus a permutation of colours 1-9 (0 stays);
it is applied as `dihedral(mapping[grid], t)` and undone by `inverse_mapping[inverse_dihedral(grid, t)]`.
Variant names follow the reference builder, `<task>|||t<k>|||<mapping of 0..9 as 10 digits>`, and the
original task keeps its bare id, so datasets built by either tool can be scored by either.

Canvas encoding (seq_len 900, or N * N on an N x N canvas): colour c -> token c + 2, pad 0, end
marker 1 on the row below and the column right of the grid; the grid may be translated away from the
top-left corner (training only).
Decoding crops the largest top-left rectangle of colour tokens, which for a well-formed canvas is
the grid itself, and subtracts 2.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import permutations

import numpy as np

from trm.data.dihedral import dihedral, inverse_dihedral

CANVAS = 30
"""The reference layout's canvas side; a small-canvas dataset uses N x N (N <= 30) instead."""
PAD_TOKEN = 0
EOS_TOKEN = 1
COLOUR_OFFSET = 2
VOCAB_SIZE = 12
"""pad, end marker, colours 0-9."""

SEPARATOR = "|||"

@dataclass(frozen=True)
class Variant:
    """A dihedral transform plus a colour mapping (mapping[c] is the new colour of c; mapping[0] == 0)."""

    transform: int = 0
    mapping: tuple[int, ...] = tuple(range(10))

    def __post_init__(self) -> None:
        if not 0 <= self.transform <= 7:
            raise ValueError(f"dihedral transform id must be 0-7, got {self.transform}")
        if sorted(self.mapping) != list(range(10)) or self.mapping[0] != 0:
            raise ValueError(f"colour mapping must permute 0-9 keeping 0, got {self.mapping}")

    @property
    def is_identity(self) -> bool:
        return self.transform == 0 and self.mapping == tuple(range(10))

    def lut(self) -> np.ndarray:
        return np.asarray(self.mapping, dtype=np.uint8)

    def inverse_lut(self) -> np.ndarray:
        return np.argsort(self.lut()).astype(np.uint8)

    def apply(self, grid: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(dihedral(self.lut()[grid], self.transform))

    def invert(self, grid: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(self.inverse_lut()[inverse_dihedral(grid, self.transform)])


IDENTITY = Variant()


def variant_name(task_id: str, variant: Variant) -> str:
    """Puzzle name of a task variant; the original keeps the bare task id."""
    if variant.is_identity:
        return task_id
    return f"{task_id}{SEPARATOR}t{variant.transform}{SEPARATOR}{''.join(str(c) for c in variant.mapping)}"


def parse_variant_name(name: str) -> tuple[str, Variant]:
    """(task id, variant) of a puzzle name written by `variant_name` (or the reference builder)."""
    if SEPARATOR not in name:
        return name, IDENTITY
    parts = name.split(SEPARATOR)
    try:
        task_id, t, digits = SEPARATOR.join(parts[:-2]), parts[-2], parts[-1]
        if not t.startswith("t") or len(digits) != 10:
            raise ValueError
        return task_id, Variant(int(t[1:]), tuple(int(d) for d in digits))
    except ValueError:
        raise ValueError(f"puzzle name {name!r} is not '<task>|||t<0-7>|||<10 digits>'") from None


def canvas_side(seq_len: int) -> int:
    """The canvas side of an ARC sequence length (900 -> 30); ValueError when it is no canvas of at most 30x30."""
    side = math.isqrt(seq_len)
    if side * side != seq_len or not 1 <= side <= CANVAS:
        raise ValueError(f"ARC canvases are square, at most {CANVAS}x{CANVAS}: seq_len {seq_len} is not one")
    return side


def encode_grid(grid: np.ndarray, offset: tuple[int, int] = (0, 0), canvas: int = CANVAS) -> np.ndarray:
    """A grid on the canvas x canvas board (flat, uint8): tokens c + 2 from `offset`, end markers, pad 0."""
    h, w = grid.shape
    r0, c0 = offset
    if not (0 <= r0 <= canvas - h and 0 <= c0 <= canvas - w):
        raise ValueError(f"a {h}x{w} grid does not fit the {canvas}x{canvas} canvas at offset {offset}")
    board = np.zeros((canvas, canvas), dtype=np.uint8)
    board[r0:r0 + h, c0:c0 + w] = grid + COLOUR_OFFSET
    if r0 + h < canvas:
        board[r0 + h, c0:c0 + w] = EOS_TOKEN
    if c0 + w < canvas:
        board[r0:r0 + h, c0 + w] = EOS_TOKEN
    return board.reshape(-1)


def crop_sizes(tokens: np.ndarray, shape: tuple[int, int] = (CANVAS, CANVAS)) -> tuple[np.ndarray, np.ndarray]:
    """(rows [B], columns [B]) of the largest top-left rectangle holding only colour tokens, per canvas
    of `tokens` [B, rows * columns] (30x30 unless `shape` says otherwise); (0, 0) where there is none."""
    rows, cols = shape
    canvas = np.asarray(tokens).reshape(-1, rows, cols)
    colour = (canvas >= COLOUR_OFFSET) & (canvas < VOCAB_SIZE)
    # run of colour tokens from column 0 in each row, narrowed by every row above it
    run = np.where(colour.all(axis=2), cols, np.argmin(colour, axis=2))
    width = np.minimum.accumulate(run, axis=1)
    area = width * np.arange(1, rows + 1)
    best = np.argmax(area, axis=1)  # the first largest, as the reference evaluator
    w = np.take_along_axis(width, best[:, None], axis=1)[:, 0]
    h = np.where(w > 0, best + 1, 0)
    return h, w


def crop_size(tokens: np.ndarray) -> tuple[int, int]:
    """(rows, columns) of the largest top-left rectangle holding only colour tokens of one canvas."""
    tokens = np.asarray(tokens).reshape(-1)
    side = canvas_side(tokens.size)
    h, w = crop_sizes(tokens.reshape(1, -1), (side, side))
    return int(h[0]), int(w[0])


def decode_grid(tokens: np.ndarray) -> np.ndarray:
    """The grid at the top-left of a canvas (see `crop_size`); empty (0x0) when there is none."""
    tokens = np.asarray(tokens).reshape(-1)
    side = canvas_side(tokens.size)
    h, w = crop_size(tokens)
    board = tokens.reshape(side, side)
    return (board[:h, :w].astype(np.int64) - COLOUR_OFFSET).astype(np.uint8)


def find_grid(tokens: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """(grid, offset) of a possibly translated, well-formed canvas: the inverse of `encode_grid`."""
    tokens = np.asarray(tokens).reshape(-1)
    side = canvas_side(tokens.size)
    board = tokens.reshape(side, side)
    rows, cols = np.nonzero(board >= COLOUR_OFFSET)
    if rows.size == 0:
        return np.zeros((0, 0), dtype=np.uint8), (0, 0)
    r0, c0 = int(rows.min()), int(cols.min())
    shifted = np.zeros_like(board)
    shifted[:side - r0, :side - c0] = board[r0:, c0:]
    return decode_grid(shifted.reshape(-1)), (r0, c0)


# ----------------------------------------------------------------------------------------------
# Choosing distinct variants of a task

@dataclass(frozen=True)
class VariantTable:
    """Variants of one task in compact form: `transforms[i]` (0-7) and `mappings[i]` (10 colours)."""

    transforms: np.ndarray
    mappings: np.ndarray

    def __len__(self) -> int:
        return len(self.transforms)

    def __getitem__(self, i: int) -> Variant:
        return Variant(int(self.transforms[i]), tuple(int(c) for c in self.mappings[i]))

    def with_identity(self) -> VariantTable:
        """The table with the original task (identity variant) first."""
        return VariantTable(np.concatenate([[0], self.transforms]).astype(np.uint8),
                            np.concatenate([np.arange(10, dtype=np.uint8)[None], self.mappings]).astype(np.uint8))


class _ContentKeys:
    """Content keys of a task's variants: the augmented task as a sorted tuple of pairs (shapes + pixels),
    so that variants giving the same pairs in another order count as one."""

    def __init__(self, pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> None:
        self.flat: list[np.ndarray] = []
        self.spans: list[list[tuple[bytes, int, int]]] = []
        for t in range(8):
            grids = [np.ascontiguousarray(dihedral(g, t)) for p in pairs for g in p]
            self.flat.append(np.concatenate([g.reshape(-1) for g in grids]))
            spans, start = [], 0
            for i in range(0, len(grids), 2):
                size = grids[i].size + grids[i + 1].size
                spans.append((bytes(grids[i].shape + grids[i + 1].shape), start, start + size))
                start += size
            self.spans.append(spans)
        self.length = len(self.flat[0])

    def batch(self, ts: np.ndarray, mappings: np.ndarray) -> list[tuple[bytes, ...]]:
        """Keys of candidates (ts[i], mappings[i]), gathered per transform in one numpy call each."""
        keys: list[tuple[bytes, ...]] = [()] * len(ts)
        for t in np.unique(ts).tolist():
            rows = np.flatnonzero(ts == t)
            data = mappings[rows][:, self.flat[t]].tobytes()
            for j, row in enumerate(rows.tolist()):
                base = j * self.length
                keys[row] = tuple(sorted(shape + data[base + a:base + b] for shape, a, b in self.spans[t]))
        return keys


def _candidate_batches(used: np.ndarray, count: int, rng: np.random.Generator,
                       max_tries_factor: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Candidate (transforms, mappings) in draw order: every distinct image of the used colours,
    shuffled, when that space is small; random draws otherwise."""
    k = len(used)
    space = 8 * int(np.prod(np.arange(10 - k, 10)))
    batch = max(256, count)
    if space <= 5 * count:
        images = np.array(list(permutations(range(1, 10), k)), dtype=np.uint8).reshape(-1, k)
        combos_t = np.repeat(np.arange(8, dtype=np.uint8), len(images))
        combos_img = np.tile(images, (8, 1))
        order = rng.permutation(len(combos_t))
        unused = np.setdiff1d(np.arange(1, 10), used)
        for lo in range(0, len(order), batch):
            idx = order[lo:lo + batch]
            img = combos_img[idx]
            # the unused colours take the colours left over by the image, in random order
            shuffled = rng.permuted(np.tile(np.arange(1, 10, dtype=np.uint8), (len(idx), 1)), axis=1)
            left = ~(shuffled[:, :, None] == img[:, None, :]).any(-1)
            mappings = np.zeros((len(idx), 10), dtype=np.uint8)
            mappings[:, used] = img
            mappings[:, unused] = shuffled[left].reshape(len(idx), 9 - k)
            yield combos_t[idx], mappings
        return
    for _ in range(0, max_tries_factor * count, batch):
        ts = rng.integers(0, 8, size=batch).astype(np.uint8)
        perms = rng.permuted(np.tile(np.arange(1, 10, dtype=np.uint8), (batch, 1)), axis=1)
        yield ts, np.concatenate([np.zeros((batch, 1), dtype=np.uint8), perms], axis=1)


def sample_variants(pairs: Sequence[tuple[np.ndarray, np.ndarray]], count: int, rng: np.random.Generator,
                    max_tries_factor: int = 20) -> VariantTable:
    """Up to `count` distinct variants of a task (none equal to the original), in draw order.

    Two variants are the same when they give the same set of (input, output) pairs. Where the task
    uses few colours the variant space is small: then every distinct variant is enumerated and
    shuffled, so the result has min(count, number of distinct variants) entries.
    """
    colours = np.unique(np.concatenate([g.reshape(-1) for p in pairs for g in p]))
    used = colours[colours > 0]
    content = _ContentKeys(pairs)
    identity = np.arange(10, dtype=np.uint8)
    seen_content = set(content.batch(np.zeros(1, dtype=np.uint8), identity[None]))
    # Only the images of the used colours change the content: the cheap key (t, mapping[used])
    # skips repeats before the content key, which also catches transforms that coincide.
    seen_cheap = {bytes([0]) + identity[used].tobytes()}
    ts_out: list[int] = []
    maps_out: list[np.ndarray] = []
    if count > 0:
        for ts, mappings in _candidate_batches(used, count, rng, max_tries_factor):
            cheap = np.concatenate([ts[:, None], mappings[:, used]], axis=1).tobytes()
            width = 1 + len(used)
            fresh = []
            for i in range(len(ts)):
                key = cheap[i * width:(i + 1) * width]
                if key not in seen_cheap:
                    seen_cheap.add(key)
                    fresh.append(i)
            rows = np.asarray(fresh, dtype=np.int64)
            for i, pairs_key in zip(rows.tolist(), content.batch(ts[rows], mappings[rows]), strict=True):
                if pairs_key not in seen_content:
                    seen_content.add(pairs_key)
                    ts_out.append(int(ts[i]))
                    maps_out.append(mappings[i])
                    if len(ts_out) >= count:
                        break
            if len(ts_out) >= count:
                break
    return VariantTable(np.asarray(ts_out, dtype=np.uint8).reshape(-1),
                        np.asarray(maps_out, dtype=np.uint8).reshape(-1, 10))
