"""Scripted experts: one waypoint state machine per task, reading privileged sim state through `env.unwrapped`.

`make_expert(task, *, noise=0.0, seed=None)` returns an expert with `reset()` and `act(env) -> np.ndarray (4,)`
(float32, in [-1, 1], the env's ee_delta action). The expert resets itself when it sees a new episode, so
calling `reset()` is optional. It only works with control_mode="ee_delta".

`noise` (0..1) degrades the expert the way a clumsy operator would, so demos range from clean to near-misses:
  - a per-episode target offset (Gaussian, std `TARGET_OFFSET_STD_M * offset_scale * noise` per horizontal axis, drawn
    separately for "where to touch/grasp" and "where to put"): misses, off-centre grasps, blocks left at a zone
    edge;
  - Gaussian action noise, std `ACTION_NOISE_STD * noise` per step (then clipped to [-1, 1]);
  - with probability `EARLY_RELEASE_PROB * noise` per episode, the gripper opens at a random moment while
    carrying (grasp tasks).
The expert's randomness comes from its own generator (`seed`), independent of the env's.

`near_miss=True` makes a deliberate failure, the way a demonstrator records negatives on purpose: the expert
moves cleanly but aims its touch (or its placement) beside the target, `near_miss_radius_m` of the task's expert
away in a random horizontal direction (or the task's own: across the push line, in front of the drawer's handle),
far enough that the task's success test cannot pass (accidents measured in robot_si/data/demos.py).
These episodes show the verifier what "almost" looks like (a gripper beside the button, a block just outside
the zone), which demo prefixes never do: their "not yet" frames are far from the target.

Measured scripted-expert success (fraction of 20 episodes, env seeds 0..19, expert seed 1000, 64 px; `bench/sim_throughput.py`,
results in bench/results/sim_throughput.json):

| task       | noise 0.0 | noise 0.3 | noise 0.6 |
| ---------- | --------- | --------- | --------- |
| reach      | 1.00      | 0.80      | 0.35      |
| button     | 1.00      | 0.80      | 0.55      |
| push       | 1.00      | 0.85      | 0.70      |
| drawer     | 1.00      | 0.80      | 0.55      |
| pick_place | 1.00      | 0.80      | 0.25      |
| stack      | 1.00      | 0.85      | 0.20      |
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from robot_si.envs import scene
from robot_si.envs.registry import get_task_spec, list_tasks

TARGET_OFFSET_STD_M = 0.035
ACTION_NOISE_STD = 0.5
EARLY_RELEASE_PROB = 0.5
PHASE_TIMEOUT_STEPS = 18  # a phase that has not converged by then gives way to the next (no deadlocks)
OPEN, CLOSED = -1.0, 1.0
CARRY_HEIGHT_M = 0.12


@dataclasses.dataclass(kw_only=True)
class Phase:
    """Move the grasp point to `target(env)` with the gripper at `gripper`; done when within `tolerance_m` and
    at least `min_steps` steps were spent here (gripper actions need a few steps to close or open)."""

    name: str
    target: Callable[[object], np.ndarray]
    gripper: float
    tolerance_m: float = 0.012
    min_steps: int = 0
    max_speed: float = 1.0  # fraction of the env's maximum end-effector step
    carrying: bool = False  # an early release may happen in this phase
    restart_if: Callable[[object], bool] | None = None  # when true, go back to the first phase (re-approach)


class ScriptedExpert:
    """Waypoint-following expert; subclasses define `phases()` for their task."""

    # Scales the target offset per task so that success falls off gradually with `noise` on every task
    # (touching a ball forgives more than stacking a block).
    offset_scale = 1.0
    # Near misses: which aim is off ("touch": where to touch/grasp; "place": where to put) and by how far (m),
    # beyond the task's success tolerance.
    near_miss_offset = "touch"
    near_miss_radius_m = (0.06, 0.08)
    near_miss_direction: tuple[float, float] | None = None  # a fixed horizontal direction (else a random one)

    def __init__(self, task_name: str, *, noise: float, seed: int | None, near_miss: bool = False):
        self.task_name = task_name
        self.noise = float(noise)
        self.near_miss = bool(near_miss)
        self.rng = np.random.default_rng(seed)
        self._episode_key: tuple | None = None
        self.reset()

    # ---------------------------------------------------------------------------------------------- API
    def reset(self) -> None:
        spread = TARGET_OFFSET_STD_M * self.offset_scale * self.noise
        self.touch_offset = np.append(self.rng.normal(0.0, spread, 2), 0.0)
        self.place_offset = np.append(self.rng.normal(0.0, spread, 2), 0.0)
        self.release_early = bool(self.rng.random() < EARLY_RELEASE_PROB * self.noise)
        if self.near_miss:
            angle = self.rng.uniform(0.0, 2 * np.pi)
            direction = self.near_miss_direction or (np.cos(angle), np.sin(angle))
            miss = self.rng.uniform(*self.near_miss_radius_m) * np.append(direction, 0.0)
            if self.near_miss_offset == "touch":
                self.touch_offset = self.touch_offset + miss
            else:
                self.place_offset = self.place_offset + miss
        self.release_probability_per_step = 0.35
        self.released = False
        self._phase_index = 0
        self._steps_in_phase = 0
        self._phases: list[Phase] | None = None
        self._fresh = True  # reset() ran and no episode has been acted in since

    def act(self, env) -> np.ndarray:
        sim = env.unwrapped
        if getattr(sim, "control_mode", "ee_delta") != "ee_delta":
            raise ValueError(f"scripted experts drive control_mode='ee_delta'; this env uses {sim.control_mode!r}")
        if sim.task_name != self.task_name:
            raise ValueError(f"this expert is for task {self.task_name!r} but the env runs {sim.task_name!r}")
        episode_key = (id(sim), sim.episode_index)
        if episode_key != self._episode_key:
            if not self._fresh:
                self.reset()  # a new episode began without reset(): start the state machine over
            self._episode_key = episode_key
            self._fresh = False
            self._phases = self.phases(sim)

        phase = self._phases[min(self._phase_index, len(self._phases) - 1)]
        ee = sim.ee_position()
        if phase.restart_if is not None and phase.restart_if(sim):
            self._phase_index, self._steps_in_phase = 0, 0
            phase = self._phases[0]
        target = phase.target(sim)
        if np.linalg.norm(target - ee) < phase.tolerance_m and self._steps_in_phase >= phase.min_steps or (
            self._steps_in_phase >= PHASE_TIMEOUT_STEPS
        ):
            if self._phase_index < len(self._phases) - 1:
                self._phase_index += 1
                self._steps_in_phase = 0
                phase = self._phases[self._phase_index]
                target = phase.target(sim)
        self._steps_in_phase += 1

        delta = (target - ee) / scene.EE_MAX_STEP_M
        delta = delta * min(1.0, phase.max_speed / max(np.max(np.abs(delta)), 1e-9))
        gripper = phase.gripper
        if phase.carrying and self.release_early and (
            self.released or self.rng.random() < self.release_probability_per_step
        ):
            self.released = True
            gripper = OPEN
        action = np.append(delta, gripper)
        if self.noise > 0:
            action[:3] += self.rng.normal(0.0, ACTION_NOISE_STD * self.noise, 3)
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    @property
    def phase_name(self) -> str:
        return self._phases[min(self._phase_index, len(self._phases) - 1)].name if self._phases else "start"

    def phases(self, sim) -> list[Phase]:
        raise NotImplementedError

    # ------------------------------------------------------------------------------------------ helpers
    def pick_and_place_phases(self, grasp: Callable, place: Callable) -> list[Phase]:
        """Grasp at `grasp(sim)` (block centre), carry, set down with the block centre at `place(sim)`."""
        up = np.array([0.0, 0.0, 1.0])

        def grasp_point(sim):
            return grasp(sim) + self.touch_offset + [0.0, 0.0, 0.002]

        def above(point_fn, height):
            return lambda sim: np.append(point_fn(sim)[:2], height)

        def place_point(sim):
            return place(sim) + self.place_offset + 0.006 * up

        return [
            Phase(name="above_block", target=above(grasp_point, 0.10), gripper=OPEN, tolerance_m=0.015),
            Phase(name="descend", target=grasp_point, gripper=OPEN, tolerance_m=0.008, max_speed=0.7),
            Phase(name="close", target=grasp_point, gripper=CLOSED, tolerance_m=1.0, min_steps=3),
            Phase(name="lift", target=above(grasp_point, CARRY_HEIGHT_M), gripper=CLOSED, tolerance_m=0.03,
                  carrying=True),
            Phase(name="carry", target=above(place_point, CARRY_HEIGHT_M), gripper=CLOSED, tolerance_m=0.012,
                  carrying=True),
            Phase(name="lower", target=place_point, gripper=CLOSED, tolerance_m=0.008, max_speed=0.5,
                  carrying=True),
            Phase(name="release", target=place_point, gripper=OPEN, tolerance_m=1.0, min_steps=3),
            Phase(name="retreat", target=above(place_point, CARRY_HEIGHT_M), gripper=OPEN, tolerance_m=0.01),
        ]


class ReachExpert(ScriptedExpert):
    offset_scale = 3.0
    near_miss_radius_m = (0.065, 0.09)  # success: grasp point within 4.5 cm of the ball centre

    def phases(self, sim):
        task = sim.task

        def touch(sim):
            return task.target_position(sim) + self.touch_offset + [0.0, 0.0, 0.01]

        return [Phase(name="touch", target=touch, gripper=CLOSED, tolerance_m=0.0)]


class ButtonExpert(ScriptedExpert):
    near_miss_radius_m = (0.045, 0.065)  # beside the 2.4 cm cap, on its base or the table

    def phases(self, sim):
        task = sim.task

        def above(sim):
            return task.target_position(sim) + self.touch_offset + [0.0, 0.0, 0.07]

        def press(sim):
            return task.target_position(sim) + self.touch_offset - [0.0, 0.0, 0.01]

        return [
            Phase(name="above_button", target=above, gripper=CLOSED, tolerance_m=0.012),
            Phase(name="press", target=press, gripper=CLOSED, tolerance_m=0.0, max_speed=0.6),
        ]


class PushExpert(ScriptedExpert):
    BEHIND_M = 0.065  # grasp point behind the block centre before pushing
    CONTACT_M = 0.036  # grasp point to block centre while in contact (half block + half finger)
    PUSH_HEIGHT_M = 0.025
    near_miss_offset = "place"
    # the block's centre must end within 5 cm (per axis) of the zone's; the miss is turned across the push line
    # (in phases), or the block would cross the zone on its way to a goal beyond it
    near_miss_radius_m = (0.13, 0.16)

    def phases(self, sim):
        task = sim.task
        if self.near_miss:
            line = task.zone_xy - sim.body_position("block")[:2]
            across = np.array([-line[1], line[0]]) / max(np.linalg.norm(line), 1e-6)
            side = 1.0 if self.place_offset[0] >= 0 else -1.0
            self.place_offset = np.append(side * np.linalg.norm(self.place_offset[:2]) * across, 0.0)

        def goal_xy(sim):
            return task.zone_xy + self.place_offset[:2]

        def direction(sim):
            offset = goal_xy(sim) - sim.body_position("block")[:2]
            return offset / max(np.linalg.norm(offset), 1e-6)

        def behind(sim, height):
            block = sim.body_position("block")[:2] + self.touch_offset[:2]
            return np.append(block - direction(sim) * self.BEHIND_M, height)

        def push(sim):
            block = sim.body_position("block")[:2]
            remaining = np.linalg.norm(goal_xy(sim) - block)
            # Aim a little past the goal so the block's centre ends inside it despite contact slip.
            return np.append(block + direction(sim) * (min(remaining, 0.04) + 0.01 - self.CONTACT_M), self.PUSH_HEIGHT_M)

        def lost_contact(sim):
            """The block slid off the fingers' line: lift and approach again from behind."""
            to_block = sim.body_position("block")[:2] - sim.ee_position()[:2]
            distance = np.linalg.norm(to_block)
            lateral = abs(to_block[0] * direction(sim)[1] - to_block[1] * direction(sim)[0])
            return bool(distance > 0.09 or lateral > 0.02 or np.dot(to_block, direction(sim)) < 0)

        return [
            Phase(name="above_behind", target=lambda s: behind(s, 0.08), gripper=CLOSED, tolerance_m=0.015),
            Phase(name="lower", target=lambda s: behind(s, self.PUSH_HEIGHT_M), gripper=CLOSED, tolerance_m=0.01),
            Phase(name="push", target=push, gripper=CLOSED, tolerance_m=0.0, max_speed=0.5, restart_if=lost_contact),
        ]


