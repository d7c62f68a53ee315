"""Hydra config composition shared by every subcommand.

Configs live in `robot_si/configs/` (package data, so they are found from an installed wheel too);
the repository's top-level `configs` is a symlink to it.
"""

from __future__ import annotations

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
