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

import torch

from robot_si.collect import evaluate
from robot_si.train import TrainConfig, train_policy

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
    ratio = None if args.demo_ratio == "none" else float(args.demo_ratio)
    start = time.time()
    result = train_policy(
        [args.run_dir / "store/demos", args.run_dir / "store/autonomous"], args.out / "policy",
        policy_config={"type": "compact_vla", "image_size": 64, "horizon": 8, "n_action_steps": 4},
        train_config=TrainConfig(steps=args.steps, batch_size=64, lr=1e-3, seed=args.seed, save_every=args.steps, progress=False),
        label_version=[None, args.label_version], init_from=args.init_from, balance_tasks=args.balance_tasks, mix=None if ratio is None else {"demo": ratio, "autonomous": 1 - ratio},
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
