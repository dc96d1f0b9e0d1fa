"""Pictures of puzzles and of the answer after each supervision step.

    from trm.viz import render, render_trace, save_gif, html_report
    render(tokens, "sudoku", givens=inputs, solution=labels).save("puzzle.png")
    render_trace(steps, "maze", captions=["q_halt 0.12", "q_halt 0.93"]).save("trace.png")
    save_gif(steps, "arc", "trace.gif")
    html_report("report.html", "Sudoku-Extreme eval", {"test": acc_per_step}, examples, {"exact": 0.87})

Tokens are a dataset's row-major sequences: Sudoku pad 0, blank 1, digit d -> d+1; Maze `# SGo` -> 1-5;
ARC colours c -> c+2 on a 30x30 canvas with end marker 1, cropped at the markers. What is particular to
a task (its grid shape, palette, crop and cell size) is its `Drawing`, given by the task's package
(`trm.tasks.<name>.draw`) and found through the task registry, so this module knows no task by name.
Needs the `plot` extra (Pillow, and matplotlib for the report's accuracy plot): pip install 'trm[plot]'.

Layout: cell (row, col) covers the pixels `cell_box(row, col, cell)`, inside a margin of MARGIN pixels,
so a grid of H x W cells renders to (W * cell + 2 * MARGIN, H * cell + 2 * MARGIN) pixels.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import html
import io
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from PIL import Image as PILImage

MARGIN = 2
"""Pixels around the grid; room for the outer (thick) border line."""
GAP = 12
"""Pixels between frames of a trace strip."""

Color = tuple[int, int, int]
WHITE: Color = (255, 255, 255)
BLACK: Color = (0, 0, 0)
GIVEN_INK: Color = (0, 0, 0)
FILLED_INK: Color = (25, 90, 215)
WRONG_INK: Color = (215, 25, 30)
HIGHLIGHT: Color = (255, 200, 0)
UNKNOWN: Color = (255, 0, 255)  # a token outside the task's vocabulary, so a bad prediction stands out
Tokens = Any
"""A token sequence: list of ints, numpy array or torch tensor, flat (seq_len) or (rows, cols)."""


def _pil() -> Any:
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError:
        raise ImportError("trm.viz needs Pillow: pip install 'trm[plot]'") from None
    return Image, ImageDraw, ImageFont


# ---------------------------------------------------------------------------------------------------------------
# tokens -> grid


def _array(tokens: Tokens, what: str) -> np.ndarray:
    if hasattr(tokens, "detach"):  # a torch tensor, possibly on an accelerator
        tokens = tokens.detach().cpu().numpy()
    a = np.asarray(tokens)
    if a.ndim not in (1, 2) or not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.bool_)):
        raise ValueError(f"{what}: expected a flat or (rows, cols) array of integer tokens, got {a.dtype} {a.shape}")
    return a.astype(np.int64)


def _shape(a: np.ndarray, task: str, shape: tuple[int, int] | None) -> tuple[int, int]:
    """(rows, cols) of the token layout, from `shape`, a 2-D array or the sequence length."""
    drawing = drawing_for(task)
    if shape is None and a.ndim == 2:
        shape = (int(a.shape[0]), int(a.shape[1]))
    n = a.size
    try:
        if shape is None:
            return drawing.shape(n)
        rows, cols = shape
        if rows * cols != n:
            raise ValueError(f"expected {rows}*{cols} = {rows * cols} tokens for shape {tuple(shape)}, got {n}")
        drawing.check_shape(rows, cols)
        return rows, cols
    except ValueError as e:
        raise ValueError(f"{task}: {e}") from None


def to_grid(tokens: Tokens, task: str, *, shape: tuple[int, int] | None = None, crop: bool = True) -> np.ndarray:
    """Tokens as a (rows, cols) array of token ids; a task that crops (ARC: at the end markers) is cropped."""
    a = _array(tokens, task)
    grid = a.reshape(_shape(a, task, shape))
    if crop:
        rows, cols = drawing_for(task).crop(grid)
        grid = grid[:rows, :cols]
    return grid


def _mask_like(values: Tokens | None, tokens: np.ndarray, task: str, shape: tuple[int, int] | None,
               window: tuple[int, int], what: str) -> np.ndarray | None:
    """A per-token array laid out like `tokens`, cut to the rendered window."""
    if values is None:
        return None
    m = _array(values, what)
    full = _shape(tokens, task, shape)
    if m.size != full[0] * full[1]:
        raise ValueError(f"{what}: expected {full[0] * full[1]} values like the tokens, got {m.size}")
    return m.reshape(full)[: window[0], : window[1]]


def _wrong(grid: np.ndarray, solution: np.ndarray) -> np.ndarray:
    """Cells whose token differs from the solution (or lie outside it, for ARC grids of another size)."""
    wrong = np.ones(grid.shape, dtype=bool)
    r, c = min(grid.shape[0], solution.shape[0]), min(grid.shape[1], solution.shape[1])
    wrong[:r, :c] = grid[:r, :c] != solution[:r, :c]
    return wrong


# ---------------------------------------------------------------------------------------------------------------
# drawing


class Drawing:
    """How one task's tokens are drawn; a task package subclasses it (see `trm.tasks.<name>.draw`)."""

    cell = 20
    """Default cell size in pixels."""
    background: Color = WHITE
    ring_inset = 1
    """Pixels between a cell's edge and its highlight ring."""
    ring_edge = False
    """Draw a dark inner edge inside the ring (for palettes with yellow in them)."""
    crosses = True
    """Cross out wrong cells in red (False: `paint` marks them itself)."""
    shows_givens = False
    """Whether `paint` draws the puzzle's givens differently (then reports pass the inputs as givens)."""

    def shape(self, n: int) -> tuple[int, int]:
        """(rows, cols) of a sequence of `n` tokens; the default is a square."""
        side = int(round(n**0.5))
        if side * side != n:
            raise ValueError(f"expected rows*cols tokens of a square grid, got {n}; pass shape=(rows, cols) "
                             "for a rectangular one")
        return side, side

    def check_shape(self, rows: int, cols: int) -> None:
        """Raise ValueError when a grid of rows x cols is not one of this task's."""

    def crop(self, grid: np.ndarray) -> tuple[int, int]:
        """(rows, cols) of the top-left part of `grid` that holds the puzzle; the default keeps it all."""
        return grid.shape[0], grid.shape[1]

    def paint(self, img: PILImage.Image, draw: Any, grid: np.ndarray, cell: int, givens: np.ndarray | None,
              wrong: np.ndarray | None) -> None:
        """Draw the cells of `grid` (token ids) and the grid lines."""
        raise NotImplementedError

    def with_givens(self, grid: np.ndarray, givens: np.ndarray) -> np.ndarray:
        """`grid` with the puzzle's given cells as the puzzle has them (the default: as it is)."""
        return grid

    def legend(self) -> list[tuple[Color, Color | None, str]]:
        """(fill, ink or None, what it means) for each colour the drawing uses, for a report's legend."""
        return []


