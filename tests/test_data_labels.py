"""Label tables: versions are new directories, never overwrite raw data or older versions."""

from __future__ import annotations

import numpy as np
import pytest

from robot_si.data import EpisodeLabel, EpisodeStore, list_label_versions, read_label_set, write_label_set
from robot_si.data.synthetic import synthetic_episode, synthetic_meta


@pytest.fixture()
def store(tmp_path):
    store = EpisodeStore.create(tmp_path / "store", fps=10, image_size=16, state_dim=8, action_dim=4)
    for i, length in enumerate((4, 6)):
        store.append_episode(synthetic_episode(length, image_size=16, seed=i), synthetic_meta(f"e{i}", length, source="autonomous"))
    return store


def label(episode_id, prob, value, source="detector"):
    return EpisodeLabel(episode_id=episode_id, success_prob=prob, label=value, label_source=source, detector_version="det-1")


def test_versions_auto_increment_and_never_change(store):
    raw_before = {m.episode_id: store.load_episode(m.episode_id) for m in store.episodes()}
    v1 = write_label_set(
        store.root,
        episode_labels=[label("e0", 0.9, True), label("e1", 0.2, False)],
        frame_labels={"e0": {"weight": np.ones(4), "advantage": np.linspace(0, 1, 4), "advantage_indicator": np.array([0, 1, 1, 1])},
                      "e1": {"weight": np.zeros(6)}},
        detector_version="det-1",
        note="first",
    )
    v2 = write_label_set(store.root, episode_labels=[label("e1", None, True, source="human")], frame_labels={"e1": {"weight": np.full(6, 2.0)}},
                         detector_version="det-2", note="relabel")
    assert (v1, v2) == ("v0001", "v0002") and list_label_versions(store.root) == ["v0001", "v0002"]
    old = read_label_set(store.root, "v0001")
    assert old.episode_labels["e0"].success_prob == pytest.approx(0.9) and old.episode_labels["e1"].label is False
    np.testing.assert_array_equal(old.frame_labels["e0"]["advantage_indicator"], [0, 1, 1, 1])
    np.testing.assert_allclose(old.frame_labels["e0"]["advantage"], np.linspace(0, 1, 4))
    assert set(old.frame_labels["e1"]) == {"weight"}  # fields an episode lacks are not invented
    latest = read_label_set(store.root)
    assert latest.version == "v0002" and latest.episode_labels["e1"].label_source == "human" and "e0" not in latest.episode_labels
    np.testing.assert_array_equal(latest.frame_labels["e1"]["weight"], np.full(6, 2.0, np.float32))
    for episode_id, frames in raw_before.items():
        for key, array in store.load_episode(episode_id).items():
            np.testing.assert_array_equal(array, frames[key])
    with pytest.raises(FileExistsError, match="never overwritten"):
        write_label_set(store.root, version="v0001", episode_labels=[], detector_version="x")
    assert read_label_set(store.root, "v0001").note == "first"


def test_bad_labels_are_refused(store):
    with pytest.raises(ValueError, match=r"shape \(3,\).*must be \(4,\)"):
        write_label_set(store.root, episode_labels=[], frame_labels={"e0": {"weight": np.ones(3)}}, detector_version="d")
    with pytest.raises(ValueError, match="not in the store"):
        write_label_set(store.root, episode_labels=[label("nope", 0.5, None)], detector_version="d")
    with pytest.raises(ValueError, match="label_source"):
        label("e0", 0.5, True, source="gt")
    with pytest.raises(FileNotFoundError, match="no label versions under"):
        read_label_set(store.root, "v0042")
    assert list_label_versions(store.root) == []
