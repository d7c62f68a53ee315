"""Guards against the two ways self-improvement goes wrong: collapse and a verifier gone bad.

- Collapse: training on self-generated data can lose skills. If a round's held-out success drops more than
  `max_success_drop` below the best so far, the loop keeps the best checkpoint (rollback) and says so.
- Wrong verifier: training exploits detector errors. The accepted-but-failed rate is measured on the episodes
  a human/oracle labelled this round (available on real arms too); above `max_accepted_but_failed` the round
  trains on demos and human-verified episodes only, and the report says why.
"""

from __future__ import annotations

import dataclasses
import math


@dataclasses.dataclass(kw_only=True)
class GuardDecision:
    triggered: bool
    reason: str
    evidence: int = 0  # how many observations the decision rests on (verifier guard: labelled accepted episodes)


def collapse_guard(*, success_rate: float | None, best_success_rate: float | None, max_drop: float) -> GuardDecision:
    if success_rate is None or best_success_rate is None:
        return GuardDecision(triggered=False, reason="no held-out success measured; collapse guard inactive")
    drop = best_success_rate - success_rate
    if drop > max_drop:
        return GuardDecision(
            triggered=True,
            reason=f"held-out success fell {drop:.1%} below the best round ({best_success_rate:.1%} -> "
            f"{success_rate:.1%}), more than max_success_drop={max_drop:.0%}: keeping the best checkpoint",
        )
    return GuardDecision(triggered=False, reason=f"held-out success {success_rate:.1%} (best {best_success_rate:.1%})")


def accepted_but_failed(accepted: list[bool], labels: list[bool]) -> tuple[float | None, int]:
    """Fraction of detector-accepted episodes that a label says failed, and how many accepted were labelled."""
    failed_among_accepted = [not label for accept, label in zip(accepted, labels, strict=True) if accept]
    if not failed_among_accepted:
        return None, 0
    return sum(failed_among_accepted) / len(failed_among_accepted), len(failed_among_accepted)


def check_sample_size(*, accepted: int, minimum: int, share: float) -> int:
    """How many of a round's detector-accepted episodes to label at random for the wrong-verifier check: at least
    `minimum` (0: no check), and `share` of the accepted ones, since the more unverified episodes a round trains
    on, the more a missed failure rate costs. At the 20 % limit, 5 labels catch a 23 % failure rate with
    probability ~0.33 and 13 labels (5 % of 252 accepted) with ~0.60, while a 5 % rate trips either only ~2 %
    of the time (binomial, bench/NOTES_improve.md)."""
    if minimum <= 0:
        return 0
    return max(minimum, math.ceil(share * accepted))


def verifier_guard(*, accepted: list[bool], labels: list[bool], max_rate: float) -> GuardDecision:
    rate, count = accepted_but_failed(accepted, labels)
    if rate is None:
        return GuardDecision(triggered=False, reason="no labelled episode was detector-accepted; guard has no evidence")
    if rate > max_rate:
        return GuardDecision(
            triggered=True,
            reason=f"{rate:.0%} of the {count} labelled episodes the detector accepted had in fact failed "
            f"(max_accepted_but_failed={max_rate:.0%}): training on demos and human-verified episodes only",
            evidence=count,
        )
    return GuardDecision(triggered=False, reason=f"accepted-but-failed {rate:.0%} on {count} labelled episodes",
                         evidence=count)


def action_diversity(actions: list, *, bins: int = 8) -> dict[str, float | None]:
    """How varied a set of episodes' actions are: mean per-dimension std, and the entropy (bits) of the
    actions binned per dimension (mean over dimensions). Collapse shows up as both shrinking round over round."""
    import numpy as np

    frames = [np.asarray(a, dtype=np.float64) for a in actions if len(a)]
    if not frames:
        return {"action_std": None, "action_entropy": None}
    stacked = np.concatenate(frames)
    entropies = []
    for column in stacked.T:
        counts, _ = np.histogram(np.clip(column, -1.0, 1.0), bins=bins, range=(-1.0, 1.0))
        p = counts[counts > 0] / counts.sum()
        entropies.append(float(-(p * np.log2(p)).sum()))
    return {"action_std": float(stacked.std(axis=0).mean()), "action_entropy": float(np.mean(entropies))}


def diversity_guard(*, entropy: float | None, reference_entropy: float | None, min_ratio: float) -> GuardDecision:
    """Warn (the report says so) when the collected actions' entropy falls below `min_ratio` of the demos'."""
    if entropy is None or reference_entropy is None or reference_entropy <= 0:
        return GuardDecision(triggered=False, reason="no action entropy to compare; diversity guard inactive")
    ratio = entropy / reference_entropy
    if ratio < min_ratio:
        return GuardDecision(
            triggered=True,
            reason=f"action entropy {entropy:.2f} bits is {ratio:.0%} of the demos' {reference_entropy:.2f} "
            f"(< min_diversity_ratio={min_ratio:.0%}): the policy's behaviour is narrowing (possible collapse)",
        )
    return GuardDecision(triggered=False, reason=f"action entropy {entropy:.2f} bits ({ratio:.0%} of the demos')")
