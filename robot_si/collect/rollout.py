"""Batched rollouts: N env copies in one process, one policy forward per control step, per-env action queues.

`Collector` is the diffusion_policy env_runner idea: give it a policy and a list of `EpisodeRequest`s, get
`EpisodeResult`s (through a callback, as each episode finishes) and a metrics dict with seconds per phase
(RLinf style). Each control step, the envs whose action queue is empty are batched into ONE
`predict_action_chunk` call; each env then executes the first `n_action_steps` actions of its chunk
(receding horizon). Optional Gaussian exploration noise is added per episode from an RNG seeded by the episode
seed, then actions are clipped to [-1, 1] deliberately (the env refuses anything outside).

Faults stay local: NaN/inf or wrongly shaped policy output ends the affected episodes with `error` set; an env
that raises is recorded and rebuilt; KeyboardInterrupt discards in-flight episodes and re-raises, so whatever
was handed to the store is whole. `collect()` wires a `Collector` to an `EpisodeStore` (resumable: episode ids
come from round/task/seed, see seeds.py).

This module never reads ground truth except to copy `info["is_success"]` into `EpisodeResult.success`, which
goes to the store's audit field (collect) or to evaluation metrics (evaluate.py) only.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import math
import os
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from robot_si.collect.records import EpisodeRequest, EpisodeResult
from robot_si.collect.seeds import check_seeds, collection_episode_id, collection_seed

STATE_KEY = "observation.state"
IMAGE_PREFIX = "observation.images."
ACTION_KEY = "action"
ACTION_DIM = 4
NOISE_STREAM = 0x5EED  # second word of the per-episode noise RNG seed, so noise never mirrors env randomness
BACKENDS = ("local", "ray")
WRITER_MODES = ("process", "thread", "sync")


# ────────────────────────────────────────────────────────────────────────────────────────────── timers


class PhaseTimer:
    """Accumulates wall seconds per named phase (`with timer.phase("inference"): ...`)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = collections.defaultdict(float)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] += seconds

    def as_dict(self) -> dict[str, float]:
        return {f"{name}_s": round(value, 4) for name, value in sorted(self.seconds.items())}


# ───────────────────────────────────────────────────────────────────────────────────── policy runners


def _policy_device(policy) -> Any:
    import torch

    try:
        return next(policy.parameters()).device
    except (AttributeError, StopIteration, TypeError):
        return torch.device("cpu")


class LocalPolicyRunner:
    """Runs a policy in this process: observations -> batch -> `predict_action_chunk` -> numpy (B, H, A)."""

    def __init__(self, policy, *, device=None) -> None:
        self.policy = policy
        self.device = device if device is not None else _policy_device(policy)
        if hasattr(policy, "eval"):
            policy.eval()
        config = getattr(policy, "config", None)
        n_action_steps = getattr(config, "n_action_steps", None)
        if n_action_steps is None or int(n_action_steps) < 1:
            raise ValueError(
                f"policy {type(policy).__name__} has no positive config.n_action_steps ({n_action_steps!r}); the "
                "collector executes the first n_action_steps of each predicted chunk"
            )
        self.n_action_steps = int(n_action_steps)

    def reset(self) -> None:
        if hasattr(self.policy, "reset"):
            self.policy.reset()

    def predict_chunks(self, observations: list[dict], timer: PhaseTimer | None = None) -> np.ndarray:
        import torch

        from robot_si.policies import observations_to_batch

        timer = timer or PhaseTimer()
        with timer.phase("observation"):
            batch = observations_to_batch(observations, self.device)
        with timer.phase("inference"), torch.inference_mode():
            chunk = self.policy.predict_action_chunk(batch)
            if isinstance(chunk, torch.Tensor):
                chunk = chunk.detach().to("cpu", torch.float32).numpy()
        return np.asarray(chunk, dtype=np.float32)


def as_policy_runner(policy) -> Any:
    """A runner for `policy`: objects with `predict_chunks` (runners, inference-server clients) pass through."""
    return policy if hasattr(policy, "predict_chunks") else LocalPolicyRunner(policy)


