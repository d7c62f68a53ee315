"""Tiny policies for collect tests and benches (importable by Ray workers, unlike test modules).

`LinearChunkPolicy` has the collector-facing policy API (`reset`, `predict_action_chunk`, `config.n_action_steps`)
and is deterministic given its seed. `FaultyPolicy` wraps a policy to return NaN or wrongly shaped chunks for
chosen forward calls or to raise KeyboardInterrupt after N forwards.
"""

from __future__ import annotations

import types

import torch
from torch import nn


class LinearChunkPolicy(nn.Module):
    """(state, mean image colour) -> tanh(linear) action chunk of shape (B, horizon, 4)."""

    def __init__(self, *, horizon: int = 4, n_action_steps: int = 2, seed: int = 0, state_dim: int = 8) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.config = types.SimpleNamespace(horizon=horizon, n_action_steps=n_action_steps)
        self.linear = nn.Linear(state_dim + 3, horizon * 4)
        with torch.no_grad():
            self.linear.weight.copy_(torch.randn(self.linear.weight.shape, generator=generator) * 2.0)
            self.linear.bias.copy_(torch.randn(self.linear.bias.shape, generator=generator) * 0.5)
        self.forward_calls = 0

    def reset(self) -> None:
        pass

    @torch.no_grad()
    def predict_action_chunk(self, batch: dict) -> torch.Tensor:
        self.forward_calls += 1
        image_mean = batch["observation.images.front"].mean(dim=(2, 3))
        features = torch.cat([batch["observation.state"], image_mean], dim=1)
        return torch.tanh(self.linear(features)).view(features.shape[0], self.config.horizon, 4)


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
