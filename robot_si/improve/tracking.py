"""Optional experiment tracking for `robot-si improve`: per-round scalars to TensorBoard.

`summary.json` and `metrics.jsonl` are always written; this adds `runs/NAME/tensorboard/` when
`tracking.tensorboard=true` (needs the `tensorboard` package: `pip install 'robot_si[tensorboard]'`). Scalars are
logged with the round as the step: held-out success overall and per task, detector AUC / ECE /
accepted-but-failed, episodes collected / accepted, labels spent, action entropy, and seconds per phase.

A resumed run re-logs every round from 0 with `purge_step=0`, so TensorBoard hides the earlier process's events
and shows each round once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SCALAR_KEYS = (
    "success_rate_gt", "detector_auc", "ece", "accepted_but_failed", "episodes_collected", "episodes_accepted",
    "labels_spent", "action_entropy",
)


def round_scalars(summary: dict[str, Any]) -> dict[str, float]:
    """Flatten one round's summary into `group/name -> value` (None and non-numeric values are left out)."""
    scalars: dict[str, float] = {}
    for key in SCALAR_KEYS:
        value = summary.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            scalars[f"round/{key}"] = float(value)
    for task, stats in (summary.get("success_per_task") or {}).items():
        if stats.get("success_rate") is not None:
            scalars[f"success_per_task/{task}"] = float(stats["success_rate"])
    for phase, seconds in (summary.get("phase_seconds") or {}).items():
        scalars[f"phase_seconds/{phase}"] = float(seconds)
    return scalars


class TensorBoardTracker:
    """Writes each round's scalars to `<run_dir>/tensorboard/`."""

    def __init__(self, run_dir: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as error:  # torch's writer needs the tensorboard package
            raise RuntimeError(
                "tracking.tensorboard=true needs the tensorboard package: pip install 'robot_si[tensorboard]' "
                "(or set tracking.tensorboard=false)"
            ) from error
        self.log_dir = Path(run_dir) / "tensorboard"
        self._writer = SummaryWriter(log_dir=str(self.log_dir), purge_step=0)

    def log_round(self, summary: dict[str, Any]) -> None:
        for tag, value in round_scalars(summary).items():
            self._writer.add_scalar(tag, value, global_step=int(summary["round"]))
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class NoTracker:
    def log_round(self, summary: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


def make_tracker(tracking_cfg, run_dir: Path) -> TensorBoardTracker | NoTracker:
    """The tracker the config asks for (`tracking.tensorboard`); a missing `tracking` section means none."""
    if tracking_cfg is not None and bool(tracking_cfg.get("tensorboard", False)):
        return TensorBoardTracker(run_dir)
    return NoTracker()
