"""The gymnasium env shared by every task: action handling, IK, physics stepping, observations, episode state.

`TabletopEnv` owns one MjModel/MjData pair and one reusable renderer. A `Task` (one file per task, registered
in `registry.py`) adds objects to the scene, randomizes them at reset, writes the instruction and says whether
the episode succeeded. The env never exposes object poses in the observation; tasks and scripted experts read
them through the privileged helpers (`body_position`, ...) on `env.unwrapped`.

Actions (float32, shape (4,), every entry in [-1, 1]):
  control_mode="ee_delta" (default): [dx, dy, dz, gripper]; the end-effector target moves by
      action[:3] * EE_MAX_STEP_M (0.05 m) per control step, clipped to the workspace box and kept within
      2 * EE_MAX_STEP_M of the measured end-effector so pushing against something does not wind up.
  control_mode="joint_delta": [d_yaw, d_shoulder, d_elbow, gripper]; joint targets move by
      action[:3] * JOINT_MAX_STEP_RAD (0.15 rad). The wrist is set so the hand points down in both modes.
  gripper: -1 fully open, +1 fully closed, linear in between (finger position targets; force-limited).
Analytic IK turns the end-effector target into joint position targets for position actuators, so the visible
arm moves as an arm (no mocap). Control runs at CONTROL_HZ (10 Hz) with SUBSTEPS_PER_CONTROL physics steps.

observation.state (float32, STATE_DIM = 8), proprioception only:
  [0:3] end-effector (grasp point) position xyz, metres, world frame
  [3]   gripper opening, metres (distance between finger pads, 0 .. 0.09)
  [4:7] end-effector linear velocity xyz, m/s
  [7]   gripper opening velocity, m/s
"""

from __future__ import annotations

import dataclasses
import math
import string
from typing import Any, ClassVar

import gymnasium
import mujoco
import numpy as np

from robot_si.envs import scene
from robot_si.envs.render import FrameRenderer, select_backend

ACTION_DIM = 4
STATE_DIM = 8
# Bounds of observation.state: positions within 1 m of the table centre, opening 0..0.1 m, speeds below 10 m/s.
STATE_LOW = np.array([-1.0, -1.0, -1.0, 0.0, -10.0, -10.0, -10.0, -10.0], np.float32)
STATE_HIGH = np.array([1.0, 1.0, 1.0, 0.1, 10.0, 10.0, 10.0, 10.0], np.float32)
ALLOWED_IMAGE_SIZES = (64, 96, 128)
ALLOWED_CAMERAS = ("front", "wrist")
INSTRUCTION_SPLITS = ("train", "heldout")
CONTROL_MODES = ("ee_delta", "joint_delta")
JOINT_MAX_STEP_RAD = 0.15
ACTION_TOLERANCE = 1e-6
EE_LEASH_M = 2 * scene.EE_MAX_STEP_M
# Characters an instruction may contain (the gymnasium Text space's charset).
INSTRUCTION_CHARSET = string.ascii_letters + string.digits + " ,.'-"
INSTRUCTION_MAX_LENGTH = 128


@dataclasses.dataclass(frozen=True, kw_only=True)
class TaskSpec:
    """What a task is, independent of any env instance (what `get_task_spec` returns)."""

    name: str  # e.g. "pick_place"; `make_env` takes this
    class_name: str  # e.g. "PickPlace"; the gymnasium id is robot_si/<class_name>-v0
    difficulty: int  # 1 (easiest) .. 5
    tags: tuple[str, ...]
    max_episode_steps: int  # default episode length in control steps (10 Hz)
    train_instructions: tuple[str, ...]  # templates, e.g. "touch the {color} ball"
    heldout_instructions: tuple[str, ...]
    description: str

    @property
    def gym_id(self) -> str:
        return f"robot_si/{self.class_name}-v0"

    def instructions(self, split: str) -> tuple[str, ...]:
        if split not in INSTRUCTION_SPLITS:
            raise ValueError(f"instruction_split={split!r} is not valid; use one of {INSTRUCTION_SPLITS}")
        return self.train_instructions if split == "train" else self.heldout_instructions


class Task:
    """One task: its objects, how reset randomizes them, and its success test. Subclass per task file."""

    spec: ClassVar[TaskSpec]

    def objects_xml(self) -> str:
        """MJCF inserted into the worldbody (bodies with free joints for movable objects)."""
        raise NotImplementedError

    def assets_xml(self) -> str:
        return ""

    def randomize(self, env: "TabletopEnv", rng: np.random.Generator) -> dict[str, str]:
        """Place and colour the objects for a new episode; return the fields the instruction templates use."""
        raise NotImplementedError

    def is_success(self, env: "TabletopEnv") -> bool:
        """Ground truth from the sim state (evaluation and audit only)."""
        raise NotImplementedError


