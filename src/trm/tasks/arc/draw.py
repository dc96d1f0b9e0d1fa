"""How an ARC grid is drawn: the standard palette, cropped at the end markers like scoring crops."""

from __future__ import annotations

import numpy as np

from trm.tasks.arc.augment import canvas_side, crop_sizes
from trm.viz import Color, PaletteDrawing

ARC_PALETTE: tuple[Color, ...] = (
    (0x00, 0x00, 0x00), (0x00, 0x74, 0xD9), (0xFF, 0x41, 0x36), (0x2E, 0xCC, 0x40), (0xFF, 0xDC, 0x00),
    (0xAA, 0xAA, 0xAA), (0xF0, 0x12, 0xBE), (0xFF, 0x85, 0x1B), (0x7F, 0xDB, 0xFF), (0x87, 0x0C, 0x25),
)
"""The standard ARC palette for colours 0-9."""
ARC_PAD: Color = (232, 232, 232)
ARC_MARKER: Color = (150, 150, 150)


class ArcDrawing(PaletteDrawing):
    cell = 20
    background = ARC_PAD
    palette = (ARC_PAD, ARC_MARKER, *ARC_PALETTE)  # tokens: pad, end marker, colours 0-9
    palette_names = ("pad", "end marker", *(f"colour {c}" for c in range(10)))
    ring_edge = True  # the highlight ring is yellow, like colour 4

    def shape(self, n: int) -> tuple[int, int]:
        try:
            side = canvas_side(n)
        except ValueError:
            raise ValueError(f"expected 900 tokens (a 30x30 canvas) or N * N, got {n}; pass shape=(rows, cols) "
                             "otherwise") from None
        return side, side

    def crop(self, grid: np.ndarray) -> tuple[int, int]:
        rows, cols = crop_sizes(grid.reshape(1, -1), grid.shape)
        return int(rows[0]), int(cols[0])
