"""Configuration shared by every model: sizes, positions, puzzle identifiers and halting.

Configurations are frozen dataclasses validated on construction; each model file extends
`ModelConfig` with its own fields (recursion depths, layers, ablations).
"""

from __future__ import annotations

import dataclasses
import numbers
import types
import typing
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeVar, Union

PosEncoding = Literal["rope", "learned", "none"]
C = TypeVar("C", bound="ModelConfig")


class ConfigError(ValueError):
    """A configuration that cannot work; the message says which field and why."""


# ---------------------------------------------------------------------------------------------
# Typed fields: one check for every configuration (models, training recipes, their overrides)


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _kind(value: Any) -> str:
    return {bool: "a boolean", str: "a string", int: "an integer", float: "a number", list: "a list",
            dict: "a mapping", type(None): "empty"}.get(type(value), type(value).__name__)


def _coerce(value: Any, hint: Any, name: str) -> Any:
    """`value` as the annotated type `hint` (a whole float becomes an int); ConfigError when it is not one."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return _coerce(value, option, name)
            except ConfigError as e:
                errors.append(e)
        if len(options) == 1:
            raise errors[0]
        raise ConfigError(f"{name}={value!r}: must be {' or '.join(_describe(o) for o in options)}")
    if hint is Any:
        return value
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{name}={value!r}: must be one of {', '.join(repr(a) for a in args)}")
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, float):
            raise ConfigError(f"{name}={value!r}: must be a whole number")
    elif hint is float:
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    elif origin is list:
        if isinstance(value, (list, tuple)):
            return [_coerce(v, args[0], f"{name}[{i}]") for i, v in enumerate(value)] if args else list(value)
    elif origin is dict:
        if isinstance(value, dict):
            return dict(value)
    else:
        return value
    raise ConfigError(f"{name}={value!r}: must be {_describe(hint)}, not {_kind(value)}")


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is list:
        return f"a list of {_describe(args[0]).removeprefix('a ').removeprefix('an ')}s" if args else "a list"
    if origin is dict:
        return "a mapping (key: value)"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(hint, str(hint))


def check_types(obj: Any, prefix: str = "") -> None:
    """Check (and normalise: whole floats to int, ints to float) every field of a dataclass instance against
    its annotation; ConfigError names the field (`prefix` + name), the value and what is allowed."""
    hints = _hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        fixed = _coerce(value, hints[f.name], prefix + f.name)
        if fixed is not value:
            object.__setattr__(obj, f.name, fixed)


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
        check_types(self, f"{type(self).__name__}.")
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