def sample_separated_xy(
    rng: np.random.Generator,
    count: int,
    *,
    min_distance_m: float,
    low: tuple[float, float] = scene.OBJECT_REGION_LOW,
    high: tuple[float, float] = scene.OBJECT_REGION_HIGH,
    avoid: list[np.ndarray] | None = None,
) -> list[np.ndarray]:
    """`count` xy points inside [low, high] at least `min_distance_m` apart (and from `avoid`)."""
    placed: list[np.ndarray] = []
    others = list(avoid or [])
    for _ in range(2000):
        candidate = rng.uniform(low, high)
        if all(np.linalg.norm(candidate - p) >= min_distance_m for p in placed + others):
            placed.append(candidate)
            if len(placed) == count:
                return placed
    raise RuntimeError(f"could not place {count} objects {min_distance_m} m apart in {low}..{high}; widen the region")


def solve_ik(ee_target_xyz: np.ndarray) -> np.ndarray:
    """Joint targets (yaw, shoulder, elbow, wrist_pitch, wrist_roll) putting the grasp point at the target
    with the hand pointing down and the fingers closing along world y (elbow-up solution)."""
    dx = ee_target_xyz[0] - scene.ARM_BASE_XY[0]
    dy = ee_target_xyz[1] - scene.ARM_BASE_XY[1]
    yaw = math.atan2(dy, dx)
    radial = math.hypot(dx, dy)
    wrist_height = ee_target_xyz[2] + scene.WRIST_TO_GRASP_M - scene.SHOULDER_HEIGHT_M
    upper, fore = scene.UPPER_ARM_LENGTH_M, scene.FOREARM_LENGTH_M
    distance = min(max(math.hypot(radial, wrist_height), abs(upper - fore) + 0.05), upper + fore - 1e-3)
    cos_elbow = (distance**2 - upper**2 - fore**2) / (2 * upper * fore)
    elbow = math.acos(max(-1.0, min(1.0, cos_elbow)))
    # Angles are measured from the vertical, positive leaning away from the base.
    shoulder = math.atan2(radial, wrist_height) - math.atan2(fore * math.sin(elbow), upper + fore * math.cos(elbow))
    return np.array([yaw, shoulder, elbow, -(shoulder + elbow), -yaw])


