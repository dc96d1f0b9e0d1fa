"""scripts/research_table.py: the cost of each curriculum stage, the order of the units, the table."""

from __future__ import annotations

import json

from scripts_helpers import load_script


def _script():
    return load_script("research_table")


def test_the_step_cost_is_measured_at_every_depth_of_the_curriculum(tmp_path):
    from trm.optim import depth_at

    rt = _script()
    stages = rt.depth_stages("sudoku6-cpu", tmp_path)
    assert [round(share, 4) for share, _ in stages] == [0.2858, 0.7142]  # the recipe's first 28.58% at n=1, T=1
    depths = []
    for _, override in stages:
        cfg = rt._config("sudoku6-cpu", tmp_path, tmp_path / "run", [override], 100, 0)
        at = {depth_at(s, 100, cfg.depth_curriculum) for s in range(100)}
        assert len(at) == 1  # the cost run stays at one depth throughout
        depths += at
    assert depths == [(1, 1), (2, 2)]


def test_without_a_curriculum_one_stage_at_the_recipe_depth(tmp_path):
    rt = _script()
    assert rt.depth_stages("maze-small-cpu", tmp_path) == [(1.0, "depth_curriculum=[]")]


def test_each_seed_trains_its_baseline_before_anything_is_evaluated():
    rt = _script()
    order = rt.units([0, 1, 2])
    kinds = [k for k, _, _ in order]
    assert kinds == ["train"] * (3 * len(rt.TRAINING)) + ["eval"] * (3 * len(rt.EVALUATION))
    assert order[:3] == [("train", "baseline", s) for s in (0, 1, 2)]
    assert len(set(order)) == len(order)


def test_the_table_gives_each_seed_and_the_mean(tmp_path):
    rt = _script()
    for seed, acc in [(0, 0.90), (1, 0.80), (2, 0.85)]:
        rt._write_record(tmp_path, ("train", "muon", seed), {
            "kind": "train", "name": "muon", "seed": seed, "steps": 700, "train_seconds": 300.0,
            "exact_accuracy": acc, "token_accuracy": 0.95})
    rt._write_record(tmp_path, ("eval", "halt-first K=4", 0), {
        "kind": "eval", "name": "halt-first K=4", "seed": 0, "exact_accuracy": 0.5, "token_accuracy": 0.9,
        "steps_per_puzzle": 20.0, "seconds": 10.0, "puzzles": 500})
    assert not list((tmp_path / "records").glob("*.tmp-*"))
    text = rt.table(tmp_path)
    assert "| muon | 85.0% ± 5.0 (90.0 / 80.0 / 85.0; seeds 0,1,2) | 95.0% | 700 | 300 |" in text
    assert "| halt-first K=4 | 50.0% ± 0.0 (50.0; seeds 0) | 90.0% | | | 20.0 steps, 20.0 ms |" in text
    assert json.loads((tmp_path / "records" / "train-muon-seed1.json").read_text())["exact_accuracy"] == 0.8
