"""The verifier's frozen features: the policy's pretrained encoders behind the verifier's `Encoders` interface,
and clips that carry no absolute time (episode length must not leak success into the detector)."""

import numpy as np
import pytest

from robot_si.verify.features import PretrainedEncoders, clip_frame_indices, make_encoders


@pytest.fixture(scope="module")
def pretrained():
    try:
        return make_encoders("default")
    except RuntimeError as error:
        pytest.skip(f"pretrained encoders unavailable: {error}")


def test_default_encoders_are_the_policys_efficientnet_and_minilm(pretrained):
    import torch

    from robot_si.policies.encoders import ImageEncoder, shared_text_encoder

    assert isinstance(pretrained, PretrainedEncoders)
    rng = np.random.default_rng(0)
    for size in (64, 32):  # one trunk per image size: the "same" padding depends on it
        images = rng.integers(0, 256, (3, size, size, 3), dtype=np.uint8)
        features = pretrained.encode_images(images)
        assert features.shape == (3, pretrained.image_dim) == (3, 1280) and features.dtype == np.float32
        with torch.inference_mode():
            direct = ImageEncoder(size).eval()(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0).numpy()
        np.testing.assert_allclose(features, direct, rtol=1e-4, atol=1e-5)
    texts = pretrained.encode_texts(["push the red block to the target", "press the button"])
    assert texts.shape == (2, pretrained.text_dim) == (2, 384)
    np.testing.assert_allclose(texts[1], shared_text_encoder()(["press the button"])[0].numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="uint8"):
        pretrained.encode_images(images.astype(np.float32))


def test_spatial_encoders_put_the_pixel_and_stride16_maps_before_the_pooled_vector(pretrained):
    from robot_si.verify.features import pooled_image_features

    spatial = make_encoders("spatial")
    assert spatial.name != pretrained.name  # separate feature caches and checkpoints
    assert spatial.map_shapes == ((3, 16, 16), (112, 4, 4))
    assert spatial.image_dim == 3 * 16 * 16 + 112 * 4 * 4 + 1280
    images = np.random.default_rng(1).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    features = spatial.encode_images(images)
    assert features.shape == (2, spatial.image_dim)
    # the pooled tail is exactly what the pooled encoder gives; the first map is the image average-pooled x4
    np.testing.assert_allclose(pooled_image_features(features, spatial.map_shapes), pretrained.encode_images(images),
                               rtol=1e-4, atol=1e-5)
    pixels = images.astype(np.float32).reshape(2, 16, 4, 16, 4, 3).mean(axis=(2, 4)) / 255.0
    np.testing.assert_allclose(features[:, :768].reshape(2, 3, 16, 16), pixels.transpose(0, 3, 1, 2), atol=1e-5)
    with pytest.raises(ValueError, match="built for 64 px"):
        spatial.encode_images(images[:, :32, :32])


def test_clip_features_carry_no_episode_length(tmp_path):
    # In simulation episodes stop at success, so length is ground truth: a clip ending at frame t of a long
    # (timed-out) episode must featurize exactly like the same frames stored as a short episode.
    from robot_si.data import EpisodeStore
    from robot_si.data.synthetic import synthetic_episode, synthetic_meta
    from robot_si.verify import DetectorConfig, SuccessDetector
    from robot_si.verify.features import HashingEncoders

    store = EpisodeStore.create(tmp_path / "store", fps=10, image_size=32, state_dim=8, action_dim=4)
    long = synthetic_episode(20, seed=0)
    store.append_episode(long, synthetic_meta("long", 20), audit_gt_success=False)
    store.append_episode({k: v[:8] for k, v in long.items()}, synthetic_meta("short", 8), audit_gt_success=True)
    detector = SuccessDetector(DetectorConfig(encoder="hashing", use_state=True), encoders=HashingEncoders())
    features = detector.featurize([(store, "long", 7, None), (store, "short", None, None)])
    np.testing.assert_array_equal(features.images[0], features.images[1])
    np.testing.assert_array_equal(features.states[0], features.states[1])
    np.testing.assert_array_equal(features.texts[0], features.texts[1])
    assert clip_frame_indices(7).tolist() == [0, 1, 2, 3, 3, 5, 7]
