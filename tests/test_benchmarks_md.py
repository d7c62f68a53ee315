"""bench/make_benchmarks_md.py: BENCHMARKS.md from a results folder (tables, "not measured yet", unknown files)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "make_benchmarks_md.py"


def load_script():
    spec = importlib.util.spec_from_file_location("make_benchmarks_md", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the script is being executed
    spec.loader.exec_module(module)
    return module


def fake_store_results() -> dict:
    mode = {"image_size": 64, "mode": "image", "episodes": 2, "frames_per_episode": 5,
            "append_latency_s_median": 0.1, "append_latency_s_max": 0.2, "write_frames_per_s": 123.0,
            "read_frames_per_s": 4567.0, "bytes_per_frame": 3000.0, "lossless": True}
    overhead = {"image_size": 64, "episodes": 2, "frames_per_episode": 5, "env_only_s": 1.0,
                "env_with_background_writer_s": 1.05, "final_flush_s": 0.1, "slowdown_fraction": 0.05,
                "submit_ms_per_episode": 1.0, "writer_process_cpu_ms_per_frame": 1.0, "sim_ms_per_frame": 2.0}
    return {"platform": {"cpus": 2, "machine": "x86_64"}, "sim_render_frames_per_s_64px": 400.0,
            "modes": [mode], "collection_overhead": overhead}


def test_known_results_become_a_table_and_missing_ones_say_not_measured(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    (results / "store_throughput.json").write_text(json.dumps(fake_store_results()))
    out = tmp_path / "BENCHMARKS.md"

    assert load_script().main(["--results", str(results), "--out", str(out)]) == 0

    text = out.read_text()
    assert "## Episode store throughput (`robot-si bench store`)" in text
    assert "| 64 | image | 0.100 | 0.200 | 123 | 4,567 | 3,000 | yes |" in text
    assert "| background writing slows collection by at most 10 % | 5.0 % slowdown | met |" in text
    assert "- Machine: 2 CPU cores; x86_64" in text
    # collect_throughput.json is missing: the section says so and gives the command that writes it
    collect = text.split("## Collection throughput")[1].split("\n## ")[0]
    assert "**Not measured yet.** Run `.venv/bin/python bench/collect_throughput.py`" in collect
    assert "(= `robot-si bench collect`)" in collect
    # regenerating gives the same text
    load_script().main(["--results", str(results), "--out", str(tmp_path / "again.md")])
    assert (tmp_path / "again.md").read_text() == text


def test_unknown_and_changed_files_still_show_their_numbers(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    (results / "new_bench.json").write_text(json.dumps({"machine": {"cpus": 2}, "speed": {"steps_per_s": 42.5}}))
    (results / "sim_throughput.json").write_text(json.dumps({"layout": "changed", "steps_per_s": 7}))

    text = load_script().render_markdown(results, tmp_path)

    assert "## new_bench (`bench/results/new_bench.json`)" in text
    assert "| `speed.steps_per_s` | 42.5 |" in text
    assert "no longer has the layout this report knows" in text and "| `steps_per_s` | 7 |" in text


def test_robot_si_bench_lists_the_benchmarks_and_the_report(capsys):
    from robot_si.bench_commands import main

    assert main(["bench"]) == 0
    listing = capsys.readouterr().out
    assert "bench/collect_throughput.py" in listing and "report    bench/make_benchmarks_md.py" in listing


def test_improve_arms_run_by_separate_processes_list_each_arms_command(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    arm = {"round0_success": 0.4, "success_per_round": [0.4, 0.5], "best_success": 0.5, "gain": 0.1,
           "labels_spent": 20, "episodes_collected": 60, "wall_s": 100.0}
    (results / "improve.json").write_text(json.dumps({
        "command": "python bench/improve.py --arms oracle --round0-from learned --merge",
        "commands": {"learned": "python bench/improve.py --arms learned",
                     "oracle": "python bench/improve.py --arms oracle --round0-from learned --merge"},
        "config": {"preset": "default", "overrides": [], "tasks": ["reach"], "rounds": 1},
        "arms": {"learned": arm, "oracle": {**arm, "labels_spent": 60}}, "verdict": {}}))
    out = tmp_path / "BENCHMARKS.md"
    assert load_script().main(["--results", str(results), "--out", str(out)]) == 0
    text = out.read_text()
    assert "- learned: `python bench/improve.py --arms learned`" in text
    assert "- oracle: `python bench/improve.py --arms oracle --round0-from learned --merge`" in text


def test_detector_section_shows_the_headline_run_when_one_is_named():
    script = load_script()
    runs = {"default_config": {"detector_v1": {"version": "a"}}, "variant": {"detector_v1": {"version": "b"}}}
    assert script.detector_run({"runs": runs})["detector"]["version"] == "b"  # no headline: the latest run
    shown = script.detector_run({"runs": runs, "headline": "default_config"})
    assert shown["detector"]["version"] == "a" and "default configuration" in shown["note"]


def test_a_detector_that_accepts_almost_nothing_does_not_meet_the_precision_goal():
    script = load_script()

    def verdicts(accepted, recall):
        audit = {"auc": 0.9, "ece": 0.2, "accepted_but_failed": 0.0, "accepted": accepted, "recall": recall}
        return {v.target: v for v in script.verdict_detector({"audit": {"v1": audit}})}

    trivial = verdicts(3, 0.07)["detector accepted_but_failed <= 0.05"]
    assert trivial.met is False and "only trivially" in trivial.measured
    assert verdicts(40, 0.8)["detector accepted_but_failed <= 0.05"].met is True


def test_improve_verdict_says_when_the_oracle_gained_nothing():
    script = load_script()
    verdicts = script.verdict_improve({"arms": {"learned": {"round0_success": 0.5}},
                                       "verdict": {"fraction_of_oracle_gain": None}})
    assert len(verdicts) == 1 and verdicts[0].met is False and "oracle arm gained nothing" in verdicts[0].measured


def test_improve_section_lists_other_runs_of_the_loop_with_their_commands():
    script = load_script()
    arm = {"round0_success": 0.27, "success_per_round": [0.27, 0.42], "best_success": 0.42, "gain": 0.15}
    data = {"config": {"tasks": ["reach"], "rounds": 1, "preset": "default"}, "arms": {"learned": arm},
            "replicates": {"seed=1": {"note": "another seed", "arms": {"learned": {**arm, "wall_s": 10.0,
                                                                                   "command": "python bench/improve.py seed=1"}}}}}
    text = "\n".join(script.render_improve(data))
    assert "Other runs of the loop" in text and "`python bench/improve.py seed=1`" in text and "+15" in text
    assert "- `seed=1`: another seed" in text
