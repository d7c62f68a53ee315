"""advantage_conditioned (RECAP, pi*0.6): every step is trained on, with an indicator saying good (1) or bad (0).

A step is good when its advantage is above `advantage_threshold` and its episode was accepted by the verifier
(or `require_accepted=False`). The policy learns both behaviours and, at inference, is asked for "good" with
classifier-free guidance. Config: advantage_threshold (float), require_accepted (bool).
"""

from __future__ import annotations

import numpy as np

from robot_si.weight.base import WeightResult, register


@register("advantage_conditioned")
def advantage_conditioned(episodes, config) -> WeightResult:
    threshold = float(config.get("advantage_threshold", 0.0))
    require_accepted = bool(config.get("require_accepted", True))
    frame_weights, indicators = {}, {}
    for episode_id, evidence in episodes.items():
        advantage = np.asarray(evidence.advantage, dtype=np.float64)
        good = advantage > threshold
        if require_accepted and not evidence.accepted:
            good = np.zeros_like(good)
        frame_weights[episode_id] = np.ones(len(advantage), dtype=np.float32)
        indicators[episode_id] = good.astype(np.int64)
    good_fraction = float(np.mean(np.concatenate(list(indicators.values())))) if indicators else 0.0
    return WeightResult(
        method="advantage_conditioned",
        frame_weights=frame_weights,
        advantage_indicators=indicators,
        stats={"good_fraction": good_fraction, "advantage_threshold": threshold},
    )
