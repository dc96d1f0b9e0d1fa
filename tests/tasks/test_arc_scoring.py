"""ARC scoring: voting across variants, pass@k and the Kaggle submission against hand-computed
values; invariance to the order predictions arrive in; an end-to-end check on a built dataset."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trm.data.format import load_dataset
from trm.tasks.arc.augment import Variant, encode_grid, variant_name
from trm.tasks.arc.build import ArcBuildConfig, build_arc
from trm.tasks.arc.puzzles import ArcPair, ArcTask, load_kaggle_file
from trm.tasks.arc.scoring import (
    ArcVoter,
    baseline_scores,
    load_test_tasks,
    make_submission,
    pass_at_k,
    write_submission,
)


def g(rows: list[list[int]]) -> np.ndarray:
    return np.asarray(rows, dtype=np.uint8)


def sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


V = Variant(1, (0, 3, 1, 2, 4, 5, 6, 7, 9, 8))  # rot90 and a colour permutation
U = Variant(6, (0, 9, 8, 7, 6, 5, 4, 3, 2, 1))  # transpose and another permutation
NAMES = ["<blank>", "A", variant_name("A", V), variant_name("A", U), "B", "C"]
VARIANT_OF_ID = {1: Variant(), 2: V, 3: U, 4: Variant(), 5: Variant()}

I0, X0, W0 = g([[1, 2], [3, 0]]), g([[1, 2, 3], [0, 0, 8]]), g([[5]])
I1, X1, V1 = g([[1, 1, 2], [0, 3, 3], [9, 9, 9]]), g([[2, 9]]), g([[3, 3]])
J0, Y0 = g([[4]]), g([[4, 4]])
K0, Z0, Q0 = g([[7, 0]]), g([[0, 7]]), g([[7, 7]])
TASKS = {
    "A": ArcTask("A", (ArcPair(I0, X0),), (ArcPair(I0, X0), ArcPair(I1, X1))),
    "B": ArcTask("B", (ArcPair(J0, Y0),), (ArcPair(J0, Y0),)),
    "C": ArcTask("C", (ArcPair(K0, Z0),), (ArcPair(K0, Z0),)),
}


def row(ident: int, inp: np.ndarray, out: np.ndarray, q: float) -> tuple[int, np.ndarray, np.ndarray, float]:
    """A prediction as the model makes it: tokens of the variant's frame."""
    variant = VARIANT_OF_ID[ident]
    return ident, encode_grid(variant.apply(inp)), encode_grid(variant.apply(out)), q


PREDICTIONS = [
    # A, test 0: the answer and a wrong grid both get 2 votes; the wrong one has the higher q_halt
    row(1, I0, X0, 0.0), row(2, I0, X0, 0.0), row(1, I0, W0, 2.0), row(2, I0, W0, 2.0),
    # A, test 1: the answer comes only from augmented variants (inverse needed), 2 votes
    row(2, I1, X1, -1.0), row(3, I1, X1, -2.0), row(1, I1, V1, 3.0),
    # B: no prediction at all
    # C: a duplicated prediction counts twice
    row(5, K0, Z0, 5.0), row(5, K0, Q0, -5.0), row(5, K0, Q0, -5.0),
]


def voter_of(rows: list[tuple[int, np.ndarray, np.ndarray, float]], batch: int = 4) -> ArcVoter:
    voter = ArcVoter(NAMES)
    for lo in range(0, len(rows), batch):
        part = rows[lo:lo + batch]
        voter.add(np.array([r[0] for r in part]), np.stack([r[1] for r in part]), np.stack([r[2] for r in part]),
                  np.array([r[3] for r in part], dtype=np.float32))
    return voter


def test_ranking_by_hand() -> None:
    voter = voter_of(PREDICTIONS)
    ranked = voter.ranked("A", I0)
    assert [(c.grid.tolist(), c.votes) for c in ranked] == [(W0.tolist(), 2), (X0.tolist(), 2)]
    assert ranked[0].confidence == pytest.approx(sig(2.0)) and ranked[1].confidence == pytest.approx(0.5)
    ranked = voter.ranked("A", I1)
    assert [(c.grid.tolist(), c.votes) for c in ranked] == [(X1.tolist(), 2), (V1.tolist(), 1)]
    assert ranked[0].confidence == pytest.approx((sig(-1) + sig(-2)) / 2)
    assert voter.ranked("B", J0) == []
    assert [(c.grid.tolist(), c.votes) for c in voter.ranked("C", K0)] == [(Q0.tolist(), 2), (Z0.tolist(), 1)]


def test_pass_at_k_by_hand() -> None:
    scores = pass_at_k(voter_of(PREDICTIONS), TASKS)
    # A: test 0 right at rank 2, test 1 at rank 1 -> pass@1 1/2, pass@2 1; B: 0; C: right at rank 2
    assert scores["pass@1"] == pytest.approx((0.5 + 0 + 0) / 3)
    for k in (2, 5, 10, 100, 1000):
        assert scores[f"pass@{k}"] == pytest.approx((1 + 0 + 1) / 3)


