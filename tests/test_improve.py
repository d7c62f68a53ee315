"""`robot-si improve`: the whole loop on the smoke preset, killed with SIGKILL mid-run and resumed; bad config;
the loop's labeling and weighting never read ground truth."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from robot_si.config import compose
from robot_si.data import EpisodeStore, list_label_versions, read_label_set
from robot_si.improve import stages
from robot_si.improve.guards import check_sample_size
from robot_si.improve.loop import Run, prepare_run, validate_config

pytestmark = pytest.mark.timeout(600)


def _improve_command(runs_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "robot_si.cli", "improve", "preset=smoke", "name=smoke",
            f"runs_dir={runs_dir}", "progress=false", "tracking.tensorboard=true", "guards.check_labels=1", "guards.check_share=0.5", *extra]


def _manifest(run_dir: Path, round_index: int) -> dict:
    path = run_dir / f"round_{round_index:03d}" / "manifest.json"
    return json.loads(path.read_text())["stages"] if path.exists() else {}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """Start the smoke loop, SIGKILL it once round 0's policy is trained, rerun the same command to the end."""
    runs_dir = tmp_path_factory.mktemp("runs")
    run_dir = runs_dir / "smoke"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(_improve_command(runs_dir), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                               start_new_session=True)
    deadline = time.monotonic() + 300
    while "train_policy" not in _manifest(run_dir, 0):
        assert process.poll() is None, process.stdout.read().decode()
        assert time.monotonic() < deadline, "round 0 never finished training the policy"
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    killed_manifest = _manifest(run_dir, 0)
    assert process.returncode == -signal.SIGKILL

    resumed = subprocess.run(_improve_command(runs_dir), capture_output=True, text=True, env=env, timeout=400)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    return run_dir, killed_manifest, resumed.stdout


def test_killed_run_resumes_without_redoing_completed_stages(smoke_run):
    run_dir, killed_manifest, log = smoke_run
    assert "demos: done earlier, skipping" in log and "train_policy: done earlier, skipping" in log
    final_manifest = _manifest(run_dir, 0)
    for stage in ("demos", "train_policy"):  # the records (and seconds) from before the kill are kept as they were
        assert final_manifest[stage] == killed_manifest[stage]
    assert set(_manifest(run_dir, 1)) >= {"collect", "label", "train_verifier", "refit_label", "weight", "train_policy",
                                          "evaluate", "audit"}
    # no episode twice: demos and autonomous stores hold exactly the requested episodes
    demo_store = EpisodeStore(run_dir / "store" / "demos")
    assert len(demo_store.episodes(source="demo")) == 4 and len(demo_store.episodes(source="near_miss")) == 2
    # the near misses reach the verifier as negatives (behaviour cloning skips them: tests/test_data_demos.py)
    assert final_manifest["train_verifier"]["result"]["verifier_examples"]["near_miss_end"] == {"positive": 0, "negative": 2}
    assert len(EpisodeStore(run_dir / "store" / "autonomous").episodes()) == 4


