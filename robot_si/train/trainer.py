"""Weighted behaviour cloning: the training loop for any robot_si policy.

Owns `TrainConfig`, `Trainer` and `TrainResult`: loss = sum(w_i * l_i) / sum(w_i) with per-sample losses from
`policy.forward(batch, reduction="none")` and weights from the batch's `weight`; AdamW with linear warmup and
cosine decay, gradient clipping, optional EMA; exact checkpoint/resume (model, optimizer, scheduler, step, EMA, RNG
states, data order); NaN detection that names the step and the offending frames; device auto-selection with bf16
autocast on CUDA; optional `torch.compile`; multi-process data parallel under `torchrun` (DDP).

The data order is a pure function of (seed, step) (`ResumableBatchSampler`), so a killed run resumed from its
last checkpoint continues exactly as if it had never stopped. With a frozen image backbone the image features of
the whole dataset are computed once (`cache_features`) and the head trains on cached tensors, which is what makes
CPU training feasible.

Knows nothing of environments: periodic evaluation is a callback `eval_fn(policy, step) -> dict` from the caller.
Never reads ground truth; weights come from the dataset (labels chosen by robot_si.weight).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from robot_si.policies.modeling_compact_vla import IMAGE_FEATURES_KEY

CHECKPOINTS_DIR = "checkpoints"
POLICY_DIR = "policy"
TRAINING_STATE_NAME = "training_state.pt"
RESULT_NAME = "train_result.json"


@dataclass(kw_only=True)
class TrainConfig:
    """Every knob of the training loop.

    Args:
        steps: optimizer steps in total (a resumed run continues up to this number).
        batch_size: samples per step and per process (global batch = batch_size * world size).
        lr, weight_decay, betas: AdamW.
        warmup_steps: linear warmup from 0; then cosine decay to lr * min_lr_ratio at `steps`.
        grad_clip_norm: clip the global gradient norm (None: no clipping).
        ema_decay: keep an exponential moving average of the weights (None: off); the saved policy uses it.
        seed: seeds the data order and torch/numpy/python RNGs.
        num_workers: DataLoader workers (0 keeps everything in-process; enough with cached features).
        device: "auto" (cuda > mps > cpu), or an explicit torch device string.
        amp: bf16 autocast on CUDA (ignored elsewhere).
        compile: wrap the policy in torch.compile.
        cache_features: precompute frozen image features once per dataset; None = when the policy allows it.
        use_dataset_sampler: draw samples with the dataset's `sample_weights()` when it has `weighted_sampling` (a TrainingView
            with `mix` or `balance_tasks`).
        save_every: write a resumable checkpoint every K steps (None: only at the end).
        keep_checkpoints: how many resumable checkpoints to keep (oldest deleted).
        eval_every: call `eval_fn(policy, step)` every K steps (None: never; the final step always when given).
        log_every: refresh the progress bar's loss every K steps.
        progress: show a tqdm progress bar (rank 0 only).
        recompute_stats: recompute normalization stats from this dataset even if the policy has some (e.g. from
            the policy it was fine-tuned from, which are kept by default so the action scale stays consistent).
    """

    steps: int = 2000
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1
    grad_clip_norm: float | None = 1.0
    ema_decay: float | None = None
    seed: int = 0
    num_workers: int = 0
    device: str = "auto"
    amp: bool = True
    compile: bool = False
    cache_features: bool | None = None
    use_dataset_sampler: bool = True
    save_every: int | None = 500
    keep_checkpoints: int = 2
    eval_every: int | None = None
    log_every: int = 10
    progress: bool = True
    recompute_stats: bool = False

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"train.{name} must be a positive int (got {value!r})")
        for name in ("save_every", "eval_every"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"train.{name} must be a positive int or None (got {value!r})")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"train.lr must be a positive number (got {self.lr})")
        if self.warmup_steps < 0 or self.num_workers < 0 or self.log_every < 1 or self.keep_checkpoints < 1:
            raise ValueError(
                f"train.warmup_steps and num_workers must be >= 0, log_every and keep_checkpoints >= 1 (got "
                f"{self.warmup_steps}, {self.num_workers}, {self.log_every}, {self.keep_checkpoints})"
            )
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"train.min_lr_ratio must be in [0, 1] (got {self.min_lr_ratio})")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"train.ema_decay must be in (0, 1) or None (got {self.ema_decay})")
        if self.grad_clip_norm is not None and self.grad_clip_norm <= 0:
            raise ValueError(f"train.grad_clip_norm must be > 0 or None (got {self.grad_clip_norm})")
        self.betas = tuple(float(b) for b in self.betas)


@dataclass(kw_only=True)
class TrainResult:
    steps: int
    final_loss: float
    samples_per_s: float
    checkpoint_path: str  # the last resumable checkpoint
    policy_path: str  # save_pretrained directory of the final policy (EMA weights when ema_decay is set)
    wall_s: float
    resumed_from_step: int = 0
    num_samples: int = 0
    feature_cache_s: float = 0.0
    evals: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


# ── helpers ────────────────────────────────────────────────────────────────


def select_device(device: str = "auto") -> torch.device:
    """cuda > mps > cpu for "auto"; otherwise the named device (checked to exist)."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    chosen = torch.device(device)
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for but CUDA is not available; use device=auto or device=cpu")
    return chosen


