"""Scale-out of collection with Ray: env-worker actors, weights broadcast by version, an inference server.

Layout (SEED RL / RLinf style):
  - `EnvWorker` (Ray actor): a `Collector` with `num_envs_per_worker` envs. It runs a lease of
    `EpisodeRequest`s and streams each `EpisodeResult` back as the episode finishes (a Ray streaming generator),
    then one metrics dict. The driver (`RayCollector.run`) writes results to the store as they arrive.
  - Policy weights are broadcast by version: the driver `ray.put`s the payload once per version (the policy
    object the first time, afterwards only its `state_dict`, or just a checkpoint path) and each worker loads it
    only when its version differs. Every result carries the `policy_version` that produced it.
  - `InferenceServer` (optional, `inference_server=True`): one async actor holds the policy (on the GPU when
    there is one); workers send raw observations, the server gathers requests up to `max_batch_size`
    observations or `batch_timeout_s`, runs ONE forward and returns each caller its (B_i, H, A) chunk.
  - Faults: if a worker dies, the driver re-queues the requests of its lease that had not come back (episodes
    already streamed are kept), kills the handle and recreates the actor (up to `max_worker_restarts` times per
    worker), re-sends the policy and goes on; the other workers never stop.

Works with a local cluster (`ray.init()`, started here if none is running) and an existing one (`address="auto"`).
"""

from __future__ import annotations

import asyncio
import collections
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from robot_si.collect.records import EpisodeRequest, EpisodeResult
from robot_si.collect.rollout import Collector, LocalPolicyRunner, PhaseTimer, load_policy_from_path

# payload kinds for weight broadcast: a pickled policy object; a state_dict for the object already there; a
# checkpoint path (shared filesystem); or {"config", "state_dict"} for robot_si policies (built with make_policy, so
# process-wide encoders such as the frozen text encoder are not pickled along with the weights)
OBJECT, STATE_DICT, CHECKPOINT, CONFIG_STATE = "object", "state_dict", "checkpoint", "config_state"


def _ray():
    try:
        import ray
    except ImportError as error:  # pragma: no cover - ray is a dev/extra dependency
        raise RuntimeError("backend=ray needs Ray: pip install 'robot-si[ray]'") from error
    return ray


def _load_payload(current_policy, kind: str, payload):
    if kind == OBJECT:
        return payload
    if kind == CHECKPOINT:
        return load_policy_from_path(payload)
    if kind == CONFIG_STATE:
        from robot_si.policies import make_policy

        config = dict(payload["config"])
        if "pretrained_vision" in config:
            config["pretrained_vision"] = False  # the state_dict holds the backbone; skip fetching ImageNet weights
        policy = make_policy(config)
        policy.load_state_dict(payload["state_dict"])
        return policy.eval()
    if kind == STATE_DICT:
        if current_policy is None:
            raise RuntimeError("got a state_dict before any policy object; broadcast the policy object first")
        current_policy.load_state_dict(payload)
        return current_policy
    raise ValueError(f"unknown policy payload kind {kind!r}")


def policy_payload(policy, kind: str | None = None):
    """What `set_policy(version, kind, payload)` expects for `policy`; kind defaults to the cheapest complete one."""
    if kind is None:
        kind = (CHECKPOINT if isinstance(policy, (str, os.PathLike))
                else CONFIG_STATE if _is_robot_si_policy(policy) else OBJECT)
    if kind == CHECKPOINT:
        return str(Path(policy).resolve())
    if kind == OBJECT:
        return policy
    state_dict = {k: v.detach().cpu() for k, v in policy.state_dict().items()}
    if kind == CONFIG_STATE:
        return {"config": policy.config.to_dict(), "state_dict": state_dict}
    if kind == STATE_DICT:
        return state_dict
    raise ValueError(f"unknown policy payload kind {kind!r}")


def _is_robot_si_policy(policy) -> bool:
    try:
        from robot_si.policies import CompactVLAPolicy
    except ImportError:
        return False
    return isinstance(policy, CompactVLAPolicy)


# ──────────────────────────────────────────────────────────────────────────────────── inference server


