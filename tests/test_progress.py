"""Progress / value model: targets, n-step advantages with the right sign, learning from successes and failures."""

import numpy as np
import pytest

from robot_si.verify.progress import (
    ProgressConfig,
    ProgressEpisode,
    ProgressModel,
    encoded_frame_indices,
    n_step_advantage,
    progress_targets,
)


def test_advantages_are_positive_while_progressing_and_negative_when_regressing():
    # rises to 0.8 by frame 10, then falls back (e.g. the object slips)
    values = np.r_[np.linspace(0, 0.8, 11), np.linspace(0.7, 0.2, 6)]
    advantage = n_step_advantage(values, horizon=3)
    assert (advantage[:7] > 0).all()
    assert (advantage[10:-1] < 0).all()
    assert advantage[-1] == 0.0
    assert advantage[0] == pytest.approx(values[3] - values[0])


def test_targets_rise_for_successes_and_end_at_zero_for_failures():
    success = progress_targets(11, 1.0)
    failure = progress_targets(11, 0.0, failure_cap=0.3, failure_decay_fraction=0.3)
    assert success[0] == 0 and success[-1] == pytest.approx(1.0) and (np.diff(success) > 0).all()
    assert failure.max() <= 0.3 + 1e-6 and failure[-1] == 0.0
    assert progress_targets(11, 0.5) == pytest.approx(0.5 * success + 0.5 * failure)
    assert encoded_frame_indices(10, 4).tolist() == [0, 4, 8, 9]


def _episode(num_frames, success, rng, target=None):
    """Frames whose first feature is the distance to the goal; failures get a bit closer, then wander off."""
    t = np.arange(num_frames) / (num_frames - 1)
    distance = 1 - t if success else 1 - 0.6 * np.minimum(t, 0.5) + 0.6 * np.maximum(t - 0.5, 0)
    features = np.c_[distance, rng.normal(0, 0.05, (num_frames, 3))].astype(np.float32)
    return ProgressEpisode(frame_indices=np.arange(num_frames), image_features=features,
                           states=np.zeros((num_frames, 2), np.float32), text=np.ones(4, np.float32),
                           num_frames=num_frames, success_prob=target)


def test_model_learns_progress_and_failed_episodes_get_negative_final_advantage(tmp_path):
    rng = np.random.default_rng(0)
    train = [_episode(20, True, rng, 1.0) for _ in range(8)] + [_episode(20, False, rng, 0.0) for _ in range(8)]
    model = ProgressModel(ProgressConfig(encoder="hashing", epochs=60, hidden_dim=32, batch_size=64, advantage_horizon=3))
    model.fit(train)
    good, bad = _episode(20, True, rng), _episode(20, False, rng)
    good_progress = model.predict(good)
    assert good_progress[-1] > 0.8 > 0.2 > good_progress[0]
    assert model.predict(bad)[-1] < 0.3
    labels = model.episode_frame_labels(bad, success_prob=0.0)
    assert labels["value"][-1] == 0.0 and labels["advantage"][-2] < 0
    assert {k: v.shape for k, v in labels.items()} == {k: (20,) for k in ("progress", "value", "advantage")}

    model.save_pretrained(tmp_path / "progress")
    from robot_si.verify.features import HashingEncoders

    loaded = ProgressModel.from_pretrained(tmp_path / "progress", encoders=HashingEncoders())
    np.testing.assert_allclose(loaded.predict(good), good_progress, rtol=1e-6)


def test_fit_needs_success_probabilities():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="success_prob"):
        ProgressModel(ProgressConfig(encoder="hashing")).fit([_episode(5, True, rng, None)])
