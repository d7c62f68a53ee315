"""Benchmark: does the learned success detector tell success from failure on a policy it never saw?

Recipe (no ground truth in training except the budgeted oracle labels):
1. scripted demos at noise 0 (positives: demo ends; negatives: "not yet" prefixes, relabeled instructions);
2. detector v0 on demos; rollouts of a noisy expert (noise 0.7) are labelled by the detector, and an oracle
   budget is spent on the ones nearest the operating threshold (active selection);
3. detector v1 retrained on demos + the oracle-labelled rollouts; progress model on demos + labelled rollouts;
4. audit on held-out rollouts from DIFFERENT policies (expert at noise 0.3 and 1.0, other seeds, held-out
   instruction paraphrases): ROC-AUC, accepted-but-failed at the operating threshold, ECE, per task.

Writes bench/results/detector.json, bench/results/detector_{reliability,roc}.png and prints a Markdown table.

    robot-si bench detector [--tasks reach button ...] [--demos 10] [--rollouts 10] [--heldout 12] [--budget 20]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["reach", "button", "push", "drawer", "pick_place", "stack"])
    parser.add_argument("--demos", type=int, default=10, help="scripted demos per task (noise 0)")
    parser.add_argument("--rollouts", type=int, default=10, help="noisy-expert rollouts per task for oracle labels")
    parser.add_argument("--heldout", type=int, default=12, help="held-out rollouts per task per held-out policy")
    parser.add_argument("--budget", type=int, default=20, help="oracle labels spent on the training rollouts")
    parser.add_argument("--encoder", default="default", help="default (EfficientNet-Lite0 + MiniLM) | hashing")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--workdir", default="/tmp/robot_si_bench_detector")
    parser.add_argument("--fresh", action="store_true", help="delete the workdir's stores first")
    parser.add_argument("--out", default=str(RESULTS / "detector.json"))
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from robot_si.data import EpisodeStore
    from robot_si.data.demos import record_demos
    from robot_si.verify import DetectorConfig, OracleLabelSource, ProgressConfig, ProgressModel, SuccessDetector, label_store
    from robot_si.verify.audit import audit_detector, plot_audit
    from robot_si.verify.features import make_encoders
    from robot_si.verify.labeler import labelling_summary
    from robot_si.verify.testing import record_expert_rollouts

    workdir = Path(args.workdir)
    if args.fresh and workdir.exists():
        shutil.rmtree(workdir)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    record_demos(args.tasks, episodes_per_task=args.demos, root=workdir / "demos", noise=0.0, seed=0, progress=False)
    demos = EpisodeStore(workdir / "demos")

    def open_store(name):
        return EpisodeStore.open_or_create(workdir / name, fps=demos.spec.fps, image_size=demos.spec.image_height,
                                           state_dim=demos.spec.state_dim, action_dim=demos.spec.action_dim)

    rollouts = open_store("rollouts")
    record_expert_rollouts(rollouts, args.tasks, noise=0.7, seeds=range(1000, 1000 + args.rollouts), round=1)
    heldout = open_store("heldout")
    for noise in (0.3, 1.0):
        record_expert_rollouts(heldout, args.tasks, noise=noise, seeds=range(5000, 5000 + args.heldout), round=1,
                               instruction_split="heldout")
    timings["record_s"] = time.perf_counter() - start

    start = time.perf_counter()
    encoders = make_encoders(args.encoder)
    config = DetectorConfig(encoder=args.encoder, epochs=args.epochs)
    detector_v0 = SuccessDetector(config, encoders=encoders)
    detector_v0.fit_stores([demos])
    progress_v0 = ProgressModel(ProgressConfig(encoder=args.encoder), feature_cache=detector_v0.feature_cache)
    progress_v0.fit_stores([demos])
    oracle = OracleLabelSource(budget=args.budget)
    version = label_store(rollouts, detector_v0, progress_v0, label_source=oracle, round=1)
    summary = labelling_summary(rollouts.root, version)
    timings["detector_v0_and_label_s"] = time.perf_counter() - start

    start = time.perf_counter()
    detector = SuccessDetector(DetectorConfig(encoder=args.encoder, epochs=args.epochs), feature_cache=detector_v0.feature_cache)
    train_report = detector.fit_stores([demos, rollouts], label_version=version)
    progress = ProgressModel(ProgressConfig(encoder=args.encoder), feature_cache=detector.feature_cache)
    progress_report = progress.fit_stores([demos, rollouts], label_version=version)
    timings["detector_v1_train_s"] = time.perf_counter() - start

    start = time.perf_counter()
    audits = {
        "v0_demos_only": audit_detector(heldout, detector_v0),
        "v1_demos_plus_oracle": audit_detector(heldout, detector, out_dir=RESULTS),
    }
    timings["audit_s"] = time.perf_counter() - start
    plot_audit(audits["v0_demos_only"], RESULTS, prefix="detector_v0")
    for audit in audits.values():
        audit.pop("roc_curve", None)

    result = {
        "command": "robot-si bench detector " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine()},
        "tasks": args.tasks,
        "encoder": encoders.name,
        "data": {
            "demos_per_task": args.demos, "oracle_rollouts_per_task": args.rollouts, "oracle_budget": args.budget,
            "oracle_labels_spent": oracle.spent, "heldout_per_task_per_policy": args.heldout,
            "heldout_policies": ["expert noise 0.3", "expert noise 1.0"], "heldout_instructions": "paraphrases (heldout split)",
            "training_examples_by_source": train_report["examples_by_source"],
        },
        "label_round": {k: v for k, v in summary.items() if k != "labelled_sample"},
        "detector": {"version": detector.version, "temperature": detector.temperature, "threshold": detector.threshold,
                     "holdout_calibration": train_report.get("threshold")},
        "progress": progress_report,
        "audit": audits,
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result))
    return result


def markdown(result: dict) -> str:
    def fmt(value, spec=".3f"):
        return "—" if value is None else format(value, spec)

    lines = [
        f"Success detector audit on held-out rollouts ({', '.join(result['data']['heldout_policies'])}; "
        f"held-out paraphrases), encoder {result['encoder']}.",
        "",
        "| detector | task | episodes | GT success | AUC | accepted | accepted-but-failed | recall | ECE |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, audit in result["audit"].items():
        rows = [("all", audit)] + list(audit.get("per_task", {}).items())
        for task, m in rows:
            lines.append(
                f"| {name} | {task} | {m['episodes']} | {fmt(m['ground_truth_success_rate'], '.0%')} | {fmt(m['auc'])} | "
                f"{m['accepted']} | {fmt(m['accepted_but_failed'], '.1%')} | {fmt(m['recall'], '.0%')} | {fmt(m['ece'])} |"
            )
    lines += ["", "Goals: AUC >= 0.95, accepted-but-failed <= 5 %, ECE <= 0.05. Timings (s): "
              + ", ".join(f"{k} {v}" for k, v in result["timings_s"].items())]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
