"""The dihedral transforms shared by Maze augmentation and ARC variants (`trm.data.dihedral`)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from trm.data.dihedral import DIHEDRAL_TRANSPOSES, dihedral, inverse_dihedral


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 30), st.integers(1, 30), st.integers(0, 2**32 - 1), st.integers(0, 7))
def test_dihedral_inverse(h: int, w: int, seed: int, t: int) -> None:
    grid = np.random.default_rng(seed).integers(0, 10, size=(h, w), dtype=np.uint8)
    moved = dihedral(grid, t)
    assert moved.shape == (grid.shape[::-1] if DIHEDRAL_TRANSPOSES[t] else grid.shape)
    np.testing.assert_array_equal(inverse_dihedral(moved, t), grid)


def test_dihedral_ids_match_reference_builder() -> None:
    # names written by the reference builder (t<k>) must mean the same transform here
    g = np.arange(6).reshape(2, 3)
    expected = [g, np.rot90(g), np.rot90(g, 2), np.rot90(g, 3), np.fliplr(g), np.flipud(g), g.T,
                np.fliplr(np.rot90(g))]
    for t in range(8):
        np.testing.assert_array_equal(dihedral(g, t), expected[t])
    # the eight are distinct: a group of order 8
    assert len({dihedral(g, t).tobytes() + bytes(dihedral(g, t).shape) for t in range(8)}) == 8


def test_dihedral_is_the_group_of_the_square() -> None:
    g = np.arange(12).reshape(3, 4)
    images = {dihedral(g, t).tobytes() + bytes(dihedral(g, t).shape) for t in range(8)}
    assert len(images) == 8
    assert (dihedral(g, 1) == np.rot90(g)).all() and (dihedral(g, 6) == g.T).all()
