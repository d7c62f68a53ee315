"""Guards against the two ways self-improvement goes wrong: collapse and a verifier gone bad.

- Collapse: training on self-generated data can lose skills. If a round's held-out success drops more than
  `max_success_drop` below the best so far, the loop keeps the best checkpoint (rollback) and says so.
- Wrong verifier: training exploits detector errors. The accepted-but-failed rate is measured on the episodes
  a human/oracle labelled this round (available on real arms too); above `max_accepted_but_failed` the round
  trains on demos and human-verified episodes only, and the report says why.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(kw_only=True)
class GuardDecision:
    triggered: bool
    reason: str


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


def verifier_guard(*, accepted: list[bool], labels: list[bool], max_rate: float) -> GuardDecision:
    rate, count = accepted_but_failed(accepted, labels)
    if rate is None:
        return GuardDecision(triggered=False, reason="no labelled episode was detector-accepted; guard has no evidence")
    if rate > max_rate:
        return GuardDecision(
            triggered=True,
            reason=f"{rate:.0%} of the {count} labelled episodes the detector accepted had in fact failed "
            f"(max_accepted_but_failed={max_rate:.0%}): training on demos and human-verified episodes only",
        )
    return GuardDecision(triggered=False, reason=f"accepted-but-failed {rate:.0%} on {count} labelled episodes")