def load_policy_from_path(path: str | os.PathLike[str]):
    """Load a saved policy checkpoint through `robot_si.policies.load_policy` with a clear error if it's missing."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"policy checkpoint {str(path)!r} does not exist; pass policy=<dir of a saved policy>")
    from robot_si.policies import load_policy

    return load_policy(path)


def policy_version_of(policy, default: str = "unknown") -> str:
    """Best available version string of a policy object or checkpoint path."""
    if isinstance(policy, (str, os.PathLike)):
        path = Path(policy).resolve()  # e.g. runs/x/round2/policy -> "round2/policy"
        return f"{path.parent.name}/{path.name}" if path.parent.name else path.name
    for attribute in ("policy_version", "version"):
        value = getattr(policy, attribute, None)
        if isinstance(value, str) and value:
            return value
    return default


# ──────────────────────────────────────────────────────────────────────────────────────── collector


def _make_env_default(task: str, *, image_size: int, instruction_split: str, max_episode_steps: int | None):
    from robot_si.envs import make_env

    return make_env(task, image_size=image_size, instruction_split=instruction_split,
                    max_episode_steps=max_episode_steps)


@dataclasses.dataclass
class _Slot:
    """One env copy and the episode running in it."""

    index: int
    env: Any = None
    env_task: str | None = None
    # envs this slot built, by task: a slot switching back to a task reuses its env (GL context creation is costly)
    envs_by_task: dict[str, Any] = dataclasses.field(default_factory=dict)
    request: EpisodeRequest | None = None
    observation: dict | None = None
    instruction: str = ""
    queue: collections.deque = dataclasses.field(default_factory=collections.deque)
    images: dict[str, list] = dataclasses.field(default_factory=dict)
    states: list = dataclasses.field(default_factory=list)
    actions: list = dataclasses.field(default_factory=list)
    success: bool | None = None
    noise_rng: np.random.Generator | None = None

    def clear(self) -> None:
        self.request, self.observation, self.success, self.noise_rng = None, None, None, None
        self.queue.clear()
        self.images, self.states, self.actions = {}, [], []


class Collector:
    """Runs episodes in `num_envs` env copies with batched inference (see the module docstring).

    Envs are built lazily and kept across `run()` calls: each slot keeps one env per task it has run (GL context
    creation is costly) and prefers pending episodes of its current task; an env that raised is closed and rebuilt. `env_factory(task, image_size=, instruction_split=, max_episode_steps=)`
    replaces `robot_si.envs.make_env` (fault injection, other suites). Use as a context manager or call
    `close()`.

    CPU sharing (measured in bench/collect_throughput.py): sim, software rendering and inference share the same
    cores, so during a run torch uses `inference_threads` intra-op threads (default 1; None leaves torch alone):
    OpenMP workers spin after every forward and made the next renders ~2x slower. For the same reason Mesa's
    software rasterizer (llvmpipe) renders in the calling thread (`LP_NUM_THREADS=0`, set by `robot_si.envs` unless
    already set; measured faster in every collection setup than its default of one thread per core, 2026-12-02).
    Neither matters on a GPU.
    """

    def __init__(
        self,
        *,
        num_envs: int = 4,
        image_size: int = 64,
        instruction_split: str = "train",
        exploration_std: float = 0.0,
        max_episode_steps: int | None = None,
        env_factory: Callable[..., Any] | None = None,
        progress: bool = True,
        progress_desc: str = "collect",
        max_consecutive_policy_failures: int = 3,
        worker_name: str = "local",
        inference_threads: int | None = 1,
    ) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs={num_envs!r} must be a positive int")
        if not (isinstance(exploration_std, (int, float)) and math.isfinite(exploration_std) and exploration_std >= 0):
            raise ValueError(f"exploration_std={exploration_std!r} must be a finite number >= 0 (0 disables noise)")
        if instruction_split not in ("train", "heldout"):
            raise ValueError(f"instruction_split={instruction_split!r}; use 'train' or 'heldout'")
        self.num_envs = num_envs
        self.inference_threads = inference_threads
        self.image_size = image_size
        self.instruction_split = instruction_split
        self.exploration_std = float(exploration_std)
        self.max_episode_steps = max_episode_steps
        self.env_factory = env_factory or _make_env_default
        self.progress = progress
        self.progress_desc = progress_desc
        self.max_consecutive_policy_failures = max_consecutive_policy_failures
        self.worker_name = worker_name
        self._slots = [_Slot(index=i) for i in range(num_envs)]
        self.env_rebuilds = 0
        self.last_metrics: dict[str, Any] = {}
        self._render_seconds = [0.0]  # total render time of this collector's envs (see _attach_render_timer)

    # ── public ──────────────────────────────────────────────────────────

    def run(
        self,
        policy,
        requests: Sequence[EpisodeRequest],
        *,
        on_episode: Callable[[EpisodeResult], None] | None = None,
        policy_version: str | None = None,
        keep_frames: bool = True,
        timer: PhaseTimer | None = None,
    ) -> dict[str, Any]:
        """Run every request; call `on_episode(result)` as each episode ends; return metrics.

        `policy` is a policy (with `predict_action_chunk` and `config.n_action_steps`) or a runner with
        `predict_chunks(observations, timer) -> (B, H, A)` and `n_action_steps` (e.g. an inference-server client).
        """
        episodes = self.iter_episodes(policy, requests, policy_version=policy_version, keep_frames=keep_frames,
                                      timer=timer)
        try:
            for result in episodes:
                if on_episode is not None:
                    on_episode(result)
        finally:
            episodes.close()  # on an exception (Ctrl-C in the callback too) this discards in-flight episodes now
        return self.last_metrics

    def iter_episodes(
        self,
        policy,
        requests: Sequence[EpisodeRequest],
        *,
        policy_version: str | None = None,
        keep_frames: bool = True,
        timer: PhaseTimer | None = None,
    ) -> Iterator[EpisodeResult]:
        """Like `run`, as a generator of results in finishing order; metrics end up in `self.last_metrics`."""
        runner = as_policy_runner(policy)
        if hasattr(runner, "reset"):
            runner.reset()
        version = policy_version or policy_version_of(getattr(runner, "policy", policy))
        ids = [r.episode_id for r in requests]
        if len(set(ids)) != len(ids):
            duplicates = sorted({i for i in ids if ids.count(i) > 1})
            raise ValueError(f"duplicate episode ids in the requests: {duplicates[:5]}")
        timer = timer or PhaseTimer()
        state = _RunState(runner=runner, version=version, keep_frames=keep_frames, timer=timer,
                          total=len(requests), progress=self.progress, desc=self.progress_desc)
        pending = collections.deque(requests)
        render_start = self._render_seconds[0]
        start = time.perf_counter()
        self.last_metrics = {}
        torch_threads = self._limit_torch_threads()
        try:
            while pending or any(slot.request is not None for slot in self._slots):
                for slot in self._slots:
                    while slot.request is None and pending:
                        self._start_episode(slot, _pop_matching(pending, slot.env_task), state)
                active = [slot for slot in self._slots if slot.request is not None]
                if active:
                    needs_chunk = [slot for slot in active if not slot.queue]
                    if needs_chunk:
                        self._refill(needs_chunk, state)
                    for slot in active:
                        if slot.request is not None:
                            self._step(slot, state)
                while state.finished:
                    yield state.finished.popleft()
        except BaseException:  # Ctrl-C, the consumer closing the generator, a policy that keeps failing
            # In-flight episodes are dropped whole: nothing partial reaches the store; a rerun redoes them.
            state.discarded = sum(slot.request is not None for slot in self._slots)
            for slot in self._slots:
                slot.clear()
            state.close_bar()
            raise
        finally:
            self._restore_torch_threads(torch_threads)
        state.close_bar()
        state.render_s = self._render_seconds[0] - render_start
        self.last_metrics = state.metrics(wall_s=time.perf_counter() - start, env_rebuilds=self.env_rebuilds)

    def close(self) -> None:
        for slot in self._slots:
            self._close_all_envs(slot)

    def _limit_torch_threads(self) -> int | None:
        if self.inference_threads is None:
            return None
        import torch

        previous = torch.get_num_threads()
        torch.set_num_threads(self.inference_threads)
        return previous

    @staticmethod
    def _restore_torch_threads(previous: int | None) -> None:
        if previous is not None:
            import torch

            torch.set_num_threads(previous)

    def __enter__(self) -> Collector:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ── episode lifecycle ──────────────────────────────────────────────

    def _ensure_env(self, slot: _Slot, task: str, state: _RunState) -> None:
        if slot.env is not None and slot.env_task == task:
            return
        env = slot.envs_by_task.get(task)
        if env is None:
            with state.timer.phase("env_build"):
                env = self.env_factory(task, image_size=self.image_size, instruction_split=self.instruction_split,
                                       max_episode_steps=self.max_episode_steps)
            _attach_render_timer(env, self._render_seconds)
            slot.envs_by_task[task] = env
        slot.env, slot.env_task = env, task

    def _close_env(self, slot: _Slot) -> None:
        """Close the slot's current env (after a fault, so it is rebuilt on next use)."""
        if slot.env is not None:
            slot.envs_by_task.pop(slot.env_task, None)
            with contextlib.suppress(Exception):
                slot.env.close()
        slot.env, slot.env_task = None, None

    def _close_all_envs(self, slot: _Slot) -> None:
        for env in slot.envs_by_task.values():
            with contextlib.suppress(Exception):
                env.close()
        slot.envs_by_task.clear()
        slot.env, slot.env_task = None, None

    def _start_episode(self, slot: _Slot, request: EpisodeRequest, state: _RunState) -> None:
        slot.clear()
        slot.request = request
        try:
            self._ensure_env(slot, request.task, state)
            with state.timer.phase("env"):
                observation, info = slot.env.reset(seed=int(request.seed))
        except Exception as error:  # noqa: BLE001 — an env fault ends this episode only
            self._finish(slot, state, error=f"env reset raised {type(error).__name__}: {error}", rebuild_env=True)
            return
        slot.observation = observation
        slot.instruction = str(getattr(slot.env.unwrapped, "instruction", observation.get("task", "")))
        slot.success = bool(info.get("is_success", False))
        slot.noise_rng = np.random.default_rng([int(request.seed), NOISE_STREAM])
        slot.images = {key: [] for key in observation if key.startswith(IMAGE_PREFIX)}

    def _refill(self, slots: list[_Slot], state: _RunState) -> None:
        """One batched forward for every env whose action queue ran dry."""
        runner = state.runner
        try:
            chunks = runner.predict_chunks([slot.observation for slot in slots], state.timer)
        except Exception as error:  # noqa: BLE001
            state.consecutive_policy_failures += 1
            message = f"policy raised {type(error).__name__}: {error}"
            for slot in slots:
                self._finish(slot, state, error=message)
            if state.consecutive_policy_failures >= self.max_consecutive_policy_failures:
                raise RuntimeError(
                    f"the policy failed on {state.consecutive_policy_failures} consecutive batches "
                    f"(last: {message}); fix the policy before collecting"
                ) from error
            return
        state.consecutive_policy_failures = 0
        state.forward_calls += 1
        state.forward_batch_total += len(slots)
        chunks = np.asarray(chunks)
        if chunks.ndim != 3 or chunks.shape[0] != len(slots) or chunks.shape[1] < 1 or chunks.shape[2] != ACTION_DIM:
            message = (f"policy returned actions of shape {tuple(chunks.shape)} for a batch of {len(slots)}; expected "
                       f"({len(slots)}, horizon, {ACTION_DIM})")
            for slot in slots:
                self._finish(slot, state, error=message)
            return
        n_steps = min(runner.n_action_steps, chunks.shape[1])
        for slot, chunk in zip(slots, chunks):
            actions = chunk[:n_steps].astype(np.float64)
            if not np.all(np.isfinite(actions)):
                self._finish(slot, state, error=f"policy returned a non-finite action (NaN/inf) at step "
                                                f"{len(slot.actions)}: {actions[~np.isfinite(actions).all(1)][0].tolist()}")
                continue
            if self.exploration_std > 0:
                actions = actions + slot.noise_rng.normal(0.0, self.exploration_std, actions.shape)
            # Deliberate clip: the env refuses actions outside [-1, 1]; the clipped action is what is stored.
            slot.queue.extend(np.clip(actions, -1.0, 1.0).astype(np.float32))

    def _step(self, slot: _Slot, state: _RunState) -> None:
        action = slot.queue.popleft()
        observation = slot.observation
        with state.timer.phase("observation"):
            for key, frames in slot.images.items():
                frames.append(observation[key])
            slot.states.append(np.asarray(observation[STATE_KEY], dtype=np.float32))
            slot.actions.append(action)
        try:
            with state.timer.phase("env"):
                observation, _, terminated, truncated, info = slot.env.step(action)
        except Exception as error:  # noqa: BLE001 — an env fault ends this episode only
            self._finish(slot, state, error=f"env step raised {type(error).__name__}: {error}", rebuild_env=True)
            return
        state.env_steps += 1
        slot.observation = observation
        slot.success = bool(info["is_success"])  # ground truth: audit field / evaluation only
        if terminated or truncated:
            self._finish(slot, state)

    def _finish(self, slot: _Slot, state: _RunState, *, error: str | None = None, rebuild_env: bool = False) -> None:
        request = slot.request
        frames = None
        num_frames = len(slot.actions)
        if error is not None and num_frames == 0 and slot.observation is not None:
            # The store keeps only episodes with >= 1 frame: keep the real first observation with a zero action
            # so the failure is on record; consumers skip episodes whose `error` is set.
            error += " (no action was executed; the single stored action row is a zero placeholder)"
            with state.timer.phase("observation"):
                for key in slot.images:
                    slot.images[key].append(slot.observation[key])
                slot.states.append(np.asarray(slot.observation[STATE_KEY], dtype=np.float32))
                slot.actions.append(np.zeros(ACTION_DIM, np.float32))
            num_frames = 1
        terminal = None
        if state.keep_frames and num_frames > 0:
            with state.timer.phase("observation"):
                frames = {key: np.stack(values) for key, values in slot.images.items()}
                frames[STATE_KEY] = np.stack(slot.states)
                frames[ACTION_KEY] = np.stack(slot.actions)
                if error is None:  # the env ended it: its last observation is the scene it was judged on
                    terminal = {key: np.asarray(slot.observation[key]) for key in slot.images}
                    terminal[STATE_KEY] = np.asarray(slot.observation[STATE_KEY], dtype=np.float32)
        result = EpisodeResult(
            episode_id=request.episode_id, task=request.task, seed=int(request.seed), round=request.round,
            policy_version=state.version, instruction=slot.instruction, num_frames=num_frames,
            success=slot.success, error=error, frames=frames, terminal=terminal, worker=self.worker_name,
        )
        slot.clear()
        if rebuild_env:
            self._close_env(slot)
            self.env_rebuilds += 1
        state.record(result)


