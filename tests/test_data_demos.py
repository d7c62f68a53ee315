"""record_demos: N scripted-expert episodes per task, ground truth only in the audit table, resumable."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("robot_si.envs.experts")

from robot_si.data import EpisodeStore  # noqa: E402
from robot_si.data.demos import record_demos  # noqa: E402


def test_records_n_per_task_and_resumes(tmp_path):
    root = tmp_path / "demos"
    metas = record_demos(["reach", "push"], episodes_per_task=2, root=root, image_size=64, progress=False)
    assert [(m.task_name, m.seed, m.source) for m in metas] == [
        ("reach", 0, "demo"), ("reach", 1, "demo"), ("push", 0, "demo"), ("push", 1, "demo")
    ]
    store = EpisodeStore(root)
    assert len(store) == 4 and store.spec.image_height == 64 and store.spec.state_dim == 8
    frames = store.load_episode(metas[0].episode_id)
    assert frames["observation.images.front"].shape == (metas[0].num_frames, 64, 64, 3)
    assert all(isinstance(v, bool) for v in store.audit_table().values())
    assert all(m.instruction and m.error is None for m in metas)
    shards_before = sorted(p.name for p in store.shard_paths)
    again = record_demos(["reach", "push"], episodes_per_task=3, root=root, image_size=64, progress=False)
    assert [m.episode_id for m in again[:2]] == [m.episode_id for m in metas[:2]]
    assert len(EpisodeStore(root)) == 6  # only seed 2 of each task was recorded
    assert set(shards_before) <= {p.name for p in EpisodeStore(root).shard_paths}
    with pytest.raises(ValueError, match="unknown tasks"):
        record_demos(["fly"], episodes_per_task=1, root=root, progress=False)


def test_demos_keep_the_terminal_observation_the_expert_succeeded_on(tmp_path):
    from robot_si.envs import make_env

    metas = record_demos(["reach"], episodes_per_task=2, root=tmp_path / "demos", image_size=64, progress=False)
    store = EpisodeStore(tmp_path / "demos")
    for meta in metas:
        terminal = store.load_terminal(meta.episode_id)
        env = make_env("reach", image_size=64)
        env.reset(seed=meta.seed)
        for action in store.load_episode(meta.episode_id)["action"]:
            observation, _, terminated, _, info = env.step(action)
        env.close()
        assert terminated and info["is_success"]
        assert np.array_equal(terminal["observation.images.front"], observation["observation.images.front"])


def test_dart_demos_store_clean_expert_actions_from_perturbed_states(tmp_path):
    import numpy as np

    from robot_si.envs import make_env
    from robot_si.envs.experts import make_expert

    root = tmp_path / "demos"
    (clean,) = record_demos(["reach"], episodes_per_task=1, root=root, progress=False)
    (dart,) = record_demos(["reach"], episodes_per_task=1, root=root, action_noise=0.5, progress=False)
    assert dart.episode_id != clean.episode_id and "dart0.5" in dart.episode_id and len(EpisodeStore(root)) == 2
    frames = EpisodeStore(root).load_episode(dart.episode_id)
    # the first stored action is the clean expert's action at the reset state; later states leave the clean path
    # because the executed actions were perturbed
    env = make_env("reach", image_size=64)
    env.reset(seed=dart.seed)
    assert np.allclose(frames["action"][0], make_expert("reach", noise=0.0, seed=dart.seed).act(env), atol=1e-6)
    env.close()
    clean_states = EpisodeStore(root).load_episode(clean.episode_id)["observation.state"]
    steps = min(len(clean_states), len(frames["observation.state"]))
    assert not np.allclose(clean_states[1:steps, :3], frames["observation.state"][1:steps, :3], atol=1e-3)
    with pytest.raises(ValueError, match="action_noise"):
        record_demos(["reach"], episodes_per_task=1, root=root, action_noise=2.0, progress=False)


def test_near_misses_are_stored_apart_never_imitated_and_read_as_failures(tmp_path):
    from robot_si.data.hdf5 import export_hdf5
    from robot_si.data.views import TrainingView
    from robot_si.verify.examples import build_training_examples

    root = tmp_path / "demos"
    demos = record_demos(["button"], episodes_per_task=2, root=root, progress=False)
    misses = record_demos(["button"], episodes_per_task=2, root=root, progress=False, near_miss=True)
    assert [m.source for m in misses] == ["near_miss"] * 2 and all(m.episode_id.startswith("nearmiss-") for m in misses)
    # same scenes as the demos (same env seeds): pairs that differ only in where the press went
    assert [m.seed for m in misses] == [m.seed for m in demos]
    store = EpisodeStore(root)
    assert len(store) == 4
    assert record_demos(["button"], episodes_per_task=2, root=root, progress=False, near_miss=True) == misses
    assert len(EpisodeStore(root)) == 4  # resumable like demos

    imitated = {e.episode_id for e in TrainingView([store], horizon=2).episodes}
    assert imitated == {m.episode_id for m in demos}
    asked = {e.episode_id for e in TrainingView([store], horizon=2, sources=["near_miss"]).episodes}
    assert asked == {m.episode_id for m in misses}

    ends = {(e.episode_id, e.label_source): e.label for e in build_training_examples([store]) if e.end > 0}
    for meta in misses:
        assert ends[(meta.episode_id, "near_miss_end")] is False
    for meta in demos:
        assert ends[(meta.episode_id, "demo_end")] is True

    import json

    import h5py

    out = export_hdf5(root, tmp_path / "demos.hdf5")
    with h5py.File(out, "r") as f:
        failed = {json.loads(f[f"data/{k}"].attrs["robot_si_meta"])["episode_id"] for k in f["mask/failure"][()].astype(str)}
        succeeded = {json.loads(f[f"data/{k}"].attrs["robot_si_meta"])["episode_id"] for k in f["mask/success"][()].astype(str)}
    assert failed == {m.episode_id for m in misses} and succeeded == {m.episode_id for m in demos}

    from robot_si.verify.progress import ProgressConfig, ProgressModel

    report = ProgressModel(ProgressConfig(encoder="hashing", epochs=1, hidden_dim=16)).fit_stores([store])
    assert report["episodes_by_evidence"] == {"succeeded (p >= 0.5)": 2, "failed (p < 0.5)": 2}