class DrawerExpert(ScriptedExpert):
    # the fingers come down in front of the handle instead of behind it and pull nothing (the handle is too wide
    # to miss sideways, and a miss towards the cabinet can still catch the drawer's front)
    near_miss_radius_m = (0.04, 0.06)
    near_miss_direction = (-1.0, 0.0)

    def phases(self, sim):
        task = sim.task
        start = task.hook_position(sim) + self.touch_offset

        def above(sim):
            return start + [0.0, 0.0, 0.10]

        def pulled(sim):
            return start - [0.13, 0.0, 0.0]

        return [
            Phase(name="above_hook", target=above, gripper=CLOSED, tolerance_m=0.012),
            Phase(name="hook", target=lambda s: start, gripper=CLOSED, tolerance_m=0.01, max_speed=0.7),
            Phase(name="pull", target=pulled, gripper=CLOSED, tolerance_m=0.0, max_speed=0.5),
        ]


class PickPlaceExpert(ScriptedExpert):
    offset_scale = 0.7
    near_miss_offset = "place"
    near_miss_radius_m = (0.08, 0.11)  # success: block centre within 5 cm of the plate's

    def phases(self, sim):
        task = sim.task
        return self.pick_and_place_phases(lambda s: s.body_position("block"), lambda s: task.place_position())


