"""Tests of the MuJoCo task suite, run over every registered task (dm_control suite_test style)."""

from __future__ import annotations

import gymnasium
import mujoco
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from robot_si.envs import ACTION_DIM, STATE_DIM, get_task_spec, list_tasks, make_env
from robot_si.envs.experts import make_expert, run_episode
from robot_si.envs.scene import COLOR_NAMES

TASKS = list_tasks()


@pytest.fixture(scope="module")
def envs():
    """One 64 px env per task, shared by the tests of this module (building renderers is the slow part)."""
    created = {task: make_env(task) for task in TASKS}
    yield created
    for env in created.values():
        env.close()


def test_suite_has_graded_tasks():
    assert set(TASKS) >= {"reach", "push", "pick_place", "stack", "button", "drawer"}
    difficulties = [get_task_spec(t).difficulty for t in TASKS]
    assert difficulties == sorted(difficulties) and min(difficulties) == 1 and max(difficulties) == 5


@pytest.mark.parametrize("task", TASKS)
def test_gymnasium_env_checker(task):
    env = make_env(task)
    check_env(env, skip_render_check=True)
    env.close()


@pytest.mark.parametrize("task", TASKS)
def test_gymnasium_id_makes_the_task(task):
    env = gymnasium.make(get_task_spec(task).gym_id)
    observation, info = env.reset(seed=0)
    assert env.unwrapped.task_name == task == info["task_name"]
    assert observation["task"] == env.unwrapped.instruction
    env.close()


@pytest.mark.parametrize("task", TASKS)
def test_observation_layout(task, envs):
    observation, info = envs[task].reset(seed=1)
    assert set(observation) == {"observation.images.front", "observation.state", "task"}
    assert observation["observation.images.front"].shape == (64, 64, 3)
    assert observation["observation.images.front"].dtype == np.uint8
    assert observation["observation.state"].shape == (STATE_DIM,)
    assert observation["observation.state"].dtype == np.float32
    assert info == {"is_success": False, "task_name": task}
    assert envs[task].action_space.shape == (ACTION_DIM,)


@pytest.mark.parametrize("task", TASKS)
def test_same_seed_same_rollout(task, envs):
    other = make_env(task)
    actions = np.random.default_rng(0).uniform(-1, 1, (4, ACTION_DIM)).astype(np.float32)
    rollouts = []
    for env in (envs[task], other):
        observation, _ = env.reset(seed=7)
        trace = [observation]
        for action in actions:
            observation, reward, terminated, truncated, _ = env.step(action)
            trace.append({**observation, "reward": reward})
            if terminated or truncated:
                break
        rollouts.append(trace)
    other.close()
    assert len(rollouts[0]) == len(rollouts[1])
    for first, second in zip(*rollouts):
        assert first["task"] == second["task"]
        np.testing.assert_array_equal(first["observation.state"], second["observation.state"])
        np.testing.assert_array_equal(first["observation.images.front"], second["observation.images.front"])
        assert first.get("reward") == second.get("reward")


@pytest.mark.parametrize("task", TASKS)
def test_state_is_proprioception_only(task, envs):
    env = envs[task]
    env.reset(seed=3)
    state_before = env.unwrapped._state()
    model, data = env.unwrapped.model, env.unwrapped.data
    # Move every object: free bodies through qpos, fixed task bodies (buttons, plate, cabinet) through the model.
    arm_bodies = {model.body(name).id for name in ("arm_base",)}
    for joint in range(model.njnt):
        if model.jnt_type[joint] == mujoco.mjtJoint.mjJNT_FREE:
            data.qpos[model.jnt_qposadr[joint] : model.jnt_qposadr[joint] + 2] += 0.05
    for body in range(1, model.nbody):
        if model.body_parentid[body] == 0 and body not in arm_bodies and model.body_jntnum[body] == 0:
            model.body_pos[body, :2] += 0.05
    mujoco.mj_forward(model, data)
    # Recomputing velocities from the same qvel differs by ~1e-19 from the post-step value; objects moved 5 cm.
    np.testing.assert_allclose(state_before, env.unwrapped._state(), rtol=0, atol=1e-9)
    assert not np.allclose(env.unwrapped._state()[:3], 0)


