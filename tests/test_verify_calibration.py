"""Calibration: temperature scaling fixes an over-confident detector; thresholds meet a target precision."""

import numpy as np
import pytest

from robot_si.verify.calibration import (
    choose_threshold,
    expected_calibration_error,
    fit_platt,
    fit_temperature,
    prior_weights,
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


def test_platt_scaling_moves_the_scale_that_temperature_alone_cannot():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0.0, 1.5, 3000)
    labels = (rng.random(3000) < sigmoid(true_logits)).astype(int)
    logits = 3.0 * true_logits - 2.0  # over-confident and shifted: successes look less likely than they are
    temperature, bias = fit_platt(logits, labels)
    assert temperature == pytest.approx(3.0, rel=0.15) and bias == pytest.approx(2.0 / 3.0, abs=0.15)
    platt_ece = expected_calibration_error(sigmoid(logits / temperature + bias), labels)
    temperature_only_ece = expected_calibration_error(sigmoid(logits / fit_temperature(logits, labels)), labels)
    assert platt_ece < 0.03 < temperature_only_ece


def test_platt_scaling_stays_finite_on_a_few_separable_labels():
    temperature, bias = fit_platt(np.array([-3.0, -1.0, 2.0, 4.0, 5.0]), np.array([0, 0, 1, 1, 1]))
    probs = sigmoid(np.array([-3.0, 5.0]) / temperature + bias)
    # smoothed targets: the most a failure can be is 1/4 (2 failures), a success 4/5 (3 successes), never 0 or 1
    assert 0.01 < probs[0] < 0.3 and 0.7 < probs[1] < 0.99
    with pytest.raises(ValueError, match="both classes"):
        fit_platt(np.array([1.0, 2.0]), np.array([1, 1]))


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


def test_weights_count_like_repeated_examples():
    logits, labels = _overconfident(n=300, seed=1)
    repeats = np.where(np.arange(300) % 3 == 0, 3, 1)
    weighted = fit_temperature(logits, labels, repeats.astype(float))
    repeated = fit_temperature(np.repeat(logits, repeats), np.repeat(labels, repeats))
    assert weighted == pytest.approx(repeated, rel=1e-4)
    assert weighted != pytest.approx(fit_temperature(logits, labels), rel=1e-3)
    probs = sigmoid(logits)
    a = choose_threshold(probs, labels, target_precision=0.9, weights=repeats.astype(float))
    b = choose_threshold(np.repeat(probs, repeats), np.repeat(labels, repeats), target_precision=0.9)
    assert a.threshold == pytest.approx(b.threshold) and a.precision == pytest.approx(b.precision)


def test_prior_weights_make_precision_the_one_at_the_prior():
    # one success to seven failures, a score that accepts 96 % of successes and 7 % of failures:
    # precision 2/3 at the clips' own mix, 0.93 at an even mix
    labels = np.array([1] * 100 + [0] * 700)
    probs = np.r_[np.full(96, 0.9), np.full(4, 0.1), np.full(48, 0.9), np.full(652, 0.1)]
    weights = prior_weights(labels, 0.5)
    assert weights[labels == 1].sum() == pytest.approx(weights[labels == 0].sum())
    as_they_come = choose_threshold(probs, labels, target_precision=0.9)
    assert not as_they_come.met_target and as_they_come.precision == pytest.approx(96 / 144)
    at_prior = choose_threshold(probs, labels, target_precision=0.9, weights=weights)
    assert at_prior.met_target and at_prior.threshold == pytest.approx(0.9) and at_prior.accepted == 144
    assert at_prior.precision == pytest.approx(0.96 / (0.96 + 48 / 700))
    assert at_prior.recall == pytest.approx(0.96)
    with pytest.raises(ValueError, match="both classes"):
        prior_weights(np.ones(4), 0.5)
    with pytest.raises(ValueError, match="prior"):
        prior_weights(labels, 1.0)


def test_ece_and_reliability_table_on_a_known_example():
    probs = np.array([0.05, 0.05, 0.95, 0.95])
    labels = np.array([0, 0, 1, 0])
    table = reliability_table(probs, labels)
    assert table["count"][0] == 2 and table["count"][9] == 2
    assert table["success_rate"][9] == pytest.approx(0.5)
    assert expected_calibration_error(probs, labels) == pytest.approx(0.5 * 0.05 + 0.5 * 0.45)


def test_cross_fitted_decisions_are_not_flattered_by_the_threshold_fitted_to_them():
    from robot_si.verify.calibration import cross_fitted_decisions

    # Scores that do not separate the classes, except for a lucky streak: the three highest happen to be
    # successes (one each in folds 0, 1, 2). The threshold chosen on all of them cuts just below the streak, so
    # in-sample the accepted-but-failed rate is 0.
    rng = np.random.default_rng(0)
    labels = np.array([True, False] * 20)
    folds = np.arange(40) // 2 % 4  # stratified: every fold holds 5 successes and 5 failures
    probs = rng.uniform(0.0, 0.9, size=40)
    probs[[0, 2, 4]] = [0.99, 0.98, 0.97]  # successes in folds 0, 1, 2
    choice = choose_threshold(probs, labels, target_precision=0.95)
    in_sample = probs >= choice.threshold
    assert choice.met_target and in_sample.sum() >= 3 and not (in_sample & ~labels).any()
    crossed = cross_fitted_decisions(probs, labels, folds, target_precision=0.95)
    failed_share = (crossed & ~labels).sum() / max(crossed.sum(), 1)
    assert failed_share > 0  # the same rule accepts failures on examples it did not see
    # a rule that separates the classes keeps its precision when cross-fitted
    separable = np.where(labels, 0.8, 0.2) + rng.uniform(-0.05, 0.05, size=40)
    crossed = cross_fitted_decisions(separable, labels, folds, target_precision=0.95)
    assert not (crossed & ~labels).any() and crossed.sum() >= 15
    # the floor applies where the other folds cannot show the target precision
    assert not cross_fitted_decisions(np.full(40, 0.5), labels, folds, target_precision=0.95, floor=0.9).any()
    with pytest.raises(ValueError, match="same shape"):
        cross_fitted_decisions(probs, labels, folds[:-1], target_precision=0.95)
