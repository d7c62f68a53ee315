"""The episode store: a directory of immutable LeRobotDataset v3 shards, appended one episode at a time.

Owns the on-disk layout of a store, crash-safe appends, the in-memory episode index and reading episodes
back. Does not know about policies, verifiers, labels' meaning or training (labels.py and views.py sit on
top of it); never reads or writes anything outside its root.

Layout::

    <root>/
      store.json                  the store's shape: fps, image size, cameras, state/action dims, storage mode
      shards/<shard>/             one finalized LeRobotDataset v3 each (stock `LeRobotDataset(..., root=<shard>)`)
        meta/ data/ [videos/]     written by lerobot's own create/add_frame/save_episode/finalize
        robot_si/episodes.jsonl   one EpisodeMeta per episode, in the shard's episode_index order
        robot_si/audit.jsonl      simulator ground truth {"episode_id", "audit.gt_success"}: audit only
        robot_si/shard.json       {"replaces": [...]} when the shard came from `compact()`
      .staging/<pid>-<uuid>/      a shard being written; never read
      labels/<version>/           versioned label tables (labels.py)

Crash safety: LeRobot v3 writes episode metadata and parquet footers only at `finalize()`, so a dataset that
is killed mid-recording is unreadable. The store therefore writes every episode as its own small dataset in
`.staging/`, finalizes it, and commits it with one `os.rename` into `shards/` (atomic on POSIX). A `kill -9`
at any moment leaves either the whole episode or nothing; the next open removes staging leftovers of dead
processes (with a warning) and appending resumes. `compact()` merges shards with lerobot's
`aggregate_datasets`, commits the merged shard the same way and only then deletes its sources; a merged shard
names the shards it replaces, so an interrupted compaction is finished on the next open.

Image vs video: image mode (PNG inside the parquet, lossless) is the default. Measured at 64 and 96 px
(bench/store_throughput.py): image mode writes 440 / 308 frames/s, video 342 / 261 (lerobot's per-episode save
path dominates, not the codec), both read back at ~2700 frames/s; video is lossy and about half the bytes.
Lossless frames keep HDF5 round trips exact and the training data identical to what the policy saw.

Write cost: lerobot's stock save path spends ~3.6 ms of CPU per 64 px frame, more than the simulator's ~2.3 ms,
so a background writer fell behind (collection +64 % until the last episode was committed). `_fast_lerobot_writes`
removes two per-frame costs inside lerobot/datasets without changing what is written (a test compares the
parquet with the stock path's): ~2.4 ms per frame, +9 %.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import io
import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from robot_si.data.records import EpisodeMeta, check_audit_value

logger = logging.getLogger(__name__)

STORE_FORMAT = "robot_si.episode_store/1"
STORE_FILE = "store.json"
SHARDS_DIR = "shards"
STAGING_DIR = ".staging"
SIDECAR_DIR = "robot_si"  # inside each shard, beside lerobot's meta/ and data/
EPISODES_FILE = "episodes.jsonl"
AUDIT_FILE = "audit.jsonl"
# The observation an episode ended on (after its last action: the scene the env judged), one per episode where
# the writer had it. LeRobot frames are (observation, action) pairs, so that last observation has no frame of
# its own; it lives beside them, in the sidecar, and stock lerobot never sees it.
TERMINAL_FILE = "terminal.npz"
TERMINAL_IDS = "episode_ids"
AUDIT_FIELD = "audit.gt_success"
SHARD_FILE = "shard.json"
STATE_KEY = "observation.state"
ACTION_KEY = "action"
IMAGE_PREFIX = "observation.images."
DONE_KEY = "next.done"
# Threads of lerobot's AsyncImageWriter per shard write: PNG encoding (zlib) releases the GIL.
IMAGE_WRITER_THREADS = 2

# Staging directories this process is writing right now (so opening a second store object in the same
# process never deletes a write in progress).
_ACTIVE_STAGING: set[str] = set()
_ACTIVE_STAGING_LOCK = threading.Lock()


@dataclasses.dataclass(kw_only=True, frozen=True)
class StoreSpec:
    """The shape every episode of a store must have; saved as `store.json`."""

    fps: int
    image_height: int
    image_width: int
    cameras: tuple[str, ...]
    state_dim: int
    action_dim: int
    use_videos: bool

    def __post_init__(self) -> None:
        for name in ("fps", "image_height", "image_width", "state_dim", "action_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0:
                raise ValueError(f"{name} must be a positive int (got {value!r})")
        if not self.cameras or any(not isinstance(c, str) or not c.isidentifier() for c in self.cameras):
            raise ValueError(f"cameras must be a non-empty tuple of names like ('front', 'wrist') (got {self.cameras!r})")
        if len(set(self.cameras)) != len(self.cameras):
            raise ValueError(f"cameras has duplicates: {self.cameras!r}")

    @property
    def image_keys(self) -> list[str]:
        return [IMAGE_PREFIX + camera for camera in self.cameras]

    @property
    def frame_keys(self) -> list[str]:
        """Keys `append_episode` takes and `load_episode` returns."""
        return [*self.image_keys, STATE_KEY, ACTION_KEY]

    def lerobot_features(self) -> dict[str, dict]:
        image_dtype = "video" if self.use_videos else "image"
        features: dict[str, dict] = {
            key: {
                "dtype": image_dtype,
                "shape": (self.image_height, self.image_width, 3),
                "names": ["height", "width", "channels"],
            }
            for key in self.image_keys
        }
        features[STATE_KEY] = {"dtype": "float32", "shape": (self.state_dim,), "names": None}
        features[ACTION_KEY] = {"dtype": "float32", "shape": (self.action_dim,), "names": None}
        # No next.reward: the only reward we could store is the simulator's ground truth, which is audit-only.
        features[DONE_KEY] = {"dtype": "bool", "shape": (1,), "names": None}
        return features

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "format": STORE_FORMAT,
            "fps": int(self.fps),
            "image_size": [int(self.image_height), int(self.image_width)],
            "cameras": list(self.cameras),
            "state_dim": int(self.state_dim),
            "action_dim": int(self.action_dim),
            "use_videos": bool(self.use_videos),
            "features": {k: {**v, "shape": list(v["shape"])} for k, v in self.lerobot_features().items()},
        }

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> StoreSpec:
        if data.get("format") != STORE_FORMAT:
            raise ValueError(f"unsupported store format {data.get('format')!r} (this code reads {STORE_FORMAT!r})")
        height, width = data["image_size"]
        return cls(
            fps=int(data["fps"]),
            image_height=int(height),
            image_width=int(width),
            cameras=tuple(data["cameras"]),
            state_dim=int(data["state_dim"]),
            action_dim=int(data["action_dim"]),
            use_videos=bool(data["use_videos"]),
        )

    @classmethod
    def build(
        cls,
        *,
        fps: int,
        image_size: int | Sequence[int],
        cameras: Sequence[str],
        state_dim: int,
        action_dim: int,
        use_videos: bool,
    ) -> StoreSpec:
        if isinstance(cameras, str):
            raise ValueError(f"cameras must be a sequence of names, e.g. ('front',), not the string {cameras!r}")
        if isinstance(image_size, int | np.integer):
            height = width = int(image_size)
        else:
            if len(image_size) != 2:
                raise ValueError(f"image_size must be an int or (height, width) (got {image_size!r})")
            height, width = (int(v) for v in image_size)
        return cls(
            fps=int(fps),
            image_height=height,
            image_width=width,
            cameras=tuple(cameras),
            state_dim=int(state_dim),
            action_dim=int(action_dim),
            use_videos=bool(use_videos),
        )

    def differences(self, other: StoreSpec) -> list[str]:
        return [
            f"{field.name}: store has {getattr(self, field.name)!r}, requested {getattr(other, field.name)!r}"
            for field in dataclasses.fields(self)
            if getattr(self, field.name) != getattr(other, field.name)
        ]


@dataclasses.dataclass
class _Shard:
    name: str
    path: Path
    metas: list[EpisodeMeta]
    replaces: list[str]
    _episode_rows: dict[int, dict[str, Any]] | None = None  # lerobot's meta/episodes rows, read lazily
    _terminals: dict[str, dict[str, np.ndarray]] | None = None  # terminal observations, read lazily


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def _quiet_datasets_progress() -> Iterator[None]:
    """lerobot's save_episode runs `datasets.map`, which prints a progress bar per episode; hide it."""
    import datasets

    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled:
            datasets.enable_progress_bars()


