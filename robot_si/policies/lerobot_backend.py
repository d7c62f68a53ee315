"""`LeRobotPolicyAdapter`: LeRobot's ACT, Diffusion, SmolVLA, pi0 and pi05 behind robot_si's policy API.

Owns the translation between our batches and a LeRobot policy: camera key mapping (`image_key_map`), LeRobot's
own pre/post-processor pipelines (normalization, tokenization, device) loaded from the checkpoint directory, and a
per-sample loss `forward(batch, reduction="none")` for weighted training. SmolVLA / pi0 / pi05 compute it
themselves (`reduction="none"`); for ACT and Diffusion it is re-implemented here from their internals (same
random draws in the same order, so the mean of the per-sample losses equals their own loss when nothing is padded).

Nothing is ever downloaded: checkpoints are local directories in LeRobot's `save_pretrained` layout
(config.json, model.safetensors, policy_preprocessor.json, policy_postprocessor.json + their state files).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SUPPORTED_TYPES = ("act", "diffusion", "smolvla", "pi0", "pi05")
REDUCTION_NATIVE = ("smolvla", "pi0", "pi05")
OUR_PASSTHROUGH_KEYS = ("observation.state", "action", "action_is_pad", "task")


class LeRobotPolicyAdapter(nn.Module):
    """Wrap a LeRobot `PreTrainedPolicy` with its processors.

    Args:
        policy: the LeRobot policy (ACTPolicy, DiffusionPolicy, SmolVLAPolicy, PI0Policy, PI05Policy).
        preprocessor, postprocessor: LeRobot's policy processor pipelines (normalization lives there in LeRobot >= 0.4).
        image_key_map: our image key -> the policy's image key (default: identity when the keys match, or the
            single camera mapped to the policy's single image key).
    """

    def __init__(self, policy, preprocessor, postprocessor, *, image_key_map: dict[str, str] | None = None) -> None:
        super().__init__()
        policy_type = getattr(policy.config, "type", None)
        if policy_type not in SUPPORTED_TYPES:
            raise ValueError(f"LeRobotPolicyAdapter supports {list(SUPPORTED_TYPES)}, got a {policy_type!r} policy")
        self.policy = policy
        self.preprocessor = preprocessor
        self.postprocessor = postprocessor
        self.policy_type = policy_type
        self.image_key_map = dict(image_key_map or {})
        self.config = policy.config

    # ── construction ───────────────────────────────────────────────────

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike[str],
        *,
        device: str | torch.device = "cpu",
        image_key_map: dict[str, str] | None = None,
        preprocessor_overrides: dict | None = None,
        **config_overrides,
    ) -> LeRobotPolicyAdapter:
        """Load a local LeRobot checkpoint directory (nothing is fetched).

        `config_overrides` set fields of the policy config (e.g. SmolVLA's vlm_model_name=<local VLM folder>);
        `preprocessor_overrides` go to LeRobot's processor loading (e.g. {"tokenizer_processor":
        {"tokenizer_name": <local folder>}} when the saved pipeline names a hub tokenizer)."""
        from lerobot.configs.policies import PreTrainedConfig
        from lerobot.policies.factory import get_policy_class, make_pre_post_processors

        path = Path(path)
        config_path = path / "config.json"
        if not config_path.is_file():
            raise FileNotFoundError(
                f"no config.json in {path}: give a local LeRobot checkpoint directory (save_pretrained layout); "
                "hub ids are not downloaded"
            )
        policy_type = json.loads(config_path.read_text()).get("type")
        if policy_type not in SUPPORTED_TYPES:
            raise ValueError(
                f"{path} holds a {policy_type!r} policy; LeRobotPolicyAdapter supports {list(SUPPORTED_TYPES)} "
                "(robot_si.policies.load_policy loads compact_vla checkpoints)"
            )
        for name in ("policy_preprocessor.json", "policy_postprocessor.json"):
            if not (path / name).is_file():
                raise FileNotFoundError(
                    f"{path} has no {name}: LeRobot >= 0.4 checkpoints keep normalization and tokenization in their "
                    "processor pipelines; re-save the policy with its processors (see lerobot's migrate script)"
                )
        config = PreTrainedConfig.from_pretrained(str(path), local_files_only=True)
        config.device = str(device)
        for key, value in config_overrides.items():
            if not hasattr(config, key):
                raise ValueError(f"{policy_type} config has no field {key!r}")
            setattr(config, key, value)
        policy = get_policy_class(policy_type).from_pretrained(str(path), config=config, local_files_only=True)
        preprocessor, postprocessor = make_pre_post_processors(
            config, pretrained_path=str(path),
            preprocessor_overrides={"device_processor": {"device": str(device)}, **(preprocessor_overrides or {})},
        )
        return cls(policy.to(device).eval(), preprocessor, postprocessor, image_key_map=image_key_map)

    @classmethod
    def from_config(
        cls, config, *, dataset_stats: dict | None = None, image_key_map: dict[str, str] | None = None
    ) -> LeRobotPolicyAdapter:
        """A freshly initialized LeRobot policy (config with input/output features) and new processors."""
        from lerobot.policies.factory import get_policy_class, make_pre_post_processors

        policy = get_policy_class(config.type)(config)
        preprocessor, postprocessor = make_pre_post_processors(config, dataset_stats=dataset_stats)
        return cls(policy.to(config.device), preprocessor, postprocessor, image_key_map=image_key_map)

    def save_pretrained(self, directory: str | os.PathLike[str]) -> Path:
        directory = Path(directory)
        self.policy.save_pretrained(directory)
        self.preprocessor.save_pretrained(directory)
        self.postprocessor.save_pretrained(directory)
        return directory

    # ── shapes ─────────────────────────────────────────────────────────

    @property
    def horizon(self) -> int:
        """Action chunk length in training batches (ACT/SmolVLA/pi: chunk_size; Diffusion: horizon)."""
        return int(self.config.horizon if self.policy_type == "diffusion" else self.config.chunk_size)

    @property
    def n_action_steps(self) -> int:
        return int(self.config.n_action_steps)

    @property
    def image_keys(self) -> list[str]:
        return list(self.config.image_features)

    def _map_images(self, batch: dict) -> dict:
        """Rename our camera keys to the policy's; error naming both sides when they cannot be matched."""
        expected = self.image_keys
        ours = [k for k in batch if k.startswith("observation.images.")]
        mapping = dict(self.image_key_map)
        if not mapping:
            if set(expected) <= set(ours):
                mapping = {k: k for k in expected}
            elif len(expected) == 1 and len(ours) == 1:
                mapping = {ours[0]: expected[0]}
        mapped = {}
        for source, target in mapping.items():
            if source not in batch:
                raise KeyError(f"batch has no camera key {source!r} (image keys present: {ours}); fix image_key_map")
            mapped[target] = batch[source]
        missing = [k for k in expected if k not in mapped]
        if missing:
            raise KeyError(
                f"the {self.policy_type} policy needs image keys {expected} but the batch has {ours}; pass "
                f"image_key_map={{our_key: policy_key}} (e.g. {{{ours[0] if ours else 'observation.images.front'!r}: {missing[0]!r}}})"
            )
        for key, image in mapped.items():
            shape = tuple(self.config.image_features[key].shape)
            if tuple(image.shape[-3:]) != shape:
                raise ValueError(f"{key} is {tuple(image.shape[-3:])} but the {self.policy_type} policy expects {shape}")
        return mapped

    def _prepare(self, batch: dict) -> dict:
        prepared = {k: batch[k] for k in OUR_PASSTHROUGH_KEYS if k in batch}
        prepared.update(self._map_images(batch))
        if "task" in prepared and isinstance(prepared["task"], str):
            prepared["task"] = [prepared["task"]]
        return self.preprocessor(prepared)

    def training_batch(self, batch: dict) -> dict:
        """`batch` as the wrapped policy's own `forward` expects it. Diffusion wants an observation window
        (B, n_obs_steps, ...): our frames carry one observation, repeated over the window (as LeRobot does at an
        episode start)."""
        prepared = self._prepare(batch)
        if self.policy_type == "diffusion":
            steps = self.config.n_obs_steps
            for key in ["observation.state", *self.image_keys]:
                value = prepared[key]
                if value.ndim in (2, 4):
                    prepared[key] = value.unsqueeze(1).expand(-1, steps, *value.shape[1:])
        return prepared

    # ── policy API ─────────────────────────────────────────────────────

    def reset(self) -> None:
        self.policy.reset()

    @torch.no_grad()
    def predict_action_chunk(self, batch: dict) -> Tensor:
        """(B, n, A) in env units. ACT/SmolVLA/pi: n = chunk_size; Diffusion returns its n_action_steps executable
        actions (the steps after the observation window)."""
        self.policy.eval()
        observations = {k: v for k, v in batch.items() if k not in ("action", "action_is_pad")}
        chunk = self.policy.predict_action_chunk(self.training_batch(observations))
        return self.postprocessor(chunk)

    @torch.no_grad()
    def select_action(self, batch: dict) -> Tensor:
        self.policy.eval()
        return self.postprocessor(self.policy.select_action(self._prepare(batch)))

    def forward(self, batch: dict, reduction: str = "mean") -> tuple[Tensor, dict]:
        """LeRobot's training loss; reduction="none" gives the per-sample loss (B,) for weighted training."""
        if reduction not in ("mean", "none"):
            raise ValueError(f"reduction must be 'mean' or 'none' (got {reduction!r})")
        prepared = self.training_batch(batch)
        if self.policy_type in REDUCTION_NATIVE:
            loss, info = self.policy.forward(prepared, reduction=reduction)
            return loss, dict(info or {})
        per_sample, info = _act_per_sample_loss(self.policy, prepared) if self.policy_type == "act" else _diffusion_per_sample_loss(self.policy, prepared)
        if reduction == "none":
            return per_sample, info
        weight = batch.get("weight")
        if weight is None:
            return per_sample.mean(), info
        weight = torch.as_tensor(weight, dtype=per_sample.dtype, device=per_sample.device)
        return (weight * per_sample).sum() / weight.sum().clamp_min(1e-8), info


