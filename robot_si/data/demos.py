"""Record scripted-expert demonstrations from `robot_si.envs` into an episode store (resumable).

Owns the demo recording loop only: reset env and expert with a seed, step until the env terminates or
truncates, and hand each finished episode to the store's background writer (so rendering the next episode
overlaps writing the last). The env's `info["is_success"]` goes only into the store's audit field.
Episode ids are derived from task, noise, action noise and seed, so rerunning the same call skips what is stored.

`action_noise` records DART-style demos (Laskey et al. 2017): the env executes the expert's action plus Gaussian
noise, but the stored action is the expert's clean action at the state it actually reached. The episodes then
show states off the expert's path together with how the expert gets back, which is what a cloned policy needs
when its own small errors take it there.

`near_miss=True` records the demonstrator's deliberate failures instead (`robot_si.envs.experts`: a clean motion
aimed a few cm beside the target), stored with source "near_miss". They are labelled by intent, never by the
simulator: the success detector and progress model read them as failures, and behaviour cloning skips them
(`TrainingView`). Measured: 0 of 20-40 per task succeeded by accident, except push (2 of 40: the approach knocked
the block into the zone), so they carry about as much label noise as the demos themselves.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from tqdm.auto import tqdm

from robot_si.data.records import EpisodeMeta
from robot_si.data.store import ACTION_KEY, IMAGE_PREFIX, STATE_KEY, EpisodeStore

EXPERT_POLICY_VERSION = "scripted-expert"


def demo_episode_id(task: str, *, noise: float, seed: int, action_noise: float = 0.0, near_miss: bool = False) -> str:
    dart = f"-dart{action_noise:g}" if action_noise else ""
    kind = "nearmiss" if near_miss else "demo"
    return f"{kind}-{task}-noise{noise:g}{dart}-seed{seed}"


def record_demos(
    tasks: Sequence[str],
    *,
    episodes_per_task: int,
    root: str | os.PathLike[str],
    noise: float = 0.0,
    seed: int = 0,
    image_size: int = 64,
    round: int = 0,
    cameras: Sequence[str] = ("front",),
    progress: bool = True,
    action_noise: float = 0.0,
    near_miss: bool = False,
) -> list[EpisodeMeta]:
    """Record `episodes_per_task` expert episodes per task (env/expert seed = seed + i); returns their metadata.

    `noise` degrades the expert itself (robot_si.envs.experts: what it does and what is stored). `action_noise`
    (std, in action units) perturbs only what the env executes; the stored action stays the expert's clean one
    (DART). `near_miss` records deliberate failures (source "near_miss", see the module docstring). Episodes
    already in the store (same kind, task, noise, action noise and seed) are skipped and returned as stored.
    """
    from robot_si.envs import ACTION_DIM, STATE_DIM, list_tasks, make_env
    from robot_si.envs.experts import make_expert

    if isinstance(tasks, str):
        tasks = [tasks]
    if not tasks:
        raise ValueError(f"give at least one task; known tasks: {list_tasks()}")
    unknown = [t for t in tasks if t not in list_tasks()]
    if unknown:
        raise ValueError(f"unknown tasks {unknown}; known tasks: {list_tasks()}")
    if isinstance(episodes_per_task, bool) or not isinstance(episodes_per_task, int) or episodes_per_task < 1:
        raise ValueError(f"episodes_per_task must be a positive int (got {episodes_per_task!r})")
    if isinstance(action_noise, bool) or not isinstance(action_noise, (int, float)) or not 0.0 <= action_noise <= 1.0:
        raise ValueError(f"action_noise must be a number in [0, 1] (got {action_noise!r}); 0 records clean demos")

    fps = None
    store: EpisodeStore | None = None
    requested = [(task, seed + i) for task in tasks for i in range(episodes_per_task)]
    envs: dict[str, object] = {}
    try:
        for task in tasks:
            envs[task] = make_env(task, image_size=image_size, cameras=tuple(cameras))
        fps = int(next(iter(envs.values())).metadata["render_fps"])
        store = EpisodeStore.open_or_create(
            root, fps=fps, image_size=image_size, cameras=tuple(cameras), state_dim=STATE_DIM, action_dim=ACTION_DIM
        )
        def episode_id(task: str, episode_seed: int) -> str:
            return demo_episode_id(task, noise=noise, seed=episode_seed, action_noise=action_noise, near_miss=near_miss)

        source = "near_miss" if near_miss else "demo"
        todo = [(task, s) for task, s in requested if episode_id(task, s) not in store]
        bar = tqdm(total=len(requested), initial=len(requested) - len(todo), desc="demos", unit="ep", disable=not progress)
        with store.writer() as writer:
            for task, episode_seed in todo:
                env = envs[task]
                frames, meta, success, terminal = _run_expert_episode(
                    env, make_expert(task, noise=noise, seed=episode_seed, near_miss=near_miss), task=task,
                    seed=episode_seed, episode_id=episode_id(task, episode_seed), round=round,
                    source=source,
                    image_keys=[IMAGE_PREFIX + c for c in cameras], action_noise=float(action_noise),
                )
                # the bar counts committed (durable) episodes, not merely recorded ones
                writer.submit(frames, meta, audit_gt_success=success, terminal=terminal).add_done_callback(lambda _: bar.update(1))
        bar.close()
    finally:
        for env in envs.values():
            env.close()
    by_id = {m.episode_id: m for m in store.episodes(source=source)}
    return [by_id[episode_id(task, s)] for task, s in requested]


def _run_expert_episode(env, expert, *, task: str, seed: int, episode_id: str, round: int, image_keys: list[str],
                        action_noise: float = 0.0, source: str = "demo"):
    observation, info = env.reset(seed=seed)
    expert.reset()
    # its own generator: the perturbations do not change the env's or the expert's random streams
    perturbation_rng = np.random.default_rng([seed, 0xDA127])
    images: dict[str, list[np.ndarray]] = {key: [] for key in image_keys}
    states, actions = [], []
    success = bool(info.get("is_success", False))
    while True:
        action = np.asarray(expert.act(env), dtype=np.float32)
        for key in image_keys:
            images[key].append(observation[key])
        states.append(observation[STATE_KEY])
        actions.append(action)
        executed = action
        if action_noise > 0:
            executed = action.copy()
            executed[:3] = np.clip(action[:3] + perturbation_rng.normal(0.0, action_noise, 3), -1.0, 1.0)
        observation, _, terminated, truncated, info = env.step(executed)
        success = bool(info["is_success"])
        if terminated or truncated:
            break
    frames = {key: np.stack(values) for key, values in images.items()}
    frames[STATE_KEY] = np.stack(states).astype(np.float32)
    frames[ACTION_KEY] = np.stack(actions)
    terminal = {key: observation[key] for key in image_keys} | {STATE_KEY: np.asarray(observation[STATE_KEY], np.float32)}
    meta = EpisodeMeta(
        episode_id=episode_id,
        source=source,
        round=round,
        policy_version=EXPERT_POLICY_VERSION,
        task_name=task,
        instruction=env.unwrapped.instruction,
        seed=seed,
        num_frames=len(actions),
        error=None,
    )
    return frames, meta, success, terminal
