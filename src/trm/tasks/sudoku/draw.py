"""How a Sudoku is drawn: digits on a grid with thick box lines; givens black on grey, the model's
digits blue, wrong ones red."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from trm.tasks.sudoku.puzzles import BOX_SHAPES
from trm.viz import (
    BLACK,
    FILLED_INK,
    GIVEN_INK,
    UNKNOWN,
    WHITE,
    WRONG_INK,
    Color,
    Drawing,
    cell_box,
    draw_text,
    grid_lines,
)

GIVEN_FILL: Color = (238, 238, 238)

if TYPE_CHECKING:
    from PIL import Image as PILImage


class SudokuDrawing(Drawing):
    cell = 36
    ring_inset = 2  # box lines reach 1 px into a cell
    crosses = False  # wrong digits are drawn red instead
    shows_givens = True

    def shape(self, n: int) -> tuple[int, int]:
        side = {k * k: k for k in BOX_SHAPES}.get(n)
        if side is None:
            raise ValueError(f"expected 16, 36 or 81 tokens (4x4, 6x6 or 9x9), got {n}")
        return side, side

    def check_shape(self, rows: int, cols: int) -> None:
        if rows != cols or rows not in BOX_SHAPES:
            raise ValueError(f"shape must be 4x4, 6x6 or 9x9, got {rows}x{cols}")

    def with_givens(self, grid: np.ndarray, givens: np.ndarray) -> np.ndarray:
        return np.where(givens >= 2, givens, grid)

    def legend(self) -> list[tuple[Color, Color | None, str]]:
        return [(GIVEN_FILL, GIVEN_INK, "given by the puzzle"), (WHITE, FILLED_INK, "filled in by the model"),
                (WHITE, WRONG_INK, "filled in, differs from the recorded answer")]

    def paint(self, img: PILImage.Image, draw: Any, grid: np.ndarray, cell: int, givens: np.ndarray | None,
              wrong: np.ndarray | None) -> None:
        rows, cols = grid.shape
        given = givens >= 2 if givens is not None else np.zeros(grid.shape, dtype=bool)
        for r, c in np.argwhere(given):
            x0, y0, x1, y1 = cell_box(int(r), int(c), cell)
            draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=GIVEN_FILL)
        grid_lines(draw, rows, cols, cell, (185, 185, 185))
        grid_lines(draw, rows, cols, cell, BLACK, every=BOX_SHAPES[rows], width=3)
        for (r, c), t in np.ndenumerate(grid):
            if 0 <= t < 2:
                continue  # pad or blank
            ink = GIVEN_INK if given[r, c] else FILLED_INK
            if not given[r, c] and wrong is not None and wrong[r, c]:
                ink = WRONG_INK
            x0, y0, x1, y1 = cell_box(r, c, cell)
            label = str(t - 1) if 2 <= t <= rows + 1 else "?"
            draw_text(img, ((x0 + x1) / 2, (y0 + y1) / 2), label, int(cell * 0.62), ink if label != "?" else UNKNOWN)
