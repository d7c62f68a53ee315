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
