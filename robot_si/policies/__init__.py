"""Policies: the compact VLA (ours), adapters for LeRobot policies, and the pretrained encoders.

Owns: `CompactVLAConfig` / `CompactVLAPolicy` (configuration_compact_vla.py / modeling_compact_vla.py),
`ImageEncoder` / `TextEncoder` (encoders.py), `LeRobotPolicyAdapter` (lerobot_backend.py: SmolVLA, pi0, pi05,
ACT, Diffusion from a local checkpoint), `observations_to_batch` (env observations -> policy batch) and the
`make_policy` / `load_policy` factories that dispatch on the config's `type`.

Every policy exposes `reset()`, `select_action(batch) -> (B, A)`, `predict_action_chunk(batch) -> (B, H, A)` in
env action units, `forward(batch, reduction="mean"|"none") -> (loss, info)` and `save_pretrained(dir)`.
Knows nothing of environments (beyond the observation dict's keys), stores, verifiers or the loop.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from robot_si.policies.configuration_compact_vla import POLICY_TYPE, CompactVLAConfig
from robot_si.policies.encoders import ImageEncoder, TextEncoder
from robot_si.policies.modeling_compact_vla import (
    IMAGE_FEATURES_KEY,
    TASK_FEATURES_KEY,
    CompactVLAPolicy,
    read_policy_config,
)

LEROBOT_TYPES = ("act", "diffusion", "smolvla", "pi0", "pi05")

__all__ = [
    "IMAGE_FEATURES_KEY",
    "LEROBOT_TYPES",
    "TASK_FEATURES_KEY",
    "CompactVLAConfig",
    "CompactVLAPolicy",
    "ImageEncoder",
    "LeRobotPolicyAdapter",
    "TextEncoder",
    "load_policy",
    "make_policy",
    "observations_to_batch",
]


def __getattr__(name: str):
    if name == "LeRobotPolicyAdapter":  # lazy: importing lerobot's policy modules takes seconds
        from robot_si.policies.lerobot_backend import LeRobotPolicyAdapter

        return LeRobotPolicyAdapter
    raise AttributeError(f"module 'robot_si.policies' has no attribute {name!r}")


def observations_to_batch(observations: Sequence[Mapping], device: str | torch.device = "cpu") -> dict:
    """Env observations (one dict per env) -> a policy batch.

    `observation.images.<cam>` uint8 (H, W, 3) -> float32 (B, 3, H, W) in [0, 1]; `observation.state` -> float32
    (B, S); `task` -> list[str]. Other keys are ignored.
    """
    if isinstance(observations, Mapping):
        raise ValueError("observations_to_batch takes a list of observation dicts (one per env); wrap a single one in a list")
    if not observations:
        raise ValueError("observations_to_batch got an empty list; pass at least one observation dict")
    keys = set(observations[0])
    for index, observation in enumerate(observations):
        if set(observation) != keys:
            raise ValueError(f"observation {index} has keys {sorted(observation)} but observation 0 has {sorted(keys)}; "
                             "all envs in one batch must share cameras")
    batch: dict = {}
    for key in sorted(keys):
        if key.startswith("observation.images."):
            images = np.stack([np.asarray(o[key]) for o in observations])
            if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
                raise ValueError(f"{key} must be uint8 (H, W, 3) per observation; got {images.dtype} {images.shape[1:]}")
            batch[key] = torch.from_numpy(images).to(device).permute(0, 3, 1, 2).float().div_(255.0)
        elif key == "observation.state":
            batch[key] = torch.from_numpy(np.stack([np.asarray(o[key], dtype=np.float32) for o in observations])).to(device)
    if "task" in keys:
        batch["task"] = [str(o["task"]) for o in observations]
    return batch


def make_policy(config, **kwargs):
    """A fresh policy from a config: `CompactVLAConfig`, or a mapping (dict / OmegaConf) with `type`.

    type "compact_vla" -> `CompactVLAPolicy`; "lerobot" (with `path` to a local checkpoint) -> `LeRobotPolicyAdapter`."""
    if isinstance(config, CompactVLAConfig):
        return CompactVLAPolicy(config, **kwargs)
    if not isinstance(config, Mapping):
        try:
            from omegaconf import OmegaConf

            config = OmegaConf.to_container(config, resolve=True)
        except Exception as error:
            raise TypeError(f"make_policy needs a CompactVLAConfig or a mapping with 'type', got {type(config).__name__}") from error
    config = dict(config)
    policy_type = config.get("type", POLICY_TYPE)
    if policy_type == POLICY_TYPE:
        return CompactVLAPolicy(CompactVLAConfig.from_dict(config), **kwargs)
    if policy_type == "lerobot" or policy_type in LEROBOT_TYPES:
        from robot_si.policies.lerobot_backend import LeRobotPolicyAdapter

        path = config.pop("path", None)
        if not path:
            raise ValueError(f"a {policy_type!r} policy config needs path=<local LeRobot checkpoint directory>; nothing is downloaded")
        config.pop("type", None)
        return LeRobotPolicyAdapter.from_pretrained(path, **config, **kwargs)
    raise ValueError(f"unknown policy type {policy_type!r}; use {POLICY_TYPE!r} or 'lerobot' (with path=...)")


def load_policy(path: str | os.PathLike[str], *, device: str | torch.device = "cpu", **overrides):
    """Load any saved policy directory, dispatching on `type` in its config.json."""
    config = read_policy_config(path)
    policy_type = config.get("type")
    if policy_type == POLICY_TYPE:
        return CompactVLAPolicy.from_pretrained(path, device=device, **overrides)
    if policy_type in LEROBOT_TYPES:
        from robot_si.policies.lerobot_backend import LeRobotPolicyAdapter

        return LeRobotPolicyAdapter.from_pretrained(path, device=device, **overrides)
    raise ValueError(
        f"{Path(path) / 'config.json'} has type {policy_type!r}; supported: {POLICY_TYPE!r} and LeRobot's {list(LEROBOT_TYPES)}"
    )
