"""awr: advantage-weighted regression, per-step weights clip(exp(A / beta), w_max), normalized to mean 1.

Failed episodes stay in the data: their steps with positive advantage (progress made) still teach, the
steps that lost progress get weights near zero. With `accepted_only=True` rejected episodes are dropped first.
Config: beta (> 0), w_max (> 0), accepted_only (bool).
"""

from __future__ import annotations

import numpy as np

from robot_si.weight.base import WeightResult, register


@register("awr")
def awr(episodes, config) -> WeightResult:
    beta = float(config.get("beta", 0.1))
    w_max = float(config.get("w_max", 20.0))
    if beta <= 0:
        raise ValueError(f"weighting.beta must be > 0 (got {beta}); typical values are 0.02-0.5 for advantages in [-1, 1]")
    if w_max <= 0:
        raise ValueError(f"weighting.w_max must be > 0 (got {w_max})")
    accepted_only = bool(config.get("accepted_only", False))
    raw = {}
    for episode_id, evidence in episodes.items():
        advantage = np.asarray(evidence.advantage, dtype=np.float64)
        # exp is computed on the clipped exponent so a large advantage cannot overflow before the clip.
        weight = np.exp(np.minimum(advantage / beta, np.log(w_max)))
        if accepted_only and not evidence.accepted:
            weight = np.zeros_like(weight)
        raw[episode_id] = weight
    total = sum(w.sum() for w in raw.values())
    count = sum(w.size for w in raw.values())
    scale = count / total if total > 0 else 0.0
    frame_weights = {episode_id: (w * scale).astype(np.float32) for episode_id, w in raw.items()}
    return WeightResult(method="awr", frame_weights=frame_weights, stats={"beta": beta, "w_max": w_max})
