"""Simulator throughput and scripted-expert quality of the `robot_si.envs` task suite (one CPU core).

Measures: raw physics steps/s, render fps of the front camera at 64/96/128 px, env steps/s (physics substeps +
64 px render + observation) per task, and scripted-expert success per task at several noise levels.
Writes bench/results/sim_throughput.json and prints Markdown tables.

    .venv/bin/python bench/sim_throughput.py [--episodes 20] [--noise 0.0 0.3 0.6] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from robot_si.envs import list_tasks, make_env
from robot_si.envs.experts import make_expert, run_episode
from robot_si.envs.render import active_backend

RESULTS = Path(__file__).resolve().parent / "results" / "sim_throughput.json"


def physics_steps_per_s(task: str, seconds: float) -> float:
    import mujoco

    env = make_env(task)
    env.reset(seed=0)
    model, data = env.unwrapped.model, env.unwrapped.data
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        mujoco.mj_step(model, data, nstep=500)
        steps += 500
    rate = steps / (time.perf_counter() - start)
    env.close()
    return rate


def render_fps(image_size: int, seconds: float) -> float:
    env = make_env("stack", image_size=image_size)
    env.reset(seed=0)
    env.render()  # the GL context is created on the first frame
    frames, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        env.render()
        frames += 1
    rate = frames / (time.perf_counter() - start)
    env.close()
    return rate


def env_steps_per_s(task: str, seconds: float) -> float:
    env = make_env(task)
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        _, _, terminated, truncated, _ = env.step(rng.uniform(-1, 1, 4).astype(np.float32))
        steps += 1
        if terminated or truncated:
            env.reset()
    rate = steps / (time.perf_counter() - start)
    env.close()
    return rate


def expert_success(task: str, noise: float, episodes: int) -> dict:
    env = make_env(task)
    expert = make_expert(task, noise=noise, seed=1000)
    outcomes = [run_episode(env, expert, seed=seed) for seed in range(episodes)]
    env.close()
    successes = [ok for ok, _, _ in outcomes]
    return {
        "success_rate": float(np.mean(successes)),
        "episodes": episodes,
        "mean_steps_successful": float(np.mean([n for ok, n, _ in outcomes if ok])) if any(successes) else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--noise", type=float, nargs="+", default=[0.0, 0.3, 0.6])
    parser.add_argument("--seconds", type=float, default=2.0, help="timing window per measurement")
    parser.add_argument("--quick", action="store_true", help="3 episodes, 0.5 s windows, no JSON written")
    args = parser.parse_args()
    if args.quick:
        args.episodes, args.seconds = 3, 0.5
    tasks = list_tasks()

    physics = {task: physics_steps_per_s(task, args.seconds) for task in tasks}
    renders = {str(size): render_fps(size, args.seconds) for size in (64, 96, 128)}
    env_rates = {task: env_steps_per_s(task, args.seconds) for task in tasks}
    experts = {task: {str(n): expert_success(task, n, args.episodes) for n in args.noise} for task in tasks}

    result = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count()},
        "gl_backend": active_backend(),
        "note": "single process, one core; env step = 25 physics substeps (10 Hz control) + 64 px front render",
        "physics_steps_per_s": physics,
        "render_fps_front": renders,
        "env_steps_per_s_64px": env_rates,
        "expert_success": experts,
        "episodes_per_cell": args.episodes,
    }
    print("| task | physics steps/s | env steps/s (64 px) | " + " | ".join(f"expert noise {n}" for n in args.noise) + " |")
    print("| --- | --- | --- | " + " | ".join("---" for _ in args.noise) + " |")
    for task in tasks:
        cells = " | ".join(f"{experts[task][str(n)]['success_rate']:.2f}" for n in args.noise)
        print(f"| {task} | {physics[task]:,.0f} | {env_rates[task]:,.0f} | {cells} |")
    print()
    print("| render size | fps |\n| --- | --- |")
    for size, fps in renders.items():
        print(f"| {size} px | {fps:,.0f} |")
    if not args.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=2) + "\n")
        print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
