"""Episode store throughput: write/read frames/s, append latency, image vs video mode, training-view frames/s,
and how much background writing slows a collection loop, next to the simulator's render rate.

    .venv/bin/python bench/store_throughput.py            # ~2 min on 2 busy cores
    robot-si bench store [--episodes N] [--frames T]

Writes bench/results/store_throughput.json and prints a Markdown table. Frames come from the real env
(robot_si.envs, random actions) when it is importable, else from robot_si.data.synthetic.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from robot_si.data import EpisodeStore  # noqa: E402
from robot_si.data.synthetic import synthetic_episode, synthetic_meta  # noqa: E402

RESULTS = REPO_ROOT / "bench" / "results" / "store_throughput.json"


def env_frames(image_size: int, num_frames: int, seed: int):
    """(frames dict, seconds to render+step them) from the real env with random actions; None without envs."""
    try:
        from robot_si.envs import make_env
    except ImportError:
        return None
    env = make_env("push", image_size=image_size)
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    images, states, actions = [], [], []
    start = time.perf_counter()
    while len(actions) < num_frames:
        action = rng.uniform(-1, 1, 4).astype(np.float32)
        images.append(obs["observation.images.front"])
        states.append(obs["observation.state"])
        actions.append(action)
        obs, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            obs, _ = env.reset(seed=seed + len(actions))
    seconds = time.perf_counter() - start
    env.close()
    frames = {"observation.images.front": np.stack(images), "observation.state": np.stack(states), "action": np.stack(actions)}
    return frames, seconds


def episode(image_size: int, num_frames: int, seed: int) -> dict:
    real = env_frames(image_size, num_frames, seed)
    return real[0] if real else synthetic_episode(num_frames, image_size=image_size, seed=seed)


def bench_mode(tmp: Path, *, image_size: int, use_videos: bool, episodes: list[dict], num_frames: int) -> dict:
    root = tmp / f"store-{image_size}-{'video' if use_videos else 'image'}"
    store = EpisodeStore.create(root, fps=10, image_size=image_size, state_dim=8, action_dim=4, use_videos=use_videos)
    store.append_episode(episodes[0], synthetic_meta("warmup", num_frames))  # imports lerobot, warms caches
    latencies = []
    for i, frames in enumerate(episodes):
        start = time.perf_counter()
        store.append_episode(frames, synthetic_meta(f"e{i}", num_frames, seed=i))
        latencies.append(time.perf_counter() - start)
    start = time.perf_counter()
    loaded = [store.load_episode(f"e{i}") for i in range(len(episodes))]
    read_seconds = time.perf_counter() - start
    exact = all(np.array_equal(a["observation.images.front"], b["observation.images.front"]) for a, b in zip(episodes, loaded, strict=True))
    size_bytes = sum(p.stat().st_size for p in (root / "shards").rglob("*") if p.is_file())
    total_frames = num_frames * len(episodes)
    return {
        "image_size": image_size,
        "mode": "video" if use_videos else "image",
        "episodes": len(episodes),
        "frames_per_episode": num_frames,
        "append_latency_s_median": statistics.median(latencies),
        "append_latency_s_max": max(latencies),
        "write_frames_per_s": total_frames / sum(latencies),
        "read_frames_per_s": total_frames / read_seconds,
        "bytes_per_frame": size_bytes / total_frames,
        "lossless": exact,
    }


def bench_collection_overhead(tmp: Path, *, image_size: int, num_episodes: int, num_frames: int) -> dict | None:
    """Collect episodes with the env alone and with the background writer, interleaved so load drift cancels."""
    try:
        import robot_si.envs  # noqa: F401
    except ImportError:
        return None
    store = EpisodeStore.create(tmp / "overhead", fps=10, image_size=image_size, state_dim=8, action_dim=4)
    env_only = with_writer = submit_seconds = 0.0
    with store.writer() as writer:
        writer.submit(*_warmup(image_size, num_frames)).result()  # the worker process imports lerobot once
        (worker_pid,) = writer._executor._processes  # bench-only peek, to read the worker's CPU time
        cpu_before = _process_cpu_seconds(worker_pid)
        futures = []
        for seed in range(num_episodes):
            env_only += env_frames(image_size, num_frames, seed)[1]
            start = time.perf_counter()
            frames, _ = env_frames(image_size, num_frames, seed)
            submit_start = time.perf_counter()
            futures.append(writer.submit(frames, synthetic_meta(f"c{seed}", num_frames, seed=seed)))
            submit_seconds += time.perf_counter() - submit_start
            with_writer += time.perf_counter() - start
        start = time.perf_counter()
        for future in futures:
            future.result()
        flush_seconds = time.perf_counter() - start
        writer_cpu = _process_cpu_seconds(worker_pid) - cpu_before
    return {
        "image_size": image_size,
        "episodes": num_episodes,
        "frames_per_episode": num_frames,
        "env_only_s": env_only,
        "env_with_background_writer_s": with_writer,
        "final_flush_s": flush_seconds,
        "slowdown_fraction": with_writer / env_only - 1.0,
        "submit_ms_per_episode": 1000 * submit_seconds / num_episodes,
        "writer_process_cpu_ms_per_frame": 1000 * writer_cpu / (num_episodes * num_frames),
        "sim_ms_per_frame": 1000 * env_only / (num_episodes * num_frames),
    }


def _process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _warmup(image_size: int, num_frames: int):
    return synthetic_episode(num_frames, image_size=image_size, state_dim=8), synthetic_meta("warmup", num_frames)


def bench_view(tmp: Path) -> dict:
    import torch

    from robot_si.data.views import TrainingView

    store = EpisodeStore(tmp / "store-64-image")
    start = time.perf_counter()
    view = TrainingView([store], horizon=10)
    build_seconds = time.perf_counter() - start
    loader = torch.utils.data.DataLoader(view, batch_size=64, shuffle=True, num_workers=0)
    start = time.perf_counter()
    frames = 0
    for _ in range(10):
        for batch in loader:
            frames += batch["action"].shape[0]
    return {"frames": len(view), "build_s": build_seconds, "dataloader_frames_per_s": frames / (time.perf_counter() - start), "num_workers": 0, "batch_size": 64}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=8)
    parser.add_argument("--frames", type=int, default=50)
    options = parser.parse_args()
    results: dict = {"platform": {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(), "load_average_1min_at_start": os.getloadavg()[0]}}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        sim = env_frames(64, 200, 0)
        results["sim_render_frames_per_s_64px"] = 200 / sim[1] if sim else None
        sim96 = env_frames(96, 200, 0)
        results["sim_render_frames_per_s_96px"] = 200 / sim96[1] if sim96 else None
        runs = []
        for image_size in (64, 96):
            episodes = [episode(image_size, options.frames, seed) for seed in range(options.episodes)]
            for use_videos in (False, True):
                runs.append(bench_mode(tmp, image_size=image_size, use_videos=use_videos, episodes=episodes, num_frames=options.frames))
                print(f"done {image_size}px {'video' if use_videos else 'image'}", file=sys.stderr)
        results["modes"] = runs
        results["collection_overhead"] = bench_collection_overhead(tmp, image_size=64, num_episodes=2 * options.episodes, num_frames=options.frames)
        results["training_view"] = bench_view(tmp)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")

    print(f"sim render (push, random actions): {results['sim_render_frames_per_s_64px'] or float('nan'):.0f} frames/s at 64 px, "
          f"{results['sim_render_frames_per_s_96px'] or float('nan'):.0f} at 96 px\n")
    print("| px | mode | append latency median (s) | write frames/s | read frames/s | bytes/frame | lossless |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in runs:
        print(f"| {r['image_size']} | {r['mode']} | {r['append_latency_s_median']:.3f} | {r['write_frames_per_s']:.0f} | "
              f"{r['read_frames_per_s']:.0f} | {r['bytes_per_frame']:.0f} | {r['lossless']} |")
    overhead = results["collection_overhead"]
    if overhead:
        print(f"\ncollection with background writer (64 px, image mode): {overhead['slowdown_fraction']:+.1%} "
              f"(final flush {overhead['final_flush_s']:.2f} s); writer CPU {overhead['writer_process_cpu_ms_per_frame']:.1f} ms/frame "
              f"vs sim {overhead['sim_ms_per_frame']:.1f} ms/frame")
    view = results["training_view"]
    print(f"TrainingView (64 px, H=10): {view['dataloader_frames_per_s']:.0f} frames/s through a DataLoader "
          f"(batch 64, 0 workers); built in {view['build_s']:.2f} s for {view['frames']} frames")
    print(f"\nwrote {RESULTS.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
