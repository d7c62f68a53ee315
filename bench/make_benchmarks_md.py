"""Write BENCHMARKS.md from bench/results/*.json: one section per benchmark, its numbers, the command and the target.

    .venv/bin/python bench/make_benchmarks_md.py [--results bench/results] [--out BENCHMARKS.md]
    robot-si bench report

Each known benchmark (see BENCHMARKS below) gets a section with Markdown tables of the measured numbers, the
machine the script recorded, the date, the command that produced it, and its target with an honest verdict;
a known benchmark without results says "not measured yet" with the command to run. Any other `*.json` in the
results folder (written by a script this file does not know yet) gets a generic key/value table, and so does a
known file whose layout no longer matches its renderer. The output depends only on the files (their contents,
and for the date their git commit date or modification time), so regenerating twice gives the same text.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "bench" / "results"
OUT_PATH = REPO_ROOT / "BENCHMARKS.md"
PY = ".venv/bin/python"


# --------------------------------------------------------------------------------------------- formatting helpers
def number(value: Any, digits: int | None = None) -> str:
    """Readable number: thousands separators for big values, a few significant digits for small ones."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if digits is not None:
            return f"{value:,.{digits}f}"
        magnitude = abs(value)
        if magnitude >= 100:
            return f"{value:,.0f}"
        if magnitude >= 10:
            return f"{value:.1f}"
        if magnitude >= 1 or magnitude == 0:
            return f"{value:.2f}"
        return f"{value:.3g}"
    return str(value)


def percent(value: Any, digits: int = 0) -> str:
    return "-" if value is None else f"{100 * value:.{digits}f} %"


def table(header: list[str], rows: list[list[Any]]) -> list[str]:
    def cell(value: Any) -> str:
        text = value if isinstance(value, str) else number(value)
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return lines + [""]


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson interval; the same formula as robot_si.collect.wilson_interval, repeated here so that writing
    this file needs neither mujoco nor torch."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def flatten(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Dotted key -> scalar pairs, in file order; short lists of scalars stay one cell."""
    if isinstance(value, dict):
        if not value and prefix:
            return [(prefix, "{}")]
        pairs = []
        for key, item in value.items():
            pairs += flatten(item, f"{prefix}.{key}" if prefix else str(key))
        return pairs
    if isinstance(value, list):
        if all(not isinstance(item, (dict, list)) for item in value):
            shown = ", ".join(number(item) for item in value[:12])
            return [(prefix, f"[{shown}{', ...' if len(value) > 12 else ''}] ({len(value)})" if len(value) > 12
                     else f"[{shown}]")]
        pairs = []
        for index, item in enumerate(value):
            pairs += flatten(item, f"{prefix}[{index}]")
        return pairs
    return [(prefix, value)]


def generic_tables(data: Any) -> list[str]:
    return table(["key", "value"], [[f"`{key}`", value] for key, value in flatten(data)])


# ------------------------------------------------------------------------------------------------ file metadata
def measured_date(path: Path, data: Any) -> str:
    """The date the numbers were written: a date field in the JSON, else the file's last commit date when it is
    committed unchanged, else its modification time (UTC)."""
    if isinstance(data, dict):
        for key in ("date", "measured_at", "timestamp", "time"):
            value = data.get(key)
            if isinstance(value, str) and len(value) >= 10:
                return f"{value[:10]} (recorded in the JSON)"
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
                day = datetime.datetime.fromtimestamp(value, tz=datetime.timezone.utc).date()
                return f"{day.isoformat()} (recorded in the JSON)"
    try:
        git = ["git", "-C", str(path.parent)]
        dirty = subprocess.run(git + ["status", "--porcelain", "--", path.name], capture_output=True, text=True,
                               check=True, timeout=20).stdout.strip()
        committed = subprocess.run(git + ["log", "-1", "--format=%cs", "--", path.name], capture_output=True,
                                   text=True, check=True, timeout=20).stdout.strip()
        if committed and not dirty:
            return f"{committed} (commit date of `{path.name}`)"
    except (OSError, subprocess.SubprocessError):
        pass  # not a git checkout, or no git: fall back to the file's time
    day = datetime.datetime.fromtimestamp(path.stat().st_mtime, tz=datetime.timezone.utc).date()
    return f"{day.isoformat()} (modification time of `{path.name}`, not committed yet)"


