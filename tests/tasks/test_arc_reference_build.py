"""`trm build arc --reference-identical` writes the reference builder's dataset byte for byte: compared with
output files of that builder (tests/data/arc-reference, produced outside this repository), identifiers first."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trm.cli import main
from trm.tasks.arc.build import UNKNOWN_ANSWERS, ArcBuildConfig, build_arc
from trm.tasks.arc.scoring import load_test_tasks

DATA = Path(__file__).parent.parent / "data" / "arc-reference"
CASES = [("training-evaluation-aug5-seed42", ("training", "evaluation"), 5, 42),
         ("training-test-aug3-seed7", ("training", "test"), 3, 7)]


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize(("name", "subsets", "num_aug", "seed"), CASES)
def test_reference_identical_build(name: str, subsets: tuple[str, ...], num_aug: int, seed: int,
                                   tmp_path: Path) -> None:
    expected, out = DATA / name, tmp_path / "ours"
    build_arc(ArcBuildConfig(source=DATA / "source", output=out, subsets=subsets, num_variants=num_aug, seed=seed,
                             reference_identical=True), log=False)
    ours = json.loads((out / "identifiers.json").read_text())
    theirs = json.loads((expected / "identifiers.json").read_text())
    assert len(ours) == len(theirs)
    for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        assert a == b, f"identifier {i}: {a!r} != {b!r}"
    extra = set(_files(out)) - set(_files(expected))
    assert extra == ({UNKNOWN_ANSWERS} if "test" in subsets else set())
    for f in _files(expected):
        assert (out / f).read_bytes() == (expected / f).read_bytes(), f"{f} differs from the reference builder's"


def test_reference_built_dataset_scores_and_knows_its_unknown_answers(tmp_path: Path) -> None:
    out = tmp_path / "ours"
    assert main(["build", "arc", str(out), "--source", str(DATA / "source"), "--subsets", "training,test",
                 "--num-aug", "3", "--seed", "7", "--reference-identical"]) == 0
    tasks = load_test_tasks(out)
    assert set(tasks) == set(json.loads((DATA / "source" / "arc-agi_test_challenges.json").read_text()))
    assert not any(t.has_solutions for t in tasks.values())
    # the reference-built folder itself (no unknown_answers.json) reads its placeholders as answers
    assert all(t.has_solutions for t in load_test_tasks(DATA / "training-test-aug3-seed7").values())


def test_reference_identical_needs_the_reference_canvas() -> None:
    with pytest.raises(ValueError, match="30x30"):
        ArcBuildConfig(source=DATA / "source", output=Path("x"), canvas=10, reference_identical=True)
