"""Small keyword-only records that cross process boundaries in collection (Ray actors, the writer process).

`EpisodeRequest` says which episode to run; `EpisodeResult` is what comes back. Both carry the policy
version so a result can always be traced to the weights that produced it. `success` is the simulator's ground
truth (`info["is_success"]` at the last step): it goes only to the store's audit field and to evaluation metrics.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np


@dataclasses.dataclass(kw_only=True, frozen=True)
class EpisodeRequest:
    """One episode to run: `seed` resets the env; `episode_id` is the store id it will be written under."""

    episode_id: str
    task: str
    seed: int
    round: int = 0

    def to_json_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(kw_only=True)
class EpisodeResult:
    """One finished (or failed) episode. `frames` is None when frames were not kept or none exist."""

    episode_id: str
    task: str
    seed: int
    round: int
    policy_version: str
    instruction: str
    num_frames: int
    success: bool | None  # ground truth at the last step; None when the env never produced an observation
    error: str | None = None
    frames: dict[str, np.ndarray] | None = None
    # the observation after the last action (images + state), kept with `frames` when the env ended the episode
    terminal: dict[str, np.ndarray] | None = None
    worker: str = "local"

    def summary(self) -> dict[str, Any]:
        """JSON-friendly fields (no frames)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("frames", "terminal")}
