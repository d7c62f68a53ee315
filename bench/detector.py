"""Benchmark: does the learned success detector tell success from failure on rollouts of a mediocre policy?

Recipe, as `robot-si improve` runs it (no ground truth in training except the budgeted oracle labels):
1. scripted demos at noise 0 (`robot_si.data.record_demos`): positives are demo ends; negatives are "not yet"
   prefixes and relabeled instructions;
2. autonomous-like episodes with mixed success: the scripted expert at noise 0.3 / 0.45 / 0.6 (`--noises`;
   roughly 25-90 % success per task, longer when failing) stands in for a round's mediocre policy;
3. detector v0 (demos only; the verifier's default config, configs/verifier/default.yaml, as the loop and
   `robot-si detector train` use it, then `--detector` overrides) labels those episodes and an oracle budget (`--budget`, 20) is spent
   by active selection (`--strategy`: nearest its operating threshold, or `mixed` with a stratified sample),
   exactly like the loop's label stage;
4. detector v1 retrained on demos + the oracle-labelled episodes (the next round's verifier);
5. audit against ground truth on held-out episodes of the same mediocre policy (other seeds) — the primary
   number — and on other policies (expert at noise 0.3 and 1.0) with held-out instruction paraphrases:
   ROC-AUC, accepted-but-failed at the operating threshold, ECE, per task. The label version's own decisions
   (detector + oracle overrides) are audited too.

Writes `--out` (bench/results/detector.json), bench/results/detector_{reliability,roc}.png and prints Markdown.

    python bench/detector.py [--tasks reach button ...] [--demos 10] [--rollouts 6] [--heldout 8] [--budget 20]
        [--seed 0] [--strategy mixed|threshold] [--labelled-weight W] [--threads 1]
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
ALL_TASKS = ["reach", "button", "push", "drawer", "pick_place", "stack"]


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=ALL_TASKS)
    parser.add_argument("--demos", type=int, default=10, help="scripted demos per task (noise 0)")
    parser.add_argument("--near-miss", type=int, default=0,
                        help="the demonstrator's deliberate failures per task (source near_miss), verifier negatives; "
                             "kept in their own store in the workdir so runs without them are unchanged")
    parser.add_argument("--noises", type=float, nargs="+", default=[0.3, 0.45, 0.6],
                        help="expert noise levels of the mediocre 'policy' (its rollouts succeed 25-90 %% of the time)")
    parser.add_argument("--rollouts", type=int, default=6, help="labelled-pool rollouts per task per noise level")
    parser.add_argument("--heldout", type=int, default=8, help="audit rollouts per task per noise level (other seeds)")
    parser.add_argument("--other-policies", type=int, default=6,
                        help="audit rollouts per task of expert noise 0.3 and 1.0 on held-out paraphrases (0: skip)")
    parser.add_argument("--budget", type=int, default=20, help="oracle labels spent on the labelled pool")
    parser.add_argument("--encoder", default="default",
                        help="default (pooled EfficientNet-Lite0 + MiniLM) | spatial (+ pixel/stride-16 maps) | hashing")
    parser.add_argument("--cameras", nargs="+", default=["front"],
                        help="cameras every store records (the detector reads those in --detector cameras=[...])")
    parser.add_argument("--workdir", default="/tmp/robot_si_bench_detector")
    parser.add_argument("--fresh", action="store_true", help="delete the workdir's stores first")
    parser.add_argument("--label", default="current", help="name of this run in the results file (e.g. before/after)")
    parser.add_argument("--out", default=str(RESULTS / "detector.json"))
    parser.add_argument("--plots", action="store_true", help="write the v1 reliability/ROC PNGs to bench/results")
    parser.add_argument("--seed", type=int, default=0, help="detector seed (v0 and v1) and the selection's sampling seed")
    parser.add_argument("--strategy", default="mixed", help="active selection: mixed (the loop's) | threshold | uncertainty | random")
    parser.add_argument("--random-share", type=float, default=0.5, help="mixed: share of the budget sampled (stratified)")
    parser.add_argument("--labelled-weight", type=float, default=None,
                        help="v1 DetectorConfig.labelled_episode_weight (default: the config's default)")
    parser.add_argument("--detector", nargs="*", default=[], metavar="KEY=VALUE",
                        help="DetectorConfig overrides for v0 and v1, e.g. use_terminal_frame=true keypoints=0")
    parser.add_argument("--dump-scores", default=None, metavar="JSON",
                        help="write every audited episode's raw logit, task and ground truth (v0 and v1) and v1's "
                             "out-of-fold calibration logits here, for calibration diagnostics")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (shared machines: 1)")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    from robot_si.data import EpisodeStore
    from robot_si.data.demos import record_demos
    from robot_si.verify import DetectorConfig, OracleLabelSource, SuccessDetector, label_store
    from robot_si.verify.audit import audit_detector, audit_label_set, plot_audit
    from robot_si.verify.features import FeatureCache, make_encoders
    from robot_si.verify.labeler import labelling_summary
    from robot_si.verify.testing import record_expert_rollouts

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from omegaconf import OmegaConf

    from robot_si.config import compose

    overrides = _parse_overrides(args.detector)
    # the detector the loop trains (configs/verifier/default.yaml), not the dataclass defaults
    base = {**OmegaConf.to_container(compose("detector", []).verifier.detector, resolve=True), "seed": args.seed}
    overrides_v0 = {**base, **overrides}
    v1_overrides = {**overrides_v0, **({} if args.labelled_weight is None else {"labelled_episode_weight": args.labelled_weight})}
    workdir = Path(args.workdir)
    if args.fresh and workdir.exists():
        shutil.rmtree(workdir)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    cameras = tuple(args.cameras)
    record_demos(args.tasks, episodes_per_task=args.demos, root=workdir / "demos", noise=0.0, seed=0, progress=False,
                 cameras=cameras)
    demos = EpisodeStore(workdir / "demos")
    demo_stores = [demos]
    if args.near_miss:
        record_demos(args.tasks, episodes_per_task=args.near_miss, root=workdir / "near_miss", noise=0.0, seed=0,
                     progress=False, near_miss=True, cameras=cameras)
        demo_stores.append(EpisodeStore(workdir / "near_miss"))

    def open_store(name):
        return EpisodeStore.open_or_create(workdir / name, fps=demos.spec.fps, image_size=demos.spec.image_height,
                                           cameras=cameras, state_dim=demos.spec.state_dim,
                                           action_dim=demos.spec.action_dim)

    # the labelled pool plays a round's autonomous store; labels are written into it, so it starts fresh each run
    shutil.rmtree(workdir / "rollouts" / "labels", ignore_errors=True)
    rollouts = open_store("rollouts")
    heldout = open_store("heldout")
    other = open_store("other_policies")
    for noise in args.noises:
        record_expert_rollouts(rollouts, args.tasks, noise=noise, seeds=range(1000, 1000 + args.rollouts), round=1,
                               cameras=cameras)
        record_expert_rollouts(heldout, args.tasks, noise=noise, seeds=range(5000, 5000 + args.heldout), round=1,
                               cameras=cameras)
    if args.other_policies:
        for noise in (0.3, 1.0):
            record_expert_rollouts(other, args.tasks, noise=noise, seeds=range(7000, 7000 + args.other_policies),
                                   round=1, instruction_split="heldout", cameras=cameras)
    timings["record_s"] = time.perf_counter() - start

    # frozen features are cached on disk (episodes are immutable), so reruns only train and audit
    cache = FeatureCache(make_encoders(args.encoder, image_size=demos.spec.image_height), cache_dir=workdir / "feature_cache")
    start = time.perf_counter()
    detector_v0 = SuccessDetector(DetectorConfig(encoder=args.encoder, **overrides_v0), feature_cache=cache)
    report_v0 = detector_v0.fit_stores(demo_stores)
    oracle = OracleLabelSource(budget=args.budget)
    version = label_store(rollouts, detector_v0, None, label_source=oracle, round=1, strategy=args.strategy,
                          seed=args.seed, random_share=args.random_share)
    summary = labelling_summary(rollouts.root, version)
    timings["detector_v0_and_label_s"] = time.perf_counter() - start

    start = time.perf_counter()
    detector = SuccessDetector(DetectorConfig(encoder=args.encoder, **v1_overrides), feature_cache=cache)
    report_v1 = detector.fit_stores([*demo_stores, rollouts], label_version=version)
    timings["detector_v1_train_s"] = time.perf_counter() - start

    start = time.perf_counter()
    audits = {
        "v0_demos_only": audit_detector(heldout, detector_v0),
        "v1_demos_plus_oracle": audit_detector(heldout, detector),
    }
    if args.other_policies:
        audits["v0_other_policies"] = audit_detector(other, detector_v0)
        audits["v1_other_policies"] = audit_detector(other, detector)
    label_audit = audit_label_set(rollouts, version)
    if args.dump_scores:
        _dump_scores(Path(args.dump_scores), {"heldout": heldout, "other_policies": other, "pool": rollouts},
                     {"v0": detector_v0, "v1": detector}, report_v1)
    timings["audit_s"] = time.perf_counter() - start
    if args.plots:
        plot_audit(audits["v1_demos_plus_oracle"], RESULTS, prefix="detector")
        plot_audit(audits["v0_demos_only"], RESULTS, prefix="detector_v0")
    for audit in [*audits.values(), label_audit]:
        audit.pop("roc_curve", None)

    def truth_rate(store):
        truth = [v for v in store.audit_table().values() if v is not None]
        return round(sum(truth) / len(truth), 3), len(truth)

    run = {
        "command": "python bench/detector.py " + " ".join(argv),
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine()},
        "tasks": args.tasks,
        "encoder": cache.encoders.name,
        "cameras_recorded": list(cameras),
        "detector_overrides": overrides,
        "detector_config": "configs/verifier/default.yaml + detector_overrides",
        "data": {
            "demos_per_task": args.demos, "near_miss_per_task": args.near_miss,
            "mediocre_policy": f"scripted expert, noise {args.noises}",
            "labelled_pool": {"episodes": truth_rate(rollouts)[1], "gt_success_rate": truth_rate(rollouts)[0]},
            "heldout_audit": {"episodes": truth_rate(heldout)[1], "gt_success_rate": truth_rate(heldout)[0]},
            "other_policies_audit": ({"episodes": truth_rate(other)[1], "gt_success_rate": truth_rate(other)[0],
                                      "policies": "expert noise 0.3 and 1.0, held-out paraphrases"}
                                     if args.other_policies else None),
            "oracle_budget": args.budget, "oracle_labels_spent": oracle.spent,
            "selection": {"strategy": args.strategy, "seed": args.seed,
                          "random_share": args.random_share if args.strategy == "mixed" else None},
            "labelled_episode_weight_v1": detector.config.labelled_episode_weight,
            "training_examples_by_source_v1": report_v1["examples_by_source"],
        },
        "label_round": {k: v for k, v in summary.items() if k != "labelled_sample"},
        "label_set_audit": _headline(label_audit) | {"final_labels": label_audit["final_labels"]},
        "detector_v0": _detector_summary(detector_v0, report_v0),
        "detector_v1": _detector_summary(detector, report_v1),
        "audit": audits,
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
    }
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else {}
    if "runs" not in results:  # an older single-run file is kept as it was
        results = {"runs": {"previous_format": results} if results else {}}
    results["runs"][args.label] = run
    results["goals"] = {"auc": 0.95, "accepted_but_failed": 0.05, "ece": 0.05}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(markdown(run, args.label))
    return run


def _dump_scores(path: Path, stores: dict, detectors: dict, report_v1: dict) -> None:
    """Raw logits per episode (ground truth read for the analysis only) and v1's out-of-fold calibration sample."""
    out: dict = {"detectors": {k: {"temperature": d.temperature, "bias": d.bias,
                                        "threshold": d.threshold} for k, d in detectors.items()}}
    for name, store in stores.items():
        metas = [m for m in store.episodes() if m.num_frames > 0 and not m.error]
        truth = store.audit_table()
        # v0 and v1 share the feature cache and the clip layout, so the clips are featurized once
        features = detectors["v1"].featurize([(store, m.episode_id, None, None) for m in metas])
        logits = {k: d.predict_logits(features) for k, d in detectors.items()}
        out[name] = [{"episode": m.episode_id, "task": m.task_name, "truth": truth.get(m.episode_id),
                      **{k: float(v[i]) for k, v in logits.items()}} for i, m in enumerate(metas)]
    calibration = report_v1.get("calibration") or {}
    out["v1_out_of_fold"] = calibration.get("out_of_fold_sample")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1) + "\n")