class InferenceServerImpl:
    """Batches observation requests from many env workers into one forward (wrap with `ray.remote`).

    `predict(observations) -> np.ndarray (len(observations), H, A)`. Requests wait until `max_batch_size`
    observations are queued or `batch_timeout_s` passed since the first queued one, whichever comes first.
    """

    def __init__(self, *, max_batch_size: int = 64, batch_timeout_s: float = 0.005, device: str | None = None) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size={max_batch_size} must be >= 1")
        if batch_timeout_s < 0:
            raise ValueError(f"batch_timeout_s={batch_timeout_s} must be >= 0")
        self.max_batch_size = max_batch_size
        self.batch_timeout_s = batch_timeout_s
        self.device = device
        self.policy = None
        self.runner: LocalPolicyRunner | None = None
        self.version: str | None = None
        self._pending: collections.deque = collections.deque()  # (observations, future)
        self._wakeup: asyncio.Event | None = None
        self._loop_task: asyncio.Task | None = None
        self.timer = PhaseTimer()
        self.forward_calls = 0
        self.observations_served = 0

    def set_policy(self, version: str, kind: str, payload) -> str:
        import torch

        policy = _load_payload(self.policy, kind, payload)
        device = torch.device(self.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if hasattr(policy, "to"):
            policy = policy.to(device)
        self.policy = policy
        self.runner = LocalPolicyRunner(policy, device=device)
        self.version = version
        return version

    def n_action_steps(self) -> int:
        if self.runner is None:
            raise RuntimeError("the inference server has no policy yet; call set_policy first")
        return self.runner.n_action_steps

    def stats(self) -> dict[str, Any]:
        return {
            "forward_calls": self.forward_calls,
            "observations_served": self.observations_served,
            "mean_batch": self.observations_served / self.forward_calls if self.forward_calls else 0.0,
            "policy_version": self.version,
            **self.timer.as_dict(),
        }

    async def predict(self, observations: list[dict]) -> np.ndarray:
        if self.runner is None:
            raise RuntimeError("the inference server has no policy yet; call set_policy first")
        loop = asyncio.get_running_loop()
        if self._wakeup is None:
            self._wakeup = asyncio.Event()
        future = loop.create_future()
        self._pending.append((observations, future))
        self._wakeup.set()
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.ensure_future(self._batch_loop())
        return await future

    async def _batch_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            deadline = loop.time() + self.batch_timeout_s
            while sum(len(obs) for obs, _ in self._pending) < self.max_batch_size:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), timeout=remaining)
                except asyncio.TimeoutError:
                    break
            batch, count = [], 0
            while self._pending and (not batch or count + len(self._pending[0][0]) <= self.max_batch_size):
                observations, future = self._pending.popleft()
                batch.append((observations, future))
                count += len(observations)
            flat = [o for observations, _ in batch for o in observations]
            try:
                chunks = self.runner.predict_chunks(flat, self.timer)
            except Exception as error:  # noqa: BLE001 — every caller of this batch gets the error
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            self.forward_calls += 1
            self.observations_served += len(flat)
            offset = 0
            for observations, future in batch:
                if not future.done():
                    future.set_result(chunks[offset : offset + len(observations)])
                offset += len(observations)
            await asyncio.sleep(0)  # let the callers' replies go out before the next batch


class InferenceClient:
    """A policy runner (for `Collector`) that asks an `InferenceServer` actor for action chunks."""

    def __init__(self, server, n_action_steps: int) -> None:
        self.server = server
        self.n_action_steps = int(n_action_steps)

    def predict_chunks(self, observations: list[dict], timer: PhaseTimer | None = None) -> np.ndarray:
        ray = _ray()
        timer = timer or PhaseTimer()
        with timer.phase("inference"):  # includes queueing at the server and the round trip
            return np.asarray(ray.get(self.server.predict.remote(observations)))


# ─────────────────────────────────────────────────────────────────────────────────────────── env worker


