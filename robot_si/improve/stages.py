"""The loop's stages: each one a small function over the run directory that returns a JSON-able result.

`loop.py` decides *when* a stage runs (and records it in the round's manifest); this module says *what* it
does, by calling the stage packages: `data` (demos, store, labels), `train` (policy), `verify` (detector,
progress model, labeling, audit), `weight` and `collect` (rollouts, evaluation).

Ground truth: only `evaluate`, `audit` and `episode_strips` (what a person looks at) read the simulator's
`audit.gt_success`, and the oracle label source reads it one budgeted question at a time. `label` and
`weight` see detector outputs and budgeted labels only.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from robot_si.improve.guards import action_diversity

if TYPE_CHECKING:
    from robot_si.improve.loop import Run

AUTONOMOUS = "autonomous"
WEIGHTS_VERSION = "r{round:03d}-weights"  # the label version a round trains on (detector labels + weights)


def _container(node) -> dict[str, Any]:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)


def policy_dir(run: Run, round_index: int) -> Path:
    return run.round_dir(round_index) / "policy" / "policy"


def verifier_dir(run: Run, round_index: int) -> Path:
    return run.round_dir(round_index) / "verifier"


def _open(path: Path):
    from robot_si.data import EpisodeStore

    return EpisodeStore(path)


def _has_autonomous(run: Run) -> bool:
    return (run.autonomous_store / "store.json").exists()


# ── round 0 ──────────────────────────────────────────────────────────────────────────────────────────────


def record_demos(run: Run, cfg: DictConfig) -> dict[str, Any]:
    from robot_si.data.demos import record_demos as record

    options = {"root": run.demo_store, "noise": float(cfg.demos.noise), "seed": int(cfg.seed),
               "image_size": int(cfg.image_size), "progress": bool(cfg.progress)}
    metas = record(list(cfg.tasks), episodes_per_task=int(cfg.demos.episodes_per_task), **options)
    near_misses = int(cfg.demos.near_miss_per_task)
    if near_misses:  # the demonstrator's deliberate failures: verifier negatives, skipped by behaviour cloning
        record(list(cfg.tasks), episodes_per_task=near_misses, near_miss=True, **options)
    store = _open(run.demo_store)
    diversity = action_diversity([store.load_episode(m.episode_id)["action"] for m in metas])
    return {"episodes": len(metas), "frames": int(sum(m.num_frames for m in metas)),
            "near_miss_episodes": near_misses * len(cfg.tasks), **{f"demo_{k}": v for k, v in diversity.items()}}


# ── policy ───────────────────────────────────────────────────────────────────────────────────────────────


def train_policy(run: Run, cfg: DictConfig, round_index: int, *, label_version: str | None,
                 init_from: int | None) -> dict[str, Any]:
    """Round 0: BC on demos. Later rounds: demos (anchor, `demo_ratio` of each batch) + weighted autonomous data."""
    from robot_si.train import TrainConfig
    from robot_si.train import train_policy as train

    stores, versions, mix = [run.demo_store], [None], None
    if label_version is not None and _uses_autonomous(run, label_version):
        stores.append(run.autonomous_store)
        versions.append(label_version)
        # null: every demo frame and weighted autonomous frame as likely as the next (the natural proportion)
        ratio = None if cfg.train.demo_ratio is None else float(cfg.train.demo_ratio)
        mix = {"demo": ratio, AUTONOMOUS: 1.0 - ratio} if ratio is not None and 0.0 < ratio < 1.0 else None
        if ratio == 0.0:
            stores, versions = stores[1:], versions[1:]
        elif ratio == 1.0:
            stores, versions = stores[:1], versions[:1]
    start_from = None
    if init_from is not None and cfg.train.init_from == "previous":
        start_from = policy_dir(run, init_from)
    steps = int(cfg.train.steps if round_index == 0 or cfg.train.finetune_steps is None else cfg.train.finetune_steps)
    # one training seed for every round: a policy retrained from scratch starts from round 0's initial weights,
    # so a round's change is its data, not a new draw of BC's seed-to-seed spread (bench/NOTES_improve.md)
    train_config = TrainConfig(
        steps=steps, batch_size=int(cfg.train.batch_size), lr=float(cfg.train.lr), seed=int(cfg.seed),
        save_every=max(steps // 3, 1), progress=bool(cfg.progress),
    )
    policy_config = {"type": "compact_vla", "image_size": int(cfg.image_size), **_container(cfg.policy)}
    result = train(
        stores, run.round_dir(round_index) / "policy", policy_config=policy_config, init_from=start_from,
        train_config=train_config, label_version=versions, mix=mix, balance_tasks=bool(cfg.train.balance_tasks),
    )
    return {"train_steps": result.steps, "train_final_loss": getattr(result, "final_loss", None),
            "stores": [str(s) for s in stores], "init_from": str(start_from) if start_from else None}


def _uses_autonomous(run: Run, label_version: str) -> bool:
    """True when the weighted label version gives any autonomous frame a positive weight."""
    from robot_si.data.labels import read_label_set

    labels = read_label_set(run.autonomous_store, label_version)
    return any(float(np.max(f["weight"], initial=0.0)) > 0 for f in labels.frame_labels.values() if "weight" in f)


# ── verifier ─────────────────────────────────────────────────────────────────────────────────────────────


def _verifier_configs(cfg: DictConfig):
    from robot_si.verify.detector import DetectorConfig
    from robot_si.verify.progress import ProgressConfig

    encoder = cfg.verifier.encoder
    # the spatial encoder's maps are built for the loop's image size unless the verifier config says otherwise
    return (DetectorConfig(encoder=encoder, **{"image_size": cfg.image_size, **_container(cfg.verifier.detector)}),
            ProgressConfig(encoder=encoder, **_container(cfg.verifier.progress)))


def _feature_cache_dir(run: Run) -> Path:
    return run.root / "cache" / "verifier_features"


def train_verifier(run: Run, cfg: DictConfig, round_index: int) -> dict[str, Any]:
    """Fit the success detector and progress model on demos + every budgeted (human/oracle) label so far."""
    from robot_si.verify.detector import SuccessDetector
    from robot_si.verify.progress import ProgressModel

    stores = [_open(run.demo_store)]
    label_version = None
    if _has_autonomous(run):
        from robot_si.data.labels import list_label_versions

        stores.append(_open(run.autonomous_store))
        label_version = "latest" if list_label_versions(run.autonomous_store) else None
    detector_config, progress_config = _verifier_configs(cfg)
    detector = SuccessDetector(detector_config, cache_dir=_feature_cache_dir(run))
    try:
        report = detector.fit_stores(stores, label_version=label_version)
    except ValueError as error:
        raise ValueError(f"the verifier cannot be trained in round {round_index}: {error}") from error
    progress = ProgressModel(progress_config, feature_cache=detector.feature_cache)
    progress.fit_stores(stores, label_version=label_version)
    out = verifier_dir(run, round_index)
    detector.save_pretrained(out / "detector")
    progress.save_pretrained(out / "progress")
    return {"detector_version": detector.version, "progress_version": progress.version,
            "detector_threshold": detector.threshold, "detector_temperature": detector.temperature,
            "detector_bias": detector.bias,
            "verifier_examples": report.get("examples_by_source"),
            # None when there were too few labelled episodes for out-of-fold calibration
            "out_of_fold_sample": report.get("calibration", {}).get("out_of_fold_sample")}


def _load_verifier(run: Run, round_index: int):
    from robot_si.verify.detector import SuccessDetector
    from robot_si.verify.progress import ProgressModel

    out = verifier_dir(run, round_index)
    detector = SuccessDetector.from_pretrained(out / "detector", cache_dir=_feature_cache_dir(run))
    progress = ProgressModel.from_pretrained(out / "progress", feature_cache=detector.feature_cache)
    return detector, progress


# ── collect / label / weight ─────────────────────────────────────────────────────────────────────────────


def collection_plan(run: Run, cfg: DictConfig, round_index: int) -> dict[str, Any]:
    """Episodes per task this round. `collect.allocation: weak_tasks` (from round 2, once a round has been
    labelled) splits the round's episodes by the previous round's label-estimated success per task."""
    from robot_si.collect.allocation import allocate_episodes, task_success_estimates
    from robot_si.data.labels import read_label_set

    tasks, per_task = list(cfg.tasks), int(cfg.collect.episodes_per_task)
    allocation = cfg.collect.get("allocation", "uniform")
    if allocation == "uniform" or round_index < 2:
        return {"allocation": "uniform", "episodes_per_task": {task: per_task for task in tasks}, "estimates": None}
    store = _open(run.autonomous_store)
    previous = {m.episode_id: m.task_name for m in store.episodes(round=round_index - 1)}
    estimates = task_success_estimates(read_label_set(store.root, WEIGHTS_VERSION.format(round=round_index - 1)), previous)
    counts = allocate_episodes(tasks, per_task, estimates, min_share=float(cfg.collect.min_task_share))
    return {"allocation": allocation, "episodes_per_task": counts, "estimates": estimates}


def collect(run: Run, cfg: DictConfig, round_index: int, policy_round: int) -> dict[str, Any]:
    from robot_si.collect import collect as run_collect

    plan = collection_plan(run, cfg, round_index)
    metrics = run_collect(
        str(policy_dir(run, policy_round)), list(cfg.tasks), plan["episodes_per_task"],
        store=run.autonomous_store, round=round_index, seed=int(cfg.seed),
        policy_version=f"round_{policy_round:03d}", num_envs=int(cfg.collect.num_envs),
        exploration_std=float(cfg.collect.exploration_std), image_size=int(cfg.image_size),
        instruction_split="train", progress=bool(cfg.progress),
    )
    store = _open(run.autonomous_store)
    stored = store.episodes(round=round_index)
    diversity = action_diversity([store.load_episode(m.episode_id)["action"] for m in stored if m.num_frames])
    return {
        **diversity,
        "episodes_collected": len(stored),
        "collect_errors": int(metrics.get("episodes_with_error", 0)),
        "collect_steps_per_s": metrics.get("env_steps_per_s"),
        "collect_policy_round": policy_round,
        "collect_plan": plan,
    }


def label(run: Run, cfg: DictConfig, round_index: int, *, budget: int | None = None, suffix: str = "",
          verifier_round: int | None = None, strategy: str | None = None) -> dict[str, Any]:
    """Label every autonomous episode with a verifier (default: the previous round's); spend `budget` (default
    `labeling.budget`) labels of this round on its unsure ones.

    `budget` and `suffix` also serve the wrong-verifier guard's second pass (more labels) and the relabeling with
    the verifier refit on this round's labels (`verifier_round=round_index`, budget 0), and the check of what the
    refit verifier accepts (`strategy="accepted"`, `guards.check_labels`). Labels already given are carried over,
    never asked twice."""
    from robot_si.verify.labeler import label_store, labelling_summary
    from robot_si.verify.labeling import DEFAULT_RANDOM_SHARE, make_label_source

    detector, progress = _load_verifier(run, round_index - 1 if verifier_round is None else verifier_round)
    labeling = cfg.labeling
    source = make_label_source(labeling.source, budget=int(labeling.budget if budget is None else budget),
                               media_dir=run.round_dir(round_index) / "label_media")
    version = f"r{round_index:03d}-labels{suffix}"
    store = _open(run.autonomous_store)
    from robot_si.data.labels import list_label_versions

    if version not in list_label_versions(store.root):  # a resumed stage whose version was already committed
        label_store(store, detector, progress, label_source=source, version=version, round=round_index,
                    strategy=strategy or labeling.strategy, seed=int(cfg.seed) + round_index,
                    random_share=float(labeling.get("random_share", DEFAULT_RANDOM_SHARE)),
                    note=f"robot-si improve round {round_index}")
    summary = labelling_summary(store.root, version)
    round_ids = {m.episode_id for m in store.episodes() if m.round == round_index}
    return {
        "label_version": version,
        "detector_version": summary["detector_version"],
        "episodes_labelled": summary["episodes_labelled"],
        "episodes_accepted": _accepted_in(store, version, round_ids),
        "labels_spent": summary["labels_spent"],
        "labelled_sample": summary["labelled_sample"],
    }


def _accepted_in(store, version: str, episode_ids: set[str]) -> int:
    from robot_si.data.labels import read_label_set

    labels = read_label_set(store.root, version).episode_labels
    return sum(1 for e in episode_ids if e in labels and labels[e].label)


def weight(run: Run, cfg: DictConfig, round_index: int, label_version: str, *, verified_only: bool) -> dict[str, Any]:
    """Per-frame weights for every autonomous episode so far, committed as the label version training reads.

    `verified_only` (the wrong-verifier guard fired): only human/oracle-labelled episodes may carry weight.
    """
    from robot_si.data.labels import EpisodeLabel, list_label_versions, read_label_set, write_label_set
    from robot_si.weight.base import EpisodeEvidence, compute_weights

    store = _open(run.autonomous_store)
    labels = read_label_set(store.root, label_version)
    evidence, verified = {}, {}
    for episode_id, episode_label in labels.episode_labels.items():
        advantage = labels.frame_field(episode_id, "advantage")
        num_frames = store.get_meta(episode_id).num_frames if advantage is None else len(advantage)
        evidence[episode_id] = EpisodeEvidence(
            episode_id=episode_id, accepted=bool(episode_label.label),
            success_prob=float(episode_label.success_prob if episode_label.success_prob is not None else 0.0),
            advantage=np.zeros(num_frames, np.float32) if advantage is None else np.asarray(advantage, np.float32),
        )
        verified[episode_id] = episode_label.label_source != "detector"
    if verified_only:
        evidence = {e: ev for e, ev in evidence.items() if verified[e]}
    method_config = _container(cfg.weighting)
    result = compute_weights(cfg.weighting.method, evidence, method_config)

    accepted = sum(1 for ev in evidence.values() if ev.accepted)
    skip_reason = None
    if result.num_weighted_frames() == 0 or (cfg.weighting.method != "no_filter" and accepted < cfg.guards.min_accepted_episodes):
        skip_reason = (f"{accepted} accepted episode(s) "
                       f"{'(verified labels only) ' if verified_only else ''}< guards.min_accepted_episodes="
                       f"{cfg.guards.min_accepted_episodes} or no weighted frames; this round trains on demos only")
    frame_labels = {}
    for episode_id in labels.episode_labels:
        fields = dict(labels.frame_labels.get(episode_id, {}))
        n = len(evidence[episode_id].advantage) if episode_id in evidence else store.get_meta(episode_id).num_frames
        fields["weight"] = np.zeros(n, np.float32) if skip_reason else result.frame_weights.get(episode_id, np.zeros(n, np.float32))
        if result.advantage_indicators is not None and episode_id in result.advantage_indicators:
            fields["advantage_indicator"] = result.advantage_indicators[episode_id]
        frame_labels[episode_id] = fields
    version = WEIGHTS_VERSION.format(round=round_index)
    if version not in list_label_versions(store.root):
        write_label_set(
            store.root, version=version, detector_version=labels.detector_version, frame_labels=frame_labels,
            episode_labels=[EpisodeLabel(**l.to_json_dict()) for l in labels.episode_labels.values()],
            note=f'{{"weighted_from": "{label_version}", "method": "{cfg.weighting.method}", "verified_only": {str(verified_only).lower()}}}',
        )
    weights = np.concatenate([w for w in result.frame_weights.values()]) if result.frame_weights else np.zeros(0)
    histogram, edges = np.histogram(weights, bins=20) if weights.size else (np.zeros(0), np.zeros(0))
    return {
        "label_version": version,
        "weighting_method": cfg.weighting.method,
        "weight_stats": {k: float(v) for k, v in result.stats.items()},
        "weight_histogram": {"counts": histogram.tolist(), "edges": edges.tolist()},
        "skip_reason": skip_reason,
    }


# ── evaluate / audit (ground truth: simulation only, never fed back) ────────────────────────────────────


def evaluate(run: Run, cfg: DictConfig, round_index: int, *, policy_round: int) -> dict[str, Any]:
    from robot_si.collect import evaluate as run_eval

    if int(cfg.eval.episodes_per_task) == 0:
        return {"success_rate_gt": None, "success_ci": None, "success_per_task": {}}
    report = run_eval(
        str(policy_dir(run, policy_round)), list(cfg.tasks), int(cfg.eval.episodes_per_task), seed=int(cfg.seed),
        instruction_split=cfg.eval.instruction_split, num_envs=int(cfg.eval.num_envs), image_size=int(cfg.image_size),
        out=run.round_dir(round_index) / "eval.json", progress=bool(cfg.progress),
    )
    overall = report["overall"]
    return {
        "success_rate_gt": overall["success_rate"],
        "success_ci": [overall["ci_low"], overall["ci_high"]],
        "success_per_task": {
            task: {"success_rate": r["success_rate"], "ci_low": r["ci_low"], "ci_high": r["ci_high"]}
            for task, r in report["per_task"].items()
        },
    }


def audit(run: Run, cfg: DictConfig, round_index: int, label_version: str) -> dict[str, Any]:
    """The detector that labelled this round, against simulator ground truth, on this round's episodes."""
    from robot_si.data.labels import read_label_set
    from robot_si.verify.audit import audit_predictions, plot_audit
    from robot_si.verify.labeler import labelling_summary

    store = _open(run.autonomous_store)
    truth = store.audit_table()
    metas = [m for m in store.episodes() if m.round == round_index]
    if not any(truth.get(m.episode_id) is not None for m in metas):
        return {"detector_auc": None, "accepted_but_failed": None, "ece": None, "audit_note": "no ground truth"}
    labels = read_label_set(store.root, label_version).episode_labels
    ids = [m.episode_id for m in metas if m.episode_id in labels and labels[m.episode_id].success_prob is not None]
    # the detector is judged on the episodes it did not learn from: the refit verifier trained on this round's
    # human/oracle-labelled episodes, so they are left out of its AUC/ECE (they still count in the final labels)
    unseen = [e for e in ids if labels[e].label_source not in ("human", "oracle")] or ids
    threshold = labelling_summary(store.root, label_version)["threshold"]
    report = audit_predictions({e: labels[e].success_prob for e in unseen}, truth, threshold=threshold,
                               tasks={m.episode_id: m.task_name for m in metas})
    final = audit_predictions({e: labels[e].success_prob for e in ids}, truth, threshold=threshold,
                              accepted={e: bool(labels[e].label) for e in ids})
    out = run.round_dir(round_index) / "audit"
    plot_audit(report, out)
    result = {
        "detector_auc": report["auc"],
        "roc_curve": report.get("roc_curve"),
        # the decisions training used (detector + budgeted overrides): what the guard is about
        "accepted_but_failed": final["accepted_but_failed"],
        "detector_accepted_but_failed": report["accepted_but_failed"],
        "ece": report["ece"],
        "collected_success_rate_gt": float(np.mean([bool(truth[e]) for e in ids])) if ids else None,
    }
    from robot_si.improve.manifest import atomic_write_json

    atomic_write_json(run.round_dir(round_index) / "audit.json", {**report, "final_labels": final})
    return result


def episode_strips(run: Run, cfg: DictConfig, round_index: int) -> dict[str, Path]:
    """A GIF + contact sheet of one success and one failure of the last round (ground truth: for a person's eyes)."""
    from robot_si.verify.labeling import write_episode_media

    if not _has_autonomous(run):
        return {}
    store = _open(run.autonomous_store)
    truth = store.audit_table()
    metas = sorted((m for m in store.episodes() if m.round == round_index and m.num_frames > 0 and not m.error),
                   key=lambda m: m.episode_id)
    strips: dict[str, Path] = {}
    for name, wanted in (("success", True), ("failure", False)):
        match = next((m for m in metas if truth.get(m.episode_id) is wanted), None)
        if match is not None:
            gif, sheet = write_episode_media(store, match.episode_id, run.root / "plots" / "episodes")
            strips[f"{name} ({match.episode_id})"] = sheet
            strips[f"{name} GIF ({match.episode_id})"] = gif
    return strips
