"""Sudoku: N x N grids with boxes (4x4 with 2x2 boxes, 6x6 with 2x3, 9x9 with 3x3).

Grids are numpy int arrays of shape (N, N), 0 = blank, digits 1..N. This module holds
- parsers for the Sudoku-Extreme CSV (`source,question,answer,rating`) and the one-line text format;
- an exact solver (bitmask constraint propagation with naked and hidden singles, backtracking on the
  cell with fewest candidates) that counts solutions up to a limit and rates a puzzle by its backtracks;
- a seeded generator of puzzles with a unique solution, with difficulty control;
- validity-preserving augmentations with inverses, a validity checker and the token encoding
  (pad 0, blank 1, digit d -> d + 1; vocab N + 2);
- the dataset builder (`SudokuBuildConfig`, `build_dataset`) writing the format of `trm.data.format`,
  and the optional download of Sudoku-Extreme from the Hugging Face Hub (`pip install trm[hub]`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np

from trm.data.format import (
    BLANK_IDENTIFIER,
    DataError,
    SetArrays,
    csv_splits,
    make_split,
    read_puzzle_csv,
    write_dataset,
)

BOX_SHAPES: dict[int, tuple[int, int]] = {4: (2, 2), 6: (2, 3), 9: (3, 3)}
"""Grid size -> (box rows, box columns)."""

PAD_TOKEN = 0
BLANK_TOKEN = 1
DIGIT_OFFSET = 1
"""Digit d is token d + DIGIT_OFFSET."""


def vocab_size(n: int = 9) -> int:
    """Token ids of an N x N Sudoku: pad, blank, N digits."""
    return n + 2


def box_shape(n: int) -> tuple[int, int]:
    if n not in BOX_SHAPES:
        raise ValueError(f"unsupported Sudoku size {n}; supported: {sorted(BOX_SHAPES)}")
    return BOX_SHAPES[n]


# ---------------------------------------------------------------------------------------------
# Tokens


def encode(grid: np.ndarray) -> np.ndarray:
    """Grid (..., N, N) with 0 = blank -> flat tokens (..., N*N): blank 1, digit d -> d + 1."""
    grid = np.asarray(grid)
    return (grid.reshape(*grid.shape[:-2], -1) + DIGIT_OFFSET).astype(np.int32)


def decode(tokens: np.ndarray, n: int = 9) -> np.ndarray:
    """Flat tokens (..., N*N) -> grid (..., N, N); pad and blank become 0."""
    tokens = np.asarray(tokens)
    grid = np.where(tokens > BLANK_TOKEN, tokens - DIGIT_OFFSET, 0)
    return grid.reshape(*tokens.shape[:-1], n, n)


# ---------------------------------------------------------------------------------------------
# Parsing


@dataclass
class SudokuRecords:
    """Puzzles read from a file: questions and (when known) answers as (P, N, N) int8 arrays."""

    questions: np.ndarray
    answers: np.ndarray | None
    sources: list[str]
    ratings: np.ndarray

    def __len__(self) -> int:
        return int(self.questions.shape[0])


def parse_line(text: str, n: int = 9, *, where: str = "", allow_blank: bool = True) -> np.ndarray:
    """One puzzle of N*N characters ('.' or '0' blank, digits 1..N) -> (N, N) int8 grid."""
    box_shape(n)
    if len(text) != n * n:
        raise DataError(f"{where}: expected {n * n} characters for a {n}x{n} Sudoku, got {len(text)}")
    grid = np.zeros(n * n, np.int8)
    for i, ch in enumerate(text):
        if ch in ".0":
            if not allow_blank:
                raise DataError(f"{where}: blank at position {i} in an answer (answers must be complete)")
        elif ch.isdigit() and 1 <= int(ch) <= n:
            grid[i] = int(ch)
        else:
            raise DataError(f"{where}: character {ch!r} at position {i} is not '.' or a digit 1-{n}")
    return grid.reshape(n, n)


def parse_text(path: str | Path, n: int = 9, limit: int | None = None) -> SudokuRecords:
    """The one-line format: one puzzle per line, '#' comment lines and empty lines skipped; no answers."""
    path = Path(path)
    grids = []
    with path.open() as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            grids.append(parse_line(line, n, where=f"{path}:{lineno}"))
            if limit is not None and len(grids) >= limit:
                break
    return SudokuRecords(questions=_stack(grids, n), answers=None, sources=[path.name] * len(grids),
                         ratings=np.zeros(len(grids), np.int32))


def parse_csv(path: str | Path, n: int = 9, limit: int | None = None) -> SudokuRecords:
    """The Sudoku-Extreme CSV: header `source,question,answer,rating`, '.' blank."""

    def row(where: str, q: str, a: str, rating: str) -> tuple[np.ndarray, np.ndarray, int]:
        question = parse_line(q, n, where=f"{where} (question)")
        answer = parse_line(a, n, where=f"{where} (answer)", allow_blank=False)
        given = question != 0
        if (question[given] != answer[given]).any():
            raise DataError(f"{where}: the answer disagrees with the question's givens")
        try:
            return question, answer, int(rating)
        except ValueError:
            raise DataError(f"{where}: rating {rating!r} is not an integer") from None

    questions, answers, sources, ratings = read_puzzle_csv(path, row, limit)
    return SudokuRecords(questions=_stack(questions, n), answers=_stack(answers, n), sources=sources, ratings=ratings)


def _stack(grids: list[np.ndarray], n: int) -> np.ndarray:
    return np.stack(grids).astype(np.int8) if grids else np.zeros((0, n, n), np.int8)


def format_grid(grid: np.ndarray) -> str:
    """The one-line form of a grid ('.' blank)."""
    return "".join("." if v == 0 else str(int(v)) for v in np.asarray(grid).reshape(-1))


# ---------------------------------------------------------------------------------------------
# Solver


@dataclass(frozen=True)
class _Tables:
    """Precomputed structure of an N x N Sudoku for the bitmask solver (bit d-1 = digit d)."""

    n: int
    full: int
    peers: tuple[tuple[int, ...], ...]
    units: tuple[tuple[int, ...], ...]
    popcount: tuple[int, ...]
    digit_of_bit: dict[int, int]


@cache
def _tables(n: int) -> _Tables:
    br, bc = box_shape(n)
    rows = [tuple(r * n + c for c in range(n)) for r in range(n)]
    cols = [tuple(r * n + c for r in range(n)) for c in range(n)]
    boxes = [tuple((r0 + r) * n + c0 + c for r in range(br) for c in range(bc))
             for r0 in range(0, n, br) for c0 in range(0, n, bc)]
    units = rows + cols + boxes
    peers = tuple(tuple(sorted({p for u in units if cell in u for p in u} - {cell})) for cell in range(n * n))
    return _Tables(n=n, full=(1 << n) - 1, peers=peers, units=tuple(units),
                   popcount=tuple(bin(m).count("1") for m in range(1 << n)),
                   digit_of_bit={1 << d: d + 1 for d in range(n)})


def _propagate(cand: list[int], queue: list[int], t: _Tables) -> bool:
    """Eliminate fixed digits from peers and place hidden singles until nothing changes.

    `queue` holds cells newly reduced to one candidate. Returns False on a contradiction.
    """
    peers, units, full = t.peers, t.units, t.full
    while True:
        while queue:
            cell = queue.pop()
            m = cand[cell]
            for p in peers[cell]:
                pm = cand[p]
                if pm & m:
                    pm &= ~m
                    if not pm:
                        return False
                    cand[p] = pm
                    if not pm & (pm - 1):
                        queue.append(p)
        # Hidden singles: a digit possible in only one cell of a unit goes there.
        for unit in units:
            once = twice = 0
            for c in unit:
                m = cand[c]
                twice |= once & m
                once |= m
            if once != full:
                return False
            hidden = once & ~twice
            if hidden:
                for c in unit:
                    m = cand[c]
                    h = m & hidden
                    if h and h != m:
                        if h & (h - 1):
                            return False  # two digits that each fit only this cell
                        cand[c] = h
                        queue.append(c)
        if not queue:
            return True


@dataclass
class SolveResult:
    """Solutions found (at most the requested limit) and the search effort."""

    solutions: list[np.ndarray]
    backtracks: int
    """Branches that led to a contradiction: the rating of the puzzle."""
    complete: bool
    """True when the search space was exhausted (so `len(solutions)` is the exact count)."""


def solve(grid: np.ndarray, limit: int = 1, rng: np.random.Generator | None = None) -> SolveResult:
    """Up to `limit` solutions of a puzzle (0 = blank). With `rng`, branches are tried in random order
    (used to generate random full grids); without, in digit order, so results are deterministic."""
    grid = np.asarray(grid)
    n = grid.shape[0]
    if grid.shape != (n, n):
        raise ValueError(f"expected a square grid, got shape {grid.shape}")
    t = _tables(n)
    cand = [t.full] * (n * n)
    queue = []
    for i, v in enumerate(grid.reshape(-1).tolist()):
        if v:
            if not 1 <= v <= n:
                raise ValueError(f"digit {v} at cell {i} outside 1..{n}")
            bit = 1 << (v - 1)
            if not cand[i] & bit:
                return SolveResult([], 0, True)
            cand[i] = bit
            queue.append(i)
    solutions: list[list[int]] = []
    backtracks = 0
    popcount = t.popcount

    def search(cand: list[int]) -> bool:
        """Depth-first search; returns True to stop (limit reached)."""
        nonlocal backtracks
        best, best_count = -1, n + 1
        for i, m in enumerate(cand):
            k = popcount[m]
            if 1 < k < best_count:
                best, best_count = i, k
                if k == 2:
                    break
        if best < 0:
            solutions.append(cand)
            return len(solutions) >= limit
        m = cand[best]
        bits = [1 << d for d in range(n) if m >> d & 1]
        if rng is not None:
            bits = [bits[i] for i in rng.permutation(len(bits))]
        for bit in bits:
            child = cand.copy()
            child[best] = bit
            if _propagate(child, [best], t):
                if search(child):
                    return True
            else:
                backtracks += 1
        return False

    if not _propagate(cand, queue, t):
        return SolveResult([], 0, True)
    stopped = search(cand)
    grids = [np.array([t.digit_of_bit[m] for m in s], np.int8).reshape(n, n) for s in solutions]
    return SolveResult(grids, backtracks, complete=not stopped)


def solve_one(grid: np.ndarray) -> np.ndarray | None:
    """The first solution of a puzzle, or None when it has none."""
    result = solve(grid, limit=1)
    return result.solutions[0] if result.solutions else None


def count_solutions(grid: np.ndarray, limit: int = 2) -> int:
    """Number of solutions, counting at most `limit` (2 answers "is it unique?")."""
    return len(solve(grid, limit=limit).solutions)


def has_unique_solution(grid: np.ndarray) -> bool:
    return count_solutions(grid, 2) == 1


def rating(grid: np.ndarray) -> int:
    """Backtracks the solver needs to find the first solution (0: solved by propagation alone)."""
    return solve(grid, limit=1).backtracks


# ---------------------------------------------------------------------------------------------
# Validity


def is_valid_solution(grid: np.ndarray, givens: np.ndarray | None = None) -> bool:
    """True when `grid` is a complete grid obeying the rules and agreeing with the non-blank `givens`.
    Any such completion counts, not only the one recorded as the answer."""
    grid = np.asarray(grid)
    n = grid.shape[-1]
    if grid.shape != (n, n) or n not in BOX_SHAPES:
        return False
    return bool(valid_solutions(grid[None], None if givens is None else np.asarray(givens)[None])[0])


def valid_solutions(grids: np.ndarray, givens: np.ndarray | None = None) -> np.ndarray:
    """Vectorised `is_valid_solution` over a batch of (B, N, N) grids -> (B,) bool."""
    grids = np.asarray(grids)
    b, n = grids.shape[0], grids.shape[-1]
    br, bc = box_shape(n)
    ok = ((grids >= 1) & (grids <= n)).all(axis=(1, 2))
    onehot = np.zeros((b, n, n, n + 1), bool)
    np.put_along_axis(onehot, np.clip(grids, 0, n).astype(np.int64)[..., None], True, axis=-1)
    onehot = onehot[..., 1:]
    ok &= (onehot.sum(axis=1) == 1).all(axis=(1, 2))  # each digit once per column
    ok &= (onehot.sum(axis=2) == 1).all(axis=(1, 2))  # each digit once per row
    boxes = onehot.reshape(b, n // br, br, n // bc, bc, n).sum(axis=(2, 4))
    ok &= (boxes == 1).all(axis=(1, 2, 3))
    if givens is not None:
        givens = np.asarray(givens).reshape(grids.shape)
        ok &= ((givens == 0) | (givens == grids)).all(axis=(1, 2))
    return ok


def valid_token_solutions(predictions: np.ndarray, inputs: np.ndarray) -> np.ndarray:
    """Validity of predicted token sequences (B, N*N) against the input token sequences -> (B,) bool."""
    predictions, inputs = np.asarray(predictions), np.asarray(inputs)
    n = int(round(predictions.shape[-1] ** 0.5))
    return valid_solutions(decode(predictions, n), decode(inputs, n))


# ---------------------------------------------------------------------------------------------
# Augmentation


@dataclass(frozen=True)
class SudokuAugmentation:
    """A validity-preserving transform: transpose (square boxes only), then rows and columns permuted
    (bands / rows within a band, stacks / columns within a stack), then digits relabelled.

    `row_perm[i]` is the source row of output row i; `digit_map[d]` the new digit of digit d (index 0
    maps blank to blank).
    """

    digit_map: tuple[int, ...]
    transpose: bool
    row_perm: tuple[int, ...]
    col_perm: tuple[int, ...]


def relabel_digits(grid: np.ndarray, digit_map: np.ndarray) -> np.ndarray:
    return np.asarray(digit_map)[np.asarray(grid)]


def inverse_digit_map(digit_map: np.ndarray) -> np.ndarray:
    return np.argsort(np.asarray(digit_map))


def permute_lines(grid: np.ndarray, row_perm: np.ndarray, col_perm: np.ndarray) -> np.ndarray:
    return np.asarray(grid)[..., np.asarray(row_perm)[:, None], np.asarray(col_perm)[None, :]]


def random_line_permutation(n: int, group: int, rng: np.random.Generator) -> np.ndarray:
    """Permute the n // group blocks of `group` lines, and the lines within each block."""
    blocks = rng.permutation(n // group)
    return np.concatenate([b * group + rng.permutation(group) for b in blocks])


def random_augmentation(n: int, rng: np.random.Generator) -> SudokuAugmentation:
    br, bc = box_shape(n)
    digit_map = np.concatenate([[0], rng.permutation(np.arange(1, n + 1))])
    # Transposing turns br x bc boxes into bc x br boxes: only valid when they are square.
    transpose = bool(rng.random() < 0.5) if br == bc else False
    row_perm = random_line_permutation(n, br, rng)
    col_perm = random_line_permutation(n, bc, rng)
    return SudokuAugmentation(tuple(int(d) for d in digit_map), transpose,
                              tuple(int(r) for r in row_perm), tuple(int(c) for c in col_perm))


@dataclass(frozen=True)
class SudokuAugmentations:
    """Many augmentations as arrays, one row each (the fields of `SudokuAugmentation`)."""

    digit_maps: np.ndarray
    """(count, N + 1)"""
    transpose: np.ndarray
    """(count,) bool"""
    row_perms: np.ndarray
    """(count, N)"""
    col_perms: np.ndarray
    """(count, N)"""

    def __getitem__(self, i: int) -> SudokuAugmentation:
        return SudokuAugmentation(tuple(int(d) for d in self.digit_maps[i]), bool(self.transpose[i]),
                                  tuple(int(r) for r in self.row_perms[i]), tuple(int(c) for c in self.col_perms[i]))


def _random_permutations(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Independent random permutations of range(shape[-1])."""
    return rng.random(shape).argsort(axis=-1)


def random_augmentations(n: int, count: int, rng: np.random.Generator) -> SudokuAugmentations:
    """`count` independent draws of `random_augmentation`, made at once (the dataset build)."""
    br, bc = box_shape(n)

    def lines(group: int) -> np.ndarray:
        blocks = _random_permutations((count, n // group), rng)
        within = _random_permutations((count, n // group, group), rng)
        return (blocks[:, :, None] * group + within).reshape(count, n)

    digit_maps = np.concatenate([np.zeros((count, 1), np.int64), 1 + _random_permutations((count, n), rng)], axis=1)
    transpose = rng.random(count) < 0.5 if br == bc else np.zeros(count, bool)
    return SudokuAugmentations(digit_maps, transpose, lines(br), lines(bc))


def augment_many(grids: np.ndarray, augs: SudokuAugmentations) -> np.ndarray:
    """Apply augmentation i to grid i of (count, N, N); equal to `augment` row by row."""
    grids = np.asarray(grids)
    grids = np.where(augs.transpose[:, None, None], np.swapaxes(grids, -1, -2), grids)
    rows = np.arange(len(grids))[:, None, None]
    grids = grids[rows, augs.row_perms[:, :, None], augs.col_perms[:, None, :]]
    return np.take_along_axis(augs.digit_maps, grids.reshape(len(grids), -1), axis=1).reshape(grids.shape)


def augment(grid: np.ndarray, aug: SudokuAugmentation) -> np.ndarray:
    """Apply to a grid (..., N, N)."""
    grid = np.asarray(grid)
    if aug.transpose:
        grid = np.swapaxes(grid, -1, -2)
    return relabel_digits(permute_lines(grid, np.array(aug.row_perm), np.array(aug.col_perm)), np.array(aug.digit_map))


def unaugment(grid: np.ndarray, aug: SudokuAugmentation) -> np.ndarray:
    """The inverse of `augment`."""
    grid = relabel_digits(grid, inverse_digit_map(np.array(aug.digit_map)))
    grid = permute_lines(grid, np.argsort(aug.row_perm), np.argsort(aug.col_perm))
    return np.swapaxes(grid, -1, -2) if aug.transpose else grid


# ---------------------------------------------------------------------------------------------
# Generator


@dataclass(frozen=True, kw_only=True)
class GeneratorConfig:
    """What kind of puzzles `generate` makes."""

    n: int = 9
    """Grid size: 4, 6 or 9."""
    target_givens: int | None = None
    """Stop removing digits at this many givens; None: remove until minimal (no given can go)."""
    min_rating: int = 0
    """Keep only puzzles the solver needs at least this many backtracks for."""
    max_rating: int | None = None
    """... and at most this many (None: no bound)."""
    max_attempts: int = 1000
    """Full grids tried before giving up on the rating range."""

    def __post_init__(self) -> None:
        box_shape(self.n)
        if self.target_givens is not None and not 0 <= self.target_givens <= self.n * self.n:
            raise ValueError(f"target_givens {self.target_givens} outside 0..{self.n * self.n}")
        if self.max_rating is not None and self.max_rating < self.min_rating:
            raise ValueError(f"max_rating {self.max_rating} < min_rating {self.min_rating}")


def random_full_grid(n: int, rng: np.random.Generator) -> np.ndarray:
    """A random complete N x N grid (randomised search from the empty grid)."""
    return solve(np.zeros((n, n), np.int8), limit=1, rng=rng).solutions[0]


def dig(solution: np.ndarray, rng: np.random.Generator, target_givens: int | None = None) -> np.ndarray:
    """Remove digits of a full grid in random order while the solution stays unique.

    One pass over all cells leaves a minimal puzzle: a removal that broke uniqueness earlier would
    still break it with fewer givens.
    """
    puzzle = np.array(solution, np.int8)
    flat = puzzle.reshape(-1)
    givens = flat.size
    for cell in rng.permutation(flat.size):
        if target_givens is not None and givens <= target_givens:
            break
        digit = flat[cell]
        flat[cell] = 0
        if count_solutions(puzzle, 2) == 1:
            givens -= 1
        else:
            flat[cell] = digit
    return puzzle


def generate(config: GeneratorConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, int]:
    """One puzzle with a unique solution: (puzzle, solution, rating)."""
    for _ in range(config.max_attempts):
        solution = random_full_grid(config.n, rng)
        puzzle = dig(solution, rng, config.target_givens)
        r = rating(puzzle)
        if r >= config.min_rating and (config.max_rating is None or r <= config.max_rating):
            return puzzle, solution, r
    raise DataError(f"no {config.n}x{config.n} puzzle with rating in [{config.min_rating}, {config.max_rating}] "
                    f"after {config.max_attempts} attempts; widen the range or raise max_attempts")


def generate_many(config: GeneratorConfig, count: int,
                  rng: np.random.Generator) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
    for _ in range(count):
        yield generate(config, rng)


# ---------------------------------------------------------------------------------------------
# Dataset builder

HUB_REPO = "sapientinc/sudoku-extreme"


@dataclass(frozen=True, kw_only=True)
class SudokuBuildConfig:
    """Where the puzzles come from and how the dataset is made."""

    source: str = "csv"
    """"csv" (Sudoku-Extreme CSV file, or a folder with train.csv and test.csv), "text" (one-line
    file; answers found by the solver), "generate" (the generator), or "hub" (download Sudoku-Extreme)."""
    path: Path | None = None
    """The CSV file / folder or text file (csv, text); the download cache folder (hub, optional)."""
    n: int = 9
    """Grid size."""
    subsample: int | None = None
    """Training puzzles kept, drawn at random (the paper: 1000); None keeps all."""
    num_aug: int = 0
    """Augmented variants per training puzzle (the paper: 1000); test puzzles are not augmented."""
    test_fraction: float = 0.1
    """Share of puzzles held out for test when the source has no test split."""
    test_size: int | None = None
    """Test puzzles kept, drawn at random; None keeps all."""
    count: int = 1000
    """Puzzles to generate (generate)."""
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    """Generator settings (generate); its n must equal `n`."""
    limit: int | None = None
    """Read at most this many puzzles per file (quick builds)."""
    seed: int = 0
    """Seeds everything random; the same config gives byte-identical files."""

    def __post_init__(self) -> None:
        box_shape(self.n)
        if self.source not in ("csv", "text", "generate", "hub"):
            raise ValueError(f"source {self.source!r}: must be csv, text, generate or hub")
        if self.source in ("csv", "text") and self.path is None:
            raise ValueError(f"source {self.source!r} needs a path")
        if not 0.0 <= self.test_fraction < 1.0:
            raise ValueError(f"test_fraction {self.test_fraction} outside [0, 1)")
        if self.num_aug < 0:
            raise ValueError(f"num_aug {self.num_aug} must be >= 0")
        if self.source == "generate" and self.count < 1:
            raise ValueError(f"--generate {self.count}: the count of puzzles to generate must be positive")
        for name in ("subsample", "test_size", "limit"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} {value}: must be positive (or left out)")
        if self.source == "generate" and self.generator.n != self.n:
            raise ValueError(f"generator.n {self.generator.n} differs from n {self.n}")


def download_sudoku_extreme(cache_dir: str | Path | None = None, repo_id: str = HUB_REPO) -> Path:
    """Fetch train.csv and test.csv of Sudoku-Extreme from the Hugging Face Hub; returns their folder."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise DataError("downloading from the Hugging Face Hub needs the `hub` extra: pip install 'trm[hub]' "
                        "(or pass a local CSV with --csv)") from None
    paths = []
    for name in ("train.csv", "test.csv"):
        try:
            paths.append(Path(hf_hub_download(repo_id, name, repo_type="dataset",
                                              cache_dir=None if cache_dir is None else str(cache_dir))))
        except Exception as e:  # the hub raises many types (offline, HTTP, missing entry); all mean "no file"
            raise DataError(f"could not download {name} of {repo_id} from the Hugging Face Hub "
                            f"({type(e).__name__}: {e}); if offline, download it elsewhere and pass "
                            f"the CSV folder with --csv") from None
    return paths[0].parent


def _with_answers(records: SudokuRecords, where: str) -> SudokuRecords:
    if records.answers is not None:
        return records
    answers = []
    for i, q in enumerate(records.questions):
        result = solve(q, limit=1)
        if not result.solutions:
            raise DataError(f"{where}: puzzle {i + 1} has no solution")
        answers.append(result.solutions[0])
        records.ratings[i] = result.backtracks
    records.answers = _stack(answers, records.questions.shape[-1])
    return records


def _take(records: SudokuRecords, index: np.ndarray) -> SudokuRecords:
    assert records.answers is not None
    return SudokuRecords(records.questions[index], records.answers[index],
                         [records.sources[i] for i in index], records.ratings[index])


def load_source(config: SudokuBuildConfig, rng: np.random.Generator,
                progress: Callable[[int], object] | None = None) -> tuple[SudokuRecords, SudokuRecords]:
    """Train and test puzzles (with answers) of a build, before subsampling and augmentation; `progress(1)`
    after each generated puzzle."""
    n = config.n
    if config.source == "generate":
        made = []
        for m in generate_many(config.generator, config.count, rng):
            made.append(m)
            if progress is not None:
                progress(1)
        records = SudokuRecords(_stack([m[0] for m in made], n), _stack([m[1] for m in made], n),
                                ["generated"] * len(made), np.asarray([m[2] for m in made], np.int32))
        return split_records(records, config.test_fraction, rng)
    path = download_sudoku_extreme(config.path) if config.source == "hub" else Path(str(config.path))
    if config.source == "text":
        return split_records(_with_answers(parse_text(path, n, config.limit), str(path)), config.test_fraction, rng)
    return csv_splits(path, lambda p: parse_csv(p, n, config.limit),
                      lambda records: split_records(records, config.test_fraction, rng))


def split_records(records: SudokuRecords, test_fraction: float,
                  rng: np.random.Generator) -> tuple[SudokuRecords, SudokuRecords]:
    order = rng.permutation(len(records))
    n_test = int(round(len(records) * test_fraction))
    return _take(records, np.sort(order[n_test:])), _take(records, np.sort(order[:n_test]))


def _subsample(records: SudokuRecords, size: int | None, rng: np.random.Generator) -> SudokuRecords:
    if size is None or size >= len(records):
        return records
    return _take(records, np.sort(rng.choice(len(records), size, replace=False)))


def _set_arrays(records: SudokuRecords, num_aug: int, rng: np.random.Generator,
                progress: Callable[[int], object] | None) -> SetArrays:
    """One group per puzzle: the original then `num_aug` augmented variants, one example each."""
    assert records.answers is not None
    p, n = len(records), records.questions.shape[-1]
    per = 1 + num_aug
    inputs = np.empty((p, per, n * n), np.int32)
    labels = np.empty((p, per, n * n), np.int32)
    chunk = max(1, 50_000 // per)  # puzzles transformed at once (bounded memory, steady progress)
    for start in range(0, p, chunk):
        q, a = records.questions[start:start + chunk], records.answers[start:start + chunk]
        inputs[start:start + chunk, 0], labels[start:start + chunk, 0] = encode(q), encode(a)
        if num_aug:
            augs = random_augmentations(n, len(q) * num_aug, rng)
            inputs[start:start + chunk, 1:] = encode(augment_many(np.repeat(q, num_aug, axis=0), augs)).reshape(
                len(q), num_aug, n * n)
            labels[start:start + chunk, 1:] = encode(augment_many(np.repeat(a, num_aug, axis=0), augs)).reshape(
                len(q), num_aug, n * n)
        if progress is not None:
            progress(len(q))
    return SetArrays(inputs=inputs.reshape(p * per, n * n), labels=labels.reshape(p * per, n * n),
                     puzzle_identifiers=np.zeros(p * per, np.int32),
                     puzzle_indices=np.arange(p * per + 1, dtype=np.int32),
                     group_indices=np.arange(0, p * per + 1, per, dtype=np.int32))


def build_dataset(output: str | Path, config: SudokuBuildConfig, *, overwrite: bool = False,
                  progress: Callable[[int], object] | None = None) -> dict[str, int]:
    """Write a Sudoku dataset folder; returns counts of what went where.

    Like the reference, every puzzle has the shared identifier 0 (one embedding row: learned register
    tokens), so `num_puzzle_identifiers` is 1.
    """
    from trm.tasks.base import set_progress_total

    rng = np.random.default_rng(config.seed)
    generated = config.count if config.source == "generate" else 0
    set_progress_total(progress, 2 * generated)  # generating, then writing each puzzle
    train, test = load_source(config, rng, progress)
    train = _subsample(train, config.subsample, rng)
    test = _subsample(test, config.test_size, rng)
    if len(train) == 0:
        raise DataError(f"no training puzzles from {config.source} {config.path or ''}".strip())
    set_progress_total(progress, generated + len(train) + len(test))
    splits = {}
    for name, records, num_aug in (("train", train, config.num_aug), ("test", test, 0)):
        arrays = _set_arrays(records, num_aug, rng, progress)
        splits[name] = make_split({"all": arrays}, vocab_size=vocab_size(config.n), num_puzzle_identifiers=1,
                                   task="sudoku")
    write_dataset(output, splits, [BLANK_IDENTIFIER], overwrite=overwrite)
    return {"train_groups": len(train), "train_examples": splits["train"].sets["all"].num_examples,
            "test_examples": splits["test"].sets["all"].num_examples}
