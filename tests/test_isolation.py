"""Isolation: labels never depend on ground truth, except through the budgeted oracle.

Label a store; label copies whose audit ground truth is deleted or flipped with the same detector and progress
model: detector-only labels (and the weights derived from them) must be bit-identical. With the oracle, only
the episodes it was asked about (at most the budget) may differ.
"""

import json
import shutil

import numpy as np
import pytest

from robot_si.data import EpisodeStore, read_label_set
from robot_si.verify import (
    DetectorConfig,
    OracleLabelSource,
    ProgressConfig,
    ProgressModel,
    SuccessDetector,
    label_store,
)
from robot_si.verify.features import HashingEncoders
from robot_si.verify.testing import synthetic_verifier_store
from robot_si.weight import compute_weights
from robot_si.weight.base import EpisodeEvidence


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp("isolation")
    store = synthetic_verifier_store(base / "original", num_demos=4, num_autonomous=6)
    encoders = HashingEncoders()
    detector = SuccessDetector(DetectorConfig(encoder="hashing", epochs=3, hidden_dim=32, num_heads=2), encoders=encoders)
    detector.fit_stores([store])
    progress = ProgressModel(ProgressConfig(encoder="hashing", epochs=3, hidden_dim=32), encoders=encoders)
    progress.fit_stores([store])
    # copies made before any labeling, so every copy starts from the same raw episodes
    without_truth = shutil.copytree(base / "original", base / "without_truth")
    for audit_file in without_truth.glob("shards/*/robot_si/audit.jsonl"):
        audit_file.unlink()
    flipped = shutil.copytree(base / "original", base / "flipped")
    for audit_file in flipped.glob("shards/*/robot_si/audit.jsonl"):
        rows = [json.loads(line) for line in audit_file.read_text().splitlines() if line]
        for row in rows:
            row["audit.gt_success"] = not row["audit.gt_success"]
        audit_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    stores = {name: EpisodeStore(base / name) for name in ("original", "without_truth", "flipped")}
    assert set(stores["without_truth"].audit_table().values()) == {None}
    original_truth = stores["original"].audit_table()
    assert all(stores["flipped"].audit_table()[e] is (not v) for e, v in original_truth.items())
    return detector, progress, stores


def _labels_and_weights(store, version):
    label_set = read_label_set(store.root, version)
    episode = {e: (l.success_prob, l.label, l.label_source, l.detector_version) for e, l in label_set.episode_labels.items()}
    evidence = {
        e: EpisodeEvidence(episode_id=e, accepted=bool(l.label), success_prob=l.success_prob,
                           advantage=label_set.frame_field(e, "advantage"))
        for e, l in label_set.episode_labels.items()
    }
    weights = compute_weights("awr", evidence, {"beta": 0.1, "w_max": 20.0}).frame_weights
    return episode, label_set.frame_labels, weights


def test_detector_labels_and_weights_are_identical_without_or_with_flipped_ground_truth(trained, monkeypatch):
    detector, progress, stores = trained
    # any read of ground truth while labeling without an oracle is a bug: make it fail loudly
    monkeypatch.setattr(EpisodeStore, "audit_table", lambda self: pytest.fail("label_store read ground truth"))
    results = {name: _labels_and_weights(store, label_store(store, detector, progress, version="iso"))
               for name, store in stores.items()}
    monkeypatch.undo()
    reference_episode, reference_frames, reference_weights = results["original"]
    assert len(reference_episode) == 10 and all(l[2] == "detector" for l in reference_episode.values())
    for name in ("without_truth", "flipped"):
        episode, frames, weights = results[name]
        assert episode == reference_episode, name
        assert frames.keys() == reference_frames.keys()
        for episode_id, fields in reference_frames.items():
            assert fields.keys() == frames[episode_id].keys() == {"progress", "value", "advantage"}
            for field, values in fields.items():
                np.testing.assert_array_equal(frames[episode_id][field], values)
            np.testing.assert_array_equal(weights[episode_id], reference_weights[episode_id])


def test_with_the_oracle_only_the_budgeted_episodes_depend_on_ground_truth(trained):
    detector, progress, stores = trained
    asked, labels = {}, {}
    for name in ("original", "flipped"):
        source = OracleLabelSource(budget=2)
        version = label_store(stores[name], detector, progress, label_source=source, version="oracle", round=1)
        assert source.spent == 2
        asked[name] = source.asked
        labels[name] = read_label_set(stores[name].root, version).episode_labels
    assert asked["original"] == asked["flipped"]  # what to ask depends on the detector only
    truth = stores["original"].audit_table()
    for episode_id, label in labels["original"].items():
        other = labels["flipped"][episode_id]
        if episode_id in asked["original"]:
            assert label.label_source == other.label_source == "oracle"
            assert label.label is truth[episode_id] and other.label is (not truth[episode_id])
        else:
            assert (label.label, label.label_source, label.success_prob) == (other.label, other.label_source, other.success_prob)