def _pop_matching(pending: collections.deque, task: str | None) -> EpisodeRequest:
    """The first pending request for `task` (so the slot keeps its env), else the first one. Episode outcomes do
    not depend on which slot runs them, so reordering keeps runs reproducible."""
    if task is not None and pending[0].task != task:
        for position, request in enumerate(pending):
            if request.task == task:
                del pending[position]
                return request
    return pending.popleft()


def _attach_render_timer(env, render_seconds: list[float]) -> None:
    """Time the env's own rendering separately from physics (TabletopEnv renders in `_frame`)."""
    inner = getattr(env, "unwrapped", env)
    frame = getattr(inner, "_frame", None)
    if frame is None or getattr(frame, "_robot_si_timed", False):
        return

    def timed_frame(*args, **kwargs):
        start = time.perf_counter()
        try:
            return frame(*args, **kwargs)
        finally:
            render_seconds[0] += time.perf_counter() - start

    timed_frame._robot_si_timed = True  # type: ignore[attr-defined]
    inner._frame = timed_frame


class _RunState:
    """Book-keeping of one `Collector.run` call: counts, timers, the progress bar, the result callback."""

    def __init__(self, *, runner, version, keep_frames, timer, total, progress, desc) -> None:
        from tqdm.auto import tqdm

        self.runner, self.version, self.keep_frames, self.timer = runner, version, keep_frames, timer
        self.finished: collections.deque[EpisodeResult] = collections.deque()
        self.env_steps = 0
        self.render_s = 0.0
        self.forward_calls = 0
        self.forward_batch_total = 0
        self.consecutive_policy_failures = 0
        self.discarded = 0
        self.episodes = 0
        self.successes = 0
        self.errors = 0
        self.per_task: dict[str, dict[str, int]] = {}
        self.error_messages: list[str] = []
        self._start = time.perf_counter()
        self.bar = tqdm(total=total, desc=desc, unit="ep", disable=not progress, dynamic_ncols=True)

    def record(self, result: EpisodeResult) -> None:
        self.episodes += 1
        task = self.per_task.setdefault(result.task, {"episodes": 0, "gt_successes": 0, "errors": 0})
        task["episodes"] += 1
        if result.error is not None:
            self.errors += 1
            task["errors"] += 1
            if len(self.error_messages) < 10:
                self.error_messages.append(f"{result.episode_id}: {result.error}")
        elif result.success:
            self.successes += 1
            task["gt_successes"] += 1
        self.finished.append(result)
        elapsed = max(time.perf_counter() - self._start, 1e-9)
        # Ground-truth success is shown for the operator's eyes only (sim); nothing downstream reads this bar.
        self.bar.set_postfix(gt_success=f"{self.successes}/{self.episodes}", errors=self.errors,
                             steps_per_s=f"{self.env_steps / elapsed:.0f}", refresh=False)
        self.bar.update(1)

    def close_bar(self) -> None:
        self.bar.close()

    def metrics(self, *, wall_s: float, env_rebuilds: int) -> dict[str, Any]:
        phases = dict(self.timer.seconds)
        env_total = phases.pop("env", 0.0)
        phases["env_step"] = max(env_total - self.render_s, 0.0)  # physics + task logic
        phases["render"] = self.render_s
        timer = PhaseTimer()
        for name, seconds in phases.items():
            timer.add(name, seconds)
        return {
            "episodes": self.episodes,
            "episodes_with_error": self.errors,
            "episodes_discarded": self.discarded,
            "gt_success_rate": (self.successes / self.episodes) if self.episodes else None,
            "env_steps": self.env_steps,
            "wall_s": round(wall_s, 4),
            "env_steps_per_s": self.env_steps / wall_s if wall_s > 0 else 0.0,
            "forward_calls": self.forward_calls,
            "mean_forward_batch": (self.forward_batch_total / self.forward_calls) if self.forward_calls else 0.0,
            "env_rebuilds": env_rebuilds,
            "policy_version": self.version,
            "per_task": self.per_task,
            "errors": self.error_messages,
            "phase_s": timer.as_dict(),
        }


