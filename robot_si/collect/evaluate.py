"""Policy evaluation in simulation: success per task with Wilson 95% intervals (ground truth, sim only).

Uses the same `Collector` as collection, with no exploration noise, on evaluation seeds (>= 10**6, disjoint from
every collection seed; see seeds.py) and, by default, the held-out instruction paraphrases. Episodes are not
written to a store unless one is given (then with ids `eval-<split>-<task>-s<seed>`; keep it apart from training
stores). An episode that ends with an error (NaN action, env fault) counts as a failure.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from robot_si.collect.records import EpisodeRequest, EpisodeResult
from robot_si.collect.rollout import (
    BACKENDS,
    Collector,
    PhaseTimer,
    StoreSink,
    load_policy_from_path,
    open_store,
    policy_version_of,
    validate_episodes,
    validate_tasks,
)
from robot_si.collect.seeds import check_seeds, evaluation_episode_id, evaluation_seed

Z_95 = 1.959963984540054


def wilson_interval(k: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion k/n (95% by default); (0, 1) when n == 0."""
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"wilson_interval needs 0 <= k <= n (got k={k}, n={n})")
    if n == 0:
        return 0.0, 1.0
    p = k / n
    z2 = z * z
    denominator = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half_width = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denominator
    low = 0.0 if k == 0 else max(0.0, centre - half_width)  # exact at the ends (no 0.9999999999999999)
    high = 1.0 if k == n else min(1.0, centre + half_width)
    return low, high


def success_summary(successes: int, n: int, errors: int = 0) -> dict[str, Any]:
    low, high = wilson_interval(successes, n)
    return {"success_rate": successes / n if n else None, "ci_low": low, "ci_high": high, "n": n,
            "successes": successes, "errors": errors}


def evaluation_requests(tasks: Sequence[str], episodes_per_task: int, *, seed: int,
                        instruction_split: str) -> list[EpisodeRequest]:
    requests = []
    for task in tasks:
        for index in range(episodes_per_task):
            episode_seed = evaluation_seed(seed, task, index)
            requests.append(EpisodeRequest(
                episode_id=evaluation_episode_id(task=task, seed=episode_seed, instruction_split=instruction_split),
                task=task, seed=episode_seed, round=0,
            ))
    check_seeds([r.seed for r in requests], purpose="eval")
    return requests


def evaluate(
    policy,
    tasks: Sequence[str],
    episodes_per_task: int,
    *,
    seed: int = 0,
    instruction_split: str = "heldout",
    num_envs: int = 4,
    image_size: int = 64,
    max_episode_steps: int | None = None,
    policy_version: str | None = None,
    out: str | os.PathLike[str] | None = None,
    store=None,
    backend: str = "local",
    progress: bool = True,
    ray_options: dict[str, Any] | None = None,
    env_factory: Callable[..., Any] | None = None,
) -> dict[str, Any]:
    """Evaluate `policy` (object or checkpoint dir): overall and per-task {success_rate, ci_low, ci_high, n}.

    Seeds come from the evaluation range (seeds.py), so no evaluated initial state was ever collected.
    `out` writes the result as JSON. `store` (optional) also writes the episodes.
    """
    tasks = validate_tasks(tasks)
    validate_episodes(episodes_per_task)
    if instruction_split not in ("train", "heldout"):
        raise ValueError(f"instruction_split={instruction_split!r}; use 'heldout' (paraphrases never trained on) "
                         "or 'train'")
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r}; use one of {BACKENDS}")
    version = policy_version or policy_version_of(policy)
    if isinstance(policy, (str, os.PathLike)):
        policy = load_policy_from_path(policy)
    requests = evaluation_requests(tasks, episodes_per_task, seed=seed, instruction_split=instruction_split)

    results: list[EpisodeResult] = []
    timer = PhaseTimer()
    sink = StoreSink(open_store(store, image_size=image_size), writer="thread", timer=timer) if store is not None else None

    def on_episode(result: EpisodeResult) -> None:
        if sink is not None:
            sink(result)
        result.frames = None  # evaluation keeps only the outcome
        results.append(result)

    start = time.perf_counter()
    try:
        if backend == "local":
            with Collector(num_envs=num_envs, image_size=image_size, instruction_split=instruction_split,
                           exploration_std=0.0, max_episode_steps=max_episode_steps, env_factory=env_factory,
                           progress=progress, progress_desc=f"eval ({instruction_split})") as collector:
                metrics = collector.run(policy, requests, on_episode=on_episode, policy_version=version,
                                        keep_frames=sink is not None, timer=timer)
        else:
            from robot_si.collect.ray_backend import RayCollector

            with RayCollector(num_envs_per_worker=num_envs, image_size=image_size,
                              instruction_split=instruction_split, exploration_std=0.0,
                              max_episode_steps=max_episode_steps, env_factory=env_factory, progress=progress,
                              **dict(ray_options or {})) as collector:
                metrics = collector.run(policy, requests, on_episode=on_episode, policy_version=version,
                                        keep_frames=sink is not None, timer=timer)
    finally:
        if sink is not None:
            sink.close()

    by_task: dict[str, list[EpisodeResult]] = {task: [] for task in tasks}
    for result in results:
        by_task[result.task].append(result)
    per_task = {}
    for task, task_results in by_task.items():
        # ground truth (sim only): an errored episode is a failure
        successes = sum(1 for r in task_results if r.error is None and r.success)
        errors = sum(1 for r in task_results if r.error is not None)
        per_task[task] = success_summary(successes, len(task_results), errors)
    overall = success_summary(sum(t["successes"] for t in per_task.values()),
                              sum(t["n"] for t in per_task.values()),
                              sum(t["errors"] for t in per_task.values()))
    report = {
        "overall": overall,
        "per_task": per_task,
        "policy_version": version,
        "instruction_split": instruction_split,
        "seed": seed,
        "episodes_per_task": episodes_per_task,
        "confidence": 0.95,
        "interval": "wilson",
        "wall_s": round(time.perf_counter() - start, 3),
        "collector": {k: v for k, v in metrics.items() if k not in ("per_task",)},
        "episodes": [r.summary() for r in sorted(results, key=lambda r: (tasks.index(r.task), r.seed))],
    }
    if out is not None:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(report, indent=2))
        os.replace(tmp, path)
    return report