def _parse_overrides(items: list[str]) -> dict:
    """KEY=VALUE strings -> DetectorConfig keyword arguments (values parsed as YAML: 0, true, [0.0, 0.5])."""
    import yaml

    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--detector takes KEY=VALUE pairs (got {item!r})")
        overrides[key] = yaml.safe_load(value)
    return overrides


def _headline(audit: dict) -> dict:
    keys = ("episodes", "ground_truth_success_rate", "auc", "accepted", "accepted_but_failed", "recall", "ece", "threshold")
    return {k: audit.get(k) for k in keys}


def _detector_summary(detector, report: dict) -> dict:
    return {
        "version": detector.version, "temperature": detector.temperature, "bias": detector.bias, "threshold": detector.threshold,
        "holdout_threshold_choice": report.get("threshold"),
        "holdout_ece_before_temperature": report.get("holdout_ece_before"),
        "holdout_ece_after_temperature": report.get("holdout_ece_after"),
        "calibration": report.get("calibration"),
    }


def markdown(run: dict, label: str) -> str:
    def fmt(value, spec=".3f"):
        return "—" if value is None else format(value, spec)

    lines = [
        f"Run `{label}`: `{run['command']}` (encoder {run['encoder']}).",
        "",
        "| audit set | detector | task | episodes | GT success | AUC | accepted | accepted-but-failed | recall | ECE |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, audit in run["audit"].items():
        detector, _, audit_set = name.partition("_")
        audit_set = "other policies" if "other" in audit_set else "mediocre policy (held-out seeds)"
        rows = [("all", audit)] + list(audit.get("per_task", {}).items())
        for task, m in rows:
            lines.append(
                f"| {audit_set} | {detector} | {task} | {m['episodes']} | {fmt(m['ground_truth_success_rate'], '.0%')} | "
                f"{fmt(m['auc'])} | {m['accepted']} | {fmt(m['accepted_but_failed'], '.1%')} | {fmt(m['recall'], '.0%')} | "
                f"{fmt(m['ece'])} |"
            )
    label_audit = run["label_set_audit"]
    lines += [
        "",
        f"Label version on the labelled pool (v0 + {run['data']['oracle_labels_spent']} oracle labels): AUC "
        f"{fmt(label_audit['auc'])}, final labels accepted-but-failed "
        f"{fmt(label_audit['final_labels']['accepted_but_failed'], '.1%')}.",
        "Goals: AUC >= 0.95, accepted-but-failed <= 5 %, ECE <= 0.05. Timings (s): "
        + ", ".join(f"{k} {v}" for k, v in run["timings_s"].items()),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