class PaletteDrawing(Drawing):
    """Each token a colour (`palette[token]`); tokens outside it in a signal colour."""

    palette: tuple[Color, ...] = ()
    palette_names: tuple[str, ...] = ()
    """What each token of the palette is, for the legend."""
    lines = True
    """Lines between cells (False: only the border, so that walls read as solid blocks)."""

    def paint(self, img: PILImage.Image, draw: Any, grid: np.ndarray, cell: int, givens: np.ndarray | None,
              wrong: np.ndarray | None) -> None:
        rows, cols = grid.shape
        for (r, c), t in np.ndenumerate(grid):
            x0, y0, x1, y1 = cell_box(r, c, cell)
            draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=self.palette[t] if 0 <= t < len(self.palette) else UNKNOWN)
        if self.lines and cell >= 6:
            grid_lines(draw, rows, cols, cell, (85, 85, 85))
        else:
            grid_lines(draw, rows, cols, cell, (85, 85, 85), every=(max(rows, 1), max(cols, 1)))

    def legend(self) -> list[tuple[Color, Color | None, str]]:
        names = self.palette_names or tuple(f"token {t}" for t in range(len(self.palette)))
        return [(color, None, name) for color, name in zip(self.palette, names, strict=False) if name != "pad"]


def drawing_for(task: str) -> Drawing:
    """The drawing of a registered task (ValueError naming the known tasks otherwise)."""
    from trm.tasks import task_class

    return task_class(task).drawing


