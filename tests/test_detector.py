"""Success detector on arrays: learns, is calibrated and thresholded, survives save/load, rejects bad input."""

import numpy as np
import pytest

from robot_si.verify.detector import ClipFeatures, DetectorConfig, SuccessDetector
from robot_si.verify.features import HashingEncoders, clip_frame_indices

K = 5  # 3 context + 2 final frames


def _clips(n=240, seed=0):
    """Clips whose last frame shows 'done' in the feature the instruction asks about."""
    rng = np.random.default_rng(seed)
    instruction = rng.integers(0, 2, n)
    labels = rng.random(n) < 0.4
    images = rng.normal(0, 1, (n, K, 8)).astype(np.float32)
    images[np.arange(n), -1, instruction] += np.where(labels, 3.0, 0.0)
    # the other instruction's feature is sometimes 'done' too: a relabeled negative
    images[np.arange(n), -1, 1 - instruction] += np.where(rng.random(n) < 0.5, 3.0, 0.0)
    texts = np.eye(4, dtype=np.float32)[instruction]
    states = rng.normal(0, 1, (n, K, 3)).astype(np.float32)
    groups = [f"ep{i // 2}" for i in range(n)]
    return ClipFeatures(images=images, texts=texts, states=states), labels, groups


def _config(**overrides):
    settings = dict(encoder="hashing", num_context_frames=3, num_final_frames=2, hidden_dim=32, num_heads=2, epochs=25)
    return DetectorConfig(**{**settings, **overrides})


def test_detector_learns_instruction_grounded_success_and_calibrates():
    features, labels, groups = _clips()
    detector = SuccessDetector(_config(), encoders=HashingEncoders())
    report = detector.fit(features, labels, groups=groups)
    test_features, test_labels, _ = _clips(seed=1)
    probs = detector.predict_proba(test_features)
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(test_labels, probs) > 0.9
    assert 0.05 <= detector.temperature <= 20 and 0.0 < detector.threshold < 1.0
    assert report["holdout_examples"] > 0 and "threshold" in report


def test_save_and_reload_keeps_weights_temperature_threshold(tmp_path):
    features, labels, groups = _clips(n=120)
    detector = SuccessDetector(_config(epochs=3), encoders=HashingEncoders())
    detector.fit(features, labels, groups=groups)
    detector.temperature, detector.bias, detector.threshold = 1.7, -0.4, 0.83  # distinctive values round-trip exactly
    detector._version = None
    detector.save_pretrained(tmp_path / "det")
    loaded = SuccessDetector.from_pretrained(tmp_path / "det", encoders=HashingEncoders())
    assert loaded.temperature == 1.7 and loaded.bias == -0.4 and loaded.threshold == 0.83
    assert loaded.version == detector.version
    np.testing.assert_allclose(loaded.predict_proba(features), detector.predict_proba(features), rtol=1e-6)


def test_platt_calibration_is_the_default_and_fits_a_bias():
    features, labels, groups = _clips()
    detector = SuccessDetector(_config(), encoders=HashingEncoders())
    report = detector.fit(features, labels, groups=groups)
    assert detector.config.calibration == "platt" and report["bias"] == detector.bias != 0.0
    logits = detector.predict_logits(features)
    np.testing.assert_allclose(detector.predict_proba(features), 1 / (1 + np.exp(-(logits / detector.temperature + detector.bias))),
                               rtol=1e-5)
    with pytest.raises(ValueError, match="'platt' or 'temperature'"):
        _config(calibration="isotonic")


def test_raw_logit_inverts_the_calibration():
    detector = SuccessDetector(_config(), encoders=HashingEncoders())
    for temperature, bias in ((1.0, 0.0), (20.0, 0.3), (0.4, -1.2)):
        detector.temperature, detector.bias = temperature, bias
        for prob in (0.05, 0.5, 0.91):
            assert float(detector.calibrated(np.array([detector.raw_logit(prob)]))[0]) == pytest.approx(prob)


def test_one_class_is_refused_with_a_fix():
    features, labels, groups = _clips(n=40)
    detector = SuccessDetector(_config(epochs=1), encoders=HashingEncoders())
    with pytest.raises(ValueError, match="only one class"):
        detector.fit(features, np.ones(len(labels), bool), groups=groups)


def test_missing_checkpoint_and_untrained_detector_say_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="robot-si detector train"):
        SuccessDetector.from_pretrained(tmp_path / "nothing")
    features, _, _ = _clips(n=4)
    with pytest.raises(RuntimeError, match="not trained"):
        SuccessDetector(_config()).predict_proba(features)


