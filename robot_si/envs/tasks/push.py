"""`push`: push the block of the named colour into the square zone; a distractor block stays out of the way
(difficulty 3)."""

from __future__ import annotations

import numpy as np

from robot_si.envs import scene
from robot_si.envs.base import Task, TaskSpec, sample_separated_xy
from robot_si.envs.registry import register
from robot_si.envs.tasks.blocks import BLOCK_HALF_SIZE_M, block_xml, pick_colors, place_block

ZONE_HALF_SIZE_M = 0.05
PUSH_DISTANCE_RANGE_M = (0.11, 0.18)  # block start to zone centre
PRE_PUSH_BACKOFF_M = 0.065  # where the fingers go down behind the block


@register
class Push(Task):
    spec = TaskSpec(
        name="push",
        class_name="Push",
        difficulty=3,
        tags=("language:colour", "distractors", "no-grasp", "contact-rich"),
        max_episode_steps=60,
        train_instructions=(
            "push the {color} block into the white square",
            "slide the {color} block onto the white square",
            "push the {color} cube into the white zone",
            "move the {color} block to the white square by pushing it",
        ),
        heldout_instructions=(
            "nudge the {color} cube until it sits in the white area",
            "shove the {color} block over to the white patch",
        ),
        description="Push the named block (without grasping) until its centre is inside the white square.",
    )

    def objects_xml(self) -> str:
        return "\n".join(
            [
                f'    <body name="zone" pos="0 0 0.0005"><geom name="zone" class="visual" type="box"'
                f' size="{ZONE_HALF_SIZE_M} {ZONE_HALF_SIZE_M} 0.0005" rgba="0.95 0.95 0.95 1"/></body>',
                block_xml("block"),
                block_xml("distractor"),
            ]
        )

    def randomize(self, env, rng: np.random.Generator) -> dict[str, str]:
        low, high = np.array(scene.OBJECT_REGION_LOW), np.array(scene.OBJECT_REGION_HIGH)
        for _ in range(1000):
            zone = rng.uniform(low + ZONE_HALF_SIZE_M, high - ZONE_HALF_SIZE_M)
            angle = rng.uniform(-np.pi, np.pi)
            direction = np.array([np.cos(angle), np.sin(angle)])
            block = zone - direction * rng.uniform(*PUSH_DISTANCE_RANGE_M)
            pre_push = block - direction * PRE_PUSH_BACKOFF_M
            inside = np.all(block >= low) and np.all(block <= high)
            reachable = np.all(pre_push >= np.array(scene.WORKSPACE_LOW[:2]) + 0.01) and np.all(
                pre_push <= np.array(scene.WORKSPACE_HIGH[:2]) - 0.01
            )
            if inside and reachable:
                break
        distractor = self._distractor_xy(rng, block, zone, pre_push)
        target_color, distractor_color = pick_colors(rng, 2)
        env.set_static_body_position("zone", [zone[0], zone[1], 0.0005])
        place_block(env, "block", block, rng, target_color)
        place_block(env, "distractor", distractor, rng, distractor_color)
        self.zone_xy = zone
        return {"color": target_color}

    @staticmethod
    def _distractor_xy(rng, block, zone, pre_push) -> np.ndarray:
        """A spot away from the pushing lane (pre-push point -> zone) and from the zone itself."""
        for _ in range(1000):
            (candidate,) = sample_separated_xy(rng, 1, min_distance_m=0.1, avoid=[block, zone, pre_push])
            lane = zone - pre_push
            t = np.clip(np.dot(candidate - pre_push, lane) / np.dot(lane, lane), 0.0, 1.0)
            if np.linalg.norm(candidate - (pre_push + t * lane)) > 0.1:
                return candidate
        raise RuntimeError("could not place the push distractor away from the lane; widen OBJECT_REGION")

    def is_success(self, env) -> bool:
        offset = env.body_position("block")[:2] - self.zone_xy
        return bool(np.all(np.abs(offset) < ZONE_HALF_SIZE_M) and env.body_position("block")[2] < 2 * BLOCK_HALF_SIZE_M)
