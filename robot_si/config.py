"""Hydra config composition shared by every subcommand.

Configs live in `robot_si/configs/` (package data, so they are found from an installed wheel too);
the repository's top-level `configs` is a symlink to it.
"""

from __future__ import annotations

import ast
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

CONFIG_DIR = Path(__file__).parent / "configs"


def compose(config_name: str, overrides: list[str] | None = None) -> DictConfig:
    """Compose `configs/<config_name>.yaml` with Hydra command-line style overrides (`key=value`)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import ConfigCompositionException

    if not (CONFIG_DIR / f"{config_name}.yaml").exists():
        raise FileNotFoundError(f"no config {config_name!r} in {CONFIG_DIR}")
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            return hydra_compose(config_name=config_name, overrides=list(overrides or []))
    except ConfigCompositionException as error:
        raise ValueError(f"bad config override in {overrides}: {error}. Use key=value with keys from "
                         f"{CONFIG_DIR / (config_name + '.yaml')}") from error


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)


def parse_overrides(items: list[str]) -> dict:
    """Plain KEY=VALUE pairs (not Hydra's grammar) for dataclass configs; values are Python literals when they parse as
    one (1e-3, [0,1], None), else strings."""
    overrides = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like KEY=VALUE")
        key, value = item.split("=", 1)
        try:
            overrides[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            overrides[key] = value
    return overrides