def test_clip_indices_end_on_the_last_frames_and_pad_short_episodes():
    assert clip_frame_indices(20, num_context=3, num_final=2, final_stride=2).tolist() == [0, 9, 18, 18, 20]
    # a 2-frame episode: indices are clamped, the first frame repeats
    assert clip_frame_indices(1, num_context=3, num_final=3, final_stride=2).tolist() == [0, 0, 0, 0, 0, 1]
    with pytest.raises(ValueError, match="no frames"):
        clip_frame_indices(-1)


def test_instruction_that_cannot_be_embedded_is_refused():
    with pytest.raises(ValueError, match="non-empty"):
        HashingEncoders().encode_texts(["touch the red ball", "  "])


def _store_with_oracle_labels(tmp_path):
    """A synthetic store whose autonomous episodes carry alternating oracle labels; returns (store, label version)."""
    from robot_si.data.labels import EpisodeLabel, write_label_set
    from robot_si.verify.testing import synthetic_verifier_store

    store = synthetic_verifier_store(tmp_path / "store", num_demos=6, num_autonomous=10)
    labels = [EpisodeLabel(episode_id=f"auto{i}", success_prob=None, label=bool(i % 2), label_source="oracle",
                           detector_version="d") for i in range(10)]
    return store, write_label_set(store.root, episode_labels=labels, detector_version="d")


def test_calibration_uses_held_out_oracle_labelled_episodes(tmp_path):
    store, version = _store_with_oracle_labels(tmp_path)
    config = _config(epochs=2, min_steps=10, min_calibration_episodes=8, calibration_folds=3, num_context_frames=2)
    detector = SuccessDetector(config, encoders=HashingEncoders())
    calibration = detector.fit_stores([store], label_version=version)["calibration"]
    assert calibration["calibrated_on"].startswith("out-of-fold logits of 10 human/oracle-labelled episodes (3 folds)")
    assert detector.temperature == calibration["temperature"] and detector.threshold == calibration["threshold_used"]
    # temperature and bias are refitted on the labelled episodes' out-of-fold logits, not kept from the clips
    from robot_si.verify.calibration import fit_platt

    refit = fit_platt(np.array(calibration["out_of_fold_sample"]["logits"]), np.array(calibration["out_of_fold_sample"]["label"]))
    assert (detector.temperature, detector.bias) == pytest.approx(refit)
    assert (calibration["temperature"], calibration["bias"]) == pytest.approx(refit)
    # the held-out examples' threshold is carried over as the raw score it accepted from, not as a probability
    fallback = calibration["fallback_threshold"]
    raw = (np.log(fallback / (1 - fallback)) - calibration["fallback_bias"]) * calibration["fallback_temperature"]
    assert calibration["fallback_threshold_recalibrated"] == pytest.approx(float(detector.calibrated(np.array([raw]))[0]))
    assert detector.threshold >= min(calibration["threshold"]["threshold"], calibration["fallback_threshold_recalibrated"])
    # the out-of-fold decisions (what the loop's wrong-verifier guard reads): one per labelled episode, its label
    sample = calibration["out_of_fold_sample"]
    assert len(sample["accepted"]) == 10 and sorted(sample["label"]) == [False] * 5 + [True] * 5
    # too few labelled episodes: the held-out training examples calibrate instead, and the report says so
    few = SuccessDetector(_config(epochs=2, min_steps=10, min_calibration_episodes=20, num_context_frames=2),
                          encoders=HashingEncoders())
    assert few.fit_stores([store], label_version=version)["calibration"]["calibrated_on"] == "held-out training examples"


def test_labelled_episode_weight_is_validated_and_survives_save_load(tmp_path):
    for bad in (0, -1.0, float("nan"), float("inf"), True, "2"):
        with pytest.raises(ValueError, match="labelled_episode_weight"):
            _config(labelled_episode_weight=bad)
    assert DetectorConfig().labelled_episode_weight >= 1.0
    features, labels, groups = _clips(n=60)
    detector = SuccessDetector(_config(epochs=1, min_steps=1, labelled_episode_weight=4.0), encoders=HashingEncoders())
    detector.fit(features, labels, groups=groups)
    detector.save_pretrained(tmp_path / "det")
    loaded = SuccessDetector.from_pretrained(tmp_path / "det", encoders=HashingEncoders())
    assert loaded.config.labelled_episode_weight == 4.0 and loaded.version == detector.version


