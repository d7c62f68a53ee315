"""filtered_bc: behaviour cloning on the episodes the verifier accepts (weight 1), others dropped (weight 0)."""

from __future__ import annotations

import numpy as np

from robot_si.weight.base import WeightResult, register


@register("filtered_bc")
def filtered_bc(episodes, config) -> WeightResult:
    frame_weights = {
        episode_id: np.full(len(evidence.advantage), 1.0 if evidence.accepted else 0.0, dtype=np.float32)
        for episode_id, evidence in episodes.items()
    }
    return WeightResult(method="filtered_bc", frame_weights=frame_weights)