@pytest.mark.parametrize("task", TASKS)
def test_clean_expert_succeeds(task, envs):
    expert = make_expert(task, noise=0.0, seed=0)
    successes = [run_episode(envs[task], expert, seed=seed)[0] for seed in range(5)]
    assert sum(successes) >= 4, f"{task}: clean expert succeeded on {successes}"


@pytest.mark.parametrize("task", TASKS)
def test_noisy_expert_fails_more_often(task, envs):
    clean = make_expert(task, noise=0.0, seed=0)
    clumsy = make_expert(task, noise=1.0, seed=0)
    clean_successes = sum(run_episode(envs[task], clean, seed=seed)[0] for seed in range(4))
    clumsy_successes = sum(run_episode(envs[task], clumsy, seed=seed)[0] for seed in range(4))
    assert clumsy_successes < clean_successes


@pytest.mark.parametrize("task", TASKS)
def test_near_miss_expert_fails_on_purpose(task, envs):
    near = make_expert(task, seed=0, near_miss=True)
    outcomes = [run_episode(envs[task], near, seed=seed)[0] for seed in range(4)]
    assert not any(outcomes), f"{task}: the near-miss expert succeeded on {outcomes}"


def _renderings(templates) -> set[str]:
    return {t.format(color=c, base_color=b) for t in templates for c in COLOR_NAMES for b in COLOR_NAMES}


@pytest.mark.parametrize("task", TASKS)
def test_instruction_splits_are_disjoint(task):
    spec = get_task_spec(task)
    train, heldout = _renderings(spec.train_instructions), _renderings(spec.heldout_instructions)
    assert train and heldout and not train & heldout
    heldout_env = make_env(task, instruction_split="heldout")
    seen = {heldout_env.reset(seed=seed)[0]["task"] for seed in range(6)}
    heldout_env.close()
    assert seen <= heldout


def test_unknown_task_lists_valid_ones():
    with pytest.raises(ValueError, match="reach"):
        make_env("fly_to_the_moon")
    with pytest.raises(ValueError, match="valid tasks"):
        make_expert("fly_to_the_moon")


@pytest.mark.parametrize("size", [0, 63, 100, 512, True])
def test_bad_image_size(size):
    with pytest.raises(ValueError, match="image_size"):
        make_env("reach", image_size=size)


def test_bad_arguments():
    with pytest.raises(ValueError, match="instruction_split"):
        make_env("reach", instruction_split="test")
    with pytest.raises(ValueError, match="cameras"):
        make_env("reach", cameras=("side",))
    with pytest.raises(ValueError, match="max_episode_steps"):
        make_env("reach", max_episode_steps=0)
    with pytest.raises(ValueError, match="noise"):
        make_expert("reach", noise=2.0)
    with pytest.raises(ValueError, match="render_backend"):
        make_env("reach", render_backend="vulkan")


@pytest.mark.parametrize(
    "action",
    [[np.nan, 0, 0, 0], [0, 0, 1.01, 0], [-2, 0, 0, 0], [0, 0, 0], [0, 0, 0, np.inf]],
)
def test_bad_actions_raise(action, envs):
    env = envs["reach"]
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action"):
        env.step(np.array(action, dtype=np.float32))


def test_tiny_overshoot_is_tolerated(envs):
    env = envs["reach"]
    first, _ = env.reset(seed=0)
    observation, *_ = env.step(np.array([1 + 1e-7, -1 - 1e-7, 0, 0], dtype=np.float32))  # no ValueError
    moved = observation["observation.state"][:2] - first["observation.state"][:2]
    assert moved[0] > 0 and moved[1] < 0  # executed as +1 / -1: the hand moved +x, -y