def _act_per_sample_loss(policy, batch: dict) -> tuple[Tensor, dict]:
    """ACTPolicy.forward, per sample: masked L1 over valid steps + kl_weight * KL (when the VAE is used)."""
    from lerobot.utils.constants import ACTION, OBS_IMAGES

    if policy.config.image_features:
        batch = dict(batch)
        batch[OBS_IMAGES] = [batch[key] for key in policy.config.image_features]
    actions_hat, (mu_hat, log_sigma_x2_hat) = policy.model(batch)
    abs_err = F.l1_loss(batch[ACTION], actions_hat, reduction="none")
    valid = ~batch["action_is_pad"].unsqueeze(-1)
    l1 = (abs_err * valid).sum(dim=(1, 2)) / (valid.sum(dim=(1, 2)) * abs_err.shape[-1]).clamp_min(1)
    info = {"l1_loss": float(l1.detach().mean())}
    if policy.config.use_vae and log_sigma_x2_hat is not None:
        kld = (-0.5 * (1 + log_sigma_x2_hat - mu_hat.pow(2) - log_sigma_x2_hat.exp())).sum(-1)
        info["kld_loss"] = float(kld.detach().mean())
        return l1 + kld * policy.config.kl_weight, info
    return l1, info


def _diffusion_per_sample_loss(policy, batch: dict) -> tuple[Tensor, dict]:
    """DiffusionModel.compute_loss, per sample (same noise/timestep draws in the same order)."""
    from lerobot.utils.constants import ACTION, OBS_IMAGES

    config = policy.config
    batch = dict(batch)
    if config.image_features:
        batch[OBS_IMAGES] = torch.stack([batch[key] for key in config.image_features], dim=-4)
    model = policy.diffusion
    global_cond = model._prepare_global_conditioning(batch)
    trajectory = batch[ACTION]
    eps = torch.randn(trajectory.shape, device=trajectory.device)
    timesteps = torch.randint(
        low=0, high=model.noise_scheduler.config.num_train_timesteps, size=(trajectory.shape[0],), device=trajectory.device
    ).long()
    noisy = model.noise_scheduler.add_noise(trajectory, eps, timesteps)
    prediction = model.unet(noisy, timesteps, global_cond=global_cond)
    target = eps if config.prediction_type == "epsilon" else trajectory
    loss = F.mse_loss(prediction, target, reduction="none")
    if config.do_mask_loss_for_padding:
        valid = ~batch["action_is_pad"].unsqueeze(-1)
        per_sample = (loss * valid).sum(dim=(1, 2)) / (valid.sum(dim=(1, 2)) * loss.shape[-1]).clamp_min(1)
    else:
        per_sample = loss.mean(dim=(1, 2))
    return per_sample, {"mse_loss": float(per_sample.detach().mean())}
