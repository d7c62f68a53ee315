"""Weighting methods: what each does to accepted, rejected and mixed-advantage episodes."""

import numpy as np
import pytest

from robot_si.weight import WEIGHTING_METHODS, compute_weights
from robot_si.weight.base import EpisodeEvidence


def _evidence():
    return {
        "good": EpisodeEvidence(episode_id="good", accepted=True, success_prob=0.9, advantage=np.array([0.2, 0.3, 0.1])),
        "bad": EpisodeEvidence(episode_id="bad", accepted=False, success_prob=0.1, advantage=np.array([-0.2, 0.4, -0.5])),
    }


def test_filtered_bc_keeps_only_accepted_episodes():
    result = compute_weights("filtered_bc", _evidence(), {})
    assert result.frame_weights["good"].tolist() == [1, 1, 1]
    assert result.frame_weights["bad"].tolist() == [0, 0, 0]
    assert result.stats["episodes_used"] == 1


def test_no_filter_uses_everything():
    result = compute_weights("no_filter", _evidence(), {})
    assert all((w == 1).all() for w in result.frame_weights.values())


def test_awr_weights_follow_advantage_clip_and_normalize():
    result = compute_weights("awr", _evidence(), {"beta": 0.1, "w_max": 5.0})
    bad = result.frame_weights["bad"]
    # the failed episode's progress step (A=0.4) outweighs its regressing steps
    assert bad[1] > bad[0] > bad[2]
    all_weights = np.concatenate(list(result.frame_weights.values()))
    assert all_weights.mean() == pytest.approx(1.0, rel=1e-5)
    # the clip: exp(0.4/0.1)=54.6 would dominate without w_max=5
    assert all_weights.max() / all_weights.min() <= 5.0 / np.exp(-0.5 / 0.1) + 1e-6
    assert result.stats["effective_sample_size"] > 0


def test_awr_accepted_only_drops_rejected_episodes():
    result = compute_weights("awr", _evidence(), {"beta": 0.1, "accepted_only": True})
    assert (result.frame_weights["bad"] == 0).all()
    assert (result.frame_weights["good"] > 0).all()


def test_advantage_conditioned_indicators():
    result = compute_weights("advantage_conditioned", _evidence(), {"advantage_threshold": 0.15})
    assert result.advantage_indicators["good"].tolist() == [1, 1, 0]
    assert result.advantage_indicators["bad"].tolist() == [0, 0, 0]  # rejected episode: never "good"
    relaxed = compute_weights("advantage_conditioned", _evidence(), {"advantage_threshold": 0.15, "require_accepted": False})
    assert relaxed.advantage_indicators["bad"].tolist() == [0, 1, 0]


@pytest.mark.parametrize("config", [{"beta": 0.0}, {"beta": -1.0}, {"w_max": 0}])
def test_awr_rejects_bad_config(config):
    with pytest.raises(ValueError, match="must be > 0"):
        compute_weights("awr", _evidence(), config)


def test_unknown_method_lists_choices():
    with pytest.raises(ValueError, match="filtered_bc"):
        compute_weights("magic", _evidence(), {})
    assert {"filtered_bc", "awr", "advantage_conditioned", "no_filter"} <= set(WEIGHTING_METHODS)
