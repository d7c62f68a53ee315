"""The success detector's training examples, built WITHOUT ground truth: the recipe lives here.

Owns `ClipExample` (one (episode, clip end, instruction, label) with the label's source) and
`build_training_examples(stores, ...)`. Sources of examples, each recorded in `ClipExample.label_source`:

- `demo_end`      positive: the clip ending at the last frame of a scripted/teleoperated demo (`source="demo"`;
                  the environment terminates an episode at success, so a demo's last frame shows it done);
- `demo_prefix`   negative ("not yet"): clips of the same demo ending at frame t < end, at fixed fractions of
                  the episode (0 = the beginning) that stop well before the end;
- `near_miss_end` negative: the clip ending at the last frame of a demonstrator's deliberate failure
                  (`source="near_miss"`: aimed a few cm beside the target), the "almost" that demo prefixes, far
                  from the target, never show;
- `relabel_task`  negative: a positive clip paired with an instruction of a *different* task;
- `relabel_colour` negative: a positive clip whose instruction's colour word is swapped for another colour
                  (only when the instruction names one);
- `human` / `oracle` the decided label of an episode from a label version's human/oracle labels (the small
                  budgeted set per round); positives among them also give `labelled_prefix` negatives and
                  relabel negatives like demos do.

Episodes labelled only by the detector itself are NOT used (training on its own guesses would entrench its
errors). Nothing here reads `audit_table()`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

import numpy as np

from robot_si.data.records import INTENDED_OUTCOME
from robot_si.verify.features import episode_end

EXAMPLE_SOURCES = ("demo_end", "demo_prefix", "near_miss_end", "relabel_task", "relabel_colour", "human", "oracle",
                   "labelled_prefix")
DEFAULT_PREFIX_FRACTIONS = (0.0, 0.25, 0.5, 0.7)
FALLBACK_COLOURS = ("red", "green", "blue", "yellow", "purple", "orange")


@dataclasses.dataclass(kw_only=True, frozen=True)
class ClipExample:
    """One training example: the clip of `episode_id` (in `store_root`) ending at `end`, read with `instruction`."""

    store_root: str
    episode_id: str
    task_name: str
    end: int
    instruction: str
    label: bool
    label_source: str

    def __post_init__(self) -> None:
        if self.label_source not in EXAMPLE_SOURCES:
            raise ValueError(f"label_source must be one of {EXAMPLE_SOURCES} (got {self.label_source!r})")


def known_colours() -> tuple[str, ...]:
    try:
        from robot_si.envs.scene import COLOR_NAMES

        return tuple(COLOR_NAMES)
    except ImportError:
        return FALLBACK_COLOURS


def swap_colour(instruction: str, new_colour: str, colours: Sequence[str]) -> str | None:
    """The instruction with its (first) colour word replaced by `new_colour`; None if it names no colour."""
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, colours)) + r")\b", re.IGNORECASE)
    match = pattern.search(instruction)
    if match is None or match.group(1).lower() == new_colour.lower():
        return None
    return instruction[: match.start()] + new_colour + instruction[match.end() :]


def relabel_instructions(
    instruction: str,
    task_name: str,
    instructions_by_task: dict[str, list[str]],
    rng: np.random.Generator,
    *,
    per_kind: int = 1,
) -> list[tuple[str, str]]:
    """(instruction, source) negatives for a positive clip: other tasks' instructions and colour swaps."""
    out: list[tuple[str, str]] = []
    other = sorted({i for task, pool in instructions_by_task.items() if task != task_name for i in pool})
    if other:
        for index in rng.choice(len(other), size=min(per_kind, len(other)), replace=False):
            out.append((other[int(index)], "relabel_task"))
    colours = known_colours()
    candidates = [swapped for c in colours if (swapped := swap_colour(instruction, c, colours)) is not None]
    if candidates:
        for index in rng.choice(len(candidates), size=min(per_kind, len(candidates)), replace=False):
            out.append((candidates[int(index)], "relabel_colour"))
    return out


