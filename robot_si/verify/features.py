"""Frozen features for the verifier: which frames make a clip, and cached image/text embeddings of them.

Owns:
- `clip_frame_indices`: the K frames the success detector looks at for a clip ending at frame t (the final
  frames plus a few subsampled from the start of the episode up to t);
- the `Encoders` protocol and its implementations: `PretrainedEncoders` (the policy's frozen ImageNet
  EfficientNet-Lite0 image encoder and offline MiniLM text encoder from `robot_si.policies.encoders`), either
  one pooled 1280-d vector per frame (`default`) or, with `spatial=True`, the frame's maps too (the raw pixels
  average-pooled x4 and the stride-16 feature map, flattened, before the pooled vector), so a head can find
  where small objects are; and `HashingEncoders` (no weights: pooled pixels and hashed words; tests only);
- `FeatureCache`: image features per (store, episode, camera, frame), computed once per process and optionally kept
  on disk (episodes are immutable, so a cached feature never goes stale), plus instruction embeddings.

Reads episodes only through `EpisodeStore.load_episode` and `EpisodeStore.episodes()` (no ground truth).
Does not train anything.
"""

from __future__ import annotations

import hashlib
import os
import re
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from robot_si.data.store import IMAGE_PREFIX, STATE_KEY

EFFICIENTNET_FEATURE_DIM = 1280  # = robot_si.policies.encoders.EFFICIENTNET_FEATURE_DIM (not imported: torch-free here)
MINILM_DIM = 384


def episode_end(store, meta, *, use_terminal: bool = False) -> int:
    """Frame index at which a clip judging the whole episode ends: `num_frames` (the terminal observation, the
    scene after the last action that the env judged) where the store recorded it and `use_terminal`, else the
    last stored frame `num_frames - 1`. `FeatureCache` serves index `num_frames` from the terminal observation."""
    if use_terminal and store.has_terminal(meta.episode_id):
        return meta.num_frames
    return meta.num_frames - 1


def clip_frame_indices(end: int, *, num_context: int = 4, num_final: int = 3, final_stride: int = 2) -> np.ndarray:
    """Frame indices (ascending, length num_context + num_final) of the clip that ends at frame `end`.

    The last `num_final` entries are end, end - stride, ... (what the scene looks like *now*); the first
    `num_context` are evenly spaced over [0, first final frame] (where it started and how it got there).
    Short episodes: indices below 0 are clamped to 0, i.e. the first frame is repeated. This padding is
    deliberate, so a 1-frame episode still gets a full-size clip; the detector then sees an unchanging scene.
    """
    if end < 0:
        raise ValueError(f"clip end must be a frame index >= 0 (got {end}); the episode has no frames")
    if num_context < 0 or num_final < 1 or final_stride < 1:
        raise ValueError(
            f"need num_context >= 0, num_final >= 1, final_stride >= 1 (got {num_context}, {num_final}, {final_stride})"
        )
    final = end - final_stride * np.arange(num_final - 1, -1, -1)
    context = np.round(np.linspace(0, max(0, int(final[0])), num_context)) if num_context else np.zeros(0)
    return np.clip(np.concatenate([context, final]).astype(np.int64), 0, end)


