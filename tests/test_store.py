"""EpisodeStore: round trip, stock LeRobot loading, kill -9 safety, refusals and clear errors."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from robot_si.data import EpisodeMeta, EpisodeStore
from robot_si.data.synthetic import synthetic_episode, synthetic_meta

REPO_ROOT = Path(__file__).resolve().parents[1]
SIZE = 32


def make_store(root: Path, **kwargs) -> EpisodeStore:
    settings = dict(fps=10, image_size=SIZE, state_dim=8, action_dim=4)
    settings.update(kwargs)
    return EpisodeStore.create(root, **settings)


def append(store: EpisodeStore, episode_id: str, num_frames: int = 5, seed: int = 0, **meta_kwargs) -> dict:
    frames = synthetic_episode(num_frames, image_size=SIZE, seed=seed)
    store.append_episode(frames, synthetic_meta(episode_id, num_frames, seed=seed, **meta_kwargs), audit_gt_success=seed % 2 == 0)
    return frames


def assert_same(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_round_trip_filters_and_audit_kept_apart(tmp_path):
    store = make_store(tmp_path / "store")
    written = {
        "d0": append(store, "d0", 5, seed=0, source="demo", round=0),
        "a1": append(store, "a1", 6, seed=1, source="autonomous", round=1, task_name="push"),
        "a2": append(store, "a2", 4, seed=2, source="autonomous", round=1),
    }
    reopened = EpisodeStore(tmp_path / "store")
    assert [m.episode_id for m in reopened.episodes()] == ["d0", "a1", "a2"]
    assert [m.episode_id for m in reopened.episodes(source="autonomous")] == ["a1", "a2"]
    assert [m.episode_id for m in reopened.episodes(round=1, task="reach")] == ["a2"]
    assert reopened.num_frames == 15 and len(reopened) == 3
    for episode_id, frames in written.items():
        assert_same(frames, reopened.load_episode(episode_id))
    # ground truth only through audit_table(), never on EpisodeMeta
    assert reopened.audit_table() == {"d0": True, "a1": False, "a2": True}
    fields = {f.name for f in dataclasses.fields(EpisodeMeta)}
    assert not any("success" in f or "audit" in f for f in fields)
    assert "audit" not in json.dumps([m.to_json_dict() for m in reopened.episodes()])


def test_stock_lerobot_opens_shards_and_export_without_robot_si(tmp_path):
    store = make_store(tmp_path / "store")
    append(store, "e0", 5, seed=0)
    append(store, "e1", 3, seed=1)
    export = store.export_lerobot(tmp_path / "export")
    shards = [p.name for p in store.shard_paths]
    script = textwrap.dedent(
        f"""
        import sys
        from lerobot.datasets.lerobot_dataset import LeRobotDataset
        from lerobot.datasets.multi_dataset import MultiLeRobotDataset
        shard = LeRobotDataset("robot_si/shard", root={str(store.shard_paths[0])!r})
        item = shard[4]
        assert len(shard) == 5 and tuple(item["observation.images.front"].shape) == (3, {SIZE}, {SIZE}), item
        assert item["task"] == "reach the red cube" and bool(item["next.done"]), item
        multi = MultiLeRobotDataset({shards!r}, root={str(store.root / "shards")!r})
        assert len(multi) == 8 and multi.num_episodes == 2
        merged = LeRobotDataset("robot_si/export", root={str(export)!r})
        assert len(merged) == 8 and merged.num_episodes == 2, merged
        assert "robot_si" not in sys.modules
        print("STOCK_OK")
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=180)
    assert "STOCK_OK" in result.stdout, result.stderr[-3000:]


def test_fast_writes_give_the_same_parquet_as_lerobots_stock_path(tmp_path, monkeypatch):
    import pyarrow.parquet as pq
    from datasets import arrow_dataset, fingerprint
    from lerobot.datasets import dataset_writer, io_utils

    from robot_si.data import store as store_module

    calls = []
    batched_embed = store_module._embed_images_batched
    monkeypatch.setattr(store_module, "_embed_images_batched", lambda dataset: calls.append(1) or batched_embed(dataset))
    tables = {}
    for batched in (False, True):
        store = make_store(tmp_path / f"store-{batched}")
        store.fast_writes = batched
        frames = synthetic_episode(7, image_size=SIZE, seed=3)
        store.append_episode(frames, synthetic_meta("e0", 7, seed=3), audit_gt_success=True)
        (parquet,) = store.shard_paths[0].glob("data/**/*.parquet")
        tables[batched] = pq.read_table(parquet)
        assert_same(frames, store.load_episode("e0"))
        assert len(calls) == int(batched)  # one episode: one call, and only on the batched path
    # the swaps end with the write
    assert dataset_writer.embed_images is io_utils.embed_images
    assert arrow_dataset.generate_fingerprint is fingerprint.generate_fingerprint
    stock, batched = tables[False], tables[True]
    assert stock.schema == batched.schema
    assert stock.to_pylist() == batched.to_pylist()  # PNG bytes included


