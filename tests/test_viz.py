"""Pictures: sizes follow the grid, colours mean what they say, highlights sit exactly on changed cells."""

from __future__ import annotations

import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PIL")
from PIL import Image, ImageFont  # noqa: E402

from trm import viz  # noqa: E402
from trm.tasks.arc.draw import ARC_PALETTE  # noqa: E402
from trm.viz import (  # noqa: E402
    FILLED_INK,
    GIVEN_INK,
    HIGHLIGHT,
    MARGIN,
    WRONG_INK,
    cell_box,
    html_report,
    render,
    render_trace,
    save_gif,
    to_grid,
    trace_frames,
)

SUDOKU4 = [[1, 2, 3, 4], [3, 4, 1, 2], [2, 1, 4, 3], [4, 3, 2, 1]]


def sudoku_tokens(grid: list[list[int]]) -> np.ndarray:
    """Digits (0 = blank) -> tokens: blank 1, digit d -> d + 1."""
    return np.array(grid).reshape(-1) + 1


def arc_canvas(grid: np.ndarray) -> np.ndarray:
    canvas = np.zeros((30, 30), dtype=np.int64)
    h, w = grid.shape
    canvas[:h, :w] = grid + 2
    canvas[h, : w + 1] = 1
    canvas[: h + 1, w] = 1
    return canvas.reshape(-1)


def pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB")).astype(np.int64)


def near(a: np.ndarray, color: tuple[int, int, int], tol: int = 40) -> np.ndarray:
    return np.abs(a - np.array(color)).sum(-1) <= tol


def interior(a: np.ndarray, row: int, col: int, cell: int) -> np.ndarray:
    x0, y0, x1, y1 = cell_box(row, col, cell)
    return a[y0 + 3 : y1 - 3, x0 + 3 : x1 - 3]


@pytest.mark.parametrize(("tokens", "task", "shape", "cells"), [
    (sudoku_tokens(SUDOKU4), "sudoku", None, (4, 4)),
    (np.ones(36, dtype=int), "sudoku", None, (6, 6)),
    (np.full(81, 1), "sudoku", None, (9, 9)),
    (np.full(35, 2), "maze", (5, 7), (5, 7)),
    (np.full(900, 2), "maze", None, (30, 30)),
    (arc_canvas(np.arange(15).reshape(3, 5) % 10), "arc", None, (3, 5)),
])
@pytest.mark.parametrize("cell", [7, 16])
def test_image_size_follows_grid_and_cell(tokens, task, shape, cells, cell):
    img = render(tokens, task, shape=shape, cell=cell)
    assert img.size == (cells[1] * cell + 2 * MARGIN, cells[0] * cell + 2 * MARGIN)


