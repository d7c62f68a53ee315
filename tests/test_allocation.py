"""Collection allocation: a round's episodes go to the tasks its labels say the policy still fails, never by
ground truth; per-task counts reach a real collection run."""

from __future__ import annotations

import pytest

from robot_si.collect.allocation import allocate_episodes, task_success_estimates
from robot_si.collect.rollout import collection_requests
from robot_si.config import compose
from robot_si.data import EpisodeStore, read_label_set
from robot_si.data.labels import EpisodeLabel, write_label_set
from robot_si.improve.loop import Run
from robot_si.improve.stages import collection_plan
from robot_si.verify.testing import synthetic_verifier_store


def test_weak_tasks_get_more_episodes_and_every_task_keeps_its_floor():
    counts = allocate_episodes(["reach", "push", "button"], 60, {"reach": 0.9, "push": 0.3, "button": 0.2}, min_share=0.25)
    assert sum(counts.values()) == 180
    assert counts["reach"] == 15 + round(135 * 0.1 / 1.6)  # floor 15 + its share of the failure rate
    assert counts["button"] > counts["push"] > counts["reach"] >= 15
    # a task with no estimate counts as a coin flip; a policy that solves everything keeps the uniform split
    unknown = allocate_episodes(["reach", "push"], 10, {"reach": 1.0, "push": None}, min_share=0.2)
    assert unknown == {"reach": 2, "push": 18}
    assert allocate_episodes(["reach", "push"], 7, {"reach": 1.0, "push": 1.0}) == {"reach": 7, "push": 7}
    # whole episodes that add up, whatever the shares
    odd = allocate_episodes(["a", "b", "c"], 7, {"a": 0.5, "b": 0.5, "c": 0.5}, min_share=0.0)
    assert sum(odd.values()) == 21 and sorted(odd.values()) == [7, 7, 7]
    with pytest.raises(ValueError, match="min_task_share"):
        allocate_episodes(["a"], 5, {}, min_share=2.0)
    with pytest.raises(ValueError, match="positive int"):
        allocate_episodes(["a"], 0, {})


def test_per_task_counts_make_requests_and_bad_counts_say_what_to_do():
    requests = collection_requests(["reach", "push"], {"reach": 1, "push": 3}, seed=0, round=2)
    assert [r.task for r in requests] == ["reach", "push", "push", "push"]
    assert len({r.seed for r in requests}) == 4
    # the first episodes of a task are the same whatever its count: a rerun with another split skips them
    assert requests[1:] [:1] == collection_requests(["reach", "push"], {"reach": 5, "push": 1}, seed=0, round=2)[5:]
    with pytest.raises(ValueError, match="give a count for exactly"):
        collection_requests(["reach", "push"], {"reach": 2}, seed=0, round=2)
    with pytest.raises(ValueError, match=r"episodes_per_task\['push'\]"):
        collection_requests(["reach", "push"], {"reach": 2, "push": 0}, seed=0, round=2)


def test_the_loop_splits_a_round_by_the_previous_rounds_labels_without_ground_truth(tmp_path, monkeypatch):
    cfg = compose("improve", ["preset=smoke", f"runs_dir={tmp_path}", "tasks=[reach,push]", "collect.episodes_per_task=8",
                              "collect.allocation=weak_tasks", "collect.min_task_share=0.25"])
    run = Run(root=tmp_path / "run", config=cfg)
    store = synthetic_verifier_store(run.autonomous_store, num_demos=2, num_autonomous=8)  # round 1: auto0..7
    tasks = {m.episode_id: m.task_name for m in store.episodes(round=1)}
    labels = []
    for episode_id, task in tasks.items():
        if task == "reach":  # the detector thinks reach mostly works
            labels.append(EpisodeLabel(episode_id=episode_id, success_prob=0.9, label=True, label_source="detector",
                                       detector_version="d"))
        else:  # push: one oracle failure, the rest unsure
            oracle = episode_id == "auto1"
            labels.append(EpisodeLabel(episode_id=episode_id, success_prob=None if oracle else 0.4, label=False,
                                       label_source="oracle" if oracle else "detector", detector_version="d"))
    write_label_set(store.root, version="r001-weights", episode_labels=labels, detector_version="d")
    estimates = task_success_estimates(read_label_set(store.root, "r001-weights"), tasks)
    assert estimates == pytest.approx({"reach": 0.9, "push": (0.0 + 0.4 * 3) / 4})

    monkeypatch.setattr(EpisodeStore, "audit_table", lambda self: pytest.fail("allocation read ground truth"))
    plan = collection_plan(run, cfg, 2)
    assert plan["allocation"] == "weak_tasks" and plan["estimates"] == pytest.approx(estimates)
    assert sum(plan["episodes_per_task"].values()) == 16 and plan["episodes_per_task"]["push"] > plan["episodes_per_task"]["reach"] >= 2
    # round 1 has no labelled round before it, and `uniform` never looks
    assert collection_plan(run, cfg, 1)["episodes_per_task"] == {"reach": 8, "push": 8}
    uniform = compose("improve", ["preset=smoke", f"runs_dir={tmp_path}", "tasks=[reach,push]", "collect.episodes_per_task=8"])
    assert collection_plan(Run(root=run.root, config=uniform), uniform, 2)["episodes_per_task"] == {"reach": 8, "push": 8}
