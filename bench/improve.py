"""The number that matters: does the loop with the learned verifier improve the policy, and by how much next to
its baselines, on the same seeds?

Arms (each a `robot-si improve` run):
- `learned`      the loop as configured: learned verifier + the budgeted oracle labels it asks for;
- `oracle`       the same loop fed ground-truth labels for every episode (labeling budget = all): upper bound;
- `no_filter`    self-training on every collected episode, unfiltered (`weighting.method=no_filter`): collapse baseline;
- `extra_demos`  behaviour cloning only, with as many extra scripted demos as the loop collected episodes.

Round 0 is the same for the first three arms (same config up to round 0), so it is run once and copied.
Writes bench/results/improve.json and prints a Markdown table.

    python bench/improve.py                      # the embedded default (slow: three full loops + one BC run)
    python bench/improve.py --preset smoke       # minutes, to check the script
    python bench/improve.py rounds=2 collect.episodes_per_task=10   # any improve override

Arms can run as separate processes (e.g. two at a time on 2 cores, `--threads 1` each): the first process runs
round 0; later ones copy it with `--round0-from learned` and add their arm to the results with `--merge`:

    python bench/improve.py --arms learned --threads 1
    python bench/improve.py --arms oracle --round0-from learned --merge --threads 1   # once learned's round 0 is done
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from pathlib import Path

import torch

from robot_si.config import compose
from robot_si.improve.loop import run_improve

RESULTS = Path(__file__).resolve().parent / "results" / "improve.json"
ROUND_ZERO_PATHS = ("round_000", "store/demos", "cache")


def arm_overrides(cfg) -> dict[str, list[str]]:
    collected = cfg.rounds * cfg.collect.episodes_per_task
    return {
        "learned": [],
        "oracle": ["labeling.source=oracle", "labeling.budget=1000000"],
        "no_filter": ["weighting.method=no_filter"],
        "extra_demos": ["rounds=0", f"demos.episodes_per_task={cfg.demos.episodes_per_task + collected}"],
    }


def summarize(run_dir: Path, seconds: float) -> dict:
    rounds = json.loads((run_dir / "summary.json").read_text())["rounds"]
    best = json.loads((run_dir / "best.json").read_text())
    start = rounds[0]["success_rate_gt"]
    return {
        "run_dir": str(run_dir),
        "wall_s": round(seconds, 1),
        "success_per_round": [r["success_rate_gt"] for r in rounds],
        "ci_per_round": [r["success_ci"] for r in rounds],
        "success_per_task_final": rounds[-1]["success_per_task"],
        "round0_success": start,
        "best_round": best["best_round"],
        "best_success": best["success_rate_gt"],
        "gain": None if start is None or best["success_rate_gt"] is None else best["success_rate_gt"] - start,
        "detector_auc": [r.get("detector_auc") for r in rounds[1:]],
        "accepted_but_failed": [r.get("accepted_but_failed") for r in rounds[1:]],
        "labels_spent": sum(r.get("labels_spent", 0) for r in rounds),
        "episodes_collected": sum(r.get("episodes_collected", 0) for r in rounds),
        "guard_notes": [n for r in rounds for n in r.get("guard_notes", [])],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--runs-dir", default="bench/runs")
    parser.add_argument("--arms", default="learned,oracle,no_filter,extra_demos")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--round0-from", default=None, metavar="ARM",
                        help="copy round 0 from this arm's finished run dir (an arm run by another process)")
    parser.add_argument("--merge", action="store_true",
                        help="keep the other arms already in --out (same preset, overrides and tasks) and add these")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (two processes on 2 cores: 1)")
    parser.add_argument("overrides", nargs="*", help="improve config overrides, key=value")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    base = [f"preset={args.preset}", f"runs_dir={args.runs_dir}", *args.overrides]
    cfg = compose("improve", base)
    arms = arm_overrides(cfg)
    tag = f"bench-{args.preset}"
    results, first_loop_dir = {}, None
    if args.round0_from:
        first_loop_dir = Path(args.runs_dir) / f"{tag}-{args.round0_from}"
        if not (first_loop_dir / "round_000").is_dir():
            raise SystemExit(f"--round0-from {args.round0_from}: {first_loop_dir}/round_000 does not exist; run that arm first")
    for arm in args.arms.split(","):
        if arm not in arms:
            raise SystemExit(f"unknown arm {arm!r}; choose from {list(arms)}")
        run_dir = Path(args.runs_dir) / f"{tag}-{arm}"
        if first_loop_dir is not None and arm != "extra_demos" and not run_dir.exists():
            for part in ROUND_ZERO_PATHS:  # identical round 0: reuse it (its manifest marks it done)
                if (first_loop_dir / part).exists():
                    shutil.copytree(first_loop_dir / part, run_dir / part)
        print(f"== {arm}: {' '.join(arms[arm]) or '(as configured)'}", flush=True)
        start = time.perf_counter()
        run_improve(compose("improve", [*base, f"name={tag}-{arm}", *arms[arm]]))
        results[arm] = summarize(run_dir, time.perf_counter() - start)
        if arm != "extra_demos" and first_loop_dir is None:
            first_loop_dir = run_dir

    out = Path(args.out)
    config = {"preset": args.preset, "overrides": args.overrides, "tasks": list(cfg.tasks), "rounds": cfg.rounds}
    commands = {arm: "python bench/improve.py " + " ".join(sys.argv[1:] if argv is None else argv) for arm in results}
    if args.merge and out.exists():
        previous = json.loads(out.read_text())
        if previous.get("config") != config:
            raise SystemExit(f"--merge: {out} holds another configuration ({previous.get('config')}); not merging")
        results = {**previous.get("arms", {}), **results}
        commands = {**previous.get("commands", {}), **commands}

    verdict = {}
    if {"learned", "oracle"} <= results.keys():  # None: the oracle arm gained nothing, so the fraction is undefined
        oracle_gain = results["oracle"]["gain"]
        verdict["fraction_of_oracle_gain"] = results["learned"]["gain"] / oracle_gain if oracle_gain else None
    for baseline in ("no_filter", "extra_demos"):
        if {"learned", baseline} <= results.keys():
            verdict[f"beats_{baseline}"] = results["learned"]["best_success"] > results[baseline]["best_success"]
    if "learned" in results and results["learned"]["gain"] is not None:
        verdict["gain_points"] = 100 * results["learned"]["gain"]
        verdict["goal_round0_30_60"] = 0.3 <= results["learned"]["round0_success"] <= 0.6
        verdict["goal_gain_25_points"] = results["learned"]["gain"] >= 0.25
    payload = {
        "command": "python bench/improve.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "commands": commands,
        "machine": {"cpus": torch.get_num_threads(), "platform": platform.platform(), "cuda": torch.cuda.is_available()},
        "config": config,
        "arms": results,
        "verdict": verdict,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2) + "\n")

    print("\n| arm | round 0 | per round | best | gain (points) | labels | wall s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for arm, r in results.items():
        per_round = " → ".join(f"{s:.0%}" for s in r["success_per_round"])
        gain = "—" if r["gain"] is None else f"{100 * r['gain']:+.0f}"
        print(f"| {arm} | {r['round0_success']:.0%} | {per_round} | {r['best_success']:.0%} | {gain} | "
              f"{r['labels_spent']} | {r['wall_s']:.0f} |")
    print(f"\n{json.dumps(verdict)}\n-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
