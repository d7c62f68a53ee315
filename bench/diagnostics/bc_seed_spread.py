"""How much does behaviour cloning's result depend on its training seed, and what narrows it?

Trains the loop's round-0 policy (CompactVLA, 3000 steps, batch 64, lr 1e-3) on a demo store once per
(seed, ema_decay), with optional policy/train overrides (one variant per invocation), and evaluates each on
held-out seeds and paraphrases; appends one JSON line per run to --out. With --val-store (demos recorded on other
env seeds), the BC loss on those demos is logged every --val-every steps: a ground-truth-free signal, checked here
against held-out success. Every loop "gain" is measured against one such draw, so the spread is the noise floor
of the loop benchmark.

    python bench/diagnostics/bc_seed_spread.py /tmp/d100 --runs 0:none 1:none 2:none --out /tmp/spread.jsonl \
        --threads 1 --val-store /tmp/dval --variant lr3e-4 --train lr=3e-4
"""
import argparse
import json
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from robot_si.collect import evaluate
from robot_si.config import parse_overrides
from robot_si.data.views import TrainingView
from robot_si.train import TrainConfig, train_policy


def validation_loss_fn(store: Path, horizon: int, batch_size: int = 256):
    """eval_fn for the trainer: mean BC loss over every frame of `store` (images encoded on the fly)."""
    view = TrainingView([store], horizon=horizon)

    def loss(policy, step: int) -> dict:
        total, count = 0.0, 0
        with torch.no_grad():
            for batch in DataLoader(view, batch_size=batch_size, shuffle=False):
                per_sample, _ = policy(batch, reduction="none")
                total += float(per_sample.sum())
                count += len(per_sample)
        return {"step": step, "val_loss": round(total / count, 5)}

    return loss


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("demo_store", type=Path)
    parser.add_argument("--runs", nargs="+", required=True, metavar="SEED:EMA",
                        help="training seed and EMA decay ('none': off), e.g. 0:none 0:0.998")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--tasks", nargs="+", default=["reach", "push", "button"])
    parser.add_argument("--eval-episodes", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--policy", nargs="*", default=[], metavar="KEY=VALUE", help="CompactVLA config overrides")
    parser.add_argument("--train", nargs="*", default=[], metavar="KEY=VALUE", help="TrainConfig overrides")
    parser.add_argument("--variant", default="base", help="name of this override set (recorded, and in the workdir)")
    parser.add_argument("--val-store", type=Path, default=None, help="held-out demo store for the validation loss")
    parser.add_argument("--val-every", type=int, default=500)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bc_seed_spread"))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    policy_overrides, train_overrides = parse_overrides(args.policy), parse_overrides(args.train)
    policy_config = {"type": "compact_vla", "image_size": 64, "horizon": 8, "n_action_steps": 4, **policy_overrides}
    for run in args.runs:
        seed, ema = run.split(":")
        ema_decay = None if ema == "none" else float(ema)
        out = args.workdir / f"{args.variant}_seed{seed}_ema{ema}"
        eval_fn = validation_loss_fn(args.val_store, policy_config["horizon"]) if args.val_store else None
        train_kwargs = {"steps": args.steps, "batch_size": 64, "lr": 1e-3, **train_overrides}
        start = time.time()
        result = train_policy(
            [args.demo_store], out / "policy", policy_config=policy_config, eval_fn=eval_fn,
            train_config=TrainConfig(seed=int(seed), ema_decay=ema_decay, save_every=train_kwargs["steps"], progress=False,
                                     eval_every=args.val_every if eval_fn else None, **train_kwargs),
        )
        train_s = time.time() - start
        report = evaluate(str(out / "policy" / "policy"), args.tasks, args.eval_episodes, seed=0,
                          instruction_split="heldout", num_envs=8, image_size=64, out=out / "eval.json", progress=False)
        line = {"variant": args.variant, "policy": policy_overrides, "train": train_overrides, "seed": int(seed),
                "ema_decay": ema_decay, "steps": train_kwargs["steps"], "train_s": round(train_s, 1),
                "final_loss": round(result.final_loss, 5), "val": result.evals,
                "overall": report["overall"], "per_task": {k: v["success_rate"] for k, v in report["per_task"].items()}}
        print(json.dumps(line), flush=True)
        with args.out.open("a") as handle:
            handle.write(json.dumps(line) + "\n")
