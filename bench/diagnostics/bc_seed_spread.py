"""How much does behaviour cloning's result depend on its training seed, and does an EMA of the weights narrow it?

Trains the loop's round-0 policy (CompactVLA, 3000 steps, batch 64, lr 1e-3) on a demo store once per
(seed, ema_decay) and evaluates each on held-out seeds and paraphrases; appends one JSON line per run to --out.
Every loop "gain" is measured against one such draw, so its spread is the noise floor of the loop benchmark.

    python bench/diagnostics/bc_seed_spread.py /tmp/lr3/bench-default-learned/store/demos --runs 1:none 0:0.998 \
        --out /tmp/spread.jsonl --threads 1
"""
import argparse
import json
import time
from pathlib import Path

import torch

from robot_si.collect import evaluate
from robot_si.train import TrainConfig, train_policy

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("demo_store", type=Path)
    parser.add_argument("--runs", nargs="+", required=True, metavar="SEED:EMA",
                        help="training seed and EMA decay ('none': off), e.g. 0:none 0:0.998")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--tasks", nargs="+", default=["reach", "push", "button"])
    parser.add_argument("--eval-episodes", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bc_seed_spread"))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for run in args.runs:
        seed, ema = run.split(":")
        ema_decay = None if ema == "none" else float(ema)
        out = args.workdir / f"seed{seed}_ema{ema}"
        start = time.time()
        train_policy(
            [args.demo_store], out / "policy",
            policy_config={"type": "compact_vla", "image_size": 64, "horizon": 8, "n_action_steps": 4},
            train_config=TrainConfig(steps=args.steps, batch_size=64, lr=1e-3, seed=int(seed), ema_decay=ema_decay,
                                     save_every=args.steps, progress=False),
        )
        train_s = time.time() - start
        report = evaluate(str(out / "policy" / "policy"), args.tasks, args.eval_episodes, seed=0,
                          instruction_split="heldout", num_envs=8, image_size=64, out=out / "eval.json", progress=False)
        line = {"seed": int(seed), "ema_decay": ema_decay, "steps": args.steps, "train_s": round(train_s, 1),
                "overall": report["overall"], "per_task": {k: v["success_rate"] for k, v in report["per_task"].items()}}
        print(json.dumps(line), flush=True)
        with args.out.open("a") as handle:
            handle.write(json.dumps(line) + "\n")
