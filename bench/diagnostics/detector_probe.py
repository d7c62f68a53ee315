"""Diagnostic (reads ground truth, for analysis only): per-task logistic-regression probes on frozen pooled
EfficientNet features of an episode's end frame. Which training signal transfers to mediocre-policy endings:
demo ends vs demo prefixes, all labelled pool episodes, or demos + a few random labels? With or without the
terminal observation (the scene the env judged) as the end frame?

Runs on the stores `bench/detector.py` leaves in its workdir (demos, rollouts, heldout, other_policies):

    python bench/detector.py --tasks reach push button --demos 100 --workdir /tmp/detbench100 --fresh
    python bench/diagnostics/detector_probe.py --workdir /tmp/detbench100 [--terminal] [--kinds end delta end+state]

The probes are colour-blind (no instruction input): a per-task model can only say "the gripper is at an object".
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from robot_si.data import EpisodeStore
from robot_si.verify.examples import DEFAULT_PREFIX_FRACTIONS
from robot_si.verify.features import FeatureCache, episode_end, make_encoders

HARD_PREFIX_FRACTIONS = (*DEFAULT_PREFIX_FRACTIONS, 0.85, 0.92)  # + near-success 'not yet' frames


def load(workdir: Path, name: str, cache: FeatureCache, terminal: bool) -> list[dict]:
    store = EpisodeStore(workdir / name)
    truth = store.audit_table() if name != "demos" else {}
    rows = []
    for meta in store.episodes():
        last = episode_end(store, meta, use_terminal=terminal)
        indices = sorted({int(round(f * last)) for f in HARD_PREFIX_FRACTIONS} | {last})
        features, states = cache.image_features(store, meta.episode_id, indices)
        rows.append({"task": meta.task_name, "last": last, "features": dict(zip(indices, features)), "states": states,
                     "success": truth.get(meta.episode_id)})
    return rows


def feature(row: dict, end: int, kind: str) -> np.ndarray:
    f = row["features"][end]
    state = row["states"][min(end, len(row["states"]) - 1)][:4]  # positions + opening, no velocities
    return {"end": lambda: f, "delta": lambda: np.concatenate([f, f - row["features"][0]]),
            "end+state": lambda: np.concatenate([f, 10 * state]), "state": lambda: 10 * state}[kind]()


def demo_examples(demos, kind, fractions):
    X, y, tasks = [], [], []
    for row in demos:
        X.append(feature(row, row["last"], kind)), y.append(1), tasks.append(row["task"])
        for fraction in fractions:
            end = int(round(fraction * row["last"]))
            if end < row["last"]:
                X.append(feature(row, end, kind)), y.append(0), tasks.append(row["task"])
    return np.array(X), np.array(y), np.array(tasks)


def labelled(rows, kind):
    return (np.array([feature(r, r["last"], kind) for r in rows]), np.array([int(r["success"]) for r in rows]),
            np.array([r["task"] for r in rows]))


def probe(name, X, y, tasks, audit_sets, kind):
    line = f"{name:44s}"
    for set_name, rows in audit_sets.items():
        Xe, ye, te = labelled(rows, kind)
        scores = np.zeros(len(ye))
        for task in sorted(set(tasks)):
            m, me = tasks == task, te == task
            clf = LogisticRegression(C=0.1, max_iter=2000, class_weight="balanced")
            clf.fit(X[m], y[m])
            scores[me] = clf.decision_function(Xe[me])
        per_task = {t: roc_auc_score(ye[te == t], scores[te == t]) for t in sorted(set(te)) if len(set(ye[te == t])) == 2}
        line += f" | {set_name} AUC {roc_auc_score(ye, scores):.3f} " + " ".join(f"{t}:{v:.2f}" for t, v in per_task.items())
    print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default="/tmp/robot_si_bench_detector")
    parser.add_argument("--terminal", action="store_true", help="end frame = the terminal observation")
    parser.add_argument("--kinds", nargs="+", default=["end", "delta"])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    workdir = Path(args.workdir)
    cache = FeatureCache(make_encoders("default", image_size=64), cache_dir=workdir / "feature_cache")
    data = {name: load(workdir, name, cache, args.terminal) for name in ("demos", "rollouts", "heldout", "other_policies")}
    audit_sets = {"heldout": data["heldout"], "other": data["other_policies"]}
    rng = np.random.default_rng(0)
    for kind in args.kinds:
        for fractions in (DEFAULT_PREFIX_FRACTIONS, HARD_PREFIX_FRACTIONS):
            probe(f"demos, {len(fractions)} prefixes, {kind}", *demo_examples(data["demos"], kind, fractions), audit_sets, kind)
        Xl, yl, tl = labelled(data["rollouts"], kind)
        probe(f"all {len(yl)} pool labels, {kind}", Xl, yl, tl, audit_sets, kind)
        X, y, t = demo_examples(data["demos"], kind, HARD_PREFIX_FRACTIONS)
        for n in (20, 40):
            pick = rng.choice(len(yl), n, replace=False)
            probe(f"demos + {n} random pool labels, {kind}", np.concatenate([X, Xl[pick]]), np.concatenate([y, yl[pick]]),
                  np.concatenate([t, tl[pick]]), audit_sets, kind)


if __name__ == "__main__":
    main()
