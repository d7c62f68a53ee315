"""Versioned label tables kept beside a store's raw episodes: written once, never overwritten.

Owns `EpisodeLabel`, `LabelSet` and the files under `<store>/labels/<version>/`:

    label_set.json        version, detector_version, note, created_at_ns, frame fields
    episode_labels.jsonl  one EpisodeLabel per episode
    frame_labels.parquet  one row per frame: episode_id, frame_index and the per-frame fields present
                          (progress, value, advantage, weight, advantage_indicator); null where an episode
                          has no value for a field

A version is written into a temporary directory and committed with one `os.rename`, so readers see a whole
version or none. Relabeling writes a new version; raw episodes and older versions never change. This module
stores what verify/weight computed; it does not compute labels and never reads the store's ground truth.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

LABELS_DIR = "labels"
LABEL_SOURCES = ("detector", "human", "oracle")
FRAME_FIELDS = ("progress", "value", "advantage", "weight", "advantage_indicator")
_AUTO_VERSION = re.compile(r"^v(\d{4,})$")
_VERSION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclasses.dataclass(kw_only=True)
class EpisodeLabel:
    """What a labeler said about one episode: detector probability and/or a decided label."""

    episode_id: str
    success_prob: float | None
    label: bool | None
    label_source: str  # detector | human | oracle
    detector_version: str

    def __post_init__(self) -> None:
        if self.label_source not in LABEL_SOURCES:
            raise ValueError(f"label_source must be one of {LABEL_SOURCES} (got {self.label_source!r})")
        if self.success_prob is not None:
            prob = float(self.success_prob)
            if not (0.0 <= prob <= 1.0) or math.isnan(prob):
                raise ValueError(f"success_prob must be in [0, 1] or None (got {self.success_prob!r}) for {self.episode_id!r}")
            self.success_prob = prob
        if self.label is not None:
            if not isinstance(self.label, bool | np.bool_):
                raise ValueError(f"label must be True, False or None (got {self.label!r}) for {self.episode_id!r}")
            self.label = bool(self.label)

    def to_json_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(kw_only=True)
class LabelSet:
    """One committed label version, as read back by `read_label_set`."""

    version: str
    detector_version: str
    note: str
    created_at_ns: int
    episode_labels: dict[str, EpisodeLabel]
    frame_labels: dict[str, dict[str, np.ndarray]]

    def frame_field(self, episode_id: str, field: str) -> np.ndarray | None:
        return self.frame_labels.get(episode_id, {}).get(field)


def _labels_root(store_root: str | os.PathLike[str]) -> Path:
    root = Path(store_root)
    if not (root / "store.json").exists():
        raise FileNotFoundError(f"no episode store at {root} ({root / 'store.json'} is missing); labels live beside a store")
    return root / LABELS_DIR


def _read_manifest(path: Path) -> dict[str, Any]:
    manifest_file = path / "label_set.json"
    try:
        return json.loads(manifest_file.read_text())
    except FileNotFoundError:
        raise RuntimeError(f"label version {path.name} is damaged: {manifest_file} is missing; move {path} away") from None
    except ValueError as error:
        raise RuntimeError(f"label version {path.name} is damaged: {manifest_file} is not JSON ({error}); move {path} away") from error


def list_label_versions(store_root: str | os.PathLike[str]) -> list[str]:
    """Committed versions, oldest first."""
    labels_root = _labels_root(store_root)
    if not labels_root.is_dir():
        return []
    versions = [p for p in labels_root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return [p.name for p in sorted(versions, key=lambda p: (_read_manifest(p)["created_at_ns"], p.name))]


def _next_auto_version(labels_root: Path) -> str:
    numbers = [int(m.group(1)) for p in labels_root.iterdir() if (m := _AUTO_VERSION.match(p.name))] if labels_root.is_dir() else []
    return f"v{max(numbers, default=0) + 1:04d}"


def _check_frame_labels(
    frame_labels: dict[str, dict[str, np.ndarray]], lengths: dict[str, int], store_root: Path
) -> dict[str, dict[str, np.ndarray]]:
    checked: dict[str, dict[str, np.ndarray]] = {}
    for episode_id, fields in frame_labels.items():
        if episode_id not in lengths:
            raise ValueError(f"frame_labels has episode {episode_id!r}, which is not in the store at {store_root}")
        unknown = set(fields) - set(FRAME_FIELDS)
        if unknown:
            raise ValueError(f"frame_labels[{episode_id!r}] has unknown fields {sorted(unknown)}; allowed: {FRAME_FIELDS}")
        checked[episode_id] = {}
        for field, values in fields.items():
            array = np.asarray(values)
            if array.shape != (lengths[episode_id],):
                raise ValueError(
                    f"frame_labels[{episode_id!r}][{field!r}] has shape {array.shape}; the episode has "
                    f"{lengths[episode_id]} frames, so it must be ({lengths[episode_id]},)"
                )
            if field == "advantage_indicator":
                if not np.isin(array, (0, 1)).all():
                    raise ValueError(f"frame_labels[{episode_id!r}]['advantage_indicator'] must hold only 0 and 1")
                checked[episode_id][field] = array.astype(np.int8)
            else:
                if not np.isfinite(array.astype(np.float64)).all():
                    raise ValueError(f"frame_labels[{episode_id!r}][{field!r}] contains NaN or inf")
                if field == "weight" and (array < 0).any():
                    raise ValueError(f"frame_labels[{episode_id!r}]['weight'] has negative values; weights must be >= 0")
                checked[episode_id][field] = array.astype(np.float32)
    return checked


def write_label_set(
    store_root: str | os.PathLike[str],
    *,
    version: str | None = None,
    episode_labels: list[EpisodeLabel],
    frame_labels: dict[str, dict[str, np.ndarray]] | None = None,
    detector_version: str,
    note: str = "",
) -> str:
    """Commit a new label version beside the store (auto-named "v0001", "v0002", ... when `version` is None)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from robot_si.data.store import EpisodeStore

    store_root = Path(store_root)
    labels_root = _labels_root(store_root)
    if version is not None and (not _VERSION_NAME.match(version) or version == "latest"):
        raise ValueError(f"label version {version!r} is not a valid name; use letters, digits, '.', '_' or '-' (not 'latest')")
    store = EpisodeStore(store_root)
    lengths = {meta.episode_id: meta.num_frames for meta in store.episodes()}
    seen: set[str] = set()
    for label in episode_labels:
        if not isinstance(label, EpisodeLabel):
            raise ValueError(f"episode_labels must hold EpisodeLabel records (got {type(label).__name__})")
        if label.episode_id not in lengths:
            raise ValueError(f"episode label for {label.episode_id!r}, which is not in the store at {store_root}")
        if label.episode_id in seen:
            raise ValueError(f"episode {label.episode_id!r} is labelled twice in one label set")
        seen.add(label.episode_id)
    checked = _check_frame_labels(frame_labels or {}, lengths, store_root)

    labels_root.mkdir(exist_ok=True)
    tmp = labels_root / f".tmp-{os.getpid()}-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        (tmp / "episode_labels.jsonl").write_text("".join(json.dumps(l.to_json_dict()) + "\n" for l in episode_labels))
        fields = [f for f in FRAME_FIELDS if any(f in v for v in checked.values())]
        columns: dict[str, Any] = {"episode_id": [], "frame_index": []}
        field_arrays: dict[str, list[pa.Array]] = {f: [] for f in fields}
        for episode_id, values in checked.items():
            length = lengths[episode_id]
            columns["episode_id"] += [episode_id] * length
            columns["frame_index"].append(np.arange(length, dtype=np.int32))
            for field in fields:
                arrow_type = pa.int8() if field == "advantage_indicator" else pa.float32()
                if field in values:
                    field_arrays[field].append(pa.array(values[field], type=arrow_type))
                else:
                    field_arrays[field].append(pa.nulls(length, type=arrow_type))
        frame_index = np.concatenate(columns["frame_index"]) if columns["frame_index"] else np.zeros(0, np.int32)
        table_columns: dict[str, Any] = {"episode_id": pa.array(columns["episode_id"], type=pa.string()), "frame_index": pa.array(frame_index)}
        for field in fields:
            table_columns[field] = pa.concat_arrays(field_arrays[field])
        pq.write_table(pa.table(table_columns), tmp / "frame_labels.parquet")
        while True:
            name = version or _next_auto_version(labels_root)
            manifest = {
                "version": name,
                "detector_version": detector_version,
                "note": note,
                "created_at_ns": time.time_ns(),
                "frame_fields": fields,
                "num_episode_labels": len(episode_labels),
                "num_frame_labelled_episodes": len(checked),
            }
            (tmp / "label_set.json").write_text(json.dumps(manifest, indent=2) + "\n")
            target = labels_root / name
            if target.exists():
                if version is not None:
                    raise FileExistsError(
                        f"label version {name!r} already exists under {labels_root}; versions are never overwritten, "
                        "pass a new version name or version=None to auto-increment"
                    )
                continue  # another writer took this number a moment ago
            try:
                os.rename(tmp, target)  # the commit point
            except OSError:
                if version is not None or not target.exists():
                    raise
                continue
            return name
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_label_set(store_root: str | os.PathLike[str], version: str = "latest") -> LabelSet:
    """Read one committed label version ("latest" = the most recently written)."""
    import pyarrow.parquet as pq

    labels_root = _labels_root(store_root)
    versions = list_label_versions(store_root)
    if not versions:
        raise FileNotFoundError(f"no label versions under {labels_root}; write one with write_label_set(...)")
    if version == "latest":
        version = versions[-1]
    if version not in versions:
        raise FileNotFoundError(f"label version {version!r} not found under {labels_root}; versions are {versions}")
    path = labels_root / version
    manifest = _read_manifest(path)
    episode_labels = {}
    for line in (path / "episode_labels.jsonl").read_text().splitlines():
        if line:
            label = EpisodeLabel(**json.loads(line))
            episode_labels[label.episode_id] = label
    frame_labels: dict[str, dict[str, np.ndarray]] = {}
    table = pq.read_table(path / "frame_labels.parquet")
    if table.num_rows:
        episode_ids = np.asarray(table.column("episode_id").to_pylist(), dtype=object)
        boundaries = np.flatnonzero(episode_ids[1:] != episode_ids[:-1]) + 1
        starts = np.concatenate([[0], boundaries])
        ends = np.concatenate([boundaries, [len(episode_ids)]])
        field_columns = {f: table.column(f) for f in manifest["frame_fields"]}
        for start, end in zip(starts, ends, strict=True):
            fields: dict[str, np.ndarray] = {}
            for field, column in field_columns.items():
                chunk = column.slice(start, end - start)
                if chunk.null_count == len(chunk):
                    continue
                dtype = np.int8 if field == "advantage_indicator" else np.float32
                fields[field] = np.asarray(chunk.to_numpy(zero_copy_only=False), dtype=dtype)
            frame_labels[str(episode_ids[start])] = fields
    return LabelSet(
        version=manifest["version"],
        detector_version=manifest["detector_version"],
        note=manifest["note"],
        created_at_ns=manifest["created_at_ns"],
        episode_labels=episode_labels,
        frame_labels=frame_labels,
    )
