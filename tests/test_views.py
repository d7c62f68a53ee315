"""TrainingView: action chunks with padding, label weights, mixing ratios, DataLoader batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robot_si.data import EpisodeStore, write_label_set
from robot_si.data.synthetic import synthetic_episode, synthetic_meta
from robot_si.data.views import TrainingView


@pytest.fixture()
def stores(tmp_path):
    demos = EpisodeStore.create(tmp_path / "demos", fps=10, image_size=16, state_dim=8, action_dim=4)
    auto = EpisodeStore.create(tmp_path / "auto", fps=10, image_size=16, state_dim=8, action_dim=4)
    demos.append_episode(synthetic_episode(5, image_size=16, seed=0), synthetic_meta("d0", 5, source="demo"))
    for i in range(3):
        auto.append_episode(synthetic_episode(4, image_size=16, seed=10 + i), synthetic_meta(f"a{i}", 4, source="autonomous", round=1))
    return demos, auto


def test_chunks_padding_and_item_format(stores):
    demos, _ = stores
    view = TrainingView([demos], horizon=3)
    actions = demos.load_episode("d0")["action"]
    item = view[3]  # frame 3 of 5: steps 3, 4, then one padded step repeating the last action
    assert item["observation.images.front"].shape == (3, 16, 16) and item["observation.images.front"].dtype == torch.float32
    assert 0.0 <= float(item["observation.images.front"].min()) and float(item["observation.images.front"].max()) <= 1.0
    np.testing.assert_array_equal(item["action"].numpy(), actions[[3, 4, 4]])
    assert item["action_is_pad"].tolist() == [False, False, True]
    assert item["task"] == "reach the red cube" and item["episode_id"] == "d0" and item["frame_index"] == 3
    assert float(item["weight"]) == 1.0 and int(item["advantage_indicator"]) == 1  # a demo is "good"
    np.testing.assert_array_equal(item["observation.state"].numpy(), demos.load_episode("d0")["observation.state"][3])


def test_advantage_indicator_is_the_intended_outcome_until_labelled(stores):
    """Advantage conditioning asks for "good" at inference, so the demos-only round 0 must train that token."""
    demos, auto = stores
    demos.append_episode(synthetic_episode(3, image_size=16, seed=5), synthetic_meta("n0", 3, source="near_miss"))
    view = TrainingView([demos, auto], horizon=2, sources=["demo", "near_miss", "autonomous"])
    indicators = {}
    for i in range(len(view)):
        item = view[i]
        indicators.setdefault(item["episode_id"], set()).add(int(item["advantage_indicator"]))
    assert indicators == {"d0": {1}, "n0": {0}, "a0": {-1}, "a1": {-1}, "a2": {-1}}


def test_label_weights_min_weight_and_mix(stores):
    demos, auto = stores
    write_label_set(
        auto.root, episode_labels=[],
        frame_labels={"a0": {"weight": np.array([0.0, 0.5, 1.0, 2.0]), "advantage_indicator": np.array([0, 0, 1, 1])},
                      "a1": {"weight": np.zeros(4)}},
        detector_version="d",
    )
    view = TrainingView([demos, auto], horizon=2, label_version="latest", mix={"demo": 0.5, "autonomous": 0.5})
    # d0: 5 frames at weight 1; a0: 3 frames with weight > 0; a1: all zero (dropped); a2: unlabelled -> 1.0
    assert len(view) == 5 + 3 + 4 and view.label_versions == [None, "v0001"]
    by_episode = {}
    for item in (view[i] for i in range(len(view))):
        by_episode.setdefault(item["episode_id"], []).append((item["frame_index"], float(item["weight"]), int(item["advantage_indicator"]), item["dataset_index"]))
    assert by_episode["a0"] == [(1, 0.5, 0, 1), (2, 1.0, 1, 1), (3, 2.0, 1, 1)] and "a1" not in by_episode
    probabilities = view.sample_weights()
    is_demo = np.array([view[i]["episode_id"] == "d0" for i in range(len(view))])
    assert probabilities.sum() == pytest.approx(1.0) and probabilities[is_demo].sum() == pytest.approx(0.5)
    loader = torch.utils.data.DataLoader(view, batch_size=4, sampler=view.make_sampler(200, torch.Generator().manual_seed(0)))
    batches = list(loader)
    assert batches[0]["action"].shape == (4, 2, 4) and batches[0]["action_is_pad"].dtype == torch.bool
    drawn_demo = sum(ep == "d0" for b in batches for ep in b["episode_id"])
    assert 60 < drawn_demo < 140  # ~50% of 200
    by_store = TrainingView([demos, auto], horizon=1, mix={"store0": 1, str(auto.root): 3}).sample_weights()
    assert len(by_store) == 17 and by_store[5:].sum() == pytest.approx(0.75)  # no labels: every frame kept
    with pytest.raises(ValueError, match="no ratio for \\['autonomous'\\]"):
        TrainingView([demos, auto], horizon=1, mix={"demo": 1.0})
    with pytest.raises(ValueError, match="in none of the stores"):
        TrainingView([demos], horizon=1, label_version="v0009")


def test_balance_tasks_gives_every_task_the_same_share_within_each_mix_group(tmp_path):
    demos = EpisodeStore.create(tmp_path / "demos", fps=10, image_size=16, state_dim=8, action_dim=4)
    auto = EpisodeStore.create(tmp_path / "auto", fps=10, image_size=16, state_dim=8, action_dim=4)
    for i, task in enumerate(["reach", "push"]):
        demos.append_episode(synthetic_episode(5, image_size=16, seed=i), synthetic_meta(f"d{i}", 5, task_name=task))
    # the policy solves reach far more often: 4 accepted reach episodes of 6 frames against 1 push episode of 3
    for i in range(4):
        auto.append_episode(synthetic_episode(6, image_size=16, seed=10 + i),
                            synthetic_meta(f"r{i}", 6, source="autonomous", round=1, task_name="reach"))
    auto.append_episode(synthetic_episode(3, image_size=16, seed=20), synthetic_meta("p0", 3, source="autonomous", round=1, task_name="push"))

    task_of = {"d0": "reach", "d1": "push", "p0": "push", **{f"r{i}": "reach" for i in range(4)}}

    def shares(view):  # sampling probability summed per (store, task)
        cells: dict[tuple[int, str], float] = {}
        for i, probability in enumerate(view.sample_weights()):
            item = view[i]
            key = (item["dataset_index"], task_of[item["episode_id"]])
            cells[key] = cells.get(key, 0.0) + probability
        return cells

    natural = TrainingView([demos, auto], horizon=1)
    assert not natural.weighted_sampling and shares(natural)[(1, "reach")] == pytest.approx(24 / 37)
    balanced = TrainingView([demos, auto], horizon=1, balance_tasks=True)  # no mix: one group, each task half
    assert balanced.weighted_sampling
    assert shares(balanced) == {(0, "reach"): pytest.approx(0.5 * 5 / 29), (0, "push"): pytest.approx(0.5 * 5 / 8),
                                (1, "reach"): pytest.approx(0.5 * 24 / 29), (1, "push"): pytest.approx(0.5 * 3 / 8)}
    mixed = TrainingView([demos, auto], horizon=1, mix={"demo": 0.5, "autonomous": 0.5}, balance_tasks=True)
    assert shares(mixed) == {(0, "reach"): pytest.approx(0.25), (0, "push"): pytest.approx(0.25),
                             (1, "reach"): pytest.approx(0.25), (1, "push"): pytest.approx(0.25)}


def test_episodes_with_a_collection_error_are_skipped(stores):
    import dataclasses

    _, auto = stores
    # what the collector stores when the policy faults: the frames so far, with the error on record
    meta = dataclasses.replace(synthetic_meta("a_err", 4, source="autonomous", round=1),
                               error="policy returned a non-finite action (NaN/inf) at step 4")
    auto.append_episode(synthetic_episode(4, image_size=16, seed=99), meta, audit_gt_success=False)
    view = TrainingView([auto], horizon=2)
    assert len(view) == 3 * 4 and view.num_episodes == 3
    assert "a_err" not in {view[i]["episode_id"] for i in range(len(view))}
    assert view.skipped_episodes == {"a_err": meta.error}
