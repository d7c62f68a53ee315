"""Seed scheduling and episode ids: every rollout is named by numbers a rerun can recompute.

Scheme (binding for every caller, so collection and evaluation never share an initial state):
  - collection seeds lie in [0, COLLECTION_SEED_LIMIT) = [0, 10**6);
  - evaluation seeds lie in [EVAL_SEED_START, SEED_MAX] = [10**6, 2**31 - 1].
  - Within a range, the i-th episode of a task gets `start(base_seed, round, task) + i` (wrapping inside the
    range), where `start` is a stable hash (blake2b, not Python's salted `hash`). So the seeds of one task are
    distinct for up to 10**6 episodes, do not depend on which other tasks are in the run or their order, and
    episode i keeps its seed when a rerun asks for more episodes.
  - Episode ids are `auto-r<round>-<task>-s<seed>` (collection) and `eval-<split>-<task>-s<seed>` (evaluation):
    a rerun with the same arguments computes the same ids and skips the ones already in the store.
"""

from __future__ import annotations

import hashlib

COLLECTION_SEED_LIMIT = 10**6  # collection seeds are < this
EVAL_SEED_START = 10**6  # evaluation seeds are >= this
SEED_MAX = 2**31 - 1  # numpy / gymnasium accept any non-negative int; keep seeds in int32 for portability
_EVAL_RANGE = SEED_MAX + 1 - EVAL_SEED_START


def _stable_hash(*parts: object) -> int:
    digest = hashlib.blake2b("/".join(str(p) for p in parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _check_index(index: int) -> None:
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < COLLECTION_SEED_LIMIT:
        raise ValueError(f"episode index {index!r} must be an int in [0, {COLLECTION_SEED_LIMIT})")


def _check_base_seed(base_seed: int) -> None:
    if isinstance(base_seed, bool) or not isinstance(base_seed, int) or base_seed < 0:
        raise ValueError(f"seed={base_seed!r} must be a non-negative int")


def collection_seed(base_seed: int, task: str, index: int, *, round: int = 0) -> int:
    """Env seed of the `index`-th collection episode of `task` (always < COLLECTION_SEED_LIMIT)."""
    _check_base_seed(base_seed)
    _check_index(index)
    start = _stable_hash("collect", base_seed, round, task) % COLLECTION_SEED_LIMIT
    return (start + index) % COLLECTION_SEED_LIMIT


def evaluation_seed(base_seed: int, task: str, index: int) -> int:
    """Env seed of the `index`-th evaluation episode of `task` (always >= EVAL_SEED_START)."""
    _check_base_seed(base_seed)
    _check_index(index)
    start = _stable_hash("eval", base_seed, task) % _EVAL_RANGE
    return EVAL_SEED_START + (start + index) % _EVAL_RANGE


def is_collection_seed(seed: int) -> bool:
    return 0 <= seed < COLLECTION_SEED_LIMIT


def is_evaluation_seed(seed: int) -> bool:
    return EVAL_SEED_START <= seed <= SEED_MAX


def check_seeds(seeds, *, purpose: str) -> None:
    """Refuse seeds outside the range reserved for `purpose` ("collect" or "eval")."""
    if purpose not in ("collect", "eval"):
        raise ValueError(f"purpose={purpose!r}; use 'collect' or 'eval'")
    inside = is_collection_seed if purpose == "collect" else is_evaluation_seed
    bad = sorted({int(s) for s in seeds if not inside(int(s))})
    if bad:
        allowed = (f"[0, {COLLECTION_SEED_LIMIT})" if purpose == "collect"
                   else f"[{EVAL_SEED_START}, {SEED_MAX}]")
        raise ValueError(
            f"{purpose} seeds {bad[:5]}{'...' if len(bad) > 5 else ''} are outside {allowed}: collection and "
            "evaluation seeds come from disjoint ranges so a policy is never evaluated on the initial states it "
            "was trained on. Use robot_si.collect.seeds.collection_seed / evaluation_seed."
        )


def collection_episode_id(*, round: int, task: str, seed: int) -> str:
    return f"auto-r{round}-{task}-s{seed}"


def evaluation_episode_id(*, task: str, seed: int, instruction_split: str = "heldout") -> str:
    return f"eval-{instruction_split}-{task}-s{seed}"
