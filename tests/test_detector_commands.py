"""`robot-si detector train|eval|label` end to end on a tiny synthetic store (weight-free encoders)."""

import json

from robot_si.cli import main as cli
from robot_si.data import read_label_set
from robot_si.verify.testing import synthetic_verifier_store

FAST = ["verifier=fast", "verifier.encoder=hashing", "verifier.detector.epochs=2", "verifier.progress.epochs=2"]


def test_train_eval_label_commands(tmp_path, capsys):
    store = synthetic_verifier_store(tmp_path / "store", num_demos=2, num_autonomous=4)
    out = tmp_path / "run"
    assert cli(["detector", "train", f"stores=[{store.root}]", f"out={out}", *FAST]) == 0
    assert (out / "detector" / "model.safetensors").exists() and (out / "progress" / "progress_config.json").exists()
    report = json.loads((out / "train_report.json").read_text())
    assert report["detector"]["examples_by_source"]["demo_end"] == {"positive": 2, "negative": 0}

    assert cli(["detector", "eval", f"detector={out}", f"store={store.root}", f"out={out / 'audit'}", "source=autonomous"]) == 0
    audit = json.loads((out / "audit" / "audit.json").read_text())
    assert audit["episodes"] == 4 and {"auc", "accepted_but_failed", "ece", "per_task"} <= set(audit)
    assert (out / "audit" / "detector_reliability.png").exists() and (out / "audit" / "detector_roc.png").exists()

    assert cli(["detector", "label", f"detector={out}", f"store={store.root}", "labeling.source=oracle", "labeling.budget=1"]) == 0
    labels = read_label_set(store.root).episode_labels
    assert sum(l.label_source == "oracle" for l in labels.values()) == 1
    assert "1 oracle labels spent" in capsys.readouterr().out


def test_bad_arguments_name_the_fix(tmp_path, capsys):
    assert cli(["detector", "train", f"out={tmp_path}"]) == 1
    assert "needs stores=..." in capsys.readouterr().err
    assert cli(["detector", "judge"]) == 1
    assert "unknown detector action" in capsys.readouterr().err
    assert cli(["detector", "eval", f"detector={tmp_path}", f"store={tmp_path}", f"out={tmp_path}"]) == 1
    assert "robot-si detector train" in capsys.readouterr().err
