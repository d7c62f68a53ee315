"""Synthetic episodes for tests and benchmarks of the store (no simulator needed).

Owns only `synthetic_episode`/`synthetic_meta`: smooth, deterministic images (so PNG/video sizes resemble
rendered scenes, unlike white noise) and random state/action arrays of the right shapes.
"""

from __future__ import annotations

import numpy as np

from robot_si.data.records import EpisodeMeta


def synthetic_episode(
    num_frames: int,
    *,
    image_size: int = 32,
    cameras: tuple[str, ...] = ("front",),
    state_dim: int = 8,
    action_dim: int = 4,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:image_size, 0:image_size]
    frames: dict[str, np.ndarray] = {}
    for camera_index, camera in enumerate(cameras):
        images = np.empty((num_frames, image_size, image_size, 3), dtype=np.uint8)
        background = rng.integers(40, 200, size=3)
        for t in range(num_frames):
            # a moving square over a gradient: compressible like a rendered tabletop
            image = np.stack([(xs * 3 + t) % 256, (ys * 2 + camera_index * 50) % 256, np.full_like(xs, background[2])], -1)
            cx = (t * 2 + seed) % max(1, image_size - 6)
            image[4:10, cx : cx + 6] = (255, 40, 40)
            images[t] = image.astype(np.uint8)
        frames[f"observation.images.{camera}"] = images
    frames["observation.state"] = rng.standard_normal((num_frames, state_dim)).astype(np.float32)
    frames["action"] = rng.uniform(-1, 1, (num_frames, action_dim)).astype(np.float32)
    return frames


def synthetic_meta(
    episode_id: str, num_frames: int, *, source: str = "demo", round: int = 0, task_name: str = "reach", seed: int = 0
) -> EpisodeMeta:
    return EpisodeMeta(
        episode_id=episode_id,
        source=source,
        round=round,
        policy_version="synthetic",
        task_name=task_name,
        instruction=f"{task_name} the red cube",
        seed=seed,
        num_frames=num_frames,
        error=None,
    )