# Rows per `datasets.map` call when the writer embeds PNG bytes into the parquet table (see _fast_lerobot_writes).
EMBED_BATCH_ROWS = 1000


def _embed_images_batched(dataset):
    """lerobot's `io_utils.embed_images`, with the rows embedded a batch at a time instead of one by one.

    `embed_table_storage` works on a whole Arrow table, so the result is the same table; lerobot maps it with
    `batched=False`, which costs ~1.4 ms of Python per frame (datasets' per-row schema and fingerprint work),
    a third of the writer's CPU time (bench/store_throughput.py; with the fingerprint swap below, writing went
    from 3.6 to 2.4 ms of CPU per frame). tests/test_store.py checks that both write identical parquet data.
    """
    from datasets.table import embed_table_storage

    data_format = dataset.format
    # A fresh fingerprint: datasets would otherwise hash the function and its globals with dill (~25 ms a call).
    dataset = dataset.with_format("arrow").map(
        embed_table_storage, batched=True, batch_size=EMBED_BATCH_ROWS, new_fingerprint=uuid.uuid4().hex
    )
    return dataset.with_format(**data_format)


def _random_fingerprint(dataset) -> str:
    from datasets.fingerprint import generate_random_fingerprint

    return generate_random_fingerprint()


@contextlib.contextmanager
def _fast_lerobot_writes(enabled: bool = True) -> Iterator[None]:
    """While a shard is written, take two per-frame costs out of lerobot's save path; the data written is the same.

    1. lerobot's per-row image embedding becomes `_embed_images_batched`.
    2. `datasets.Dataset(...)` no longer hashes the whole in-memory episode table for a cache fingerprint
       (lerobot builds one per episode with `from_dict`; ~0.4 ms/frame); it gets a random one, which is what
       datasets itself falls back to when hashing fails. lerobot never uses datasets' cache for these tables.

    Each name is replaced only where it is still the library's own function (a lerobot/datasets that renames or
    changes one is left alone, and writing takes the stock path). The swap is process-wide while it lasts: a
    second write that overlaps it (two thread writers) finds the names taken and may finish on the stock path,
    and other `datasets` users in the process meanwhile get random fingerprints (cache misses, same data).
    """
    from datasets import arrow_dataset, fingerprint
    from lerobot.datasets import dataset_writer, io_utils

    swaps = [
        (dataset_writer, "embed_images", getattr(io_utils, "embed_images", None), _embed_images_batched),
        (arrow_dataset, "generate_fingerprint", getattr(fingerprint, "generate_fingerprint", None), _random_fingerprint),
    ]
    swaps = [(module, name, stock, fast) for module, name, stock, fast in swaps
             if enabled and stock is not None and getattr(module, name, None) is stock]
    for module, name, _, fast in swaps:
        setattr(module, name, fast)
    try:
        yield
    finally:
        for module, name, stock, _ in swaps:
            setattr(module, name, stock)


