"""`reach`: touch the ball of the named colour among distractor balls of other colours (difficulty 1)."""

from __future__ import annotations

import numpy as np

from robot_si.envs import scene
from robot_si.envs.base import Task, TaskSpec, sample_separated_xy
from robot_si.envs.registry import register

BALL_RADIUS_M = 0.03
NUM_BALLS = 3
TOUCH_DISTANCE_M = BALL_RADIUS_M + 0.015  # grasp point within 1.5 cm of the ball surface


@register
class Reach(Task):
    spec = TaskSpec(
        name="reach",
        class_name="Reach",
        difficulty=1,
        tags=("language:colour", "distractors", "no-grasp"),
        max_episode_steps=30,
        train_instructions=(
            "touch the {color} ball",
            "reach for the {color} ball",
            "move the gripper to the {color} ball",
            "go to the {color} ball",
        ),
        heldout_instructions=(
            "put your fingers on the {color} sphere",
            "tap the {color} one",
        ),
        description="Three balls of distinct colours; touch the one the instruction names.",
    )

    def objects_xml(self) -> str:
        # Balls do not collide: touching is judged by distance, so pushing them away cannot spoil the episode.
        return "\n".join(
            f'    <body name="ball{i}" pos="0 0 {BALL_RADIUS_M}">'
            f'<geom name="ball{i}" class="visual" type="sphere" size="{BALL_RADIUS_M}"/></body>'
            for i in range(NUM_BALLS)
        )

    def randomize(self, env, rng: np.random.Generator) -> dict[str, str]:
        colors = rng.choice(len(scene.COLOR_NAMES), size=NUM_BALLS, replace=False)
        positions = sample_separated_xy(rng, NUM_BALLS, min_distance_m=0.1)
        for i, (color, xy) in enumerate(zip(colors, positions)):
            env.set_static_body_position(f"ball{i}", [xy[0], xy[1], BALL_RADIUS_M])
            env.set_geom_color(f"ball{i}", scene.PALETTE[scene.COLOR_NAMES[color]])
        self.target_body = "ball0"  # ball0 is the target; its colour and place are random
        return {"color": scene.COLOR_NAMES[colors[0]]}

    def target_position(self, env) -> np.ndarray:
        return env.body_position(self.target_body)

    def is_success(self, env) -> bool:
        return bool(np.linalg.norm(env.ee_position() - self.target_position(env)) < TOUCH_DISTANCE_M)
