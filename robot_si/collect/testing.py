"""Tiny policies for collect tests and benches (importable by Ray workers, unlike test modules).

`tiny_compact_vla` builds a real CompactVLA at toy width with random weights (deterministic given its seed).
`FaultyPolicy` wraps a policy to return NaN or wrongly shaped chunks for
chosen forward calls or to raise KeyboardInterrupt after N forwards.
"""

from __future__ import annotations

import torch
from torch import nn


def tiny_compact_vla(*, seed: int = 0, horizon: int = 4, n_action_steps: int = 2, use_text: bool = True,
                     image_size: int = 64):
    """A real `CompactVLAPolicy` at toy width with random weights (random backbone and head), in eval mode.

    Normalization is set by `set_placeholder_normalization`.
    """
    from robot_si.policies import CompactVLAConfig, CompactVLAPolicy

    torch.manual_seed(seed)
    config = CompactVLAConfig(
        image_size=image_size, pretrained_vision=False, use_text=use_text, image_pooling="mean", pixel_map_stride=0, keypoints=0, pooled_features=True,
        image_projection_dim=16, state_hidden_dim=16, hidden_dim=32, num_blocks=1, horizon=horizon,
        n_action_steps=n_action_steps,
    )
    return set_placeholder_normalization(CompactVLAPolicy(config)).eval()


def set_placeholder_normalization(policy):
    """Give an untrained CompactVLA the normalization a trainer would fit: state N(0, 1), actions N(0, 0.5) in
    [-1, 1] (a random head's outputs land inside mostly; clipping does the rest), and the instruction embedding
    standardized over three sample instructions (a no-op when the policy does not normalize text)."""
    config = policy.config
    policy.set_normalization_stats({
        "observation.state": {"mean": torch.zeros(config.state_dim), "std": torch.ones(config.state_dim)},
        "action": {"mean": torch.zeros(config.action_dim), "std": torch.full((config.action_dim,), 0.5),
                   "min": -torch.ones(config.action_dim), "max": torch.ones(config.action_dim)},
    })
    policy.fit_text_normalization(["reach the red ball", "push the blue cube", "press the green button"])
    return policy


class FaultyPolicy(nn.Module):
    """Wraps a policy; `nan_on_calls`: on these forward calls (1-based) row 0 of the chunk is NaN;
    `wrong_shape_after`: from that forward call on, return (B, H, 3); `interrupt_after`: raise
    KeyboardInterrupt on that forward call (simulates Ctrl-C in the middle of a run)."""

    def __init__(self, inner: nn.Module, *, nan_on_calls: tuple[int, ...] = (), wrong_shape_after: int | None = None,
                 interrupt_after: int | None = None) -> None:
        super().__init__()
        self.inner = inner
        self.config = inner.config
        self.nan_on_calls = tuple(nan_on_calls)
        self.wrong_shape_after = wrong_shape_after
        self.interrupt_after = interrupt_after
        self.forward_calls = 0

    def reset(self) -> None:
        self.inner.reset()

    def predict_action_chunk(self, batch: dict) -> torch.Tensor:
        self.forward_calls += 1
        if self.interrupt_after is not None and self.forward_calls >= self.interrupt_after:
            raise KeyboardInterrupt
        chunk = self.inner.predict_action_chunk(batch)
        if self.wrong_shape_after is not None and self.forward_calls >= self.wrong_shape_after:
            return chunk[..., :3]
        if self.forward_calls in self.nan_on_calls:
            chunk = chunk.clone()
            chunk[0, 0, 1] = float("nan")
        return chunk
