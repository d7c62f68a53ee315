"""The detector on a tiny real MuJoCo store: scripted demos (noise 0) are the only training data; held-out
rollouts of other seeds at noise 0 (successes) and noise 1 (failures) must be told apart better than chance."""

import numpy as np
import pytest

from robot_si.data import EpisodeStore
from robot_si.verify import DetectorConfig, SuccessDetector
from robot_si.verify.audit import audit_detector
from robot_si.verify.features import make_encoders
from robot_si.verify.testing import record_expert_rollouts

TASK = "push"


@pytest.mark.slow
def test_detector_trained_on_demos_separates_success_from_failure(tmp_path):
    pytest.importorskip("mujoco")
    try:
        encoders = make_encoders("default")  # the policy's frozen EfficientNet-Lite0 + MiniLM
    except RuntimeError as error:
        pytest.skip(f"pretrained encoders unavailable: {error}")
    demos = EpisodeStore.create(tmp_path / "demos", fps=10, image_size=64, state_dim=8, action_dim=4)
    record_expert_rollouts(demos, [TASK], noise=0.0, seeds=range(12), source="demo", round=0)
    heldout = EpisodeStore.create(tmp_path / "heldout", fps=10, image_size=64, state_dim=8, action_dim=4)
    record_expert_rollouts(heldout, [TASK], noise=0.0, seeds=range(100, 106))
    record_expert_rollouts(heldout, [TASK], noise=1.0, seeds=range(200, 208))
    truth = heldout.audit_table()
    assert 0 < sum(truth.values()) < len(truth), "the held-out store needs successes and failures"

    detector = SuccessDetector(DetectorConfig(epochs=15, hidden_dim=32, num_heads=2), encoders=encoders)
    report = detector.fit_stores([demos])
    assert report["examples_by_source"]["demo_end"]["positive"] == 12
    audit = audit_detector(heldout, detector, out_dir=tmp_path / "audit")
    assert audit["auc"] > 0.5
    assert audit["per_task"][TASK]["episodes"] == 14
    assert np.isfinite(audit["ece"]) and (tmp_path / "audit" / "detector_roc.png").exists()