def _labelled_episodes(store, label_version: str | None) -> dict[str, tuple[bool, str]]:
    """episode_id -> (label, 'human'|'oracle') from a label version's budgeted labels (detector labels skipped)."""
    from robot_si.data.labels import list_label_versions, read_label_set

    if label_version is None:
        return {}
    versions = list_label_versions(store.root)
    if not versions or (label_version != "latest" and label_version not in versions):
        return {}
    label_set = read_label_set(store.root, label_version)
    return {
        episode_id: (bool(label.label), label.label_source)
        for episode_id, label in label_set.episode_labels.items()
        if label.label_source in ("human", "oracle") and label.label is not None
    }


def build_training_examples(
    stores: Sequence,
    *,
    label_version: str | None = None,
    prefix_fractions: Sequence[float] = DEFAULT_PREFIX_FRACTIONS,
    relabels_per_kind: int = 1,
    seed: int = 0,
    use_terminal: bool = False,
) -> list[ClipExample]:
    """Examples from demos (+ budgeted human/oracle labels of `label_version`, when given) of every store.

    With `use_terminal`, an episode's end clip (and the prefixes measured from it) ends on its terminal
    observation where the store has one (`features.episode_end`).
    `label_version` is looked up in each store that has label versions ("latest" = each store's newest);
    stores without it contribute only their demos. Raises when there is nothing to train on.
    """
    if not stores:
        raise ValueError("no stores given; pass at least one store with demos, e.g. stores=[datasets/demos]")
    for fraction in prefix_fractions:
        if not 0.0 <= fraction < 1.0:
            raise ValueError(f"prefix_fractions must be in [0, 1) (got {fraction}); 1.0 would be the episode's end")
    rng = np.random.default_rng(seed)
    metas_by_store = [(store, store.episodes()) for store in stores]
    instructions_by_task: dict[str, list[str]] = {}
    for _, metas in metas_by_store:
        for meta in metas:
            pool = instructions_by_task.setdefault(meta.task_name, [])
            if meta.instruction not in pool:
                pool.append(meta.instruction)

    examples: list[ClipExample] = []
    for store, metas in metas_by_store:
        labelled = _labelled_episodes(store, label_version)
        root = str(store.root)
        for meta in metas:
            if meta.num_frames <= 0 or meta.error:
                continue
            if meta.source in INTENDED_OUTCOME:
                label = INTENDED_OUTCOME[meta.source]
                end_source, prefix_source = ("demo_end" if label else "near_miss_end"), "demo_prefix"
            elif meta.episode_id in labelled:
                label, end_source = labelled[meta.episode_id]
                prefix_source = "labelled_prefix"
            else:
                continue  # unlabelled autonomous episode: no evidence we may train on
            last = episode_end(store, meta, use_terminal=use_terminal)

            def add(end: int, instruction: str, example_label: bool, source: str) -> None:
                examples.append(ClipExample(
                    store_root=root, episode_id=meta.episode_id, task_name=meta.task_name, end=int(end),
                    instruction=instruction, label=example_label, label_source=source,
                ))

            add(last, meta.instruction, label, end_source)
            for end in sorted({int(round(f * last)) for f in prefix_fractions}):
                if end < last:
                    add(end, meta.instruction, False, prefix_source)
            if label:
                for instruction, source in relabel_instructions(
                    meta.instruction, meta.task_name, instructions_by_task, rng, per_kind=relabels_per_kind
                ):
                    add(last, instruction, False, source)
    if not examples:
        raise ValueError(
            "no training examples: the stores hold no demos (source='demo') and no human/oracle-labelled episodes. "
            "Record demos with `robot-si demos ...` or pass label_version= of a version with budgeted labels"
        )
    return examples


def count_by_source(examples: Sequence[ClipExample]) -> dict[str, dict[str, int]]:
    """{source: {"positive": n, "negative": m}}, for logs and reports."""
    counts: dict[str, dict[str, int]] = {}
    for example in examples:
        entry = counts.setdefault(example.label_source, {"positive": 0, "negative": 0})
        entry["positive" if example.label else "negative"] += 1
    return counts