def cell_box(row: int, col: int, cell: int) -> tuple[int, int, int, int]:
    """Pixel box (x0, y0, x1, y1) of a cell, x1 and y1 exclusive; its left and top pixels carry the grid line."""
    x0, y0 = MARGIN + col * cell, MARGIN + row * cell
    return x0, y0, x0 + cell, y0 + cell


@functools.lru_cache(maxsize=32)
def _font(size: int) -> Any:
    _, _, ImageFont = _pil()
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: only the fixed-size bitmap font
        return ImageFont.load_default()


def draw_text(img: PILImage.Image, xy: tuple[float, float], text: str, size: int, fill: Color,
          center: bool = True) -> None:
    """Draw `text` about `size` pixels tall, centred on `xy` (or with its top-left at `xy`)."""
    Image, ImageDraw, ImageFont = _pil()
    font = _font(size)
    if isinstance(font, ImageFont.FreeTypeFont):
        draw = ImageDraw.Draw(img)
        l, t, r, b = draw.textbbox((0, 0), text, font=font)
        x, y = (xy[0] - (l + r) / 2, xy[1] - (t + b) / 2) if center else (xy[0] - l, xy[1] - t)
        draw.text((x, y), text, fill=fill, font=font)
        return
    # The bitmap font is ~11 px tall whatever was asked; scale it by a whole factor so digits stay crisp.
    l, t, r, b = font.getbbox(text)
    mask = Image.new("L", (max(r, 1), max(b, 1)), 0)
    ImageDraw.Draw(mask).text((0, 0), text, fill=255, font=font)
    k = max(1, round(size / max(b - t, 1)))
    mask = mask.crop((l, t, r, b)).resize(((r - l) * k, (b - t) * k), Image.NEAREST)
    x, y = (xy[0] - mask.width / 2, xy[1] - mask.height / 2) if center else xy
    img.paste(Image.new("RGB", mask.size, fill), (round(x), round(y)), mask)


def grid_lines(draw: Any, rows: int, cols: int, cell: int, color: Color, every: tuple[int, int] = (1, 1),
                width: int = 1) -> None:
    """Lines on cell boundaries (every `every` rows/cols, the outer border always), `width` centred on them."""
    h, w = rows * cell, cols * cell
    lo = (width - 1) // 2
    for r in range(rows + 1):
        if r % every[0] == 0 or r == rows:
            y = MARGIN + r * cell
            draw.rectangle((MARGIN - lo, y - lo, MARGIN + w + width - 1 - lo, y + width - 1 - lo), fill=color)
    for c in range(cols + 1):
        if c % every[1] == 0 or c == cols:
            x = MARGIN + c * cell
            draw.rectangle((x - lo, MARGIN - lo, x + width - 1 - lo, MARGIN + h + width - 1 - lo), fill=color)


