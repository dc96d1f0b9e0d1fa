"""scripts/learning_curves.py: ours and the reference's logs side by side, evaluations a step apart aligned."""

from __future__ import annotations

import json
from pathlib import Path

from scripts_helpers import load_script


def _script():
    return load_script("learning_curves")


def _ours(path: Path, evals: dict[int, float]) -> Path:
    path.mkdir()
    rows = [{"step": s, "kind": "train", "lm_loss": 1.0 / s} for s in range(1, 7)]
    rows += [{"step": s, "kind": "eval", "eval/all/exact_accuracy": v, "eval/all/accuracy": 0.9}
             for s, v in evals.items()]
    (path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def _reference(path: Path, evals: dict[int, float]) -> Path:
    rows = [{"step": s, "train/lm_loss": 2.0 / s} for s in range(1, 7)]
    rows += [{"step": s, "all/exact_accuracy": v, "all/accuracy": 0.8} for s, v in evals.items()]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_evaluations_a_step_apart_are_aligned_only_within_the_tolerance(tmp_path: Path) -> None:
    lc = _script()
    ours = _ours(tmp_path / "ours", {3: 0.5, 6: 1.0})
    ref = _reference(tmp_path / "ref.jsonl", {4: 0.25, 7: 0.75})
    args = ["--runs", f"trm={ours}", "--runs", f"reference={ref}", "--out", str(tmp_path / "c")]
    try:
        lc.main(args)
    except SystemExit as e:
        assert "share no evaluation step" in str(e)
    else:
        raise AssertionError("steps 3/6 and 4/7 must not match without a tolerance")
    lc.main(args + ["--tolerance", "1"])
    table = (tmp_path / "c.md").read_text()
    # the reference's 4 and 7 are reported at ours' 3 and 6; the loss windows keep their own steps
    assert ("| 3 | 50.0 ± 0.0% (50.0) | 90.0 ± 0.0% | 0.6111 ± 0.0000 | 25.0 ± 0.0% (25.0) | 80.0 ± 0.0% | 1.2222"
            in table)
    assert "| 6 | 100.0 ± 0.0% (100.0) |" in table and "| 75.0 ± 0.0% (75.0) |" in table
