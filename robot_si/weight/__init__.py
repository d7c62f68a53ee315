"""Weighting: turn verifier labels into per-frame training weights (or conditioning indicators).

Owns the mapping labels -> weights for autonomous episodes; demos are anchored separately by the training
view's mixing ratio. Must not read ground truth: its only inputs are the verifier's label tables.
One small file per method behind the registry in `base.py`; `compute_weights` is the one entry point.
"""

from robot_si.weight.base import WEIGHTING_METHODS, WeightResult, compute_weights, weight_statistics

__all__ = ["WEIGHTING_METHODS", "WeightResult", "compute_weights", "weight_statistics"]
