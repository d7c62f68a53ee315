"""Audit of the verifier against simulator ground truth: the only verify module that reads `audit_table()`
directly (besides the budgeted oracle label source).

Owns `audit_predictions` (metrics from arrays), `audit_detector` (run a detector on a store's held-out episodes
and audit it), `audit_label_set` (audit the decisions a label version actually made) and the PNG plots
(reliability diagram, ROC). Metrics: ROC-AUC, precision / recall at the operating threshold,
accepted-but-failed rate (fraction of accepted episodes that in fact failed = 1 - precision), ECE (10 bins),
all overall and per task. Results are JSON-able dicts; nothing here feeds back into labels or training.

Goals (reported, not enforced): AUC >= 0.95, accepted-but-failed <= 5 %, ECE <= 0.05.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from robot_si.verify.calibration import expected_calibration_error, reliability_table

GOALS = {"auc": 0.95, "accepted_but_failed": 0.05, "ece": 0.05}


def _metrics(probs: np.ndarray, truth: np.ndarray, accepted: np.ndarray) -> dict[str, Any]:
    from sklearn.metrics import roc_auc_score, roc_curve

    n = len(truth)
    both = 0 < truth.sum() < n
    tp = int((accepted & truth).sum())
    fp = int((accepted & ~truth).sum())
    out: dict[str, Any] = {
        "episodes": int(n),
        "ground_truth_success_rate": float(truth.mean()) if n else None,
        "accepted": int(accepted.sum()),
        "auc": float(roc_auc_score(truth, probs)) if both else None,
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / int(truth.sum()) if truth.sum() else None,
        "accepted_but_failed": fp / (tp + fp) if tp + fp else None,
        "ece": expected_calibration_error(probs, truth) if n else None,
        "brier": float(np.mean((probs - truth) ** 2)) if n else None,
    }
    if both:
        fpr, tpr, _ = roc_curve(truth, probs)
        out["roc_curve"] = {"fpr": fpr.tolist(), "tpr": tpr.tolist()}
    return out


def audit_predictions(
    success_probs: Mapping[str, float],
    ground_truth: Mapping[str, bool | None],
    *,
    threshold: float,
    tasks: Mapping[str, str] | None = None,
    accepted: Mapping[str, bool] | None = None,
) -> dict[str, Any]:
    """Audit metrics for episodes with both a probability and known ground truth (None-truth episodes skipped).

    `accepted` overrides `prob >= threshold` per episode (e.g. decisions after human/oracle overrides).
    """
    ids = sorted(e for e in success_probs if ground_truth.get(e) is not None)
    if not ids:
        raise ValueError(
            "no episode has both a detector probability and ground truth to audit against; audit a store "
            "collected in simulation (its audit.gt_success is set)"
        )
    probs = np.array([success_probs[e] for e in ids], dtype=np.float64)
    truth = np.array([bool(ground_truth[e]) for e in ids])
    decided = np.array([bool(accepted[e]) if accepted is not None and e in accepted else p >= threshold for e, p in zip(ids, probs)])
    report = {"threshold": float(threshold), **_metrics(probs, truth, decided)}
    report["reliability"] = reliability_table(probs, truth)
    report["goals"] = GOALS
    report["meets_goals"] = {
        "auc": report["auc"] is not None and report["auc"] >= GOALS["auc"],
        "accepted_but_failed": report["accepted_but_failed"] is not None and report["accepted_but_failed"] <= GOALS["accepted_but_failed"],
        "ece": report["ece"] is not None and report["ece"] <= GOALS["ece"],
    }
    if tasks:
        per_task = {}
        for task in sorted({tasks[e] for e in ids if e in tasks}):
            mask = np.array([tasks.get(e) == task for e in ids])
            metrics = _metrics(probs[mask], truth[mask], decided[mask])
            metrics.pop("roc_curve", None)
            per_task[task] = metrics
        report["per_task"] = per_task
    # the names the improve report reads
    report["detector_auc"] = report["auc"]
    return report


def plot_audit(report: Mapping[str, Any], out_dir: str | os.PathLike[str], *, prefix: str = "detector") -> dict[str, str]:
    """Reliability diagram and ROC curve PNGs; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    table = report["reliability"]
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    centers = [(lo + hi) / 2 for lo, hi in zip(table["bin_lower"], table["bin_upper"], strict=True)]
    rates = [r if r is not None else 0.0 for r in table["success_rate"]]
    ax.bar(centers, rates, width=0.09, alpha=0.6, label="observed success rate")
    means = [(m, r) for m, r in zip(table["mean_prob"], table["success_rate"], strict=True) if m is not None]
    if means:
        ax.plot([m for m, _ in means], [r for _, r in means], "ko-", ms=3, label="per bin")
    ax.plot([0, 1], [0, 1], "k:", lw=1, label="perfect calibration")
    ax.set_xlabel("predicted success probability")
    ax.set_ylabel("ground-truth success rate")
    ax.set_title(f"reliability (ECE {report['ece']:.3f})" if report.get("ece") is not None else "reliability")
    ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    paths["reliability"] = str(out_dir / f"{prefix}_reliability.png")
    fig.savefig(paths["reliability"], dpi=100)
    plt.close(fig)
    if report.get("roc_curve"):
        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        ax.plot(report["roc_curve"]["fpr"], report["roc_curve"]["tpr"], label=f"AUC {report['auc']:.3f}")
        ax.plot([0, 1], [0, 1], "k:", lw=1)
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.set_title("success detector ROC")
        ax.legend(loc="lower right")
        fig.tight_layout()
        paths["roc"] = str(out_dir / f"{prefix}_roc.png")
        fig.savefig(paths["roc"], dpi=100)
        plt.close(fig)
    return paths


