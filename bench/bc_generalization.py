"""Round-0 behaviour cloning: does the compact VLA trained on a few scripted demos work on NEW env seeds?

    .venv/bin/python bench/bc_generalization.py                              # the loop's embedded default
    .venv/bin/python bench/bc_generalization.py --name demos30 --demos 30     # a variant (recorded by name)
    .venv/bin/python bench/bc_generalization.py --name no_vel --policy state_indices=[0,1,2,3]
    .venv/bin/python bench/bc_generalization.py --name lr3e-4 --train lr=3e-4 weight_decay=0.01

Defaults are read from robot_si/configs/improve.yaml (tasks, demos.episodes_per_task, demos.noise, image_size,
policy.*, train.steps/batch_size/lr) and CompactVLAConfig / TrainConfig, so the unnamed run measures what
`robot-si improve` trains in round 0. Demos use collection seeds 0.. (record_demos); evaluation uses
`robot_si.collect.evaluate` (evaluation seeds >= 10**6, never trained on, held-out instruction paraphrases by
default), which gives per-task Wilson 95% intervals. Each run is stored under its `--name` in
bench/results/bc_generalization.json together with the exact command, so variants accumulate in one file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from robot_si.collect.evaluate import evaluate  # noqa: E402
from robot_si.config import compose, parse_overrides  # noqa: E402
from robot_si.data.demos import record_demos  # noqa: E402
from robot_si.policies import CompactVLAConfig  # noqa: E402
from robot_si.train import TrainConfig, train_policy  # noqa: E402

RESULTS = REPO_ROOT / "bench" / "results" / "bc_generalization.json"


def _patch_ee_step(step_m: float) -> None:
    """Experiment only: change the env's end-effector step per action in this process (envs + experts read it)."""
    from robot_si.envs import base, scene

    scene.EE_MAX_STEP_M = step_m
    base.EE_LEASH_M = 2 * step_m


def run(args: argparse.Namespace) -> dict:
    if args.ee_step is not None:
        _patch_ee_step(args.ee_step)
    loop = compose("improve", [])
    tasks = args.tasks or list(loop.tasks)
    demos = args.demos if args.demos is not None else int(loop.demos.episodes_per_task)
    noise = args.noise if args.noise is not None else float(loop.demos.noise)
    action_noise = args.action_noise if args.action_noise is not None else float(loop.demos.get("action_noise", 0.0))
    image_size = int(loop.image_size)
    policy_fields = {"image_size": image_size, **{k: v for k, v in dict(loop.policy).items()}}
    policy_fields.update(parse_overrides(args.policy))
    policy_config = CompactVLAConfig(**policy_fields)
    train_fields = {"steps": int(loop.train.steps), "batch_size": int(loop.train.batch_size), "lr": float(loop.train.lr),
                    "seed": args.seed, "device": "cpu", "progress": False, "save_every": None}
    train_fields.update(parse_overrides(args.train))
    train_config = TrainConfig(**train_fields)

    with tempfile.TemporaryDirectory() as scratch:
        work = Path(args.work_dir) if args.work_dir else Path(scratch)
        store = work / f"demos_ee{_ee_max_step():g}_seed{args.seed}"
        started = time.perf_counter()
        metas = record_demos(tasks, episodes_per_task=demos, root=store, noise=noise, seed=args.seed, image_size=image_size,
                             progress=False, action_noise=action_noise)
        demo_s = time.perf_counter() - started
        frames = {task: sum(m.num_frames for m in metas if m.task_name == task) for task in tasks}
        torch.manual_seed(args.seed)
        result = train_policy([store], work / f"train_{args.name}", policy_config=policy_config, train_config=train_config,
                              resume=False)
        report = evaluate(result.policy_path, tasks, args.eval_episodes, seed=args.eval_seed,
                          instruction_split=args.instruction_split, num_envs=args.num_envs, image_size=image_size,
                          progress=False)
        train_report = None
        if args.eval_train_seeds:
            # the same policy on its own demo seeds (memorization check): evaluate() only uses evaluation seeds,
            # so run the collector on the demo seeds directly
            train_report = _success_on_demo_seeds(result.policy_path, tasks, demos, args.seed, image_size)

    def rounded(summary: dict) -> dict:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in summary.items()}

    return {
        "name": args.name,
        "command": "python bench/bc_generalization.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "tasks": tasks,
        "demos_per_task": demos,
        "demo_noise": noise,
        "demo_action_noise": action_noise,
        "ee_max_step_m": _ee_max_step(),
        "demo_frames": frames,
        "demo_record_s": round(demo_s, 1),
        "policy": {k: v for k, v in policy_config.to_dict().items() if k != "extra"},
        "train": {k: train_fields[k] for k in ("steps", "batch_size", "lr")} | parse_overrides(args.train),
        "train_wall_s": round(result.wall_s, 1),
        "feature_cache_s": round(result.feature_cache_s, 1),
        "final_loss": round(result.final_loss, 4),
        "eval": {"seed": args.eval_seed, "episodes_per_task": args.eval_episodes, "instruction_split": args.instruction_split,
                 "overall": rounded(report["overall"]), "per_task": {t: rounded(v) for t, v in report["per_task"].items()},
                 "wall_s": report["wall_s"]},
        "demo_seed_success": train_report,
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "load_avg": [round(x, 2) for x in os.getloadavg()],
                    "platform": platform.platform()},
    }