def weighted_loss(per_sample: torch.Tensor, weight: torch.Tensor | None, *, total_weight: torch.Tensor | None = None) -> torch.Tensor:
    """sum(w_i * l_i) / sum(w_i) (`total_weight` replaces the denominator, e.g. the global sum under DDP).

    A zero-weight sample contributes nothing, not even through the denominator."""
    if weight is None:
        weight = torch.ones_like(per_sample)
    weight = weight.to(per_sample.device, per_sample.dtype).reshape(per_sample.shape)
    denominator = weight.sum() if total_weight is None else total_weight
    return (weight * per_sample).sum() / denominator.clamp_min(1e-8)


def compute_normalization_stats(dataset, *, max_samples: int = 20000) -> dict[str, dict[str, torch.Tensor]]:
    """State mean/std and action mean/std/min/max of a dataset.

    Reads a `TrainingView`'s decoded episodes directly (every frame); any other dataset is sampled item by item
    (`observation.state`, and the non-padded steps of `action`)."""
    episodes = getattr(dataset, "episodes", None)
    if episodes and all(hasattr(e, "state") and hasattr(e, "action") for e in episodes):
        states = torch.from_numpy(np.concatenate([e.state for e in episodes])).float()
        actions = torch.from_numpy(np.concatenate([e.action for e in episodes])).float()
    else:
        if len(dataset) == 0:
            raise ValueError("cannot compute normalization stats of an empty dataset; check the stores and filters")
        indices = np.linspace(0, len(dataset) - 1, min(len(dataset), max_samples)).astype(int)
        state_rows, action_rows = [], []
        for index in np.unique(indices):
            item = dataset[int(index)]
            state_rows.append(torch.as_tensor(item["observation.state"]).float().reshape(1, -1))
            action = torch.as_tensor(item["action"]).float()
            pad = item.get("action_is_pad")
            action_rows.append(action if pad is None else action[~torch.as_tensor(pad).bool()])
        states, actions = torch.cat(state_rows), torch.cat(action_rows)
    if len(states) == 0 or len(actions) == 0:
        raise ValueError("cannot compute normalization stats: the dataset has no frames")
    return {
        "observation.state": {"mean": states.mean(0), "std": states.std(0, unbiased=False)},
        "action": {
            "mean": actions.mean(0), "std": actions.std(0, unbiased=False),
            "min": actions.min(0).values, "max": actions.max(0).values,
        },
    }


def dataset_instructions(dataset, *, max_samples: int = 20000) -> list[str]:
    """The instruction of every frame of a `TrainingView` (of up to `max_samples` sampled items of any other dataset)."""
    episodes = getattr(dataset, "episodes", None)
    if episodes and all(hasattr(e, "instruction") and hasattr(e, "state") for e in episodes):
        return [e.instruction for e in episodes for _ in range(len(e.state))]
    indices = np.unique(np.linspace(0, len(dataset) - 1, min(len(dataset), max_samples)).astype(int))
    instructions = [dataset[int(index)].get("task") for index in indices] if len(dataset) else []
    return [text for text in instructions if isinstance(text, str)]


