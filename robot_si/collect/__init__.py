"""robot_si.collect: rollout collection and evaluation with a policy in the loop.

Owns the batched rollout loop (`Collector`, `collect`; rollout.py), the seed scheme and episode ids (seeds.py),
evaluation with Wilson intervals (`evaluate`, `wilson_interval`; evaluate.py), the Ray scale-out with env-worker
actors and a batched inference server (ray_backend.py) and the `collect` / `eval` commands (commands.py).
Writes autonomous episodes to an `EpisodeStore`, copying `info["is_success"]` only into the store's audit field
and into evaluation metrics. Does not train, label or weight anything, and never reads the store's audit table.

Public API:
    Collector(*, num_envs, image_size, instruction_split, exploration_std, ...).run(policy, requests, ...) -> dict
    collect(policy, tasks, episodes_per_task, *, store, round, seed, ...) -> dict
    evaluate(policy, tasks, episodes_per_task, *, seed, instruction_split, num_envs, image_size, ...) -> dict
    wilson_interval(k, n, z=1.96) -> (low, high)
    collection_seed / evaluation_seed / check_seeds (seeds.py); RayCollector, InferenceServer (ray_backend.py)
"""

from robot_si.collect.evaluate import evaluate, wilson_interval
from robot_si.collect.records import EpisodeRequest, EpisodeResult
from robot_si.collect.rollout import Collector, PhaseTimer, collect
from robot_si.collect.seeds import (
    COLLECTION_SEED_LIMIT,
    EVAL_SEED_START,
    check_seeds,
    collection_episode_id,
    collection_seed,
    evaluation_seed,
)

__all__ = [
    "COLLECTION_SEED_LIMIT",
    "EVAL_SEED_START",
    "Collector",
    "EpisodeRequest",
    "EpisodeResult",
    "PhaseTimer",
    "check_seeds",
    "collect",
    "collection_episode_id",
    "collection_seed",
    "evaluate",
    "evaluation_seed",
    "wilson_interval",
]