def _ee_max_step() -> float:
    from robot_si.envs import scene

    return scene.EE_MAX_STEP_M


def _success_on_demo_seeds(policy_path, tasks, demos, seed, image_size) -> dict:
    from robot_si.collect.records import EpisodeRequest
    from robot_si.collect.rollout import Collector, load_policy_from_path

    policy = load_policy_from_path(policy_path)
    requests = [EpisodeRequest(episode_id=f"train-{task}-{seed + i}", task=task, seed=seed + i, round=0)
                for task in tasks for i in range(demos)]
    outcomes: dict[str, list[bool]] = {task: [] for task in tasks}
    with Collector(num_envs=8, image_size=image_size, instruction_split="train", exploration_std=0.0, progress=False) as collector:
        collector.run(policy, requests, on_episode=lambda r: outcomes[r.task].append(bool(r.error is None and r.success)),
                      policy_version="bench")
    return {task: round(sum(v) / len(v), 3) for task, v in outcomes.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default="default", help="key of this run in the results file")
    parser.add_argument("--tasks", nargs="+", default=None, help="default: improve.yaml tasks")
    parser.add_argument("--demos", type=int, default=None, help="demos per task (default: improve.yaml demos.episodes_per_task)")
    parser.add_argument("--noise", type=float, default=None, help="expert noise of the demos (default: improve.yaml demos.noise)")
    parser.add_argument("--action-noise", type=float, default=None,
                        help="DART perturbation of the executed demo actions (default: improve.yaml demos.action_noise or 0)")
    parser.add_argument("--policy", nargs="*", default=[], metavar="KEY=VALUE", help="CompactVLAConfig overrides")
    parser.add_argument("--train", nargs="*", default=[], metavar="KEY=VALUE", help="TrainConfig overrides")
    parser.add_argument("--ee-step", type=float, default=None,
                        help="experiment: override the env's EE_MAX_STEP_M (metres per action) in this process")
    parser.add_argument("--eval-episodes", type=int, default=30, help="evaluation episodes per task")
    parser.add_argument("--eval-seed", type=int, default=0)
    parser.add_argument("--instruction-split", default="heldout", choices=["train", "heldout"])
    parser.add_argument("--eval-train-seeds", action="store_true", help="also report success on the demo seeds")
    parser.add_argument("--num-envs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0, help="demo seeds start here; also the training seed")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work-dir", default=None, help="keep demos/checkpoints here (default: a temp dir)")
    parser.add_argument("--no-save", action="store_true", help="print only; do not write the results file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    row = run(args)
    per_task = row["eval"]["per_task"]
    summary = ", ".join(f"{t} {v['success_rate']:.0%} [{v['ci_low']:.0%}, {v['ci_high']:.0%}]" for t, v in per_task.items())
    print(f"{row['name']}: overall {row['eval']['overall']['success_rate']:.0%} ({summary}); train {row['train_wall_s']} s, "
          f"frames {row['demo_frames']}, demo-seed success {row['demo_seed_success']}", flush=True)
    if not args.no_save:
        import fcntl

        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        with open(Path(tempfile.gettempdir()) / "robot_si_bc_generalization.lock", "w") as lock:  # variants may run side by side
            fcntl.flock(lock, fcntl.LOCK_EX)
            results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"runs": {}}
            results["runs"][row["name"]] = row
            RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
