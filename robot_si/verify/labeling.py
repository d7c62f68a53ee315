"""Budgeted labels from outside the detector: the `LabelSource` interface and active selection.

Owns:
- `LabelSource`: asks for the success label of one episode at a time and enforces a budget (every question
  costs one unit, including ones answered "skip", because the labeler's time was spent). It never answers
  more than `budget` questions; asking past the budget raises `LabelBudgetExhausted`.
- `OracleLabelSource` (simulation only): plays the human by answering from `store.audit_table()`. This is the
  ONLY place in the verifier's labeling path that reads ground truth, and it does so one budgeted question at
  a time; every label it gives is recorded with source "oracle".
- `HumanLabelSource`: writes a GIF and a contact sheet of the episode, prints their paths and the instruction,
  and reads y / n / s(kip) at the terminal. Without a terminal it refuses with a clear error.
- `select_for_labeling`: active selection of which episodes to spend the budget on (those nearest the
  operating threshold, or most uncertain, or a mix of those and a sample stratified over the detector's
  scores), deterministic given the seed, with ties broken by episode id.
"""

from __future__ import annotations

import abc
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

SELECTION_STRATEGIES = ("threshold", "uncertainty", "random", "mixed", "accepted")
DEFAULT_BUDGET = 20
DEFAULT_RANDOM_SHARE = 0.5  # "mixed": share of the budget spent on the stratified sample


class LabelBudgetExhausted(RuntimeError):
    """Raised when a label source is asked more questions than its budget allows."""


class LabelSource(abc.ABC):
    """A budgeted labeler. Subclasses implement `_answer`; callers use `ask` / `ask_many`."""

    name: str = ""

    def __init__(self, *, budget: int = DEFAULT_BUDGET) -> None:
        if isinstance(budget, bool) or not isinstance(budget, int | np.integer) or budget < 0:
            raise ValueError(f"label budget must be an int >= 0 (got {budget!r})")
        self.budget = int(budget)
        self.spent = 0
        self.asked: list[str] = []

    @property
    def remaining(self) -> int:
        return self.budget - self.spent

    def ask(self, store, episode_id: str) -> bool | None:
        """The label of one episode (True success, False failure, None skipped); costs one unit of budget."""
        if self.remaining <= 0:
            raise LabelBudgetExhausted(
                f"the {self.name} label budget of {self.budget} is spent; cannot label {episode_id!r}. "
                "Raise the budget (verifier.label_budget / labeling.budget) or ask for fewer episodes"
            )
        self.spent += 1
        self.asked.append(episode_id)
        answer = self._answer(store, episode_id)
        if answer is not None and not isinstance(answer, bool | np.bool_):
            raise RuntimeError(f"{type(self).__name__} answered {answer!r} for {episode_id!r}; expected True/False/None")
        return None if answer is None else bool(answer)

    def ask_many(self, store, episode_ids: Sequence[str]) -> dict[str, bool | None]:
        """Ask for each episode in order; refuses up front if they do not fit in the remaining budget."""
        episode_ids = list(episode_ids)
        if len(episode_ids) > self.remaining:
            raise LabelBudgetExhausted(
                f"asked for {len(episode_ids)} {self.name} labels but only {self.remaining} of {self.budget} remain; "
                "select fewer episodes (select_for_labeling(..., budget=source.remaining))"
            )
        return {episode_id: self.ask(store, episode_id) for episode_id in episode_ids}

    @abc.abstractmethod
    def _answer(self, store, episode_id: str) -> bool | None: ...


class OracleLabelSource(LabelSource):
    """Simulation stand-in for a human: answers from the store's audit ground truth, one budgeted question at a time."""

    name = "oracle"

    def _answer(self, store, episode_id: str) -> bool | None:
        # Read per question, never kept: nothing outside this budgeted call ever holds ground truth.
        return store.audit_table().get(episode_id)


class HumanLabelSource(LabelSource):
    """Asks a person at the terminal, showing a GIF and a contact sheet written under `media_dir`."""

    name = "human"

    def __init__(
        self,
        *,
        budget: int = DEFAULT_BUDGET,
        media_dir: str | os.PathLike[str] = "label_media",
        input_fn: Callable[[str], str] | None = None,
        print_fn: Callable[[str], None] = print,
    ) -> None:
        super().__init__(budget=budget)
        if input_fn is None and budget > 0 and not sys.stdin.isatty():
            raise RuntimeError(
                "label_source=human needs an interactive terminal (stdin is not a TTY). Run the command in a "
                "terminal, or use label_source=oracle (simulation) or label_source=none (detector labels only)"
            )
        self.media_dir = Path(media_dir)
        self.input_fn = input_fn or input
        self.print_fn = print_fn

    def _answer(self, store, episode_id: str) -> bool | None:
        meta = store.get_meta(episode_id)
        gif, sheet = write_episode_media(store, episode_id, self.media_dir)
        self.print_fn(f"\nepisode {episode_id} ({meta.task_name}): instruction {meta.instruction!r}")
        self.print_fn(f"  animation: {gif}\n  contact sheet: {sheet}")
        for _ in range(5):
            reply = self.input_fn(f"Did the robot do it? [y]es / [n]o / [s]kip ({self.remaining} labels left after this): ")
            reply = reply.strip().lower()
            if reply in ("y", "yes"):
                return True
            if reply in ("n", "no"):
                return False
            if reply in ("s", "skip", ""):
                return None
            self.print_fn(f"  please answer y, n or s (got {reply!r})")
        return None