# ─────────────────────────────────────────────────────────────────────────────────── store + collect()


def _episode_frames_for_store(result: EpisodeResult, cameras: Sequence[str]) -> dict[str, np.ndarray]:
    frames = result.frames or {}
    return {key: frames[key] for key in [IMAGE_PREFIX + c for c in cameras] + [STATE_KEY, ACTION_KEY]}


class StoreSink:
    """Writes each finished episode to the store as it arrives (`writer`: process | thread | sync)."""

    def __init__(self, store, *, writer: str = "process", timer: PhaseTimer | None = None) -> None:
        if writer not in WRITER_MODES:
            raise ValueError(f"writer={writer!r}; use one of {WRITER_MODES}")
        self.store = store
        self.mode = writer
        self.timer = timer or PhaseTimer()
        self._writer = None if writer == "sync" else store.writer(in_subprocess=writer == "process")
        self.written = 0
        self.not_stored: list[str] = []

    def __call__(self, result: EpisodeResult) -> None:
        from robot_si.data import EpisodeMeta

        if result.frames is None or result.num_frames == 0:
            self.not_stored.append(result.episode_id)  # no observation exists (env reset failed): rerun retries
            return
        meta = EpisodeMeta(
            episode_id=result.episode_id, source="autonomous", round=int(result.round),
            policy_version=result.policy_version, task_name=result.task, instruction=result.instruction,
            seed=int(result.seed), num_frames=int(result.num_frames), error=result.error,
        )
        frames = _episode_frames_for_store(result, self.store.spec.cameras)
        terminal = None
        if result.terminal is not None:
            terminal = {key: result.terminal[key] for key in self.store.spec.image_keys + [STATE_KEY]}
        with self.timer.phase("store_write"):
            if self._writer is None:
                self.store.append_episode(frames, meta, audit_gt_success=result.success, terminal=terminal)
            else:
                self._writer.submit(frames, meta, audit_gt_success=result.success, terminal=terminal)
        self.written += 1

    def close(self) -> None:
        if self._writer is not None:
            with self.timer.phase("store_write"):
                self._writer.close()
            self._writer = None

    def __enter__(self) -> StoreSink:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def validate_tasks(tasks: Sequence[str]) -> list[str]:
    from robot_si.envs import list_tasks

    if isinstance(tasks, str):
        tasks = [tasks]
    tasks = [str(t) for t in tasks]
    known = list_tasks()
    if not tasks:
        raise ValueError(f"give at least one task, e.g. tasks=[reach,push]; known tasks: {known}")
    unknown = [t for t in tasks if t not in known]
    if unknown:
        raise ValueError(f"unknown tasks {unknown}; known tasks: {known}")
    if len(set(tasks)) != len(tasks):
        raise ValueError(f"tasks {tasks} repeat a task; list each task once")
    return tasks


