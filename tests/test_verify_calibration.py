"""Calibration: temperature scaling fixes an over-confident detector; thresholds meet a target precision."""

import numpy as np
import pytest

from robot_si.verify.calibration import (
    choose_threshold,
    expected_calibration_error,
    fit_temperature,
    reliability_table,
    sigmoid,
)


def _overconfident(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    true_logits = rng.normal(0.0, 1.5, n)
    labels = (rng.random(n) < sigmoid(true_logits)).astype(int)
    return 4.0 * true_logits, labels  # a detector 4x too sure of itself


def test_temperature_scaling_reduces_ece_on_an_overconfident_detector():
    logits, labels = _overconfident()
    before = expected_calibration_error(sigmoid(logits), labels)
    temperature = fit_temperature(logits, labels)
    after = expected_calibration_error(sigmoid(logits / temperature), labels)
    assert temperature == pytest.approx(4.0, rel=0.2)
    assert before > 0.08 and after < 0.03


def test_temperature_needs_both_classes():
    with pytest.raises(ValueError, match="both classes"):
        fit_temperature(np.array([1.0, 2.0]), np.array([1, 1]))


def test_threshold_reaches_target_precision_with_most_recall():
    probs = np.array([0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.4, 0.3, 0.2, 0.1])
    labels = np.array([1, 1, 1, 1, 0, 1, 0, 0, 1, 0])
    choice = choose_threshold(probs, labels, target_precision=0.8, min_accepted=1)
    assert choice.met_target and choice.threshold == pytest.approx(0.6)
    assert choice.precision == pytest.approx(5 / 6)
    strict = choose_threshold(probs, labels, target_precision=1.0, min_accepted=1)
    assert strict.threshold == pytest.approx(0.8) and strict.recall == pytest.approx(4 / 6)


def test_threshold_reports_when_target_is_unreachable():
    choice = choose_threshold(np.array([0.9, 0.8]), np.array([0, 1]), target_precision=0.99, min_accepted=1)
    assert not choice.met_target and choice.precision == pytest.approx(0.5)


def test_ece_and_reliability_table_on_a_known_example():
    probs = np.array([0.05, 0.05, 0.95, 0.95])
    labels = np.array([0, 0, 1, 0])
    table = reliability_table(probs, labels)
    assert table["count"][0] == 2 and table["count"][9] == 2
    assert table["success_rate"][9] == pytest.approx(0.5)
    assert expected_calibration_error(probs, labels) == pytest.approx(0.5 * 0.05 + 0.5 * 0.45)
