"""How a maze is drawn: walls dark, open cells white, start green, goal red, the path blue."""

from __future__ import annotations

from trm.viz import Color, PaletteDrawing

MAZE_COLORS: tuple[Color, ...] = (
    (232, 232, 232), (45, 45, 50), (255, 255, 255), (46, 204, 64), (255, 65, 54), (60, 140, 240),
)
"""Tokens 0-5: pad, wall '#', open ' ', start 'S', goal 'G', path 'o'."""


class MazeDrawing(PaletteDrawing):
    cell = 12
    background = (232, 232, 232)
    palette = MAZE_COLORS
    palette_names = ("pad", "wall '#'", "open ' '", "start 'S'", "goal 'G'", "path 'o'")
    lines = False  # walls read better as solid blocks; only the border
