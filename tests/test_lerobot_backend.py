"""LeRobot adapters: tiny random ACT and Diffusion built offline; per-sample losses match LeRobot's own loss."""

from __future__ import annotations

import pytest
import torch

from robot_si.train import TrainConfig, Trainer
from robot_si.train.testing import SyntheticChunkDataset

pytest.importorskip("lerobot")


def _features(image_size: int):
    from lerobot.configs.types import FeatureType, PolicyFeature

    inputs = {
        "observation.images.top": PolicyFeature(type=FeatureType.VISUAL, shape=(3, image_size, image_size)),
        "observation.state": PolicyFeature(type=FeatureType.STATE, shape=(8,)),
    }
    return inputs, {"action": PolicyFeature(type=FeatureType.ACTION, shape=(4,))}


def _stats():
    return {
        "observation.state": {"mean": torch.zeros(8), "std": torch.ones(8), "min": -3 * torch.ones(8), "max": 3 * torch.ones(8)},
        "action": {"mean": torch.zeros(4), "std": torch.ones(4) * 0.5, "min": -torch.ones(4), "max": torch.ones(4)},
        "observation.images.top": {
            "mean": torch.full((3, 1, 1), 0.5), "std": torch.full((3, 1, 1), 0.25),
            "min": torch.zeros(3, 1, 1), "max": torch.ones(3, 1, 1),
        },
    }


def _act():
    from lerobot.policies.act.configuration_act import ACTConfig

    from robot_si.policies.lerobot_backend import LeRobotPolicyAdapter

    inputs, outputs = _features(32)
    config = ACTConfig(
        input_features=inputs, output_features=outputs, chunk_size=4, n_action_steps=4, dim_model=32, n_heads=2,
        dim_feedforward=64, n_encoder_layers=1, n_decoder_layers=1, n_vae_encoder_layers=1, latent_dim=8,
        pretrained_backbone_weights=None, device="cpu",
    )
    torch.manual_seed(0)
    return LeRobotPolicyAdapter.from_config(config, dataset_stats=_stats())


def _diffusion():
    pytest.importorskip("diffusers")
    from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig

    from robot_si.policies.lerobot_backend import LeRobotPolicyAdapter

    inputs, outputs = _features(64)  # ResNet18 BatchNorm needs > 1x1 feature maps at construction
    config = DiffusionConfig(
        input_features=inputs, output_features=outputs, n_obs_steps=1, horizon=8, n_action_steps=4,
        down_dims=(16, 32), kernel_size=3, n_groups=4, diffusion_step_embed_dim=16, crop_shape=None,
        spatial_softmax_num_keypoints=8, pretrained_backbone_weights=None, num_inference_steps=4, device="cpu",
    )
    torch.manual_seed(0)
    return LeRobotPolicyAdapter.from_config(config, dataset_stats=_stats())


def _batch(adapter, pad_from: int | None = None) -> dict:
    image_size = adapter.config.image_features["observation.images.top"].shape[-1]
    dataset = SyntheticChunkDataset(6, horizon=adapter.horizon, image_size=image_size, frames_per_episode=100)
    batch = torch.utils.data.default_collate([dataset[i] for i in range(6)])
    if pad_from is not None:
        batch["action_is_pad"][:, pad_from:] = True
    return batch


@pytest.mark.parametrize("build", [_act, _diffusion], ids=["act", "diffusion"])
def test_per_sample_loss_matches_lerobot_mean(build):
    adapter = build()
    adapter.train()
    batch = _batch(adapter)  # our camera key "front" maps onto the policy's single "top" camera
    torch.manual_seed(1)
    per_sample, _ = adapter(batch, reduction="none")
    torch.manual_seed(1)
    own, _ = adapter.policy.forward(adapter.training_batch(batch))
    assert per_sample.shape == (6,)
    assert torch.allclose(per_sample.mean(), own, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("build", [_act, _diffusion], ids=["act", "diffusion"])
def test_padded_steps_are_ignored_and_inference_shapes(build, tmp_path):
    adapter = build()
    adapter.eval()
    batch = _batch(adapter, pad_from=2)
    torch.manual_seed(1)
    base, _ = adapter(batch, reduction="none")
    garbage = dict(batch, action=batch["action"].clone())
    garbage["action"][:, 2:] += 10.0
    torch.manual_seed(1)
    after, _ = adapter(garbage, reduction="none")
    assert base.shape == (6,)
    if adapter.policy_type == "act":  # Diffusion's U-Net convolves over padded steps by design
        assert torch.allclose(base, after)
    adapter.reset()
    chunk = adapter.predict_action_chunk(batch)
    assert chunk.shape[0] == 6 and chunk.shape[-1] == 4
    adapter.reset()
    assert adapter.select_action(batch).shape == (6, 4)
    # a local checkpoint round trip through load_policy (nothing fetched)
    from robot_si.policies import load_policy

    adapter.save_pretrained(tmp_path / "ckpt")
    loaded = load_policy(tmp_path / "ckpt")
    assert loaded.policy_type == adapter.policy_type


def test_act_trains_with_the_weighted_trainer(tmp_path):
    adapter = _act()
    result = Trainer(
        adapter, SyntheticChunkDataset(16, horizon=4), TrainConfig(steps=3, batch_size=4, progress=False, save_every=None), tmp_path
    ).train()
    assert result.steps == 3 and result.final_loss == result.final_loss  # finite
    assert (tmp_path / "policy" / "config.json").is_file()


def test_missing_camera_mapping_is_a_clear_error():
    adapter = _act()
    batch = _batch(adapter)
    batch["observation.images.wrist"] = batch["observation.images.front"]
    with pytest.raises(KeyError, match="image_key_map"):
        adapter(batch, reduction="none")