def test_submission_by_hand(tmp_path: Path) -> None:
    sub = make_submission(voter_of(PREDICTIONS), TASKS)
    assert sub == {
        "A": [{"attempt_1": W0.tolist(), "attempt_2": X0.tolist()},
              {"attempt_1": X1.tolist(), "attempt_2": V1.tolist()}],
        "B": [{"attempt_1": [[0]], "attempt_2": [[0]]}],
        "C": [{"attempt_1": Q0.tolist(), "attempt_2": Z0.tolist()}],
    }
    write_submission(tmp_path / "submission.json", sub)
    assert json.loads((tmp_path / "submission.json").read_text()) == sub
    # a single candidate fills both attempts
    one = make_submission(voter_of(PREDICTIONS[7:8]), {"C": TASKS["C"]})
    assert one == {"C": [{"attempt_1": Z0.tolist(), "attempt_2": Z0.tolist()}]}


def test_submission_without_solutions(tmp_path: Path) -> None:
    challenges = {tid: {"train": t.to_json()["train"], "test": [{"input": p.input.tolist()} for p in t.test]}
                  for tid, t in TASKS.items()}
    path = tmp_path / "challenges.json"
    path.write_text(json.dumps(challenges))
    tasks = load_kaggle_file(path)
    voter = voter_of(PREDICTIONS)
    assert make_submission(voter, tasks) == make_submission(voter, TASKS)
    with pytest.raises(ValueError, match="test outputs unknown"):
        pass_at_k(voter, tasks)


def test_blank_rows_are_ignored_and_empty_predictions_are_candidates() -> None:
    voter = voter_of(PREDICTIONS)
    voter.add(np.array([0, 1]), np.stack([encode_grid(I0)] * 2), np.stack([encode_grid(X0), np.zeros(900, np.uint8)]),
              np.array([9.0, 9.0]))
    assert voter.empty == 1
    # as in the reference evaluator, the empty grid is a candidate (1 vote, after the two with 2 votes)
    ranked = voter.ranked("A", I0)
    assert [(c.grid.shape, c.votes) for c in ranked] == [(W0.shape, 2), (X0.shape, 2), ((0, 0), 1)]
    assert [c.votes for c in voter.ranked("A", I0, skip_empty=True)] == [2, 2]


def test_exact_ties_go_to_the_first_variant_in_dataset_order() -> None:
    # same votes, same q_halt: the reference keeps the candidate seen first, i.e. the lowest puzzle id
    rows = [row(3, I0, X0, 1.0), row(2, I0, W0, 1.0), row(1, I0, V1, 1.0)]
    orders = [[0, 1, 2], [2, 1, 0], [1, 2, 0]]
    ranked = [[c.grid.tolist() for c in voter_of([rows[i] for i in o], batch=1).ranked("A", I0)] for o in orders]
    assert ranked[0] == ranked[1] == ranked[2] == [V1.tolist(), W0.tolist(), X0.tolist()]
    assert [c.first for c in voter_of(rows).ranked("A", I0)] == [1, 2, 3]


def test_reference_rules_by_hand_with_ties_and_an_empty_grid(tmp_path: Path) -> None:
    """Constructed predictions scored by the reference evaluator's rules, worked out by hand:
    rank by (votes, mean sigmoid(q_halt)) descending; a full tie keeps the candidate first in the dataset's
    order; an all-padding prediction is the empty grid and a candidate; no prediction scores 0."""
    empty = np.zeros(900, np.uint8)
    preds = [
        # A test 0: the answer X0 (voted by ids 2 and 3) and the empty grid (ids 1 and 3)
        # X0: 2 votes, q 0 -> mean 0.5; empty: 2 votes, q 0 -> mean 0.5: a full tie, the empty grid came
        # first (id 1 < id 2), so it ranks first and X0 second; W0: 1 vote
        (1, encode_grid(I0), empty, 0.0), (2, encode_grid(V.apply(I0)), encode_grid(V.apply(X0)), 0.0),
        (3, encode_grid(U.apply(I0)), encode_grid(U.apply(X0)), 0.0), (3, encode_grid(U.apply(I0)), empty, 0.0),
        (1, encode_grid(I0), encode_grid(W0), 3.0),
        # A test 1: V1 and X1 one vote each, same bfloat16-rounded q_halt: V1 from id 1 first, X1 (the answer)
        # from id 2 second
        (2, encode_grid(V.apply(I1)), encode_grid(V.apply(X1)), 0.5), (1, encode_grid(I1), encode_grid(V1), 0.5),
        # C: all padding once, with a high q: the only candidate
        (5, encode_grid(K0), empty, 4.0),
    ]
    for order in ([0, 1, 2, 3, 4, 5, 6, 7], [7, 6, 5, 4, 3, 2, 1, 0]):
        voter = voter_of([preds[i] for i in order], batch=3)
        # reference: A = (test 0: hit at rank 2; test 1: hit at rank 2) -> pass@1 0, pass@2 1; B, C: 0
        scores = pass_at_k(voter, TASKS)
        assert scores["pass@1"] == 0.0
        assert scores["pass@2"] == (1.0 + 0 + 0) / 3
        sub = make_submission(voter, TASKS)
        assert sub == {"A": [{"attempt_1": [], "attempt_2": X0.tolist()},
                             {"attempt_1": V1.tolist(), "attempt_2": X1.tolist()}],
                       "B": [{"attempt_1": [[0]], "attempt_2": [[0]]}],
                       "C": [{"attempt_1": [], "attempt_2": []}]}
        # the Kaggle switch: empty grids are no candidates (A test 0: X0 then W0; C: nothing -> [[0]])
        assert pass_at_k(voter, TASKS, skip_empty=True)["pass@1"] == (0.5 + 0 + 0) / 3
        assert make_submission(voter, TASKS, skip_empty=True)["A"][0] == {"attempt_1": X0.tolist(),
                                                                          "attempt_2": W0.tolist()}
        assert make_submission(voter, TASKS, skip_empty=True)["C"] == [{"attempt_1": [[0]], "attempt_2": [[0]]}]


