"""no_filter: self-training on every autonomous episode, weight 1 — the collapse baseline, not a method to use."""

from __future__ import annotations

import numpy as np

from robot_si.weight.base import WeightResult, register


@register("no_filter")
def no_filter(episodes, config) -> WeightResult:
    frame_weights = {
        episode_id: np.ones(len(evidence.advantage), dtype=np.float32) for episode_id, evidence in episodes.items()
    }
    return WeightResult(method="no_filter", frame_weights=frame_weights)
