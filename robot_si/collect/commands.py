"""`robot-si collect` and `robot-si eval` (configs: configs/collect.yaml, configs/eval.yaml; key=value overrides).

    robot-si collect policy=PATH tasks=[reach,push] episodes=N store=DIR round=1 num_envs=4 exploration_std=0.1
        backend=local|ray [ray.num_workers=2 ray.inference_server=true] [metrics_out=FILE.json]
    robot-si eval policy=PATH tasks=[reach,push] episodes=N out=FILE.json instruction_split=heldout

`collect` appends autonomous episodes to the store (rerunning the same command completes an interrupted run);
`eval` prints success per task with Wilson 95% intervals (simulator ground truth) and writes them as JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

COMMANDS = ("collect", "eval")


def _require_policy(cfg: DictConfig, command: str) -> str:
    if cfg.policy_path in (None, ""):
        raise ValueError(f"`robot-si {command}` needs policy=PATH (a saved policy directory)")
    if not Path(str(cfg.policy_path)).exists():
        raise FileNotFoundError(f"policy={cfg.policy_path} does not exist; pass the directory of a saved policy")
    return str(cfg.policy_path)


def _alias_overrides(overrides: list[str]) -> list[str]:
    """`policy=PATH` -> `policy_path=PATH`: `policy` is a config group (configs/policy/), so Hydra would read
    `policy=...` as choosing a policy architecture rather than as a checkpoint path."""
    return [("policy_path=" + o.split("=", 1)[1]) if o.startswith("policy=") else o for o in overrides]


def _episodes(cfg: DictConfig) -> int:
    episodes = cfg.episodes
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise ValueError(f"episodes={episodes!r} must be a positive int (episodes per task)")
    return episodes


def _tasks(cfg: DictConfig) -> list[str]:
    from robot_si.collect.rollout import validate_tasks

    tasks = cfg.tasks
    tasks = [tasks] if isinstance(tasks, str) else list(OmegaConf.to_container(tasks, resolve=True) or [])
    return validate_tasks(tasks)


def _ray_options(cfg: DictConfig) -> dict[str, Any]:
    options = OmegaConf.to_container(cfg.ray, resolve=True)
    options["inference_server"] = bool(options.get("inference_server"))
    return options


def run_collect(cfg: DictConfig) -> dict[str, Any]:
    from robot_si.collect.rollout import collect

    tasks, episodes = _tasks(cfg), _episodes(cfg)
    if cfg.store in (None, ""):
        raise ValueError("`robot-si collect` needs store=DIR (the episode store to append to)")
    policy = _require_policy(cfg, "collect")
    metrics = collect(
        policy, tasks, episodes, store=str(cfg.store), round=int(cfg.round), seed=int(cfg.seed),
        policy_version=cfg.policy_version, num_envs=int(cfg.num_envs), exploration_std=float(cfg.exploration_std),
        image_size=int(cfg.image_size), instruction_split=str(cfg.instruction_split),
        max_episode_steps=cfg.max_episode_steps, backend=str(cfg.backend), writer=str(cfg.writer),
        progress=bool(cfg.progress), ray_options=_ray_options(cfg) if cfg.backend == "ray" else None,
    )
    print(
        f"collected {metrics['written']} episodes into {metrics['store']} ({metrics['skipped_existing']} already "
        f"there, {metrics['episodes_with_error']} with errors); {metrics['env_steps_per_s']:.0f} env steps/s; "
        f"ground-truth success (sim, operator only): {metrics['gt_success_rate']}"
    )
    print("seconds per phase: " + ", ".join(f"{k}={v:.2f}" for k, v in metrics["phase_s"].items()))
    if cfg.metrics_out:
        path = Path(str(cfg.metrics_out))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def format_table(report: dict[str, Any]) -> str:
    lines = [f"success on {report['instruction_split']} instructions, evaluation seeds (Wilson 95% CI):", "",
             "| task | success | 95% CI | n | errors |", "|---|---|---|---|---|"]
    rows = list(report["per_task"].items()) + [("**overall**", report["overall"])]
    for task, summary in rows:
        rate = summary["success_rate"]
        lines.append(f"| {task} | {rate:.2f} | [{summary['ci_low']:.2f}, {summary['ci_high']:.2f}] | "
                     f"{summary['n']} | {summary['errors']} |")
    return "\n".join(lines)


def run_eval(cfg: DictConfig) -> dict[str, Any]:
    from robot_si.collect.evaluate import evaluate

    tasks, episodes = _tasks(cfg), _episodes(cfg)
    policy = _require_policy(cfg, "eval")
    report = evaluate(
        policy, tasks, episodes, seed=int(cfg.seed), instruction_split=str(cfg.instruction_split),
        num_envs=int(cfg.num_envs), image_size=int(cfg.image_size), max_episode_steps=cfg.max_episode_steps,
        policy_version=cfg.policy_version, out=cfg.out, store=cfg.store, backend=str(cfg.backend),
        progress=bool(cfg.progress), ray_options=_ray_options(cfg) if cfg.backend == "ray" else None,
    )
    print(format_table(report))
    if cfg.out:
        print(f"\nwrote {cfg.out}")
    return report


def main(argv: list[str]) -> int:
    command, overrides = argv[0], argv[1:]
    if command not in COMMANDS:
        raise ValueError(f"robot_si.collect.commands handles {COMMANDS}, not {command!r}")
    if any(o in ("-h", "--help", "help") for o in overrides):
        print(__doc__)
        print(f"options (configs/{command}.yaml):")
        from robot_si.config import CONFIG_DIR

        print((CONFIG_DIR / f"{command}.yaml").read_text())
        return 0
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ValueError(f"arguments must be key=value overrides (got {bad}), e.g. policy=runs/x/policy episodes=10")
    from robot_si.config import compose

    cfg = compose(command, _alias_overrides(overrides))
    if command == "collect":
        run_collect(cfg)
    else:
        run_eval(cfg)
    return 0