class EnvWorkerImpl:
    """A Ray actor body: `num_envs` envs in a `Collector`, its own policy copy or an inference-server client."""

    def __init__(self, name: str, collector_kwargs: dict[str, Any]) -> None:
        self.name = name
        self.collector = Collector(progress=False, worker_name=name, **collector_kwargs)
        self.policy = None
        self.runner = None
        self.version: str | None = None

    def pid(self) -> int:
        return os.getpid()

    def set_policy(self, version: str, kind: str, payload) -> str:
        import torch

        torch.set_num_threads(1)  # one core per worker; threads would fight the other workers' envs
        self.policy = _load_payload(self.policy, kind, payload)
        self.runner = LocalPolicyRunner(self.policy)
        self.version = version
        return version

    def use_inference_server(self, server, version: str) -> str:
        ray = _ray()
        self.runner = InferenceClient(server, ray.get(server.n_action_steps.remote()))
        self.version = version
        return version

    def run(self, requests: list[EpisodeRequest], keep_frames: bool = True):
        """Streams one EpisodeResult per finished episode, then this lease's metrics dict."""
        if self.runner is None:
            raise RuntimeError(f"worker {self.name} has no policy; the driver must broadcast one first")
        yield from self.collector.iter_episodes(self.runner, requests, policy_version=self.version,
                                                keep_frames=keep_frames)
        yield self.collector.last_metrics

    def close(self) -> None:
        self.collector.close()


