"""`robot-si improve [preset=smoke] [name=NAME] [key=value ...]`: run or resume the self-improvement loop."""

from __future__ import annotations

from robot_si.config import compose


def main(argv: list[str]) -> int:
    overrides = argv[1:]
    if overrides and overrides[0] in ("-h", "--help"):
        print(__doc__)
        print("Config: configs/improve.yaml; presets: configs/preset/ (default, smoke).")
        return 0
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ValueError(f"arguments must be key=value Hydra overrides (got {bad}), e.g. preset=smoke name=try1")
    from robot_si.improve.loop import run_improve

    run_improve(compose("improve", overrides))
    return 0
