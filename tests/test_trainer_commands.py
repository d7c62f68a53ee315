"""`robot-si train`: Hydra overrides, a real store through TrainingView, and the empty-store error."""

from __future__ import annotations

import json

import pytest

from robot_si.data import EpisodeStore
from robot_si.data.synthetic import synthetic_episode, synthetic_meta
from robot_si.policies import load_policy
from robot_si.train.commands import main

TINY = [
    "policy.image_size=32", "policy.horizon=4", "policy.n_action_steps=2", "policy.pretrained_vision=false",
    "policy.hidden_dim=32", "policy.image_projection_dim=16", "policy.state_hidden_dim=16", "policy.num_blocks=1",
    "policy.use_text=false", "train.batch_size=4", "train.progress=false", "train.warmup_steps=1",
]


def _store(root, episodes: int):
    store = EpisodeStore.create(root, fps=10, image_size=32, state_dim=8, action_dim=4)
    for i in range(episodes):
        store.append_episode(synthetic_episode(6, image_size=32, seed=i), synthetic_meta(f"ep{i}", 6, seed=i), audit_gt_success=None)
    return root


def test_train_command_on_a_store(tmp_path, capsys):
    store = _store(tmp_path / "store", 2)
    out = tmp_path / "out"
    assert main(["train", f"stores=[{store}]", f"out={out}", "steps=3", *TINY]) == 0
    result = json.loads((out / "train_result.json").read_text())
    assert result["steps"] == 3 and result["num_samples"] == 12
    policy = load_policy(out / "policy")
    assert policy.config.horizon == 4
    # rerunning continues from the checkpoint instead of starting over
    assert main(["train", f"stores=[{store}]", f"out={out}", "steps=5", *TINY]) == 0
    assert json.loads((out / "train_result.json").read_text())["resumed_from_step"] == 3


def test_empty_store_is_a_clear_error(tmp_path):
    store = _store(tmp_path / "empty", 0)
    with pytest.raises(ValueError, match="no training frames"):
        main(["train", f"stores=[{store}]", f"out={tmp_path / 'out'}", "steps=2", *TINY])
    with pytest.raises(ValueError, match="needs stores"):
        main(["train", "steps=2"])


def test_a_policy_built_from_a_config_trains_the_same_whatever_used_the_global_rng_before(tmp_path):
    import torch

    from robot_si.train import TrainConfig, train_policy

    store = _store(tmp_path / "store", 2)
    policy_config = {"type": "compact_vla", "image_size": 32, "horizon": 4, "n_action_steps": 2, "pretrained_vision": False,
                     "hidden_dim": 32, "image_projection_dim": 16, "state_hidden_dim": 16, "num_blocks": 1, "use_text": False}
    config = TrainConfig(steps=2, batch_size=4, warmup_steps=1, progress=False, save_every=None, seed=5, device="cpu")
    states = []
    for run, draws in enumerate((0, 7)):
        torch.rand(draws)  # what ran earlier in the process (another stage, a library) moved the global RNG
        train_policy([store], tmp_path / f"run{run}", policy_config=policy_config, train_config=config)
        states.append(load_policy(tmp_path / f"run{run}" / "policy").state_dict())
    for name, value in states[0].items():
        assert torch.equal(value, states[1][name]), f"{name} depends on the global RNG's state before training"
