"""The learned verifier: success detector, progress/value model, calibration, budgeted labeling, audit.

Owns everything that turns raw episodes into labels without the simulator's ground truth:
- `detector.py`    SuccessDetector: clip of frozen frame features + instruction (+ state) -> calibrated P(success);
- `examples.py`    the no-ground-truth training recipe (demo ends / "not yet" prefixes / relabeled instructions /
                   budgeted human-oracle labels);
- `progress.py`    ProgressModel: per-frame progress, value and n-step advantages;
- `calibration.py` temperature scaling, operating threshold for a target precision, ECE, reliability data;
- `labeling.py`    budgeted LabelSource (oracle, human) and active selection;
- `labeler.py`     label_store: writes a new label version through robot_si.data.labels;
- `audit.py`       the ONLY verify module that reads ground truth (AUC, accepted-but-failed, ECE, plots);
- `commands.py`    `robot-si detector train|eval|label`.

Rule (docs/architecture.md): detector, progress, examples, labeler and labeling never call
`EpisodeStore.audit_table()`, except `OracleLabelSource`, one budgeted question at a time.
Heavy modules (torch, encoders) are imported lazily by the submodules.
"""

from robot_si.verify.calibration import choose_threshold, expected_calibration_error, fit_temperature, reliability_table
from robot_si.verify.detector import ClipFeatures, DetectorConfig, SuccessDetector, train_detector
from robot_si.verify.labeler import label_store, labelling_summary
from robot_si.verify.labeling import (
    HumanLabelSource,
    LabelBudgetExhausted,
    LabelSource,
    OracleLabelSource,
    make_label_source,
    select_for_labeling,
)
from robot_si.verify.progress import ProgressConfig, ProgressModel, n_step_advantage, progress_targets

__all__ = [
    "ClipFeatures",
    "DetectorConfig",
    "HumanLabelSource",
    "LabelBudgetExhausted",
    "LabelSource",
    "OracleLabelSource",
    "ProgressConfig",
    "ProgressModel",
    "SuccessDetector",
    "choose_threshold",
    "expected_calibration_error",
    "fit_temperature",
    "label_store",
    "labelling_summary",
    "make_label_source",
    "n_step_advantage",
    "progress_targets",
    "reliability_table",
    "select_for_labeling",
    "train_detector",
]
