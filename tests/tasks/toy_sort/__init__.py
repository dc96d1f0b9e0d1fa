"""A toy task, "sort the digits": the input is a row of digits, the answer the same digits in order.

It exists to show (and test) what adding a task takes: this package and one line in the registry,
`trm.tasks.TASKS["sort"] = "toy_sort"`. Tokens: pad 0, digit d -> d + 1 (vocab 11).
"""

from __future__ import annotations

import argparse

import numpy as np

from trm.data.format import BLANK_IDENTIFIER, DataError, SetArrays, make_split, write_dataset
from trm.tasks import Augmentation, PuzzleTask
from trm.viz import PaletteDrawing

VOCAB_SIZE = 11


class SortDrawing(PaletteDrawing):
    cell = 16
    palette = ((232, 232, 232), *((25 * d, 25 * d, 255 - 25 * d) for d in range(10)))  # pad, digits 0-9

    def shape(self, n: int) -> tuple[int, int]:
        return 1, n  # one row


class SortTask(PuzzleTask):
    name = "sort"
    about = "Sort the digits (a toy task)"
    drawing = SortDrawing()
    checks_validity = True

    def __init__(self, length: int) -> None:
        self.seq_len = length

    @classmethod
    def for_model(cls, vocab_size: int, seq_len: int) -> SortTask:
        return cls(seq_len)

    @staticmethod
    def add_build_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--count", type=int, default=64, help="training rows (and a quarter as many for test)")
        parser.add_argument("--length", type=int, default=6, help="digits per row")

    @staticmethod
    def build(args: argparse.Namespace) -> dict[str, int]:
        rng = np.random.default_rng(args.seed)
        splits = {}
        for split, count in (("train", args.count), ("test", max(1, args.count // 4))):
            digits = rng.integers(0, 10, size=(count, args.length))
            arrays = SetArrays(inputs=(digits + 1).astype(np.int32), labels=(np.sort(digits, 1) + 1).astype(np.int32),
                               puzzle_identifiers=np.zeros(count, np.int32),
                               puzzle_indices=np.arange(count + 1, dtype=np.int32),
                               group_indices=np.arange(count + 1, dtype=np.int32))
            splits[split] = make_split({"all": arrays}, vocab_size=VOCAB_SIZE, num_puzzle_identifiers=1, task="sort")
        write_dataset(args.output, splits, [BLANK_IDENTIFIER], overwrite=args.overwrite)
        return {"train_examples": args.count}

    def parse(self, text: str, where: str = "puzzle") -> np.ndarray:
        text = text.strip()
        if len(text) != self.seq_len or not text.isdigit():
            raise DataError(f"{where}: expected {self.seq_len} digits, got {text!r}")
        return np.array([int(c) + 1 for c in text], np.int32)

    def format(self, tokens: np.ndarray, inputs: np.ndarray | None = None) -> str:
        return "".join(str(int(t) - 1) if t > 0 else "." for t in np.asarray(tokens).reshape(-1))

    def valid(self, predictions: np.ndarray, inputs: np.ndarray) -> np.ndarray:
        return (np.sort(inputs, -1) == predictions).all(-1)

    def augmentation(self, rng: np.random.Generator) -> Augmentation:
        order = rng.permutation(self.seq_len)  # shuffling the input leaves its sorted answer as it is
        return Augmentation(lambda t: np.asarray(t)[..., order], lambda t: np.asarray(t), "shuffle")


TASK = SortTask