def validate_episodes(episodes_per_task: int, name: str = "episodes_per_task") -> int:
    if isinstance(episodes_per_task, bool) or not isinstance(episodes_per_task, int) or episodes_per_task < 1:
        raise ValueError(f"{name}={episodes_per_task!r} must be a positive int")
    return episodes_per_task


def episode_counts(tasks: Sequence[str], episodes_per_task: int | Mapping[str, int]) -> dict[str, int]:
    """Episodes per task: one count for every task, or a count per task (e.g. `allocation.allocate_episodes`)."""
    if not isinstance(episodes_per_task, Mapping):
        validate_episodes(episodes_per_task)
        return {task: episodes_per_task for task in tasks}
    if set(episodes_per_task) != set(tasks):
        raise ValueError(f"episodes_per_task names tasks {sorted(episodes_per_task)}; give a count for exactly {list(tasks)}")
    for task, count in episodes_per_task.items():
        validate_episodes(count, name=f"episodes_per_task[{task!r}]")
    return {task: episodes_per_task[task] for task in tasks}


def collection_requests(tasks: Sequence[str], episodes_per_task: int | Mapping[str, int], *, seed: int,
                        round: int) -> list[EpisodeRequest]:
    """The episodes of one collection run, task-major; ids and seeds follow seeds.py."""
    requests = []
    for task, count in episode_counts(tasks, episodes_per_task).items():
        for index in range(count):
            episode_seed = collection_seed(seed, task, index, round=round)
            requests.append(EpisodeRequest(episode_id=collection_episode_id(round=round, task=task, seed=episode_seed),
                                           task=task, seed=episode_seed, round=round))
    check_seeds([r.seed for r in requests], purpose="collect")
    return requests


