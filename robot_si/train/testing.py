"""Tiny synthetic training data and policy configs for tests and benchmarks (no simulator, no store).

`SyntheticChunkDataset` yields items shaped exactly like `robot_si.data.TrainingView`'s, with a learnable
target (each action chunk is a fixed smooth function of the state), so "the loss goes down" is a real check.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from robot_si.policies import CompactVLAConfig

INSTRUCTIONS = ("reach the red cube", "push the blue block to the left")


class SyntheticChunkDataset(Dataset):
    def __init__(
        self,
        num_samples: int = 64,
        *,
        image_size: int = 32,
        horizon: int = 4,
        state_dim: int = 8,
        action_dim: int = 4,
        cameras: tuple[str, ...] = ("front",),
        frames_per_episode: int = 16,
        seed: int = 0,
        weights: np.ndarray | None = None,
    ) -> None:
        rng = np.random.default_rng(seed)
        self.num_samples, self.horizon, self.cameras = num_samples, horizon, cameras
        self.frames_per_episode = frames_per_episode
        self.images = {c: rng.integers(0, 256, (num_samples, 3, image_size, image_size), dtype=np.uint8) for c in cameras}
        self.state = rng.standard_normal((num_samples, state_dim)).astype(np.float32)
        mixing = rng.standard_normal((state_dim, action_dim)).astype(np.float32) / np.sqrt(state_dim)
        base = np.tanh(self.state @ mixing)
        steps = np.linspace(0.0, 1.0, horizon, dtype=np.float32)[None, :, None]
        self.action = (base[:, None, :] * (1 - 0.5 * steps)).astype(np.float32)  # (N, H, A)
        frame = np.arange(num_samples) % frames_per_episode
        remaining = frames_per_episode - frame
        self.is_pad = np.arange(horizon)[None, :] >= remaining[:, None]
        self.weights = np.ones(num_samples, np.float32) if weights is None else np.asarray(weights, np.float32)

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> dict:
        item = {f"observation.images.{c}": torch.from_numpy(self.images[c][index]).float().div_(255.0) for c in self.cameras}
        item["observation.state"] = torch.from_numpy(self.state[index])
        item["action"] = torch.from_numpy(self.action[index])
        item["action_is_pad"] = torch.from_numpy(self.is_pad[index])
        item["task"] = INSTRUCTIONS[(index // self.frames_per_episode) % len(INSTRUCTIONS)]
        item["weight"] = torch.tensor(float(self.weights[index]))
        item["advantage_indicator"] = torch.tensor(-1)
        item["episode_id"] = f"synthetic-{index // self.frames_per_episode:04d}"
        item["frame_index"] = int(index % self.frames_per_episode)
        item["dataset_index"] = 0
        return item


def tiny_policy_config(**overrides) -> CompactVLAConfig:
    """A small CompactVLA for tests: 32 px, random backbone, narrow trunk, no dropout."""
    values = dict(
        image_size=32, horizon=4, n_action_steps=2, pretrained_vision=False, image_projection_dim=32,
        state_hidden_dim=32, hidden_dim=64, num_blocks=2, dropout=0.0, use_text=False,
    )
    values.update(overrides)
    return CompactVLAConfig(**values)
