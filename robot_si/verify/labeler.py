"""`label_store`: write a new label version for a store from the learned verifier (+ budgeted labels).

Owns the labeling pass of a round: detector success probabilities per episode, per-frame progress / value /
advantage from the progress model, active selection of the episodes to spend the human/oracle budget on,
merging those labels (they override the detector's decision for their episodes; earlier versions' human/oracle
labels are carried forward instead of being asked again), and committing a NEW version through
`robot_si.data.labels.write_label_set`.

Ground truth: this module, and everything it calls, never reads `audit_table()`. The only path to ground
truth is an `OracleLabelSource` passed in by the caller, which answers one budgeted question at a time.
With `label_source=None` the labels depend only on the raw episodes and the models (tests/test_isolation.py).
"""

from __future__ import annotations

import json
from typing import Any

from robot_si.verify.labeling import DEFAULT_RANDOM_SHARE, LabelSource, select_for_labeling

BUDGETED_SOURCES = ("human", "oracle")


def _carried_labels(store) -> dict[str, tuple[bool, str]]:
    """Human/oracle labels from earlier versions of this store (the newest one wins)."""
    from robot_si.data.labels import list_label_versions, read_label_set

    carried: dict[str, tuple[bool, str]] = {}
    for version in list_label_versions(store.root):
        for episode_id, label in read_label_set(store.root, version).episode_labels.items():
            if label.label_source in BUDGETED_SOURCES and label.label is not None:
                carried[episode_id] = (label.label, label.label_source)
    return carried


def label_store(
    store,
    detector,
    progress_model=None,
    *,
    label_source: LabelSource | None = None,
    budget: int | None = None,
    version: str | None = None,
    round: int | None = None,
    strategy: str = "threshold",
    seed: int = 0,
    random_share: float = DEFAULT_RANDOM_SHARE,
    note: str = "",
) -> str:
    """Label every episode of `store` and commit a new label version; returns its name.

    - `detector`: a trained `SuccessDetector` (its threshold decides `label` for detector-labelled episodes).
    - `progress_model`: a trained `ProgressModel`, or None for episode labels only (no per-frame fields).
    - `label_source` / `budget`: ask at most `budget` (default: the source's remaining budget) episodes of
      `round` (default: any round), non-demo and not labelled before, chosen by `strategy` (see
      `select_for_labeling`, with `seed` and `random_share` for the sampled part); their answers override the
      detector's decision, skipped ones keep it.
    - `version`: the new version's name (None: the next "vNNNN").
    """
    from robot_si.data.labels import EpisodeLabel, write_label_set

    metas = [m for m in store.episodes() if m.num_frames > 0 and not m.error]
    if not metas:
        raise ValueError(
            f"the store at {store.root} has no episodes with frames to label; collect episodes first "
            "(`robot-si collect ...`)"
        )
    success_probs = detector.predict_episodes(store, [m.episode_id for m in metas])
    carried = _carried_labels(store)

    answers: dict[str, bool | None] = {}
    if label_source is not None:
        allowed = label_source.remaining if budget is None else min(int(budget), label_source.remaining)
        if allowed < 0:
            raise ValueError(f"budget must be >= 0 (got {budget})")
        candidates = {
            m.episode_id: success_probs[m.episode_id]
            for m in metas
            if m.source != "demo" and m.episode_id not in carried and (round is None or m.round == round)
        }
        chosen = select_for_labeling(candidates, allowed, threshold=detector.threshold, strategy=strategy, seed=seed,
                                     random_share=random_share)
        answers = label_source.ask_many(store, chosen)

    episode_labels, frame_labels = [], {}
    for meta in metas:
        episode_id = meta.episode_id
        prob = success_probs[episode_id]
        if answers.get(episode_id) is not None:
            label, source = bool(answers[episode_id]), label_source.name
        elif episode_id in carried:
            label, source = carried[episode_id]
        else:
            label, source = detector.accepts(prob), "detector"
        episode_labels.append(EpisodeLabel(
            episode_id=episode_id, success_prob=prob, label=label, label_source=source,
            detector_version=detector.version,
        ))
        if progress_model is not None:
            outcome = (1.0 if label else 0.0) if source in BUDGETED_SOURCES else prob
            frame_labels[episode_id] = progress_model.episode_frame_labels(
                progress_model.featurize_episode(store, episode_id), outcome
            )

    record = {
        "note": note,
        "threshold": detector.threshold,
        "temperature": detector.temperature,
        "bias": detector.bias,
        "progress_version": progress_model.version if progress_model is not None else None,
        "label_source": label_source.name if label_source is not None else None,
        "strategy": strategy,
        "selection_seed": seed,
        "random_share": random_share if strategy == "mixed" else None,
        "round": round,
        "asked": list(answers),
        "labels_spent": len(answers),
    }
    return write_label_set(
        store.root, version=version, episode_labels=episode_labels, frame_labels=frame_labels or None,
        detector_version=detector.version, note=json.dumps(record),
    )


def labelling_summary(store_root, version: str = "latest") -> dict[str, Any]:
    """What a labeling pass did: counts, and the budgeted sample (detector decision vs. human/oracle label).

    The sample is what the loop's wrong-verifier guard reads: it never involves ground truth beyond the
    budgeted labels themselves.
    """
    from robot_si.data.labels import read_label_set

    label_set = read_label_set(store_root, version)
    try:
        record = json.loads(label_set.note)
    except ValueError:
        record = {}
    threshold = record.get("threshold", 0.5)
    labels = label_set.episode_labels
    asked = [e for e in record.get("asked", []) if e in labels and labels[e].label_source in BUDGETED_SOURCES]
    return {
        "label_version": label_set.version,
        "detector_version": label_set.detector_version,
        "threshold": threshold,
        "episodes_labelled": len(labels),
        "episodes_accepted": sum(1 for l in labels.values() if l.label),
        "labels_spent": int(record.get("labels_spent", 0)),
        "labelled_sample": {
            "episode_ids": asked,
            "detector_accepted": [bool(labels[e].success_prob is not None and labels[e].success_prob >= threshold) for e in asked],
            "label": [bool(labels[e].label) for e in asked],
        },
    }
