"""Ray scale-out on a real local cluster: env-worker actors, a killed worker, the batched inference server."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from robot_si.collect import collect  # noqa: E402
from robot_si.collect.ray_backend import InferenceServer, RayCollector, policy_payload  # noqa: E402
from robot_si.collect.rollout import Collector, LocalPolicyRunner, StoreSink, collection_requests, open_store  # noqa: E402
from robot_si.collect.testing import tiny_compact_vla  # noqa: E402
from robot_si.data import EpisodeStore  # noqa: E402

STEPS = 6


@pytest.fixture(scope="module", autouse=True)
def ray_cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def test_two_workers_write_every_episode(tmp_path):
    metrics = collect(
        tiny_compact_vla(), ["reach", "push"], 3, store=tmp_path / "store", round=2, num_envs=2,
        max_episode_steps=STEPS, backend="ray", writer="thread", progress=False, policy_version="v7",
        ray_options={"num_workers": 2, "lease_size": 2},
    )
    metas = EpisodeStore(tmp_path / "store").episodes()
    assert len(metas) == len({m.episode_id for m in metas}) == 6 == metrics["written"]
    assert {m.policy_version for m in metas} == {"v7"} and {m.round for m in metas} == {2}
    assert metrics["env_steps"] == 6 * STEPS and metrics["num_workers"] == 2


def test_killed_worker_is_recreated_and_the_run_completes(tmp_path):
    requests = collection_requests(["reach"], 8, seed=0, round=0)
    store = open_store(tmp_path / "store", image_size=64)
    seen_workers, victims = [], []
    with RayCollector(num_workers=2, num_envs_per_worker=1, max_episode_steps=STEPS, progress=False,
                      lease_size=2) as collector, StoreSink(store, writer="thread") as sink:
        pids = collector.worker_pids()

        def on_episode(result):
            seen_workers.append(result.worker)
            if len(seen_workers) == 1:  # kill a worker while both are mid-lease
                victims.append("worker1" if result.worker == "worker0" else "worker0")
                os.kill(pids[victims[0]], signal.SIGKILL)
            sink(result)

        with pytest.warns(UserWarning, match="recreating"):
            metrics = collector.run(tiny_compact_vla(), requests, on_episode=on_episode, policy_version="v1")
        assert metrics["worker_restarts"] == 1 and len(collector.workers) == 2
        new_pids = collector.worker_pids()
        survivor = "worker0" if victims[0] == "worker1" else "worker1"
        assert new_pids[victims[0]] != pids[victims[0]] and new_pids[survivor] == pids[survivor]
        assert {"worker0", "worker1"} <= set(seen_workers)  # both (the recreated one too) delivered episodes
    ids = [m.episode_id for m in EpisodeStore(tmp_path / "store").episodes()]
    assert sorted(ids) == sorted(r.episode_id for r in requests)  # nothing lost, nothing twice
    assert metrics["episodes"] == 8


def test_ctrl_c_leaves_whole_episodes_and_a_rerun_completes(tmp_path):
    requests = collection_requests(["reach"], 6, seed=1, round=0)
    store = open_store(tmp_path / "store", image_size=64)
    with RayCollector(num_workers=2, num_envs_per_worker=1, max_episode_steps=STEPS, progress=False,
                      lease_size=2) as collector, StoreSink(store, writer="thread") as sink:

        def on_episode(result):
            sink(result)
            if sink.written == 2:
                raise KeyboardInterrupt  # the operator presses Ctrl-C while other episodes are in flight

        with pytest.raises(KeyboardInterrupt):
            collector.run(tiny_compact_vla(), requests, on_episode=on_episode, policy_version="v1")
    assert len(EpisodeStore(tmp_path / "store").episodes()) == 2
    metrics = collect(tiny_compact_vla(), ["reach"], 6, store=tmp_path / "store", round=0, seed=1, num_envs=1,
                      max_episode_steps=STEPS, backend="ray", writer="thread", progress=False,
                      policy_version="v1", ray_options={"num_workers": 2, "lease_size": 2})
    assert metrics["skipped_existing"] == 2 and metrics["written"] == 4
    ids = [m.episode_id for m in EpisodeStore(tmp_path / "store").episodes()]
    assert sorted(ids) == sorted(r.episode_id for r in requests)


def _observations(count: int, task: str = "push") -> list[dict]:
    from robot_si.envs import make_env

    env = make_env(task)
    observations = [env.reset(seed=seed)[0] for seed in range(count)]
    env.close()
    return observations


def test_inference_server_batches_and_matches_direct_forward():
    policy = tiny_compact_vla(seed=3)
    server = InferenceServer(max_batch_size=16, batch_timeout_s=0.2)
    ray.get(server.set_policy.remote("v1", "config_state", policy_payload(policy, "config_state")))
    observations = _observations(5)
    groups = [observations[:2], observations[2:3], observations[3:]]
    replies = ray.get([server.predict.remote(group) for group in groups])  # three callers at once
    direct = LocalPolicyRunner(policy)
    for group, reply in zip(groups, replies):
        np.testing.assert_allclose(reply, direct.predict_chunks(group), atol=1e-6)
    stats = ray.get(server.stats.remote())
    assert stats["observations_served"] == 5 and stats["forward_calls"] < 3  # requests were batched together
    ray.kill(server)


def test_collection_through_the_inference_server_matches_local_collection():
    requests = collection_requests(["reach"], 2, seed=4, round=0)
    local, remote = {}, {}
    with Collector(num_envs=2, exploration_std=0.2, max_episode_steps=STEPS, progress=False) as collector:
        collector.run(tiny_compact_vla(seed=9), requests, on_episode=lambda r: local.update({r.episode_id: r}))
    with RayCollector(num_workers=1, num_envs_per_worker=2, exploration_std=0.2, max_episode_steps=STEPS,
                      progress=False, inference_server=True, server_batch_timeout_s=0.001) as collector:
        metrics = collector.run(tiny_compact_vla(seed=9), requests,
                                on_episode=lambda r: remote.update({r.episode_id: r}))
    assert metrics["inference_server"]["observations_served"] > 0
    for episode_id, result in local.items():
        np.testing.assert_allclose(remote[episode_id].frames["action"], result.frames["action"], atol=1e-5)
