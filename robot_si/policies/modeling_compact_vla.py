"""`CompactVLAPolicy`: a small vision-language-action policy that trains on a CPU in minutes.

Owns the network and the LeRobot-shaped policy API (`reset`, `select_action`, `predict_action_chunk`,
`forward(batch, reduction=...)`, `save_pretrained`, `from_pretrained`) plus the input/output normalization that
is saved inside the checkpoint (so a checkpoint is self-describing).

Network: per camera EfficientNet-Lite0 features (frozen by default) -> LayerNorm + linear projection, plus (with
`keypoints`) instruction-conditioned spatial-softmax keypoints of each feature map; state -> MLP; all concatenated
and projected to the trunk width; the instruction's MiniLM embedding (and, with advantage conditioning, a
good/bad/unconditioned token embedding) modulates every residual trunk block by FiLM; a linear head regresses the normalized action chunk (horizon, action_dim).

Knows nothing of environments, stores or training loops: the trainer (robot_si.train) feeds it batches.
"""

from __future__ import annotations

import json
import os
from collections import Counter, deque
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robot_si.policies.configuration_compact_vla import CONFIG_NAME, LEGACY_FIELD_VALUES, POLICY_TYPE, CompactVLAConfig
from robot_si.policies.encoders import MINILM_DIM, ImageEncoder, TextEncoder, shared_text_encoder

WEIGHTS_NAME = "model.safetensors"
NORMALIZATION_NAME = "normalization.json"
STATE_KEY = "observation.state"
ACTION_KEY = "action"
# Optional precomputed inputs (the trainer's feature cache fills them; any caller may).
IMAGE_FEATURES_KEY = "observation.image_features"  # (B, num_cameras * image_encoder.output_dim)
TASK_FEATURES_KEY = "observation.task_features"  # (B, 384)

# advantage token ids
BAD, GOOD, UNCONDITIONED = 0, 1, 2


def _scale(spread: Tensor, *, constant: float, eps: float = 1e-4) -> Tensor:
    """The divisor of a normalization: `spread` (std, or max - min), except `constant` (= no rescaling) where a
    dimension did not vary in the training data. Dividing by a tiny spread instead would turn any later deviation
    (a demo set whose gripper command is always +1, then rollouts with exploration noise on it) into errors of
    thousands that swamp the loss; diffusion_policy's normalizer treats constant dimensions the same way."""
    return torch.where(spread < eps, torch.full_like(spread, constant), spread)


class FiLMBlock(nn.Module):
    """Pre-norm residual MLP block whose normalized input is scaled and shifted by the conditioning vector."""

    def __init__(self, width: int, cond_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.film = nn.Linear(cond_dim, 2 * width)
        nn.init.zeros_(self.film.weight)  # start as the identity modulation (scale 1, shift 0)
        nn.init.zeros_(self.film.bias)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * width, width))

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        scale, shift = self.film(cond).chunk(2, dim=-1)
        return x + self.mlp(self.norm(x) * (1 + scale) + shift)


