"""Retrain a loop run's policy from scratch on its demos + its final weighted autonomous data, then evaluate.

Answers "is it the data or the way rounds train on it?": e.g. the oracle arm's final label version holds every
success the loop collected; BC from scratch on it, next to the loop's own fine-tuned rounds.

    python bench/diagnostics/retrain_from_run.py RUN_DIR --label-version r003-weights --demo-ratio 0.25 --out /tmp/x
    (--demo-ratio none: demo and autonomous frames in their natural proportion; --init-from RUN_DIR/round_000/policy/policy:
    continue from that policy's weights instead of from scratch; --seed: the training seed, the loop's is 0)
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from robot_si.collect import evaluate
from robot_si.train import TrainConfig, train_policy


def restricted_to_labelled(store_root: Path, version: str) -> str:
    """A copy of label version `version` in which every episode it does not cover weighs 0, written once beside it.

    A TrainingView gives an episode without a label weight 1; once the run has collected later rounds, training
    on round r's label version would otherwise take every later episode, failures included."""
    from robot_si.data import EpisodeStore, list_label_versions, read_label_set, write_label_set

    name = f"{version}-only"
    if name in list_label_versions(store_root):
        return name
    labels = read_label_set(store_root, version)
    frames = dict(labels.frame_labels)
    for meta in EpisodeStore(store_root).episodes():
        if meta.episode_id not in frames:
            frames[meta.episode_id] = {"weight": np.zeros(meta.num_frames, np.float32)}
    write_label_set(store_root, version=name, episode_labels=list(labels.episode_labels.values()), frame_labels=frames,
                    detector_version=labels.detector_version, note=f"{version}, later episodes at weight 0 (retrain_from_run.py)")
    return name


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--label-version", default="r003-weights")
    parser.add_argument("--demo-ratio", default="0.5")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--tasks", nargs="+", default=["reach", "push", "button"])
    parser.add_argument("--eval-episodes", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--balance-tasks", action="store_true", help="every task the same share of the samples")
    parser.add_argument("--init-from", type=Path, default=None, help="a saved policy to continue from (default: scratch)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    label_version = restricted_to_labelled(args.run_dir / "store/autonomous", args.label_version)
    ratio = None if args.demo_ratio == "none" else float(args.demo_ratio)
    start = time.time()
    result = train_policy(
        [args.run_dir / "store/demos", args.run_dir / "store/autonomous"], args.out / "policy",
        policy_config={"type": "compact_vla", "image_size": 64, "horizon": 8, "n_action_steps": 4},
        train_config=TrainConfig(steps=args.steps, batch_size=64, lr=1e-3, seed=args.seed, save_every=args.steps, progress=False),
        label_version=[None, label_version], init_from=args.init_from, balance_tasks=args.balance_tasks, mix=None if ratio is None else {"demo": ratio, "autonomous": 1 - ratio},
    )
    train_s = time.time() - start
    report = evaluate(str(args.out / "policy" / "policy"), args.tasks, args.eval_episodes, seed=0,
                      instruction_split="heldout", num_envs=8, image_size=64, out=args.out / "eval.json", progress=False)
    summary = {"run_dir": str(args.run_dir), "label_version": args.label_version, "demo_ratio": ratio,
               "seed": args.seed, "balance_tasks": args.balance_tasks, "init_from": None if args.init_from is None else str(args.init_from),
               "train_s": train_s, "train_samples": result.num_samples if hasattr(result, "num_samples") else None,
               "overall": report["overall"], "per_task": {k: v["success_rate"] for k, v in report["per_task"].items()}}
    print(json.dumps(summary))
    sys.exit(0)
