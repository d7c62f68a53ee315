"""Per-step progress / value model and n-step advantages (as in Self-Improving Embodied Foundation Models,
arXiv 2509.15155, where a steps-to-go predictor turns into a shaped reward).

Owns `ProgressConfig`, `ProgressModel`, `progress_targets` and `n_step_advantage`.

Model: frozen image feature of one frame (+ its proprioceptive state) + instruction embedding -> small MLP ->
sigmoid -> progress in [0, 1] (0 = nothing done yet, 1 = the instruction is achieved).

Targets (no ground truth; `success_prob` is the verifier's belief that the episode succeeded: 1 for demos,
the human/oracle label when there is one, else the detector's calibrated probability):
- succeeded episodes: normalized time tau_t = t / (T - 1), i.e. 1 - normalized time-to-go;
- failed episodes (negative evidence): min(tau_t, failure_cap) * min(1, (1 - tau_t) / failure_decay_fraction):
  a little progress is allowed early, then it decays to exactly 0 at the last frame, so states a failed
  episode ends in are learned to be worth nothing;
- mixed: success_prob * success target + (1 - success_prob) * failure target.

Label fields written per frame (see `episode_frame_labels`):
- `progress`: the model's prediction (frames between encoded frames are linearly interpolated);
- `value`: `progress`, except the last frame, whose value is the episode's `success_prob` (the judged outcome);
- `advantage`: A_t = V(min(t + n, T - 1)) - V(t), the n-step difference with n = `advantage_horizon`
  (default 5 frames); positive when the next n steps moved the task forward. The last frame has A = 0.

Never reads `audit_table()`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from robot_si.data.records import INTENDED_OUTCOME
from robot_si.verify.features import FeatureCache, make_encoders, pooled_image_features

CONFIG_FILE = "progress_config.json"
WEIGHTS_FILE = "model.safetensors"


@dataclasses.dataclass(kw_only=True)
class ProgressConfig:
    encoder: str = "default"
    frame_stride: int = 2  # encode every frame_stride-th frame (and the last); the others are interpolated
    use_state: bool = True
    hidden_dim: int = 128
    epochs: int = 40
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    failure_cap: float = 0.3
    failure_decay_fraction: float = 0.3
    advantage_horizon: int = 5
    image_dim: int = 0
    text_dim: int = 0
    state_dim: int = 0

    def __post_init__(self) -> None:
        for name in ("frame_stride", "hidden_dim", "epochs", "batch_size", "advantage_horizon"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"ProgressConfig.{name} must be an int >= 1 (got {value!r})")
        if not 0.0 <= self.failure_cap <= 1.0 or not 0.0 < self.failure_decay_fraction <= 1.0:
            raise ValueError(
                f"need 0 <= failure_cap <= 1 and 0 < failure_decay_fraction <= 1 "
                f"(got {self.failure_cap}, {self.failure_decay_fraction})"
            )

    def to_json_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def normalized_time(num_frames: int) -> np.ndarray:
    if num_frames <= 0:
        raise ValueError(f"an episode needs at least one frame (got {num_frames})")
    if num_frames == 1:
        return np.ones(1)
    return np.arange(num_frames) / (num_frames - 1)


def progress_targets(num_frames: int, success_prob: float, *, failure_cap: float = 0.3, failure_decay_fraction: float = 0.3) -> np.ndarray:
    """Per-frame progress targets in [0, 1] (see the module docstring)."""
    if not 0.0 <= success_prob <= 1.0:
        raise ValueError(f"success_prob must be in [0, 1] (got {success_prob})")
    tau = normalized_time(num_frames)
    failure = np.minimum(tau, failure_cap) * np.minimum(1.0, (1.0 - tau) / failure_decay_fraction)
    return (success_prob * tau + (1.0 - success_prob) * failure).astype(np.float32)


def n_step_advantage(values: np.ndarray, horizon: int) -> np.ndarray:
    """A_t = V(min(t + horizon, T - 1)) - V(t) for a (T,) value curve."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"values must be a (T,) curve (got shape {values.shape})")
    if horizon < 1:
        raise ValueError(f"advantage horizon must be >= 1 frame (got {horizon})")
    ahead = np.minimum(np.arange(len(values)) + horizon, len(values) - 1)
    return (values[ahead] - values).astype(np.float32)


@dataclasses.dataclass(kw_only=True)
class ProgressEpisode:
    """One episode's encoded frames: features at `frame_indices` of an episode with `num_frames` frames."""

    frame_indices: np.ndarray  # (n,) ascending, includes the last frame
    image_features: np.ndarray  # (n, image_dim)
    states: np.ndarray  # (n, state_dim)
    text: np.ndarray  # (text_dim,)
    num_frames: int
    success_prob: float | None = None


def encoded_frame_indices(num_frames: int, stride: int) -> np.ndarray:
    if num_frames <= 0:
        raise ValueError(f"an episode needs at least one frame (got {num_frames})")
    return np.unique(np.r_[np.arange(0, num_frames, stride), num_frames - 1]).astype(np.int64)


