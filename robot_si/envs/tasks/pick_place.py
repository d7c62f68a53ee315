"""`pick_place`: pick up the block of the named colour and put it on the plate; a distractor block of another
colour is on the table (difficulty 4). Success needs the block resting on the plate and the gripper open."""

from __future__ import annotations

import numpy as np

from robot_si.envs import scene
from robot_si.envs.base import Task, TaskSpec, sample_separated_xy
from robot_si.envs.registry import register
from robot_si.envs.tasks.blocks import BLOCK_HALF_SIZE_M, block_xml, pick_colors, place_block

PLATE_RADIUS_M = 0.06
PLATE_TOP_M = 0.008
RELEASED_OPENING_M = 2 * BLOCK_HALF_SIZE_M + 0.01


@register
class PickPlace(Task):
    spec = TaskSpec(
        name="pick_place",
        class_name="PickPlace",
        difficulty=4,
        tags=("language:colour", "distractors", "grasp"),
        max_episode_steps=70,
        train_instructions=(
            "put the {color} block on the plate",
            "place the {color} block onto the plate",
            "pick up the {color} block and put it on the plate",
            "move the {color} cube onto the plate",
        ),
        heldout_instructions=(
            "set the {color} cube down on the dish",
            "lift the {color} block and drop it on the plate",
        ),
        description="Grasp the named block, carry it onto the white plate and let go.",
    )

    def objects_xml(self) -> str:
        return "\n".join(
            [
                f'    <body name="plate" pos="0 0 0"><geom name="plate" class="static" type="cylinder"'
                f' size="{PLATE_RADIUS_M} {PLATE_TOP_M / 2}" pos="0 0 {PLATE_TOP_M / 2}" rgba="0.95 0.95 0.95 1"/></body>',
                block_xml("block"),
                block_xml("distractor"),
            ]
        )

    def randomize(self, env, rng: np.random.Generator) -> dict[str, str]:
        plate, block, distractor = sample_separated_xy(rng, 3, min_distance_m=0.13)
        target_color, distractor_color = pick_colors(rng, 2)
        env.set_static_body_position("plate", [plate[0], plate[1], 0.0])
        place_block(env, "block", block, rng, target_color)
        place_block(env, "distractor", distractor, rng, distractor_color)
        self.plate_xy = plate
        return {"color": target_color}

    def place_position(self) -> np.ndarray:
        """Where the block's centre rests when it sits in the middle of the plate."""
        return np.array([self.plate_xy[0], self.plate_xy[1], PLATE_TOP_M + BLOCK_HALF_SIZE_M])

    def is_success(self, env) -> bool:
        block = env.body_position("block")
        on_plate = np.linalg.norm(block[:2] - self.plate_xy) < PLATE_RADIUS_M - 0.01
        resting_height = abs(block[2] - (PLATE_TOP_M + BLOCK_HALF_SIZE_M)) < 0.01
        return bool(on_plate and resting_height and env.gripper_opening() > RELEASED_OPENING_M)