class SpatialKeypoints(nn.Module):
    """Instruction-conditioned spatial softmax over one feature map (B, C, H, W) -> (B, 2 * K) keypoint coordinates.

    Each of the K keypoints scores every cell with a 1x1-conv MLP whose hidden layer is FiLM-modulated by the
    conditioning vector (so "the red ball" and "the blue ball" light up different cells), and returns the
    softmax-weighted mean (x, y) of the cell centres in [-1, 1]. The same weights apply at every cell, so what is
    learned at one place of the table transfers to every other place.
    """

    def __init__(self, channels: int, height: int, width: int, num_keypoints: int, hidden_dim: int, cond_dim: int,
                 kernel_size: int = 1) -> None:
        super().__init__()
        self.shape = (channels, height, width)
        self.norm = nn.GroupNorm(1, channels)
        # the FiLM shift is the bias; a 3x3 kernel pads with the edge cells (zeros would read as a dark border)
        # (a 1x1 kernel pads nothing; asking for "replicate" anyway puts an empty replication pad in the graph, whose
        # backward torch.compile/inductor gets wrong on CPU)
        self.inner = nn.Conv2d(channels, hidden_dim, kernel_size, padding=kernel_size // 2,
                               padding_mode="replicate" if kernel_size > 1 else "zeros", bias=False)
        self.film = nn.Linear(cond_dim, 2 * hidden_dim)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)
        # no bias: a constant per keypoint cancels in the softmax, so its gradient is pure rounding noise that Adam
        # would blow up into steps (and DDP and single-process runs would drift apart on it)
        self.score = nn.Conv2d(hidden_dim, num_keypoints, 1, bias=False)
        self.log_temperature = nn.Parameter(torch.zeros(()))
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
        self.register_buffer("grid", torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=-1), persistent=False)  # (HW, 2)
        self.output_dim = 2 * num_keypoints

    def forward(self, flat_map: Tensor, cond: Tensor) -> Tensor:
        x = self.norm(flat_map.view(-1, *self.shape))
        scale, shift = self.film(cond).chunk(2, dim=-1)
        hidden = F.gelu(self.inner(x) * (1 + scale[..., None, None]) + shift[..., None, None])
        logits = self.score(hidden).flatten(2) / self.log_temperature.exp()  # (B, K, HW)
        return (logits.softmax(dim=-1) @ self.grid).flatten(1)  # (B, 2K)