def _outline(draw: Any, row: int, col: int, cell: int, drawing: Drawing) -> None:
    """Highlight ring inside a cell, clear of the grid lines (Sudoku box lines reach 1 px into a cell)."""
    x0, y0, x1, y1 = cell_box(row, col, cell)
    w, inset = max(2, cell // 10), drawing.ring_inset
    draw.rectangle((x0 + inset, y0 + inset, x1 - 1 - inset, y1 - 1 - inset), outline=HIGHLIGHT, width=w)
    if drawing.ring_edge and cell >= 12:  # a dark inner edge, so the ring reads on a yellow cell too
        i = inset + w
        draw.rectangle((x0 + i, y0 + i, x1 - 1 - i, y1 - 1 - i), outline=BLACK, width=1)


def _cross(draw: Any, row: int, col: int, cell: int) -> None:
    x0, y0, x1, y1 = cell_box(row, col, cell)
    p, w = max(2, cell // 5), max(1, cell // 10)
    for ink, width in ((WHITE, w + 2), (WRONG_INK, w)):  # a white halo, so the cross reads on red cells too
        draw.line((x0 + p, y0 + p, x1 - 1 - p, y1 - 1 - p), fill=ink, width=width)
        draw.line((x0 + p, y1 - 1 - p, x1 - 1 - p, y0 + p), fill=ink, width=width)


def _draw(grid: np.ndarray, task: str, cell: int, *, givens: np.ndarray | None, wrong: np.ndarray | None,
          highlight: np.ndarray | None) -> PILImage.Image:
    Image, ImageDraw, _ = _pil()
    drawing = drawing_for(task)
    if givens is not None:
        grid = drawing.with_givens(grid, givens)
    rows, cols = grid.shape
    # An empty crop (an ARC prediction with no grid at the top left) still gets a one-cell picture.
    size = (max(cols, 1) * cell + 2 * MARGIN, max(rows, 1) * cell + 2 * MARGIN)
    img = Image.new("RGB", size, drawing.background)
    draw = ImageDraw.Draw(img)
    drawing.paint(img, draw, grid, cell, givens, wrong)
    if highlight is not None:
        for r, c in zip(*np.nonzero(highlight), strict=True):
            _outline(draw, int(r), int(c), cell, drawing)
    if wrong is not None and drawing.crosses:  # on top of the ring: being wrong matters more than having changed
        for r, c in zip(*np.nonzero(wrong), strict=True):
            _cross(draw, int(r), int(c), cell)
    return img


def render(tokens: Tokens, task: str, *, givens: Tokens | None = None, solution: Tokens | None = None,
           highlight: Tokens | None = None, cell: int | None = None, shape: tuple[int, int] | None = None,
           crop: bool = True) -> PILImage.Image:
    """Draw one puzzle state.

    givens: Sudoku puzzle tokens; cells with a digit there are drawn in black on grey, others in blue.
    solution: label tokens; wrong cells are drawn red (Sudoku) or crossed in red (maze, ARC).
    highlight: per-token flags laid out like `tokens`; flagged cells get a yellow ring.
    shape: (rows, cols) when it cannot be inferred from the length; crop=False shows the whole ARC canvas.
    """
    a = _array(tokens, task)
    grid = to_grid(a, task, shape=shape, crop=crop)
    cell = cell or drawing_for(task).cell
    given = _mask_like(givens, a, task, shape, grid.shape, "givens")
    mark = _mask_like(highlight, a, task, shape, grid.shape, "highlight")
    wrong = None if solution is None else _wrong(grid, to_grid(solution, task, shape=shape, crop=crop))
    return _draw(grid, task, cell, givens=given, wrong=wrong, highlight=None if mark is None else mark != 0)


# ---------------------------------------------------------------------------------------------------------------
# traces


def _band(cell: int) -> int:
    """Font size of frame labels and captions."""
    return max(12, min(18, cell // 2 + 4))


def _frame(grid_img: PILImage.Image, label: str, caption: str | None, cell: int, min_width: int = 0) -> PILImage.Image:
    """A rendered grid with its label above and optional caption below."""
    Image, _, _ = _pil()
    size = _band(cell)
    band = size + 8
    w = max(grid_img.width, min_width)
    frame = Image.new("RGB", (w, band + grid_img.height + (band if caption else 0)), WHITE)
    frame.paste(grid_img, (0, band))
    draw_text(frame, (w / 2, band / 2), label, size, BLACK)
    if caption:
        draw_text(frame, (w / 2, band + grid_img.height + band / 2), caption, size, (60, 60, 60))
    return frame


def trace_frames(steps: Sequence[Tokens], task: str, *, givens: Tokens | None = None, solution: Tokens | None = None,
                 inputs: Tokens | None = None, show_solution: bool = False, captions: Sequence[str] | None = None,
                 cell: int | None = None, shape: tuple[int, int] | None = None) -> list[PILImage.Image]:
    """One labelled picture per supervision step ("step 1", ...), cells changed since the previous step ringed.

    inputs: shown first as a "puzzle" frame; givens: cells given by the puzzle are drawn as given (the
    puzzle's token, in the given style), whatever the model wrote there; show_solution: `solution` shown last
    as a "label" frame.
    captions: one line under each step, e.g. "acc 87%" or "q_halt 0.93".
    """
    if not steps:
        raise ValueError("steps: need at least one step to draw")
    if captions is not None and len(captions) != len(steps):
        raise ValueError(f"captions: expected one per step ({len(steps)}), got {len(captions)}")
    if show_solution and solution is None:
        raise ValueError("show_solution=True needs a solution")
    cell = cell or drawing_for(task).cell
    frames = []
    if inputs is not None:
        frames.append(_frame(render(inputs, task, givens=givens, cell=cell, shape=shape), "puzzle", None, cell))
    previous = None
    for i, tokens in enumerate(steps):
        a = _array(tokens, f"step {i + 1}")
        grid = to_grid(a, task, shape=shape)
        given = _mask_like(givens, a, task, shape, grid.shape, "givens")
        wrong = None if solution is None else _wrong(grid, to_grid(solution, task, shape=shape))
        changed = None if previous is None else _wrong(grid, previous)  # differs from, or is new since, then
        img = _draw(grid, task, cell, givens=given, wrong=wrong, highlight=changed)
        frames.append(_frame(img, f"step {i + 1}", captions[i] if captions else None, cell))
        previous = grid
    if show_solution:
        frames.append(_frame(render(solution, task, givens=givens, cell=cell, shape=shape), "label", None, cell))
    return frames


def _strip(frames: Sequence[PILImage.Image]) -> PILImage.Image:
    Image, _, _ = _pil()
    strip = Image.new("RGB", (sum(f.width for f in frames) + GAP * (len(frames) - 1), max(f.height for f in frames)),
                      WHITE)
    x = 0
    for f in frames:
        strip.paste(f, (x, 0))
        x += f.width + GAP
    return strip


def render_trace(steps: Sequence[Tokens], task: str, *, givens: Tokens | None = None, solution: Tokens | None = None,
                 inputs: Tokens | None = None, show_solution: bool = False, captions: Sequence[str] | None = None,
                 cell: int | None = None, shape: tuple[int, int] | None = None) -> PILImage.Image:
    """The answer after each supervision step as one horizontal strip (frames as in `trace_frames`)."""
    return _strip(trace_frames(steps, task, givens=givens, solution=solution, inputs=inputs,
                               show_solution=show_solution, captions=captions, cell=cell, shape=shape))


# ---------------------------------------------------------------------------------------------------------------
# files


def _atomic_write(path: str | Path, write: Callable[[IO[bytes]], object]) -> Path:
    """Write through a temporary file in the same folder and rename it into place."""
    from trm.atomic import shared_mode

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, shared_mode(folder=False))  # mkstemp makes it private; a picture is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def save_gif(steps: Sequence[Tokens], task: str, path: str | Path, *, frame_ms: int = 700, last_ms: int = 2500,
             first_ms: int = 1500, loop: int = 0, inputs: Tokens | None = None, **frame_kwargs: Any) -> Path:
    """An animated GIF: the puzzle first (`inputs`, by default the `givens`; held for `first_ms`), then one
    frame per step (changed cells ringed), the last held for `last_ms`.

    frame_kwargs go to `trace_frames` (givens, solution, captions, cell, shape; not show_solution).
    """
    Image, _, _ = _pil()
    if "show_solution" in frame_kwargs:
        raise ValueError("save_gif draws the puzzle and one frame per step; show_solution is for render_trace")
    if inputs is None:
        inputs = frame_kwargs.get("givens")
    frames = trace_frames(steps, task, inputs=inputs, **frame_kwargs)
    w, h = max(f.width for f in frames), max(f.height for f in frames)
    padded = []
    for f in frames:  # ARC frames may differ in size; a GIF has one
        canvas = Image.new("RGB", (w, h), WHITE)
        canvas.paste(f, ((w - f.width) // 2, 0))
        padded.append(canvas)
    durations = [frame_ms] * (len(padded) - 1) + [last_ms]
    if inputs is not None and len(padded) > 2:
        durations[0] = first_ms
    return _atomic_write(path, lambda f: padded[0].save(f, format="GIF", save_all=True, append_images=padded[1:],
                                                        duration=durations, loop=loop))


def _png_base64(img: PILImage.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _accuracy_plot(per_step_accuracy: Mapping[str, Sequence[float]]) -> str:
    """PNG (base64) of accuracy (fractions, shown in %) against supervision step, one line per set."""
    try:
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        raise ImportError("the report's accuracy plot needs matplotlib: pip install 'trm[plot]'") from None
    fig = Figure(figsize=(6.4, 3.6), dpi=100)
    ax = fig.add_subplot()
    for name, acc in per_step_accuracy.items():
        ax.plot(range(1, len(acc) + 1), [100 * float(a) for a in acc], marker="o", label=name)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("supervision step")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


_CSS = """body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:4px 10px;text-align:left}img{max-width:100%}.ex img{image-rendering:pixelated}
.ex{margin:1em 0}.ok{color:#1a7f37}.bad{color:#c62828}
.legend span.sw{display:inline-block;min-width:1.4em;height:1.4em;line-height:1.4em;text-align:center;
border:1px solid #999;margin:0 .4em 0 1em;vertical-align:middle;font-weight:bold}"""


def _hex(c: Color) -> str:
    return "#" + "".join(f"{v:02x}" for v in c)


def legend_entries(task: str) -> list[tuple[Color, Color | None, str, str]]:
    """(fill, ink, mark, meaning) of everything a task's pictures show: its colours, then the marks."""
    drawing = drawing_for(task)
    entries = [(fill, ink, "7" if ink is not None else "", what) for fill, ink, what in drawing.legend()]
    entries.append((WHITE, HIGHLIGHT, "\u25a2", "yellow ring: changed since the previous step"))
    if drawing.crosses:
        entries.append((WHITE, WRONG_INK, "\u2715", "red cross: differs from the recorded answer"))
    return entries


def legend_html(task: str) -> str:
    """The legend of a task's pictures as one HTML paragraph of colour swatches."""
    esc = html.escape
    items = [f"<span class='sw' style='background:{_hex(fill)};color:{_hex(ink) if ink else '#000'}'>{esc(mark)}"
             f"</span>{esc(what)}" for fill, ink, mark, what in legend_entries(task)]
    return f"<p class='legend'><b>{esc(task)}:</b>" + "".join(items) + "</p>"


def html_report(path: str | Path, title: str, per_step_accuracy: Mapping[str, Sequence[float]],
                examples: Sequence[Mapping[str, Any]], summary: Mapping[str, Any], *, task: str | None = None,
                cell: int | None = None) -> Path:
    """One self-contained HTML file: summary table, per-step accuracy plot, solved and unsolved examples.

    per_step_accuracy: set name -> accuracy (fraction 0-1) after each supervision step.
    examples: dicts with "inputs", "steps" (tokens after each step), "label", "correct" (bool), and optionally
    "task" (else `task`), "name" and "captions" (one per step). Each is drawn as one trace strip.
    """
    esc = html.escape
    parts = [f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{esc(title)}</title>",
             f"<style>{_CSS}</style></head><body>\n<h1>{esc(title)}</h1>\n<h2>Summary</h2>\n<table>"]
    parts += [f"<tr><th>{esc(str(k))}</th><td>{esc(_fmt(v))}</td></tr>" for k, v in summary.items()]
    parts.append("</table>\n<h2>Accuracy after each supervision step</h2>")
    if any(len(v) for v in per_step_accuracy.values()):
        parts.append(f"<img alt='accuracy per supervision step' "
                     f"src='data:image/png;base64,{_accuracy_plot(per_step_accuracy)}'>")
    else:
        parts.append("<p>No per-step accuracy recorded.</p>")
    drawn = list(dict.fromkeys(str(ex.get("task", task)) for ex in examples if ex.get("task", task) is not None))
    if drawn:
        parts.append("<h2>Legend</h2>\n<p>Each example: the puzzle, the answer after each supervision step, and the "
                     "recorded answer (label).</p>")
        parts += [legend_html(t) for t in drawn]
    for correct, heading in ((True, "Solved examples"), (False, "Unsolved examples")):
        chosen = [(i, ex) for i, ex in enumerate(examples) if bool(ex.get("correct")) == correct]
        if not chosen:
            continue
        parts.append(f"<h2>{heading}</h2>")
        for i, ex in chosen:
            missing = [k for k in ("inputs", "steps", "label", "correct") if k not in ex]
            if missing:
                raise ValueError(f"examples[{i}]: missing {', '.join(missing)}")
            ex_task = ex.get("task", task)
            if ex_task is None:
                raise ValueError(f"examples[{i}]: no task; give the example a 'task' or pass task=")
            givens = ex["inputs"] if drawing_for(ex_task).shows_givens else None
            img = render_trace(ex["steps"], ex_task, givens=givens,
                               inputs=ex["inputs"], solution=ex["label"], show_solution=True,
                               captions=ex.get("captions"), cell=cell)
            name = str(ex.get("name", f"example {i + 1}"))
            cls, verdict = ("ok", "correct") if correct else ("bad", "wrong")
            parts.append(f"<div class='ex'><h3>{esc(name)} <span class='{cls}'>{verdict}</span></h3>"
                         f"<img alt='{esc(name)}' src='data:image/png;base64,{_png_base64(img)}'></div>")
    parts.append("</body></html>\n")
    text = "\n".join(parts)
    return _atomic_write(path, lambda f: f.write(text.encode("utf-8")))
