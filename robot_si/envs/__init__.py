"""robot_si.envs: the MuJoCo tabletop task suite (primitive-geom arm, language-conditioned tasks).

Owns the scene, the tasks and their registry, scripted experts, rendering and the `robot-si envs` command.
Knows nothing of policies, stores or the loop. Ground truth (`info["is_success"]`) is produced here only.

Public API:
    make_env(task, *, image_size=64, cameras=("front",), instruction_split="train", max_episode_steps=None,
             render_backend=None, control_mode="ee_delta") -> TabletopEnv (a gymnasium.Env)
    list_tasks(tag=None) -> list[str];  get_task_spec(name) -> TaskSpec;  ACTION_DIM, STATE_DIM
    gymnasium ids robot_si/<ClassName>-v0, e.g. gymnasium.make("robot_si/Reach-v0")
See `base.py` for the observation, state and action layout and `experts.py` for the scripted experts.
"""

from __future__ import annotations

# The GL backend must be chosen before mujoco is imported anywhere in the process.
from robot_si.envs.render import select_backend as _select_backend

_select_backend()

from robot_si.envs.base import (  # noqa: E402
    ACTION_DIM,
    ALLOWED_IMAGE_SIZES,
    STATE_DIM,
    TabletopEnv,
    TaskSpec,
)
from robot_si.envs.registry import get_task_spec, list_tasks, register_gymnasium_ids  # noqa: E402


def make_env(
    task: str,
    *,
    image_size: int = 64,
    cameras: tuple[str, ...] = ("front",),
    instruction_split: str = "train",
    max_episode_steps: int | None = None,
    render_backend: str | None = None,
    control_mode: str = "ee_delta",
) -> TabletopEnv:
    """Create one task env. Raises ValueError naming the bad argument (unknown task, image size, camera, ...)."""
    get_task_spec(task)  # unknown names fail here with the list of valid tasks
    return TabletopEnv(
        task,
        image_size=image_size,
        cameras=cameras,
        instruction_split=instruction_split,
        max_episode_steps=max_episode_steps,
        render_backend=render_backend,
        control_mode=control_mode,
    )


register_gymnasium_ids()

__all__ = [
    "ACTION_DIM",
    "ALLOWED_IMAGE_SIZES",
    "STATE_DIM",
    "TabletopEnv",
    "TaskSpec",
    "get_task_spec",
    "list_tasks",
    "make_env",
]