class RayCollector:
    """Collection over Ray env-worker actors; same `run()` contract as `Collector` (see the module docstring).

    Args:
        num_workers: env-worker actors. num_envs_per_worker: envs per worker (batched inside the worker).
        inference_server: route inference through one `InferenceServer` actor instead of a copy per worker.
        server_max_batch_size, server_batch_timeout_s, server_device, server_num_gpus: server batching/placement.
        address: passed to `ray.init` when Ray is not initialized yet (None: start a local cluster; "auto").
        worker_num_cpus: CPUs reserved per worker actor. lease_size: requests handed to a worker at a time
            (default 2 * num_envs_per_worker); a dying worker re-queues at most one lease.
        max_worker_restarts: recreations per worker before it is dropped (the run fails only with no workers).
    """

    def __init__(
        self,
        *,
        num_workers: int = 2,
        num_envs_per_worker: int = 4,
        image_size: int = 64,
        instruction_split: str = "train",
        exploration_std: float = 0.0,
        max_episode_steps: int | None = None,
        env_factory: Callable[..., Any] | None = None,
        progress: bool = True,
        inference_server: bool = False,
        server_max_batch_size: int = 64,
        server_batch_timeout_s: float = 0.005,
        server_device: str | None = None,
        server_num_gpus: float = 0.0,
        address: str | None = None,
        worker_num_cpus: float = 1.0,
        lease_size: int | None = None,
        max_worker_restarts: int = 3,
    ) -> None:
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1:
            raise ValueError(f"num_workers={num_workers!r} must be a positive int")
        ray = _ray()
        self._owns_ray = False
        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
            self._owns_ray = True
        self.collector_kwargs = dict(num_envs=num_envs_per_worker, image_size=image_size,
                                     instruction_split=instruction_split, exploration_std=exploration_std,
                                     max_episode_steps=max_episode_steps, env_factory=env_factory)
        Collector(**self.collector_kwargs, progress=False).close()  # validate arguments here, not in an actor
        self.num_workers = num_workers
        self.progress = progress
        self.lease_size = lease_size or 2 * num_envs_per_worker
        self.max_worker_restarts = max_worker_restarts
        self.worker_num_cpus = worker_num_cpus
        self._worker_cls = ray.remote(num_cpus=worker_num_cpus, max_restarts=0)(EnvWorkerImpl)
        self.workers: dict[str, Any] = {f"worker{i}": self._new_worker(f"worker{i}") for i in range(num_workers)}
        self.worker_versions: dict[str, str | None] = {name: None for name in self.workers}
        self.restarts: dict[str, int] = {name: 0 for name in self.workers}
        self.server = None
        if inference_server:
            server_cls = ray.remote(num_cpus=0, num_gpus=server_num_gpus, max_concurrency=1000)(InferenceServerImpl)
            self.server = server_cls.remote(max_batch_size=server_max_batch_size,
                                            batch_timeout_s=server_batch_timeout_s, device=server_device)
        self._server_version: str | None = None
        self._sent_object_class: type | None = None
        self._payload_cache: tuple[str, str, Any] | None = None  # (version, kind, ObjectRef)

    def _new_worker(self, name: str):
        return self._worker_cls.options(name=None).remote(name, self.collector_kwargs)

    # ── weights ────────────────────────────────────────────────────────

    def _payload(self, policy, version: str, *, fresh_object: bool):
        """ray.put the policy once per version (object, or state_dict once workers hold an object)."""
        ray = _ray()
        if isinstance(policy, (str, os.PathLike)):
            kind = CHECKPOINT
        elif fresh_object or self._sent_object_class is not type(policy) or not hasattr(policy, "state_dict"):
            kind = CONFIG_STATE if _is_robot_si_policy(policy) else OBJECT
        else:
            kind = STATE_DICT
        cached = self._payload_cache
        if cached is not None and cached[0] == version and cached[1] == kind:
            return kind, cached[2]
        ref = ray.put(policy_payload(policy, kind))
        self._payload_cache = (version, kind, ref)
        return kind, ref

    def broadcast_policy(self, policy, version: str) -> None:
        """Make every worker (or the inference server) hold `policy` at `version`; no-op where it already does."""
        ray = _ray()
        if self.server is not None:
            if self._server_version != version:
                kind, ref = self._payload(policy, version, fresh_object=self._server_version is None)
                ray.get(self.server.set_policy.remote(version, kind, ref))
                if kind in (OBJECT, CONFIG_STATE):
                    self._sent_object_class = type(policy)
                self._server_version = version
            calls = [self.workers[name].use_inference_server.remote(self.server, version)
                     for name, v in self.worker_versions.items() if v != version]
        else:
            stale = [name for name, v in self.worker_versions.items() if v != version]
            never = any(self.worker_versions[name] is None for name in stale)
            calls = []
            if stale:
                kind, ref = self._payload(policy, version, fresh_object=never)
                calls = [self.workers[name].set_policy.remote(version, kind, ref) for name in stale]
                if kind in (OBJECT, CONFIG_STATE):
                    self._sent_object_class = type(policy)
        ray.get(calls)
        for name in self.worker_versions:
            self.worker_versions[name] = version

    # ── running ────────────────────────────────────────────────────────

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
        """Run every request on the workers; `on_episode(result)` runs in the driver as results stream in."""
        from tqdm.auto import tqdm

        from robot_si.collect.rollout import policy_version_of

        ray = _ray()
        version = policy_version or policy_version_of(policy)
        timer = timer or PhaseTimer()
        start = time.perf_counter()
        with timer.phase("broadcast"):
            self.broadcast_policy(policy, version)
        pending = collections.deque(requests)
        leases: dict[Any, dict[str, Any]] = {}  # generator -> {"worker", "requests", "done"}
        idle = list(self.workers)
        worker_phase = PhaseTimer()
        counts = {"episodes": 0, "errors": 0, "successes": 0, "env_steps": 0, "rebuilds": 0, "forward_calls": 0,
                  "forward_batch_total": 0.0}
        per_task: dict[str, dict[str, int]] = {}
        error_messages: list[str] = []
        restarts_this_run = 0
        bar = tqdm(total=len(requests), desc="collect (ray)", unit="ep", disable=not self.progress, dynamic_ncols=True)
        try:
            while pending or leases:
                while idle and pending:
                    name = idle.pop(0)
                    lease = [pending.popleft() for _ in range(min(self.lease_size, len(pending)))]
                    generator = self.workers[name].run.remote(lease, keep_frames)
                    leases[generator] = {"worker": name, "requests": lease, "done": set()}
                if not leases:
                    if not self.workers:
                        raise RuntimeError("every Ray env worker failed past max_worker_restarts; see the worker logs")
                    continue
                ready, _ = ray.wait(list(leases), num_returns=1)
                for generator in ready:
                    lease = leases[generator]
                    try:
                        item = ray.get(next(generator))
                    except StopIteration:
                        del leases[generator]
                        idle.append(lease["worker"])
                        continue
                    except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError,
                            ray.exceptions.ObjectLostError) as error:
                        del leases[generator]
                        lost = [r for r in lease["requests"] if r.episode_id not in lease["done"]]
                        pending.extendleft(reversed(lost))  # redo them first, on whichever worker is free
                        restarts_this_run += 1
                        if self._restart_worker(lease["worker"], policy, version, error):
                            idle.append(lease["worker"])
                        continue
                    if isinstance(item, EpisodeResult):
                        lease["done"].add(item.episode_id)
                        counts["episodes"] += 1
                        task = per_task.setdefault(item.task, {"episodes": 0, "gt_successes": 0, "errors": 0})
                        task["episodes"] += 1
                        if item.error is not None:
                            counts["errors"] += 1
                            task["errors"] += 1
                            if len(error_messages) < 10:
                                error_messages.append(f"{item.episode_id}: {item.error}")
                        elif item.success:
                            counts["successes"] += 1
                            task["gt_successes"] += 1
                        if on_episode is not None:
                            on_episode(item)
                        bar.set_postfix(gt_success=f"{counts['successes']}/{counts['episodes']}",
                                        errors=counts["errors"], restarts=restarts_this_run, refresh=False)
                        bar.update(1)
                    else:  # the lease's metrics
                        counts["env_steps"] += item["env_steps"]
                        counts["rebuilds"] += item["env_rebuilds"]
                        counts["forward_calls"] += item["forward_calls"]
                        counts["forward_batch_total"] += item["mean_forward_batch"] * item["forward_calls"]
                        for key, seconds in item["phase_s"].items():
                            worker_phase.add(key.removesuffix("_s"), seconds)
        except KeyboardInterrupt:
            # In-flight episodes are dropped (a rerun redoes them); whatever on_episode already got stays whole.
            for generator in leases:
                try:
                    ray.cancel(generator)
                except Exception:  # noqa: BLE001 — best effort; close() kills the workers anyway
                    pass
            bar.close()
            raise
        bar.close()
        wall_s = time.perf_counter() - start
        phase_s = {f"workers_{k}": v for k, v in worker_phase.as_dict().items()}  # summed over workers (CPU-ish s)
        phase_s.update(timer.as_dict())
        metrics = {
            "episodes": counts["episodes"],
            "episodes_with_error": counts["errors"],
            "episodes_discarded": 0,
            "gt_success_rate": counts["successes"] / counts["episodes"] if counts["episodes"] else None,
            "env_steps": counts["env_steps"],
            "wall_s": round(wall_s, 4),
            "env_steps_per_s": counts["env_steps"] / wall_s if wall_s > 0 else 0.0,
            "forward_calls": counts["forward_calls"],
            "mean_forward_batch": (counts["forward_batch_total"] / counts["forward_calls"]
                                   if counts["forward_calls"] else 0.0),
            "env_rebuilds": counts["rebuilds"],
            "policy_version": version,
            "per_task": per_task,
            "errors": error_messages,
            "phase_s": phase_s,
            "num_workers": len(self.workers),
            "worker_restarts": restarts_this_run,
        }
        if self.server is not None:
            metrics["inference_server"] = ray.get(self.server.stats.remote())
        return metrics

    def _restart_worker(self, name: str, policy, version: str, error: Exception) -> bool:
        """Recreate a dead worker (and give it the policy); False once it used up its restarts."""
        ray = _ray()
        import warnings

        try:
            ray.kill(self.workers[name], no_restart=True)
        except Exception:  # noqa: BLE001 — it is already gone
            pass
        self.restarts[name] += 1
        if self.restarts[name] > self.max_worker_restarts:
            warnings.warn(f"Ray env worker {name} died {self.restarts[name]} times ({error}); dropping it",
                          stacklevel=2)
            del self.workers[name]
            del self.worker_versions[name]
            return False
        warnings.warn(f"Ray env worker {name} died ({type(error).__name__}); recreating it "
                      f"(restart {self.restarts[name]}/{self.max_worker_restarts})", stacklevel=2)
        self.workers[name] = self._new_worker(name)
        self.worker_versions[name] = None
        self.broadcast_policy(policy, version)
        return True

    def worker_pids(self) -> dict[str, int]:
        ray = _ray()
        return dict(zip(self.workers, ray.get([w.pid.remote() for w in self.workers.values()])))

    def close(self) -> None:
        ray = _ray()
        if not ray.is_initialized():
            return
        for worker in list(self.workers.values()):
            try:
                ray.get(worker.close.remote(), timeout=10)
            except Exception:  # noqa: BLE001 — a dead worker has nothing to close
                pass
            ray.kill(worker, no_restart=True)
        if self.server is not None:
            ray.kill(self.server, no_restart=True)
        self.workers = {}
        if self._owns_ray:
            ray.shutdown()

    def __enter__(self) -> RayCollector:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def InferenceServer(**options):  # noqa: N802 — reads like the actor class it creates
    """Start an `InferenceServerImpl` actor: `InferenceServer(max_batch_size=, batch_timeout_s=, device=)`."""
    ray = _ray()
    num_gpus = options.pop("num_gpus", 0)
    return ray.remote(num_cpus=0, num_gpus=num_gpus, max_concurrency=1000)(InferenceServerImpl).remote(**options)