CHILD = """
import sys
from robot_si.data import EpisodeStore
from robot_si.data.synthetic import synthetic_episode, synthetic_meta
store = EpisodeStore(sys.argv[1])
for i in range(1000):
    frames = synthetic_episode(20, image_size=32, seed=i)
    store.append_episode(frames, synthetic_meta(f"ep{i:04d}", 20, seed=i), audit_gt_success=True)
    print(f"committed ep{i:04d}", flush=True)
"""


def test_kill_9_mid_episode_keeps_every_committed_episode(tmp_path, caplog):
    root = tmp_path / "store"
    make_store(root)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root)], stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    committed = []
    try:
        deadline = time.monotonic() + 150
        while len(committed) < 2:
            line = child.stdout.readline()
            assert line, "writer process exited early"
            committed.append(line.split()[1])
            assert time.monotonic() < deadline
        # wait until the next episode is half-written in staging, then kill -9
        staging = root / ".staging"
        while not (staging.is_dir() and any(staging.iterdir())):
            assert time.monotonic() < deadline
            time.sleep(0.002)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    committed += [line.split()[1] for line in child.stdout.read().splitlines() if line.startswith("committed")]

    with caplog.at_level(logging.WARNING, logger="robot_si.data.store"):
        store = EpisodeStore(root)
    stored = [m.episode_id for m in store.episodes()]
    assert set(committed) <= set(stored) and len(stored) <= len(committed) + 1
    for episode_id in stored:
        assert_same(synthetic_episode(20, image_size=32, seed=int(episode_id[2:])), store.load_episode(episode_id))
    assert not any((root / ".staging").iterdir()), "interrupted staging write was not cleaned"
    assert "interrupted" in caplog.text
    append(store, "after-crash", 5, seed=7)
    assert EpisodeStore(root).episodes()[-1].episode_id == "after-crash"


def test_mismatched_episodes_are_refused_with_the_reason(tmp_path):
    store = make_store(tmp_path / "store")
    good = synthetic_episode(5, image_size=SIZE)
    meta = synthetic_meta("x", 5)
    with pytest.raises(ValueError, match=r"observation.images.front.*\(T, 32, 32, 3\)"):
        store.append_episode(synthetic_episode(5, image_size=16), meta)
    with pytest.raises(ValueError, match=r"observation.state.*\(T, 8\)"):
        store.append_episode({**good, "observation.state": np.zeros((5, 7), np.float32)}, meta)
    with pytest.raises(ValueError, match=r"missing \['observation.images.front'\]"):
        store.append_episode({k: v for k, v in good.items() if "images" not in k}, meta)
    with pytest.raises(ValueError, match="num_frames is 4"):
        store.append_episode(good, synthetic_meta("x", 4))
    with pytest.raises(ValueError, match="fps: store has 10, requested 30"):
        EpisodeStore.open_or_create(tmp_path / "store", fps=30, image_size=SIZE, state_dim=8, action_dim=4)
    store.append_episode(good, meta)
    with pytest.raises(ValueError, match="already in the store"):
        store.append_episode(good, meta)
    assert len(EpisodeStore.open_or_create(tmp_path / "store", fps=10, image_size=SIZE, state_dim=8, action_dim=4)) == 1


def test_missing_or_corrupt_files_name_the_file_and_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"store\.json is missing.*EpisodeStore\.create"):
        EpisodeStore(tmp_path / "nowhere")
    store = make_store(tmp_path / "store")
    frames = append(store, "e0")
    (tmp_path / "store" / "store.json").write_text("{not json")
    with pytest.raises(RuntimeError, match=r"store\.json is corrupt.*rebuild_manifest"):
        EpisodeStore(tmp_path / "store")
    EpisodeStore.rebuild_manifest(tmp_path / "store")
    assert_same(frames, EpisodeStore(tmp_path / "store").load_episode("e0"))
    episodes_file = store.shard_paths[0] / "robot_si" / "episodes.jsonl"
    episodes_file.unlink()
    with pytest.raises(RuntimeError, match=r"episodes\.jsonl is missing.*quarantine"):
        EpisodeStore(tmp_path / "store")


