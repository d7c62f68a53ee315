"""The shared tabletop scene: table, primitive-geom arm with a parallel gripper, lights and cameras (MJCF).

Owns the geometry constants of the arm and the workspace, the colour palette, and `build_scene_xml`, which
wraps a task's object MJCF in the shared scene. Tasks never touch the arm; the arm never knows about tasks.

Frame: the table top is the plane z = 0, +x points away from the robot towards the front camera, +y to the
camera's right. The arm base stands at `ARM_BASE_XY`.

Arm (every geom is a capsule, cylinder or box; no meshes): base yaw, shoulder pitch, elbow pitch, wrist pitch,
wrist roll, two slide fingers. The wrist pitch keeps the hand pointing straight down and the wrist roll keeps
the fingers closing along world y; both are set by the analytic IK in `base.py`, so the agent only commands
the grasp point (end-effector) position and the gripper. Collision: only the hand and fingers collide (with
the table and objects); the links are visual so the arm never snags on itself.
"""

from __future__ import annotations

# --- physics timing -------------------------------------------------------------------------------------------
PHYSICS_TIMESTEP_S = 0.004
CONTROL_HZ = 10
SUBSTEPS_PER_CONTROL = round(1.0 / (CONTROL_HZ * PHYSICS_TIMESTEP_S))  # 25

# --- arm geometry (metres) ------------------------------------------------------------------------------------
ARM_BASE_XY = (-0.42, 0.0)
SHOULDER_HEIGHT_M = 0.16  # shoulder axis above the table
UPPER_ARM_LENGTH_M = 0.36
FOREARM_LENGTH_M = 0.36
WRIST_TO_GRASP_M = 0.125  # wrist axis down to the grasp point between the fingertips
FINGER_MAX_OPENING_M = 0.09  # distance between the finger pads when fully open
FINGER_HALF_TRAVEL_M = FINGER_MAX_OPENING_M / 2

# --- workspace the end-effector target is clipped to (metres) -------------------------------------------------
WORKSPACE_LOW = (-0.20, -0.25, 0.018)
WORKSPACE_HIGH = (0.20, 0.25, 0.25)
EE_MAX_STEP_M = 0.05  # end-effector displacement per control step for an action of 1.0
EE_HOME = (-0.05, 0.0, 0.20)

# Objects are placed inside this region of the table (metres).
OBJECT_REGION_LOW = (-0.14, -0.21)
OBJECT_REGION_HIGH = (0.17, 0.21)

# Named colours the instructions refer to; chosen to stay distinct at 64 px.
PALETTE: dict[str, tuple[float, float, float]] = {
    "red": (0.90, 0.10, 0.10),
    "green": (0.10, 0.72, 0.15),
    "blue": (0.12, 0.30, 0.95),
    "yellow": (0.95, 0.85, 0.10),
    "purple": (0.60, 0.15, 0.80),
    "orange": (1.00, 0.50, 0.00),
}
COLOR_NAMES = tuple(PALETTE)

ARM_JOINTS = ("yaw", "shoulder", "elbow", "wrist_pitch", "wrist_roll")
FINGER_JOINTS = ("finger_left", "finger_right")

_ARM = f"""
    <body name="arm_base" pos="{ARM_BASE_XY[0]} {ARM_BASE_XY[1]} 0">
      <geom class="link" type="cylinder" size="0.07 0.03" pos="0 0 0.03" rgba="0.25 0.25 0.28 1"/>
      <body name="turret" pos="0 0 0.06" gravcomp="1">
        <joint name="yaw" axis="0 0 1" range="-1.7 1.7" damping="2" armature="0.05"/>
        <geom class="link" type="cylinder" size="0.05 0.05" pos="0 0 0.05" rgba="0.85 0.85 0.88 1"/>
        <body name="upper_arm" pos="0 0 {SHOULDER_HEIGHT_M - 0.06}" gravcomp="1">
          <joint name="shoulder" axis="0 1 0" range="-1.2 2.3" damping="2" armature="0.05"/>
          <geom class="link" type="cylinder" size="0.045 0.035" quat="0.7071 0.7071 0 0" rgba="0.25 0.25 0.28 1"/>
          <geom class="link" type="capsule" fromto="0 0 0 0 0 {UPPER_ARM_LENGTH_M}" size="0.03" rgba="0.85 0.85 0.88 1"/>
          <body name="forearm" pos="0 0 {UPPER_ARM_LENGTH_M}" gravcomp="1">
            <joint name="elbow" axis="0 1 0" range="-0.2 2.9" damping="1.5" armature="0.03"/>
            <geom class="link" type="cylinder" size="0.038 0.03" quat="0.7071 0.7071 0 0" rgba="0.25 0.25 0.28 1"/>
            <geom class="link" type="capsule" fromto="0 0 0 0 0 {FOREARM_LENGTH_M}" size="0.025" rgba="0.85 0.85 0.88 1"/>
            <body name="hand" pos="0 0 {FOREARM_LENGTH_M}" gravcomp="1">
              <joint name="wrist_pitch" axis="0 1 0" range="-4.5 1.5" damping="1" armature="0.02"/>
              <geom class="link" type="cylinder" size="0.03 0.025" quat="0.7071 0.7071 0 0" rgba="0.25 0.25 0.28 1"/>
              <body name="wrist" pos="0 0 0" gravcomp="1">
                <joint name="wrist_roll" axis="0 0 1" range="-3.2 3.2" damping="0.5" armature="0.01"/>
                <geom class="link" type="cylinder" size="0.02 0.025" pos="0 0 -0.035" rgba="0.85 0.85 0.88 1"/>
                <geom class="hand" type="box" size="0.016 0.055 0.012" pos="0 0 -0.068" rgba="0.25 0.25 0.28 1"/>
                <camera name="wrist" pos="0.04 0 -0.05" xyaxes="0 -1 0 0.966 0 0.259" fovy="75"/>
                <site name="ee" pos="0 0 -{WRIST_TO_GRASP_M}" size="0.006" rgba="1 1 1 0"/>
                <body name="finger_left" pos="0 0 -0.08" gravcomp="1">
                  <joint name="finger_left" type="slide" axis="0 1 0" range="0 {FINGER_HALF_TRAVEL_M}" damping="2" armature="0.01"/>
                  <geom class="finger" type="box" size="0.012 0.006 0.032" pos="0 0.006 -0.028"/>
                </body>
                <body name="finger_right" pos="0 0 -0.08" gravcomp="1">
                  <joint name="finger_right" type="slide" axis="0 -1 0" range="0 {FINGER_HALF_TRAVEL_M}" damping="2" armature="0.01"/>
                  <geom class="finger" type="box" size="0.012 0.006 0.032" pos="0 -0.006 -0.028"/>
                </body>
              </body>
            </body>
          </body>
        </body>
      </body>
    </body>
"""

