"""The weighting registry and the record every method returns.

A method is a function `(episodes, config) -> WeightResult` where `episodes` maps episode_id to an
`EpisodeEvidence`: the verifier's accept decision and success probability for the episode and its per-step
advantages. Methods are registered with `@register("name")`; adding one is one small file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np


@dataclasses.dataclass(kw_only=True)
class EpisodeEvidence:
    """What the verifier said about one autonomous episode (never ground truth)."""

    episode_id: str
    accepted: bool
    success_prob: float
    advantage: np.ndarray  # (T,) per-step advantage A_t from the progress/value model


@dataclasses.dataclass(kw_only=True)
class WeightResult:
    """Per-frame weights (and optional good/bad indicators) for autonomous episodes, plus statistics."""

    method: str
    frame_weights: dict[str, np.ndarray]
    advantage_indicators: dict[str, np.ndarray] | None = None
    stats: dict[str, float] = dataclasses.field(default_factory=dict)

    def num_weighted_frames(self) -> int:
        return int(sum(int((w > 0).sum()) for w in self.frame_weights.values()))


WeightFn = Callable[[Mapping[str, EpisodeEvidence], Mapping[str, Any]], WeightResult]
WEIGHTING_METHODS: dict[str, WeightFn] = {}


def register(name: str) -> Callable[[WeightFn], WeightFn]:
    def decorator(fn: WeightFn) -> WeightFn:
        WEIGHTING_METHODS[name] = fn
        return fn

    return decorator


def weight_statistics(frame_weights: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Summary statistics logged every round (robomimic's IQL logs the same for its advantage weights)."""
    if not frame_weights:
        return {"frames": 0, "frames_nonzero": 0, "weight_mean": 0.0, "weight_max": 0.0, "effective_sample_size": 0.0}
    all_weights = np.concatenate([np.asarray(w, dtype=np.float64) for w in frame_weights.values()])
    total = all_weights.sum()
    ess = float(total**2 / np.square(all_weights).sum()) if total > 0 else 0.0
    return {
        "frames": int(all_weights.size),
        "frames_nonzero": int((all_weights > 0).sum()),
        "weight_mean": float(all_weights.mean()),
        "weight_std": float(all_weights.std()),
        "weight_max": float(all_weights.max()),
        "weight_min": float(all_weights.min()),
        "effective_sample_size": ess,
    }


def compute_weights(method: str, episodes: Mapping[str, EpisodeEvidence], config: Mapping[str, Any]) -> WeightResult:
    """Weights for autonomous episodes by the named method; see each method's module for its config keys."""
    # Import the method modules so their @register calls run.
    from robot_si.weight import advantage_conditioned, awr, filtered_bc, no_filter  # noqa: F401

    if method not in WEIGHTING_METHODS:
        raise ValueError(f"unknown weighting method {method!r}; choose one of {sorted(WEIGHTING_METHODS)}")
    result = WEIGHTING_METHODS[method](episodes, config)
    result.stats.update(weight_statistics(result.frame_weights))
    result.stats["episodes"] = len(episodes)
    result.stats["episodes_used"] = sum(1 for w in result.frame_weights.values() if (w > 0).any())
    return result
