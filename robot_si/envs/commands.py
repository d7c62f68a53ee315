"""`robot-si envs ...`: list the task suite, and render a scripted-expert episode to an animated GIF.

    robot-si envs list
    robot-si envs show TASK --out FILE.gif [--seed N] [--size 128] [--noise 0.0] [--split train]

`render_all_tasks(out_dir, ...)` writes one GIF per task (used by the README's first command).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from robot_si.envs import ALLOWED_IMAGE_SIZES, get_task_spec, list_tasks, make_env
from robot_si.envs.experts import make_expert, run_episode

GIF_FPS = 10


def write_gif(frames: list[np.ndarray], path: str | Path, *, fps: int = GIF_FPS) -> Path:
    """Write uint8 (H, W, 3) frames as a looping animated GIF; creates parent folders."""
    import imageio.v2 as imageio

    if not frames:
        raise ValueError(f"no frames to write to {path}; run at least one step")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Hold the last frame so a viewer sees how the episode ended before it loops.
    imageio.mimsave(path, [*frames, *([frames[-1]] * 5)], duration=1000 / fps, loop=0)
    return path


def show_task(
    task: str, out: str | Path, *, seed: int = 0, image_size: int = 128, noise: float = 0.0, split: str = "train"
) -> tuple[Path, bool, str]:
    """Run the scripted expert for one episode and save the front camera as a GIF; returns (path, success, text)."""
    env = make_env(task, image_size=image_size, instruction_split=split)
    try:
        expert = make_expert(task, noise=noise, seed=seed)
        success, _, frames = run_episode(env, expert, seed=seed, record_frames=True)
        return write_gif(frames, out), success, env.unwrapped.instruction
    finally:
        env.close()


def render_all_tasks(
    out_dir: str | Path, *, seed: int = 0, image_size: int = 128, noise: float = 0.0
) -> list[Path]:
    """One expert GIF per registered task, `<out_dir>/<task>.gif`; returns their paths."""
    return [
        show_task(task, Path(out_dir) / f"{task}.gif", seed=seed, image_size=image_size, noise=noise)[0]
        for task in list_tasks()
    ]


def _list() -> int:
    print(f"{'task':<12} {'difficulty':>10} {'max_steps':>9}  {'gym id':<24} example instruction")
    for name in list_tasks():
        spec = get_task_spec(name)
        example = spec.train_instructions[0].format(color="red", base_color="blue")
        print(f"{name:<12} {spec.difficulty:>10} {spec.max_episode_steps:>9}  {spec.gym_id:<24} {example}")
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="robot-si envs", description="the MuJoCo tabletop task suite")
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("list", help="print every task with difficulty, max steps and an instruction")
    show = sub.add_parser("show", help="run the scripted expert for one episode and write an animated GIF")
    show.add_argument("task", help=f"one of: {', '.join(list_tasks())}")
    show.add_argument("--out", required=True, help="GIF path to write, e.g. reach.gif")
    show.add_argument("--seed", type=int, default=0)
    show.add_argument("--size", type=int, default=128, help=f"image size, one of {ALLOWED_IMAGE_SIZES}")
    show.add_argument("--noise", type=float, default=0.0, help="expert noise in [0, 1]")
    show.add_argument("--split", default="train", help="instruction split: train or heldout")
    args = parser.parse_args(argv[1:])
    if args.action == "list":
        return _list()
    path, success, instruction = show_task(
        args.task, args.out, seed=args.seed, image_size=args.size, noise=args.noise, split=args.split
    )
    print(f"{path}  task={args.task}  instruction={instruction!r}  success={success}")
    return 0
