"""Collection with a policy in the loop: real MuJoCo envs, a real EpisodeStore, a tiny deterministic policy."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest

from robot_si.collect import Collector, EpisodeRequest, collect
from robot_si.collect.rollout import collection_requests
from robot_si.collect.seeds import COLLECTION_SEED_LIMIT
from robot_si.collect.testing import FaultyPolicy, tiny_compact_vla
from robot_si.data import EpisodeStore
from robot_si.envs import make_env

STEPS = 6  # short episodes keep the store writes (the slow part) cheap


def _collect(policy, root, *, episodes=2, tasks=("reach", "push"), **kwargs):
    options = dict(store=root, round=1, seed=3, num_envs=2, exploration_std=0.1, max_episode_steps=STEPS,
                   writer="thread", progress=False, policy_version="v-test")
    options.update(kwargs)
    return collect(policy, list(tasks), episodes, **options)


def test_collect_writes_each_episode_with_metadata_and_audit(tmp_path):
    metrics = _collect(tiny_compact_vla(), tmp_path / "store")
    store = EpisodeStore(tmp_path / "store")
    metas = store.episodes()
    assert len(metas) == 4 and metrics["written"] == 4 and metrics["episodes"] == 4
    assert {m.task_name for m in metas} == {"reach", "push"}
    for meta in metas:
        assert meta.source == "autonomous" and meta.round == 1 and meta.policy_version == "v-test"
        assert 0 <= meta.seed < COLLECTION_SEED_LIMIT and meta.error is None and meta.instruction
        assert meta.episode_id == f"auto-r1-{meta.task_name}-s{meta.seed}"
        frames = store.load_episode(meta.episode_id)
        assert frames["action"].shape == (meta.num_frames, 4) and np.all(np.abs(frames["action"]) <= 1.0)
        assert frames["observation.images.front"].shape == (meta.num_frames, 64, 64, 3)
    audit = store.audit_table()
    assert set(audit) == {m.episode_id for m in metas} and all(isinstance(v, bool) for v in audit.values())
    phases = metrics["phase_s"]
    for phase in ("env_step_s", "render_s", "inference_s", "observation_s", "store_write_s"):
        assert phases[phase] >= 0.0
    assert metrics["env_steps"] == 4 * STEPS and metrics["mean_forward_batch"] > 1.0  # batched forwards


def test_collect_takes_a_count_per_task(tmp_path):
    metrics = _collect(tiny_compact_vla(), tmp_path / "store", episodes={"reach": 1, "push": 2})
    tasks = sorted(m.task_name for m in EpisodeStore(tmp_path / "store").episodes())
    assert tasks == ["push", "push", "reach"] and metrics["requested"] == 3


def test_collected_episodes_keep_the_observation_the_env_ended_on(tmp_path):
    _collect(tiny_compact_vla(), tmp_path / "store", tasks=("reach",))
    store = EpisodeStore(tmp_path / "store")
    for meta in store.episodes():
        frames, terminal = store.load_episode(meta.episode_id), store.load_terminal(meta.episode_id)
        assert terminal is not None and terminal["observation.images.front"].shape == (64, 64, 3)
        # the state after the last action: replaying the episode's actions from its seed ends there
        env = make_env("reach", image_size=64, max_episode_steps=STEPS)
        observation, _ = env.reset(seed=meta.seed)
        for action in frames["action"]:
            observation, *_ = env.step(action)
        env.close()
        np.testing.assert_allclose(terminal["observation.state"], observation["observation.state"], atol=1e-6)
        assert not np.allclose(terminal["observation.state"], frames["observation.state"][-1])


def test_same_seeds_give_same_actions_and_frames():
    requests = collection_requests(["push"], 2, seed=11, round=0)

    def run():
        results = {}
        with Collector(num_envs=2, exploration_std=0.3, max_episode_steps=STEPS, progress=False) as collector:
            collector.run(tiny_compact_vla(seed=5), requests, on_episode=lambda r: results.update({r.episode_id: r}))
        return results

    first, second = run(), run()
    assert first.keys() == second.keys() == {r.episode_id for r in requests}
    for episode_id, result in first.items():
        for key in ("action", "observation.state", "observation.images.front"):
            np.testing.assert_array_equal(result.frames[key], second[episode_id].frames[key])
    actions = [r.frames["action"] for r in first.values()]
    assert not np.array_equal(actions[0], actions[1])  # different seeds: different episodes


def test_resume_after_interruption_collects_only_missing(tmp_path):
    root = tmp_path / "store"
    # Ctrl-C arrives in the 5th forward call (the 3rd episode is in flight): the first two are stored, it is not
    with pytest.raises(KeyboardInterrupt):
        _collect(FaultyPolicy(tiny_compact_vla(), interrupt_after=5), root, episodes=3, tasks=("reach",),
                 num_envs=2, exploration_std=0.0)
    store = EpisodeStore(root)
    before = {m.episode_id for m in store.episodes()}
    assert 0 < len(before) < 3
    for episode_id in before:  # whole episodes only
        assert store.load_episode(episode_id)["action"].shape[0] == store.get_meta(episode_id).num_frames
    metrics = _collect(tiny_compact_vla(), root, episodes=3, tasks=("reach",), exploration_std=0.0)
    after = [m.episode_id for m in EpisodeStore(root).episodes()]
    assert len(after) == len(set(after)) == 3 and before < set(after)
    assert metrics["skipped_existing"] == len(before) and metrics["written"] == 3 - len(before)
    assert _collect(tiny_compact_vla(), root, episodes=3, tasks=("reach",))["written"] == 0


def test_nan_action_ends_only_that_episode(tmp_path):
    metrics = _collect(FaultyPolicy(tiny_compact_vla(), nan_on_calls=(2,)), tmp_path / "store")
    metas = EpisodeStore(tmp_path / "store").episodes()
    assert len(metas) == 4 and metrics["episodes_with_error"] == 1
    errored = [m for m in metas if m.error]
    assert len(errored) == 1 and "NaN" in errored[0].error
    assert all(m.num_frames == STEPS for m in metas if not m.error)


def test_wrong_shape_action_is_recorded(tmp_path):
    metrics = _collect(FaultyPolicy(tiny_compact_vla(), wrong_shape_after=3), tmp_path / "store", episodes=1)
    metas = EpisodeStore(tmp_path / "store").episodes()
    assert len(metas) == 2 and metrics["episodes_with_error"] >= 1
    assert all("shape" in m.error for m in metas if m.error)


class _BrokenOnce(gymnasium.Wrapper):
    """Real env that raises on its 3rd step, once per test (simulated physics blow-up / GL loss)."""

    budget = {"faults": 1}

    def step(self, action):
        if self.unwrapped.elapsed_steps == 2 and self.budget["faults"] > 0:
            self.budget["faults"] -= 1
            raise RuntimeError("simulated MuJoCo instability")
        return self.env.step(action)


def test_env_exception_is_recorded_and_env_rebuilt(tmp_path):
    from robot_si.envs import make_env

    built = []
    _BrokenOnce.budget = {"faults": 1}

    def factory(task, **kwargs):
        built.append(task)
        return _BrokenOnce(make_env(task, **kwargs))

    metrics = _collect(tiny_compact_vla(), tmp_path / "store", episodes=3, tasks=("reach",), env_factory=factory)
    metas = EpisodeStore(tmp_path / "store").episodes()
    assert len(metas) == 3 and metrics["env_rebuilds"] == 1 and len(built) == 3  # 2 slots + 1 rebuild
    errored = [m for m in metas if m.error]
    assert len(errored) == 1 and "simulated MuJoCo instability" in errored[0].error and errored[0].num_frames == 3


def test_collector_refuses_bad_arguments():
    with pytest.raises(ValueError, match="num_envs"):
        Collector(num_envs=0)
    with pytest.raises(ValueError, match="exploration_std"):
        Collector(exploration_std=-1.0)
    with pytest.raises(ValueError, match="duplicate"):
        request = EpisodeRequest(episode_id="a", task="reach", seed=1)
        Collector(progress=False).run(tiny_compact_vla(), [request, request])
    with pytest.raises(ValueError, match="unknown tasks"):
        collect(tiny_compact_vla(), ["fly"], 1, store="unused", round=0)
    with pytest.raises(ValueError, match="episodes_per_task"):
        collect(tiny_compact_vla(), ["reach"], 0, store="unused", round=0)
