"""Maze: parser errors, BFS against a plain reference, generator, validity of any shortest path, dihedral
transforms keeping shortest paths."""

from __future__ import annotations

from collections import deque
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trm.data.dihedral import dihedral, inverse_dihedral
from trm.data.format import DataError, find_problems, load_dataset
from trm.tasks.maze import puzzles as M

SMALL = M.MazeGeneratorConfig(size=12, min_path_length=20)


def _reference_bfs(passable: np.ndarray, source: tuple[int, int]) -> np.ndarray:
    dist = np.full(passable.shape, -1)
    dist[source] = 0
    queue = deque([source])
    while queue:
        r, c = queue.popleft()
        for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            nr, nc = r + dr, c + dc
            if 0 <= nr < passable.shape[0] and 0 <= nc < passable.shape[1] and passable[nr, nc] and dist[nr, nc] < 0:
                dist[nr, nc] = dist[r, c] + 1
                queue.append((nr, nc))
    return dist


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), density=st.floats(0.0, 0.6))
def test_bfs_matches_queue_bfs(seed: int, density: float) -> None:
    rng = np.random.default_rng(seed)
    passable = rng.random((9, 13)) >= density
    passable[0, 0] = True
    assert (M.bfs_distances(passable, (0, 0)) == _reference_bfs(passable, (0, 0))).all()
    starts = rng.integers(0, (9, 13), (6, 2))
    goals = rng.integers(0, (9, 13), (6, 2))
    many = np.repeat(passable[None], 6, 0)
    many[np.arange(6), starts[:, 0], starts[:, 1]] = True
    expected = [_reference_bfs(p, tuple(s))[tuple(g)] for p, s, g in zip(many, starts, goals, strict=True)]
    assert M.batch_goal_distances(many, starts, goals).tolist() == expected


def test_generator_seeded_long_and_valid() -> None:
    out = M.generate_many(SMALL, 4, np.random.default_rng(5))
    again = M.generate_many(SMALL, 4, np.random.default_rng(5))
    for (q, a, length), (q2, a2, length2) in zip(out, again, strict=True):
        assert (q == q2).all() and (a == a2).all() and length == length2
        assert length > 20 and M.shortest_path_length(q) == length
        assert (q == M.START).sum() == 1 and (q == M.GOAL).sum() == 1
        assert M.is_valid_path(q, a) and (a == M.PATH).sum() == length - 1
        assert 0.25 < (q == M.WALL).mean() < 0.55


def test_default_generator_reaches_published_hardness() -> None:
    q, a, length = M.generate(M.MazeGeneratorConfig(min_path_length=60), np.random.default_rng(0))
    assert q.shape == (30, 30) and length > 60 and M.is_valid_path(q, a)


def test_any_shortest_path_is_valid_others_not() -> None:
    q = np.full((3, 3), M.OPEN, np.int8)
    q[0, 0], q[2, 2] = M.START, M.GOAL
    a1, a2 = q.copy(), q.copy()
    a1[0, 1] = a1[0, 2] = a1[1, 2] = M.PATH  # along the top and right
    a2[1, 0] = a2[2, 0] = a2[2, 1] = M.PATH  # along the left and bottom
    assert M.is_valid_path(q, a1) and M.is_valid_path(q, a2)
    longer = q.copy()
    longer[1, 1] = M.WALL
    detour = longer.copy()
    detour[0, 1] = detour[0, 2] = detour[1, 2] = M.PATH
    assert M.is_valid_path(longer, detour)
    broken = a1.copy()
    broken[0, 2] = M.OPEN  # gap in the path
    extra = a1.copy()
    extra[2, 0] = M.PATH  # a stray path cell
    moved_wall = a1.copy()
    moved_wall[1, 0] = M.WALL  # answer invents a wall
    assert not any(M.is_valid_path(q, x) for x in (broken, extra, moved_wall, q))
    wall_q = np.full((3, 5), M.OPEN, np.int8)
    wall_q[0, 0], wall_q[0, 4] = M.START, M.GOAL
    wall_q[0:2, 2] = M.WALL
    long_way = wall_q.copy()
    long_way[0, 1] = long_way[1, 1] = long_way[2, 1] = long_way[2, 2] = long_way[2, 3] = M.PATH
    long_way[1, 3] = long_way[0, 3] = M.PATH
    assert M.is_valid_path(wall_q, long_way)
    too_long = wall_q.copy()
    for cell in ((0, 1), (1, 1), (1, 0), (2, 0), (2, 1), (2, 2), (2, 3), (1, 3), (0, 3)):  # 10 moves, not 8
        too_long[cell] = M.PATH
    assert not M.is_valid_path(wall_q, too_long)


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), t=st.integers(0, 7))
def test_dihedral_inverse_and_shortest_paths_kept(seed: int, t: int) -> None:
    q, a, length = M.generate(M.MazeGeneratorConfig(size=10, min_path_length=12), np.random.default_rng(seed))
    tq, ta = dihedral(q, t), dihedral(a, t)
    assert (inverse_dihedral(tq, t) == q).all() and (inverse_dihedral(ta, t) == a).all()
    assert M.is_valid_path(tq, ta) and M.shortest_path_length(tq) == length


