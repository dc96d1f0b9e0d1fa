"""The 8 symmetries of the square (the dihedral group), on the last two axes of an array.

Numbered as in the reference: 0 identity, 1-3 rotations by 90, 180 and 270 degrees, 4 left-right flip,
5 up-down flip, 6 transpose, 7 anti-transpose. Maze augmentation and ARC variants both use them.
"""

from __future__ import annotations

import numpy as np

DIHEDRAL_INVERSE: tuple[int, ...] = (0, 3, 2, 1, 4, 5, 6, 7)
"""Transform t is undone by transform DIHEDRAL_INVERSE[t]."""

DIHEDRAL_TRANSPOSES: tuple[bool, ...] = (False, True, False, True, False, False, True, True)
"""Whether a transform swaps height and width."""


def dihedral(grid: np.ndarray, t: int) -> np.ndarray:
    """Dihedral transform `t` (0-7) of the last two axes of `grid`, as a contiguous array."""
    grid = np.asarray(grid)
    if t == 0:
        out = grid
    elif t in (1, 2, 3):
        out = np.rot90(grid, t, axes=(-2, -1))
    elif t == 4:
        out = np.flip(grid, -1)
    elif t == 5:
        out = np.flip(grid, -2)
    elif t == 6:
        out = np.swapaxes(grid, -1, -2)
    elif t == 7:
        out = np.flip(np.rot90(grid, 1, axes=(-2, -1)), -1)
    else:
        raise ValueError(f"dihedral transform id must be 0-7, got {t}")
    return np.ascontiguousarray(out)


def inverse_dihedral(grid: np.ndarray, t: int) -> np.ndarray:
    """Undo `dihedral(grid, t)`."""
    return dihedral(grid, DIHEDRAL_INVERSE[t])
