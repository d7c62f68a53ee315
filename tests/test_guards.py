"""Loop guards and resume manifests: the decisions a user reads in the report."""

import json

import numpy as np
import pytest

from robot_si.improve.guards import accepted_but_failed, check_sample_size, collapse_guard, verifier_guard
from robot_si.improve.manifest import RoundManifest


def test_collapse_guard_triggers_only_beyond_margin():
    assert collapse_guard(success_rate=0.5, best_success_rate=0.65, max_drop=0.1).triggered
    assert not collapse_guard(success_rate=0.58, best_success_rate=0.65, max_drop=0.1).triggered
    assert not collapse_guard(success_rate=None, best_success_rate=0.65, max_drop=0.1).triggered


def test_verifier_guard_measures_accepted_but_failed_on_labelled_sample():
    accepted = [True, True, True, True, False]
    labels = [True, False, False, True, False]  # two of four accepted episodes failed
    assert accepted_but_failed(accepted, labels) == (0.5, 4)
    decision = verifier_guard(accepted=accepted, labels=labels, max_rate=0.2)
    assert decision.triggered and "50%" in decision.reason and decision.evidence == 4
    passed = verifier_guard(accepted=accepted, labels=[True, True, True, True, False], max_rate=0.2)
    assert not passed.triggered and passed.evidence == 4
    no_evidence = verifier_guard(accepted=[False], labels=[True], max_rate=0.2)
    assert not no_evidence.triggered and no_evidence.evidence == 0


def test_check_sample_grows_with_the_accepted_count_and_is_off_at_zero():
    assert check_sample_size(accepted=40, minimum=5, share=0.05) == 5  # small rounds: the minimum
    assert check_sample_size(accepted=252, minimum=5, share=0.05) == 13  # ceil(12.6)
    assert check_sample_size(accepted=252, minimum=5, share=0.0) == 5  # share 0: the fixed sample of old
    assert check_sample_size(accepted=252, minimum=0, share=0.05) == 0  # check_labels=0 turns the check off


def test_manifest_survives_reopen_and_rejects_corruption(tmp_path):
    manifest = RoundManifest(tmp_path)
    manifest.mark_done("collect", {"episodes": 4}, seconds=1.5)
    reopened = RoundManifest(tmp_path)
    assert reopened.is_done("collect") and not reopened.is_done("label")
    assert reopened.result("collect") == {"episodes": 4}
    assert json.loads((tmp_path / "manifest.json").read_text())["stages"]["collect"]["seconds"] == 1.5
    (tmp_path / "manifest.json").write_text("{torn")
    with pytest.raises(RuntimeError, match="delete it"):
        RoundManifest(tmp_path)


def test_action_diversity_shrinks_when_actions_collapse_and_the_guard_flags_it():
    from robot_si.improve.guards import action_diversity, diversity_guard

    rng = np.random.default_rng(0)
    varied = action_diversity([rng.uniform(-1, 1, (30, 4)) for _ in range(5)])
    collapsed = action_diversity([np.tile([0.3, -0.2, 0.0, 1.0], (30, 1)) for _ in range(5)])
    assert varied["action_entropy"] > 2.5 and collapsed["action_entropy"] == 0.0
    assert collapsed["action_std"] < 1e-9 < varied["action_std"]
    assert diversity_guard(entropy=collapsed["action_entropy"], reference_entropy=varied["action_entropy"], min_ratio=0.5).triggered
    assert not diversity_guard(entropy=varied["action_entropy"], reference_entropy=varied["action_entropy"], min_ratio=0.5).triggered
    assert action_diversity([]) == {"action_std": None, "action_entropy": None}
