"""`robot-si collect` / `robot-si eval` end to end with a saved tiny CompactVLA, and their error messages."""

from __future__ import annotations

import json

import pytest

from robot_si.cli import main as cli_main
from robot_si.collect.commands import main
from robot_si.collect.testing import tiny_compact_vla
from robot_si.data import EpisodeStore


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("policy") / "round0"
    tiny_compact_vla().save_pretrained(path)
    return path


def test_collect_then_eval_commands(policy_dir, tmp_path, capsys):
    store = tmp_path / "store"
    common = [f"policy={policy_dir}", "tasks=[reach]", "episodes=2", "num_envs=2", "max_episode_steps=5",
              "progress=false"]
    assert main(["collect", *common, f"store={store}", "round=1", "exploration_std=0.2", "writer=thread",
                 f"metrics_out={tmp_path / 'metrics.json'}"]) == 0
    metas = EpisodeStore(store).episodes()
    assert len(metas) == 2 and {m.policy_version for m in metas} == {"policy0/round0"} and {m.round for m in metas} == {1}
    assert json.loads((tmp_path / "metrics.json").read_text())["written"] == 2
    out = tmp_path / "eval.json"
    assert main(["eval", *common, f"out={out}", "instruction_split=heldout"]) == 0
    report = json.loads(out.read_text())
    assert report["overall"]["n"] == 2 and report["instruction_split"] == "heldout"
    assert "| reach |" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["episodes=0"], "episodes=0 must be a positive int"),
        (["tasks=[reach,fly]"], "unknown tasks ['fly']"),
        (["policy=/nonexistent/policy"], "does not exist"),
        (["policy=null"], "needs policy=PATH"),
        (["store=null"], "needs store=DIR"),
        (["backend=slurm"], "backend='slurm'"),
        (["num_envs"], "key=value"),
    ],
)
def test_bad_values_give_clear_errors(policy_dir, tmp_path, capsys, overrides, message):
    arguments = [f"policy={policy_dir}", f"store={tmp_path / 'store'}", "episodes=1", "progress=false"]
    assert cli_main(["collect", *arguments, *overrides]) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "store").exists()  # nothing was created before the arguments were checked
