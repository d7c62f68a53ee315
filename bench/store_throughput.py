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


def env_frames(image_size: int, num_frames: int, seed: int, env=None):
    """(frames dict, seconds to reset+render+step them) from the real env with random actions; None without envs.

    Pass `env` to reuse one (a collector keeps its envs; building one costs ~0.1 s, which must not be timed as
    part of an episode).
    """
    if env is None:
        try:
            from robot_si.envs import make_env
        except ImportError:
            return None
        env = make_env("push", image_size=image_size)
        own_env = True
    else:
        own_env = False
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    obs, _ = env.reset(seed=seed)
    images, states, actions = [], [], []
    while len(actions) < num_frames:
        action = rng.uniform(-1, 1, 4).astype(np.float32)
        images.append(obs["observation.images.front"])
        states.append(obs["observation.state"])
        actions.append(action)
        obs, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            obs, _ = env.reset(seed=seed + len(actions))
    seconds = time.perf_counter() - start
    if own_env:
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


def bench_collection_overhead(tmp: Path, *, image_size: int, num_episodes: int, num_frames: int, repeats: int = 2) -> dict | None:
    """Collect blocks of episodes with the env alone and with the background writer, alternating (A B A B) so
    load drift cancels.

    One env serves both arms (as in a collector); each arm times reset + steps, the writer arm also `submit()`
    and, at the end of its block, the wait until every episode is committed (a collection is not done before).
    The writer is idle during the env-only blocks, so they measure the simulator alone.
    """
    try:
        from robot_si.envs import make_env
    except ImportError:
        return None
    store = EpisodeStore.create(tmp / "overhead", fps=10, image_size=image_size, state_dim=8, action_dim=4)
    env = make_env("push", image_size=image_size)
    env_only = with_writer = submit_seconds = flush_seconds = 0.0
    with store.writer() as writer:
        writer.submit(*_warmup(image_size, num_frames)).result()  # the worker process imports lerobot once
        (worker_pid,) = writer._executor._processes  # bench-only peek, to read the worker's CPU time
        cpu_before = _process_cpu_seconds(worker_pid)
        for repeat in range(repeats):
            seeds = range(repeat * num_episodes, (repeat + 1) * num_episodes)
            for seed in seeds:
                env_only += env_frames(image_size, num_frames, seed, env=env)[1]
            futures = []
            for seed in seeds:
                frames, seconds = env_frames(image_size, num_frames, seed, env=env)
                submit_start = time.perf_counter()
                futures.append(writer.submit(frames, synthetic_meta(f"c{seed}", num_frames, seed=seed)))
                submit_seconds += time.perf_counter() - submit_start
                with_writer += seconds + time.perf_counter() - submit_start
            start = time.perf_counter()
            for future in futures:
                future.result()
            flush_seconds += time.perf_counter() - start
        writer_cpu = _process_cpu_seconds(worker_pid) - cpu_before
    env.close()
    total_frames = repeats * num_episodes * num_frames
    return {
        "image_size": image_size,
        "episodes": repeats * num_episodes,
        "frames_per_episode": num_frames,
        "env_only_s": env_only,
        "env_with_background_writer_s": with_writer,
        "final_flush_s": flush_seconds,
        "slowdown_during_collection_fraction": with_writer / env_only - 1.0,
        # the goal's number: the collection is not done until the last episode is committed
        "slowdown_fraction": (with_writer + flush_seconds) / env_only - 1.0,
        "submit_ms_per_episode": 1000 * submit_seconds / (repeats * num_episodes),
        "writer_process_cpu_ms_per_frame": 1000 * writer_cpu / total_frames,
        "sim_ms_per_frame": 1000 * env_only / total_frames,
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
    parser.add_argument("--collection-episodes", type=int, default=40,
                        help="episodes per block of the collection-overhead run (two blocks per arm); a loop round collects 180")
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
        results["collection_overhead"] = bench_collection_overhead(
            tmp, image_size=64, num_episodes=options.collection_episodes, num_frames=options.frames
        )
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
        print(f"\ncollection with background writer (64 px, image mode): {overhead['slowdown_fraction']:+.1%} until the "
              f"last episode is committed ({overhead['slowdown_during_collection_fraction']:+.1%} while collecting, "
              f"final flush {overhead['final_flush_s']:.2f} s); writer CPU {overhead['writer_process_cpu_ms_per_frame']:.1f} ms/frame "
              f"vs sim {overhead['sim_ms_per_frame']:.1f} ms/frame")
    view = results["training_view"]
    print(f"TrainingView (64 px, H=10): {view['dataloader_frames_per_s']:.0f} frames/s through a DataLoader "
          f"(batch 64, 0 workers); built in {view['build_s']:.2f} s for {view['frames']} frames")
    print(f"\nwrote {RESULTS.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