class TabletopEnv(gymnasium.Env):
    """A language-conditioned tabletop task with a primitive-geom arm (see the module docstring for spaces)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": scene.CONTROL_HZ}

    def __init__(
        self,
        task: str | Task,
        *,
        image_size: int = 64,
        cameras: tuple[str, ...] | list[str] = ("front",),
        instruction_split: str = "train",
        max_episode_steps: int | None = None,
        render_backend: str | None = None,
        control_mode: str = "ee_delta",
        render_mode: str | None = "rgb_array",
    ):
        from robot_si.envs.registry import create_task

        self.task = create_task(task) if isinstance(task, str) else task
        spec = self.task.spec
        if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or (
            image_size not in ALLOWED_IMAGE_SIZES
        ):
            raise ValueError(f"image_size={image_size!r} is not supported; use one of {ALLOWED_IMAGE_SIZES}")
        cameras = (cameras,) if isinstance(cameras, str) else tuple(cameras)
        bad_cameras = [c for c in cameras if c not in ALLOWED_CAMERAS]
        if not cameras or bad_cameras or len(set(cameras)) != len(cameras):
            raise ValueError(
                f"cameras={cameras!r} is not valid; give a non-empty tuple of distinct names from {ALLOWED_CAMERAS}"
            )
        spec.instructions(instruction_split)  # validates the split name
        if max_episode_steps is None:
            max_episode_steps = spec.max_episode_steps
        if isinstance(max_episode_steps, bool) or not isinstance(max_episode_steps, (int, np.integer)) or (
            max_episode_steps < 1
        ):
            raise ValueError(f"max_episode_steps={max_episode_steps!r} must be a positive integer or None (default)")
        if control_mode not in CONTROL_MODES:
            raise ValueError(f"control_mode={control_mode!r} is not valid; use one of {CONTROL_MODES}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode={render_mode!r} is not supported; use 'rgb_array' or None")
        select_backend(render_backend)

        self.task_name = spec.name
        self.image_size = int(image_size)
        self.cameras = cameras
        self.instruction_split = instruction_split
        self.max_episode_steps = int(max_episode_steps)
        self.control_mode = control_mode
        self.render_mode = render_mode
        self.instruction = ""

        xml = scene.build_scene_xml(spec.name, self.task.objects_xml(), assets_xml=self.task.assets_xml())
        self.model = mujoco.MjModel.from_xml_string(xml)
        self.data = mujoco.MjData(self.model)
        self._ee_site = self.model.site("ee").id
        self._arm_qpos = np.array([self.model.joint(j).qposadr[0] for j in scene.ARM_JOINTS])
        self._finger_qpos = np.array([self.model.joint(j).qposadr[0] for j in scene.FINGER_JOINTS])
        self._finger_qvel = np.array([self.model.joint(j).dofadr[0] for j in scene.FINGER_JOINTS])
        self._arm_ctrl = np.array([self.model.actuator(j).id for j in scene.ARM_JOINTS])
        self._finger_ctrl = np.array([self.model.actuator(j).id for j in scene.FINGER_JOINTS])
        self._workspace_low = np.array(scene.WORKSPACE_LOW)
        self._workspace_high = np.array(scene.WORKSPACE_HIGH)
        self._renderer: FrameRenderer | None = None  # created on first frame, so a bad GL fails loudly there

        image_space = gymnasium.spaces.Box(0, 255, (self.image_size, self.image_size, 3), np.uint8)
        spaces: dict[str, gymnasium.Space] = {f"observation.images.{c}": image_space for c in cameras}
        spaces["observation.state"] = gymnasium.spaces.Box(STATE_LOW, STATE_HIGH, (STATE_DIM,), np.float32)
        spaces["task"] = gymnasium.spaces.Text(INSTRUCTION_MAX_LENGTH, min_length=1, charset=INSTRUCTION_CHARSET)
        self.observation_space = gymnasium.spaces.Dict(spaces)
        self.action_space = gymnasium.spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32)

        self._ee_target = np.array(scene.EE_HOME)
        self._joint_target = solve_ik(self._ee_target)
        self._gripper_command = -1.0
        self._elapsed_steps = 0
        self._episode_active = False
        self.episode_index = 0  # counts resets; lets experts notice a new episode
        self._velocity_buffer = np.zeros(6)

    # ----------------------------------------------------------------------------------------------- gym API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        rng = self.np_random
        mujoco.mj_resetData(self.model, self.data)
        home = np.array(scene.EE_HOME) + rng.uniform([-0.03, -0.05, -0.03], [0.03, 0.05, 0.03])
        self._ee_target = home
        self._joint_target = solve_ik(home)
        self._gripper_command = -1.0
        self.data.qpos[self._arm_qpos] = self._joint_target
        self.data.qpos[self._finger_qpos] = scene.FINGER_HALF_TRAVEL_M
        self._apply_controls()
        fields = self.task.randomize(self, rng)
        templates = self.task.spec.instructions(self.instruction_split)
        self.instruction = templates[int(rng.integers(len(templates)))].format(**fields)
        mujoco.mj_forward(self.model, self.data)
        mujoco.mj_step(self.model, self.data, nstep=10)  # let objects settle into contact
        self._elapsed_steps = 0
        self._episode_active = True
        self.episode_index += 1
        return self._observation(), self._info()

    def step(self, action):
        if not self._episode_active:
            raise RuntimeError(
                f"step() called on {self.task_name!r} before reset() or after the episode ended "
                "(terminated or truncated); call env.reset() first"
            )
        action = self._validated_action(action)
        if self.control_mode == "ee_delta":
            ee_now = self.ee_position()
            target = self._ee_target + action[:3] * scene.EE_MAX_STEP_M
            target = np.clip(target, ee_now - EE_LEASH_M, ee_now + EE_LEASH_M)
            self._ee_target = np.clip(target, self._workspace_low, self._workspace_high)
            self._joint_target = solve_ik(self._ee_target)
        else:
            target = self._joint_target.copy()
            target[:3] += action[:3] * JOINT_MAX_STEP_RAD
            low = self.model.jnt_range[[self.model.joint(j).id for j in scene.ARM_JOINTS[:3]], 0]
            high = self.model.jnt_range[[self.model.joint(j).id for j in scene.ARM_JOINTS[:3]], 1]
            target[:3] = np.clip(target[:3], low, high)
            target[3] = -(target[1] + target[2])
            target[4] = -target[0]
            self._joint_target = target
        self._gripper_command = float(action[3])
        self._apply_controls()
        mujoco.mj_step(self.model, self.data, nstep=scene.SUBSTEPS_PER_CONTROL)
        self._elapsed_steps += 1

        success = self.task.is_success(self)
        terminated = success
        truncated = (not terminated) and self._elapsed_steps >= self.max_episode_steps
        if terminated or truncated:
            self._episode_active = False
        return self._observation(), float(success), terminated, truncated, self._info(success)

    def render(self):
        if self.render_mode is None:
            raise RuntimeError("render() needs render_mode='rgb_array'; create the env with it")
        return self._frame("front")

    def close(self):
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    # ------------------------------------------------------------------------------ privileged sim helpers
    def ee_position(self) -> np.ndarray:
        return self.data.site_xpos[self._ee_site].copy()

    def gripper_opening(self) -> float:
        return float(self.data.qpos[self._finger_qpos].sum())

    def body_position(self, name: str) -> np.ndarray:
        return self.data.body(name).xpos.copy()

    def joint_position(self, name: str) -> float:
        return float(self.data.joint(name).qpos[0])

    def set_free_body_pose(self, name: str, xyz, yaw_rad: float = 0.0) -> None:
        joint = self.model.body(name).jntadr[0]
        address = self.model.jnt_qposadr[joint]
        self.data.qpos[address : address + 3] = xyz
        self.data.qpos[address + 3 : address + 7] = [math.cos(yaw_rad / 2), 0.0, 0.0, math.sin(yaw_rad / 2)]
        self.data.qvel[self.model.jnt_dofadr[joint] : self.model.jnt_dofadr[joint] + 6] = 0.0

    def set_static_body_position(self, name: str, xyz, yaw_rad: float | None = None) -> None:
        """Move a body without a free joint (buttons, plates, cabinets) by editing this env's model."""
        body = self.model.body(name).id
        self.model.body_pos[body] = xyz
        if yaw_rad is not None:
            self.model.body_quat[body] = [math.cos(yaw_rad / 2), 0.0, 0.0, math.sin(yaw_rad / 2)]

    def set_geom_color(self, geom_name: str, rgb) -> None:
        self.model.geom(geom_name).rgba[:3] = rgb

    @property
    def elapsed_steps(self) -> int:
        return self._elapsed_steps

    # ------------------------------------------------------------------------------------------- internals
    def _validated_action(self, action) -> np.ndarray:
        try:
            array = np.asarray(action, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise ValueError(f"action {action!r} is not numeric; pass a float array of shape ({ACTION_DIM},)") from error
        if array.shape != (ACTION_DIM,):
            raise ValueError(f"action shape {array.shape} is wrong; pass shape ({ACTION_DIM},): dx, dy, dz, gripper")
        if not np.all(np.isfinite(array)):
            raise ValueError(f"action {array.tolist()} contains NaN or inf; check the policy output")
        if np.any(np.abs(array) > 1.0 + ACTION_TOLERANCE):
            raise ValueError(
                f"action {array.tolist()} is outside [-1, 1]; clip it deliberately (np.clip(action, -1, 1)) "
                "before env.step"
            )
        return np.clip(array, -1.0, 1.0)  # only removes the tolerated 1e-6 overshoot

    def _apply_controls(self) -> None:
        self.data.ctrl[self._arm_ctrl] = self._joint_target
        finger_target = scene.FINGER_HALF_TRAVEL_M * (1.0 - self._gripper_command) / 2.0
        self.data.ctrl[self._finger_ctrl] = finger_target

    def _state(self) -> np.ndarray:
        mujoco.mj_objectVelocity(
            self.model, self.data, mujoco.mjtObj.mjOBJ_SITE, self._ee_site, self._velocity_buffer, 0
        )
        return np.concatenate(
            [
                self.data.site_xpos[self._ee_site],
                [self.data.qpos[self._finger_qpos].sum()],
                self._velocity_buffer[3:6],
                [self.data.qvel[self._finger_qvel].sum()],
            ]
        ).astype(np.float32).clip(STATE_LOW, STATE_HIGH)  # clip only guards the space against a physics blow-up

    def _frame(self, camera: str) -> np.ndarray:
        if self._renderer is None:
            self._renderer = FrameRenderer(self.model, self.image_size)
        return self._renderer.render(self.data, camera)

    def _observation(self) -> dict[str, Any]:
        observation: dict[str, Any] = {f"observation.images.{c}": self._frame(c) for c in self.cameras}
        observation["observation.state"] = self._state()
        observation["task"] = self.instruction
        return observation

    def _info(self, success: bool | None = None) -> dict[str, Any]:
        if success is None:
            success = self.task.is_success(self)
        return {"is_success": bool(success), "task_name": self.task_name}
