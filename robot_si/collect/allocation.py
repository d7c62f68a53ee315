"""Where a round's collection budget goes: more episodes for the tasks the policy still fails.

A round collects `episodes_per_task x len(tasks)` episodes. With `collect.allocation: weak_tasks` the loop splits
them by how often the previous round's episodes of each task succeeded, as its *labels* say (the final label
version: human/oracle labels where they were given, the detector's calibrated probability elsewhere), never by
ground truth. A task the policy already solves yields successes it has already learned from; a weak task yields
few, and those are the ones a round can learn most from (bench/NOTES_improve.md, 2026-12-04: the oracle arm's
accepted episodes were mostly reach, 10-20 a round for push and for button).

Pure functions: `task_success_estimates` reads a label set, `allocate_episodes` turns estimates into counts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

BUDGETED_SOURCES = ("human", "oracle")


def task_success_estimates(label_set, episode_tasks: Mapping[str, str]) -> dict[str, float | None]:
    """Mean success per task over `episode_tasks` (episode id -> task) as a label set states it.

    A human/oracle label counts as 0 or 1, any other episode as its detector probability; episodes the label set
    does not cover, or covers without a probability, are skipped. A task with no such episode maps to None.
    """
    sums: dict[str, list[float]] = {task: [] for task in episode_tasks.values()}
    for episode_id, task in episode_tasks.items():
        label = label_set.episode_labels.get(episode_id)
        if label is None:
            continue
        if label.label_source in BUDGETED_SOURCES and label.label is not None:
            sums[task].append(1.0 if label.label else 0.0)
        elif label.success_prob is not None:
            sums[task].append(float(label.success_prob))
    return {task: (sum(values) / len(values) if values else None) for task, values in sums.items()}


def allocate_episodes(tasks: Sequence[str], episodes_per_task: int, estimates: Mapping[str, float | None], *,
                      min_share: float = 0.25) -> dict[str, int]:
    """Split `episodes_per_task * len(tasks)` episodes over `tasks` in proportion to each one's estimated failure
    rate (1 - success), every task keeping at least `min_share` of the uniform count.

    A task without an estimate counts as unknown (failure rate 0.5). When every task is estimated to always
    succeed, the split is uniform. Counts are whole episodes (largest remainders) and sum to the total.
    """
    if isinstance(episodes_per_task, bool) or not isinstance(episodes_per_task, int) or episodes_per_task < 1:
        raise ValueError(f"episodes_per_task must be a positive int (got {episodes_per_task!r})")
    if not 0.0 <= min_share <= 1.0:
        raise ValueError(f"collect.min_task_share must be in [0, 1] (got {min_share})")
    tasks = list(tasks)
    total = episodes_per_task * len(tasks)
    floor = min(episodes_per_task, max(1, math.ceil(min_share * episodes_per_task)))
    need = {}
    for task in tasks:
        estimate = estimates.get(task)
        need[task] = 0.5 if estimate is None else min(max(1.0 - float(estimate), 0.0), 1.0)
    if sum(need.values()) <= 0.0:
        return {task: episodes_per_task for task in tasks}
    rest = total - floor * len(tasks)
    shares = {task: rest * need[task] / sum(need.values()) for task in tasks}
    counts = {task: floor + int(shares[task]) for task in tasks}
    by_remainder = sorted(tasks, key=lambda t: (-(shares[t] - int(shares[t])), tasks.index(t)))
    for task in by_remainder[: total - sum(counts.values())]:
        counts[task] += 1
    return counts