class EpisodeStore:
    """Append-only store of robot episodes; see the module docstring for the layout and crash safety.

    `EpisodeStore(root)` opens an existing store; `EpisodeStore.create(...)` makes a new one and
    `EpisodeStore.open_or_create(...)` does whichever applies (refusing a store of another shape).
    """

    # Write shards with `_fast_lerobot_writes` (the same parquet data as lerobot's stock path, ~40 % less CPU per
    # frame). False: lerobot's stock path, for comparison.
    fast_writes: bool = True

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.spec = self._read_spec(self.root)
        self._lock = threading.RLock()
        self._shards: dict[str, _Shard] = {}  # live shards, in append order
        self._shard_cache: dict[str, _Shard] = {}  # every shard read so far, by directory name
        self._listed_names: list[str] = []
        self._metas: dict[str, EpisodeMeta] = {}
        self._location: dict[str, tuple[str, int]] = {}  # episode_id -> (shard name, episode_index in shard)
        self._pending_ids: set[str] = set()
        self._clean_staging()
        self._finish_interrupted_compaction()
        self.refresh()

    # ── creation / opening ─────────────────────────────────────────────

    @classmethod
    def create(
        cls,
        root: str | os.PathLike[str],
        *,
        fps: int,
        image_size: int | Sequence[int],
        cameras: Sequence[str] = ("front",),
        state_dim: int,
        action_dim: int,
        use_videos: bool = False,
    ) -> EpisodeStore:
        """Make an empty store at `root` (which must not exist or be an empty directory)."""
        root = Path(root)
        spec = StoreSpec.build(
            fps=fps, image_size=image_size, cameras=cameras, state_dim=state_dim, action_dim=action_dim,
            use_videos=use_videos,
        )
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise FileExistsError(
                f"cannot create an episode store at {root}: it exists and is not an empty directory. "
                f"Open it with EpisodeStore({str(root)!r}) or pick a new root."
            )
        (root / SHARDS_DIR).mkdir(parents=True, exist_ok=True)
        _write_json_atomic(root / STORE_FILE, spec.to_json_dict())
        return cls(root)

    @classmethod
    def open_or_create(
        cls,
        root: str | os.PathLike[str],
        *,
        fps: int,
        image_size: int | Sequence[int],
        cameras: Sequence[str] = ("front",),
        state_dim: int,
        action_dim: int,
        use_videos: bool = False,
    ) -> EpisodeStore:
        """Open the store at `root` if there is one (it must have this shape), else create it."""
        root = Path(root)
        requested = StoreSpec.build(
            fps=fps, image_size=image_size, cameras=cameras, state_dim=state_dim, action_dim=action_dim,
            use_videos=use_videos,
        )
        if not (root / STORE_FILE).exists():
            return cls.create(
                root, fps=fps, image_size=image_size, cameras=cameras, state_dim=state_dim,
                action_dim=action_dim, use_videos=use_videos,
            )
        store = cls(root)
        differences = store.spec.differences(requested)
        if differences:
            raise ValueError(
                f"the store at {root} has a different shape than requested ({'; '.join(differences)}). "
                "Use the store's settings or a different root."
            )
        return store

    @staticmethod
    def _read_spec(root: Path) -> StoreSpec:
        path = root / STORE_FILE
        if not path.exists():
            hint = ""
            if (root / "meta" / "info.json").exists():
                hint = (" It looks like a plain LeRobotDataset; robot_si stores are directories of such datasets "
                        "(see robot_si/data/store.py).")
            elif (root / SHARDS_DIR).is_dir():
                hint = f" Its shards are there: rebuild the file with EpisodeStore.rebuild_manifest({str(root)!r})."
            raise FileNotFoundError(
                f"no episode store at {root}: {path} is missing.{hint} Create a store with "
                f"EpisodeStore.create({str(root)!r}, fps=..., image_size=..., state_dim=..., action_dim=...) "
                f"or `robot-si demos TASK --root {root}`."
            )
        try:
            return StoreSpec.from_json_dict(json.loads(path.read_text()))
        except (ValueError, KeyError, TypeError) as error:
            raise RuntimeError(
                f"{path} is corrupt ({type(error).__name__}: {error}). The episodes under {root / SHARDS_DIR} are "
                f"not affected; rebuild the file from them with EpisodeStore.rebuild_manifest({str(root)!r})."
            ) from error

    @staticmethod
    def rebuild_manifest(root: str | os.PathLike[str]) -> StoreSpec:
        """Recreate a lost or corrupt `store.json` from the first shard's LeRobot `meta/info.json`."""
        root = Path(root)
        shard_dirs = sorted(p for p in (root / SHARDS_DIR).glob("*") if (p / "meta" / "info.json").exists())
        if not shard_dirs:
            raise FileNotFoundError(
                f"cannot rebuild {root / STORE_FILE}: no shard with meta/info.json under {root / SHARDS_DIR}; "
                "with no episodes there is nothing to recover, create a new store instead."
            )
        info = json.loads((shard_dirs[0] / "meta" / "info.json").read_text())
        features = info["features"]
        image_keys = [k for k, v in features.items() if v["dtype"] in ("image", "video")]
        height, width = features[image_keys[0]]["shape"][:2]
        spec = StoreSpec(
            fps=int(info["fps"]),
            image_height=int(height),
            image_width=int(width),
            cameras=tuple(k.removeprefix(IMAGE_PREFIX) for k in image_keys),
            state_dim=int(features[STATE_KEY]["shape"][0]),
            action_dim=int(features[ACTION_KEY]["shape"][0]),
            use_videos=features[image_keys[0]]["dtype"] == "video",
        )
        _write_json_atomic(root / STORE_FILE, spec.to_json_dict())
        return spec

    # ── index ──────────────────────────────────────────────────────────

    def _clean_staging(self) -> None:
        staging = self.root / STAGING_DIR
        if not staging.is_dir():
            return
        for entry in sorted(staging.iterdir()):
            pid_text = entry.name.split("-", 1)[0]
            pid = int(pid_text) if pid_text.isdigit() else -1
            with _ACTIVE_STAGING_LOCK:
                in_progress_here = str(entry) in _ACTIVE_STAGING
            if in_progress_here or (pid != os.getpid() and pid > 0 and _pid_alive(pid)):
                continue  # another live writer is using it
            logger.warning(
                "episode store %s: removing %s, an episode write interrupted before it was committed "
                "(its episode was never part of the store)", self.root, entry,
            )
            shutil.rmtree(entry, ignore_errors=True)

    def _finish_interrupted_compaction(self) -> None:
        shards_dir = self.root / SHARDS_DIR
        if not shards_dir.is_dir():
            return
        for shard_dir in sorted(shards_dir.iterdir()):
            shard_file = shard_dir / SIDECAR_DIR / SHARD_FILE
            if not shard_file.exists():
                continue
            for name in json.loads(shard_file.read_text()).get("replaces", []):
                if (shards_dir / name).exists():
                    logger.warning(
                        "episode store %s: removing shard %s, already merged into %s by an interrupted compact()",
                        self.root, name, shard_dir.name,
                    )
                    shutil.rmtree(shards_dir / name, ignore_errors=True)

    def _read_shard(self, path: Path) -> _Shard:
        episodes_file = path / SIDECAR_DIR / EPISODES_FILE
        info_file = path / "meta" / "info.json"
        how_to_fix = (
            f"move the directory out of {self.root / SHARDS_DIR} (e.g. into {self.root / 'quarantine'}) to open the "
            "store without it; the other shards are not affected"
        )
        for required in (episodes_file, info_file):
            if not required.exists():
                raise RuntimeError(f"shard {path} is damaged: {required} is missing; {how_to_fix}.")
        try:
            metas = [EpisodeMeta.from_json_dict(json.loads(line)) for line in episodes_file.read_text().splitlines() if line]
            info = json.loads(info_file.read_text())
        except (ValueError, TypeError) as error:
            raise RuntimeError(f"shard {path} is damaged: cannot parse {episodes_file} or {info_file} ({error}); {how_to_fix}.") from error
        if info.get("total_episodes") != len(metas):
            raise RuntimeError(
                f"shard {path} is damaged: {info_file} says {info.get('total_episodes')} episodes but {episodes_file} "
                f"lists {len(metas)}; {how_to_fix}."
            )
        shard_file = path / SIDECAR_DIR / SHARD_FILE
        replaces = json.loads(shard_file.read_text()).get("replaces", []) if shard_file.exists() else []
        return _Shard(name=path.name, path=path, metas=metas, replaces=replaces)

    def refresh(self) -> None:
        """Pick up shards committed by other processes (and drop shards another process compacted away)."""
        with self._lock:
            shards_dir = self.root / SHARDS_DIR
            names = sorted(p.name for p in shards_dir.iterdir() if p.is_dir()) if shards_dir.is_dir() else []
            if names == self._listed_names:
                return
            read: dict[str, _Shard] = {}
            errors: dict[str, RuntimeError] = {}
            for name in names:
                if name in self._shard_cache:
                    read[name] = self._shard_cache[name]
                    continue
                try:
                    read[name] = self._read_shard(shards_dir / name)
                except RuntimeError as error:
                    errors[name] = error
            superseded = {old for shard in read.values() for old in shard.replaces}
            for name, error in errors.items():
                # a source being deleted by another process's compact() is not damage
                if name not in superseded and (shards_dir / name).exists():
                    raise error
            metas: dict[str, EpisodeMeta] = {}
            location: dict[str, tuple[str, int]] = {}
            for name, shard in read.items():
                if name in superseded:
                    continue
                for index, meta in enumerate(shard.metas):
                    if meta.episode_id in metas:
                        logger.warning(
                            "episode store %s: episode %r is in shards %s and %s; using the first. Delete %s to "
                            "silence this.", self.root, meta.episode_id, location[meta.episode_id][0], name, name,
                        )
                        continue
                    metas[meta.episode_id] = meta
                    location[meta.episode_id] = (name, index)
            self._shard_cache = read
            self._listed_names = names if not errors else []
            self._shards = {name: shard for name, shard in read.items() if name not in superseded}
            self._metas, self._location = metas, location

    # ── queries ────────────────────────────────────────────────────────

    def episodes(self, source: str | None = None, round: int | None = None, task: str | None = None) -> list[EpisodeMeta]:
        """Episode metadata in append order, optionally filtered. Never includes ground truth."""
        self.refresh()
        with self._lock:
            return [
                dataclasses.replace(meta)
                for meta in self._metas.values()
                if (source is None or meta.source == source)
                and (round is None or meta.round == round)
                and (task is None or meta.task_name == task)
            ]

    def __contains__(self, episode_id: object) -> bool:
        if episode_id not in self._metas:
            self.refresh()
        return episode_id in self._metas

    def __len__(self) -> int:
        self.refresh()
        return len(self._metas)

    @property
    def num_episodes(self) -> int:
        return len(self)

    @property
    def num_frames(self) -> int:
        self.refresh()
        return sum(meta.num_frames for meta in self._metas.values())

    @property
    def shard_paths(self) -> list[Path]:
        """The shard directories, each a stock LeRobotDataset v3."""
        self.refresh()
        return [shard.path for shard in self._shards.values()]

    def get_meta(self, episode_id: str) -> EpisodeMeta:
        if episode_id not in self._metas:
            self.refresh()
        if episode_id not in self._metas:
            raise KeyError(self._unknown_episode_message(episode_id))
        return dataclasses.replace(self._metas[episode_id])

    def _unknown_episode_message(self, episode_id: str) -> str:
        sample = ", ".join(repr(e) for e in list(self._metas)[:3])
        return (
            f"episode {episode_id!r} is not in the store at {self.root} ({len(self._metas)} episodes"
            f"{', e.g. ' + sample if sample else ''}); list them with store.episodes()"
        )

    def audit_table(self) -> dict[str, bool | None]:
        """Simulator ground truth per episode, for evaluation and verifier audit ONLY (never for labels/training)."""
        self.refresh()
        with self._lock:
            table: dict[str, bool | None] = dict.fromkeys(self._metas)
            for shard in self._shards.values():
                audit_file = shard.path / SIDECAR_DIR / AUDIT_FILE
                if not audit_file.exists():
                    continue
                for line in audit_file.read_text().splitlines():
                    if line:
                        row = json.loads(line)
                        if self._location.get(row["episode_id"], ("",))[0] == shard.name:
                            table[row["episode_id"]] = row[AUDIT_FIELD]
            return table

    # ── reading episodes ───────────────────────────────────────────────

    def load_episode(self, episode_id: str) -> dict[str, np.ndarray]:
        """Arrays of one episode: `observation.images.<cam>` (T,H,W,3) uint8, `observation.state` (T,S), `action` (T,A)."""
        try:
            return self._load_episode(episode_id)
        except FileNotFoundError:
            # another process's compact() moved the episode into a merged shard since our last look
            self._listed_names = []
            self.refresh()
            return self._load_episode(episode_id)

    def has_terminal(self, episode_id: str) -> bool:
        """Whether the episode's terminal observation was recorded (see `load_terminal`)."""
        return self._terminal(episode_id) is not None

    def load_terminal(self, episode_id: str) -> dict[str, np.ndarray] | None:
        """The observation the episode ended on (after its last action), or None where it was not recorded
        (episodes written before terminal observations were kept, imports, episodes that ended in an error)."""
        terminal = self._terminal(episode_id)
        return None if terminal is None else {key: value.copy() for key, value in terminal.items()}

    def _terminal(self, episode_id: str) -> dict[str, np.ndarray] | None:
        if episode_id not in self._location:
            self.refresh()
        with self._lock:
            if episode_id not in self._location:
                raise KeyError(self._unknown_episode_message(episode_id))
            shard = self._shards[self._location[episode_id][0]]
        if not shard.path.exists():  # another process's compact() merged it away since our last look
            self._listed_names = []
            self.refresh()
            return self._terminal(episode_id) if shard.name not in self._shards else None
        if shard._terminals is None:
            shard._terminals = _read_terminals(shard.path)
        return shard._terminals.get(episode_id)

    def _load_episode(self, episode_id: str) -> dict[str, np.ndarray]:
        import pyarrow.parquet as pq

        if episode_id not in self._location:
            self.refresh()  # maybe another process committed it since
        with self._lock:
            if episode_id not in self._location:
                raise KeyError(self._unknown_episode_message(episode_id))
            shard_name, episode_index = self._location[episode_id]
            shard = self._shards[shard_name]
        row = self._episode_row(shard, episode_index)
        data_path = shard.path / f"data/chunk-{row['data/chunk_index']:03d}/file-{row['data/file_index']:03d}.parquet"
        columns = [STATE_KEY, ACTION_KEY, "frame_index"] + ([] if self.spec.use_videos else self.spec.image_keys)
        table = pq.read_table(data_path, columns=columns, filters=[("episode_index", "=", episode_index)])
        order = np.argsort(np.asarray(table.column("frame_index").to_numpy()), kind="stable")
        frames: dict[str, np.ndarray] = {}
        for key in self.spec.image_keys:
            if self.spec.use_videos:
                frames[key] = self._decode_video(shard, row, key, len(order))
            else:
                column = table.column(key).to_pylist()
                frames[key] = np.stack([_decode_png(column[i]["bytes"]) for i in order])
        for key in (STATE_KEY, ACTION_KEY):
            values = np.asarray(table.column(key).to_pylist(), dtype=np.float32)
            frames[key] = values[order]
        return frames

    def _episode_row(self, shard: _Shard, episode_index: int) -> dict[str, Any]:
        import pyarrow.parquet as pq

        if shard._episode_rows is None:
            rows: dict[int, dict[str, Any]] = {}
            for path in sorted((shard.path / "meta" / "episodes").glob("chunk-*/file-*.parquet")):
                columns = [
                    c for c in pq.read_schema(path).names
                    if c in ("episode_index", "data/chunk_index", "data/file_index") or c.startswith("videos/")
                ]
                for row in pq.read_table(path, columns=columns).to_pylist():
                    rows[int(row["episode_index"])] = row
            shard._episode_rows = rows
        return shard._episode_rows[episode_index]

    def _decode_video(self, shard: _Shard, row: dict[str, Any], key: str, num_frames: int) -> np.ndarray:
        from lerobot.datasets.video_utils import decode_video_frames

        video_path = shard.path / (
            f"videos/{key}/chunk-{row[f'videos/{key}/chunk_index']:03d}/file-{row[f'videos/{key}/file_index']:03d}.mp4"
        )
        start = float(row[f"videos/{key}/from_timestamp"])
        timestamps = [start + i / self.spec.fps for i in range(num_frames)]
        frames = decode_video_frames(video_path, timestamps, tolerance_s=1e-4, return_uint8=True)
        return np.ascontiguousarray(frames.numpy().transpose(0, 2, 3, 1))

    # ── writing ────────────────────────────────────────────────────────

    def validate_episode(self, frames: dict[str, np.ndarray], meta: EpisodeMeta) -> dict[str, np.ndarray]:
        """Check an episode against the store's shape; returns the arrays in the stored dtypes."""
        if not isinstance(meta, EpisodeMeta):
            raise ValueError(f"meta must be an EpisodeMeta (got {type(meta).__name__})")
        expected, given = set(self.spec.frame_keys), set(frames)
        if expected != given:
            raise ValueError(
                f"episode {meta.episode_id!r} has frame keys {sorted(given)} but the store at {self.root} expects "
                f"{sorted(expected)} (missing {sorted(expected - given)}, unexpected {sorted(given - expected)})"
            )
        arrays = {key: np.asarray(value) for key, value in frames.items()}
        num_frames = arrays[ACTION_KEY].shape[0] if arrays[ACTION_KEY].ndim else 0
        if num_frames == 0:
            raise ValueError(f"episode {meta.episode_id!r} has no frames; the store keeps only episodes with >= 1 frame")
        image_shape = (self.spec.image_height, self.spec.image_width, 3)
        for key in self.spec.image_keys:
            array = arrays[key]
            if array.dtype != np.uint8 or array.shape[1:] != image_shape:
                raise ValueError(
                    f"episode {meta.episode_id!r}: {key} is {array.dtype} {array.shape}, the store expects uint8 "
                    f"(T, {image_shape[0]}, {image_shape[1]}, 3); resize or convert the images, or use a store "
                    "created with this image size"
                )
        for key, dim in ((STATE_KEY, self.spec.state_dim), (ACTION_KEY, self.spec.action_dim)):
            array = arrays[key]
            if array.ndim != 2 or array.shape[1] != dim or not np.issubdtype(array.dtype, np.floating):
                raise ValueError(
                    f"episode {meta.episode_id!r}: {key} is {array.dtype} {array.shape}, the store expects float "
                    f"(T, {dim})"
                )
            if not np.isfinite(array).all():
                raise ValueError(f"episode {meta.episode_id!r}: {key} contains NaN or inf; the store refuses it")
            arrays[key] = array.astype(np.float32, copy=False)
        lengths = {key: array.shape[0] for key, array in arrays.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"episode {meta.episode_id!r}: arrays have different lengths {lengths}")
        if meta.num_frames != num_frames:
            raise ValueError(
                f"episode {meta.episode_id!r}: meta.num_frames is {meta.num_frames} but the arrays have {num_frames} "
                "frames; set num_frames to the episode length"
            )
        return arrays

    def validate_terminal(self, terminal: dict[str, np.ndarray] | None, meta: EpisodeMeta) -> dict[str, np.ndarray] | None:
        """Check a terminal observation (one observation: the store's image keys (H, W, 3) and state (S,))."""
        if terminal is None:
            return None
        expected = set(self.spec.image_keys) | {STATE_KEY}
        if set(terminal) != expected:
            raise ValueError(
                f"episode {meta.episode_id!r}: the terminal observation has keys {sorted(terminal)} but the store "
                f"expects {sorted(expected)} (one observation, no action)"
            )
        frames = {key: np.asarray(value)[None] for key, value in terminal.items()}
        frames[ACTION_KEY] = np.zeros((1, self.spec.action_dim), np.float32)  # checked with the frame rules
        checked = self.validate_episode(frames, dataclasses.replace(meta, num_frames=1))
        return {key: checked[key][0] for key in expected}

    def append_episode(
        self, frames: dict[str, np.ndarray], meta: EpisodeMeta, *, audit_gt_success: bool | None = None,
        terminal: dict[str, np.ndarray] | None = None,
    ) -> None:
        """Write one episode and commit it atomically; returns once it is durable in the store.

        `terminal`: the observation after the last action (what the env judged the episode on), when known."""
        arrays = self.validate_episode(frames, meta)
        terminal_arrays = self.validate_terminal(terminal, meta)
        audit_value = check_audit_value(audit_gt_success)
        self._reserve_id(meta.episode_id)
        try:
            self._write_shard([(arrays, meta, audit_value, terminal_arrays)])
        finally:
            with self._lock:
                self._pending_ids.discard(meta.episode_id)

    def _reserve_id(self, episode_id: str) -> None:
        self.refresh()
        with self._lock:
            if episode_id in self._metas or episode_id in self._pending_ids:
                raise ValueError(
                    f"episode {episode_id!r} is already in the store at {self.root}; episodes are immutable, "
                    "use a new episode_id"
                )
            self._pending_ids.add(episode_id)

    def _new_staging_dir(self) -> Path:
        staging = self.root / STAGING_DIR
        staging.mkdir(exist_ok=True)
        path = staging / f"{os.getpid()}-{uuid.uuid4().hex}"
        with _ACTIVE_STAGING_LOCK:
            _ACTIVE_STAGING.add(str(path))
        return path

    def _commit(self, staging_path: Path, *, suffix: str = "") -> str:
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}{suffix}"
        os.rename(staging_path, self.root / SHARDS_DIR / name)  # the commit point
        return name

    def _write_shard(self, episodes: list[tuple[dict[str, np.ndarray], EpisodeMeta, bool | None, dict | None]]) -> str:
        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        staging_path = self._new_staging_dir()
        try:
            with _quiet_datasets_progress(), _fast_lerobot_writes(self.fast_writes):
                dataset = LeRobotDataset.create(
                    repo_id=f"robot_si/{staging_path.name}",
                    fps=self.spec.fps,
                    features=self.spec.lerobot_features(),
                    root=staging_path,
                    use_videos=self.spec.use_videos,
                    image_writer_threads=IMAGE_WRITER_THREADS,
                )
                try:
                    for arrays, meta, _, _ in episodes:
                        num_frames = meta.num_frames
                        for t in range(num_frames):
                            frame = {key: arrays[key][t] for key in self.spec.frame_keys}
                            frame[DONE_KEY] = np.array([t == num_frames - 1])
                            frame["task"] = meta.instruction
                            dataset.add_frame(frame)
                        dataset.save_episode()
                finally:
                    dataset.finalize()
            sidecar = staging_path / SIDECAR_DIR
            sidecar.mkdir()
            (sidecar / EPISODES_FILE).write_text("".join(json.dumps(m.to_json_dict()) + "\n" for _, m, _, _ in episodes))
            (sidecar / AUDIT_FILE).write_text(
                "".join(json.dumps({"episode_id": m.episode_id, AUDIT_FIELD: a}) + "\n" for _, m, a, _ in episodes)
            )
            _write_terminals(sidecar, {m.episode_id: t for _, m, _, t in episodes if t is not None})
            name = self._commit(staging_path)
        except BaseException:
            shutil.rmtree(staging_path, ignore_errors=True)
            raise
        finally:
            with _ACTIVE_STAGING_LOCK:
                _ACTIVE_STAGING.discard(str(staging_path))
        self.refresh()
        return name

    def writer(self, *, max_pending: int = 32, in_subprocess: bool = True, max_batch: int = 16) -> EpisodeWriter:
        """A background writer (context manager): `submit()` returns at once; episodes commit in order, those that
        queued behind a write sharing one shard (at most `max_batch`)."""
        return EpisodeWriter(self, max_pending=max_pending, in_subprocess=in_subprocess, max_batch=max_batch)

    # ── compaction / export ────────────────────────────────────────────

    def compact(self) -> str | None:
        """Merge all current shards into one (fewer files, faster open); crash-safe. Returns the new shard name."""
        lock_path = self.root / ".compact.lock"
        try:
            lock_fd = os.open(lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            holder = lock_path.read_text().strip() or "?"
            if holder.isdigit() and not _pid_alive(int(holder)):
                lock_path.unlink(missing_ok=True)
                return self.compact()
            raise RuntimeError(
                f"another compact() (pid {holder}) is running on {self.root}; wait for it, or delete {lock_path} "
                "if that process is gone"
            ) from None
        try:
            os.write(lock_fd, str(os.getpid()).encode())
            os.close(lock_fd)
            self.refresh()
            with self._lock:
                sources = list(self._shards.values())
            if len(sources) < 2:
                return None
            staging_path = self._new_staging_dir()
            try:
                self._aggregate([s.path for s in sources], staging_path)
                sidecar = staging_path / SIDECAR_DIR
                sidecar.mkdir()
                metas = [m for s in sources for m in s.metas]
                (sidecar / EPISODES_FILE).write_text("".join(json.dumps(m.to_json_dict()) + "\n" for m in metas))
                audit_lines = [
                    line for s in sources if (s.path / SIDECAR_DIR / AUDIT_FILE).exists()
                    for line in (s.path / SIDECAR_DIR / AUDIT_FILE).read_text().splitlines() if line
                ]
                (sidecar / AUDIT_FILE).write_text("".join(line + "\n" for line in audit_lines))
                _write_terminals(sidecar, {episode_id: terminal for source in sources
                                           for episode_id, terminal in _read_terminals(source.path).items()})
                (sidecar / SHARD_FILE).write_text(json.dumps({"replaces": [s.name for s in sources]}, indent=2) + "\n")
                name = f"{sources[0].name}~c{uuid.uuid4().hex[:8]}"  # sorts where its first source sorted
                os.rename(staging_path, self.root / SHARDS_DIR / name)
            except BaseException:
                shutil.rmtree(staging_path, ignore_errors=True)
                raise
            finally:
                with _ACTIVE_STAGING_LOCK:
                    _ACTIVE_STAGING.discard(str(staging_path))
            for source in sources:
                shutil.rmtree(source.path, ignore_errors=True)
            self.refresh()
            return name
        finally:
            lock_path.unlink(missing_ok=True)

    def export_lerobot(self, out_root: str | os.PathLike[str], *, repo_id: str = "robot_si/export") -> Path:
        """Write the whole store as ONE LeRobotDataset v3 at `out_root` (plus robot_si/episodes.jsonl)."""
        out_root = Path(out_root)
        if out_root.exists():
            raise FileExistsError(f"{out_root} exists; export_lerobot writes a new dataset, pick a new path")
        sources = [shard.path for shard in self._shards.values()] if len(self) else []
        if not sources:
            raise ValueError(f"the store at {self.root} has no episodes to export")
        self._aggregate(sources, out_root, repo_id=repo_id)
        (out_root / SIDECAR_DIR).mkdir()
        (out_root / SIDECAR_DIR / EPISODES_FILE).write_text(
            "".join(json.dumps(m.to_json_dict()) + "\n" for s in self._shards.values() for m in s.metas)
        )
        return out_root

    @staticmethod
    def _aggregate(sources: list[Path], out_root: Path, *, repo_id: str = "robot_si/compact") -> None:
        from lerobot.datasets.aggregate import aggregate_datasets

        with _quiet_datasets_progress():
            aggregate_datasets(
                repo_ids=[f"robot_si/{p.name}" for p in sources],
                aggr_repo_id=repo_id,
                roots=sources,
                aggr_root=out_root,
            )


class EpisodeWriter:
    """Writes episodes in the background so collection never waits on PNG/video encoding or disk.

    By default the writing happens in one spawned worker process at lower CPU priority (nice +10):
    lerobot's save path is mostly Python (datasets.map, statistics), so in a thread it would hold the GIL
    against the simulator (measured in bench/store_throughput.py). `in_subprocess=False` uses a thread
    instead (no process start-up, for tiny jobs and tests).
    Episodes are committed in submission order. While the worker writes, newly submitted episodes queue up; the
    next write takes all of them (up to `max_batch`) as ONE shard, committed atomically: a shard costs ~0.1 s of
    fixed work (dataset creation, statistics, finalize) however short its episodes, so batching is what lets
    the writer keep up with many short episodes. When the writer keeps up, each episode is its own shard. At most
    `max_pending` episodes wait in memory; `submit` blocks beyond that (back-pressure instead of unbounded
    memory). Leaving the `with` block (or `close()`) waits for all of them and raises if any failed.
    An episode counts as stored once its future is done: a crash loses only episodes still pending.
    """

    def __init__(self, store: EpisodeStore, *, max_pending: int = 32, in_subprocess: bool = True,
                 max_batch: int = 16) -> None:
        if max_pending < 1 or max_batch < 1:
            raise ValueError(f"max_pending and max_batch must be >= 1 (got {max_pending}, {max_batch})")
        self.store = store
        if in_subprocess:
            import multiprocessing

            self._executor: concurrent.futures.Executor = concurrent.futures.ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn"), initializer=_lower_priority
            )
        else:
            self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="episode-writer")
        self._in_subprocess = in_subprocess
        self._max_batch = max_batch
        self._slots = threading.BoundedSemaphore(max_pending)
        self._futures: list[concurrent.futures.Future[str]] = []
        self._queue: collections.deque = collections.deque()  # (job, future) not yet handed to the worker
        self._queue_changed = threading.Condition()
        self._closed = False
        self._dispatcher = threading.Thread(target=self._dispatch, name="episode-writer-dispatch", daemon=True)
        self._dispatcher.start()

    def submit(
        self, frames: dict[str, np.ndarray], meta: EpisodeMeta, *, audit_gt_success: bool | None = None,
        terminal: dict[str, np.ndarray] | None = None,
    ) -> concurrent.futures.Future[str]:
        """Queue one episode; the future's result is the shard name once the episode is committed."""
        if self._closed:
            raise RuntimeError("this EpisodeWriter is closed; open a new one with store.writer()")
        arrays = self.store.validate_episode(frames, meta)  # fail fast, in the caller's thread
        terminal = self.store.validate_terminal(terminal, meta)
        audit_value = check_audit_value(audit_gt_success)
        arrays = {key: np.array(value, copy=True) for key, value in arrays.items()}  # caller may reuse buffers
        if terminal is not None:
            terminal = {key: np.array(value, copy=True) for key, value in terminal.items()}
        self.store._reserve_id(meta.episode_id)
        self._slots.acquire()
        future: concurrent.futures.Future[str] = concurrent.futures.Future()
        future.add_done_callback(lambda _: self._release(meta.episode_id))
        self._futures.append(future)
        with self._queue_changed:
            self._queue.append(((arrays, meta, audit_value, terminal), future))
            self._queue_changed.notify()
        return future

    def _dispatch(self) -> None:
        """Hands the queued episodes to the worker, as many as are waiting (<= max_batch) per shard, in order."""
        while True:
            with self._queue_changed:
                while not self._queue and not self._closed:
                    self._queue_changed.wait()
                if not self._queue:
                    return  # closed and drained
                batch = [self._queue.popleft() for _ in range(min(self._max_batch, len(self._queue)))]
            jobs = [job for job, _ in batch]
            try:
                if self._in_subprocess:
                    name = self._executor.submit(_write_shard_job, str(self.store.root), jobs).result()
                else:
                    name = self._executor.submit(self.store._write_shard, jobs).result()
            except BaseException as error:  # noqa: BLE001 — reported through each episode's future
                for _, future in batch:
                    future.set_exception(error)
                continue
            for _, future in batch:
                future.set_result(name)

    def _release(self, episode_id: str) -> None:
        with self.store._lock:
            self.store._pending_ids.discard(episode_id)
        self._slots.release()

    def close(self) -> None:
        if self._closed:
            return
        with self._queue_changed:
            self._closed = True
            self._queue_changed.notify()
        self._dispatcher.join()
        self._executor.shutdown(wait=True)
        errors = [f.exception() for f in self._futures if f.exception() is not None]
        self.store.refresh()
        if errors:
            raise RuntimeError(
                f"{len(errors)} of {len(self._futures)} episodes failed to write; first error: {errors[0]}"
            ) from errors[0]

    def __enter__(self) -> EpisodeWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


