"""`CompactVLAConfig`: every knob of the compact vision-language-action policy, validated on construction.

Owns only the configuration (a plain dataclass that round-trips through `config.json`); the network and the
policy API live in `modeling_compact_vla.py`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

POLICY_TYPE = "compact_vla"
CONFIG_NAME = "config.json"
# Fields added after checkpoints were already being saved, with the value that reproduces how those older
# checkpoints were built; `CompactVLAPolicy.from_pretrained` fills them in when a config.json lacks them.
LEGACY_FIELD_VALUES = {"feature_map_strides": [8, 16], "pixel_map_stride": 0, "keypoints": 0, "keypoint_hidden_dim": 64, "flat_map_features": True,
                       "keypoint_kernel_size": 1, "map_shift_px": 0, "pooled_features": True,
                       "text_normalization": "none"}


def _positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int (got {value!r})")


@dataclass(kw_only=True)
class CompactVLAConfig:
    """Compact VLA: frozen EfficientNet-Lite0 image features + state MLP + MiniLM instruction embedding, fused by
    FiLM-conditioned residual MLP blocks, regressing an action chunk (horizon, action_dim).

    Args:
        image_size: square input image side in pixels; other sizes are refused, not resized.
        cameras: camera names; the batch must hold `observation.images.<camera>` for each.
        state_dim, action_dim: proprioception and action sizes (robot_si envs: 8 and 4).
        horizon: action chunk length H predicted per call.
        n_action_steps: actions executed from each chunk before predicting again (<= horizon).
        temporal_ensemble_coeff: None, or ACT's exponential temporal ensembling coefficient for `select_action`
            (then `n_action_steps` must be 1: a chunk is predicted every step and overlapping chunks averaged).
        pretrained_vision: load ImageNet EfficientNet-Lite0 weights (False: random init, e.g. in tests).
        freeze_vision: keep the backbone frozen (features can be precomputed once per dataset: fast CPU training).
        trainable_vision_blocks: with freeze_vision, the number of final backbone blocks left trainable (0 = none).
        image_pooling: "mean" (1280-d per camera), "grid" (1280 x 2 x 2 at 64 px) or "multiscale" (flattened
            stride-8 and stride-16 feature maps + pooled 1280: keeps where small objects are).
        feature_map_strides: with image_pooling="multiscale", the backbone strides whose feature maps are kept
            (each of 4, 8, 16, 32; at 64 px stride 4 is 24x16x16, stride 8 is 40x8x8, stride 16 is 112x4x4).
        pixel_map_stride: with image_pooling="multiscale", also keep the raw RGB image average-pooled by this factor
            as a feature map (0 = off; 1, 2 or 4). At 64 px the task objects are 4-6 pixels wide: their colour is
            plain in the pixels and mostly lost in ImageNet features at stride 8.
        keypoints: spatial-softmax keypoints per feature map (0 = off; needs image_pooling="multiscale"): a small
            instruction-conditioned (FiLM) 1x1-conv head scores every map cell, and the softmax-weighted mean cell
            coordinates (x, y) of each keypoint feed the trunk. Where the named object is becomes a few numbers the
            same function of the image everywhere, which generalizes to new layouts far better than a linear layer
            on the flattened maps.
        keypoint_hidden_dim: channels of the keypoint head's hidden conv.
        keypoint_kernel_size: kernel of the keypoint head's hidden conv (1 or 3; 3 sees each cell's neighbours, e.g.
            an object's edge against the table, at 9x the head's first-layer weights).
        map_shift_px: training-time random-shift augmentation (DrQ's pad + random crop) of the feature maps, in input
            pixels (0 = off; needs image_pooling="multiscale"). Each training sample draws one offset (dx, dy) in
            [-map_shift_px, map_shift_px] pixels and every map is shifted by round(offset / its stride) cells with
            edge replication; it works on the trainer's cached maps, so the frozen backbone is not rerun. Never
            applied in eval mode.
        flat_map_features: also feed the flattened feature maps through the linear image projection (True: the
            multiscale behaviour before keypoints; with few demos it memorizes layouts).
        pooled_features: feed the globally pooled 1280-d backbone features through the image projection (True, the
            behaviour before this field). False (needs keypoints > 0, flat_map_features=False) leaves the keypoint
            coordinates as the policy's only image input: a pooled vector of the whole scene is another way to
            memorize the demo layouts.
        image_projection_dim: image features are projected to this size per camera.
        state_indices: which entries of `observation.state` the policy sees (None = all). Leaving out velocities
            ([0, 1, 2, 3] = end-effector xyz + gripper opening for robot_si envs) stops the "copycat" shortcut of
            cloning the previous action from the current velocity, which forces the policy to use the image.
        state_hidden_dim: width of the state encoder.
        hidden_dim: width of the fused trunk.
        num_blocks: number of FiLM residual blocks in the trunk.
        dropout: dropout inside the trunk blocks.
        use_text: condition on the instruction embedding (False: the policy ignores `task`).
        loss: "l1" or "mse" on normalized actions.
        state_normalization: "mean_std" or "none".
        action_normalization: "mean_std", "min_max" (to [-1, 1]) or "none".
        text_normalization: "mean_std" standardizes each dimension of the instruction embedding with the mean/std over
            the training frames' instructions (set by the trainer, saved with the weights), so what tells one
            instruction from another (which colour, which task) reaches the network at unit scale rather than as a
            ~0.035-per-dimension difference on a shared sentence embedding; "none" feeds MiniLM's embedding as is.
        clip_actions: clip un-normalized actions to [action_low, action_high] (robot_si envs refuse values outside
            [-1, 1]).
        advantage_conditioning: RECAP-style conditioning on a per-frame advantage indicator (good/bad).
        cond_dropout_prob: probability of replacing the indicator with the "unconditioned" token in training.
        cfg_scale: classifier-free guidance at inference: a = a_uncond + cfg_scale * (a_good - a_uncond).
    """

    type: str = POLICY_TYPE
    image_size: int = 64
    cameras: tuple[str, ...] = ("front",)
    state_dim: int = 8
    action_dim: int = 4
    horizon: int = 8
    n_action_steps: int = 4
    temporal_ensemble_coeff: float | None = None

    pretrained_vision: bool = True
    freeze_vision: bool = True
    trainable_vision_blocks: int = 0
    image_pooling: str = "multiscale"
    feature_map_strides: tuple[int, ...] = (16,)
    pixel_map_stride: int = 2
    keypoints: int = 16
    keypoint_hidden_dim: int = 64
    keypoint_kernel_size: int = 1
    map_shift_px: int = 0
    flat_map_features: bool = False
    pooled_features: bool = False
    image_projection_dim: int = 256
    state_indices: tuple[int, ...] | None = None
    state_hidden_dim: int = 128
    hidden_dim: int = 256
    num_blocks: int = 3
    dropout: float = 0.1
    use_text: bool = True

    loss: str = "l1"
    state_normalization: str = "mean_std"
    action_normalization: str = "mean_std"
    text_normalization: str = "mean_std"
    clip_actions: bool = True
    action_low: float = -1.0
    action_high: float = 1.0

    advantage_conditioning: bool = False
    cond_dropout_prob: float = 0.1
    cfg_scale: float = 1.0

    extra: dict = field(default_factory=dict)  # free-form notes saved with the checkpoint (e.g. training data)

    def __post_init__(self) -> None:
        if self.type != POLICY_TYPE:
            raise ValueError(f"CompactVLAConfig.type must be {POLICY_TYPE!r} (got {self.type!r})")
        if isinstance(self.cameras, str):
            raise ValueError(f"cameras must be a list of camera names, e.g. ['front'] (got the string {self.cameras!r})")
        self.cameras = tuple(self.cameras)
        if not self.cameras or len(set(self.cameras)) != len(self.cameras) or not all(isinstance(c, str) and c for c in self.cameras):
            raise ValueError(f"cameras must be distinct non-empty names, e.g. ('front',) (got {self.cameras!r})")
        for name in ("image_size", "state_dim", "action_dim", "horizon", "n_action_steps", "image_projection_dim",
                     "state_hidden_dim", "hidden_dim", "num_blocks"):
            _positive_int(name, getattr(self, name))
        if self.image_size < 32:
            raise ValueError(f"image_size must be >= 32 for EfficientNet-Lite0 (got {self.image_size})")
        self.feature_map_strides = tuple(self.feature_map_strides)
        if not self.feature_map_strides or len(set(self.feature_map_strides)) != len(self.feature_map_strides) or any(
            s not in (4, 8, 16, 32) for s in self.feature_map_strides
        ):
            raise ValueError(f"feature_map_strides must be distinct values from (4, 8, 16, 32) (got {self.feature_map_strides!r})")
        if self.pixel_map_stride not in (0, 1, 2, 4) or isinstance(self.pixel_map_stride, bool):
            raise ValueError(f"pixel_map_stride must be 0 (off), 1, 2 or 4 (got {self.pixel_map_stride!r})")
        if self.pixel_map_stride and self.image_pooling != "multiscale":
            raise ValueError(f"pixel_map_stride={self.pixel_map_stride} needs image_pooling='multiscale' (got {self.image_pooling!r})")
        if isinstance(self.keypoints, bool) or not isinstance(self.keypoints, int) or self.keypoints < 0:
            raise ValueError(f"keypoints must be an int >= 0 (got {self.keypoints!r}); 0 turns the keypoint head off")
        _positive_int("keypoint_hidden_dim", self.keypoint_hidden_dim)
        if isinstance(self.keypoint_kernel_size, bool) or self.keypoint_kernel_size not in (1, 3):
            raise ValueError(f"keypoint_kernel_size must be 1 or 3 (got {self.keypoint_kernel_size!r})")
        if isinstance(self.map_shift_px, bool) or not isinstance(self.map_shift_px, int) or not 0 <= self.map_shift_px <= self.image_size // 4:
            raise ValueError(f"map_shift_px must be an int in [0, image_size // 4 = {self.image_size // 4}] pixels "
                             f"(got {self.map_shift_px!r}); 0 turns the random-shift augmentation off")
        if self.map_shift_px and self.image_pooling != "multiscale":
            raise ValueError(f"map_shift_px={self.map_shift_px} shifts feature maps, which needs image_pooling='multiscale' "
                             f"(got {self.image_pooling!r}); set map_shift_px=0")
        if self.keypoints and self.image_pooling != "multiscale":
            raise ValueError(f"keypoints={self.keypoints} needs image_pooling='multiscale' (got {self.image_pooling!r}); "
                             "set keypoints=0 or image_pooling=multiscale")
        if not self.pooled_features and (not self.keypoints or self.flat_map_features or self.image_pooling != "multiscale"):
            raise ValueError("pooled_features=False leaves the keypoints as the only image input, so it needs "
                             f"image_pooling='multiscale', keypoints > 0 and flat_map_features=False (got {self.image_pooling!r}, "
                             f"{self.keypoints}, {self.flat_map_features}); set pooled_features=true")
        if self.state_indices is not None:
            self.state_indices = tuple(self.state_indices)
            if not self.state_indices or len(set(self.state_indices)) != len(self.state_indices) or not all(
                isinstance(i, int) and not isinstance(i, bool) and 0 <= i < self.state_dim for i in self.state_indices
            ):
                raise ValueError(
                    f"state_indices must be distinct ints in [0, {self.state_dim}) (got {self.state_indices!r}); "
                    "use null to feed the whole state"
                )
        if self.n_action_steps > self.horizon:
            raise ValueError(
                f"n_action_steps ({self.n_action_steps}) cannot exceed horizon ({self.horizon}); lower n_action_steps "
                "or raise horizon"
            )
        if self.temporal_ensemble_coeff is not None and self.n_action_steps != 1:
            raise ValueError(
                f"temporal ensembling predicts a chunk every step, so n_action_steps must be 1 "
                f"(got {self.n_action_steps}); set n_action_steps=1 or temporal_ensemble_coeff=None"
            )
        if isinstance(self.trainable_vision_blocks, bool) or not isinstance(self.trainable_vision_blocks, int) or not 0 <= self.trainable_vision_blocks <= 16:
            raise ValueError(f"trainable_vision_blocks must be an int in [0, 16] (got {self.trainable_vision_blocks!r})")
        if self.trainable_vision_blocks and not self.freeze_vision:
            raise ValueError("trainable_vision_blocks only applies with freeze_vision=True (unfrozen trains every block)")
        choices = {
            "image_pooling": ("mean", "grid", "multiscale"),
            "loss": ("l1", "mse"),
            "state_normalization": ("mean_std", "none"),
            "action_normalization": ("mean_std", "min_max", "none"),
            "text_normalization": ("mean_std", "none"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed} (got {getattr(self, name)!r})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1) (got {self.dropout})")
        if not 0.0 <= self.cond_dropout_prob <= 1.0:
            raise ValueError(f"cond_dropout_prob must be in [0, 1] (got {self.cond_dropout_prob})")
        if self.cfg_scale < 0:
            raise ValueError(f"cfg_scale must be >= 0 (got {self.cfg_scale}); 1.0 means no guidance")
        if not self.action_low < self.action_high:
            raise ValueError(f"action_low ({self.action_low}) must be below action_high ({self.action_high})")

    # ── derived ────────────────────────────────────────────────────────

    @property
    def image_keys(self) -> list[str]:
        return [f"observation.images.{camera}" for camera in self.cameras]

    @property
    def features_cacheable(self) -> bool:
        """True when image features do not change during training (frozen backbone), so they can be precomputed."""
        return self.freeze_vision and self.trainable_vision_blocks == 0

    # ── (de)serialization ──────────────────────────────────────────────

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["cameras"] = list(self.cameras)
        data["feature_map_strides"] = list(self.feature_map_strides)
        if self.state_indices is not None:
            data["state_indices"] = list(self.state_indices)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> CompactVLAConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown CompactVLAConfig fields {unknown}; known fields: {sorted(known)}")
        return cls(**data)

    def save(self, directory: str | os.PathLike[str]) -> Path:
        path = Path(directory) / CONFIG_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path