def test_step_after_episode_end_needs_reset():
    env = make_env("reach", max_episode_steps=1)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(ACTION_DIM, np.float32))
    env.reset(seed=0)
    _, _, terminated, truncated, _ = env.step(np.zeros(ACTION_DIM, np.float32))
    assert terminated or truncated
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(ACTION_DIM, np.float32))
    env.reset(seed=1)
    env.step(np.zeros(ACTION_DIM, np.float32))
    env.close()


def test_frames_are_upright_and_not_mirrored():
    """The ball nearest the camera (+x) shows in the bottom half; +y shows on the image's right."""
    env = make_env("reach", image_size=64)
    env.reset(seed=0)
    red = np.array([0.9, 0.1, 0.1])
    for i in range(3):
        env.unwrapped.set_geom_color(f"ball{i}", red * 0.2)  # dim the others
    env.unwrapped.set_geom_color("ball0", red)

    def red_pixel_centre(xyz):
        env.unwrapped.set_static_body_position("ball0", xyz)
        mujoco.mj_forward(env.unwrapped.model, env.unwrapped.data)
        frame = env.unwrapped.render().astype(int)
        mask = (frame[..., 0] > 150) & (frame[..., 1] < 80) & (frame[..., 2] < 80)
        assert mask.any(), "target ball not visible"
        rows, cols = np.nonzero(mask)
        return rows.mean(), cols.mean()

    near_row, _ = red_pixel_centre([0.15, 0.0, 0.03])
    far_row, _ = red_pixel_centre([-0.12, 0.0, 0.03])
    _, right_col = red_pixel_centre([0.0, 0.2, 0.03])
    _, left_col = red_pixel_centre([0.0, -0.2, 0.03])
    env.close()
    assert near_row > 32 > far_row
    assert right_col > 32 > left_col


def test_wrist_camera_and_joint_mode():
    env = make_env("pick_place", image_size=96, cameras=("front", "wrist"), control_mode="joint_delta")
    observation, _ = env.reset(seed=0)
    assert observation["observation.images.wrist"].shape == (96, 96, 3)
    before = observation["observation.state"][:3].copy()
    observation, *_ = env.step(np.array([0.5, 0.5, 0.0, 0.0], np.float32))
    assert np.linalg.norm(observation["observation.state"][:3] - before) > 0.01
    env.close()


def test_ee_action_moves_the_end_effector(envs):
    env = envs["reach"]
    observation, _ = env.reset(seed=0)
    start = observation["observation.state"][:3].copy()
    for _ in range(3):
        observation, *_ = env.step(np.array([0.0, 1.0, 0.0, 0.0], np.float32))
    moved = observation["observation.state"][:3] - start
    assert moved[1] > 0.08 and abs(moved[0]) < 0.02 and abs(moved[2]) < 0.02


def test_gripper_command_opens_and_closes(envs):
    env = envs["reach"]
    observation, _ = env.reset(seed=0)
    assert observation["observation.state"][3] > 0.08  # starts open
    for _ in range(3):
        observation, *_ = env.step(np.array([0.0, 0.0, 0.0, 1.0], np.float32))
    assert observation["observation.state"][3] < 0.01


def test_render_all_tasks_writes_gifs(tmp_path):
    from robot_si.envs.commands import main, render_all_tasks

    paths = render_all_tasks(tmp_path, image_size=64)
    assert [p.name for p in paths] == [f"{t}.gif" for t in TASKS]
    assert all(p.stat().st_size > 1000 for p in paths)
    assert main(["envs", "list"]) == 0


def test_software_rendering_stays_in_the_calling_thread_unless_the_user_says_otherwise():
    import os
    import subprocess
    import sys

    probe = "import os, robot_si.envs; print(os.environ['LP_NUM_THREADS'])"
    env = {k: v for k, v in os.environ.items() if k != "LP_NUM_THREADS"}
    assert subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True).stdout.strip() == "0"
    env["LP_NUM_THREADS"] = "3"
    assert subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True).stdout.strip() == "3"
