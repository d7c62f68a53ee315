"""`button`: press the button of the named colour among three buttons (difficulty 2)."""

from __future__ import annotations

import numpy as np

from robot_si.envs import scene
from robot_si.envs.base import Task, TaskSpec, sample_separated_xy
from robot_si.envs.registry import register

NUM_BUTTONS = 3
BASE_HEIGHT_M = 0.03
CAP_HALF_HEIGHT_M = 0.01
CAP_TOP_HEIGHT_M = BASE_HEIGHT_M + 2 * CAP_HALF_HEIGHT_M  # 0.05 m above the table when released
TRAVEL_M = 0.015
PRESSED_AT_M = 0.009  # cap pushed down at least this far counts as pressed


@register
class Button(Task):
    spec = TaskSpec(
        name="button",
        class_name="Button",
        difficulty=2,
        tags=("language:colour", "distractors", "no-grasp", "articulated"),
        max_episode_steps=40,
        train_instructions=(
            "press the {color} button",
            "push down the {color} button",
            "push the {color} button",
            "hit the {color} button",
        ),
        heldout_instructions=(
            "click the {color} switch",
            "press down on the {color} knob",
        ),
        description="Three spring-loaded buttons of distinct colours; press the named one down.",
    )

    def objects_xml(self) -> str:
        parts = []
        for i in range(NUM_BUTTONS):
            parts.append(
                f'    <body name="button{i}" pos="0 0 0">'
                f'<geom class="static" type="box" size="0.035 0.035 {BASE_HEIGHT_M / 2}" pos="0 0 {BASE_HEIGHT_M / 2}"'
                f' rgba="0.3 0.3 0.32 1"/>'
                f'<body name="cap{i}" pos="0 0 {BASE_HEIGHT_M + CAP_HALF_HEIGHT_M}">'
                f'<joint name="press{i}" type="slide" axis="0 0 1" range="-{TRAVEL_M} 0" stiffness="80" damping="2"'
                f' springref="0"/>'
                f'<geom name="cap{i}" class="static" type="cylinder" size="0.024 {CAP_HALF_HEIGHT_M}" mass="0.02"/>'
                f"</body></body>"
            )
        return "\n".join(parts)

    def randomize(self, env, rng: np.random.Generator) -> dict[str, str]:
        colors = rng.choice(len(scene.COLOR_NAMES), size=NUM_BUTTONS, replace=False)
        positions = sample_separated_xy(rng, NUM_BUTTONS, min_distance_m=0.12)
        for i, (color, xy) in enumerate(zip(colors, positions)):
            env.set_static_body_position(f"button{i}", [xy[0], xy[1], 0.0])
            env.set_geom_color(f"cap{i}", scene.PALETTE[scene.COLOR_NAMES[color]])
        return {"color": scene.COLOR_NAMES[colors[0]]}  # button0 is the target

    def target_position(self, env) -> np.ndarray:
        """Centre of the target cap's top face."""
        return env.body_position("button0") + [0.0, 0.0, CAP_TOP_HEIGHT_M]

    def is_success(self, env) -> bool:
        return env.joint_position("press0") < -PRESSED_AT_M
