"""`robot-si train key=value ...`: weighted behaviour cloning from stores (config: configs/train.yaml).

    robot-si train stores=[datasets/demos] out=outputs/bc steps=2000
    robot-si train stores=[datasets/demos,runs/x/auto] out=outputs/bc2 label_version=latest init_from=outputs/bc/policy
    torchrun --nproc_per_node=2 -m robot_si.train.commands train stores=[...] out=...   (data parallel)

Writes <out>/policy (save_pretrained: load with robot_si.policies.load_policy), <out>/checkpoints/ (resumable:
rerun the same command to continue) and <out>/train_result.json.
"""

from __future__ import annotations

import json
import sys

from omegaconf import DictConfig, OmegaConf

from robot_si.config import compose, to_yaml


def train_config_from(cfg: DictConfig):
    from robot_si.train.trainer import TrainConfig

    values = OmegaConf.to_container(cfg.train, resolve=True)
    if cfg.get("steps") is not None:
        values["steps"] = cfg.steps
    known = set(TrainConfig.__dataclass_fields__)
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown train.* keys {unknown}; known: {sorted(known)}")
    return TrainConfig(**values)


def run(cfg: DictConfig):
    from robot_si.train.trainer import train_policy

    stores = list(cfg.stores or [])
    if not stores or not cfg.out:
        raise ValueError("`robot-si train` needs stores=[DIR,...] and out=DIR (see `robot-si train --help`)")
    policy_config = OmegaConf.to_container(cfg.policy, resolve=True)
    mix = OmegaConf.to_container(cfg.mix, resolve=True) if isinstance(cfg.mix, DictConfig) else cfg.mix
    sources = list(cfg.sources) if cfg.sources is not None else None
    label_version = cfg.label_version
    if label_version is not None and not isinstance(label_version, str):
        label_version = list(label_version)
    return train_policy(
        stores,
        cfg.out,
        policy_config=policy_config,
        init_from=cfg.init_from,
        train_config=train_config_from(cfg),
        label_version=label_version,
        mix=mix,
        sources=sources,
        min_weight=float(cfg.min_weight),
        resume=bool(cfg.resume),
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "train":
        argv = argv[1:]
    if any(arg in ("-h", "--help") for arg in argv):
        print(__doc__)
        print(to_yaml(compose("train", [a for a in argv if a not in ("-h", "--help")])))
        return 0
    cfg = compose("train", argv)
    result = run(cfg)
    print(json.dumps(result.to_dict(), indent=2, default=str))
    print(f"trained {result.steps} steps (final loss {result.final_loss:.4f}, {result.samples_per_s:.0f} samples/s) "
          f"-> {result.policy_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