def _build_mlp(config: ProgressConfig):
    import torch
    from torch import nn

    class ProgressHead(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            d = config.hidden_dim
            self.register_buffer("image_mean", torch.zeros(config.image_dim))
            self.register_buffer("image_std", torch.ones(config.image_dim))
            self.register_buffer("state_mean", torch.zeros(max(1, config.state_dim)))
            self.register_buffer("state_std", torch.ones(max(1, config.state_dim)))
            inputs = config.image_dim + config.text_dim + (config.state_dim if config.use_state else 0)
            self.net = nn.Sequential(nn.Linear(inputs, d), nn.GELU(), nn.Linear(d, d), nn.GELU(), nn.Linear(d, 1))

        def forward(self, images, texts, states):
            parts = [(images - self.image_mean) / self.image_std, texts]
            if config.use_state:
                parts.append((states - self.state_mean) / self.state_std)
            return self.net(torch.cat(parts, dim=-1)).squeeze(-1)

    return ProgressHead()


class ProgressModel:
    """Predicts per-frame progress; `fit` on `ProgressEpisode`s with success_prob, `predict` per episode."""

    def __init__(self, config: ProgressConfig | None = None, *, encoders=None, cache_dir=None,
                 feature_cache: FeatureCache | None = None) -> None:
        """`feature_cache`: share another model's cache (e.g. the detector's), so frames are encoded once."""
        self.config = config or ProgressConfig()
        self._encoders = feature_cache.encoders if feature_cache is not None else encoders
        self._cache_dir = cache_dir
        self._cache: FeatureCache | None = feature_cache
        self.model = None
        self.training_report: dict[str, Any] = {}
        self._version: str | None = None

    @property
    def encoders(self):
        if self._encoders is None:
            self._encoders = make_encoders(self.config.encoder)
        return self._encoders

    @property
    def feature_cache(self) -> FeatureCache:
        if self._cache is None:
            self._cache = FeatureCache(self.encoders, cache_dir=self._cache_dir)
        return self._cache

    def featurize_episode(self, store, episode_id: str, success_prob: float | None = None) -> ProgressEpisode:
        meta = store.get_meta(episode_id)
        indices = encoded_frame_indices(meta.num_frames, self.config.frame_stride)
        features, states = self.feature_cache.image_features(store, episode_id, indices)
        # a spatial encoder (shared with the detector) puts pixel/feature maps first; this MLP reads the pooled vector
        features = pooled_image_features(features, self.encoders.map_shapes)
        return ProgressEpisode(
            frame_indices=indices, image_features=features, states=states[indices],
            text=self.feature_cache.text_features([meta.instruction])[0], num_frames=meta.num_frames,
            success_prob=success_prob,
        )

    def fit(self, episodes: Sequence[ProgressEpisode]) -> dict[str, Any]:
        import torch

        episodes = [e for e in episodes]
        if not episodes:
            raise ValueError("no episodes to fit the progress model on; record demos first")
        if any(e.success_prob is None for e in episodes):
            raise ValueError("every training episode needs a success_prob (1 for demos, labels or detector probabilities)")
        cfg = self.config
        cfg.image_dim, cfg.text_dim, cfg.state_dim = episodes[0].image_features.shape[1], episodes[0].text.shape[0], episodes[0].states.shape[1]
        images = np.concatenate([e.image_features for e in episodes]).astype(np.float32)
        states = np.concatenate([e.states for e in episodes]).astype(np.float32)
        texts = np.concatenate([np.repeat(e.text[None], len(e.frame_indices), 0) for e in episodes]).astype(np.float32)
        targets = np.concatenate([
            progress_targets(e.num_frames, float(e.success_prob), failure_cap=cfg.failure_cap,
                             failure_decay_fraction=cfg.failure_decay_fraction)[e.frame_indices]
            for e in episodes
        ]).astype(np.float32)
        torch.manual_seed(cfg.seed)
        generator = torch.Generator().manual_seed(cfg.seed)
        self.model = _build_mlp(cfg)
        self.model.image_mean.copy_(torch.from_numpy(images.mean(0)))
        self.model.image_std.copy_(torch.from_numpy(images.std(0) + 1e-3))
        self.model.state_mean.copy_(torch.from_numpy(states.mean(0)))
        self.model.state_std.copy_(torch.from_numpy(states.std(0) + 1e-3))
        optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        tensors = [torch.from_numpy(a) for a in (images, texts, states, targets)]
        self.model.train()
        for _ in range(cfg.epochs):
            order = torch.randperm(len(targets), generator=generator)
            total = 0.0
            for start in range(0, len(order), cfg.batch_size):
                batch = order[start : start + cfg.batch_size]
                x_img, x_txt, x_state, y = (t[batch] for t in tensors)
                # BCE against soft targets: a proper loss for values in [0, 1] through a sigmoid output.
                loss = torch.nn.functional.binary_cross_entropy_with_logits(self.model(x_img, x_txt, x_state), y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += loss.item() * len(batch)
        self.model.eval()
        self._version = None
        predictions = np.concatenate([self.predict(e)[e.frame_indices] for e in episodes])
        self.training_report = {
            "episodes": len(episodes), "frames": int(len(targets)), "final_train_bce": total / len(targets),
            "train_mae": float(np.abs(predictions - targets).mean()),
        }
        return self.training_report

    def fit_stores(self, stores: Sequence, *, label_version: str | None = None) -> dict[str, Any]:
        """Fit on demos (success_prob 1), near misses (0) and the episodes of `label_version` in each store that has it.

        Labelled episodes use their human/oracle label (1/0) when there is one, else the detector's
        success_prob (soft). Unlabelled non-demo episodes are skipped.
        """
        from robot_si.data.labels import list_label_versions, read_label_set

        episodes = []
        for store in stores:
            labels = {}
            versions = list_label_versions(store.root) if label_version else []
            if label_version and (label_version == "latest" or label_version in versions) and versions:
                labels = read_label_set(store.root, label_version).episode_labels
            for meta in store.episodes():
                if meta.num_frames <= 0 or meta.error:
                    continue
                if meta.source in INTENDED_OUTCOME:
                    prob = float(INTENDED_OUTCOME[meta.source])  # demos 1, near misses 0: labels by intent
                elif meta.episode_id in labels:
                    label = labels[meta.episode_id]
                    if label.label_source in ("human", "oracle") and label.label is not None:
                        prob = 1.0 if label.label else 0.0
                    elif label.success_prob is not None:
                        prob = label.success_prob
                    else:
                        continue
                else:
                    continue
                episodes.append(self.featurize_episode(store, meta.episode_id, prob))
        report = self.fit(episodes)
        report["episodes_by_evidence"] = {
            "succeeded (p >= 0.5)": sum(e.success_prob >= 0.5 for e in episodes),
            "failed (p < 0.5)": sum(e.success_prob < 0.5 for e in episodes),
        }
        return report

    def predict(self, episode: ProgressEpisode) -> np.ndarray:
        """Progress (num_frames,) in [0, 1]: predicted at the encoded frames, linearly interpolated between."""
        import torch

        if self.model is None:
            raise RuntimeError("the progress model is not trained; call fit(...) or ProgressModel.from_pretrained(dir)")
        with torch.inference_mode():
            logits = self.model(
                torch.from_numpy(np.asarray(episode.image_features, np.float32)),
                torch.from_numpy(np.repeat(np.asarray(episode.text, np.float32)[None], len(episode.frame_indices), 0)),
                torch.from_numpy(np.asarray(episode.states, np.float32)),
            )
        encoded = torch.sigmoid(logits).double().numpy()
        return np.interp(np.arange(episode.num_frames), episode.frame_indices, encoded).astype(np.float32)

    def episode_frame_labels(self, episode: ProgressEpisode, success_prob: float) -> dict[str, np.ndarray]:
        """progress, value and advantage arrays (num_frames,) for the label table."""
        progress = self.predict(episode)
        value = progress.astype(np.float64).copy()
        value[-1] = success_prob  # the last frame is worth the judged outcome
        return {
            "progress": progress,
            "value": value.astype(np.float32),
            "advantage": n_step_advantage(value, self.config.advantage_horizon),
        }

    @property
    def version(self) -> str:
        if self.model is None:
            raise RuntimeError("the progress model is not trained")
        if self._version is None:
            digest = hashlib.sha256()
            for name, tensor in sorted(self.model.state_dict().items()):
                digest.update(name.encode())
                digest.update(tensor.detach().cpu().numpy().tobytes())
            digest.update(json.dumps(self.config.to_json_dict(), sort_keys=True).encode())
            self._version = f"progress-{digest.hexdigest()[:12]}"
        return self._version

    def save_pretrained(self, directory: str | os.PathLike[str]) -> Path:
        from safetensors.torch import save_file

        if self.model is None:
            raise RuntimeError("the progress model is not trained; nothing to save")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.model.state_dict().items()}, str(directory / WEIGHTS_FILE))
        payload = {"config": self.config.to_json_dict(), "encoder_name": self.encoders.name, "version": self.version,
                   "training_report": self.training_report}
        (directory / CONFIG_FILE).write_text(json.dumps(payload, indent=2) + "\n")
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike[str], *, encoders=None, cache_dir=None,
                        feature_cache: FeatureCache | None = None) -> ProgressModel:
        from safetensors.torch import load_file

        directory = Path(directory)
        if not (directory / CONFIG_FILE).exists():
            raise FileNotFoundError(
                f"no progress model at {directory} ({CONFIG_FILE} is missing); `robot-si detector train` writes one "
                "to <out>/progress"
            )
        payload = json.loads((directory / CONFIG_FILE).read_text())
        model = cls(ProgressConfig(**payload["config"]), encoders=encoders, cache_dir=cache_dir, feature_cache=feature_cache)
        if model.encoders.name != payload["encoder_name"]:
            raise ValueError(
                f"the progress model at {directory} was trained on {payload['encoder_name']!r} features, "
                f"not {model.encoders.name!r}; use the encoders it was trained with"
            )
        model.model = _build_mlp(model.config)
        model.model.load_state_dict(load_file(str(directory / WEIGHTS_FILE)))
        model.model.eval()
        model.training_report = payload.get("training_report", {})
        return model

