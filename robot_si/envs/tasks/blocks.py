"""Shared pieces of the block tasks (push, pick_place, stack): block MJCF, placement and colour helpers."""

from __future__ import annotations

import numpy as np

from robot_si.envs import scene

BLOCK_HALF_SIZE_M = 0.0225  # 4.5 cm cubes
BLOCK_YAW_RANGE_RAD = 0.35  # blocks start roughly aligned with the fingers


def block_xml(name: str) -> str:
    half = BLOCK_HALF_SIZE_M
    return (
        f'    <body name="{name}" pos="0 0 {half}"><freejoint name="{name}"/>'
        f'<geom name="{name}" class="block" size="{half} {half} {half}"/></body>'
    )


def place_block(env, name: str, xy, rng: np.random.Generator, color: str) -> None:
    yaw = rng.uniform(-BLOCK_YAW_RANGE_RAD, BLOCK_YAW_RANGE_RAD)
    env.set_free_body_pose(name, [xy[0], xy[1], BLOCK_HALF_SIZE_M], yaw)
    env.set_geom_color(name, scene.PALETTE[color])


def pick_colors(rng: np.random.Generator, count: int) -> list[str]:
    return [scene.COLOR_NAMES[i] for i in rng.choice(len(scene.COLOR_NAMES), size=count, replace=False)]
