"""`drawer`: open the drawer of a small cabinet by hooking its handle and pulling (difficulty 3).

The cabinet faces the robot (-x); the drawer slides out towards the robot. Drawer parts collide only with
the hand and fingers (collision bit 2), not with the cabinet, so the slide joint alone guides the drawer.
"""

from __future__ import annotations

import numpy as np

from robot_si.envs import scene
from robot_si.envs.base import Task, TaskSpec
from robot_si.envs.registry import register

CABINET_HALF_DEPTH_M = 0.08
HANDLE_HEIGHT_M = 0.05
HOOK_OFFSET_M = 0.099  # from the cabinet centre to the middle of the gap between drawer front and handle
DRAWER_TRAVEL_M = 0.12
OPEN_AT_M = 0.08
CABINET_X_RANGE_M = (0.04, 0.14)
CABINET_Y_RANGE_M = (-0.14, 0.14)

_CABINET = 'rgba="0.55 0.55 0.6 1"'
_DRAWER = 'contype="2" conaffinity="2" condim="3"'


@register
class Drawer(Task):
    spec = TaskSpec(
        name="drawer",
        class_name="Drawer",
        difficulty=3,
        tags=("articulated", "no-grasp", "contact-rich"),
        max_episode_steps=60,
        train_instructions=(
            "open the drawer",
            "open the {color} drawer",
            "pull the drawer open",
            "pull out the {color} drawer",
        ),
        heldout_instructions=(
            "slide the drawer out towards you",
            "hook the handle and draw the {color} drawer out",
        ),
        description="Hook the handle of the cabinet's drawer and pull it at least 8 cm open.",
    )

    def objects_xml(self) -> str:
        d = CABINET_HALF_DEPTH_M
        return f"""
    <body name="cabinet" pos="0.1 0 0">
      <geom class="static" type="box" size="{d} 0.09 0.005" pos="0 0 0.005" {_CABINET}/>
      <geom class="static" type="box" size="{d} 0.09 0.005" pos="0 0 0.095" {_CABINET}/>
      <geom class="static" type="box" size="{d} 0.005 0.045" pos="0 0.085 0.05" {_CABINET}/>
      <geom class="static" type="box" size="{d} 0.005 0.045" pos="0 -0.085 0.05" {_CABINET}/>
      <geom class="static" type="box" size="0.005 0.09 0.045" pos="{d - 0.005} 0 0.05" {_CABINET}/>
      <body name="drawer" pos="0 0 0">
        <joint name="drawer_slide" type="slide" axis="-1 0 0" range="0 {DRAWER_TRAVEL_M}" damping="4"
          frictionloss="0.2"/>
        <geom name="drawer_front" type="box" size="0.005 0.078 0.039" pos="{-d + 0.005} 0 0.05" {_DRAWER}/>
        <geom type="box" size="0.07 0.075 0.004" pos="0 0 0.015" {_DRAWER} rgba="0.7 0.7 0.72 1"/>
        <geom type="box" size="0.07 0.004 0.025" pos="0 0.074 0.04" {_DRAWER} rgba="0.7 0.7 0.72 1"/>
        <geom type="box" size="0.07 0.004 0.025" pos="0 -0.074 0.04" {_DRAWER} rgba="0.7 0.7 0.72 1"/>
        <geom type="box" size="0.004 0.075 0.025" pos="0.066 0 0.04" {_DRAWER} rgba="0.7 0.7 0.72 1"/>
        <geom type="box" size="0.0225 0.006 0.006" pos="{-d - 0.0225} 0.035 {HANDLE_HEIGHT_M}" {_DRAWER}
          rgba="0.2 0.2 0.22 1"/>
        <geom type="box" size="0.0225 0.006 0.006" pos="{-d - 0.0225} -0.035 {HANDLE_HEIGHT_M}" {_DRAWER}
          rgba="0.2 0.2 0.22 1"/>
        <geom name="handle" type="capsule" fromto="{-d - 0.045} -0.045 {HANDLE_HEIGHT_M} {-d - 0.045} 0.045
          {HANDLE_HEIGHT_M}" size="0.007" {_DRAWER} rgba="0.2 0.2 0.22 1"/>
      </body>
    </body>"""

    def randomize(self, env, rng: np.random.Generator) -> dict[str, str]:
        x = rng.uniform(*CABINET_X_RANGE_M)
        y = rng.uniform(*CABINET_Y_RANGE_M)
        env.set_static_body_position("cabinet", [x, y, 0.0])
        color = scene.COLOR_NAMES[int(rng.integers(len(scene.COLOR_NAMES)))]
        env.set_geom_color("drawer_front", scene.PALETTE[color])
        self.cabinet_xy = np.array([x, y])
        return {"color": color}

    def hook_position(self, env) -> np.ndarray:
        """Grasp-point position between the drawer front and the handle, at handle height (drawer as it is now)."""
        opening = env.joint_position("drawer_slide")
        return np.array([self.cabinet_xy[0] - HOOK_OFFSET_M - opening, self.cabinet_xy[1], HANDLE_HEIGHT_M])

    def is_success(self, env) -> bool:
        return env.joint_position("drawer_slide") > OPEN_AT_M