class ResumableBatchSampler(Sampler[list[int]]):
    """Index batches for steps [start_step, total_steps): a pure function of (seed, step), so resuming at a step
    replays exactly what an uninterrupted run would have drawn.

    Samples form an endless stream of epochs (each a permutation, or `num_samples` draws with replacement
    following `probabilities`); step s takes the global batch stream[s*G : (s+1)*G], G = batch_size * world_size,
    and rank r its r-th slice (DistributedSampler's sharding, made resumable)."""

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        *,
        total_steps: int,
        start_step: int = 0,
        seed: int = 0,
        probabilities: np.ndarray | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if num_samples < 1:
            raise ValueError("ResumableBatchSampler needs a non-empty dataset")
        self.num_samples, self.batch_size = num_samples, batch_size
        self.total_steps, self.start_step, self.seed = total_steps, start_step, seed
        self.rank, self.world_size = rank, world_size
        self.probabilities = None if probabilities is None else torch.as_tensor(probabilities, dtype=torch.double)
        self._epoch_cache: tuple[int, torch.Tensor] | None = None

    def _epoch(self, epoch: int) -> torch.Tensor:
        if self._epoch_cache is None or self._epoch_cache[0] != epoch:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            if self.probabilities is None:
                order = torch.randperm(self.num_samples, generator=generator)
            else:
                order = torch.multinomial(self.probabilities, self.num_samples, replacement=True, generator=generator)
            self._epoch_cache = (epoch, order)
        return self._epoch_cache[1]

    def global_batch(self, step: int) -> list[int]:
        size = self.batch_size * self.world_size
        indices: list[int] = []
        position = step * size
        while len(indices) < size:
            epoch, offset = divmod(position, self.num_samples)
            take = min(size - len(indices), self.num_samples - offset)
            indices.extend(self._epoch(epoch)[offset : offset + take].tolist())
            position += take
        return indices

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start_step, self.total_steps):
            batch = self.global_batch(step)
            yield batch[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]

    def __len__(self) -> int:
        return max(0, self.total_steps - self.start_step)


class CachedFeatureDataset(Dataset):
    """Wraps a dataset: items carry precomputed `observation.image_features` instead of camera images."""

    def __init__(self, dataset: Dataset, features: torch.Tensor, image_keys: list[str]) -> None:
        self.dataset, self.features, self.image_keys = dataset, features, image_keys

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        item = dict(self.dataset[index])
        for key in self.image_keys:
            item.pop(key, None)
        item[IMAGE_FEATURES_KEY] = self.features[index]
        return item


