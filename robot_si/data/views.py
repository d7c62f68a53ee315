"""`TrainingView`: a torch Dataset over one or more stores and a label version, for weighted behaviour cloning.

Owns how stored episodes become training samples: per frame the images (float CHW in [0, 1]), the state,
an action chunk of `horizon` steps starting at the frame (padded at the episode end by repeating the last
action, flagged in `action_is_pad`), the instruction, the per-frame loss `weight` and `advantage_indicator`
from the label set (without one, a source's intended outcome: demos "good", near misses "bad"), and sampling
ratios across sources or stores (`sample_weights`, `make_sampler`).
Decoded episodes are kept in memory as uint8/float32 arrays (a few thousand 64 px frames are tens of MB).
Episodes whose metadata records a collection error (`EpisodeMeta.error`: the policy or env faulted, so the
frames stop mid-task or hold a placeholder action) are never training samples; they are listed in
`skipped_episodes`.
Computes no labels or weights itself and never reads the store's audit ground truth.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from robot_si.data.labels import LabelSet, list_label_versions, read_label_set
from robot_si.data.records import EPISODE_SOURCES, INTENDED_OUTCOME
from robot_si.data.store import ACTION_KEY, STATE_KEY, EpisodeStore


@dataclass
class _Episode:
    episode_id: str
    source: str
    instruction: str
    task_name: str
    dataset_index: int
    images: dict[str, np.ndarray]  # key -> (T, H, W, 3) uint8
    state: np.ndarray  # (T, S) float32
    action: np.ndarray  # (T, A) float32
    weight: np.ndarray  # (T,) float32
    advantage_indicator: np.ndarray  # (T,) int64: 0 bad, 1 good, -1 unknown


class TrainingView(torch.utils.data.Dataset):
    """Frames of the selected episodes with action chunks, weights and sampling ratios.

    Args:
        stores: stores or their paths; `dataset_index` in each sample is the position in this list.
        horizon: action chunk length H.
        label_version: label version (or "latest") applied to every store that has it; a store without
            it contributes weight 1.0 frames (e.g. the demo anchor). One name, or one per store (None = no labels).
        mix: sampling ratios, keyed by source ("demo", "autonomous", ...) or by store ("store0", "store1", ...
            or the store's path); every group present needs a ratio. None samples frames uniformly.
        sources: keep only episodes of these sources (default: every source but "near_miss", the demonstrator's
            deliberate failures, which are never imitated unless named here).
        min_weight: frames whose weight is <= min_weight are dropped (the default drops zero-weight frames,
            which contribute nothing to a weighted loss).
        balance_tasks: within each mix group (or over all frames without `mix`), every task gets the same share
            of the samples, whatever its frame count. Autonomous data is skewed to the tasks the policy already
            solves (accepted episodes), so without this the easy task's frames crowd out the hard ones'.
    """

    def __init__(
        self,
        stores: Sequence[EpisodeStore | str | os.PathLike[str]],
        *,
        horizon: int,
        label_version: str | Sequence[str | None] | None = None,
        mix: dict[str, float] | None = None,
        sources: Sequence[str] | None = None,
        min_weight: float = 0.0,
        balance_tasks: bool = False,
    ) -> None:
        if isinstance(stores, EpisodeStore | str | os.PathLike):
            stores = [stores]
        if not stores:
            raise ValueError("TrainingView needs at least one store")
        if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
            raise ValueError(f"horizon must be a positive int (got {horizon!r})")
        self.stores = [s if isinstance(s, EpisodeStore) else EpisodeStore(s) for s in stores]
        self.horizon = horizon
        self.min_weight = float(min_weight)
        specs = {(s.spec.image_height, s.spec.image_width, s.spec.state_dim, s.spec.action_dim, s.spec.cameras) for s in self.stores}
        if len(specs) > 1:
            raise ValueError(
                "stores in one TrainingView must share image size, cameras, state and action dims; got "
                + ", ".join(f"{s.root}: {s.spec}" for s in self.stores)
            )
        versions = self._versions_per_store(label_version)
        self.label_versions = versions
        self.image_keys = self.stores[0].spec.image_keys

        self.episodes: list[_Episode] = []
        self.skipped_episodes: dict[str, str] = {}  # episode_id -> the collection error that excluded it
        for dataset_index, (store, version) in enumerate(zip(self.stores, versions, strict=True)):
            labels = read_label_set(store.root, version) if version else None
            for meta in store.episodes():
                if sources is not None and meta.source not in sources:
                    continue
                if sources is None and INTENDED_OUTCOME.get(meta.source) is False:
                    continue  # a deliberate failure is never imitated unless a caller names its source
                if meta.error:
                    self.skipped_episodes[meta.episode_id] = meta.error
                    continue
                self.episodes.append(self._load(store, dataset_index, meta, labels))

        # flat (episode, frame) index of kept frames
        episode_index, frame_index = [], []
        for i, episode in enumerate(self.episodes):
            keep = np.flatnonzero(episode.weight > self.min_weight)
            episode_index.append(np.full(len(keep), i, dtype=np.int64))
            frame_index.append(keep.astype(np.int64))
        self._episode_of = np.concatenate(episode_index) if episode_index else np.zeros(0, np.int64)
        self._frame_of = np.concatenate(frame_index) if frame_index else np.zeros(0, np.int64)
        self.mix = self._check_mix(mix)
        self.balance_tasks = bool(balance_tasks)

    def _versions_per_store(self, label_version: str | Sequence[str | None] | None) -> list[str | None]:
        if label_version is None or isinstance(label_version, str):
            if label_version is None:
                return [None] * len(self.stores)
            versions: list[str | None] = []
            for store in self.stores:
                available = list_label_versions(store.root)
                if label_version == "latest":
                    versions.append(available[-1] if available else None)
                else:
                    versions.append(label_version if label_version in available else None)
            if not any(versions):
                raise ValueError(
                    f"label version {label_version!r} is in none of the stores {[str(s.root) for s in self.stores]}; "
                    "check the name with robot_si.data.list_label_versions(store_root)"
                )
            return versions
        versions = list(label_version)
        if len(versions) != len(self.stores):
            raise ValueError(f"label_version has {len(versions)} entries for {len(self.stores)} stores; give one per store")
        return versions

    def _load(self, store: EpisodeStore, dataset_index: int, meta, labels: LabelSet | None) -> _Episode:
        frames = store.load_episode(meta.episode_id)
        length = meta.num_frames
        weight = np.ones(length, np.float32)
        # Without a label, a source's intended outcome is its indicator (RECAP conditions demonstrations on
        # "good"): otherwise a demos-only round 0 never trains the "good" token inference asks for.
        intended = INTENDED_OUTCOME.get(meta.source)
        indicator = np.full(length, -1 if intended is None else int(intended), np.int64)
        if labels is not None:
            fields = labels.frame_labels.get(meta.episode_id, {})
            if "weight" in fields:
                weight = fields["weight"].astype(np.float32)
            if "advantage_indicator" in fields:
                indicator = fields["advantage_indicator"].astype(np.int64)
        return _Episode(
            episode_id=meta.episode_id,
            source=meta.source,
            instruction=meta.instruction,
            task_name=meta.task_name,
            dataset_index=dataset_index,
            images={key: frames[key] for key in store.spec.image_keys},
            state=frames[STATE_KEY],
            action=frames[ACTION_KEY],
            weight=weight,
            advantage_indicator=indicator,
        )

    # ── sampling ratios ────────────────────────────────────────────────

    def _store_keys(self, dataset_index: int) -> set[str]:
        root = self.stores[dataset_index].root
        return {f"store{dataset_index}", str(root), str(Path(root).resolve())}

    def _group_of_frames(self, by: str) -> np.ndarray:
        if by == "source":
            labels = np.array([e.source for e in self.episodes], dtype=object)
        else:
            labels = np.array([f"store{e.dataset_index}" for e in self.episodes], dtype=object)
        return labels[self._episode_of] if len(self._episode_of) else np.zeros(0, dtype=object)

    def _check_mix(self, mix: dict[str, float] | None) -> dict[str, float] | None:
        if mix is None:
            return None
        if not mix or any(not np.isfinite(v) or v < 0 for v in mix.values()) or sum(mix.values()) <= 0:
            raise ValueError(f"mix must map groups to non-negative ratios with a positive sum (got {mix!r})")
        source_names = {e.source for e in self.episodes} | set(EPISODE_SOURCES)
        if all(key in source_names for key in mix):
            self._mix_by = "source"
            normalized = dict(mix)
        else:
            self._mix_by = "store"
            normalized = {}
            for key, ratio in mix.items():
                matches = [i for i in range(len(self.stores)) if key in self._store_keys(i)]
                if not matches:
                    raise ValueError(
                        f"mix key {key!r} is neither a source {sorted(source_names)} nor a store "
                        f"({', '.join(f'store{i}={s.root}' for i, s in enumerate(self.stores))})"
                    )
                normalized[f"store{matches[0]}"] = ratio
        groups = self._group_of_frames(self._mix_by)
        present = set(groups.tolist())
        missing = present - set(normalized)
        if missing:
            raise ValueError(
                f"mix has no ratio for {sorted(missing)}, which have frames in this view; add them to mix "
                "(0 to never sample them) or leave them out with sources="
            )
        absent = [key for key, ratio in normalized.items() if key not in present and ratio > 0]
        if absent:
            warnings.warn(f"mix groups {absent} have no frames in this view; the other ratios are renormalized", stacklevel=3)
        return normalized

    @property
    def weighted_sampling(self) -> bool:
        """True when `sample_weights` is not uniform over frames by construction (a `mix` or `balance_tasks`)."""
        return self.mix is not None or self.balance_tasks

    def sample_weights(self) -> np.ndarray:
        """Per-sample probabilities (sum 1) that realize `mix` (and `balance_tasks` within each mix group);
        uniform over frames when neither is set."""
        count = len(self)
        if count == 0:
            return np.zeros(0)
        if self.mix is None:
            groups, present = np.zeros(count, np.int64), {0: 1.0}
        else:
            groups = self._group_of_frames(self._mix_by)
            present = {g: r for g, r in self.mix.items() if (groups == g).any()}
        total = sum(present.values())
        if total <= 0:
            raise ValueError(f"every group with frames has ratio 0 in mix {self.mix!r}; nothing can be sampled")
        # each group's share is split equally over its cells (its tasks with balance_tasks, else one cell)
        cells = (np.array([e.task_name for e in self.episodes], dtype=object)[self._episode_of] if self.balance_tasks
                 else np.zeros(count, np.int64))
        probabilities = np.zeros(count)
        for group, ratio in present.items():
            members = groups == group
            keys = set(cells[members].tolist())
            for key in keys:
                cell = members & (cells == key)
                probabilities[cell] = ratio / total / len(keys) / cell.sum()
        return probabilities

    def make_sampler(self, num_samples: int | None = None, generator: torch.Generator | None = None) -> torch.utils.data.WeightedRandomSampler:
        """A `WeightedRandomSampler` (with replacement) drawing `num_samples` (default len(self)) per epoch."""
        return torch.utils.data.WeightedRandomSampler(
            torch.as_tensor(self.sample_weights(), dtype=torch.double),
            num_samples=num_samples or len(self),
            replacement=True,
            generator=generator,
        )

    # ── Dataset ────────────────────────────────────────────────────────

    def __len__(self) -> int:
        return len(self._episode_of)

    @property
    def num_episodes(self) -> int:
        return len(self.episodes)

    def __getitem__(self, index: int) -> dict:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a view of {len(self)} frames")
        episode = self.episodes[int(self._episode_of[index])]
        t = int(self._frame_of[index])
        length = len(episode.action)
        steps = np.arange(t, t + self.horizon)
        is_pad = steps >= length
        chunk = episode.action[np.minimum(steps, length - 1)]
        item: dict = {
            key: torch.from_numpy(np.ascontiguousarray(episode.images[key][t].transpose(2, 0, 1))).float().div_(255.0)
            for key in self.image_keys
        }
        item[STATE_KEY] = torch.from_numpy(episode.state[t])
        item[ACTION_KEY] = torch.from_numpy(chunk)
        item["action_is_pad"] = torch.from_numpy(is_pad)
        item["task"] = episode.instruction
        item["weight"] = torch.tensor(float(episode.weight[t]), dtype=torch.float32)
        item["advantage_indicator"] = torch.tensor(int(episode.advantage_indicator[t]), dtype=torch.int64)
        item["episode_id"] = episode.episode_id
        item["frame_index"] = t
        item["dataset_index"] = episode.dataset_index
        return item