@settings(max_examples=30, deadline=None)
@given(st.permutations(list(range(len(PREDICTIONS)))), st.integers(1, 5),
       st.lists(st.floats(-4, 4, allow_nan=False, width=32), min_size=len(PREDICTIONS), max_size=len(PREDICTIONS)))
def test_voting_is_order_invariant(order: list[int], batch: int, qs: list[float]) -> None:
    rows = [(r[0], r[1], r[2], q) for r, q in zip(PREDICTIONS, qs, strict=True)]
    a, b = voter_of(rows), voter_of([rows[i] for i in order], batch=batch)
    for task in TASKS.values():
        for pair in task.test:
            ra, rb = a.ranked(task.id, pair.input), b.ranked(task.id, pair.input)
            assert [(c.grid.tobytes(), c.grid.shape, c.votes, c.confidence, c.first) for c in ra] == \
                   [(c.grid.tobytes(), c.grid.shape, c.votes, c.confidence, c.first) for c in rb]
    assert pass_at_k(a, TASKS) == pass_at_k(b, TASKS)
    assert make_submission(a, TASKS) == make_submission(b, TASKS)


def test_merge_equals_one_voter() -> None:
    whole = voter_of(PREDICTIONS)
    left, right = voter_of(PREDICTIONS[:5]), voter_of(PREDICTIONS[5:])
    left.merge(right)
    assert make_submission(left, TASKS) == make_submission(whole, TASKS)
    assert pass_at_k(left, TASKS) == pass_at_k(whole, TASKS)


def test_end_to_end_on_a_built_dataset(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)

    def pair() -> dict:
        inp = rng.integers(0, 10, size=rng.integers(1, 8, size=2))
        return {"input": inp.tolist(), "output": np.flipud(inp).tolist()}

    tasks = {f"t{i}": {"train": [pair(), pair()], "test": [pair() for _ in range(1 + i % 2)]} for i in range(3)}
    (tmp_path / "arc-agi_evaluation_challenges.json").write_text(json.dumps(
        {k: {"train": t["train"], "test": [{"input": p["input"]} for p in t["test"]]} for k, t in tasks.items()}))
    (tmp_path / "arc-agi_evaluation_solutions.json").write_text(json.dumps(
        {k: [p["output"] for p in t["test"]] for k, t in tasks.items()}))
    out = tmp_path / "data"
    build_arc(ArcBuildConfig(source=str(tmp_path), output=out, subsets=("evaluation",), num_variants=6), log=False)
    test = load_dataset(out).test
    assert test is not None
    arrays = test.sets["all"]
    ids = np.repeat(np.asarray(arrays.puzzle_identifiers), np.diff(arrays.puzzle_indices))
    voter = ArcVoter.from_dataset(out)
    # perfect answers from every variant, and one wrong answer per example with a higher q_halt
    voter.add(ids, arrays.inputs, arrays.labels, np.zeros(len(ids)))
    voter.add(ids[::7], arrays.inputs[::7], np.roll(arrays.labels[::7], 1, axis=1), np.full(len(ids[::7]), 5.0))
    truth = load_test_tasks(out)
    assert pass_at_k(voter, truth)["pass@1"] == 1.0
    sub = make_submission(voter, truth)
    assert sub == {k: [{"attempt_1": p["output"], "attempt_2": sub[k][i]["attempt_2"]} for i, p in enumerate(t["test"])]
                   for k, t in tasks.items()}


def test_baselines_by_hand() -> None:
    p, q, r = g([[1]]), g([[2, 2]]), g([[3], [3]])
    demos = tuple(ArcPair(g([[i]]), out) for i, out in enumerate((p, q, q, r)))
    task = ArcTask("D", demos, (ArcPair(q, q), ArcPair(g([[9]]), p)))
    scores = baseline_scores({"D": task})
    # the test input as its answer: right for the first test input only
    assert scores["test-input pass@1"] == scores["test-input pass@2"] == 0.5
    # demonstration outputs by frequency: q (twice), then p (shown before r): q right at 1, p at 2
    assert scores["frequent-output pass@1"] == 0.5 and scores["frequent-output pass@2"] == 1.0
