"""Training: weighted behaviour cloning of any robot_si policy on a TrainingView.

Owns the training loop (trainer.py: `TrainConfig`, `Trainer`, `TrainResult`, `train_policy`,
`compute_normalization_stats`, `weighted_loss`, `ResumableBatchSampler`) and the `robot-si train` command
(commands.py). Uses per-frame weights chosen by robot_si.weight; never reads ground truth and knows nothing of
environments (evaluation during training is a caller-supplied callback).
"""

from robot_si.train.trainer import (
    ResumableBatchSampler,
    TrainConfig,
    Trainer,
    TrainResult,
    compute_normalization_stats,
    latest_checkpoint,
    select_device,
    train_policy,
    weighted_loss,
)

__all__ = [
    "ResumableBatchSampler",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "compute_normalization_stats",
    "latest_checkpoint",
    "select_device",
    "train_policy",
    "weighted_loss",
]
