"""Small typed records the store writes beside the LeRobot data: `EpisodeMeta` (one per episode).

These are keyword-only dataclasses that serialize to JSON (`to_json_dict` / `from_json_dict`). They carry
provenance only. The simulator's ground truth is deliberately NOT a field here: it lives in the store's
separate audit file and is read only through `EpisodeStore.audit_table()`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

# near_miss: a demonstrator's deliberate failure (aimed beside the target); never imitated, a verifier negative
EPISODE_SOURCES = ("demo", "autonomous", "human", "retry", "near_miss")
# What the demonstrator meant episodes of a source to show: their label by intent, never by the simulator.
# Other sources have no intended outcome (a policy's episodes are judged by the verifier and budgeted labels).
INTENDED_OUTCOME = {"demo": True, "near_miss": False}


@dataclasses.dataclass(kw_only=True)
class EpisodeMeta:
    """Provenance of one stored episode (no ground truth, no labels: those live elsewhere)."""

    episode_id: str
    source: str  # demo | autonomous | human | retry | near_miss
    round: int
    policy_version: str
    task_name: str
    instruction: str
    seed: int
    num_frames: int
    error: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.episode_id, str) or not self.episode_id or self.episode_id != self.episode_id.strip():
            raise ValueError(
                f"episode_id must be a non-empty string without surrounding spaces (got {self.episode_id!r})"
            )
        if self.source not in EPISODE_SOURCES:
            raise ValueError(f"source must be one of {EPISODE_SOURCES} (got {self.source!r})")
        for name in ("round", "seed", "num_frames"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an int (got {value!r} of type {type(value).__name__})")
        if self.num_frames < 0:
            raise ValueError(f"num_frames must be >= 0 (got {self.num_frames})")
        if self.error is not None and not isinstance(self.error, str):
            raise ValueError(f"error must be None or a message string (got {self.error!r})")

    def to_json_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> EpisodeMeta:
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown EpisodeMeta fields {sorted(unknown)}; known fields are {sorted(known)}")
        return cls(**data)


def check_audit_value(value: object) -> bool | None:
    """Normalize the ground-truth success flag kept for audit (Python or numpy bool, or None)."""
    if value is None:
        return None
    if isinstance(value, bool | np.bool_):
        return bool(value)
    raise ValueError(f"audit_gt_success must be True, False or None (got {value!r})")