class StackExpert(ScriptedExpert):
    offset_scale = 0.3
    near_miss_offset = "place"
    near_miss_radius_m = (0.05, 0.07)  # success: within 2 cm of the base block's centre

    def phases(self, sim):
        task = sim.task
        return self.pick_and_place_phases(lambda s: s.body_position("block"), task.place_position)


EXPERTS: dict[str, type[ScriptedExpert]] = {
    "reach": ReachExpert,
    "button": ButtonExpert,
    "push": PushExpert,
    "drawer": DrawerExpert,
    "pick_place": PickPlaceExpert,
    "stack": StackExpert,
}


def make_expert(task: str, *, noise: float = 0.0, seed: int | None = None, near_miss: bool = False) -> ScriptedExpert:
    """The scripted expert of `task`; `noise` in [0, 1] from clean demos (0) to clumsy near-misses (1);
    `near_miss=True`: a deliberate failure (aimed beside the target, see the module docstring)."""
    get_task_spec(task)  # unknown task names fail with the list of valid ones
    if task not in EXPERTS:
        raise ValueError(f"task {task!r} has no scripted expert yet; experts exist for {sorted(EXPERTS)}")
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not 0.0 <= float(noise) <= 1.0:
        raise ValueError(f"noise={noise!r} must be a number in [0, 1] (0 = clean demos, 1 = clumsy)")
    return EXPERTS[task](task, noise=float(noise), seed=seed, near_miss=near_miss)


def run_episode(env, expert: ScriptedExpert, *, seed: int | None = None, record_frames: bool = False):
    """Run one expert episode; returns (success, num_steps, frames of the front camera if asked)."""
    observation, info = env.reset(seed=seed)
    expert.reset()
    frames = [observation["observation.images.front"]] if record_frames else []
    steps = 0
    while True:
        observation, _, terminated, truncated, info = env.step(expert.act(env))
        steps += 1
        if record_frames:
            frames.append(observation["observation.images.front"])
        if terminated or truncated:
            return bool(info["is_success"]), steps, frames


__all__ = ["EXPERTS", "ScriptedExpert", "list_tasks", "make_expert", "run_episode"]