def _collate(items: list[dict]) -> dict:
    return default_collate(items)


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _distributed() -> tuple[int, int, int]:
    """(rank, world_size, local_rank); initializes the process group under torchrun."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return 0, 1, 0
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
    return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0"))


def latest_checkpoint(out_dir: str | os.PathLike[str]) -> Path | None:
    """The newest complete resumable checkpoint under `<out_dir>/checkpoints/`, or None."""
    root = Path(out_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return None
    complete = sorted(p for p in root.glob("step_*") if (p / TRAINING_STATE_NAME).is_file())
    return complete[-1] if complete else None


# ── trainer ────────────────────────────────────────────────────────────────


class Trainer:
    """Weighted behaviour cloning of `policy` on `dataset` (items as TrainingView yields them), writing into `out_dir`.

    Args:
        policy: an nn.Module with `forward(batch, reduction="none") -> (per_sample_loss, info)` and
            `save_pretrained(dir)`; `set_normalization_stats` / `encode_images` are used when present.
        dataset: a torch Dataset of dicts (see robot_si.data.TrainingView); `weight` per item (1.0 if absent).
        config: `TrainConfig`.
        out_dir: `checkpoints/step_XXXXXXXX/` (resumable), `policy/` (final), `train_result.json`.
        eval_fn: optional `eval_fn(policy, step) -> dict`, called on rank 0 every `eval_every` steps with the policy
            in eval mode (EMA weights when enabled).
    """

    def __init__(
        self,
        policy: torch.nn.Module,
        dataset: Dataset,
        config: TrainConfig | None = None,
        out_dir: str | os.PathLike[str] = "outputs/train",
        *,
        eval_fn: Callable[[torch.nn.Module, int], dict] | None = None,
    ) -> None:
        self.policy = policy
        self.dataset = dataset
        self.config = config or TrainConfig()
        self.out_dir = Path(out_dir)
        self.eval_fn = eval_fn
        if len(dataset) == 0:
            raise ValueError(
                "the training dataset is empty (0 frames): check the stores hold episodes, the label version, "
                "`sources` and that `min_weight` does not drop every frame"
            )

    # ── setup pieces ───────────────────────────────────────────────────

    def _prepare_normalization(self) -> None:
        policy = self.policy
        if not hasattr(policy, "set_normalization_stats"):
            return
        stat_names = ("state_mean", "action_mean", "text_mean")
        has_stats = not any(torch.isnan(getattr(policy, name)).any() for name in stat_names if hasattr(policy, name))
        if self.config.recompute_stats or not has_stats:
            policy.set_normalization_stats(compute_normalization_stats(self.dataset))
            if getattr(policy, "normalizes_text", False):
                policy.fit_text_normalization(dataset_instructions(self.dataset))

    def _use_feature_cache(self) -> bool:
        cacheable = bool(getattr(getattr(self.policy, "config", None), "features_cacheable", False)) and hasattr(self.policy, "encode_images")
        if self.config.cache_features is None:
            return cacheable
        if self.config.cache_features and not cacheable:
            raise ValueError(
                "cache_features=True needs a policy with a fully frozen image backbone (CompactVLA with freeze_vision=True "
                "and trainable_vision_blocks=0); set cache_features=null to decide automatically"
            )
        return self.config.cache_features

    @torch.no_grad()
    def _cache_features(self, device: torch.device, show_progress: bool) -> Dataset:
        from tqdm.auto import tqdm

        image_keys = list(self.policy.config.image_keys)
        loader = DataLoader(self.dataset, batch_size=128, shuffle=False, num_workers=self.config.num_workers, collate_fn=_collate)
        was_training = self.policy.training
        self.policy.eval()
        chunks = []
        for batch in tqdm(loader, desc="caching image features", disable=not show_progress, leave=False):
            chunks.append(self.policy.encode_images({key: batch[key].to(device) for key in image_keys}).float().cpu())
        self.policy.train(was_training)
        return CachedFeatureDataset(self.dataset, torch.cat(chunks), image_keys)

    def _lr_lambda(self, step: int) -> float:
        warmup = self.config.warmup_steps
        if warmup and step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, self.config.steps - warmup))
        floor = self.config.min_lr_ratio
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    # ── main loop ──────────────────────────────────────────────────────

    def train(self, *, resume: bool = True) -> TrainResult:
        """Train to `config.steps`, resuming from the newest checkpoint in `out_dir` when `resume` (and one exists)."""
        cfg = self.config
        rank, world_size, local_rank = _distributed()
        is_main = rank == 0
        device = select_device(cfg.device)
        if device.type == "cuda" and world_size > 1:
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)
        random.seed(cfg.seed)
        policy = self.policy.to(device)
        checkpoint = latest_checkpoint(self.out_dir) if resume else None
        state = None
        if checkpoint is not None:
            # weights first: the normalization stats and the cached features must come from the resumed model
            state = torch.load(checkpoint / TRAINING_STATE_NAME, map_location=device, weights_only=False)
            try:
                policy.load_state_dict(state["model"])
            except RuntimeError as error:
                raise RuntimeError(
                    f"cannot resume from {checkpoint}: it holds a policy of another shape ({str(error)[:300]}). "
                    "Train into a new out directory, or pass resume=false to start over there"
                ) from error
        self._prepare_normalization()

        started = time.perf_counter()
        cache_s = 0.0
        dataset = self.dataset
        if self._use_feature_cache():
            dataset = self._cache_features(device, is_main and cfg.progress)
            cache_s = time.perf_counter() - started

        parameters = [p for p in policy.parameters() if p.requires_grad]
        if not parameters:
            raise ValueError("the policy has no trainable parameters; unfreeze something (e.g. freeze_vision=false)")
        optimizer = torch.optim.AdamW(parameters, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=cfg.betas)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self._lr_lambda)
        named_trainable = {name: p for name, p in policy.named_parameters() if p.requires_grad}
        ema = {name: p.detach().clone() for name, p in named_trainable.items()} if cfg.ema_decay else None

        step = 0
        rng_to_restore = None
        if state is not None:
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            if ema is not None:
                if state.get("ema") is None:
                    raise ValueError(f"checkpoint {checkpoint} has no EMA weights but ema_decay is set; resume with the same config")
                for name, value in state["ema"].items():
                    ema[name].copy_(value)
            step = int(state["step"])
            rank_rng = checkpoint / f"rng_rank{rank}.pt"
            rng_to_restore = torch.load(rank_rng, weights_only=False) if rank_rng.is_file() else state["rng"]
        resumed_from = step

        probabilities = None
        if cfg.use_dataset_sampler and getattr(self.dataset, "weighted_sampling", False):
            probabilities = self.dataset.sample_weights()
        sampler = ResumableBatchSampler(
            len(dataset), cfg.batch_size, total_steps=cfg.steps, start_step=step, seed=cfg.seed,
            probabilities=probabilities, rank=rank, world_size=world_size,
        )
        loader = DataLoader(
            dataset, batch_sampler=sampler, num_workers=cfg.num_workers, collate_fn=_collate,
            generator=torch.Generator().manual_seed(cfg.seed),  # keeps the global RNG untouched by the loader
            persistent_workers=False,
        )

        model = policy
        if cfg.compile:
            model = torch.compile(model)
        if world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16) if cfg.amp and device.type == "cuda" else contextlib.nullcontext()
        )

        if rng_to_restore is not None:
            _set_rng_state(rng_to_restore)  # last: nothing above may consume random numbers after this
        policy.train()
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.steps, initial=step, desc="train", disable=not (is_main and cfg.progress), dynamic_ncols=True)
        loop_started = time.perf_counter()
        samples_seen = 0
        last_loss = float("nan")
        evals: list[dict] = []
        checkpoint_path = checkpoint
        for batch in loader:
            with autocast:
                per_sample, _info = model(batch, reduction="none")
            per_sample = per_sample.float()
            weight = batch.get("weight")
            weight = torch.ones(len(per_sample), device=device) if weight is None else weight.to(device, torch.float32)
            numerator = (weight * per_sample).sum()
            total_weight = weight.sum().detach()
            if world_size > 1:
                import torch.distributed as dist

                stats = torch.stack([numerator.detach(), total_weight])
                dist.all_reduce(stats)
                global_numerator, total_weight = stats[0], stats[1]
                # DDP averages gradients over ranks, so scale by world_size to get d(global weighted loss)
                loss = numerator / total_weight.clamp_min(1e-8) * world_size
                reported = float(global_numerator / total_weight.clamp_min(1e-8))
            else:
                loss = numerator / total_weight.clamp_min(1e-8)
                reported = float(loss.detach())
            if not math.isfinite(reported) or not torch.isfinite(per_sample.detach()).all():
                bad = (~torch.isfinite(per_sample.detach())).nonzero().flatten().tolist() or list(range(len(per_sample)))
                episodes = batch.get("episode_id")
                frames = batch.get("frame_index")
                where = [
                    (episodes[i] if episodes is not None else "?", int(frames[i]) if frames is not None else "?") for i in bad[:10]
                ]
                raise RuntimeError(
                    f"non-finite loss ({reported}) at step {step + 1}; offending samples (episode_id, frame_index): {where}. "
                    "Check those frames for NaN/inf states or actions, or lower train.lr"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(parameters, cfg.grad_clip_norm)
            optimizer.step()
            scheduler.step()
            step += 1
            if ema is not None:
                with torch.no_grad():
                    for name, parameter in named_trainable.items():
                        ema[name].lerp_(parameter.detach(), 1 - cfg.ema_decay)
            last_loss = reported
            samples_seen += len(per_sample) * world_size
            if step % cfg.log_every == 0 or step == cfg.steps:
                elapsed = max(1e-9, time.perf_counter() - loop_started)
                bar.set_postfix(loss=f"{reported:.4f}", samples_s=f"{samples_seen / elapsed:.0f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
            bar.update(1)
            if cfg.save_every and step % cfg.save_every == 0 and step < cfg.steps:
                checkpoint_path = self._save_checkpoint(step, policy, optimizer, scheduler, ema, rank, world_size)
            if self.eval_fn is not None and is_main and (
                (cfg.eval_every and step % cfg.eval_every == 0) or step == cfg.steps
            ):
                evals.append({"step": step, **self._evaluate(policy, named_trainable, ema, step)})
        bar.close()
        loop_s = time.perf_counter() - loop_started

        if step > resumed_from or checkpoint_path is None:
            checkpoint_path = self._save_checkpoint(step, policy, optimizer, scheduler, ema, rank, world_size)
        policy_path = self.out_dir / POLICY_DIR
        if is_main:
            with self._ema_weights(named_trainable, ema):
                policy.save_pretrained(policy_path)
        result = TrainResult(
            steps=step,
            final_loss=last_loss,
            samples_per_s=samples_seen / loop_s if loop_s > 0 and samples_seen else 0.0,
            checkpoint_path=str(checkpoint_path),
            policy_path=str(policy_path),
            wall_s=time.perf_counter() - started,
            resumed_from_step=resumed_from,
            num_samples=len(dataset),
            feature_cache_s=cache_s,
            evals=evals,
        )
        if is_main:
            (self.out_dir / RESULT_NAME).write_text(json.dumps(result.to_dict(), indent=2, default=str) + "\n")
        if world_size > 1:
            import torch.distributed as dist

            dist.barrier()
        return result

    @contextlib.contextmanager
    def _ema_weights(self, named_trainable: dict, ema: dict | None):
        """Temporarily swap the EMA weights into the policy."""
        if ema is None:
            yield
            return
        backup = {name: p.detach().clone() for name, p in named_trainable.items()}
        with torch.no_grad():
            for name, parameter in named_trainable.items():
                parameter.copy_(ema[name])
        try:
            yield
        finally:
            with torch.no_grad():
                for name, parameter in named_trainable.items():
                    parameter.copy_(backup[name])

    def _evaluate(self, policy, named_trainable, ema, step: int) -> dict:
        rng = _rng_state()  # evaluation must not change the training's random stream
        policy.eval()
        try:
            with self._ema_weights(named_trainable, ema):
                metrics = self.eval_fn(policy, step) or {}
        finally:
            policy.train()
            if hasattr(policy, "reset"):
                policy.reset()
            _set_rng_state(rng)
        return dict(metrics)

    def _save_checkpoint(self, step, policy, optimizer, scheduler, ema, rank, world_size) -> Path:
        root = self.out_dir / CHECKPOINTS_DIR
        final = root / f"step_{step:08d}"
        if world_size > 1:
            import torch.distributed as dist

            dist.barrier()
        if rank == 0:
            staging = root / f".staging_step_{step:08d}"
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
            state = {
                "step": step,
                "model": policy.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "ema": ema,
                "rng": _rng_state(),
                "train_config": asdict(self.config),
                "world_size": world_size,
            }
            torch.save(state, staging / "tmp_state.pt")
            os.replace(staging / "tmp_state.pt", staging / TRAINING_STATE_NAME)
            shutil.rmtree(final, ignore_errors=True)
            os.replace(staging, final)
            for old in sorted(p for p in root.glob("step_*") if p.is_dir())[: -self.config.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
        if world_size > 1:
            import torch.distributed as dist

            dist.barrier()
            torch.save(_rng_state(), final / f"rng_rank{rank}.pt")
            dist.barrier()
        return final


# ── from stores ────────────────────────────────────────────────────────────


def policy_horizon(policy) -> int:
    """Action chunk length H the policy trains on (CompactVLA: config.horizon; LeRobot adapters: .horizon)."""
    horizon = getattr(policy, "horizon", None) or getattr(getattr(policy, "config", None), "horizon", None)
    if not horizon:
        raise ValueError(f"cannot tell the action horizon of {type(policy).__name__}; give it a `horizon` attribute")
    return int(horizon)


def train_policy(
    stores,
    out_dir: str | os.PathLike[str],
    *,
    policy=None,
    policy_config=None,
    init_from: str | os.PathLike[str] | None = None,
    train_config: TrainConfig | None = None,
    label_version: str | list | None = None,
    mix: dict[str, float] | None = None,
    sources: list[str] | None = None,
    min_weight: float = 0.0,
    balance_tasks: bool = False,
    eval_fn: Callable[[torch.nn.Module, int], dict] | None = None,
    resume: bool = True,
) -> TrainResult:
    """Weighted BC from stores in one call: TrainingView over `stores` -> `Trainer` -> `<out_dir>/policy`.

    The policy is `policy` (an object), else loaded from `init_from` (a saved policy directory to fine-tune, its
    normalization kept), else built from `policy_config` (CompactVLAConfig or mapping with `type`; None = defaults).
    """
    from robot_si.data.views import TrainingView
    from robot_si.policies import CompactVLAConfig, load_policy, make_policy

    train_config = train_config or TrainConfig()
    if policy is None:
        if init_from is not None:
            policy = load_policy(init_from)
        else:
            # the initial weights are a function of the config's seed, not of whatever used the global RNG before
            torch.manual_seed(train_config.seed)
            policy = make_policy(policy_config if policy_config is not None else CompactVLAConfig())
    view = TrainingView(
        stores, horizon=policy_horizon(policy), label_version=label_version, mix=mix, sources=sources, min_weight=min_weight,
        balance_tasks=balance_tasks,
    )
    if len(view) == 0:
        raise ValueError(
            f"no training frames in stores {[str(s) for s in stores]} (label_version={label_version!r}, sources={sources!r}, "
            f"min_weight={min_weight}); record demos first (robot-si demos ...) or relax the filters"
        )
    return Trainer(policy, view, train_config, out_dir, eval_fn=eval_fn).train(resume=resume)