def test_background_writer_and_compaction_keep_order_and_data(tmp_path):
    store = make_store(tmp_path / "store")
    written = {}
    with store.writer(max_pending=2) as writer:
        for i in range(4):
            written[f"w{i}"] = synthetic_episode(3 + i, image_size=SIZE, seed=i)
            writer.submit(written[f"w{i}"], synthetic_meta(f"w{i}", 3 + i, seed=i), audit_gt_success=None)
    assert [m.episode_id for m in store.episodes()] == ["w0", "w1", "w2", "w3"]
    store.compact()
    append(store, "late", 4, seed=9)
    reopened = EpisodeStore(tmp_path / "store")
    assert len(reopened.shard_paths) == 2
    assert [m.episode_id for m in reopened.episodes()] == ["w0", "w1", "w2", "w3", "late"]
    for episode_id, frames in written.items():
        assert_same(frames, reopened.load_episode(episode_id))
    assert reopened.audit_table()["w1"] is None and reopened.audit_table()["late"] is False


def test_terminal_observations_round_trip_survive_compaction_and_stay_out_of_lerobot(tmp_path):
    store = make_store(tmp_path / "store")
    terminal = {"observation.images.front": np.full((SIZE, SIZE, 3), 7, np.uint8),
                "observation.state": np.arange(8, dtype=np.float32)}
    store.append_episode(synthetic_episode(3, image_size=SIZE), synthetic_meta("with", 3), terminal=terminal)
    append(store, "without", 2, seed=1)
    with store.writer(in_subprocess=False) as writer:
        writer.submit(synthetic_episode(4, image_size=SIZE, seed=2), synthetic_meta("queued", 4, seed=2),
                      terminal={**terminal, "observation.state": -terminal["observation.state"]})
    for reopened in (EpisodeStore(tmp_path / "store"), None):
        if reopened is None:
            store.compact()
            reopened = EpisodeStore(tmp_path / "store")
            assert len(reopened.shard_paths) == 1
        assert reopened.has_terminal("with") and not reopened.has_terminal("without")
        assert reopened.load_terminal("without") is None
        loaded = reopened.load_terminal("with")
        assert np.array_equal(loaded["observation.images.front"], terminal["observation.images.front"])
        assert np.array_equal(reopened.load_terminal("queued")["observation.state"], -terminal["observation.state"])
        assert len(reopened.load_episode("with")["action"]) == 3  # raw frames unchanged: no extra frame
    with pytest.raises(ValueError, match="terminal observation has keys"):
        store.append_episode(synthetic_episode(2, image_size=SIZE), synthetic_meta("bad", 2),
                             terminal={"observation.state": terminal["observation.state"]})
    with pytest.raises(ValueError, match="contains NaN"):
        store.append_episode(synthetic_episode(2, image_size=SIZE), synthetic_meta("nan", 2),
                             terminal={**terminal, "observation.state": np.full(8, np.nan, np.float32)})
    assert "bad" not in store and "nan" not in store


def test_episodes_queued_behind_a_write_share_the_next_shard_in_order(tmp_path):
    store = make_store(tmp_path / "store")
    written = {f"q{i}": synthetic_episode(2 + i % 3, image_size=SIZE, seed=i) for i in range(8)}
    with store.writer(in_subprocess=False, max_batch=4) as writer:
        futures = [writer.submit(frames, synthetic_meta(episode_id, len(frames["action"]), seed=i))
                   for i, (episode_id, frames) in enumerate(written.items())]
    shard_of = [future.result() for future in futures]
    # submitting takes microseconds, a shard write ~0.1 s: all but the first wait and go in batches of <= 4
    assert len(set(shard_of)) < len(written) and max(shard_of.count(name) for name in shard_of) <= 4
    assert shard_of == sorted(shard_of)  # committed in submission order
    reopened = EpisodeStore(tmp_path / "store")
    assert [m.episode_id for m in reopened.episodes()] == list(written)
    for episode_id, frames in written.items():
        assert_same(frames, reopened.load_episode(episode_id))
    with pytest.raises(ValueError, match="max_batch"):
        store.writer(max_batch=0)


def test_interrupted_compaction_is_finished_on_open(tmp_path, caplog):
    store = make_store(tmp_path / "store")
    append(store, "e0", seed=0)
    append(store, "e1", seed=1)
    backup = tmp_path / "sources"
    shutil.copytree(tmp_path / "store" / "shards", backup)
    store.compact()
    for source in backup.iterdir():  # as if compact() was killed before deleting its sources
        shutil.copytree(source, tmp_path / "store" / "shards" / source.name)
    with caplog.at_level(logging.WARNING, logger="robot_si.data.store"):
        reopened = EpisodeStore(tmp_path / "store")
    assert [m.episode_id for m in reopened.episodes()] == ["e0", "e1"]
    assert len(reopened.shard_paths) == 1 and "interrupted compact" in caplog.text
