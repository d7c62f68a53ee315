"""The tagged task registry (dm_control suite style): task name -> Task class, plus gymnasium registration.

Adding a task = one file under `robot_si/envs/tasks/` with a `Task` subclass decorated by `@register`, and its
module name in `TASK_MODULES`. Tests, `list_tasks()`, the CLI and the gymnasium ids pick it up from here.
"""

from __future__ import annotations

import importlib

import gymnasium

from robot_si.envs.base import Task, TaskSpec

# Order = graded difficulty, easiest first (also the order `list_tasks()` returns).
TASK_MODULES = ("reach", "button", "push", "drawer", "pick_place", "stack")

_TASKS: dict[str, type[Task]] = {}


def register(task_class: type[Task]) -> type[Task]:
    """Class decorator: add a Task subclass to the registry under `task_class.spec.name`."""
    name = task_class.spec.name
    if name in _TASKS and _TASKS[name] is not task_class:
        raise ValueError(f"task name {name!r} is registered twice; give the new task another spec.name")
    _TASKS[name] = task_class
    return task_class


def _load_all() -> None:
    if len(_TASKS) < len(TASK_MODULES):
        for module in TASK_MODULES:
            importlib.import_module(f"robot_si.envs.tasks.{module}")


def list_tasks(tag: str | None = None) -> list[str]:
    """Registered task names in difficulty order, optionally only those carrying `tag`."""
    _load_all()
    names = sorted(_TASKS, key=lambda n: (_TASKS[n].spec.difficulty, TASK_MODULES.index(n) if n in TASK_MODULES else 99))
    return [n for n in names if tag is None or tag in _TASKS[n].spec.tags]


def _task_class(name: str) -> type[Task]:
    _load_all()
    if not isinstance(name, str) or name not in _TASKS:
        raise ValueError(f"unknown task {name!r}; valid tasks: {', '.join(list_tasks())}")
    return _TASKS[name]


def get_task_spec(name: str) -> TaskSpec:
    """Difficulty, tags, default max steps and instruction templates of a task."""
    return _task_class(name).spec


def create_task(name: str) -> Task:
    return _task_class(name)()


def register_gymnasium_ids() -> None:
    """Register `robot_si/<ClassName>-v0` for every task (idempotent)."""
    for name in list_tasks():
        spec = get_task_spec(name)
        if spec.gym_id not in gymnasium.registry:
            gymnasium.register(
                id=spec.gym_id,
                entry_point="robot_si.envs.base:TabletopEnv",
                kwargs={"task": name},
                max_episode_steps=None,  # the env truncates itself at spec.max_episode_steps
                disable_env_checker=True,
            )