def open_store(store, *, image_size: int, cameras: Sequence[str] = ("front",)):
    from robot_si.data import EpisodeStore
    from robot_si.envs import ACTION_DIM as ENV_ACTION_DIM
    from robot_si.envs import STATE_DIM

    if isinstance(store, EpisodeStore):
        return store
    return EpisodeStore.open_or_create(store, fps=10, image_size=image_size, cameras=tuple(cameras),
                                       state_dim=STATE_DIM, action_dim=ENV_ACTION_DIM)


def collect(
    policy,
    tasks: Sequence[str],
    episodes_per_task: int | Mapping[str, int],
    *,
    store,
    round: int,
    seed: int = 0,
    policy_version: str | None = None,
    num_envs: int = 4,
    exploration_std: float = 0.0,
    image_size: int = 64,
    instruction_split: str = "train",
    max_episode_steps: int | None = None,
    backend: str = "local",
    writer: str = "process",
    progress: bool = True,
    ray_options: dict[str, Any] | None = None,
    env_factory: Callable[..., Any] | None = None,
) -> dict[str, Any]:
    """Collect `episodes_per_task` autonomous episodes per task (one count, or a count per task) into `store`
    (a path or an EpisodeStore).

    Resumable: episodes already in the store (same round, task and seed) are skipped, so rerunning an
    interrupted call with the same arguments collects only the missing ones. `policy` is a policy object or a
    checkpoint directory. Returns metrics: counts, ground-truth success for the operator (sim), env steps/s and
    seconds per phase (env_step, render, observation, inference, store_write).
    """
    tasks = validate_tasks(tasks)
    episodes_per_task = episode_counts(tasks, episodes_per_task)
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r}; use one of {BACKENDS}")
    if isinstance(round, bool) or not isinstance(round, int) or round < 0:
        raise ValueError(f"round={round!r} must be a non-negative int")
    version = policy_version or policy_version_of(policy)
    if isinstance(policy, (str, os.PathLike)):
        # loaded here for both backends: Ray workers get its config + weights, so no shared filesystem is needed
        policy = load_policy_from_path(policy)
    store = open_store(store, image_size=image_size)
    requests = collection_requests(tasks, episodes_per_task, seed=seed, round=round)
    todo = [r for r in requests if r.episode_id not in store]
    timer = PhaseTimer()
    start = time.perf_counter()
    with StoreSink(store, writer=writer, timer=timer) as sink:
        if backend == "local" or not todo:  # nothing to do: no reason to start Ray actors
            with Collector(num_envs=num_envs, image_size=image_size, instruction_split=instruction_split,
                           exploration_std=exploration_std, max_episode_steps=max_episode_steps,
                           env_factory=env_factory, progress=progress) as collector:
                metrics = collector.run(policy, todo, on_episode=sink, policy_version=version, timer=timer)
        else:
            from robot_si.collect.ray_backend import RayCollector

            options = dict(ray_options or {})
            with RayCollector(num_envs_per_worker=num_envs, image_size=image_size,
                              instruction_split=instruction_split, exploration_std=exploration_std,
                              max_episode_steps=max_episode_steps, env_factory=env_factory, progress=progress,
                              **options) as collector:
                metrics = collector.run(policy, todo, on_episode=sink, policy_version=version, timer=timer)
    wall_s = time.perf_counter() - start
    # store_write_s includes waiting for the background writer to flush at the end
    metrics["phase_s"]["store_write_s"] = round_seconds(timer.seconds.get("store_write", 0.0))
    if metrics["errors"]:
        warnings.warn(f"{metrics['episodes_with_error']} episodes ended with an error; first: {metrics['errors'][0]}",
                      stacklevel=2)
    metrics.update(
        backend=backend,
        round=round,
        requested=len(requests),
        skipped_existing=len(requests) - len(todo),
        written=sink.written,
        not_stored=sink.not_stored,
        store=str(store.root),
        total_wall_s=round_seconds(wall_s),
    )
    return metrics


def round_seconds(value: float) -> float:
    return float(f"{value:.4f}")
