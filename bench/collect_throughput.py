"""Collection throughput: env steps/s with the compact VLA in the loop, next to raw physics + render steps/s.

Measures, in one run on the same scenes (tasks, image size, episode length):
  - raw: one process stepping the envs with random actions (physics substeps + 64 px render + observation), no
    policy: the ceiling for one core;
  - local Collector with 1, 2, 4, 8 envs: one batched forward per control step over the envs that need a chunk;
  - Ray with 1 and 2 env-worker actors (4 envs each, own policy copy, one CPU each), and 2 workers sharing one
    batched inference-server actor.
Each configuration is warmed up first (env build, GL contexts, first forward, Ray actors and weight broadcast),
then timed on fresh seeds. Store writes are not included (see bench/store_throughput.py).

    .venv/bin/python bench/collect_throughput.py [--policy compact_vla|random|PATH] [--steps 40] [--quick]
    robot-si bench collect ...

Writes bench/results/collect_throughput.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
# Raw and collector rates are measured under the same render setting: robot_si.envs makes Mesa's software
# rasterizer render in the calling thread (LP_NUM_THREADS=0) unless the caller set LP_NUM_THREADS.

from robot_si.collect.records import EpisodeRequest  # noqa: E402
from robot_si.collect.rollout import Collector, policy_version_of  # noqa: E402
from robot_si.collect.seeds import collection_episode_id, collection_seed  # noqa: E402
from robot_si.envs import make_env  # noqa: E402

RESULTS = REPO_ROOT / "bench" / "results" / "collect_throughput.json"
TASKS = ("reach", "push")


class RandomChunkPolicy:
    """Fallback when no policy can be built: uniform random chunks (no network)."""

    def __init__(self, horizon: int = 8, n_action_steps: int = 4) -> None:
        import types

        self.config = types.SimpleNamespace(horizon=horizon, n_action_steps=n_action_steps)
        self.rng = np.random.default_rng(0)

    def reset(self) -> None:
        pass

    def predict_action_chunk(self, batch):
        return self.rng.uniform(-1, 1, (len(batch["task"]), self.config.horizon, 4)).astype(np.float32)


def build_policy(spec: str):
    """'compact_vla': the default CompactVLA (pretrained EfficientNet-Lite0 + MiniLM, random trunk/head);
    a path: a saved checkpoint; 'random': no network."""
    if spec == "random":
        return RandomChunkPolicy(), "random (no network)"
    from robot_si.collect.testing import set_placeholder_normalization
    from robot_si.policies import CompactVLAConfig, CompactVLAPolicy, load_policy

    if spec != "compact_vla":
        return load_policy(spec), f"checkpoint {spec}"
    config = CompactVLAConfig()  # default size: what `robot-si train` builds
    policy = set_placeholder_normalization(CompactVLAPolicy(config))
    policy.policy_version = "bench-compact-vla"
    parameters = sum(p.numel() for p in policy.parameters())
    return policy.eval(), (f"CompactVLA default config ({parameters / 1e6:.1f} M parameters, pretrained vision, "
                           f"random head, horizon {config.horizon}, n_action_steps {config.n_action_steps})")


def requests_for(episodes_per_task: int, *, seed: int) -> list[EpisodeRequest]:
    requests = []
    for task in TASKS:
        for index in range(episodes_per_task):
            episode_seed = collection_seed(seed, task, index)
            requests.append(EpisodeRequest(episode_id=collection_episode_id(round=0, task=task, seed=episode_seed),
                                           task=task, seed=episode_seed))
    return requests


def raw_steps_per_s(steps_per_episode: int, episodes_per_task: int) -> float:
    """Physics + render + observation, random actions, one env per task, resets included (same as the collector)."""
    rng = np.random.default_rng(0)
    total_steps, total_s = 0, 0.0
    for task in TASKS:
        env = make_env(task, max_episode_steps=steps_per_episode)
        env.reset(seed=0)
        env.step(np.zeros(4, np.float32))  # GL context
        start = time.perf_counter()
        for episode in range(episodes_per_task):
            env.reset(seed=episode + 1)
            while True:
                _, _, terminated, truncated, _ = env.step(rng.uniform(-1, 1, 4).astype(np.float32))
                total_steps += 1
                if terminated or truncated:
                    break
        total_s += time.perf_counter() - start
        env.close()
    return total_steps / total_s


def local_run(policy, num_envs: int, steps_per_episode: int, episodes_per_task: int) -> dict:
    with Collector(num_envs=num_envs, exploration_std=0.1, max_episode_steps=steps_per_episode,
                   progress=False) as collector:
        collector.run(policy, requests_for(max(1, num_envs // len(TASKS)), seed=1), keep_frames=False)  # warm-up
        metrics = collector.run(policy, requests_for(episodes_per_task, seed=2), keep_frames=False)
    return metrics


def ray_run(policy, num_workers: int, envs_per_worker: int, steps_per_episode: int, episodes_per_task: int,
            *, inference_server: bool = False) -> dict:
    from robot_si.collect.ray_backend import RayCollector

    version = policy_version_of(policy, "bench")
    with RayCollector(num_workers=num_workers, num_envs_per_worker=envs_per_worker, exploration_std=0.1,
                      max_episode_steps=steps_per_episode, progress=False, inference_server=inference_server,
                      lease_size=envs_per_worker * 2) as collector:
        # one lease per worker, so every worker (MiniLM load, first forwards, GL contexts) is warm before timing
        warm = requests_for(num_workers * envs_per_worker, seed=1)
        collector.run(policy, warm, keep_frames=False, policy_version=version)
        metrics = collector.run(policy, requests_for(episodes_per_task, seed=2), keep_frames=False,
                                policy_version=version)
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", default="compact_vla", help="compact_vla (default) | random | a checkpoint dir")
    parser.add_argument("--steps", type=int, default=40, help="steps per episode (fixed; episodes rarely succeed)")
    parser.add_argument("--env-counts", type=int, nargs="*", default=[1, 2, 4, 8])
    parser.add_argument("--ray-workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--envs-per-worker", type=int, default=4)
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--quick", action="store_true", help="fewer episodes (a smoke run)")
    args = parser.parse_args()

    try:
        policy, policy_description = build_policy(args.policy)
    except Exception as error:  # noqa: BLE001 — the policy package may be missing or broken; say so in the results
        if args.policy != "compact_vla":
            raise
        print(f"compact VLA unavailable ({error}); falling back to --policy random")
        policy, policy_description = build_policy("random")
    scale = 1 if args.quick else 2
    results: dict = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_avg_start": os.getloadavg()},
        "policy": policy_description,
        "tasks": list(TASKS),
        "steps_per_episode": args.steps,
        "image_size": 64,
        "note": ("env steps/s; raw = one process, random actions, physics + 64 px render + observation, no policy. "
                 "Collector: batched forward per control step, exploration noise, frames kept off (no store)."),
    }
    raw = raw_steps_per_s(args.steps, episodes_per_task=2 * scale)
    results["raw_steps_per_s"] = raw
    print(f"raw physics+render: {raw:.0f} steps/s")
    rows = []
    for num_envs in args.env_counts:
        metrics = local_run(policy, num_envs, args.steps, episodes_per_task=max(2 * scale, num_envs))
        rows.append({"setup": f"local, {num_envs} env{'s' if num_envs > 1 else ''}", "backend": "local",
                     "num_envs": num_envs, "steps_per_s": metrics["env_steps_per_s"],
                     "mean_forward_batch": metrics["mean_forward_batch"], "phase_s": metrics["phase_s"],
                     "env_steps": metrics["env_steps"]})
        print(rows[-1]["setup"], f"{metrics['env_steps_per_s']:.0f} steps/s", metrics["phase_s"])
    if not args.no_ray:
        import ray

        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        try:
            setups = [(w, False) for w in args.ray_workers] + [(max(args.ray_workers), True)]
            for workers, server in setups:
                episodes = max(2 * scale, workers * args.envs_per_worker * scale // len(TASKS) * 2)
                metrics = ray_run(policy, workers, args.envs_per_worker, args.steps, episodes,
                                  inference_server=server)
                label = (f"ray, {workers} worker{'s' if workers > 1 else ''} x {args.envs_per_worker} envs"
                         + (", shared inference server" if server else ""))
                rows.append({"setup": label, "backend": "ray", "num_workers": workers,
                             "envs_per_worker": args.envs_per_worker, "inference_server": server,
                             "steps_per_s": metrics["env_steps_per_s"], "mean_forward_batch":
                             metrics.get("inference_server", {}).get("mean_batch", metrics["mean_forward_batch"]),
                             "phase_s": metrics["phase_s"], "env_steps": metrics["env_steps"]})
                print(label, f"{metrics['env_steps_per_s']:.0f} steps/s")
        finally:
            ray.shutdown()
    for row in rows:
        row["ratio_to_raw"] = row["steps_per_s"] / raw
    ray_rows = {r["num_workers"]: r for r in rows if r["backend"] == "ray" and not r["inference_server"]}
    if 1 in ray_rows and 2 in ray_rows:
        results["ray_2_over_1"] = ray_rows[2]["steps_per_s"] / ray_rows[1]["steps_per_s"]
    results["rows"] = rows
    results["machine"]["load_avg_end"] = os.getloadavg()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")

    print(f"\npolicy: {policy_description}; {len(TASKS)} tasks {list(TASKS)}, {args.steps} steps/episode, "
          f"{os.cpu_count()} CPUs\n")
    print("| setup | env steps/s | x raw | mean forward batch | inference s | env step s | render s |")
    print("|---|---|---|---|---|---|---|")
    print(f"| raw physics + render (no policy) | {raw:.0f} | 1.00 | - | - | - | - |")
    for row in rows:
        phases = row["phase_s"]
        prefix = "workers_" if row["backend"] == "ray" else ""
        print(f"| {row['setup']} | {row['steps_per_s']:.0f} | {row['ratio_to_raw']:.2f} | "
              f"{row['mean_forward_batch']:.1f} | {phases.get(prefix + 'inference_s', 0):.2f} | "
              f"{phases.get(prefix + 'env_step_s', 0):.2f} | {phases.get(prefix + 'render_s', 0):.2f} |")
    if "ray_2_over_1" in results:
        print(f"\nRay 2 workers / 1 worker: {results['ray_2_over_1']:.2f}x")
    print(f"\nwrote {RESULTS.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