class Encoders(Protocol):
    """Frozen feature extractors the verifier uses; `name` identifies them in caches and checkpoints.

    `map_shapes`: (channels, height, width) of the flattened maps at the front of each image feature, in order;
    the remaining `image_dim - sum(C*H*W)` entries are the pooled vector (`pooled_image_features` splits them).
    Empty for encoders that give only a pooled vector.
    """

    name: str
    image_dim: int
    text_dim: int
    map_shapes: tuple[tuple[int, int, int], ...]

    def encode_images(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, 3) -> float32 (N, image_dim)."""

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """N instructions -> float32 (N, text_dim)."""


class HashingEncoders:
    """Weight-free encoders: 8x8 average-pooled pixels and a hashed bag of words (tests and debugging only)."""

    name = "hashing"
    map_shapes: tuple[tuple[int, int, int], ...] = ()

    def __init__(self, *, pool: int = 8, text_dim: int = 64) -> None:
        self.pool = pool
        self.image_dim = pool * pool * 3
        self.text_dim = text_dim

    def encode_images(self, images: np.ndarray) -> np.ndarray:
        images = _check_images(images)
        n, h, w, _ = images.shape
        ph, pw = max(1, h // self.pool), max(1, w // self.pool)
        cropped = images[:, : ph * self.pool, : pw * self.pool].astype(np.float32) / 255.0
        pooled = cropped.reshape(n, self.pool, ph, self.pool, pw, 3).mean(axis=(2, 4))
        return (pooled.reshape(n, -1) - 0.5).astype(np.float32)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        texts = _check_texts(texts)
        out = np.zeros((len(texts), self.text_dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"[a-z0-9]+", text.lower()):
                out[row, zlib.crc32(word.encode()) % self.text_dim] += 1.0
            out[row] /= max(1.0, float(np.linalg.norm(out[row])))
        return out


class PretrainedEncoders:
    """The policy's frozen encoders (ImageNet EfficientNet-Lite0 -> 1280-d, offline MiniLM -> 384-d).

    Both come from `robot_si.policies.encoders` (weights shipped in pip packages, nothing is downloaded). The
    image trunk's "same" padding depends on the input side, so one `ImageEncoder` is built per image size seen;
    the text encoder is the process-wide shared one (policies in the same process reuse its weights and cache).

    `spatial=True`: each image feature is [pixels average-pooled x4, stride-16 map, pooled 1280] flattened (at
    64 px: 3x16x16 + 112x4x4 + 1280 = 3840 values; x4 not x2: a head reading 32x32 cells trained 4x slower on
    CPU); `map_shapes` describes the maps. Their size depends on the image side, so a spatial encoder is fixed to
    one `image_size`.
    """

    text_dim = MINILM_DIM
    PIXEL_STRIDE = 4
    MAP_STRIDES = (16,)

    def __init__(self, *, batch_size: int = 128, spatial: bool = False, image_size: int = 64) -> None:
        self.spatial = spatial
        self.name = "efficientnet_lite0_spatial+minilm" if spatial else "efficientnet_lite0+minilm"
        self.spatial_image_size = image_size if spatial else None
        self.map_shapes: tuple[tuple[int, int, int], ...] = ()
        self.image_dim = EFFICIENTNET_FEATURE_DIM
        try:
            from robot_si.policies.encoders import shared_text_encoder
        except ImportError as error:
            raise RuntimeError(
                f"the pretrained encoders are not importable ({error}); they live in robot_si/policies/encoders.py. "
                "Reinstall with `pip install -e .`, or use encoder=hashing for a weight-free smoke test"
            ) from error
        import torch

        self._torch = torch
        self.batch_size = batch_size
        self._image_encoders: dict[int, object] = {}
        try:
            self._text = shared_text_encoder()
            # load the image weights now, so a missing package fails here and not mid-run
            encoder = self._image_encoder(image_size if spatial else 64)
        except ImportError as error:
            raise RuntimeError(f"the pretrained encoders cannot be loaded: {error}") from error
        if spatial:
            self.map_shapes = tuple(tuple(int(v) for v in shape) for shape in encoder.map_shapes)
            self.image_dim = encoder.output_dim

    def _image_encoder(self, image_size: int):
        if image_size not in self._image_encoders:
            from robot_si.policies.encoders import ImageEncoder

            if self.spatial:
                if self.spatial_image_size != image_size:
                    raise ValueError(
                        f"this spatial encoder was built for {self.spatial_image_size} px images, got {image_size} px; "
                        f"its feature maps depend on the image size (build it with image_size={image_size})"
                    )
                encoder = ImageEncoder(image_size, pretrained=True, pooling="multiscale", freeze=True,
                                       map_strides=self.MAP_STRIDES, pixel_stride=self.PIXEL_STRIDE, head=True).eval()
            else:
                encoder = ImageEncoder(image_size, pretrained=True, pooling="mean", freeze=True).eval()
                if encoder.output_dim != EFFICIENTNET_FEATURE_DIM:
                    raise RuntimeError(f"EfficientNet-Lite0 gave {encoder.output_dim}-d features, expected "
                                       f"{EFFICIENTNET_FEATURE_DIM}")
            self._image_encoders[image_size] = encoder
        return self._image_encoders[image_size]

    def encode_images(self, images: np.ndarray) -> np.ndarray:
        images = _check_images(images)
        if images.shape[1] != images.shape[2]:
            raise ValueError(f"the image encoder needs square images (got {images.shape[1]}x{images.shape[2]})")
        torch = self._torch
        encoder = self._image_encoder(int(images.shape[1]))
        chunks = []
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                batch = torch.from_numpy(images[start : start + self.batch_size]).permute(0, 3, 1, 2).float() / 255.0
                chunks.append(encoder(batch).float().cpu().numpy())
        return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros((0, self.image_dim), np.float32)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        texts = _check_texts(texts)
        embedded = self._text(texts).float().cpu().numpy()
        if embedded.shape != (len(texts), self.text_dim) or not np.isfinite(embedded).all():
            raise ValueError(
                f"the text encoder could not embed the instructions {list(texts)[:3]} (got shape {embedded.shape}); "
                "instructions must be non-empty plain-text strings"
            )
        return embedded.astype(np.float32)


def make_encoders(name: str, *, image_size: int = 64) -> Encoders:
    """`default` / `pretrained`: the policy's frozen encoders, pooled; `spatial`: the same plus the pixel and
    stride-16 maps of each frame (at `image_size`); `hashing`: weight-free (tests only)."""
    if name in ("default", "pretrained", "efficientnet_lite0+minilm"):
        return PretrainedEncoders()
    if name in ("spatial", "efficientnet_lite0_spatial+minilm"):
        return PretrainedEncoders(spatial=True, image_size=image_size)
    if name == "hashing":
        return HashingEncoders()
    raise ValueError(f"unknown encoder {name!r}; choose 'spatial' (EfficientNet-Lite0 maps + MiniLM), 'default' "
                     "(pooled EfficientNet-Lite0 + MiniLM) or 'hashing' (tests)")


def map_feature_size(map_shapes: Sequence[Sequence[int]]) -> int:
    """How many leading entries of an image feature the flattened `map_shapes` maps take."""
    return sum(int(c) * int(h) * int(w) for c, h, w in map_shapes)


def pooled_image_features(features: np.ndarray, map_shapes: Sequence[Sequence[int]]) -> np.ndarray:
    """The pooled part of image features (..., image_dim) whose front holds flattened `map_shapes` maps."""
    return features[..., map_feature_size(map_shapes):]


def _check_images(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (N, H, W, 3) (got {images.dtype} {images.shape})")
    return images


def check_cameras(cameras: Sequence[str], name: str = "cameras") -> tuple[str, ...]:
    """A non-empty tuple of distinct camera names, or a ValueError naming `name` and the fix."""
    if isinstance(cameras, str) or not cameras or len(set(cameras)) != len(cameras) \
            or any(not isinstance(c, str) or not c.isidentifier() for c in cameras):
        raise ValueError(f"{name} must be a non-empty list of distinct camera names, e.g. ['front'] or "
                         f"['front', 'wrist'] (got {cameras!r})")
    return tuple(cameras)


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise ValueError(f"texts must be a list of instructions, not the single string {texts!r}")
    texts = list(texts)
    for text in texts:
        if not isinstance(text, str) or not text.strip():
            raise ValueError(
                f"cannot embed instruction {text!r}: instructions must be non-empty strings "
                "(check the episode's `instruction` in the store)"
            )
    return texts


class FeatureCache:
    """Image features per (store, episode, camera, frame) and instruction embeddings, computed once.

    `image_features(store, episode_id, indices, cameras=("front",))` loads the episode once (for every camera)
    and encodes only frames not seen before; with several cameras a frame's features are the cameras' features side
    by side (`image_dim(cameras)` wide). With `cache_dir`, features also persist across processes as
    `<cache_dir>/<encoder>/<store hash>/<episode_id>.npz` (the front camera; others `<episode_id>.<camera>.npz`).
    """

    def __init__(self, encoders: Encoders, *, cache_dir: str | os.PathLike[str] | None = None) -> None:
        self.encoders = encoders
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self._images: dict[tuple[str, str, str], dict[int, np.ndarray]] = {}
        self._states: dict[tuple[str, str, str], np.ndarray] = {}
        self._texts: dict[str, np.ndarray] = {}

    def image_dim(self, cameras: Sequence[str] = ("front",)) -> int:
        return self.encoders.image_dim * len(cameras)

    @staticmethod
    def _store_key(store) -> str:
        return str(Path(store.root).resolve())

    def _disk_path(self, store_key: str, episode_id: str, camera: str) -> Path | None:
        if self.cache_dir is None:
            return None
        digest = hashlib.sha1(store_key.encode()).hexdigest()[:12]
        safe_id = re.sub(r"[^A-Za-z0-9._-]", "_", episode_id)
        suffix = "" if camera == "front" else f".{camera}"
        return self.cache_dir / self.encoders.name / digest / f"{safe_id}{suffix}.npz"

    def _load_disk(self, key: tuple[str, str, str]) -> None:
        if key in self._images:
            return
        self._images[key] = {}
        path = self._disk_path(*key)
        if path is not None and path.exists():
            with np.load(path) as data:
                self._images[key] = dict(zip(data["indices"].tolist(), data["features"], strict=True))
                self._states[key] = data["states"]

    def _save_disk(self, key: tuple[str, str, str]) -> None:
        path = self._disk_path(*key)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        indices = np.array(sorted(self._images[key]), dtype=np.int64)
        features = np.stack([self._images[key][i] for i in indices.tolist()])
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
        np.savez(tmp, indices=indices, features=features, states=self._states[key])
        os.replace(tmp, path)

    def image_features(self, store, episode_id: str, indices: Iterable[int],
                       cameras: Sequence[str] = ("front",)) -> tuple[np.ndarray, np.ndarray]:
        """(features (len(indices), image_dim(cameras)), states (num_frames, state_dim)) of one episode."""
        cameras = check_cameras(cameras)
        indices = [int(i) for i in indices]
        keys = [(self._store_key(store), episode_id, camera) for camera in cameras]
        stale = [key for key in keys if self._is_stale(key, indices)]
        if stale:
            self._encode(store, episode_id, indices, stale)
        features = [np.stack([self._images[key][i] for i in indices]) for key in keys]
        return np.concatenate(features, axis=-1).astype(np.float32), self._states[keys[0]]

    def _is_stale(self, key: tuple[str, str, str], indices: list[int]) -> bool:
        self._load_disk(key)
        return (bool(set(indices) - set(self._images[key])) or key not in self._states
                or max(indices, default=0) >= len(self._states[key]))

    def _encode(self, store, episode_id: str, indices: list[int], keys: list[tuple[str, str, str]]) -> None:
        """Encode the missing frames of `keys` (cameras of one episode) from a single load of the episode."""
        episode = store.load_episode(episode_id)
        states = np.asarray(episode[STATE_KEY], dtype=np.float32)
        num_frames = len(states)
        if num_frames == 0:
            raise ValueError(f"episode {episode_id!r} in {store.root} has no frames; the verifier cannot judge it")
        terminal = store.load_terminal(episode_id) if num_frames in indices else None
        if terminal is not None:  # index num_frames: the observation after the last action
            states = np.concatenate([states, np.asarray(terminal[STATE_KEY], np.float32)[None]])
        for key in keys:
            camera = key[2]
            image_key = IMAGE_PREFIX + camera
            if image_key not in episode:
                raise ValueError(
                    f"episode {episode_id!r} in {store.root} has no {image_key!r} frames (keys {sorted(episode)}); "
                    f"the verifier reads the {camera!r} camera: record with it (cameras=[..., {camera!r}]) or "
                    "set the detector's cameras to ones the store has"
                )
            images = episode[image_key]
            if terminal is not None:
                images = np.concatenate([images, terminal[image_key][None]])
            missing = sorted(set(indices) - set(self._images[key]))
            bad = [i for i in missing if not 0 <= i < len(images)]
            if bad:
                raise ValueError(f"frame indices {bad[:5]} are outside episode {episode_id!r} ({num_frames} frames"
                                 f"{', plus its terminal observation' if terminal is not None else ', no terminal observation'})")
            self._states[key] = states
            if missing:
                encoded = self.encoders.encode_images(images[missing])
                for index, feature in zip(missing, encoded, strict=True):
                    self._images[key][index] = feature
            self._save_disk(key)

    def text_features(self, texts: Sequence[str]) -> np.ndarray:
        texts = _check_texts(texts)
        missing = sorted({t for t in texts if t not in self._texts})
        if missing:
            for text, feature in zip(missing, self.encoders.encode_texts(missing), strict=True):
                self._texts[text] = feature
        if not texts:
            return np.zeros((0, self.encoders.text_dim), np.float32)
        return np.stack([self._texts[t] for t in texts]).astype(np.float32)
