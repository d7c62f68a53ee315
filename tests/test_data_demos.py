"""record_demos: N scripted-expert episodes per task, ground truth only in the audit table, resumable."""

from __future__ import annotations

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