def test_detector_saved_before_newer_config_fields_still_loads(tmp_path):
    """A checkpoint whose config predates `balance_classes` / `labelled_episode_weight` loads with the values
    that reproduce how it was trained, and keeps the version recorded with it (labels refer to it)."""
    import json

    features, labels, groups = _clips(n=60)
    detector = SuccessDetector(_config(epochs=1, min_steps=1, calibration="temperature"), encoders=HashingEncoders())
    detector.fit(features, labels, groups=groups)
    assert detector.bias == 0.0
    detector.save_pretrained(tmp_path / "det")
    path = tmp_path / "det" / "detector_config.json"
    payload = json.loads(path.read_text())
    for key in ("labelled_episode_weight", "labelled_weight_cap", "balance_classes", "use_terminal_frame", "map_shapes", "keypoints",
                "keypoint_hidden_dim", "image_size", "calibration_prior", "calibration"):
        del payload["config"][key]
    del payload["bias"]  # saved before Platt scaling
    payload["version"] = detector._hash_version(payload["config"])  # what the older code recorded
    path.write_text(json.dumps(payload))
    loaded = SuccessDetector.from_pretrained(tmp_path / "det", encoders=HashingEncoders())
    assert loaded.version == payload["version"]
    assert loaded.config.labelled_episode_weight == 1.0 and loaded.config.balance_classes is False
    assert loaded.config.labelled_weight_cap is None  # every labelled episode at full weight, however many
    assert loaded.config.calibration_prior is None  # held-out clips calibrated as they came
    assert loaded.config.use_terminal_frame is False  # older detectors judged the last stored frame
    assert loaded.config.map_shapes == ()  # and read pooled image features only
    assert loaded.config.calibration == "temperature" and loaded.bias == 0.0  # calibrated by temperature alone
    np.testing.assert_allclose(loaded.predict_proba(features), detector.predict_proba(features), rtol=1e-6)
    payload["version"] = "detector-000000000000"  # a tampered checkpoint is still refused
    path.write_text(json.dumps(payload))
    with pytest.raises(RuntimeError, match="recorded version"):
        SuccessDetector.from_pretrained(tmp_path / "det", encoders=HashingEncoders())


def test_labelled_episode_ends_weigh_more_and_classes_stay_balanced(tmp_path, monkeypatch):
    from robot_si.data.labels import EpisodeLabel, write_label_set
    from robot_si.verify import detector as detector_module
    from robot_si.verify.testing import synthetic_verifier_store

    store = synthetic_verifier_store(tmp_path / "store", num_demos=4, num_autonomous=4)
    labels = [EpisodeLabel(episode_id=f"auto{i}", success_prob=None, label=bool(i % 2), label_source="oracle",
                           detector_version="d") for i in range(4)]
    version = write_label_set(store.root, episode_labels=labels, detector_version="d")
    seen = []
    original_fit = SuccessDetector.fit
    original_weights = detector_module._class_weights

    def spy_fit(self, features, labels, *, groups=None, weights=None):
        seen.append((np.asarray(groups), weights))
        return original_fit(self, features, labels, groups=groups, weights=weights)

    def spy_weights(labels, weights=None):
        out = original_weights(labels, weights)
        seen.append(("class_weights", labels, weights, out))
        return out

    monkeypatch.setattr(SuccessDetector, "fit", spy_fit)
    monkeypatch.setattr(detector_module, "_class_weights", spy_weights)
    config = _config(epochs=1, min_steps=1, num_context_frames=2, labelled_episode_weight=6.0)
    SuccessDetector(config, encoders=HashingEncoders()).fit_stores([store], label_version=version)
    groups, weights = seen[0]
    examples = detector_module.build_training_examples([store], label_version=version)
    is_end = np.array([e.label_source == "oracle" for e in examples])
    assert is_end.sum() == 4 and len(weights) == len(examples)
    assert np.all(weights[is_end] == 6.0) and np.all(weights[~is_end] == 1.0)
    _, class_labels, class_input, out = seen[1]
    assert class_input is not None and np.isclose(out.mean(), 1.0)
    positive = class_labels > 0.5
    assert np.isclose(out[positive].sum(), out[~positive].sum())  # both classes weigh the same in total
    # within a class, a labelled end weighs 6x a demo-derived example
    ratio = out / class_input
    assert np.allclose(ratio[positive], ratio[positive][0]) and np.allclose(ratio[~positive], ratio[~positive][0])

    # more labelled episodes than labelled_weight_cap share the cap's total weight: 4 labels, cap 2 -> 6 * 2 / 4 each
    seen.clear()
    capped = _config(epochs=1, min_steps=1, num_context_frames=2, labelled_episode_weight=6.0, labelled_weight_cap=2)
    SuccessDetector(capped, encoders=HashingEncoders()).fit_stores([store], label_version=version)
    weights = seen[0][1]
    assert np.all(weights[is_end] == 3.0) and np.all(weights[~is_end] == 1.0)