def git_tracked(path: Path) -> bool:
    try:
        return subprocess.run(["git", "-C", str(path.parent), "ls-files", "--error-unmatch", "--", path.name],
                              capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def machine_line(data: Any) -> str:
    """What the script recorded about the machine (the key is `machine` or `platform` depending on the script)."""
    record = {}
    if isinstance(data, dict):
        for key in ("machine", "platform"):
            if isinstance(data.get(key), dict):
                record = {**record, **data[key]}
    parts = []
    cpus = record.get("cpus")
    parts.append(f"{cpus} CPU cores" if cpus else "CPU core count not recorded")
    for key in ("platform", "cpu", "machine", "processor"):
        if isinstance(record.get(key), str) and record[key]:
            parts.append(record[key])
            break
    if record.get("python"):
        parts.append(f"Python {record['python']}")
    if record.get("torch_threads"):
        parts.append(f"{record['torch_threads']} torch threads")
    gpu = record.get("gpu") or record.get("cuda") or record.get("device")
    parts.append(f"GPU: {gpu}" if gpu else "no GPU recorded")
    load = record.get("load_avg_start") or record.get("load_average_1min_at_start")
    if isinstance(load, list) and load:
        load = load[0]
    if isinstance(load, (int, float)):
        parts.append(f"1-min load average {load:.1f} at start (shared machine)")
    return "; ".join(parts)


# ------------------------------------------------------------------------------------------- known benchmarks
@dataclasses.dataclass(kw_only=True)
class Verdict:
    target: str
    measured: str
    met: bool | None  # None: no target, or not decidable from the numbers


@dataclasses.dataclass(kw_only=True)
class Benchmark:
    alias: str  # `robot-si bench <alias>`
    script: str  # bench/<script>.py writes bench/results/<script>.json
    title: str
    what: str
    target: str  # "" when the issue sets none
    render: Callable[[dict], list[str]]
    verdicts: Callable[[dict], list[Verdict]]
    command: Callable[[dict], str] = lambda data: ""

    @property
    def json_name(self) -> str:
        return f"{self.script}.json"

    def default_command(self) -> str:
        return f"`{PY} bench/{self.script}.py` (= `robot-si bench {self.alias}`)"


def render_sim(data: dict) -> list[str]:
    tasks = list(data["env_steps_per_s_64px"])
    expert = data.get("expert_success", {})
    noises = sorted({noise for cells in expert.values() for noise in cells}, key=float)
    rows = []
    for task in tasks:
        cells = [percent(expert.get(task, {}).get(noise, {}).get("success_rate")) for noise in noises]
        rows.append([task, data["physics_steps_per_s"].get(task), data["env_steps_per_s_64px"][task], *cells])
    note = str(data.get("note", ""))
    lines = [f"{note[:1].upper() + note[1:]}. GL backend: `{data.get('gl_backend', '?')}`. "
             f"Expert success over {data.get('episodes_per_cell', '?')} episodes per cell (ground truth).", ""]
    lines += table(["task", "physics steps/s", "env steps/s (64 px)", *[f"expert noise {n}" for n in noises]], rows)
    lines += table(["front render size", "frames/s"], [[f"{size} px", fps]
                                                       for size, fps in data.get("render_fps_front", {}).items()])
    return lines


def verdict_sim(data: dict) -> list[Verdict]:
    rates = data["env_steps_per_s_64px"]
    slowest = min(rates, key=rates.get)
    return [Verdict(target="none set (the ceiling the collection ratio is measured against)",
                    measured=f"env steps/s at 64 px {min(rates.values()):,.0f} ({slowest}) to "
                             f"{max(rates.values()):,.0f} per core", met=None)]


def render_store(data: dict) -> list[str]:
    lines = [f"Simulator for comparison (push, random actions, step + render): "
             f"{number(data.get('sim_render_frames_per_s_64px'))} frames/s at 64 px, "
             f"{number(data.get('sim_render_frames_per_s_96px'))} at 96 px.", ""]
    modes = data.get("modes", [])
    if modes:
        episodes, frames = modes[0].get("episodes"), modes[0].get("frames_per_episode")
        lines += [f"Write/read: {episodes} episodes x {frames} frames per mode.", ""]
        lines += table(["px", "mode", "append latency median (s)", "append latency max (s)", "write frames/s",
                        "read frames/s", "bytes/frame", "lossless"],
                       [[m["image_size"], m["mode"], number(m["append_latency_s_median"], 3),
                         number(m["append_latency_s_max"], 3), m["write_frames_per_s"], m["read_frames_per_s"],
                         m["bytes_per_frame"], m["lossless"]] for m in modes])
    overhead = data.get("collection_overhead")
    if overhead:
        lines += [f"Collection loop with the background writer process ({overhead['image_size']} px, "
                  f"{overhead['episodes']} episodes x {overhead['frames_per_episode']} frames):", ""]
        lines += table(["measure", "value"], [row for row in [
            ["env only (s)", number(overhead["env_only_s"], 2)],
            ["env + background writer (s)", number(overhead["env_with_background_writer_s"], 2)],
            ["wait for the last commits (s)", number(overhead["final_flush_s"], 2)],
            ["slowdown while collecting", percent(overhead["slowdown_during_collection_fraction"], 1)]
            if "slowdown_during_collection_fraction" in overhead else None,
            ["slowdown until every episode is committed", percent(overhead["slowdown_fraction"], 1)],
            ["submit (ms per episode)", number(overhead["submit_ms_per_episode"], 2)],
            ["writer process CPU (ms per frame)", number(overhead["writer_process_cpu_ms_per_frame"], 2)],
            ["simulator (ms per frame)", number(overhead["sim_ms_per_frame"], 2)],
        ] if row is not None])
    view = data.get("training_view")
    if view:
        lines += table(["TrainingView", "frames", "build (s)", "DataLoader frames/s", "workers", "batch"],
                       [["64 px", view["frames"], number(view["build_s"], 2), view["dataloader_frames_per_s"],
                         view["num_workers"], view["batch_size"]]])
    return lines


def verdict_store(data: dict) -> list[Verdict]:
    overhead = data["collection_overhead"]
    slowdown = overhead["slowdown_fraction"]
    why = ""
    if overhead["writer_process_cpu_ms_per_frame"] > overhead["sim_ms_per_frame"]:
        cpus = data.get("platform", {}).get("cpus", "?")
        why = (f" (the writer process spends {overhead['writer_process_cpu_ms_per_frame']:.2f} ms CPU per frame, "
               f"more than the simulator's {overhead['sim_ms_per_frame']:.2f} ms, on {cpus} shared cores)")
    return [Verdict(target="background writing slows collection by at most 10 %",
                    measured=f"{percent(slowdown, 1)} slowdown{why}", met=slowdown <= 0.10)]


def render_collect(data: dict) -> list[str]:
    raw = data["raw_steps_per_s"]
    lines = [f"Policy: {data.get('policy', '?')}. Tasks {data.get('tasks')}, {data.get('steps_per_episode')} steps "
             f"per episode, {data.get('image_size')} px. {data.get('note', '')}", "",
             "`x raw` divides by the raw rate of ONE process; a Ray row with N workers uses N processes, so its "
             "per-process ratio is `x raw / N`. Phase columns are seconds summed over the run (over all workers "
             "for Ray).", ""]
    rows = [["raw physics + render (one process, no policy)", raw, "1.00", "-", "-", "-", "-", "-"]]
    for row in data["rows"]:
        phases = row.get("phase_s", {})
        prefix = "workers_" if row.get("backend") == "ray" else ""
        processes = row.get("num_workers", 1) if row.get("backend") == "ray" else 1
        rows.append([row["setup"], row["steps_per_s"], number(row["ratio_to_raw"], 2),
                     number(row["ratio_to_raw"] / processes, 2), number(row.get("mean_forward_batch"), 1),
                     number(phases.get(prefix + "inference_s"), 2), number(phases.get(prefix + "env_step_s"), 2),
                     number(phases.get(prefix + "render_s"), 2)])
    lines += table(["setup", "env steps/s", "x raw", "x raw per process", "mean forward batch", "inference s",
                    "env step s", "render s"], rows)
    if "ray_2_over_1" in data:
        lines += [f"Ray scaling, 2 workers / 1 worker: {data['ray_2_over_1']:.2f}x.", ""]
    return lines


def verdict_collect(data: dict) -> list[Verdict]:
    rows = data["rows"]
    local = [r for r in rows if r.get("backend") == "local"]
    ray = [r for r in rows if r.get("backend") == "ray"]
    best_local = max(local, key=lambda r: r["ratio_to_raw"]) if local else None
    measured = []
    if best_local:
        measured.append(f"best single process {best_local['ratio_to_raw']:.2f}x ({best_local['setup']})")
    if ray:
        best_ray = max(ray, key=lambda r: r["ratio_to_raw"])
        workers = best_ray.get("num_workers", 1)
        measured.append(f"best Ray {best_ray['ratio_to_raw']:.2f}x ({best_ray['setup']}), but that is {workers} "
                        f"processes against one raw process: {best_ray['ratio_to_raw'] / workers:.2f}x per process")
    met = best_local["ratio_to_raw"] >= 0.7 if best_local else None
    verdicts = [Verdict(target="collection with the policy in the loop reaches >= 0.7x raw sim throughput",
                        measured="; ".join(measured), met=met)]
    if data.get("ray_2_over_1") is not None:
        verdicts.append(Verdict(target="2 Ray workers >= 1.6x one worker (2 cores)",
                                measured=f"{data['ray_2_over_1']:.2f}x", met=data["ray_2_over_1"] >= 1.6))
    return verdicts


def command_policy(data: dict) -> str:
    bc = data.get("behaviour_cloning")
    args = []
    if bc:
        tasks = [t["task"] for t in bc.get("tasks", [])]
        demos = bc["tasks"][0].get("demos") if bc.get("tasks") else None
        episodes = bc["tasks"][0].get("episodes") if bc.get("tasks") else None
        if tasks and tasks != ["reach"]:
            args += ["--tasks", *tasks]
        if demos not in (None, 30):
            args += ["--demos", str(demos)]
        if bc.get("train_steps") not in (None, 2000):
            args += ["--steps", str(bc["train_steps"])]
        if episodes not in (None, 20):
            args += ["--eval-episodes", str(episodes)]
        if bc.get("state_indices") is not None:  # the script's default is every state entry (the policy default)
            args += ["--state-indices", *map(str, bc["state_indices"])]
        if bc.get("image_pooling") not in (None, "multiscale"):
            args += ["--image-pooling", bc["image_pooling"]]
    tail = (" " + " ".join(args)) if args else ""
    return (f"`{PY} bench/policy.py{tail}` (= `robot-si bench policy{tail}`; arguments read back from the JSON, "
            "which keeps the last speed and BC sections of partial `--skip-*` runs)")


def render_policy(data: dict) -> list[str]:
    lines = [f"Policy: {data.get('policy', '?')}.", ""]
    if "training_speed" in data:
        lines += table(["training (CPU, 64 px)", "batch", "steps timed", "samples/s", "trainable params",
                        "feature cache (s)"],
                       [[r["setup"], r["batch_size"], r["steps"], r["samples_per_s"],
                         f"{r['trainable_parameters'] / 1e6:.2f} M", number(r.get("feature_cache_s"), 2)]
                        for r in data["training_speed"]])
    if "inference_latency" in data:
        lines += table(["inference (`predict_action_chunk`, CPU)", "median ms", "p90 ms"],
                       [[f"batch {r['batch_size']}", number(r["median_ms"], 1), number(r["p90_ms"], 1)]
                        for r in data["inference_latency"]])
    bc = data.get("behaviour_cloning")
    if bc:
        lines += [f"Behaviour cloning from scripted demos: {bc['demo_frames']:,} demo frames, {bc['train_steps']:,} "
                  f"steps in {bc['train_wall_s']:.0f} s ({bc['train_samples_per_s']:,.0f} samples/s, feature cache "
                  f"{bc.get('feature_cache_s', '?')} s), final loss {bc['final_loss']}; state indices "
                  f"{bc.get('state_indices')}, image pooling `{bc.get('image_pooling')}`. Success is ground truth "
                  "on held-out seeds.", ""]
        rows = []
        for task in bc["tasks"]:
            successes = round(task["success_rate"] * task["episodes"])
            low, high = wilson(successes, task["episodes"])
            rows.append([task["task"], task["demos"], f"{successes}/{task['episodes']}", percent(task["success_rate"]),
                         f"{percent(low)} - {percent(high)}", number(task.get("mean_length"), 1)])
        lines += table(["task", "demos", "successes", "success", "95 % Wilson interval", "mean length"], rows)
    if data.get("notes"):
        lines += ["Notes recorded with the results:", ""] + [f"- {note}" for note in data["notes"]] + [""]
    return lines


def verdict_policy(data: dict) -> list[Verdict]:
    bc = data.get("behaviour_cloning")
    if not bc:
        return [Verdict(target="BC success >= 80 % per task", measured="no BC section in the JSON", met=None)]
    return [Verdict(target=f"BC from scripted demos, {task['task']}: >= 80 % success",
                    measured=f"{percent(task['success_rate'])} over {task['episodes']} held-out episodes "
                             f"({task['demos']} demos)", met=task["success_rate"] >= 0.8)
            for task in bc["tasks"]]


def detector_run(data: dict) -> dict:
    """The run to show: the file's only run, or (multi-run layout `{"runs": {label: run}}`) the one named by
    `"headline"` (the run of the default configuration), else the last one added."""
    runs = data.get("runs")
    if not isinstance(runs, dict) or not runs:
        return data
    label = data.get("headline") if data.get("headline") in runs else list(runs)[-1]
    run = runs[label]
    which = "the default configuration's run" if label == data.get("headline") else "the latest"
    note = (f"Run `{label}`, {which} of {len(runs)} in the JSON ({', '.join(f'`{r}`' for r in runs)}); "
            "bench/NOTES_verify.md compares them.")
    return {**run, "detector": run.get("detector_v1", {}), "note": note}


def final_audit(data: dict) -> tuple[str, dict]:
    audits = data["audit"]
    version = data.get("detector", {}).get("version")
    for name, audit in audits.items():
        if audit.get("detector_version") == version:
            return name, audit
    name = list(audits)[-1]
    return name, audits[name]


def render_detector(data: dict) -> list[str]:
    data = detector_run(data)
    lines = [f"Tasks {data.get('tasks')}; encoder: {data.get('encoder', '?')}.", ""]
    setup = data.get("data", {})
    if setup:
        pool, heldout = setup.get("labelled_pool") or {}, setup.get("heldout_audit") or {}
        other = setup.get("other_policies_audit") or {}
        lines += [f"Data: {setup.get('demos_per_task')} demos per task; mediocre policy: {setup.get('mediocre_policy')}; "
                  f"labelled pool {pool.get('episodes')} episodes, oracle budget {setup.get('oracle_budget')} "
                  f"({setup.get('oracle_labels_spent')} spent); held-out audit {heldout.get('episodes')} episodes"
                  + (f"; other policies {other.get('episodes')} episodes ({other.get('policies')})" if other else "")
                  + ".", ""]
    metrics = ["episodes", "ground_truth_success_rate", "threshold", "accepted", "auc", "precision", "recall",
               "accepted_but_failed", "ece", "brier"]
    audits = data.get("audit", {})
    lines += ["Audit on the held-out rollouts (ground truth used only here):", ""]
    lines += table(["detector", *metrics, "meets goals (auc / accepted_but_failed / ece)"],
                   [[f"`{name}`", *[a.get(m) for m in metrics],
                     " / ".join(number(v) for v in a.get("meets_goals", {}).values()) or "-"]
                    for name, a in audits.items()])
    name, audit = final_audit(data)
    if audit.get("per_task"):
        lines += [f"Per task, `{name}`:", ""]
        lines += table(["task", *metrics[:2], *metrics[3:]],
                       [[task, *[row.get(m) for m in metrics[:2]], *[row.get(m) for m in metrics[3:]]]
                        for task, row in sorted(audit["per_task"].items())])
    sources = setup.get("training_examples_by_source")
    if sources:
        lines += table(["training examples by source", "positive", "negative"],
                       [[source, counts.get("positive"), counts.get("negative")] for source, counts in sources.items()])
    calibration = data.get("detector", {}).get("holdout_calibration")
    if calibration:
        lines += [f"Operating threshold {calibration['threshold']:.3f} chosen for precision >= "
                  f"{percent(calibration['target_precision'])} on the calibration holdout: precision "
                  f"{calibration['precision']:.2f}, recall {calibration['recall']:.2f} with "
                  f"{calibration['accepted']} accepted (temperature {data['detector'].get('temperature', 0):.2f}).",
                  ""]
    if data.get("timings_s"):
        lines += ["Timings (s): " + ", ".join(f"{k} {v}" for k, v in data["timings_s"].items()) + ".", ""]
    if data.get("note"):
        lines += [f"Note recorded with the results: {data['note']}", ""]
    return lines


MIN_RECALL_FOR_PRECISION = 0.5  # below it, a low accepted-but-failed rate says the detector accepts almost nothing


def verdict_detector(data: dict) -> list[Verdict]:
    data = detector_run(data)
    name, audit = final_audit(data)
    goals = audit.get("goals", {"auc": 0.95, "accepted_but_failed": 0.05, "ece": 0.05})
    meets = audit.get("meets_goals", {})
    verdicts = []
    for metric, goal in goals.items():
        comparison = ">=" if metric == "auc" else "<="
        value = audit.get(metric)
        met = meets.get(metric)
        if met is None and value is not None:
            met = value >= goal if comparison == ">=" else value <= goal
        extra = ""
        if metric == "accepted_but_failed":
            recall = audit.get("recall")
            extra = f" ({audit.get('accepted')} accepted, recall {number(recall)})"
            if met and (recall is None or recall < MIN_RECALL_FOR_PRECISION):
                # accepting almost nothing trivially keeps failures out; that is not the precision the goal asks for
                met, extra = False, extra + f": recall below {MIN_RECALL_FOR_PRECISION}, the goal is met only trivially"
        verdicts.append(Verdict(target=f"detector {metric} {comparison} {goal}",
                                measured=f"{number(value)}{extra}, `{name}`", met=met))
    return verdicts


def render_improve(data: dict) -> list[str]:
    arms = data.get("arms")
    if not isinstance(arms, dict):
        return generic_tables(data)
    config = data.get("config", {})
    lines = [f"Tasks {', '.join(config.get('tasks', []))}, {config.get('rounds')} rounds, preset "
             f"`{config.get('preset')}`{' with ' + ' '.join(config.get('overrides', [])) if config.get('overrides') else ''}; "
             "held-out seeds and instruction paraphrases, ground truth.", ""]
    rows = []
    for arm, r in arms.items():
        per_round = " → ".join(percent(s) for s in r.get("success_per_round", []))
        gain = r.get("gain")
        rows.append([arm, percent(r.get("round0_success")), per_round, percent(r.get("best_success")),
                     "—" if gain is None else f"{100 * gain:+.0f}", r.get("labels_spent", 0),
                     r.get("episodes_collected", 0), number(r.get("wall_s"))])
    lines += table(["arm", "round 0", "success per round", "best", "gain (points)", "labels", "episodes collected",
                    "wall s"], rows)
    commands = data.get("commands") or {}
    if len(set(commands.values())) > 1:  # arms run as separate processes (--merge): each arm's own command
        lines += ["Commands per arm:", ""] + [f"- {arm}: `{command}`" for arm, command in commands.items()] + [""]
    replicates = data.get("replicates") or {}
    if replicates:  # other runs of the loop (another seed, timed alone): each arm with its own command
        rows = [[f"`{name}`", arm, " → ".join(percent(s) for s in r.get("success_per_round", [])),
                 "—" if r.get("gain") is None else f"{100 * r['gain']:+.0f}", number(r.get("wall_s")), f"`{r.get('command', '')}`"]
                for name, replicate in replicates.items() for arm, r in (replicate.get("arms") or {}).items()]
        lines += ["Other runs of the loop:", "", *table(["run", "arm", "success per round", "gain (points)", "wall s", "command"], rows)]
        lines += [f"- `{name}`: {replicate['note']}" for name, replicate in replicates.items() if replicate.get("note")] + [""]
    if data.get("notes"):
        lines += ["Notes recorded with the results:", ""] + [f"- {note}" for note in data["notes"]] + [""]
    return lines


def verdict_improve(data: dict) -> list[Verdict]:
    verdict = data.get("verdict") or {}
    learned = (data.get("arms") or {}).get("learned", {})
    out = []
    if "goal_round0_30_60" in verdict:
        out.append(Verdict(target="round-0 success in 30-60 %", measured=percent(learned.get("round0_success")),
                           met=verdict["goal_round0_30_60"]))
    if "gain_points" in verdict:
        out.append(Verdict(target="learned-verifier loop gains >= 25 points in 3 rounds",
                           measured=f"{verdict['gain_points']:+.0f} points", met=verdict.get("goal_gain_25_points")))
    if "fraction_of_oracle_gain" in verdict:
        fraction = verdict["fraction_of_oracle_gain"]
        measured = "undefined: the oracle arm gained nothing" if fraction is None else percent(fraction)
        out.append(Verdict(target=">= 80 % of the oracle loop's gain", measured=measured, met=fraction is not None and fraction >= 0.8))
    for baseline in ("no_filter", "extra_demos"):
        if f"beats_{baseline}" in verdict:
            out.append(Verdict(target=f"beats the {baseline} baseline", measured=str(verdict[f"beats_{baseline}"]),
                               met=verdict[f"beats_{baseline}"]))
    return out


def render_bc_generalization(data: dict) -> list[str]:
    rows = []
    for name, run in (data.get("runs") or {}).items():
        overall = run.get("eval", {}).get("overall", {})
        per_task = run.get("eval", {}).get("per_task", {})
        rows.append([f"`{name}`", run.get("demos_per_task"), (run.get("train") or {}).get("steps"),
                     number(run.get("train_wall_s")), percent(overall.get("success_rate")),
                     ", ".join(f"{task} {percent(v.get('success_rate'))}" for task, v in per_task.items()),
                     overall.get("n"), f"`{run.get('command', '')}`"])
    return ["Round-0 BC on new env seeds, one row per named variant (bench/NOTES_policy.md explains them).", "",
            *table(["run", "demos/task", "train steps", "train s", "overall", "per task", "episodes", "command"], rows)]


BENCHMARKS = [
    Benchmark(alias="sim", script="sim_throughput", title="Simulator throughput and scripted experts",
              what="physics and render rates of the task suite, one core; expert success per noise level",
              target="", render=render_sim, verdicts=verdict_sim),
    Benchmark(alias="store", script="store_throughput", title="Episode store throughput",
              what="write/read frames/s, append latency, image vs video, TrainingView rate, background-writer overhead",
              target="background writing costs collection at most 10 %", render=render_store,
              verdicts=verdict_store),
    Benchmark(alias="collect", script="collect_throughput", title="Collection throughput",
              what="env steps/s with the compact VLA in the loop (local Collector, Ray workers, inference server)",
              target=">= 0.7x raw sim throughput", render=render_collect, verdicts=verdict_collect),
    Benchmark(alias="policy", script="policy", title="Policy: training speed, latency, behaviour cloning",
              what="CompactVLA training samples/s, inference latency, BC success from scripted demos",
              target=">= 80 % BC success on reach", render=render_policy, verdicts=verdict_policy,
              command=command_policy),
    Benchmark(alias="bc", script="bc_generalization", title="Round-0 behaviour cloning on new seeds",
              what="success of BC from scripted demos on held-out seeds and paraphrases, per variant",
              target="", render=render_bc_generalization, verdicts=lambda data: []),
    Benchmark(alias="detector", script="detector", title="Learned success detector",
              what="AUC, accepted-but-failed and calibration of the detector on rollouts of unseen policies",
              target="AUC >= 0.95, accepted-but-failed <= 5 %, ECE <= 0.05", render=render_detector,
              verdicts=verdict_detector,
              command=lambda data: f"`{detector_run(data)['command']}`" if detector_run(data).get("command") else ""),
    Benchmark(alias="improve", script="improve", title="Self-improvement loop",
              what="held-out success per round: learned-verifier loop vs oracle labels, no filter, extra demos",
              target="+25 points in 3 rounds from 30-60 %, >= 80 % of the oracle gain, beats both baselines",
              render=render_improve, verdicts=verdict_improve,
              command=lambda data: f"`{data['command']}`" if data.get("command") else ""),
]


# ---------------------------------------------------------------------------------------------------- assembly
def load(path: Path) -> tuple[Any, str | None]:
    try:
        return json.loads(path.read_text()), None
    except (OSError, ValueError) as error:
        return None, f"{type(error).__name__}: {error}"


def status_word(met: bool | None) -> str:
    return {True: "met", False: "**falls short**", None: "-"}[met]


def known_section(spec: Benchmark, path: Path, present: bool) -> tuple[list[str], list[Verdict]]:
    lines = [f"## {spec.title} (`robot-si bench {spec.alias}`)", "", f"What: {spec.what}.", ""]
    if not present:
        lines += [f"**Not measured yet.** Run {spec.default_command()}; it writes `bench/results/{spec.json_name}`"
                  + (f". Target: {spec.target}." if spec.target else "."), ""]
        return lines, [Verdict(target=spec.target or "none set", measured="not measured yet", met=None)]
    data, error = load(path)
    command = (spec.command(data) if isinstance(data, dict) else "") or spec.default_command()
    lines += [f"- Command: {command}", f"- Date: {measured_date(path, data)}", f"- Machine: {machine_line(data)}",
              f"- Results: `bench/results/{spec.json_name}`"]
    if error:
        return lines + ["", f"Could not read the results: {error}.", ""], []
    try:
        verdicts = spec.verdicts(data)
        body = spec.render(data)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, ZeroDivisionError) as problem:
        # The script's JSON layout moved on since this renderer was written: show every number rather than none.
        lines += ["", f"(The JSON no longer has the layout this report knows ({type(problem).__name__}: {problem}); "
                      "all its values follow. Update the renderer in bench/make_benchmarks_md.py.)", ""]
        return lines + generic_tables(data), [Verdict(target=spec.target or "none set",
                                                      measured="see section (unknown layout)", met=None)]
    if spec.target:
        lines.append(f"- Target (from the issue): {spec.target}")
    lines.append("")
    if verdicts and spec.target:
        lines += table(["target", "measured", "status"], [[v.target, v.measured, status_word(v.met)] for v in verdicts])
    return lines + body, verdicts


