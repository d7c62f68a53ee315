"""robomimic HDF5: layout, masks from labels (never ground truth by default), export -> import round trip."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from robot_si.data import EpisodeLabel, EpisodeStore, write_label_set
from robot_si.data.hdf5 import export_hdf5, import_hdf5
from robot_si.data.synthetic import synthetic_episode, synthetic_meta


@pytest.fixture()
def store(tmp_path):
    store = EpisodeStore.create(tmp_path / "store", fps=10, image_size=16, cameras=("front", "wrist"), state_dim=8, action_dim=4)
    for i, (source, length) in enumerate([("demo", 4), ("autonomous", 6), ("autonomous", 3)]):
        frames = synthetic_episode(length, image_size=16, cameras=("front", "wrist"), seed=i)
        terminal = None if i == 2 else {  # e2 was written without its terminal observation
            key: np.asarray(frames[key][0]) + (1 if key.endswith("state") else 0) for key in frames if key != "action"}
        store.append_episode(frames, synthetic_meta(f"e{i}", length, source=source, seed=i), audit_gt_success=i != 2,
                             terminal=terminal)
    return store


def test_layout_and_masks(store, tmp_path):
    out = export_hdf5(store.root, tmp_path / "plain.hdf5")
    with h5py.File(out) as f:
        assert f["data"].attrs["total"] == 13 and json.loads(f["data"].attrs["env_args"])["env_kwargs"]["fps"] == 10
        demo = f["data/demo_1"]
        assert demo.attrs["num_samples"] == 6 and demo["obs/front_image"].shape == (6, 16, 16, 3)
        assert demo["obs/wrist_image"].dtype == np.uint8 and demo["obs/state"].shape == (6, 8)
        np.testing.assert_array_equal(demo["next_obs/state"][:-1], demo["obs/state"][1:])
        # the last next_obs is the observation the episode ended on, or a repeat where the store has none
        np.testing.assert_array_equal(demo["next_obs/front_image"][-1], store.load_terminal("e1")["observation.images.front"])
        np.testing.assert_array_equal(f["data/demo_2/next_obs/state"][-1], f["data/demo_2/obs/state"][-1])
        assert demo["dones"][()].tolist() == [0, 0, 0, 0, 0, 1] and demo["rewards"][()].sum() == 0
        # no labels: only the scripted demo counts as a success; ground truth is not used
        assert [k.decode() for k in f["mask/success"]] == ["demo_0"] and len(f["mask/failure"]) == 0
        assert sorted(f["mask/train"][()].tolist() + f["mask/valid"][()].tolist()) == [b"demo_0", b"demo_1", b"demo_2"]
    write_label_set(store.root, episode_labels=[
        EpisodeLabel(episode_id="e1", success_prob=0.8, label=True, label_source="detector", detector_version="d"),
        EpisodeLabel(episode_id="e2", success_prob=0.1, label=False, label_source="detector", detector_version="d"),
    ], detector_version="d")
    with h5py.File(export_hdf5(store.root, tmp_path / "labelled.hdf5", label_version="latest")) as f:
        assert f["mask/success"][()].tolist() == [b"demo_1"] and f["mask/failure"][()].tolist() == [b"demo_2"]
        assert f["data/demo_1/rewards"][-1] == 1.0
    with h5py.File(export_hdf5(store.root, tmp_path / "audit.hdf5", masks_from_audit_ground_truth=True)) as f:
        assert "success" not in f["mask"] and f["mask/audit_gt_failure"][()].tolist() == [b"demo_2"]


def test_export_import_round_trip_is_identical(store, tmp_path):
    out = export_hdf5(store.root, tmp_path / "demos.hdf5")
    imported = import_hdf5(out, tmp_path / "copy")
    copy = EpisodeStore(tmp_path / "copy")
    assert [m.to_json_dict() for m in copy.episodes()] == [m.to_json_dict() for m in store.episodes()]
    assert [m.episode_id for m in imported] == ["e0", "e1", "e2"]
    for meta in store.episodes():
        original, back = store.load_episode(meta.episode_id), copy.load_episode(meta.episode_id)
        for key in original:
            assert back[key].dtype == original[key].dtype
            np.testing.assert_array_equal(back[key], original[key], err_msg=key)
        if store.has_terminal(meta.episode_id):
            for key, value in store.load_terminal(meta.episode_id).items():
                np.testing.assert_array_equal(copy.load_terminal(meta.episode_id)[key], value, err_msg=key)
        else:
            assert not copy.has_terminal(meta.episode_id)
    assert import_hdf5(out, tmp_path / "copy") == []  # rerun skips what is there
    assert copy.audit_table() == {"e0": None, "e1": None, "e2": None}  # ground truth does not travel


def test_foreign_file_needs_a_task_name(tmp_path):
    path = tmp_path / "foreign.hdf5"
    with h5py.File(path, "w") as f:
        demo = f.create_group("data/demo_0")
        demo.create_dataset("obs/agentview_image", data=np.zeros((3, 8, 8, 3), np.uint8))
        demo.create_dataset("obs/robot0_eef_pos", data=np.ones((3, 3)))
        demo.create_dataset("obs/robot0_gripper_qpos", data=np.ones((3, 2)))
        demo.create_dataset("actions", data=np.zeros((3, 7)))
    with pytest.raises(ValueError, match="fps="):
        import_hdf5(path, tmp_path / "s", task_name="lift", instruction="lift the cube")
    with pytest.raises(ValueError, match="task_name="):
        import_hdf5(path, tmp_path / "s", fps=20)
    (meta,) = import_hdf5(path, tmp_path / "s", task_name="lift", instruction="lift the cube", fps=20)
    store = EpisodeStore(tmp_path / "s")
    assert store.spec.cameras == ("agentview",) and store.spec.state_dim == 5 and meta.source == "demo"
    assert store.load_episode(meta.episode_id)["action"].shape == (3, 7)
