"""robomimic-style HDF5 export and import for an episode store.

Owns the mapping between a store and the robomimic layout (robomimic/utils/dataset.py, docs
"datasets/overview"):

    data/                    attrs: total (frames), env_args (JSON: env_name, type, env_kwargs)
      demo_<i>/              attrs: num_samples, robot_si_meta (JSON EpisodeMeta)
        obs/<cam>_image      (T, H, W, 3) uint8      e.g. front_image, wrist_image
        obs/state            (T, S) float32          proprioception (observation.state)
        next_obs/...         obs shifted by one step; the last step is the terminal observation (the one after
                             the last action) where the store has it, else a repeat of the last observation
        actions              (T, A) float32
        rewards              (T,) float64            sparse: 1.0 on the last step of an episode LABELLED a success
        dones                (T,) int64              1 on the last step
    mask/train, mask/valid   demo keys (bytes), a seeded split
    mask/success, failure    from the given label version's labels; without one, scripted demos count as
                             successes, near misses (the demonstrator's deliberate failures) as failures, and
                             other episodes are in neither mask

Observation keys keep our names, sanitized: `observation.images.<cam>` -> `<cam>_image` (robomimic treats
keys ending in `_image` as images), `observation.state` -> `state`. Ground truth is audit-only: it reaches the
file only when `masks_from_audit_ground_truth=True`, which also names the masks `audit_gt_success` /
`audit_gt_failure` so nobody mistakes them for labels.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from robot_si.data.labels import read_label_set
from robot_si.data.records import INTENDED_OUTCOME, EpisodeMeta
from robot_si.data.store import ACTION_KEY, IMAGE_PREFIX, STATE_KEY, EpisodeStore

ROBOMIMIC_ENV_TYPE_GYM = 2  # robomimic.envs.env_base.EnvType.GYM_TYPE
IMAGE_SUFFIX = "_image"


def _obs_key(store_key: str) -> str:
    if store_key.startswith(IMAGE_PREFIX):
        return store_key.removeprefix(IMAGE_PREFIX) + IMAGE_SUFFIX
    if store_key == STATE_KEY:
        return "state"
    raise ValueError(f"no robomimic name for store key {store_key!r}")


def export_hdf5(
    store_root: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    label_version: str | None = None,
    valid_fraction: float = 0.1,
    split_seed: int = 0,
    masks_from_audit_ground_truth: bool = False,
) -> Path:
    """Write every episode of the store to a robomimic-style HDF5 file (atomically: tmp file + rename)."""
    import h5py

    if not 0.0 <= valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be in [0, 1) (got {valid_fraction})")
    store = EpisodeStore(store_root)
    out_path = Path(out_path)
    metas = store.episodes()
    if not metas:
        raise ValueError(f"the store at {store.root} has no episodes to export")
    labels = read_label_set(store.root, label_version) if label_version is not None else None
    audit = store.audit_table() if masks_from_audit_ground_truth else None

    demo_keys = [f"demo_{i}" for i in range(len(metas))]
    success, failure = [], []
    for key, meta in zip(demo_keys, metas, strict=True):
        if audit is not None:
            outcome = audit.get(meta.episode_id)
        elif labels is not None:
            episode_label = labels.episode_labels.get(meta.episode_id)
            outcome = episode_label.label if episode_label is not None else None
        else:
            outcome = INTENDED_OUTCOME.get(meta.source)
        if outcome is True:
            success.append(key)
        elif outcome is False:
            failure.append(key)
    rng = np.random.default_rng(split_seed)
    order = rng.permutation(len(demo_keys))
    num_valid = int(round(valid_fraction * len(demo_keys)))
    valid = sorted((demo_keys[i] for i in order[:num_valid]), key=lambda k: int(k.split("_")[1]))
    train = [k for k in demo_keys if k not in set(valid)]
    labelled_success = set(success) if audit is None else set()

    spec = store.spec
    env_args = {
        "env_name": "robot_si",
        "type": ROBOMIMIC_ENV_TYPE_GYM,
        "env_kwargs": {
            "tasks": sorted({m.task_name for m in metas}),
            "image_size": [spec.image_height, spec.image_width],
            "cameras": list(spec.cameras),
            "fps": spec.fps,
            "state_dim": spec.state_dim,
            "action_dim": spec.action_dim,
        },
        "robot_si": {"store": str(store.root), "label_version": labels.version if labels else None},
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = out_path.with_name(f".{out_path.name}.{uuid.uuid4().hex[:8]}.tmp")
    total = 0
    try:
        with h5py.File(tmp_path, "w") as f:
            data = f.create_group("data")
            for key, meta in zip(demo_keys, metas, strict=True):
                frames = store.load_episode(meta.episode_id)
                terminal = store.load_terminal(meta.episode_id)
                length = meta.num_frames
                group = data.create_group(key)
                group.attrs["num_samples"] = length
                group.attrs["robot_si_meta"] = json.dumps(meta.to_json_dict())
                for store_key in spec.frame_keys:
                    if store_key == ACTION_KEY:
                        continue
                    values = frames[store_key]
                    group.create_dataset(f"obs/{_obs_key(store_key)}", data=values)
                    last = values[-1:] if terminal is None else terminal[store_key][None].astype(values.dtype)
                    group.create_dataset(f"next_obs/{_obs_key(store_key)}", data=np.concatenate([values[1:], last]))
                group.create_dataset("actions", data=frames[ACTION_KEY])
                rewards = np.zeros(length, dtype=np.float64)
                if key in labelled_success:
                    rewards[-1] = 1.0
                dones = np.zeros(length, dtype=np.int64)
                dones[-1] = 1
                group.create_dataset("rewards", data=rewards)
                group.create_dataset("dones", data=dones)
                total += length
            data.attrs["total"] = total
            data.attrs["env_args"] = json.dumps(env_args)
            mask = f.create_group("mask")
            success_name, failure_name = ("audit_gt_success", "audit_gt_failure") if audit is not None else ("success", "failure")
            for name, keys in (("train", train), ("valid", valid), (success_name, success), (failure_name, failure)):
                mask.create_dataset(name, data=np.array(keys, dtype="S"))
        os.replace(tmp_path, out_path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return out_path


def import_hdf5(
    hdf5_path: str | os.PathLike[str],
    store_root: str | os.PathLike[str],
    *,
    source: str | None = None,
    task_name: str | None = None,
    instruction: str | None = None,
    fps: int | None = None,
    state_keys: Sequence[str] | None = None,
    round: int = 0,
    policy_version: str = "hdf5-import",
) -> list[EpisodeMeta]:
    """Append the demos of a robomimic-style file to a store (created if missing); returns the new episodes.

    `source`, `task_name` and `instruction` override what the file's `robot_si_meta` says (a file written by
    another tool has none, so `task_name` and `instruction` are then required; source defaults to "demo").
    State is `obs/state`, or the concatenation of `state_keys` (default: every non-image obs key, sorted).
    Episodes whose id is already in the store are skipped, so an interrupted import can be rerun.
    """
    import h5py

    hdf5_path = Path(hdf5_path)
    if not hdf5_path.exists():
        raise FileNotFoundError(f"{hdf5_path} does not exist; pass the path of a robomimic-style HDF5 file")
    imported: list[EpisodeMeta] = []
    with h5py.File(hdf5_path, "r") as f:
        if "data" not in f or not len(f["data"]):
            raise ValueError(f"{hdf5_path} has no data/demo_<i> groups; is it a robomimic-style file?")
        env_args = json.loads(f["data"].attrs.get("env_args", "{}") or "{}")
        env_kwargs = env_args.get("env_kwargs", {})
        demo_keys = sorted(f["data"], key=lambda k: int(re.sub(r"\D", "", k) or 0))
        first_obs = f["data"][demo_keys[0]]["obs"]
        image_keys = sorted(k for k in first_obs if k.endswith(IMAGE_SUFFIX))
        if not image_keys:
            raise ValueError(f"{hdf5_path}: demo obs have no '<camera>_image' key ({sorted(first_obs)}); the store needs images")
        if state_keys is None:
            state_keys = ["state"] if "state" in first_obs else sorted(k for k in first_obs if k not in image_keys)
        missing = [k for k in state_keys if k not in first_obs]
        if missing or not state_keys:
            raise ValueError(f"{hdf5_path}: state keys {missing or state_keys} not found in obs {sorted(first_obs)}; pass state_keys=")
        fps = fps or env_kwargs.get("fps")
        if not fps:
            raise ValueError(f"{hdf5_path} does not record the control rate (env_args.env_kwargs.fps); pass fps=")
        height, width = first_obs[image_keys[0]].shape[1:3]
        state_dim = sum(int(np.prod(first_obs[k].shape[1:])) for k in state_keys)
        store = EpisodeStore.open_or_create(
            store_root, fps=int(fps), image_size=(int(height), int(width)),
            cameras=[k.removesuffix(IMAGE_SUFFIX) for k in image_keys], state_dim=state_dim,
            action_dim=int(f["data"][demo_keys[0]]["actions"].shape[1]),
        )
        for key in demo_keys:
            group = f["data"][key]
            stored = json.loads(group.attrs["robot_si_meta"]) if "robot_si_meta" in group.attrs else {}
            length = int(group["actions"].shape[0])
            if task_name is None and "task_name" not in stored:
                raise ValueError(f"{hdf5_path}/{key} carries no task name; pass task_name= (and instruction=)")
            meta = EpisodeMeta(
                episode_id=stored.get("episode_id", f"{hdf5_path.stem}/{key}"),
                source=source or stored.get("source", "demo"),
                round=stored.get("round", round),
                policy_version=stored.get("policy_version", policy_version),
                task_name=task_name or stored["task_name"],
                instruction=instruction or stored.get("instruction", task_name or stored["task_name"]),
                seed=stored.get("seed", -1),
                num_frames=length,
                error=stored.get("error"),
            )
            if meta.episode_id in store:
                continue
            frames = {f"{IMAGE_PREFIX}{k.removesuffix(IMAGE_SUFFIX)}": group["obs"][k][()] for k in image_keys}
            frames[STATE_KEY] = np.concatenate([group["obs"][k][()].reshape(length, -1) for k in state_keys], axis=1).astype(np.float32)
            frames[ACTION_KEY] = group["actions"][()].astype(np.float32)
            store.append_episode(frames, meta, audit_gt_success=None, terminal=_terminal_from_next_obs(group, frames, image_keys, state_keys))
            imported.append(meta)
    return imported


def _terminal_from_next_obs(group, frames: dict[str, np.ndarray], image_keys: list[str], state_keys: list[str]) -> dict | None:
    """The observation after the last action, from next_obs[-1], when the file has one that is not a repeat of
    obs[-1] (robot_si's export repeats the last observation where it had no terminal one)."""
    if "next_obs" not in group or any(k not in group["next_obs"] for k in [*image_keys, *state_keys]):
        return None
    terminal = {f"{IMAGE_PREFIX}{k.removesuffix(IMAGE_SUFFIX)}": group["next_obs"][k][-1] for k in image_keys}
    terminal[STATE_KEY] = np.concatenate([np.asarray(group["next_obs"][k][-1]).reshape(-1) for k in state_keys]).astype(np.float32)
    if all(np.array_equal(terminal[key], frames[key][-1]) for key in terminal):
        return None
    return terminal