def _select(store, episode_ids: Sequence[str] | None, source: str | None) -> list:
    metas = [m for m in store.episodes(source=source) if m.num_frames > 0 and not m.error]
    if episode_ids is not None:
        wanted = set(episode_ids)
        metas = [m for m in metas if m.episode_id in wanted]
    if not metas:
        raise ValueError(f"no episodes with frames to audit in {store.root} (source={source!r}); collect rollouts first")
    return metas


def audit_detector(
    store,
    detector,
    *,
    out_dir: str | os.PathLike[str] | None = None,
    episode_ids: Sequence[str] | None = None,
    source: str | None = None,
) -> dict[str, Any]:
    """Run `detector` on the store's episodes (held-out rollouts) and audit it against ground truth."""
    metas = _select(store, episode_ids, source)
    probs = detector.predict_episodes(store, [m.episode_id for m in metas])
    report = audit_predictions(
        probs, store.audit_table(), threshold=detector.threshold, tasks={m.episode_id: m.task_name for m in metas}
    )
    report["detector_version"] = detector.version
    if out_dir is not None:
        report["plots"] = plot_audit(report, out_dir)
    return report


def audit_label_set(store, version: str = "latest", *, out_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Audit the decisions a label version made (detector labels and human/oracle overrides) and its detector."""
    from robot_si.data.labels import read_label_set
    from robot_si.verify.labeler import labelling_summary

    label_set = read_label_set(store.root, version)
    summary = labelling_summary(store.root, label_set.version)
    labels = {e: l for e, l in label_set.episode_labels.items() if l.success_prob is not None}
    tasks = {m.episode_id: m.task_name for m in store.episodes() if m.episode_id in labels}
    probs = {e: l.success_prob for e, l in labels.items()}
    truth = store.audit_table()
    report = audit_predictions(probs, truth, threshold=summary["threshold"], tasks=tasks)
    decisions = audit_predictions(probs, truth, threshold=summary["threshold"], accepted={e: bool(l.label) for e, l in labels.items()})
    report["final_labels"] = {k: decisions[k] for k in ("accepted", "precision", "recall", "accepted_but_failed")}
    report["label_version"] = label_set.version
    if out_dir is not None:
        report["plots"] = plot_audit(report, out_dir)
    return report
