"""CompactVLA policy benchmark: training speed, inference latency and behaviour-cloning success from scripted demos.

    .venv/bin/python bench/policy.py                          # speed + reach BC (~10 min on 2 busy cores)
    .venv/bin/python bench/policy.py --tasks reach push --demos 40 --steps 3000
    .venv/bin/python bench/policy.py --skip-bc                # speed only (~1 min)

Speed: training samples/s of the default policy (64 px, frozen backbone + cached features vs a fully
fine-tuned backbone) and `predict_action_chunk` latency at batch 1 and 16 (images -> actions, instruction cached).
BC: scripted-expert demos per task (robot_si.data.demos.record_demos), weighted BC with the real trainer on a
TrainingView, then N ground-truth evaluation episodes per task (receding horizon: first n_action_steps of each
chunk). Writes bench/results/policy.json and prints a Markdown table.
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
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from robot_si.policies import CompactVLAConfig, CompactVLAPolicy, observations_to_batch  # noqa: E402
from robot_si.train import TrainConfig, Trainer, compute_normalization_stats  # noqa: E402
from robot_si.train.testing import SyntheticChunkDataset  # noqa: E402

RESULTS = REPO_ROOT / "bench" / "results" / "policy.json"


def training_speed(freeze_vision: bool, steps: int, batch_size: int = 64) -> dict:
    dataset = SyntheticChunkDataset(max(256, batch_size * 4), image_size=64, horizon=8)
    config = CompactVLAConfig(freeze_vision=freeze_vision)
    policy = CompactVLAPolicy(config)
    with tempfile.TemporaryDirectory() as out:
        train_config = TrainConfig(steps=steps, batch_size=batch_size, progress=False, save_every=None, warmup_steps=1, device="cpu")
        result = Trainer(policy, dataset, train_config, out).train()
    return {
        "setup": "frozen backbone + cached features" if freeze_vision else "fine-tune whole backbone",
        "batch_size": batch_size, "steps": steps, "samples_per_s": round(result.samples_per_s, 1),
        "feature_cache_s": round(result.feature_cache_s, 2), "samples_cached": len(dataset) if freeze_vision else 0,
        "trainable_parameters": sum(p.numel() for p in policy.parameters() if p.requires_grad),
    }


def inference_latency(batch_size: int, repeats: int = 20) -> dict:
    policy = CompactVLAPolicy(CompactVLAConfig())
    policy.set_normalization_stats(compute_normalization_stats(SyntheticChunkDataset(16, image_size=64, horizon=8)))
    policy.fit_text_normalization(["reach the red cube"])
    policy.eval()
    rng = np.random.default_rng(0)
    observations = [
        {"observation.images.front": rng.integers(0, 256, (64, 64, 3), dtype=np.uint8),
         "observation.state": rng.standard_normal(8).astype(np.float32), "task": "reach the red cube"}
        for _ in range(batch_size)
    ]
    policy.predict_action_chunk(observations_to_batch(observations))  # warm-up (also embeds the instruction)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        policy.predict_action_chunk(observations_to_batch(observations))
        times.append(time.perf_counter() - start)
    return {"batch_size": batch_size, "median_ms": round(1000 * statistics.median(times), 2),
            "p90_ms": round(1000 * float(np.quantile(times, 0.9)), 2)}


def evaluate(policy, task: str, episodes: int, seed: int, instruction_split: str = "train") -> dict:
    from robot_si.envs import make_env

    env = make_env(task, image_size=policy.config.image_size, instruction_split=instruction_split)
    successes, lengths = 0, []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        policy.reset()
        done, steps, success = False, 0, False
        while not done:
            chunk = policy.predict_action_chunk(observations_to_batch([obs]))[0].cpu().numpy()
            for action in chunk[: policy.config.n_action_steps]:
                obs, _, terminated, truncated, info = env.step(np.clip(action, -1, 1).astype(np.float32))
                steps += 1
                success = bool(info.get("is_success", False))
                done = terminated or truncated
                if done:
                    break
        successes += success
        lengths.append(steps)
    env.close()
    return {"success_rate": successes / episodes, "episodes": episodes, "mean_length": float(np.mean(lengths))}


def behaviour_cloning(
    tasks: list[str], demos: int, steps: int, eval_episodes: int, work: Path, seed: int, state_indices: list[int] | None,
    image_pooling: str,
) -> dict:
    from robot_si.data.demos import record_demos
    from robot_si.data.views import TrainingView

    store = work / "demos"
    started = time.perf_counter()
    record_demos(tasks, episodes_per_task=demos, root=store, seed=seed, progress=False)
    demo_s = time.perf_counter() - started
    config = CompactVLAConfig(state_indices=state_indices, image_pooling=image_pooling)
    view = TrainingView([store], horizon=config.horizon)
    torch.manual_seed(seed)
    policy = CompactVLAPolicy(config)
    train_config = TrainConfig(steps=steps, batch_size=64, lr=1e-3, warmup_steps=100, progress=True, save_every=None, device="cpu", seed=seed)
    result = Trainer(policy, view, train_config, work / "train").train()
    policy.eval()
    rows = []
    for task in tasks:
        started_eval = time.perf_counter()
        row = evaluate(policy, task, eval_episodes, seed=10_000 + seed)
        row.update(task=task, demos=demos, eval_s=round(time.perf_counter() - started_eval, 1))
        rows.append(row)
        print(f"  {task}: {row['success_rate']:.0%} over {eval_episodes} episodes", flush=True)
    return {
        "state_indices": state_indices, "image_pooling": image_pooling, "tasks": rows, "demo_frames": view.num_episodes and len(view), "demo_record_s": round(demo_s, 1),
        "train_steps": result.steps, "train_wall_s": round(result.wall_s, 1), "train_samples_per_s": round(result.samples_per_s, 1),
        "final_loss": round(result.final_loss, 4), "feature_cache_s": round(result.feature_cache_s, 1),
    }


def describe_policy(config: CompactVLAConfig) -> str:
    """One line naming what the policy's image input is, from its config (so the table never goes stale)."""
    image_inputs = []
    if config.image_pooling == "multiscale":
        if config.pixel_map_stride:
            image_inputs.append(f"pixels pooled x{config.pixel_map_stride}")
        image_inputs += [f"stride-{s} map" for s in config.feature_map_strides]
        image_inputs = [f"{config.keypoints} instruction-conditioned keypoints on each of: " + ", ".join(image_inputs)]
        if config.pooled_features:
            image_inputs.append("pooled 1280")
        if config.flat_map_features:
            image_inputs.append("flattened maps")
    else:
        image_inputs.append(f"{config.image_pooling} pooling")
    backbone = "frozen" if config.freeze_vision else "fine-tuned"
    return (f"CompactVLA defaults: {config.image_size} px, EfficientNet-Lite0 ImageNet {backbone} ({'; '.join(image_inputs)}), "
            f"MiniLM instruction FiLM, hidden {config.hidden_dim} x {config.num_blocks} blocks, horizon {config.horizon}, "
            f"n_action_steps {config.n_action_steps}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["reach"])
    parser.add_argument("--demos", type=int, default=30, help="expert demos per task")
    parser.add_argument("--steps", type=int, default=2000, help="training steps (batch 64)")
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--state-indices", type=int, nargs="*", default=[],
                        help="state entries the policy sees (default: all, the policy default; 0 1 2 3 = no velocities)")
    parser.add_argument("--image-pooling", default=CompactVLAConfig().image_pooling, choices=["mean", "grid", "multiscale"])
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-bc", action="store_true")
    parser.add_argument("--work-dir", default=None, help="keep demos/checkpoints here (default: a temp dir)")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, os.cpu_count() or 1))

    results: dict = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "load_avg_start": list(os.getloadavg())},
        "policy": describe_policy(CompactVLAConfig()),
    }
    if not args.skip_speed:
        print("training speed ...", flush=True)
        results["training_speed"] = [training_speed(True, steps=30), training_speed(False, steps=4)]
        print("inference latency ...", flush=True)
        results["inference_latency"] = [inference_latency(1), inference_latency(16)]
    if not args.skip_bc:
        print(f"behaviour cloning on {args.tasks} ...", flush=True)
        if args.work_dir:
            results["behaviour_cloning"] = behaviour_cloning(args.tasks, args.demos, args.steps, args.eval_episodes, Path(args.work_dir), args.seed, args.state_indices or None, args.image_pooling)
        else:
            with tempfile.TemporaryDirectory() as work:
                results["behaviour_cloning"] = behaviour_cloning(args.tasks, args.demos, args.steps, args.eval_episodes, Path(work), args.seed, args.state_indices or None, args.image_pooling)
    results["machine"]["load_avg_end"] = list(os.getloadavg())

    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    previous.update(results)  # a partial run (--skip-*) keeps the other section's last numbers
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(previous, indent=2) + "\n")
    print(markdown(previous))
    return 0


def markdown(results: dict) -> str:
    lines = []
    if "training_speed" in results:
        lines += ["| training (CPU, batch 64, 64 px) | samples/s | trainable params |", "|---|---:|---:|"]
        lines += [f"| {r['setup']} | {r['samples_per_s']:.0f} | {r['trainable_parameters'] / 1e6:.1f} M |" for r in results["training_speed"]]
        lines += ["", "| inference (predict_action_chunk, CPU) | median ms | p90 ms |", "|---|---:|---:|"]
        lines += [f"| batch {r['batch_size']} | {r['median_ms']:.1f} | {r['p90_ms']:.1f} |" for r in results["inference_latency"]]
    if "behaviour_cloning" in results:
        bc = results["behaviour_cloning"]
        lines += ["", f"BC: {bc['train_steps']} steps in {bc['train_wall_s']:.0f} s ({bc['train_samples_per_s']:.0f} samples/s), "
                  f"{bc['demo_frames']} demo frames", "", "| task | demos | success (ground truth) | episodes |", "|---|---:|---:|---:|"]
        lines += [f"| {r['task']} | {r['demos']} | {r['success_rate']:.0%} | {r['episodes']} |" for r in bc["tasks"]]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