def _csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("source,question,answer,rating\n" + "".join(f"x,{q},{a},1\n" for q, a in rows))
    return path


def test_parse_csv_round_trip_and_errors(tmp_path: Path) -> None:
    q, a, _ = M.generate(SMALL, np.random.default_rng(0))
    qs, as_ = M.decode_text(q), M.decode_text(a)
    records = M.parse_csv(_csv(tmp_path / "ok.csv", [(qs, as_)] * 3))
    assert len(records) == 3 and (records.questions[0] == q).all() and (records.answers[2] == a).all()
    no_start = qs.replace("S", " ")
    with pytest.raises(DataError, match=rf"{tmp_path / 'nos.csv'}:3 \(question\): .*exactly one start 'S', found 0"):
        M.parse_csv(_csv(tmp_path / "nos.csv", [(qs, as_), (no_start, as_)]))
    with pytest.raises(DataError, match=rf"{tmp_path / 'rag.csv'}:3 \(question; rows of this file are 12x12\): "
                                        r"expected 144 characters .* got 143"):
        M.parse_csv(_csv(tmp_path / "rag.csv", [(qs, as_), (qs[:-1], as_)]))
    with pytest.raises(DataError, match=r"bad.csv:2 \(answer.*character 'x' at position 0"):
        M.parse_csv(_csv(tmp_path / "bad.csv", [(qs, "x" + as_[1:])]))
    with pytest.raises(DataError, match=r"wall.csv:2: the answer's walls"):
        M.parse_csv(_csv(tmp_path / "wall.csv", [(qs, as_.replace("#", " ", 1))]))


def test_builder_seeded_augmented_valid(tmp_path: Path) -> None:
    cfg = M.MazeBuildConfig(source="generate", train_count=4, test_count=2, augment=True, generator=SMALL, seed=3)
    M.build_dataset(tmp_path / "a", cfg)
    M.build_dataset(tmp_path / "b", cfg)
    fa = {str(p.relative_to(tmp_path / "a")): p.read_bytes() for p in (tmp_path / "a").rglob("*") if p.is_file()}
    fb = {str(p.relative_to(tmp_path / "b")): p.read_bytes() for p in (tmp_path / "b").rglob("*") if p.is_file()}
    assert fa == fb and len(fa) == 13
    assert find_problems(tmp_path / "a") == []
    data = load_dataset(tmp_path / "a")
    a = data.train.sets["all"]
    assert data.train.meta.vocab_size == 6 and data.train.meta.seq_len == 144
    assert a.group_indices.tolist() == [0, 8, 16, 24, 32] and a.num_examples == 32
    assert M.valid_token_paths(np.asarray(a.labels), np.asarray(a.inputs)).all()
    # From the CSV written back: same mazes.
    rows = [(M.decode_text(np.asarray(a.inputs[i]).reshape(12, 12)),
             M.decode_text(np.asarray(a.labels[i]).reshape(12, 12))) for i in range(0, 32, 8)]
    folder = tmp_path / "csv"
    folder.mkdir()
    _csv(folder / "train.csv", rows)
    _csv(folder / "test.csv", rows[:1])
    M.build_dataset(tmp_path / "c", M.MazeBuildConfig(source="csv", path=folder))
    assert (np.asarray(load_dataset(tmp_path / "c").train.sets["all"].inputs) == np.asarray(a.inputs)[::8]).all()


def _count_shortest_paths(q: np.ndarray) -> int:
    """Shortest start-goal paths counted by enumeration over the BFS layers (a plain reference)."""
    passable = q != M.WALL
    start, goal = tuple(np.argwhere(q == M.START)[0]), tuple(np.argwhere(q == M.GOAL)[0])
    dist = _reference_bfs(passable, start)
    ways = {start: 1}
    for d in range(1, dist[goal] + 1):
        for r, c in zip(*np.nonzero(dist == d), strict=True):
            ways[(r, c)] = sum(ways.get((r + dr, c + dc), 0) for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1))
                               if 0 <= r + dr < q.shape[0] and 0 <= c + dc < q.shape[1]
                               and dist[r + dr, c + dc] == d - 1)
    return ways[goal]


def test_unique_path_generator_keeps_only_mazes_with_one_shortest_path() -> None:
    rng = np.random.default_rng(3)
    plain = [M.generate(M.MazeGeneratorConfig(size=10, min_path_length=12), rng)[0] for _ in range(30)]
    counts = [_count_shortest_paths(q) for q in plain]
    assert max(counts) > 1  # without the option most such mazes have several shortest paths
    assert [M.shortest_path_count_is_one(q) for q in plain] == [c == 1 for c in counts]
    unique = M.generate_many(M.MazeGeneratorConfig(size=10, min_path_length=12, unique_path=True), 20, rng)
    for q, a, length in unique:
        assert _count_shortest_paths(q) == 1 and M.is_valid_path(q, a) and M.shortest_path_length(q) == length
