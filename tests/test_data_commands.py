"""`robot-si export-hdf5` / `import-hdf5` through the data stage's command entry point."""

from __future__ import annotations

import numpy as np
import pytest

from robot_si.data import EpisodeStore
from robot_si.data.commands import main
from robot_si.data.synthetic import synthetic_episode, synthetic_meta


def test_export_then_import_commands(tmp_path, capsys):
    store = EpisodeStore.create(tmp_path / "store", fps=10, image_size=16, state_dim=8, action_dim=4)
    store.append_episode(synthetic_episode(4, image_size=16), synthetic_meta("e0", 4))
    assert main(["export-hdf5", str(store.root), str(tmp_path / "out.hdf5")]) == 0
    assert main(["import-hdf5", str(tmp_path / "out.hdf5"), str(tmp_path / "copy")]) == 0
    assert "imported 1 episodes" in capsys.readouterr().out
    np.testing.assert_array_equal(EpisodeStore(tmp_path / "copy").load_episode("e0")["action"], store.load_episode("e0")["action"])
    with pytest.raises(FileNotFoundError, match="store.json is missing"):
        main(["export-hdf5", str(tmp_path / "nowhere"), str(tmp_path / "x.hdf5")])


def test_demos_command_records_near_misses_and_reports_them_failed(tmp_path, capsys):
    root = tmp_path / "demos"
    assert main(["demos", "reach", "--episodes", "2", "--root", str(root), "--near-miss"]) == 0
    out = capsys.readouterr().out
    assert "reach: 2 near misses, expert success 0/2" in out
    assert [m.source for m in EpisodeStore(root).episodes()] == ["near_miss", "near_miss"]
