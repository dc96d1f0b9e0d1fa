"""The data benchmark returns well-formed figures (run on a tiny setting)."""

from __future__ import annotations

from pathlib import Path

import pytest

from trm.tasks import bench


@pytest.mark.slow
def test_data_benchmarks_figures(tmp_path: Path) -> None:
    # No shared puzzle files: solver figures are skipped, the rest still run (generator, builds).
    figures = bench.data_benchmarks(quick=True, shared=tmp_path)
    names = {f["name"] for f in figures}
    assert {"sudoku_generator_4x4", "sudoku_generator_9x9", "maze_build_small_time",
            "sudoku_build_small_peak_memory"} <= names
    for f in figures:
        assert f["value"] == f["median"] and f["value"] > 0 and f["spread"] >= 0 and f["unit"]