def test_labelled_weight_cap_keeps_the_group_total_and_is_validated():
    from robot_si.verify.detector import labelled_weight

    config = DetectorConfig(labelled_episode_weight=20.0, labelled_weight_cap=20)
    assert labelled_weight(config, 5) == 20.0 and labelled_weight(config, 20) == 20.0
    assert labelled_weight(config, 120) * 120 == pytest.approx(20.0 * 20)  # the total stops growing at the cap
    assert labelled_weight(DetectorConfig(labelled_weight_cap=None), 120) == DetectorConfig().labelled_episode_weight
    for bad in (0, -3, 2.5, True, "20"):
        with pytest.raises(ValueError, match="labelled_weight_cap"):
            DetectorConfig(labelled_weight_cap=bad)


class _MapEncoders:
    """Stand-in for the spatial encoder: an 8x8 RGB map in front of a 4-d 'pooled' vector."""

    name = "maps-test"
    map_shapes = ((3, 8, 8),)
    image_dim = 3 * 8 * 8 + 4
    text_dim = 4


def _scene_clips(n, seed):
    """Two coloured blobs (channels 0, 1) and a 'gripper' blob (channel 2) at random cells; success = the gripper
    sits on the blob the instruction names. The pooled part is noise: only *where* things are decides."""
    rng = np.random.default_rng(seed)
    instruction = rng.integers(0, 2, n)
    labels = rng.random(n) < 0.5
    maps = np.zeros((n, 3, 8, 8), np.float32)
    cells = rng.integers(0, 8, (n, 2, 2))
    gripper = rng.integers(0, 8, (n, 2))
    gripper[labels] = cells[labels, instruction[labels]]  # on the instructed blob
    on_other = ~labels & (rng.random(n) < 0.5)  # hard negatives: on the other blob
    gripper[on_other] = cells[on_other, 1 - instruction[on_other]]
    rows = np.arange(n)
    for channel in (0, 1):
        maps[rows, channel, cells[:, channel, 0], cells[:, channel, 1]] = 1.0
    maps[rows, 2, gripper[:, 0], gripper[:, 1]] = 1.0
    frame = np.concatenate([maps.reshape(n, -1), rng.normal(0, 1, (n, 4)).astype(np.float32)], axis=1)
    images = np.repeat(frame[:, None], K, axis=1)
    texts = np.eye(4, dtype=np.float32)[instruction]
    return ClipFeatures(images=images, texts=texts, states=np.zeros((n, K, 3), np.float32)), labels, [f"e{i}" for i in range(n)]


def test_keypoints_read_where_things_are_which_pooled_features_cannot():
    """The spatial head (instruction-conditioned keypoints on the maps) learns 'the gripper is on the named blob';
    the same detector told to ignore the maps (keypoints=0) is at chance. Save/load keeps the map layout."""
    from sklearn.metrics import roc_auc_score

    train, train_labels, groups = _scene_clips(800, seed=0)
    test, test_labels, _ = _scene_clips(400, seed=1)
    aucs = {}
    for keypoints in (8, 0):
        detector = SuccessDetector(_config(keypoints=keypoints, epochs=20, min_steps=300, hidden_dim=64), encoders=_MapEncoders())
        detector.fit(train, train_labels, groups=groups)
        assert detector.config.map_shapes == ((3, 8, 8),)
        aucs[keypoints] = roc_auc_score(test_labels, detector.predict_proba(test))
    assert aucs[8] > 0.9 and aucs[0] < 0.65, aucs