def write_episode_media(store, episode_id: str, media_dir: str | os.PathLike[str], *, sheet_frames: int = 8) -> tuple[Path, Path]:
    """A GIF of the episode's front camera and a one-row contact sheet PNG; returns their paths."""
    import imageio.v2 as imageio

    media_dir = Path(media_dir)
    media_dir.mkdir(parents=True, exist_ok=True)
    images = store.load_episode(episode_id)["observation.images.front"]
    if len(images) == 0:
        raise ValueError(f"episode {episode_id!r} has no frames to show")
    safe_id = "".join(c if c.isalnum() or c in "._-" else "_" for c in episode_id)
    gif = media_dir / f"{safe_id}.gif"
    imageio.mimsave(gif, list(images), duration=0.1, loop=0)
    picks = np.unique(np.linspace(0, len(images) - 1, min(sheet_frames, len(images))).round().astype(int))
    sheet = media_dir / f"{safe_id}_sheet.png"
    imageio.imwrite(sheet, np.concatenate([images[i] for i in picks], axis=1))
    return gif, sheet


def make_label_source(name: str | None, *, budget: int = DEFAULT_BUDGET, media_dir: str | os.PathLike[str] = "label_media") -> LabelSource | None:
    """`oracle` | `human` | `none` (or None): no budgeted labels, the detector alone labels."""
    if name in (None, "none", "None", ""):
        return None
    if name == "oracle":
        return OracleLabelSource(budget=budget)
    if name == "human":
        return HumanLabelSource(budget=budget, media_dir=media_dir)
    raise ValueError(f"unknown label source {name!r}; choose oracle (simulation), human (terminal) or none")


def select_for_labeling(
    success_probs: Mapping[str, float],
    budget: int,
    *,
    threshold: float = 0.5,
    strategy: str = "threshold",
    seed: int = 0,
    random_share: float = DEFAULT_RANDOM_SHARE,
) -> list[str]:
    """Which episodes to spend `budget` labels on.

    - `threshold`: nearest the operating threshold (labels there change accept/reject decisions most);
    - `uncertainty`: probability nearest 0.5 (most uncertain under a calibrated detector);
    - `random`: a seeded random sample (the baseline active selection should beat);
    - `accepted`: a seeded random sample of the episodes the detector accepts (probability >= threshold): an
      unbiased look at what training on the detector's decisions would train on (`guards.check_labels`);
    - `mixed`: round(`random_share` * budget) episodes drawn as a seeded sample stratified over the detector's
      probabilities (the candidates ranked by probability, cut into that many equal strata, one drawn from
      each), the rest nearest the operating threshold. The threshold alone spends a budget on one side of
      the decision (mostly successes when the threshold is high); the stratified part also labels the
      episodes the detector scores low, so failures are labelled and the calibration sees the whole range.
    Ties are broken by episode id so the choice is reproducible; the result lists the threshold picks
    (nearest first), then the sample (lowest probability first).
    """
    if strategy not in SELECTION_STRATEGIES:
        raise ValueError(f"unknown selection strategy {strategy!r}; choose one of {SELECTION_STRATEGIES}")
    if isinstance(budget, bool) or not isinstance(budget, int | np.integer) or budget < 0:
        raise ValueError(f"budget must be an int >= 0 (got {budget!r})")
    if (isinstance(random_share, bool) or not isinstance(random_share, int | float | np.integer | np.floating)
            or not 0.0 <= float(random_share) <= 1.0):
        raise ValueError(f"random_share must be a number in [0, 1] (the share of a 'mixed' budget spent on the "
                         f"stratified sample; got {random_share!r})")
    episode_ids = sorted(success_probs)
    if strategy == "accepted":
        episode_ids = [e for e in episode_ids if float(success_probs[e]) >= threshold]
    if strategy in ("random", "accepted"):
        rng = np.random.default_rng(seed)
        return [episode_ids[i] for i in sorted(rng.permutation(len(episode_ids))[:budget])]
    center = 0.5 if strategy == "uncertainty" else threshold
    ranked = sorted(episode_ids, key=lambda e: (abs(float(success_probs[e]) - center), e))
    if strategy != "mixed":
        return ranked[:budget]
    budget = min(int(budget), len(episode_ids))
    num_sample = int(np.floor(float(random_share) * budget + 0.5))
    nearest = ranked[: budget - num_sample]
    rest = sorted(set(episode_ids) - set(nearest), key=lambda e: (float(success_probs[e]), e))
    rng = np.random.default_rng(seed)
    edges = np.linspace(0, len(rest), num_sample + 1).round().astype(int)
    sample = [rest[int(rng.integers(lo, hi))] for lo, hi in zip(edges[:-1], edges[1:], strict=True) if hi > lo]
    return nearest + sample
