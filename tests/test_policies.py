"""CompactVLA policy: shapes, masking and weighting of the loss, checkpoints, input errors, CFG, factories."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from robot_si.policies import CompactVLAConfig, CompactVLAPolicy, load_policy, make_policy, observations_to_batch
from robot_si.train import compute_normalization_stats, weighted_loss
from robot_si.train.testing import SyntheticChunkDataset, tiny_policy_config


def _ready(**overrides) -> tuple[CompactVLAPolicy, dict]:
    torch.manual_seed(0)
    dataset = SyntheticChunkDataset(8)
    policy = CompactVLAPolicy(tiny_policy_config(**overrides))
    policy.set_normalization_stats(compute_normalization_stats(dataset))
    return policy, torch.utils.data.default_collate([dataset[i] for i in range(8)])


def test_forward_and_predict_shapes():
    policy, batch = _ready()
    loss, info = policy(batch)
    assert loss.ndim == 0 and "l1_loss" in info
    loss.backward()
    assert policy.action_head.weight.grad is not None
    assert all(p.grad is None for p in policy.image_encoder.parameters())  # frozen backbone
    per_sample, _ = policy(batch, reduction="none")
    assert per_sample.shape == (8,)
    policy.eval()
    chunk = policy.predict_action_chunk(batch)
    assert chunk.shape == (8, 4, 4) and chunk.abs().max() <= 1.0
    policy.reset()
    first = policy.select_action(batch)
    second = policy.select_action(batch)  # second action of the same chunk (n_action_steps=2)
    assert torch.equal(first, chunk[:, 0]) and torch.equal(second, chunk[:, 1])


def test_temporal_ensembling_select_action():
    policy, batch = _ready(n_action_steps=1, temporal_ensemble_coeff=0.01)
    policy.eval()
    policy.reset()
    assert policy.select_action(batch).shape == (8, 4)


def test_padded_steps_do_not_count():
    policy, batch = _ready()
    policy.eval()
    batch["action_is_pad"][:] = False
    batch["action_is_pad"][:, 2:] = True
    base, _ = policy(batch, reduction="none")
    changed = dict(batch, action=batch["action"].clone())
    changed["action"][:, 2:] += 50.0  # garbage in padded steps only
    after, _ = policy(changed, reduction="none")
    assert torch.allclose(base, after)


def test_zero_weight_sample_has_no_gradient_effect():
    policy, batch = _ready()
    policy.eval()

    def gradient(sub_batch, weight):
        policy.zero_grad()
        per_sample, _ = policy(sub_batch, reduction="none")
        weighted_loss(per_sample, weight).backward()
        return policy.action_head.weight.grad.clone()

    keep = {k: v[:4] for k, v in batch.items()}
    with_zero = gradient(batch, torch.tensor([1.0, 1.0, 1.0, 1.0, 0, 0, 0, 0]))
    without = gradient(keep, torch.ones(4))
    assert torch.allclose(with_zero, without, atol=1e-6)
    # forward(reduction="mean") applies the batch's weights the same way
    policy.zero_grad()
    weighted = dict(batch, weight=torch.tensor([1.0, 1.0, 1.0, 1.0, 0, 0, 0, 0]))
    policy(weighted)[0].backward()
    assert torch.allclose(policy.action_head.weight.grad, without, atol=1e-6)


def test_save_load_round_trip(tmp_path):
    policy, batch = _ready()
    policy.eval()
    policy.save_pretrained(tmp_path / "ckpt")
    assert json.loads((tmp_path / "ckpt" / "config.json").read_text())["type"] == "compact_vla"
    for loaded in (CompactVLAPolicy.from_pretrained(tmp_path / "ckpt"), load_policy(tmp_path / "ckpt")):
        assert torch.equal(loaded.predict_action_chunk(batch), policy.predict_action_chunk(batch))
        assert loaded.normalization_stats() == policy.normalization_stats()


def test_checkpoint_of_another_type_is_refused(tmp_path):
    (tmp_path / "act").mkdir()
    (tmp_path / "act" / "config.json").write_text(json.dumps({"type": "act"}))
    with pytest.raises(ValueError, match="'act' policy, not 'compact_vla'"):
        CompactVLAPolicy.from_pretrained(tmp_path / "act")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        CompactVLAPolicy.from_pretrained(tmp_path / "missing")


def test_wrong_image_size_and_missing_camera():
    policy, batch = _ready()
    with pytest.raises(ValueError, match="is 64x64 but the policy expects 32x32"):
        policy(dict(batch, **{"observation.images.front": torch.rand(8, 3, 64, 64)}))
    without_camera = {k: v for k, v in batch.items() if k != "observation.images.front"}
    with pytest.raises(KeyError, match="observation.images.front"):
        policy(without_camera)


def test_unset_normalization_is_a_clear_error():
    policy = CompactVLAPolicy(tiny_policy_config())
    _, batch = _ready()
    with pytest.raises(RuntimeError, match="normalization stats are not set"):
        policy.predict_action_chunk(batch)


def test_a_dimension_constant_in_the_demos_is_not_blown_up_by_normalization():
    """Demos whose gripper command is always +1 (std 0): a rollout with exploration noise on it must give an error
    of the noise's size, not noise / 1e-4 (which swamped the fine-tuning loss of the loop's rounds)."""
    for mode in ("mean_std", "min_max"):
        policy = CompactVLAPolicy(tiny_policy_config(action_normalization=mode))
        dims, state_dims = policy.config.action_dim, policy.config.state_dim
        policy.set_normalization_stats({  # the last action and the last state entry never vary in the "demos"
            "observation.state": {"mean": [0.0] * state_dims, "std": [1.0] * (state_dims - 1) + [0.0]},
            "action": {"mean": [0.2] * (dims - 1) + [1.0], "std": [0.5] * (dims - 1) + [0.0],
                       "min": [-1.0] * (dims - 1) + [1.0], "max": [1.0] * dims},
        })
        demo_like = torch.tensor([[0.1] * (dims - 1) + [1.0]])
        noisy = demo_like.clone()
        noisy[0, -1] = 0.9  # exploration noise on the constant dimension
        gap = (policy.normalize_action(noisy) - policy.normalize_action(demo_like))[0, -1].abs().item()
        assert gap == pytest.approx(0.1, abs=1e-5), mode
        round_trip = policy.unnormalize_action(policy.normalize_action(noisy))
        torch.testing.assert_close(round_trip, noisy.clamp(policy.config.action_low, policy.config.action_high))
        state = torch.zeros(1, policy.config.state_dim)
        state[0, -1] = 0.05
        assert policy.normalize_state(state)[0, -1].item() == pytest.approx(0.05)


def test_config_validation():
    with pytest.raises(ValueError, match="n_action_steps"):
        CompactVLAConfig(horizon=4, n_action_steps=8)
    with pytest.raises(ValueError, match="loss must be one of"):
        CompactVLAConfig(loss="huber")
    with pytest.raises(ValueError, match="n_action_steps must be 1"):
        CompactVLAConfig(temporal_ensemble_coeff=0.01)
    with pytest.raises(ValueError, match="cameras"):
        CompactVLAConfig(cameras="front")


def test_advantage_conditioning_and_cfg_change_actions():
    policy, batch = _ready(advantage_conditioning=True, cond_dropout_prob=0.3)
    with torch.no_grad():
        policy.advantage_embedding.weight.normal_()  # as if trained: good and unconditioned tokens differ
        for block in policy.blocks:
            block.film.weight.normal_(std=0.1)  # and FiLM (zero at init) passes them on
    policy.eval()
    plain = policy.predict_action_chunk(batch)
    policy.config.cfg_scale = 3.0
    guided = policy.predict_action_chunk(batch)
    assert not torch.allclose(plain, guided)
    # conditioning on the indicator changes the training loss too
    good = policy(dict(batch, advantage_indicator=torch.ones(8, dtype=torch.long)))[0]
    bad = policy(dict(batch, advantage_indicator=torch.zeros(8, dtype=torch.long)))[0]
    assert not torch.isclose(good, bad)
    with pytest.raises(ValueError, match="advantage_indicator must be 0, 1 or -1"):
        policy(dict(batch, advantage_indicator=torch.full((8,), 5)))


def test_observations_to_batch_and_text_conditioning():
    rng = np.random.default_rng(0)
    observations = [
        {"observation.images.front": rng.integers(0, 256, (32, 32, 3), dtype=np.uint8),
         "observation.state": rng.standard_normal(8).astype(np.float32), "task": task}
        for task in ("reach the red cube", "press the green button")
    ]
    batch = observations_to_batch(observations, "cpu")
    assert batch["observation.images.front"].shape == (2, 3, 32, 32)
    assert batch["observation.images.front"].dtype == torch.float32 and batch["observation.images.front"].max() <= 1
    assert batch["task"] == ["reach the red cube", "press the green button"]
    policy = make_policy(dict(tiny_policy_config(use_text=True).to_dict()))
    policy.set_normalization_stats(compute_normalization_stats(SyntheticChunkDataset(8)))
    policy.fit_text_normalization(batch["task"])
    with torch.no_grad():
        for block in policy.blocks:
            block.film.weight.normal_(std=0.1)  # as if trained (FiLM starts as the identity)
    policy.eval()
    chunks = policy.predict_action_chunk(batch)
    swapped = policy.predict_action_chunk(dict(batch, task=batch["task"][::-1]))
    assert chunks.shape == (2, 4, 4) and not torch.allclose(chunks, swapped)
    with pytest.raises(ValueError, match="cannot embed instruction ''"):
        policy.predict_action_chunk(dict(batch, task=["", "x"]))


def test_keypoint_head_trains_and_round_trips(tmp_path):
    policy, batch = _ready(keypoints=4, flat_map_features=False, feature_map_strides=(4, 8), pixel_map_stride=2)
    # 32 px: pixels pooled by 2, then the stride-4 and stride-8 backbone maps
    assert policy.image_encoder.map_shapes == [(3, 16, 16), (24, 8, 8), (40, 4, 4)]
    loss, _ = policy(batch)
    loss.backward()
    assert all(head.score.weight.grad is not None and head.score.weight.grad.abs().sum() > 0 for head in policy.keypoint_heads)
    policy.eval()
    policy.save_pretrained(tmp_path / "ckpt")
    loaded = CompactVLAPolicy.from_pretrained(tmp_path / "ckpt")
    assert loaded.config.keypoints == 4 and loaded.config.feature_map_strides == (4, 8)
    assert torch.equal(loaded.predict_action_chunk(batch), policy.predict_action_chunk(batch))
    with pytest.raises(ValueError, match="keypoints=4 needs image_pooling='multiscale'"):
        CompactVLAConfig(keypoints=4, pixel_map_stride=0, image_pooling="mean")
    with pytest.raises(ValueError, match="feature_map_strides"):
        CompactVLAConfig(feature_map_strides=(3,))


def _reloaded_acts_the_same(policy: CompactVLAPolicy, batch: dict, tmp_path) -> CompactVLAPolicy:
    """Save, reload, and check the reloaded policy predicts exactly the same chunks; returns it."""
    policy.eval()
    policy.save_pretrained(tmp_path / "ckpt")
    loaded = CompactVLAPolicy.from_pretrained(tmp_path / "ckpt")
    assert torch.equal(loaded.predict_action_chunk(batch), policy.predict_action_chunk(batch))
    return loaded


def test_without_pooled_features_the_keypoints_are_the_only_image_input(tmp_path):
    policy, batch = _ready(keypoints=2, flat_map_features=False, pooled_features=False, feature_map_strides=(8,), pixel_map_stride=2)
    assert all(isinstance(projection, torch.nn.Identity) for projection in policy.image_projections)
    features = policy.encode_images(batch)
    # the encoder stops at the deepest tapped map: no pooled head features are computed at all
    assert features.shape[-1] == sum(c * h * w for c, h, w in policy.image_encoder.map_shapes)
    with_head, _ = _ready(keypoints=2, flat_map_features=False, pooled_features=True, feature_map_strides=(8,), pixel_map_stride=2)
    assert torch.equal(with_head.encode_images(batch)[:, :features.shape[-1]], features)  # same maps, pooled appended
    policy.eval()
    moved = features.clone()
    moved[:, :3 * 16 * 16] = moved[:, :3 * 16 * 16].flip(-1)  # the pixel map itself does change them
    assert not torch.equal(policy.predict_action_chunk({**batch, "observation.image_features": features}),
                           policy.predict_action_chunk({**batch, "observation.image_features": moved}))
    policy.train()
    loss, _ = policy(batch)
    loss.backward()
    assert all(head.score.weight.grad.abs().sum() > 0 for head in policy.keypoint_heads)
    assert _reloaded_acts_the_same(policy, batch, tmp_path).config.pooled_features is False
    with pytest.raises(ValueError, match="pooled_features=False leaves the keypoints as the only image input"):
        CompactVLAConfig(pooled_features=False, keypoints=0)


def test_keypoint_head_3x3_conv_trains_and_round_trips(tmp_path):
    policy, batch = _ready(keypoints=2, keypoint_kernel_size=3, flat_map_features=False, feature_map_strides=(8,), pixel_map_stride=2)
    assert all(head.inner.kernel_size == (3, 3) for head in policy.keypoint_heads)
    loss, _ = policy(batch)
    loss.backward()
    assert all(head.inner.weight.grad.abs().sum() > 0 for head in policy.keypoint_heads)
    assert _reloaded_acts_the_same(policy, batch, tmp_path).config.keypoint_kernel_size == 3
    with pytest.raises(ValueError, match="keypoint_kernel_size must be 1 or 3"):
        CompactVLAConfig(keypoint_kernel_size=5)


def test_map_shift_moves_every_map_by_one_pixel_offset_in_training_only():
    policy, batch = _ready(keypoints=2, flat_map_features=False, feature_map_strides=(4, 8), pixel_map_stride=2, map_shift_px=4)
    shapes = policy.image_encoder.map_shapes  # 32 px: (3, 16, 16) stride 2, (24, 8, 8) stride 4, (40, 4, 4) stride 8
    batch_size = 64
    maps = []
    for channels, height, width in shapes:  # one hot cell in the middle of every map, all channels
        grid = torch.zeros(batch_size, channels, height, width)
        grid[:, :, height // 2, width // 2] = 1.0
        maps.append(grid.flatten(1))
    torch.manual_seed(0)
    shifted = policy._shift_maps(maps)
    moves = []
    for (channels, height, width), grid in zip(shapes, shifted, strict=True):
        grid = grid.view(batch_size, channels, height, width)
        assert torch.equal(grid.sum(dim=(2, 3)), torch.ones(batch_size, channels))  # moved, not lost (offset < half a map)
        flat = grid[:, 0].flatten(1).argmax(dim=1)
        moves.append(torch.stack([flat % width - width // 2, flat // width - height // 2], dim=1) * (32 // width))  # pixels
    pixel_moves = moves[0]  # stride 2: exact to 2 px
    assert pixel_moves.abs().max() <= 4 and len(torch.unique(pixel_moves, dim=0)) > 5  # several offsets drawn, within the limit
    for stride, move in zip((4, 8), moves[1:], strict=True):
        assert (move - pixel_moves).abs().max() <= stride  # the same offset per sample, rounded to each map's cells
    # training forwards differ (fresh offsets); eval forwards are deterministic and unshifted
    policy.train()
    torch.manual_seed(1)
    first, _ = policy(batch, reduction="none")
    second, _ = policy(batch, reduction="none")
    assert not torch.equal(first, second)
    policy.eval()
    plain, _ = _ready(keypoints=2, flat_map_features=False, feature_map_strides=(4, 8), pixel_map_stride=2)
    plain.eval()
    assert torch.equal(policy.predict_action_chunk(batch), plain.predict_action_chunk(batch))
    with pytest.raises(ValueError, match="map_shift_px must be an int in"):
        CompactVLAConfig(map_shift_px=-1)
    with pytest.raises(ValueError, match="map_shift_px=2 shifts feature maps"):
        CompactVLAConfig(map_shift_px=2, keypoints=0, pixel_map_stride=0, image_pooling="mean")


def test_checkpoint_saved_before_keypoints_existed_still_loads(tmp_path):
    policy, batch = _ready(keypoints=0, flat_map_features=True, pooled_features=True, feature_map_strides=(8, 16), pixel_map_stride=0)
    policy.eval()
    policy.save_pretrained(tmp_path / "old")
    config_path = tmp_path / "old" / "config.json"
    config = json.loads(config_path.read_text())
    for name in ("keypoints", "keypoint_hidden_dim", "flat_map_features", "feature_map_strides", "pixel_map_stride",
                 "keypoint_kernel_size", "map_shift_px"):
        del config[name]  # what a checkpoint from before these fields holds
    config_path.write_text(json.dumps(config))
    loaded = CompactVLAPolicy.from_pretrained(tmp_path / "old")
    assert torch.equal(loaded.predict_action_chunk(batch), policy.predict_action_chunk(batch))


def test_text_normalization_is_fit_by_the_trainer_saved_and_required(tmp_path):
    from robot_si.train import TrainConfig, Trainer

    dataset = SyntheticChunkDataset(32)
    torch.manual_seed(0)
    policy = CompactVLAPolicy(tiny_policy_config(use_text=True, text_normalization="mean_std"))
    batch = torch.utils.data.default_collate([dataset[i] for i in range(8)])
    policy.set_normalization_stats(compute_normalization_stats(dataset))
    with pytest.raises(RuntimeError, match="fit_text_normalization"):
        policy(batch)  # state/action stats alone are not enough
    Trainer(policy, dataset, TrainConfig(steps=2, batch_size=8, progress=False, device="cpu"), tmp_path / "run").train()
    # the frame-weighted mean and the overall std of the training instructions' embeddings
    instructions = [dataset[i]["task"] for i in range(len(dataset))]
    embeddings = policy.encode_tasks(instructions)
    assert torch.allclose(policy.text_mean, embeddings.mean(0), atol=1e-5)
    assert torch.allclose(policy.text_std, embeddings.var(0, unbiased=False).mean().sqrt().reshape(1), atol=1e-5)
    normalized = policy.normalize_text(embeddings)
    assert normalized.mean(0).abs().max() < 1e-4 and abs(float(normalized.pow(2).mean()) - 1.0) < 1e-3
    loaded = _reloaded_acts_the_same(policy, batch, tmp_path)
    assert torch.equal(loaded.text_std, policy.text_std)
    assert json.loads((tmp_path / "ckpt" / "normalization.json").read_text())["task"]["std"] == policy.text_std.tolist()
    # a checkpoint saved before the field existed loads as "none" (it has no text buffers)
    plain, plain_batch = _ready(use_text=True, text_normalization="none")
    plain.save_pretrained(tmp_path / "old")
    config_path = tmp_path / "old" / "config.json"
    config = json.loads(config_path.read_text())
    del config["text_normalization"]
    config_path.write_text(json.dumps(config))
    assert CompactVLAPolicy.from_pretrained(tmp_path / "old").config.text_normalization == "none"
    with pytest.raises(ValueError, match="text_normalization must be one of"):
        CompactVLAConfig(text_normalization="whiten")