class CompactVLAPolicy(nn.Module):
    """See the module docstring. Build with a `CompactVLAConfig`; set normalization stats before use
    (`set_normalization_stats`, done by the trainer from the training data)."""

    config_class = CompactVLAConfig
    name = POLICY_TYPE

    def __init__(self, config: CompactVLAConfig, *, text_encoder: TextEncoder | None = None) -> None:
        super().__init__()
        if not isinstance(config, CompactVLAConfig):
            raise TypeError(f"CompactVLAPolicy needs a CompactVLAConfig, got {type(config).__name__}")
        self.config = config
        self.image_encoder = ImageEncoder(
            config.image_size,
            pretrained=config.pretrained_vision,
            pooling=config.image_pooling,
            freeze=config.freeze_vision,
            trainable_blocks=config.trainable_vision_blocks,
            map_strides=config.feature_map_strides,
            pixel_stride=config.pixel_map_stride,
            head=config.pooled_features or config.flat_map_features,  # else nothing reads the pooled features
        )
        self._text_encoder = text_encoder  # not a submodule: frozen, shared, never saved in checkpoints
        hidden = config.hidden_dim
        map_shapes = self.image_encoder.map_shapes
        image_dim = self.image_encoder.output_dim
        if map_shapes and not config.flat_map_features:
            image_dim -= sum(c * h * w for c, h, w in map_shapes)  # only the pooled features are projected
        self.keypoint_heads = nn.ModuleList(
            SpatialKeypoints(*shape, config.keypoints, config.keypoint_hidden_dim, hidden, config.keypoint_kernel_size)
            for _ in config.cameras for shape in (map_shapes if config.keypoints else [])
        )
        keypoint_dim = sum(head.output_dim for head in self.keypoint_heads) // len(config.cameras)
        # without pooled features (and without flattened maps) the keypoints are the only image input
        projects_features = config.pooled_features or config.flat_map_features or not map_shapes
        self.image_projections = nn.ModuleList(
            nn.Sequential(
                nn.LayerNorm(image_dim), nn.Linear(image_dim, config.image_projection_dim), nn.GELU()
            ) if projects_features else nn.Identity() for _ in config.cameras
        )
        projection_dim = config.image_projection_dim if projects_features else 0
        state_inputs = config.state_dim if config.state_indices is None else len(config.state_indices)
        self.state_encoder = nn.Sequential(
            nn.Linear(state_inputs, config.state_hidden_dim), nn.GELU(), nn.Linear(config.state_hidden_dim, config.state_hidden_dim)
        )
        fused_dim = len(config.cameras) * (projection_dim + keypoint_dim) + config.state_hidden_dim
        self.input_projection = nn.Linear(fused_dim, hidden)
        self.text_projection = nn.Sequential(nn.Linear(MINILM_DIM, hidden), nn.GELU()) if config.use_text else None
        self.advantage_embedding = nn.Embedding(3, hidden) if config.advantage_conditioning else None
        self.blocks = nn.ModuleList(FiLMBlock(hidden, hidden, config.dropout) for _ in range(config.num_blocks))
        self.output_norm = nn.LayerNorm(hidden)
        self.action_head = nn.Linear(hidden, config.horizon * config.action_dim)

        # Normalization statistics (NaN until set; saved in model.safetensors with the weights).
        nan = float("nan")
        self.register_buffer("state_mean", torch.full((config.state_dim,), nan))
        self.register_buffer("state_std", torch.full((config.state_dim,), nan))
        for name in ("action_mean", "action_std", "action_min", "action_max"):
            self.register_buffer(name, torch.full((config.action_dim,), nan))
        if self.normalizes_text:  # only then: checkpoints saved without text normalization have no such buffers
            self.register_buffer("text_mean", torch.full((MINILM_DIM,), nan))
            self.register_buffer("text_std", torch.full((1,), nan))
        self.reset()

    # ── normalization ──────────────────────────────────────────────────

    def set_normalization_stats(self, stats: dict[str, dict[str, Tensor]]) -> None:
        """Set `{"observation.state": {"mean", "std"}, "action": {"mean", "std", "min", "max"}}` (tensors or lists)."""
        try:
            state, action = stats[STATE_KEY], stats[ACTION_KEY]
            values = {
                "state_mean": state["mean"], "state_std": state["std"],
                "action_mean": action["mean"], "action_std": action["std"],
                "action_min": action["min"], "action_max": action["max"],
            }
        except (KeyError, TypeError) as error:
            raise ValueError(
                f"normalization stats need {{'{STATE_KEY}': {{mean, std}}, '{ACTION_KEY}': {{mean, std, min, max}}}}; "
                f"missing {error}. Compute them with robot_si.train.compute_normalization_stats(dataset)"
            ) from error
        for name, value in values.items():
            buffer = getattr(self, name)
            tensor = torch.as_tensor(value, dtype=torch.float32).reshape(-1)
            if tensor.shape != buffer.shape or not torch.isfinite(tensor).all():
                raise ValueError(f"normalization stat {name} must be {tuple(buffer.shape)} finite values, got {tensor.tolist()}")
            buffer.copy_(tensor.to(buffer.device))

    def normalization_stats(self) -> dict[str, dict[str, list[float]]]:
        stats = {
            STATE_KEY: {"mean": self.state_mean.tolist(), "std": self.state_std.tolist()},
            ACTION_KEY: {key: getattr(self, f"action_{key}").tolist() for key in ("mean", "std", "min", "max")},
        }
        if self.normalizes_text:
            stats["task"] = {"mean": self.text_mean.tolist(), "std": self.text_std.tolist()}
        return stats

    @property
    def normalizes_text(self) -> bool:
        return self.config.use_text and self.config.text_normalization == "mean_std"

    def fit_text_normalization(self, instructions: list[str]) -> None:
        """Set the instruction-embedding statistics from the training frames' instructions (one entry per frame, so
        frequent instructions count more): the per-dimension mean, and one overall std (the root mean square of the
        per-dimension stds). One std for every dimension keeps the embedding's geometry: a per-dimension std would
        blow up dimensions that barely vary among the training instructions, and a held-out paraphrase may not."""
        if not self.normalizes_text:
            return
        if not instructions:
            raise ValueError("cannot fit text normalization without instructions: the training data has no frames")
        counts = Counter(instructions)
        unique = sorted(counts)
        embeddings = self.encode_tasks(unique).float()
        weights = torch.tensor([counts[text] for text in unique], dtype=torch.float32, device=embeddings.device)[:, None]
        weights = weights / weights.sum()
        mean = (weights * embeddings).sum(0)
        std = (weights * (embeddings - mean) ** 2).sum(0).mean().sqrt().reshape(1)
        self.text_mean.copy_(mean.to(self.text_mean.device))
        self.text_std.copy_(std.to(self.text_std.device))

    def _check_stats(self) -> None:
        needs_state = self.config.state_normalization != "none"
        needs_action = self.config.action_normalization != "none"
        if (needs_state and torch.isnan(self.state_mean).any()) or (needs_action and torch.isnan(self.action_mean).any()):
            raise RuntimeError(
                "normalization stats are not set: call policy.set_normalization_stats("
                "robot_si.train.compute_normalization_stats(dataset)) or train through robot_si.train (which does it)"
            )
        if self.normalizes_text and torch.isnan(self.text_mean).any():
            raise RuntimeError(
                "instruction normalization is not set (text_normalization='mean_std'): call "
                "policy.fit_text_normalization(<the training frames' instructions>) or train through robot_si.train"
            )

    def normalize_text(self, features: Tensor) -> Tensor:
        if not self.normalizes_text:
            return features
        return (features - self.text_mean) / _scale(self.text_std, constant=1.0)

    def normalize_state(self, state: Tensor) -> Tensor:
        if self.config.state_normalization == "none":
            return state
        return (state - self.state_mean) / _scale(self.state_std, constant=1.0)

    def normalize_action(self, action: Tensor) -> Tensor:
        mode = self.config.action_normalization
        if mode == "mean_std":
            return (action - self.action_mean) / _scale(self.action_std, constant=1.0)
        if mode == "min_max":
            span = _scale(self.action_max - self.action_min, constant=2.0)
            return (action - self.action_min) / span * 2 - 1
        return action

    def unnormalize_action(self, action: Tensor) -> Tensor:
        mode = self.config.action_normalization
        if mode == "mean_std":
            action = action * _scale(self.action_std, constant=1.0) + self.action_mean
        elif mode == "min_max":
            action = (action + 1) / 2 * _scale(self.action_max - self.action_min, constant=2.0) + self.action_min
        if self.config.clip_actions:
            action = action.clamp(self.config.action_low, self.config.action_high)
        return action

    # ── inputs ─────────────────────────────────────────────────────────

    @property
    def device(self) -> torch.device:
        return self.action_head.weight.device

    @property
    def text_encoder(self) -> TextEncoder:
        if self._text_encoder is None:
            self._text_encoder = shared_text_encoder()
        return self._text_encoder

    def _check_images(self, batch: dict) -> list[Tensor]:
        images = []
        size = self.config.image_size
        for key in self.config.image_keys:
            if key not in batch:
                present = sorted(k for k in batch if k.startswith("observation.images."))
                raise KeyError(
                    f"batch has no camera key {key!r} (image keys present: {present}); the policy was built for cameras "
                    f"{list(self.config.cameras)}: record that camera or build the policy with cameras={present and [k.rsplit('.', 1)[-1] for k in present]}"
                )
            image = batch[key]
            if image.ndim != 4 or image.shape[1] != 3:
                raise ValueError(f"{key} must be float (B, 3, H, W) in [0, 1]; got shape {tuple(image.shape)} (use observations_to_batch for env observations)")
            if tuple(image.shape[-2:]) != (size, size):
                raise ValueError(
                    f"{key} is {image.shape[-2]}x{image.shape[-1]} but the policy expects {size}x{size}; make the env with "
                    f"image_size={size} or build the policy with image_size={image.shape[-1]}"
                )
            images.append(image.to(self.device, torch.float32))
        return images

    def encode_images(self, batch: dict) -> Tensor:
        """Backbone features of every camera, concatenated: (B, num_cameras * image_encoder.output_dim).

        With a fully frozen backbone this is what the trainer precomputes once per dataset (key
        `observation.image_features` in later batches)."""
        images = self._check_images(batch)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.config.features_cacheable):
            return torch.cat([self.image_encoder(image) for image in images], dim=-1)

    def encode_tasks(self, tasks: list[str]) -> Tensor:
        return self.text_encoder(list(tasks)).to(self.device)

    def _trunk_input(self, batch: dict) -> tuple[Tensor, Tensor]:
        """(fused features (B, hidden), task features (B, 384) or None)."""
        self._check_stats()
        if IMAGE_FEATURES_KEY in batch:
            image_features = batch[IMAGE_FEATURES_KEY].to(self.device, torch.float32)
        else:
            image_features = self.encode_images(batch)
        if STATE_KEY not in batch:
            raise KeyError(f"batch has no {STATE_KEY!r} (keys: {sorted(batch)})")
        state = batch[STATE_KEY].to(self.device, torch.float32)
        if state.ndim != 2 or state.shape[1] != self.config.state_dim:
            raise ValueError(f"{STATE_KEY} must be (B, {self.config.state_dim}); got {tuple(state.shape)}")
        task_features = None
        if self.config.use_text:
            if TASK_FEATURES_KEY in batch:
                task_features = batch[TASK_FEATURES_KEY].to(self.device, torch.float32)
            else:
                if "task" not in batch:
                    raise KeyError(f"batch has no 'task' instructions (keys: {sorted(batch)}); the policy uses text (use_text=True)")
                tasks = batch["task"]
                tasks = [tasks] * len(state) if isinstance(tasks, str) else list(tasks)
                task_features = self.encode_tasks(tasks)
            task_features = self.normalize_text(task_features)
        parts = self._image_parts(image_features, task_features)
        state = self.normalize_state(state)
        if self.config.state_indices is not None:
            state = state[:, list(self.config.state_indices)]
        parts.append(self.state_encoder(state))
        fused = self.input_projection(torch.cat(parts, dim=-1))
        return fused, task_features

    def _image_parts(self, image_features: Tensor, task_features: Tensor | None) -> list[Tensor]:
        """Per camera: the projected image features, then (with keypoints) each feature map's keypoint coordinates."""
        map_sizes = [c * h * w for c, h, w in self.image_encoder.map_shapes]
        split_maps = bool(map_sizes) and (self.config.keypoints or not self.config.flat_map_features)
        cond = None
        if self.config.keypoints:
            cond = (self.text_projection(task_features) if task_features is not None
                    else image_features.new_zeros(len(image_features), self.config.hidden_dim))
        heads_per_camera = len(self.keypoint_heads) // len(self.config.cameras)
        parts = []
        for camera, (projection, features) in enumerate(
            zip(self.image_projections, image_features.chunk(len(self.config.cameras), dim=-1), strict=True)
        ):
            if not split_maps:
                parts.append(projection(features))
                continue
            *maps, pooled = features.split([*map_sizes, features.shape[-1] - sum(map_sizes)], dim=-1)
            if self.training and self.config.map_shift_px:
                maps = self._shift_maps(maps)
                if self.config.flat_map_features:
                    features = torch.cat([*maps, pooled], dim=-1)
            if not isinstance(projection, nn.Identity):
                parts.append(projection(features if self.config.flat_map_features else pooled))
            heads = self.keypoint_heads[camera * heads_per_camera:(camera + 1) * heads_per_camera]
            if self.config.keypoints:
                parts.extend(head(feature_map, cond) for head, feature_map in zip(heads, maps, strict=True))
        return parts

    def _shift_maps(self, maps: list[Tensor]) -> list[Tensor]:
        """Random-shift augmentation of flattened maps (B, C*H*W): one offset in input pixels per sample, each map moved
        by round(offset / stride) cells, edges replicated (DrQ's replicate-pad + random crop)."""
        limit = self.config.map_shift_px
        batch = len(maps[0])
        offsets = torch.randint(-limit, limit + 1, (batch, 2), device=maps[0].device)  # (dx, dy) pixels
        rows = torch.arange(batch, device=maps[0].device)[:, None, None]
        shifted = []
        for flat, (channels, height, width) in zip(maps, self.image_encoder.map_shapes, strict=True):
            stride = self.config.image_size / width
            cells = torch.round(offsets / stride).long()
            ys = (torch.arange(height, device=flat.device) - cells[:, 1:2]).clamp(0, height - 1)  # (B, H)
            xs = (torch.arange(width, device=flat.device) - cells[:, 0:1]).clamp(0, width - 1)  # (B, W)
            grid = flat.view(batch, channels, height, width)
            moved = grid.permute(0, 2, 3, 1)[rows, ys[:, :, None], xs[:, None, :]]  # (B, H, W, C)
            shifted.append(moved.permute(0, 3, 1, 2).reshape(batch, -1))
        return shifted

    def _head(self, fused: Tensor, task_features: Tensor | None, advantage_tokens: Tensor | None) -> Tensor:
        cond = torch.zeros_like(fused)
        if task_features is not None:
            cond = cond + self.text_projection(task_features)
        if self.advantage_embedding is not None and advantage_tokens is not None:
            cond = cond + self.advantage_embedding(advantage_tokens)
        x = fused
        for block in self.blocks:
            x = block(x, cond)
        out = self.action_head(self.output_norm(x))
        return out.view(-1, self.config.horizon, self.config.action_dim)

    def _training_tokens(self, batch: dict, batch_size: int) -> Tensor | None:
        if self.advantage_embedding is None:
            return None
        indicator = batch.get("advantage_indicator")
        if indicator is None:
            tokens = torch.full((batch_size,), UNCONDITIONED, dtype=torch.long, device=self.device)
        else:
            indicator = torch.as_tensor(indicator, device=self.device).long().reshape(-1)
            bad_values = indicator[(indicator != -1) & (indicator != 0) & (indicator != 1)]
            if len(bad_values):
                raise ValueError(f"advantage_indicator must be 0, 1 or -1 (unknown); got {bad_values.unique().tolist()}")
            tokens = torch.where(indicator < 0, torch.full_like(indicator, UNCONDITIONED), indicator)
        if self.training and self.config.cond_dropout_prob > 0:
            dropped = torch.rand(batch_size, device=self.device) < self.config.cond_dropout_prob
            tokens = torch.where(dropped, torch.full_like(tokens, UNCONDITIONED), tokens)
        return tokens

    # ── policy API ─────────────────────────────────────────────────────

    def forward(self, batch: dict, reduction: str = "mean") -> tuple[Tensor, dict]:
        """Behaviour-cloning loss on normalized actions, ignoring padded chunk steps (`action_is_pad`).

        reduction="none" -> per-sample loss (B,) (mean over the sample's valid steps and action dims);
        reduction="mean" -> scalar: weighted by `batch["weight"]` when present (sum(w_i l_i) / sum(w_i)), else the mean.
        """
        if reduction not in ("mean", "none"):
            raise ValueError(f"reduction must be 'mean' or 'none' (got {reduction!r})")
        if ACTION_KEY not in batch:
            raise KeyError(f"forward needs the target action chunk {ACTION_KEY!r} (B, H, A) in the batch (keys: {sorted(batch)})")
        fused, task_features = self._trunk_input(batch)
        target = batch[ACTION_KEY].to(self.device, torch.float32)
        expected = (len(fused), self.config.horizon, self.config.action_dim)
        if tuple(target.shape) != expected:
            raise ValueError(f"{ACTION_KEY} must be (B, horizon, action_dim) = {expected}; got {tuple(target.shape)}")
        prediction = self._head(fused, task_features, self._training_tokens(batch, len(fused)))
        target = self.normalize_action(target)
        if self.config.loss == "l1":
            error = F.l1_loss(prediction, target, reduction="none")
        else:
            error = F.mse_loss(prediction, target, reduction="none")
        is_pad = batch.get("action_is_pad")
        valid = torch.ones(expected[:2], device=self.device) if is_pad is None else (~is_pad.to(self.device).bool()).float()
        per_sample = (error * valid.unsqueeze(-1)).sum(dim=(1, 2)) / (valid.sum(dim=1) * self.config.action_dim).clamp_min(1)
        info = {f"{self.config.loss}_loss": float(per_sample.detach().mean())}
        if reduction == "none":
            return per_sample, info
        weight = batch.get("weight")
        if weight is None:
            return per_sample.mean(), info
        weight = torch.as_tensor(weight, device=self.device, dtype=torch.float32).reshape(-1)
        return (weight * per_sample).sum() / weight.sum().clamp_min(1e-8), info

    @torch.no_grad()
    def predict_action_chunk(self, batch: dict) -> Tensor:
        """Action chunks (B, horizon, action_dim) in env units (un-normalized, clipped when clip_actions).

        With advantage conditioning, conditions on "good" and applies classifier-free guidance with `cfg_scale`.
        Call `policy.eval()` first (from_pretrained returns an eval-mode policy)."""
        fused, task_features = self._trunk_input(batch)
        if self.advantage_embedding is None:
            normalized = self._head(fused, task_features, None)
        else:
            good = torch.full((len(fused),), GOOD, dtype=torch.long, device=self.device)
            normalized = self._head(fused, task_features, good)
            if self.config.cfg_scale != 1.0:
                unconditioned = self._head(fused, task_features, torch.full_like(good, UNCONDITIONED))
                normalized = unconditioned + self.config.cfg_scale * (normalized - unconditioned)
        return self.unnormalize_action(normalized)

    def reset(self) -> None:
        """Clear the action queue (call at every episode start)."""
        self._action_queue: deque[Tensor] = deque(maxlen=self.config.n_action_steps)
        self._ensembler = None
        if self.config.temporal_ensemble_coeff is not None:
            from lerobot.policies.act.modeling_act import ACTTemporalEnsembler

            self._ensembler = ACTTemporalEnsembler(self.config.temporal_ensemble_coeff, self.config.horizon)

    @torch.no_grad()
    def select_action(self, batch: dict) -> Tensor:
        """One action per batch row (B, action_dim), LeRobot queue semantics: a chunk is predicted when the queue is
        empty and its first `n_action_steps` actions are returned one per call (or ACT temporal ensembling)."""
        if self._ensembler is not None:
            return self._ensembler.update(self.predict_action_chunk(batch))
        if not self._action_queue:
            chunk = self.predict_action_chunk(batch)[:, : self.config.n_action_steps]
            self._action_queue.extend(chunk.transpose(0, 1))
        return self._action_queue.popleft()

    # ── checkpoints ────────────────────────────────────────────────────

    def save_pretrained(self, directory: str | os.PathLike[str]) -> Path:
        """Write config.json, model.safetensors (weights + normalization buffers) and normalization.json (readable copy)."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.config.save(directory)
        state = {key: value.detach().cpu().contiguous() for key, value in self.state_dict().items()}
        save_file(state, str(directory / WEIGHTS_NAME), metadata={"type": POLICY_TYPE})
        (directory / NORMALIZATION_NAME).write_text(json.dumps(self.normalization_stats(), indent=2) + "\n")
        return directory

    @classmethod
    def from_pretrained(
        cls, directory: str | os.PathLike[str], *, device: str | torch.device = "cpu", text_encoder: TextEncoder | None = None, **overrides
    ) -> CompactVLAPolicy:
        """Load a `save_pretrained` directory (eval mode). `overrides` replace config fields (e.g. cfg_scale=2.0,
        n_action_steps=2) that do not change the weights' shapes."""
        from safetensors.torch import load_file

        config = read_policy_config(directory, expected_type=POLICY_TYPE)
        config = {**LEGACY_FIELD_VALUES, **config}  # a checkpoint saved before a field existed was built without it
        config = CompactVLAConfig.from_dict({**config, **overrides})
        saved_pretrained = config.pretrained_vision
        config.pretrained_vision = False  # the checkpoint holds the backbone weights; skip loading ImageNet's
        policy = cls(config, text_encoder=text_encoder)
        policy.config.pretrained_vision = saved_pretrained
        state = load_file(str(Path(directory) / WEIGHTS_NAME))
        missing, unexpected = policy.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise RuntimeError(
                f"checkpoint {directory} does not match its config (missing {missing[:5]}, unexpected {unexpected[:5]}); "
                "overrides may only change fields that keep the weight shapes"
            )
        return policy.to(device).eval()


def read_policy_config(directory: str | os.PathLike[str], *, expected_type: str | None = None) -> dict:
    """The `config.json` of a policy checkpoint directory, checked to be of `expected_type`."""
    directory = Path(directory)
    path = directory / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"no {CONFIG_NAME} in {directory}: not a policy checkpoint directory (expected the output of save_pretrained, "
            "e.g. <train out>/policy)"
        )
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); the checkpoint is damaged, re-save it") from error
    policy_type = config.get("type")
    if expected_type is not None and policy_type != expected_type:
        raise ValueError(
            f"checkpoint {directory} is a {policy_type!r} policy, not {expected_type!r}; load it with "
            "robot_si.policies.load_policy(path) (which dispatches on type) or LeRobotPolicyAdapter for LeRobot policies"
        )
    return config