_ACTUATORS = f"""
    <position name="yaw" joint="yaw" kp="600" dampratio="1" ctrlrange="-1.7 1.7"/>
    <position name="shoulder" joint="shoulder" kp="800" dampratio="1" ctrlrange="-1.2 2.3"/>
    <position name="elbow" joint="elbow" kp="600" dampratio="1" ctrlrange="-0.2 2.9"/>
    <position name="wrist_pitch" joint="wrist_pitch" kp="300" dampratio="1" ctrlrange="-4.5 1.5"/>
    <position name="wrist_roll" joint="wrist_roll" kp="100" dampratio="1" ctrlrange="-3.2 3.2"/>
    <position name="finger_left" joint="finger_left" kp="300" dampratio="1" ctrlrange="0 {FINGER_HALF_TRAVEL_M}" forcerange="-8 8"/>
    <position name="finger_right" joint="finger_right" kp="300" dampratio="1" ctrlrange="0 {FINGER_HALF_TRAVEL_M}" forcerange="-8 8"/>
"""


def build_scene_xml(task_name: str, objects_xml: str, *, assets_xml: str = "", extra_xml: str = "") -> str:
    """The full MJCF of one task: the shared scene with `objects_xml` inserted into the worldbody."""
    return f"""
<mujoco model="robot_si_{task_name}">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="{PHYSICS_TIMESTEP_S}" integrator="implicitfast" cone="elliptic" impratio="5"/>
  <visual>
    <global offwidth="256" offheight="256"/>
    <quality shadowsize="0"/>
    <headlight ambient="0.3 0.3 0.3" diffuse="0.35 0.35 0.35" specular="0.05 0.05 0.05"/>
  </visual>
  <default>
    <geom solref="0.004 1" friction="1 0.005 0.0001"/>
    <default class="link"><geom contype="0" conaffinity="0" density="300"/></default>
    <default class="hand"><geom contype="1" conaffinity="3" density="300" condim="4"/></default>
    <default class="finger"><geom contype="1" conaffinity="3" density="300" condim="4" friction="1.5 0.01 0.001"
      rgba="0.15 0.15 0.17 1"/></default>
    <default class="block"><geom type="box" contype="1" conaffinity="1" condim="4" density="400"
      friction="1 0.01 0.001"/></default>
    <default class="visual"><geom contype="0" conaffinity="0"/></default>
    <default class="static"><geom contype="1" conaffinity="1" condim="3"/></default>
  </default>
  <asset>{assets_xml}</asset>
  <worldbody>
    <light name="top" pos="0 0 1.5" dir="0 0 -1" directional="true" diffuse="0.4 0.4 0.4" specular="0.1 0.1 0.1" castshadow="false"/>
    <geom name="floor" type="plane" size="3 3 0.1" pos="0 0 -0.3" rgba="0.32 0.34 0.38 1" contype="0" conaffinity="0"/>
    <geom name="table" class="static" type="box" size="0.62 0.42 0.025" pos="-0.12 0 -0.025" rgba="0.72 0.64 0.52 1"/>
    <camera name="front" pos="0.30 0 0.62" xyaxes="0 1 0 -0.889 0 0.459" fovy="42"/>
{_ARM}
{objects_xml}
  </worldbody>
  <actuator>{_ACTUATORS}</actuator>
  {extra_xml}
</mujoco>
"""
