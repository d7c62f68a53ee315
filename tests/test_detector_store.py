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


def test_episode_clips_end_on_the_terminal_observation_where_the_store_has_one(tmp_path):
    from robot_si.data.synthetic import synthetic_episode, synthetic_meta
    from robot_si.verify.examples import build_training_examples
    from robot_si.verify.features import HashingEncoders

    store = EpisodeStore.create(tmp_path / "store", fps=10, image_size=32, state_dim=8, action_dim=4)
    terminal_image = np.full((32, 32, 3), 255, np.uint8)  # unlike every stored frame
    store.append_episode(synthetic_episode(5, image_size=32), synthetic_meta("ended", 5), audit_gt_success=True,
                         terminal={"observation.images.front": terminal_image, "observation.state": np.ones(8, np.float32)})
    store.append_episode(synthetic_episode(5, image_size=32, seed=1), synthetic_meta("older", 5, seed=1))
    encoders = HashingEncoders()
    expected_terminal = encoders.encode_images(terminal_image[None])[0]
    expected_last = encoders.encode_images(store.load_episode("ended")["observation.images.front"][-1:])[0]
    for use_terminal, last_feature in ((True, expected_terminal), (False, expected_last)):
        config = DetectorConfig(encoder="hashing", use_state=True, use_terminal_frame=use_terminal)
        clips = SuccessDetector(config, encoders=encoders).featurize([(store, "ended", None, None), (store, "older", None, None)])
        np.testing.assert_allclose(clips.images[0, -1], last_feature, rtol=1e-6)
        assert np.allclose(clips.states[0, -1], 1.0) == use_terminal
        # an episode without one (written before terminals were kept) ends on its last stored frame either way
        np.testing.assert_allclose(clips.images[1, -1], encoders.encode_images(
            store.load_episode("older")["observation.images.front"][-1:])[0], rtol=1e-6)
    ends = {(e.episode_id, e.label_source): e.end for e in build_training_examples([store], use_terminal=True)}
    assert ends[("ended", "demo_end")] == 5 and ends[("older", "demo_end")] == 4
    prefix_ends = {e.end for e in build_training_examples([store], use_terminal=True)
                   if e.episode_id == "ended" and e.label_source == "demo_prefix"}
    assert 4 in prefix_ends or 3 in prefix_ends  # the last stored frame is now a "not yet" example


def test_state_dims_pick_the_state_entries_the_head_reads(tmp_path):
    from robot_si.data.synthetic import synthetic_episode, synthetic_meta
    from robot_si.verify.features import HashingEncoders

    store = EpisodeStore.create(tmp_path / "store", fps=10, image_size=32, state_dim=8, action_dim=4)
    store.append_episode(synthetic_episode(6, image_size=32), synthetic_meta("ep", 6))
    encoders = HashingEncoders()
    whole = SuccessDetector(DetectorConfig(encoder="hashing", use_state=True), encoders=encoders).featurize(
        [(store, "ep", None, None)])
    config = DetectorConfig(encoder="hashing", use_state=True, state_dims=[0, 1, 2, 3])
    positions = SuccessDetector(config, encoders=encoders).featurize([(store, "ep", None, None)])
    assert whole.states.shape[-1] == 8 and positions.states.shape[-1] == 4
    np.testing.assert_array_equal(positions.states, whole.states[..., :4])
    assert DetectorConfig.from_json_dict(config.to_json_dict()).state_dims == (0, 1, 2, 3)
    assert DetectorConfig.from_json_dict({k: v for k, v in config.to_json_dict().items() if k != "state_dims"}).state_dims is None
    with pytest.raises(ValueError, match="index past the store's observation.state"):
        SuccessDetector(DetectorConfig(encoder="hashing", use_state=True, state_dims=[8]), encoders=encoders).featurize(
            [(store, "ep", None, None)])
    for bad in ([], [-1], [0, 0]):
        with pytest.raises(ValueError, match="state_dims must be distinct state indices"):
            DetectorConfig(state_dims=bad)