def test_tensorboard_has_each_round_once_after_the_resume(smoke_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = smoke_run[0]
    rounds = json.loads((run_dir / "summary.json").read_text())["rounds"]
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    success = events.Scalars("round/success_rate_gt")
    assert [e.step for e in success] == [0, 1]
    assert [e.value for e in success] == pytest.approx([r["success_rate_gt"] for r in rounds])
    assert [e.value for e in events.Scalars("success_per_task/reach")] == pytest.approx(
        [r["success_per_task"]["reach"]["success_rate"] for r in rounds])
    assert [e.value for e in events.Scalars("phase_seconds/train")] == pytest.approx(
        [r["phase_seconds"]["train"] for r in rounds])


def test_smoke_run_writes_summary_metrics_report_and_checkpoints(smoke_run):
    run_dir = smoke_run[0]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["config"]["tasks"] == ["reach"]
    rounds = summary["rounds"]
    assert [r["round"] for r in rounds] == [0, 1]
    for record in rounds:
        assert 0.0 <= record["success_rate_gt"] <= 1.0
        low, high = record["success_ci"]
        assert low <= record["success_rate_gt"] <= high
        assert set(record["success_per_task"]) == {"reach"}
        assert {"train", "eval"} <= set(record["phase_seconds"])
    last = rounds[1]
    assert last["episodes_collected"] == 4
    # the round trains on labels from the verifier refit on this round's budgeted labels, not the previous one's,
    # checked on a random sample of what it accepts
    assert last["label_version"] == "r001-labels-checked" and "episodes_accepted_previous_verifier" in last
    weights_note = json.loads(json.loads((run_dir / "store" / "autonomous" / "labels" / "r001-weights" / "label_set.json")
                                         .read_text())["note"])
    assert weights_note["weighted_from"] == "r001-labels-checked"
    check = _manifest(run_dir, 1)["check_labels"]["result"]["labelled_sample"]
    assert all(check["detector_accepted"])  # only accepted episodes are checked
    # the check sample grows with the refit verifier's accepted count (guards.check_share=0.5)
    accepted = _manifest(run_dir, 1)["refit_label"]["result"]["episodes_accepted"]
    budget = check_sample_size(accepted=accepted, minimum=1, share=0.5)
    assert len(check["label"]) <= budget
    assert any(f"of the {accepted} episodes the refit verifier accepted (check budget {budget})" in note
               for note in last["guard_notes"])
    # 2 budgeted labels; when the verifier guard fired, guards.extra_labels=1 more; the check's
    assert last["labels_spent"] == (3 if "relabel" in _manifest(run_dir, 1) else 2) + len(check["label"])
    assert last["action_entropy"] > 0 and rounds[0]["demo_action_entropy"] > 0
    assert {"collect", "label", "weight", "train", "eval", "audit"} <= set(last["phase_seconds"])
    for key in ("detector_auc", "accepted_but_failed", "ece", "episodes_accepted"):
        assert key in last
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 2
    report = (run_dir / "report.md").read_text()
    assert "| 1 |" in report and (run_dir / "plots" / "success_per_round.png").stat().st_size > 0
    best = json.loads((run_dir / "best.json").read_text())
    assert (Path(best["policy"]) / "config.json").exists()
    for round_index in (0, 1):
        assert (stages.policy_dir(Run(root=run_dir, config=None), round_index) / "config.json").exists()
        assert (run_dir / f"round_{round_index:03d}" / "verifier" / "detector").is_dir()


def test_rerunning_a_finished_run_redoes_nothing(smoke_run):
    run_dir = smoke_run[0]
    before = (run_dir / "summary.json").read_text()
    again = subprocess.run(_improve_command(run_dir.parent), capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("done earlier, skipping") == len(_manifest(run_dir, 0)) + len(_manifest(run_dir, 1)) >= 11
    assert json.loads((run_dir / "summary.json").read_text())["rounds"] == json.loads(before)["rounds"]


def test_loop_labels_and_weights_do_not_depend_on_ground_truth(smoke_run, tmp_path, monkeypatch):
    """Label (verifier only) and weight a round on copies whose ground truth is removed or flipped: identical."""
    source = smoke_run[0]
    results = {}
    for variant in ("original", "without_truth", "flipped"):
        run_dir = shutil.copytree(source, tmp_path / variant)
        for audit_file in (run_dir / "store" / "autonomous").glob("shards/*/robot_si/audit.jsonl"):
            rows = [json.loads(line) for line in audit_file.read_text().splitlines() if line]
            if variant == "without_truth":
                audit_file.unlink()
            elif variant == "flipped":
                for row in rows:
                    row["audit.gt_success"] = not row["audit.gt_success"]
                audit_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
        cfg = OmegaConf.load(run_dir / "config.yaml")
        cfg.labeling.source = "none"  # the verifier alone: no budgeted oracle
        run = Run(root=run_dir, config=cfg)
        monkeypatch.setattr(EpisodeStore, "audit_table", lambda self: pytest.fail("labeling/weighting read ground truth"))
        labelled = stages.label(run, cfg, 2)  # a new label version from round 1's verifier
        weighted = stages.weight(run, cfg, 2, labelled["label_version"], verified_only=False)
        monkeypatch.undo()
        label_set = read_label_set(run_dir / "store" / "autonomous", weighted["label_version"])
        results[variant] = (
            {e: (l.success_prob, l.label, l.label_source) for e, l in label_set.episode_labels.items()},
            {e: f["weight"].tolist() for e, f in label_set.frame_labels.items()},
        )
    # no new budgeted labels: every label is the detector's, or an oracle answer carried from round 1
    autonomous = source / "store" / "autonomous"
    carried = {e for version in list_label_versions(autonomous)
               for e, l in read_label_set(autonomous, version).episode_labels.items() if l.label_source == "oracle"}
    assert {e for e, v in results["original"][0].items() if v[2] != "detector"} == carried
    # success_prob (the detector's output) and the progress-model fields exist for every episode, carried or not
    assert len(carried) >= 2 and len(results["original"][0]) == 4
    assert results["without_truth"] == results["original"]
    assert results["flipped"] == results["original"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("collect.episodes_per_task=-1", "collect.episodes_per_task must be > 0"),
        ("weighting.beta=0", "weighting.beta must be > 0"),
        ("weighting.method=best", "unknown weighting.method 'best'"),
        ("tasks=[teleport]", "unknown tasks ['teleport']"),
        ("train.demo_ratio=1.5", "train.demo_ratio must be in [0, 1]"),
        ("weighting.method=advantage_conditioned", "needs policy.advantage_conditioning=true"),
        ("collect.allocation=greedy", "collect.allocation must be uniform or weak_tasks"),
        ("collect.min_task_share=1.5", "collect.min_task_share must be in [0, 1]"),
        ("guards.check_share=-0.1", "guards.check_share must be in [0, 1]"),
        ("verifier.detector.cameras=[front,wrist]", "the loop records the front camera only"),
    ],
)
def test_bad_config_values_fail_before_any_work(override, message, tmp_path):
    cfg = compose("improve", ["preset=smoke", f"runs_dir={tmp_path}", override])
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        validate_config(cfg)
    assert not any(tmp_path.iterdir())


def test_bad_config_on_the_command_line_exits_1_with_the_fix(tmp_path):
    result = subprocess.run(_improve_command(tmp_path, "weighting.beta=-1"), capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "weighting.beta must be > 0" in result.stderr and not (tmp_path / "smoke").exists()


def test_resuming_with_a_different_config_is_refused(tmp_path):
    cfg = compose("improve", ["preset=smoke", f"runs_dir={tmp_path}", "name=x"])
    prepare_run(cfg)
    changed = compose("improve", ["preset=smoke", f"runs_dir={tmp_path}", "name=x", "rounds=3"])
    with pytest.raises(ValueError, match=r"different config \(differs in \['rounds'\]\)"):
        prepare_run(changed)
    with pytest.raises(FileExistsError, match="resume=true"):
        prepare_run(compose("improve", ["preset=smoke", f"runs_dir={tmp_path}", "name=x", "resume=false"]))


def test_empty_accepted_set_is_a_reasoned_skip_not_a_silent_round(smoke_run, tmp_path):
    """Nothing accepted: the weight stage says why, and training uses demos only (no autonomous store)."""
    run_dir = shutil.copytree(smoke_run[0], tmp_path / "run")
    cfg = OmegaConf.load(run_dir / "config.yaml")
    cfg.guards.min_accepted_episodes = 10**6
    run = Run(root=run_dir, config=cfg)
    weighted = stages.weight(run, cfg, 3, "r001-labels", verified_only=False)
    assert "trains on demos only" in weighted["skip_reason"]
    label_set = read_label_set(run_dir / "store" / "autonomous", weighted["label_version"])
    assert all(not np.any(f["weight"]) for f in label_set.frame_labels.values())
    assert not stages._uses_autonomous(run, weighted["label_version"])
