"""Configuration shared by every model: sizes, positions, puzzle identifiers and halting.

Configurations are frozen dataclasses validated on construction; each model file extends
`ModelConfig` with its own fields (recursion depths, layers, ablations).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeVar

PosEncoding = Literal["rope", "learned", "none"]
C = TypeVar("C", bound="ModelConfig")


class ConfigError(ValueError):
    """A configuration that cannot work; the message says which field and why."""


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    arch: ClassVar[str] = ""

    vocab_size: int
    """Number of token ids (pad 0 included)."""
    seq_len: int
    """Tokens per example (81 for 9x9 Sudoku, 900 for a 30x30 grid)."""
    num_puzzle_identifiers: int = 1
    """Size of the puzzle-embedding table (id 0 = blank)."""
    puzzle_emb_ndim: int = 0
    """Width of a puzzle embedding; 0 disables the puzzle-identifier prefix."""
    puzzle_emb_len: int = 16
    """Prefix positions holding the puzzle embedding (0: ceil(puzzle_emb_ndim / hidden_size))."""
    hidden_size: int = 512
    """Model width."""
    num_heads: int = 8
    """Attention heads (must divide hidden_size)."""
    expansion: float = 4.0
    """SwiGLU expansion: inner width = round_up(2/3 * expansion * width, 256)."""
    pos_encodings: PosEncoding = "rope"
    """Positions: rotary, learned, or none."""
    rms_norm_eps: float = 1e-5
    """Epsilon of the parameter-free RMSNorm."""
    rope_theta: float = 10000.0
    """Base of the rotary frequencies."""
    halt_max_steps: int = 16
    """N_sup: supervision steps per example (the most a slot runs before it must halt)."""
    halt_exploration_prob: float = 0.1
    """Probability that a slot draws a minimum step count (exploration of the halting head)."""
    act_continue: bool = False
    """Halt when q_halt > q_continue and train q_continue (Q-learning) instead of q_halt > 0."""

    def __post_init__(self) -> None:
        self._check(self.vocab_size >= 2, "vocab_size", "must be at least 2")
        self._check(self.seq_len >= 1, "seq_len", "must be positive")
        self._check(self.hidden_size >= 1, "hidden_size", "must be positive")
        self._check(self.num_heads >= 1 and self.hidden_size % self.num_heads == 0, "num_heads",
                    f"must be positive and divide hidden_size={self.hidden_size}")
        self._check(self.pos_encodings != "rope" or (self.hidden_size // self.num_heads) % 2 == 0,
                    "num_heads", "rope needs an even head dimension (hidden_size / num_heads)")
        self._check(self.pos_encodings in ("rope", "learned", "none"), "pos_encodings",
                    "must be 'rope', 'learned' or 'none'")
        self._check(self.expansion > 0, "expansion", "must be positive")
        self._check(self.num_puzzle_identifiers >= 1, "num_puzzle_identifiers", "must be at least 1 (id 0 = blank)")
        self._check(self.puzzle_emb_ndim >= 0, "puzzle_emb_ndim", "must be >= 0")
        self._check(self.puzzle_emb_len >= 0, "puzzle_emb_len", "must be >= 0")
        self._check(self.puzzle_emb_ndim <= self.prefix_len * self.hidden_size, "puzzle_emb_len",
                    f"{self.prefix_len} prefix positions x hidden_size {self.hidden_size} cannot hold "
                    f"puzzle_emb_ndim={self.puzzle_emb_ndim}")
        self._check(self.halt_max_steps >= 1, "halt_max_steps", "must be at least 1")
        self._check(0.0 <= self.halt_exploration_prob <= 1.0, "halt_exploration_prob", "must be in [0, 1]")
        self._check(self.rms_norm_eps > 0, "rms_norm_eps", "must be positive")

    def _check(self, ok: bool, name: str, why: str) -> None:
        if not ok:
            raise ConfigError(f"{type(self).__name__}.{name}={getattr(self, name)!r}: {why}")

    @property
    def prefix_len(self) -> int:
        """Positions prepended for the puzzle embedding (0 when there is none)."""
        if self.puzzle_emb_ndim == 0:
            return 0
        return self.puzzle_emb_len or -(self.puzzle_emb_ndim // -self.hidden_size)

    @property
    def positions(self) -> int:
        """Sequence length the network sees: prefix + tokens."""
        return self.seq_len + self.prefix_len

    def to_dict(self) -> dict[str, Any]:
        return {"arch": self.arch, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls: type[C], values: dict[str, Any]) -> C:
        """Build from a dict (e.g. a checkpoint's JSON), naming any unknown key."""
        values = {k: v for k, v in values.items() if k != "arch"}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"{cls.__name__}: unknown field(s) {unknown}; known: {sorted(known)}")
        return cls(**values)

    def replace(self: C, **changes: Any) -> C:
        return dataclasses.replace(self, **changes)