def test_arc_crops_at_end_markers_and_keeps_colours():
    grid = np.array([[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [9, 8, 7, 6, 5]])
    tokens = arc_canvas(grid)
    np.testing.assert_array_equal(to_grid(tokens, "arc"), grid + 2)
    a = pixels(render(tokens, "arc", cell=10))
    for (r, c), colour in np.ndenumerate(grid):
        x0, y0, _, _ = cell_box(r, c, 10)
        assert tuple(a[y0 + 5, x0 + 5]) == ARC_PALETTE[colour]
    assert render(tokens, "arc", cell=10, crop=False).size == (30 * 10 + 2 * MARGIN,) * 2
    # a prediction with no grid at the top left still draws (one empty cell)
    assert to_grid(np.ones(900, dtype=int), "arc").shape == (0, 0)
    assert render(np.ones(900, dtype=int), "arc", cell=10).size == (10 + 2 * MARGIN,) * 2


@pytest.mark.parametrize(("n", "task", "shape", "message"), [
    (80, "sudoku", None, "16, 36 or 81"),
    (899, "arc", None, "900"),
    (899, "maze", None, "rows\\*cols"),
    (30, "maze", (5, 7), "5\\*7 = 35"),
    (64, "sudoku", (8, 8), "4x4, 6x6 or 9x9"),
])
def test_wrong_length_says_what_was_expected(n, task, shape, message):
    with pytest.raises(ValueError, match=message):
        render(np.ones(n, dtype=int), task, shape=shape)


def test_unknown_task_is_named():
    with pytest.raises(ValueError, match="sudoku, maze, arc"):
        render(np.ones(16, dtype=int), "chess")


def test_sudoku_given_filled_and_wrong_digits_have_their_colours():
    solution = sudoku_tokens(SUDOKU4)
    puzzle = solution.copy()
    puzzle[1:] = 1  # only (0, 0) is given
    answer = solution.copy()
    answer[2] = 2  # (0, 2) filled with 1 instead of 3
    answer[3:] = 1
    cell = 40
    a = pixels(render(answer, "sudoku", givens=puzzle, solution=solution, cell=cell))
    given, filled, wrong = (interior(a, 0, c, cell) for c in range(3))
    assert near(given, GIVEN_INK).sum() > 10 and near(given, FILLED_INK).sum() == 0
    assert near(filled, FILLED_INK).sum() > 10 and near(filled, GIVEN_INK).sum() == 0
    assert near(wrong, WRONG_INK).sum() > 10 and near(wrong, FILLED_INK).sum() == 0
    blank = interior(a, 1, 1, cell)
    assert (blank == 255).all()


def highlighted_cells(a: np.ndarray, rows: int, cols: int, cell: int) -> np.ndarray:
    """Which cells carry highlight pixels; fails if any highlight pixel lies outside every cell."""
    is_hl = near(a, HIGHLIGHT, tol=0)
    found = np.zeros((rows, cols), dtype=bool)
    for r in range(rows):
        for c in range(cols):
            x0, y0, x1, y1 = cell_box(r, c, cell)
            found[r, c] = is_hl[y0:y1, x0:x1].any()
            is_hl[y0:y1, x0:x1] = False
    assert not is_hl.any(), "highlight outside the cells"
    return found


@pytest.mark.parametrize(("task", "tokens"), [
    ("sudoku", np.full(81, 1)),
    ("maze", np.full(900, 2)),
    ("arc", arc_canvas(np.full((6, 8), 4))),  # yellow, the highlight's own colour family
])
def test_highlight_marks_exactly_the_given_cells(task, tokens):
    grid_shape = to_grid(tokens, task).shape
    rng = np.random.default_rng(0)
    mask = np.zeros((30, 30) if task == "arc" else grid_shape, dtype=bool)
    mask[: grid_shape[0], : grid_shape[1]] = rng.random(grid_shape) < 0.3
    cell = 14
    a = pixels(render(tokens, task, highlight=mask.reshape(-1), cell=cell))
    found = highlighted_cells(a, *grid_shape, cell)
    np.testing.assert_array_equal(found, mask[: grid_shape[0], : grid_shape[1]])
    # the ring sits inside the cell, clear of the grid line on its left edge
    r, c = map(int, np.argwhere(found)[0])
    x0, y0, _, _ = cell_box(r, c, cell)
    assert tuple(a[y0 + cell // 2, x0]) != HIGHLIGHT
    assert tuple(a[y0 + cell // 2, x0 + 2]) == HIGHLIGHT


def locate(frame: Image.Image, grid_img: Image.Image) -> tuple[int, int]:
    """Top-left corner of `grid_img` inside `frame`."""
    f, g = pixels(frame), pixels(grid_img)
    for y in range(f.shape[0] - g.shape[0] + 1):
        for x in range(f.shape[1] - g.shape[1] + 1):
            if np.array_equal(f[y : y + g.shape[0], x : x + g.shape[1]], g):
                return x, y
    raise AssertionError("grid not found in frame")


def test_trace_rings_exactly_the_cells_that_changed():
    maze = np.full((6, 6), 2)
    maze[0, 0], maze[5, 5], maze[2, 1:4] = 3, 4, 1
    step2 = maze.copy()
    step2[0, 1:6] = 5
    step3 = step2.copy()
    step3[1:5, 5] = 5
    step3[0, 3] = 2  # a cell going back counts as changed too
    steps = [maze.reshape(-1), step2.reshape(-1), step3.reshape(-1)]
    cell = 16
    frames = trace_frames(steps, "maze", cell=cell, captions=["a", "b", "c"])
    assert len(frames) == 3
    previous = None
    for frame, step in zip(frames, steps, strict=True):
        if previous is None:
            locate(frame, render(step, "maze", cell=cell))
            assert not near(pixels(frame), HIGHLIGHT, tol=0).any()
        else:
            expected = (step != previous).reshape(6, 6)
            g = render(step, "maze", cell=cell, highlight=expected)
            x, y = locate(frame, g)  # the frame shows exactly this picture
            a = pixels(frame)[y : y + g.height, x : x + g.width]
            np.testing.assert_array_equal(highlighted_cells(a, 6, 6, cell), expected)
            assert not near(pixels(frame)[:y], HIGHLIGHT, tol=0).any()
        previous = step
    strip = render_trace(steps, "maze", cell=cell, captions=["a", "b", "c"])
    assert strip.size == (sum(f.width for f in frames) + 2 * viz.GAP, max(f.height for f in frames))


def test_arc_trace_counts_new_cells_as_changed():
    small, big = np.zeros((2, 2), dtype=int), np.zeros((3, 3), dtype=int)
    frames = trace_frames([arc_canvas(small), arc_canvas(big)], "arc", cell=12)
    expected = np.zeros((30, 30), dtype=bool)
    expected[:3, :3] = True
    expected[:2, :2] = False
    g = render(arc_canvas(big), "arc", cell=12, highlight=expected.reshape(-1))
    x, y = locate(frames[1], g)
    a = pixels(frames[1])[y : y + g.height, x : x + g.width]
    expected = expected[:3, :3]
    np.testing.assert_array_equal(highlighted_cells(a, 3, 3, 12), expected)


def test_trace_inputs_and_label_frames():
    steps = [sudoku_tokens(SUDOKU4)] * 2
    frames = trace_frames(steps, "sudoku", inputs=steps[0], solution=steps[0], show_solution=True)
    assert len(frames) == 4
    with pytest.raises(ValueError, match="one per step"):
        trace_frames(steps, "sudoku", captions=["only one"])


def test_gif_the_puzzle_then_one_frame_per_step_last_held_longer(tmp_path: Path):
    a = sudoku_tokens([[1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    b = sudoku_tokens(SUDOKU4)
    steps = [a, a, b, b]  # repeated steps must stay separate frames
    path = save_gif(steps, "sudoku", tmp_path / "trace.gif", givens=a, frame_ms=300, last_ms=2000, first_ms=1000)
    assert path.exists() and [p.name for p in tmp_path.iterdir()] == ["trace.gif"]  # no temp file left
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())  # as a plain open() would make it
    with Image.open(path) as im:
        n_frames = getattr(im, "n_frames", 1)
        assert n_frames == 1 + len(steps)
        durations, pictures = [], []
        for i in range(n_frames):
            im.seek(i)
            durations.append(im.info["duration"])
            pictures.append(np.asarray(im.convert("RGB")))
    assert durations == [1000, 300, 300, 300, 2000]
    # The first frame is the puzzle: the same picture as the puzzle's own "puzzle" frame of a trace.
    first = trace_frames(steps, "sudoku", givens=a, inputs=a)[0]
    assert np.array_equal(pictures[0][:first.height, :first.width], np.asarray(first))


def _umask() -> int:
    from trm.atomic import umask

    return umask()


def test_givens_are_drawn_as_given_whatever_the_model_wrote():
    puzzle = sudoku_tokens([[1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    answer = sudoku_tokens(SUDOKU4)
    changed = np.asarray(answer).copy()
    changed[0] = 3 + 1  # the model wrote 3 over the given 1
    drawn = np.asarray(render(changed, "sudoku", givens=puzzle))
    assert np.array_equal(drawn, np.asarray(render(answer, "sudoku", givens=puzzle)))
    assert not np.array_equal(drawn, np.asarray(render(changed, "sudoku")))  # without givens: the model's digit


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.imgs: list[dict[str, str | None]] = []
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.imgs.append(dict(attrs))
        self._in_title = tag == "title"

    def handle_endtag(self, tag):
        self._in_title = False

    def handle_data(self, data):
        if self._in_title:
            self.title += data


def test_html_report_is_self_contained_and_escaped(tmp_path: Path):
    pytest.importorskip("matplotlib")
    solution = sudoku_tokens(SUDOKU4)
    puzzle = solution.copy()
    puzzle[::3] = 1
    wrong = solution.copy()
    wrong[0] = 3
    examples = [
        {"inputs": puzzle, "steps": [puzzle, solution], "label": solution, "correct": True, "name": "ok <b>"},
        {"inputs": puzzle, "steps": [puzzle, wrong], "label": solution, "correct": False,
         "captions": ["q_halt 0.10", "q_halt 0.93"]},
    ]
    title = "<script>alert('x')</script> & eval"
    path = html_report(tmp_path / "report.html", title, {"test": [0.5, 0.8, 0.87], "train": [0.6, 0.9, 0.95]},
                       examples, {"exact accuracy": 0.8712345, "<model>": "trm-mlp"}, task="sudoku")
    text = path.read_text()
    parser = _Tags()
    parser.feed(text)
    assert len(parser.imgs) == len(examples) + 1
    assert all(str(i["src"]).startswith("data:image/png;base64,") for i in parser.imgs)
    assert "<script>" not in text and "&lt;script&gt;" in text and "&lt;model&gt;" in text
    assert "ok &lt;b&gt;" in text and "0.8712" in text
    assert parser.title == title
    legend = text[text.index("<h2>Legend</h2>"):text.index("<h2>Solved examples</h2>")]
    for meaning, colour in (("given by the puzzle", viz.GIVEN_INK), ("filled in by the model", viz.FILLED_INK),
                            ("differs from the recorded answer", viz.WRONG_INK),
                            ("changed since the previous step", viz.HIGHLIGHT)):
        assert meaning in legend and viz._hex(colour) in legend, meaning
    with pytest.raises(ValueError, match="task"):
        html_report(tmp_path / "r2.html", "t", {}, examples, {})


def test_bitmap_font_fallback_still_draws_digits(monkeypatch):
    if not hasattr(ImageFont, "load_default_imagefont"):
        pytest.skip("this Pillow has only the bitmap font")
    monkeypatch.setattr(viz, "_font", lambda size: ImageFont.load_default_imagefont())
    a = pixels(render(sudoku_tokens(SUDOKU4), "sudoku", cell=40))
    assert near(interior(a, 0, 0, 40), FILLED_INK).sum() > 10


def test_missing_pillow_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(ImportError, match=r"pip install 'trm\[plot\]'"):
        render(sudoku_tokens(SUDOKU4), "sudoku")


def test_the_legend_names_every_colour_of_a_palette_task():
    from trm.tasks.maze.draw import MAZE_COLORS

    legend = viz.legend_html("maze")
    for colour, name in zip(MAZE_COLORS[1:], ("wall", "open", "start", "goal", "path"), strict=True):
        assert name in legend and viz._hex(colour) in legend
    assert "red cross" in legend and "yellow ring" in legend
    arc = viz.legend_html("arc")
    assert all(f"colour {c}" in arc for c in range(10)) and viz._hex(ARC_PALETTE[4]) in arc
