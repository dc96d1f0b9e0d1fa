"""Maze: shortest paths on square grids (Maze-Hard is 30x30).

A maze is an (H, W) array of tokens: 1 wall '#', 2 open ' ', 3 start 'S', 4 goal 'G', 5 path 'o'
(0 is pad; vocab 6). The question has walls, open cells, S and G; the answer adds 'o' on the cells of
a shortest path strictly between S and G. Moves are 4-connected. Path length counts moves.

This module holds the CSV parser (`source,question,answer,rating`), a seeded generator in the manner
of Searchformer (walls on a random 30-50% of cells, random start and goal, kept when the shortest
path is long enough, optionally only those with a unique shortest path), a vectorised BFS, a
validity check (any shortest path counts), the 8 dihedral augmentations with inverses, and the
dataset builder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trm.data.dihedral import dihedral
from trm.data.format import (
    BLANK_IDENTIFIER,
    DataError,
    SetArrays,
    csv_splits,
    make_split,
    read_puzzle_csv,
    write_dataset,
)
from trm.tasks.base import set_progress_total

CHARSET = "# SGo"
"""Characters of tokens 1..5."""
PAD, WALL, OPEN, START, GOAL, PATH = 0, 1, 2, 3, 4, 5
VOCAB_SIZE = len(CHARSET) + 1
UNREACHED = -1

_CHAR_TO_TOKEN = {ch: i + 1 for i, ch in enumerate(CHARSET)}


def encode_text(text: str, side: int, *, where: str = "") -> np.ndarray:
    """A maze string of side*side characters -> (side, side) int8 tokens."""
    if len(text) != side * side:
        raise DataError(f"{where}: expected {side * side} characters for a {side}x{side} maze, got {len(text)}")
    bad = set(text) - set(CHARSET)
    if bad:
        ch = sorted(bad)[0]
        raise DataError(f"{where}: character {ch!r} at position {text.index(ch)} is not one of {CHARSET!r}")
    return np.array([_CHAR_TO_TOKEN[c] for c in text], np.int8).reshape(side, side)


def decode_text(grid: np.ndarray) -> str:
    return "".join(CHARSET[t - 1] if t > 0 else "?" for t in np.asarray(grid).reshape(-1).tolist())


@dataclass
class MazeRecords:
    """Mazes read from a file: (P, H, W) int8 token arrays."""

    questions: np.ndarray
    answers: np.ndarray
    sources: list[str]
    ratings: np.ndarray

    def __len__(self) -> int:
        return int(self.questions.shape[0])


def _check_question(q: np.ndarray, where: str) -> None:
    for token, name in ((START, "start 'S'"), (GOAL, "goal 'G'")):
        count = int((q == token).sum())
        if count != 1:
            raise DataError(f"{where}: a maze needs exactly one {name}, found {count}")
    if (q == PATH).any():
        raise DataError(f"{where}: the question already holds path cells 'o'")


def parse_csv(path: str | Path, limit: int | None = None) -> MazeRecords:
    """The Maze-Hard CSV: header `source,question,answer,rating`; every row the same square size."""
    side = 0  # set by the first row

    def row(where: str, q: str, a: str, rating: str) -> tuple[np.ndarray, np.ndarray, int]:
        nonlocal side
        if not side:
            side = int(round(len(q) ** 0.5))
            if side * side != len(q):
                raise DataError(f"{where}: question of {len(q)} characters is not a square maze")
        question = encode_text(q, side, where=f"{where} (question; rows of this file are {side}x{side})")
        answer = encode_text(a, side, where=f"{where} (answer; rows of this file are {side}x{side})")
        _check_question(question, f"{where} (question)")
        if not _consistent(question, answer).all():
            raise DataError(f"{where}: the answer's walls, start or goal differ from the question's")
        try:
            return question, answer, int(float(rating))
        except ValueError:
            raise DataError(f"{where}: rating {rating!r} is not a number") from None

    questions, answers, sources, ratings = read_puzzle_csv(path, row, limit)
    return MazeRecords(_stack(questions, side), _stack(answers, side), sources, ratings)


def _consistent(question: np.ndarray, answer: np.ndarray) -> np.ndarray:
    """Per cell: the answer keeps walls, start and goal, and marks open cells open or path."""
    return np.where(question == OPEN, (answer == OPEN) | (answer == PATH), answer == question)


def _stack(grids: list[np.ndarray], side: int) -> np.ndarray:
    return np.stack(grids).astype(np.int8) if grids else np.zeros((0, side, side), np.int8)


# ---------------------------------------------------------------------------------------------
# Shortest paths


def bfs_distances(passable: np.ndarray, source: tuple[int, int]) -> np.ndarray:
    """Moves from `source` to every cell through passable cells (4-connected); UNREACHED elsewhere.

    Whole-frontier numpy steps: one array operation per distance, not per cell.
    """
    passable = np.asarray(passable, bool)
    dist = np.full(passable.shape, UNREACHED, np.int32)
    frontier = np.zeros(passable.shape, bool)
    frontier[source] = True
    dist[source] = 0
    seen = frontier.copy()
    d = 0
    while frontier.any():
        d += 1
        grown = np.zeros_like(frontier)
        grown[1:] |= frontier[:-1]
        grown[:-1] |= frontier[1:]
        grown[:, 1:] |= frontier[:, :-1]
        grown[:, :-1] |= frontier[:, 1:]
        frontier = grown & passable & ~seen
        seen |= frontier
        dist[frontier] = d
    return dist


def _find(grid: np.ndarray, token: int) -> tuple[int, int]:
    cells = np.argwhere(np.asarray(grid) == token)
    if len(cells) != 1:
        raise ValueError(f"expected exactly one cell with token {token}, found {len(cells)}")
    return int(cells[0, 0]), int(cells[0, 1])


def shortest_path_count_is_one(question: np.ndarray) -> bool:
    """True when the maze has exactly one shortest start-goal path: every distance layer strictly between
    start and goal holds exactly one cell that lies on a shortest path (from-start + to-goal = best)."""
    passable = np.asarray(question) != WALL
    from_start = bfs_distances(passable, _find(question, START))
    to_goal = bfs_distances(passable, _find(question, GOAL))
    best = int(from_start[_find(question, GOAL)])
    if best == UNREACHED:
        return False
    on_some = (from_start >= 0) & (to_goal >= 0) & (from_start + to_goal == best)
    return bool((np.bincount(from_start[on_some], minlength=best + 1) == 1).all())


def shortest_path_length(question: np.ndarray) -> int:
    """Moves of a shortest start-goal path, or UNREACHED."""
    dist = bfs_distances(np.asarray(question) != WALL, _find(question, START))
    return int(dist[_find(question, GOAL)])


_MOVES = ((-1, 0), (1, 0), (0, -1), (0, 1))


def solve(question: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray | None:
    """The answer grid of a maze: a shortest path marked 'o' (ties broken by `rng`, else in a fixed
    order), or None when the goal is unreachable."""
    question = np.asarray(question)
    start, goal = _find(question, START), _find(question, GOAL)
    dist = bfs_distances(question != WALL, start)
    if dist[goal] == UNREACHED:
        return None
    answer = question.copy()
    cell = goal
    h, w = question.shape
    while dist[cell] > 1:
        steps = [(cell[0] + dr, cell[1] + dc) for dr, dc in _MOVES]
        back = [s for s in steps if 0 <= s[0] < h and 0 <= s[1] < w and dist[s] == dist[cell] - 1]
        cell = back[int(rng.integers(len(back)))] if rng is not None else back[0]
        answer[cell] = PATH
    return answer


def is_valid_path(question: np.ndarray, answer: np.ndarray) -> bool:
    """True when `answer` keeps the question's walls, start and goal and marks with 'o' exactly the
    inner cells of some shortest start-goal path (any shortest path counts, not only the recorded one)."""
    question, answer = np.asarray(question), np.asarray(answer)
    if question.shape != answer.shape:
        return False
    try:
        start, goal = _find(question, START), _find(question, GOAL)
    except ValueError:
        return False
    if not _consistent(question, answer).all():
        return False
    best = bfs_distances(question != WALL, start)[goal]
    if best == UNREACHED:
        return False
    on_path = (answer == PATH) | (answer == START) | (answer == GOAL)
    # d + 1 marked cells that hold a start-goal walk of d moves are exactly a shortest path.
    return int(on_path.sum()) == best + 1 and bfs_distances(on_path, start)[goal] == best


def valid_token_paths(predictions: np.ndarray, inputs: np.ndarray) -> np.ndarray:
    """`is_valid_path` over token sequences (B, side*side) -> (B,) bool."""
    predictions, inputs = np.asarray(predictions), np.asarray(inputs)
    side = int(round(predictions.shape[-1] ** 0.5))
    return np.array([is_valid_path(q.reshape(side, side), p.reshape(side, side))
                     for q, p in zip(inputs, predictions, strict=True)], bool)


# ---------------------------------------------------------------------------------------------
# Generator


@dataclass(frozen=True, kw_only=True)
class MazeGeneratorConfig:
    """Random mazes: walls on a random share of cells, random start and goal, long shortest path."""

    size: int = 30
    """Side of the square grid."""
    min_wall_density: float = 0.3
    """Each maze draws its wall share uniformly in [min_wall_density, max_wall_density]."""
    max_wall_density: float = 0.5
    min_path_length: int = 110
    """Keep only mazes whose shortest path has more moves than this."""
    max_attempts: int = 10_000_000
    """Attempts (wall layout, start, goal) per maze before giving up."""
    unique_path: bool = False
    """Keep only mazes with exactly one shortest path, so that the answer is a function of the question
    (with several, the recorded one is drawn at random and a model cannot know which was drawn)."""

    def __post_init__(self) -> None:
        if self.size < 2:
            raise ValueError(f"size {self.size} must be at least 2")
        if not 0.0 <= self.min_wall_density <= self.max_wall_density < 1.0:
            raise ValueError(f"wall densities [{self.min_wall_density}, {self.max_wall_density}] must satisfy "
                             "0 <= min <= max < 1")


def batch_goal_distances(passable: np.ndarray, start: np.ndarray, goal: np.ndarray) -> np.ndarray:
    """Shortest start-goal moves of K mazes at once ((K, H, W) passable, (K, 2) cells) -> (K,), UNREACHED
    where the goal cannot be reached.

    Rows are bit sets (one uint64 per row, W <= 64): a BFS step is a few shifts and ANDs over (K, H)
    words. Mazes whose goal was reached or whose frontier died are dropped from the working set.
    """
    k, h, w = passable.shape
    if w > 64:
        return np.array([bfs_distances(p, tuple(s))[tuple(g)] for p, s, g in zip(passable, start, goal, strict=True)],
                        np.int32)
    bits = np.uint64(1) << np.arange(w, dtype=np.uint64)
    open_rows = (passable.astype(np.uint64) * bits).sum(-1, dtype=np.uint64)
    alive = np.arange(k)
    frontier = np.zeros((k, h), np.uint64)
    frontier[alive, start[:, 0]] = bits[start[:, 1]]
    seen = frontier.copy()
    goal_row, goal_bit = goal[:, 0].copy(), bits[goal[:, 1]]
    dist = np.full(k, UNREACHED, np.int32)
    dist[(start == goal).all(1)] = 0
    one = np.uint64(1)
    d = 0
    while alive.size:
        d += 1
        grown = (frontier << one) | (frontier >> one)
        grown[:, 1:] |= frontier[:, :-1]
        grown[:, :-1] |= frontier[:, 1:]
        grown &= open_rows & ~seen
        seen |= grown
        hit = (grown[np.arange(alive.size), goal_row] & goal_bit) != 0
        dist[alive[hit]] = d
        keep = ~hit & grown.any(1)
        if not keep.all():
            alive, grown, seen, open_rows = alive[keep], grown[keep], seen[keep], open_rows[keep]
            goal_row, goal_bit = goal_row[keep], goal_bit[keep]
        frontier = grown
    return dist


def generate_many(config: MazeGeneratorConfig, count: int, rng: np.random.Generator,
                  batch: int = 512) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """`count` mazes: (question, answer, shortest path length) each.

    Every attempt draws a wall share, walls, and a distinct start and goal uniformly among the open cells,
    and is kept when the shortest path is long enough (rejection sampling, so kept mazes follow the
    generator's distribution conditioned on the length). Attempts run `batch` at a time; kept ones are
    used in the order drawn, so the result depends only on the seed. Long paths are rare on random
    layouts: with the defaults about 1 attempt in 10^5 is kept.
    """
    s = config.size
    made: list[tuple[np.ndarray, np.ndarray, int]] = []
    attempts = 0
    while len(made) < count:
        if attempts >= config.max_attempts * max(1, count):
            raise DataError(f"no {s}x{s} maze with a path longer than {config.min_path_length} in {attempts} "
                            "attempts; lower min_path_length or change the wall density")
        attempts += batch
        density = rng.uniform(config.min_wall_density, config.max_wall_density, batch)
        walls = rng.random((batch, s, s)) < density[:, None, None]
        # Start and goal: the two open cells with the largest random keys, a uniform distinct pair.
        keys = np.where(walls, -1.0, rng.random((batch, s, s))).reshape(batch, -1)
        top = np.argpartition(keys, -2, axis=1)[:, -2:]
        top_keys = np.take_along_axis(keys, top, 1)
        usable = (top_keys >= 0).all(1)
        order = np.argsort(-top_keys, axis=1)
        first = np.take_along_axis(top, order, 1)
        start = np.stack(np.divmod(first[:, 0], s), 1)
        goal = np.stack(np.divmod(first[:, 1], s), 1)
        dist = batch_goal_distances(~walls, start, goal)
        for i in np.flatnonzero(usable & (dist > config.min_path_length)):
            question = np.where(walls[i], WALL, OPEN).astype(np.int8)
            question[tuple(start[i])], question[tuple(goal[i])] = START, GOAL
            if config.unique_path and not shortest_path_count_is_one(question):
                continue
            answer = solve(question, rng)
            assert answer is not None
            made.append((question, answer, int(dist[i])))
            if len(made) == count:
                break
    return made


def generate(config: MazeGeneratorConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, int]:
    """One maze: (question, answer, shortest path length); see `generate_many`."""
    return generate_many(config, 1, rng)[0]


# ---------------------------------------------------------------------------------------------
# Dataset builder

HUB_REPO = "sapientinc/maze-30x30-hard-1k"


@dataclass(frozen=True, kw_only=True)
class MazeBuildConfig:
    """Where the mazes come from and how the dataset is made."""

    source: str = "generate"
    """"csv" (a Maze-Hard CSV, or a folder with train.csv and test.csv) or "generate"."""
    path: Path | None = None
    """The CSV file or folder (csv)."""
    train_count: int = 1000
    """Mazes to generate for training (generate); Maze-Hard has 1000."""
    test_count: int = 1000
    """Mazes to generate for test (generate)."""
    test_fraction: float = 0.1
    """Share held out for test when a single CSV file is given."""
    subsample: int | None = None
    """Training mazes kept, drawn at random; None keeps all."""
    augment: bool = False
    """Add the 7 other dihedral transforms of each training maze (8 puzzles per group)."""
    generator: MazeGeneratorConfig = MazeGeneratorConfig()
    limit: int | None = None
    """Read at most this many mazes per file."""
    seed: int = 0
    """Seeds everything random; the same config gives byte-identical files."""

    def __post_init__(self) -> None:
        if self.source not in ("csv", "generate"):
            raise ValueError(f"source {self.source!r}: must be csv or generate")
        if self.source == "csv" and self.path is None:
            raise ValueError("source 'csv' needs a path")
        if self.source == "generate" and (self.train_count < 1 or self.test_count < 0):
            raise ValueError(f"--generate {self.train_count} --test-count {self.test_count}: generate at least one "
                             "training maze and no negative number of test mazes")


def _take(r: MazeRecords, index: np.ndarray) -> MazeRecords:
    return MazeRecords(r.questions[index], r.answers[index], [r.sources[i] for i in index], r.ratings[index])


def _generated(config: MazeBuildConfig, count: int, rng: np.random.Generator,
               progress: Callable[[int], object] | None) -> MazeRecords:
    made = []
    for _ in range(count):
        # One at a time so that the progress bar moves; each call draws whole batches.
        made.append(generate(config.generator, rng))
        if progress is not None:
            progress(1)
    s = config.generator.size
    return MazeRecords(_stack([m[0] for m in made], s), _stack([m[1] for m in made], s), ["generated"] * count,
                       np.asarray([m[2] for m in made], np.int32))


def load_source(config: MazeBuildConfig, rng: np.random.Generator,
                progress: Callable[[int], object] | None = None) -> tuple[MazeRecords, MazeRecords]:
    if config.source == "generate":
        return (_generated(config, config.train_count, rng, progress),
                _generated(config, config.test_count, rng, progress))
    def split(records: MazeRecords) -> tuple[MazeRecords, MazeRecords]:
        order = rng.permutation(len(records))
        n_test = int(round(len(records) * config.test_fraction))
        return _take(records, np.sort(order[n_test:])), _take(records, np.sort(order[:n_test]))

    return csv_splits(Path(str(config.path)), lambda p: parse_csv(p, config.limit), split)


def _set_arrays(records: MazeRecords, augment: bool) -> SetArrays:
    transforms = range(8) if augment else range(1)
    per = len(transforms)
    p = len(records)
    qs = np.stack([dihedral(records.questions, t) for t in transforms], axis=1)  # (P, per, H, W)
    ans = np.stack([dihedral(records.answers, t) for t in transforms], axis=1)
    return SetArrays(inputs=qs.reshape(p * per, -1).astype(np.int32), labels=ans.reshape(p * per, -1).astype(np.int32),
                     puzzle_identifiers=np.zeros(p * per, np.int32),
                     puzzle_indices=np.arange(p * per + 1, dtype=np.int32),
                     group_indices=np.arange(0, p * per + 1, per, dtype=np.int32))


def build_dataset(output: str | Path, config: MazeBuildConfig, *, overwrite: bool = False,
                  progress: Callable[[int], object] | None = None) -> dict[str, int]:
    """Write a Maze dataset folder; every maze has the shared identifier 0, as in the reference."""
    rng = np.random.default_rng(config.seed)
    train, test = load_source(config, rng, progress)
    if config.source != "generate" and progress is not None:  # read at once: the bar shows what was read
        set_progress_total(progress, len(train) + len(test))
        progress(len(train) + len(test))
    if config.subsample is not None and config.subsample < len(train):
        train = _take(train, np.sort(rng.choice(len(train), config.subsample, replace=False)))
    if len(train) == 0:
        raise DataError("no training mazes")
    splits = {name: make_split({"all": _set_arrays(r, config.augment and name == "train")},
                               vocab_size=VOCAB_SIZE, num_puzzle_identifiers=1, task="maze")
              for name, r in (("train", train), ("test", test))}
    write_dataset(output, splits, [BLANK_IDENTIFIER], overwrite=overwrite)
    return {"train_groups": len(train), "train_examples": splits["train"].sets["all"].num_examples,
            "test_examples": splits["test"].sets["all"].num_examples}