def figure_links(results_dir: Path, out_dir: Path, script: str) -> list[str]:
    pictures = sorted(results_dir.glob(f"{script}_*.png"))
    if not pictures:
        return []
    links = []
    for picture in pictures:
        try:
            link = picture.resolve().relative_to(out_dir.resolve()).as_posix()
        except ValueError:
            link = picture.name
        links.append(f"[{picture.stem}]({link})")
    return ["Figures: " + ", ".join(links) + ".", ""]


def render_markdown(results_dir: Path, out_dir: Path | None = None, *, tracked_only: bool = False) -> str:
    """The whole BENCHMARKS.md text. `tracked_only` ignores results files git does not track (someone's run in
    progress), so a committed report matches the committed results."""
    results_dir = Path(results_dir)

    def present(path: Path) -> bool:
        return path.exists() and (not tracked_only or git_tracked(path))

    out_dir = Path(out_dir) if out_dir is not None else REPO_ROOT
    lines = ["# Benchmarks", "",
             "Generated by `robot-si bench report` (`bench/make_benchmarks_md.py`) from `bench/results/*.json`; "
             "do not edit by hand, rerun a benchmark and regenerate. Unless a section records otherwise, the numbers "
             "come from a shared virtual machine with 2 CPU cores and no GPU while other jobs ran on it, so they are "
             "conservative and noisy (the load average at start is shown where the script records it).", ""]
    summary, sections = [], []
    known = set()
    for spec in BENCHMARKS:
        path = results_dir / spec.json_name
        known.add(spec.json_name)
        section, verdicts = known_section(spec, path, present(path))
        if present(path):
            section += figure_links(results_dir, out_dir, spec.script)
        sections.append(section)
        for verdict in verdicts or [Verdict(target=spec.target or "none set", measured="see section", met=None)]:
            summary.append([f"[{spec.alias}](#{anchor(spec)})", verdict.target, verdict.measured,
                            status_word(verdict.met)])
    for path in sorted(results_dir.glob("*.json")):
        if path.name in known or not present(path):
            continue
        data, error = load(path)
        section = [f"## {path.stem} (`bench/results/{path.name}`)", "",
                   "A results file this report has no renderer for; all its values:", "",
                   f"- Date: {measured_date(path, data)}", f"- Machine: {machine_line(data)}", ""]
        section += [f"Could not read the results: {error}.", ""] if error else generic_tables(data)
        sections.append(section)
        summary.append([path.stem, "-", "see section", "-"])
    lines += ["## Summary", ""]
    lines += table(["benchmark", "target", "measured", "status"], summary)
    for section in sections:
        lines += section
    return "\n".join(lines).rstrip() + "\n"


def anchor(spec: Benchmark) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    heading = f"{spec.title} robot-si bench {spec.alias}".lower()
    kept = "".join(ch for ch in heading if ch.isalnum() or ch in " -_")
    return kept.replace(" ", "-")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", default=str(RESULTS_DIR), help="folder of *.json results")
    parser.add_argument("--out", default=str(OUT_PATH), help="Markdown file to write")
    parser.add_argument("--tracked-only", action="store_true",
                        help="ignore results files git does not track (runs in progress), e.g. before committing")
    args = parser.parse_args(argv)
    results_dir, out = Path(args.results), Path(args.out)
    if not results_dir.is_dir():
        raise FileNotFoundError(f"results folder {results_dir} not found; pass --results DIR or run a benchmark "
                                "first (robot-si bench sim, ...)")
    text = render_markdown(results_dir, out.parent, tracked_only=args.tracked_only)
    out.write_text(text)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