def test_ensemble_keeps_the_fold_heads_averages_their_logits_and_round_trips(tmp_path):
    store, version = _store_with_oracle_labels(tmp_path)
    settings = dict(epochs=2, min_steps=10, min_calibration_episodes=8, calibration_folds=3, num_context_frames=2)
    single = SuccessDetector(_config(**settings), encoders=HashingEncoders())
    single.fit_stores([store], label_version=version)
    ensemble = SuccessDetector(_config(**settings, ensemble=True), encoders=HashingEncoders())
    calibration = ensemble.fit_stores([store], label_version=version)["calibration"]
    assert len(single.members) == 0 and len(ensemble.members) == 3 and calibration["ensemble_members"] == 4
    # same seed, same head and same out-of-fold calibration; only the prediction averages over the heads
    assert (ensemble.temperature, ensemble.bias, ensemble.threshold) == (single.temperature, single.bias, single.threshold)
    features = ensemble.featurize([(store, m.episode_id, None, None) for m in store.episodes()])
    head_only = single.predict_logits(features)
    members = ensemble.members
    ensemble.members = []
    np.testing.assert_allclose(ensemble.predict_logits(features), head_only, rtol=1e-6)
    ensemble.members = members
    from robot_si.verify.detector import _head_logits

    expected = np.mean([head_only, *(_head_logits(m, features, 512) for m in members)], axis=0)
    np.testing.assert_allclose(ensemble.predict_logits(features), expected, rtol=1e-6)
    assert not np.allclose(expected, head_only)  # the fold heads are different models
    # the fold heads are part of the version and of the checkpoint
    assert ensemble.version != single.version
    ensemble.save_pretrained(tmp_path / "det")
    loaded = SuccessDetector.from_pretrained(tmp_path / "det", encoders=HashingEncoders())
    assert len(loaded.members) == 3 and loaded.version == ensemble.version
    np.testing.assert_allclose(loaded.predict_proba(features), ensemble.predict_proba(features), rtol=1e-6)
    (tmp_path / "det" / "ensemble_members.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="ensemble of 4 heads"):
        SuccessDetector.from_pretrained(tmp_path / "det", encoders=HashingEncoders())
    # a single head saved over the folder leaves no stale fold heads behind; a refit drops them
    single.save_pretrained(tmp_path / "det")
    assert len(SuccessDetector.from_pretrained(tmp_path / "det", encoders=HashingEncoders()).members) == 0
    ensemble.fit(features, np.arange(len(features)) % 2 == 0, groups=[str(i) for i in range(len(features))])
    assert ensemble.members == []
    with pytest.raises(ValueError, match="ensemble must be true or false"):
        _config(ensemble="yes")


def test_detector_reads_several_cameras_side_by_side_and_names_a_missing_one(tmp_path):
    from robot_si.data import EpisodeStore
    from robot_si.verify.features import FeatureCache
    from robot_si.verify.testing import record_expert_rollouts

    def store(name, cameras):
        store = EpisodeStore.create(tmp_path / name, fps=10, image_size=64, cameras=cameras, state_dim=8, action_dim=4)
        record_expert_rollouts(store, ["reach"], noise=0.3, seeds=[1], image_size=64, cameras=cameras)
        return store

    both = store("both", ("front", "wrist"))
    episode_id = both.episodes()[0].episode_id
    encoders = HashingEncoders()
    cache = FeatureCache(encoders)
    two = SuccessDetector(_config(cameras=["front", "wrist"]), feature_cache=cache)
    one = SuccessDetector(_config(), feature_cache=cache)
    loads = []
    load_episode = both.load_episode
    both.load_episode = lambda eid: loads.append(eid) or load_episode(eid)
    features = two.featurize([(both, episode_id, None, None)]).images
    assert loads == [episode_id]  # one load serves both cameras
    front = one.featurize([(both, episode_id, None, None)]).images
    assert loads == [episode_id]  # the front camera's frames were cached by the first call
    assert features.shape[-1] == 2 * encoders.image_dim == cache.image_dim(("front", "wrist"))
    np.testing.assert_array_equal(features[..., :encoders.image_dim], front)
    # the second half is the wrist camera's frames, which differ from the front camera's
    episode = both.load_episode(episode_id)
    last = len(episode["observation.images.wrist"]) - 1
    np.testing.assert_allclose(features[0, -1, encoders.image_dim:],
                               encoders.encode_images(episode["observation.images.wrist"][[last]])[0], rtol=1e-6)
    assert not np.allclose(features[0, -1, encoders.image_dim:], front[0, -1])
    assert DetectorConfig.from_json_dict(two.config.to_json_dict()).cameras == ("front", "wrist")
    only_front = store("front", ("front",))
    with pytest.raises(ValueError, match="'wrist' camera"):
        two.featurize([(only_front, only_front.episodes()[0].episode_id, None, None)])
    for bad in ("front", [], ["front", "front"]):
        with pytest.raises(ValueError, match="cameras"):
            _config(cameras=bad)
    with pytest.raises(ValueError, match="spatial encoder reads one camera"):
        DetectorConfig(encoder="spatial", cameras=["front", "wrist"])
