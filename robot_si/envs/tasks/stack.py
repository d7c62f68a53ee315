"""`stack`: put the block of the first named colour on top of the block of the second named colour; a third
block is a distractor (difficulty 5). Success needs the top block resting on the bottom one, gripper open."""

from __future__ import annotations

import numpy as np

from robot_si.envs.base import Task, TaskSpec, sample_separated_xy
from robot_si.envs.registry import register
from robot_si.envs.tasks.blocks import BLOCK_HALF_SIZE_M, block_xml, pick_colors, place_block

RELEASED_OPENING_M = 2 * BLOCK_HALF_SIZE_M + 0.01
ALIGNMENT_TOLERANCE_M = 0.02


@register
class Stack(Task):
    spec = TaskSpec(
        name="stack",
        class_name="Stack",
        difficulty=5,
        tags=("language:colour", "distractors", "grasp", "precise"),
        max_episode_steps=90,
        train_instructions=(
            "stack the {color} block on the {base_color} block",
            "put the {color} block on top of the {base_color} block",
            "place the {color} cube onto the {base_color} cube",
            "stack the {color} cube on top of the {base_color} one",
        ),
        heldout_instructions=(
            "build a tower with the {color} block above the {base_color} block",
            "set the {color} cube on the {base_color} cube",
        ),
        description="Pick the first named block and set it on the second named block; a third block distracts.",
    )

    def objects_xml(self) -> str:
        return "\n".join([block_xml("block"), block_xml("base_block"), block_xml("distractor")])

    def randomize(self, env, rng: np.random.Generator) -> dict[str, str]:
        top, base, distractor = sample_separated_xy(rng, 3, min_distance_m=0.12)
        top_color, base_color, distractor_color = pick_colors(rng, 3)
        place_block(env, "block", top, rng, top_color)
        place_block(env, "base_block", base, rng, base_color)
        place_block(env, "distractor", distractor, rng, distractor_color)
        return {"color": top_color, "base_color": base_color}

    def place_position(self, env) -> np.ndarray:
        """Where the top block's centre rests when stacked on the base block as it is now."""
        return env.body_position("base_block") + [0.0, 0.0, 2 * BLOCK_HALF_SIZE_M]

    def is_success(self, env) -> bool:
        top, base = env.body_position("block"), env.body_position("base_block")
        aligned = np.linalg.norm(top[:2] - base[:2]) < ALIGNMENT_TOLERANCE_M
        resting = abs(top[2] - base[2] - 2 * BLOCK_HALF_SIZE_M) < 0.008 and base[2] < BLOCK_HALF_SIZE_M + 0.005
        return bool(aligned and resting and env.gripper_opening() > RELEASED_OPENING_M)
