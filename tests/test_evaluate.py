"""Evaluation: Wilson intervals, held-out seeds disjoint from collection seeds, held-out paraphrases, JSON out."""

from __future__ import annotations

import json
import re

import pytest

from robot_si.collect import evaluate, wilson_interval
from robot_si.collect.evaluate import evaluation_requests
from robot_si.collect.rollout import collection_requests
from robot_si.collect.seeds import (
    COLLECTION_SEED_LIMIT,
    EVAL_SEED_START,
    check_seeds,
    collection_seed,
    evaluation_seed,
)
from robot_si.collect.testing import tiny_compact_vla
from robot_si.envs import get_task_spec, list_tasks


def test_wilson_interval_matches_known_values():
    low, high = wilson_interval(5, 10)
    assert low == pytest.approx(0.2366, abs=1e-4) and high == pytest.approx(0.7634, abs=1e-4)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(0, 10)[1] == pytest.approx(0.2775, abs=1e-4)
    assert wilson_interval(10, 10)[1] == 1.0 and wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_evaluation_seeds_are_disjoint_from_collection_seeds():
    tasks = list_tasks()
    collected = {collection_seed(base, task, i, round=r) for base in (0, 1, 7) for r in (0, 1, 2) for task in tasks
                 for i in range(50)}
    evaluated = {evaluation_seed(base, task, i) for base in (0, 1, 7) for task in tasks for i in range(50)}
    assert max(collected) < COLLECTION_SEED_LIMIT <= EVAL_SEED_START <= min(evaluated)
    assert collected.isdisjoint(evaluated)
    # same arguments, same seeds; a task's seeds do not depend on the other tasks in the run
    assert [r.seed for r in collection_requests(["push"], 3, seed=0, round=1)] == \
        [r.seed for r in collection_requests(["reach", "push"], 3, seed=0, round=1)][3:]
    assert len({r.seed for r in evaluation_requests(["reach"], 500, seed=0, instruction_split="heldout")}) == 500
    with pytest.raises(ValueError, match="disjoint"):
        check_seeds([5, EVAL_SEED_START + 1], purpose="eval")
    with pytest.raises(ValueError, match="disjoint"):
        check_seeds([EVAL_SEED_START], purpose="collect")


def _template_regex(template: str) -> re.Pattern:
    return re.compile("^" + re.sub(r"\\\{[a-z_]+\\\}", ".+", re.escape(template)) + "$")


def test_evaluate_reports_success_with_intervals_on_heldout_paraphrases(tmp_path):
    out = tmp_path / "eval.json"
    report = evaluate(tiny_compact_vla(), ["reach", "button"], 2, seed=0, instruction_split="heldout", num_envs=2,
                      image_size=64, max_episode_steps=5, out=out, progress=False, policy_version="v-eval")
    assert json.loads(out.read_text())["overall"] == report["overall"]
    assert report["overall"]["n"] == 4 and set(report["per_task"]) == {"reach", "button"}
    for summary in [report["overall"], *report["per_task"].values()]:
        assert {"success_rate", "ci_low", "ci_high", "n"} <= set(summary)
        assert 0.0 <= summary["ci_low"] <= summary["success_rate"] <= summary["ci_high"] <= 1.0
    for episode in report["episodes"]:
        assert episode["seed"] >= EVAL_SEED_START and episode["policy_version"] == "v-eval"
        heldout = [_template_regex(t) for t in get_task_spec(episode["task"]).heldout_instructions]
        assert any(p.match(episode["instruction"]) for p in heldout), episode["instruction"]


def test_evaluate_refuses_bad_arguments():
    with pytest.raises(ValueError, match="instruction_split"):
        evaluate(tiny_compact_vla(), ["reach"], 1, instruction_split="test")
    with pytest.raises(ValueError, match="episodes_per_task"):
        evaluate(tiny_compact_vla(), ["reach"], -1)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        evaluate("/nonexistent/policy", ["reach"], 1)