_WORKER_STORES: dict[str, EpisodeStore] = {}
WRITER_NICENESS = 10


def _lower_priority() -> None:
    """The writer process yields the CPU to the simulator/policy; it catches up whenever they wait."""
    with contextlib.suppress(OSError, AttributeError):
        os.nice(WRITER_NICENESS)


def _write_shard_job(root: str, episodes: list[tuple[dict[str, np.ndarray], EpisodeMeta, bool | None, dict | None]]) -> str:
    """Runs in the writer process: commit the episodes as one shard."""
    store = _WORKER_STORES.get(root)
    if store is None:
        store = _WORKER_STORES[root] = EpisodeStore(root)
    return store._write_shard(episodes)


def _write_terminals(sidecar: Path, terminals: dict[str, dict[str, np.ndarray]]) -> None:
    """One npz per shard: `episode_ids` plus one stacked array per observation key (nothing when empty)."""
    if not terminals:
        return
    ids = list(terminals)
    keys = sorted(terminals[ids[0]])
    arrays = {key: np.stack([terminals[e][key] for e in ids]) for key in keys}
    with open(sidecar / TERMINAL_FILE, "wb") as handle:
        np.savez(handle, **{TERMINAL_IDS: np.array(ids)}, **arrays)


def _read_terminals(shard_path: Path) -> dict[str, dict[str, np.ndarray]]:
    path = shard_path / SIDECAR_DIR / TERMINAL_FILE
    if not path.exists():
        return {}
    try:
        with np.load(path) as data:
            ids = [str(e) for e in data[TERMINAL_IDS]]
            keys = [k for k in data.files if k != TERMINAL_IDS]
            stacked = {key: data[key] for key in keys}
    except (OSError, ValueError, KeyError) as error:
        raise RuntimeError(f"{path} is damaged ({error}); delete it to read the shard without terminal observations") from error
    return {episode_id: {key: stacked[key][i] for key in keys} for i, episode_id in enumerate(ids)}


def _decode_png(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))
