"""Diagnostic (reads ground truth, for analysis only): which camera holds the success signal, per task?

Per-task logistic regression on the end clip (last three frames, stride 2) of frozen pooled EfficientNet features
of each camera plus the gripper position and opening, trained on the ground truth of every labelled-pool episode
and scored on the held-out and other-policy audits. An upper bound a 20-label budget cannot reach, used to ask
whether a camera sees what the detector misses. Runs on the stores `bench/detector.py --cameras front wrist`
leaves in its workdir:

    python bench/detector.py ... --cameras front wrist --workdir /tmp/det
    python bench/diagnostics/camera_probe.py --workdir /tmp/det
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from robot_si.data import EpisodeStore
from robot_si.verify.features import FeatureCache, episode_end, make_encoders


def end_clips(store: EpisodeStore, cache: FeatureCache, cameras: tuple[str, ...]):
    truth = store.audit_table()
    rows, labels, tasks = [], [], []
    for meta in store.episodes():
        last = episode_end(store, meta)
        features, states = cache.image_features(store, meta.episode_id, [max(0, last - 4), max(0, last - 2), last], cameras)
        rows.append(np.concatenate([features.reshape(-1), states[last, :4]]))
        labels.append(bool(truth[meta.episode_id]))
        tasks.append(meta.task_name)
    return np.array(rows), np.array(labels), np.array(tasks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--C", type=float, default=0.01, help="inverse L2 strength of the probes")
    args = parser.parse_args()
    workdir = Path(args.workdir)
    cache = FeatureCache(make_encoders("default", image_size=64), cache_dir=workdir / "feature_cache")
    print("| cameras | audit | all | per task |\n| --- | --- | --- | --- |")
    for cameras in [("front",), ("wrist",), ("front", "wrist")]:
        train_x, train_y, train_t = end_clips(EpisodeStore(workdir / "rollouts"), cache, cameras)
        for audit in ("heldout", "other_policies"):
            x, y, t = end_clips(EpisodeStore(workdir / audit), cache, cameras)
            score, per_task = np.zeros(len(y)), {}
            for task in sorted(set(train_t)):
                probe = make_pipeline(StandardScaler(), LogisticRegression(C=args.C, max_iter=3000))
                probe.fit(train_x[train_t == task], train_y[train_t == task])
                score[t == task] = probe.decision_function(x[t == task])
                per_task[str(task)] = round(float(roc_auc_score(y[t == task], score[t == task])), 3)
            print(f"| {' + '.join(cameras)} | {audit} | {roc_auc_score(y, score):.3f} | {per_task} |", flush=True)


if __name__ == "__main__":
    main()
