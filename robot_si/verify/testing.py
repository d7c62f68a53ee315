"""Tiny stores for the verifier's tests and benchmark (not used by the pipeline itself).

Owns `synthetic_verifier_store` (no simulator: demos + autonomous episodes with ground truth in the audit
field) and `record_expert_rollouts` (real MuJoCo episodes from the scripted experts at a chosen noise level,
stored as `autonomous` episodes: a stand-in for "a different policy" whose successes and failures we know).
Ground truth goes only into the store's audit field, exactly as `collect` does.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import numpy as np


def synthetic_verifier_store(
    root: str | os.PathLike[str],
    *,
    num_demos: int = 4,
    num_autonomous: int = 6,
    demo_frames: int = 12,
    autonomous_frames: int = 10,
    tasks: Sequence[str] = ("reach", "push"),
):
    """A store of synthetic demos (`source="demo"`) and round-1 autonomous episodes, half of them failed."""
    from robot_si.data import EpisodeStore
    from robot_si.data.synthetic import synthetic_episode, synthetic_meta

    store = EpisodeStore.create(root, fps=10, image_size=32, state_dim=8, action_dim=4)
    for i in range(num_demos):
        meta = synthetic_meta(f"demo{i}", demo_frames, task_name=tasks[i % len(tasks)], seed=i)
        store.append_episode(synthetic_episode(demo_frames, seed=i), meta, audit_gt_success=True)
    for i in range(num_autonomous):
        meta = dataclasses.replace(
            synthetic_meta(f"auto{i}", autonomous_frames, task_name=tasks[i % len(tasks)], seed=100 + i),
            source="autonomous", round=1, policy_version="policy-r0",
        )
        store.append_episode(synthetic_episode(autonomous_frames, seed=100 + i), meta, audit_gt_success=bool(i % 2))
    return store


def record_expert_rollouts(
    store,
    tasks: Sequence[str],
    *,
    noise: float,
    seeds: Sequence[int],
    source: str = "autonomous",
    round: int = 1,
    image_size: int = 64,
    instruction_split: str = "train",
    cameras: Sequence[str] = ("front",),
) -> list[str]:
    """Run the scripted expert of each task at `noise` for each seed and append the episodes; returns their ids."""
    from robot_si.data.records import EpisodeMeta
    from robot_si.data.store import IMAGE_PREFIX
    from robot_si.envs import make_env
    from robot_si.envs.experts import make_expert

    episode_ids = []
    for task in tasks:
        env = make_env(task, image_size=image_size, instruction_split=instruction_split, cameras=tuple(cameras))
        image_keys = [IMAGE_PREFIX + camera for camera in cameras]
        try:
            for seed in seeds:
                episode_id = f"{source}-{task}-noise{noise:g}-{instruction_split}-seed{seed}"
                if episode_id in store:
                    episode_ids.append(episode_id)
                    continue
                expert = make_expert(task, noise=noise, seed=seed)
                observation, info = env.reset(seed=seed)
                expert.reset()
                images, states, actions = {key: [] for key in image_keys}, [], []
                while True:
                    action = np.asarray(expert.act(env), dtype=np.float32)
                    for key in image_keys:
                        images[key].append(observation[key])
                    states.append(observation["observation.state"])
                    actions.append(action)
                    observation, _, terminated, truncated, info = env.step(action)
                    if terminated or truncated:
                        break
                meta = EpisodeMeta(
                    episode_id=episode_id, source=source, round=round, policy_version=f"expert-noise{noise:g}",
                    task_name=task, instruction=env.unwrapped.instruction, seed=int(seed), num_frames=len(actions),
                )
                frames = {
                    **{key: np.stack(frames) for key, frames in images.items()},
                    "observation.state": np.stack(states).astype(np.float32),
                    "action": np.stack(actions),
                }
                terminal = {**{key: observation[key] for key in image_keys},
                            "observation.state": np.asarray(observation["observation.state"], np.float32)}
                store.append_episode(frames, meta, audit_gt_success=bool(info["is_success"]), terminal=terminal)
                episode_ids.append(episode_id)
        finally:
            env.close()
    return episode_ids
