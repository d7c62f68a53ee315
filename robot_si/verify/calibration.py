"""Calibration of the success detector: temperature scaling, the operating threshold, ECE, reliability data.

Owns pure functions on arrays (logits, probabilities, 0/1 labels). Knows nothing of stores, encoders or
ground truth: callers pass held-out labels they are allowed to use (the detector's held-out training
examples, or human/oracle labels); `verify.audit` passes audit ground truth to `expected_calibration_error`
and `reliability_table` to *measure* calibration, never to fit it.

- Temperature scaling (Guo et al. 2017): one scalar T > 0 so that sigmoid(logit / T) minimizes the
  negative log-likelihood of held-out labels. Fitted by a dense grid over log T followed by LBFGS polish,
  which is deterministic and cannot diverge on tiny or separable held-out sets.
- Platt scaling (Platt 1999): sigmoid(logit / T + b), the temperature plus a bias, fitted to Platt's smoothed
  targets ((N+ + 1) / (N+ + 2) for successes, 1 / (N- + 2) for failures), which keep T and b finite on a handful
  of separable labels. Temperature alone cannot move where probability 0.5 sits; a detector trained on demo clips
  ranks rollouts but puts them on the wrong scale (bench/NOTES_verify.md, 2026-12-04: mean ECE 0.26 -> 0.17 over
  eight detector-benchmark audits, the ranking and the accepted set unchanged).
- Operating threshold: the smallest probability threshold whose held-out precision reaches a target
  (default 0.95), so "accepted" episodes are mostly true successes while recall stays as high as possible.
- ECE: equal-width bins over [0, 1], weighted mean |accuracy - confidence| of the positive-class probability.
- Weights: temperature and threshold take per-example weights; `prior_weights` reweights held-out examples to a
  stated share of successes (demo-derived clips are ~1:7, rollouts succeed about half the time).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

MIN_TEMPERATURE = 0.05
MAX_TEMPERATURE = 20.0


def _as_binary_labels(labels: np.ndarray, name: str = "labels") -> np.ndarray:
    array = np.asarray(labels)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-d array of 0/1 (got shape {array.shape})")
    if array.size and not np.isin(array.astype(np.float64), (0.0, 1.0)).all():
        raise ValueError(f"{name} must hold only 0/1 or False/True (got values {np.unique(array)[:5]})")
    return array.astype(np.float64)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    logits = np.asarray(logits, dtype=np.float64)
    return np.where(logits >= 0, 1.0 / (1.0 + np.exp(-np.abs(logits))), np.exp(-np.abs(logits)) / (1.0 + np.exp(-np.abs(logits))))


def _as_weights(weights: np.ndarray | None, labels: np.ndarray) -> np.ndarray:
    if weights is None:
        return np.ones_like(labels)
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != labels.shape or not np.all(np.isfinite(weights)) or np.any(weights < 0):
        raise ValueError(f"weights must be {labels.shape}, finite and >= 0 (got shape {weights.shape})")
    return weights


def prior_weights(labels: np.ndarray, prior: float, weights: np.ndarray | None = None) -> np.ndarray:
    """Per-example weights (`weights`, default 1, rescaled per class) that make the weighted share of positives
    `prior`, with mean weight 1.

    Held-out clips built from demos are ~1 positive to 7 negatives, an artefact of how examples are made; a
    precision or a calibration measured at that mix says little about episodes that succeed half the time.
    """
    labels = _as_binary_labels(labels)
    base = _as_weights(weights, labels)
    if not 0.0 < prior < 1.0:
        raise ValueError(f"prior must be in (0, 1) (got {prior})")
    positives, negatives = base[labels == 1].sum(), base[labels == 0].sum()
    if positives == 0 or negatives == 0:
        raise ValueError("reweighting to a prior needs examples of both classes")
    return base * np.where(labels == 1, prior * labels.size / positives, (1.0 - prior) * labels.size / negatives)


def binary_nll(logits: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None) -> float:
    """(Weighted) mean negative log-likelihood of 0/1 labels under sigmoid(logits) (numerically stable)."""
    logits = np.asarray(logits, dtype=np.float64)
    labels = _as_binary_labels(labels)
    weights = _as_weights(weights, labels)
    return float(np.sum(weights * (np.logaddexp(0.0, logits) - labels * logits)) / weights.sum())


def fit_temperature(logits: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Temperature T minimizing the (weighted) NLL of `labels` under sigmoid(logits / T).

    Needs both classes: with one class the NLL keeps falling as T -> 0 (or inf) and no temperature is
    meaningful, so this raises.
    """
    logits = np.asarray(logits, dtype=np.float64)
    labels = _as_binary_labels(labels)
    weights = _as_weights(weights, labels)
    if logits.shape != labels.shape:
        raise ValueError(f"logits {logits.shape} and labels {labels.shape} must have the same shape")
    if labels.size == 0 or labels.min() == labels.max():
        raise ValueError(
            f"temperature scaling needs held-out examples of both classes (got {int(labels.sum())} positive, "
            f"{int(labels.size - labels.sum())} negative); add labelled successes and failures to the held-out set"
        )
    grid = np.exp(np.linspace(math.log(MIN_TEMPERATURE), math.log(MAX_TEMPERATURE), 241))
    losses = [binary_nll(logits / t, labels, weights) for t in grid]
    best = float(grid[int(np.argmin(losses))])
    return _polish_temperature(logits, labels, weights, best)


def _polish_temperature(logits: np.ndarray, labels: np.ndarray, weights: np.ndarray, start: float) -> float:
    """LBFGS on log T from the grid optimum; keeps the grid value if LBFGS does not improve the NLL."""
    import torch

    log_t = torch.tensor([math.log(start)], dtype=torch.float64, requires_grad=True)
    x = torch.as_tensor(logits, dtype=torch.float64)
    y = torch.as_tensor(labels, dtype=torch.float64)
    w = torch.as_tensor(weights / weights.mean(), dtype=torch.float64)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=50, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x / log_t.exp(), y, weight=w)
        loss.backward()
        return loss

    optimizer.step(closure)
    polished = float(np.clip(math.exp(float(log_t.detach())), MIN_TEMPERATURE, MAX_TEMPERATURE))
    if not math.isfinite(polished) or binary_nll(logits / polished, labels, weights) > binary_nll(logits / start, labels, weights):
        return start
    return polished


MAX_BIAS = 20.0


def fit_platt(logits: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None) -> tuple[float, float]:
    """(T, b) minimizing the (weighted) NLL of Platt's smoothed targets under sigmoid(logits / T + b).

    Starts from the temperature-only fit (b = 0) and polishes both by LBFGS on (log T, b); keeps the start where
    LBFGS does not improve the loss. Needs both classes, like `fit_temperature`.
    """
    import torch

    logits = np.asarray(logits, dtype=np.float64)
    labels = _as_binary_labels(labels)
    weights = _as_weights(weights, labels)
    start = fit_temperature(logits, labels, weights)  # raises with one class
    positives, negatives = float(np.sum(weights * labels)), float(np.sum(weights * (1 - labels)))
    scale = labels.size / weights.sum()  # smoothing counts in examples, whatever the weights' scale
    targets = np.where(labels == 1, (positives * scale + 1) / (positives * scale + 2), 1 / (negatives * scale + 2))

    def loss_of(t: float, b: float) -> float:
        z = logits / t + b
        return float(np.sum(weights * (np.logaddexp(0.0, z) - targets * z)) / weights.sum())

    params = torch.tensor([math.log(start), 0.0], dtype=torch.float64, requires_grad=True)
    x, y = torch.as_tensor(logits), torch.as_tensor(targets)
    w = torch.as_tensor(weights / weights.mean())
    optimizer = torch.optim.LBFGS([params], lr=0.5, max_iter=100, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x / params[0].exp() + params[1], y, weight=w)
        loss.backward()
        return loss

    optimizer.step(closure)
    log_t, bias = (float(v) for v in params.detach())
    temperature = float(np.clip(math.exp(log_t), MIN_TEMPERATURE, MAX_TEMPERATURE)) if math.isfinite(log_t) else start
    bias = float(np.clip(bias, -MAX_BIAS, MAX_BIAS)) if math.isfinite(bias) else 0.0
    if loss_of(temperature, bias) > loss_of(start, 0.0):
        return start, 0.0
    return temperature, bias


@dataclasses.dataclass(kw_only=True)
class ThresholdChoice:
    """The operating threshold and what it achieved on the data it was chosen on."""

    threshold: float
    target_precision: float
    precision: float | None
    recall: float | None
    accepted: int
    met_target: bool

    def to_json_dict(self) -> dict:
        return dataclasses.asdict(self)


def choose_threshold(
    probs: np.ndarray, labels: np.ndarray, *, target_precision: float = 0.95, min_accepted: int = 3,
    weights: np.ndarray | None = None,
) -> ThresholdChoice:
    """Smallest threshold whose precision on (probs, labels) is >= target_precision with >= min_accepted accepted.

    Accepting means prob >= threshold. When no threshold reaches the target, the threshold with the best
    precision (ties: more accepted) is returned with `met_target=False`, so callers can warn. `weights` make
    precision and recall weighted (e.g. `prior_weights`); `accepted` still counts examples.
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = _as_binary_labels(labels)
    weights = _as_weights(weights, labels)
    if not 0.0 < target_precision <= 1.0:
        raise ValueError(f"target_precision must be in (0, 1] (got {target_precision})")
    if probs.shape != labels.shape or probs.size == 0:
        raise ValueError(f"probs {probs.shape} and labels {labels.shape} must be the same non-empty shape")
    if labels.sum() == 0:
        raise ValueError("choosing a threshold for a target precision needs at least one positive held-out example")
    order = np.argsort(-probs, kind="stable")
    sorted_probs, sorted_labels, sorted_weights = probs[order], labels[order], weights[order]
    true_positives = np.cumsum(sorted_labels * sorted_weights)
    accepted = np.arange(1, len(probs) + 1)
    # Only cut between distinct probabilities: a threshold accepts every example with the same prob.
    last_of_value = np.r_[sorted_probs[1:] != sorted_probs[:-1], True]
    precision = true_positives / np.maximum(np.cumsum(sorted_weights), 1e-300)
    recall = true_positives / max(float(np.sum(labels * weights)), 1e-300)
    candidates = np.flatnonzero(last_of_value & (accepted >= min(min_accepted, len(probs))))
    meeting = candidates[precision[candidates] >= target_precision - 1e-12]
    if meeting.size:
        index = int(meeting[-1])  # lowest threshold (most accepted) that still meets the target
        met = True
    else:
        best = precision[candidates].max()
        index = int(candidates[precision[candidates] >= best - 1e-12][-1])
        met = False
    return ThresholdChoice(
        threshold=float(sorted_probs[index]),
        target_precision=float(target_precision),
        precision=float(precision[index]),
        recall=float(recall[index]),
        accepted=int(accepted[index]),
        met_target=met,
    )


def reliability_table(probs: np.ndarray, labels: np.ndarray, *, num_bins: int = 10) -> dict[str, list]:
    """Per equal-width bin: lower/upper edge, count, mean predicted probability, observed success rate."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = _as_binary_labels(labels)
    if num_bins < 1:
        raise ValueError(f"num_bins must be >= 1 (got {num_bins})")
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    bins = np.clip(np.digitize(probs, edges[1:-1], right=False), 0, num_bins - 1)
    table: dict[str, list] = {"bin_lower": [], "bin_upper": [], "count": [], "mean_prob": [], "success_rate": []}
    for b in range(num_bins):
        mask = bins == b
        table["bin_lower"].append(float(edges[b]))
        table["bin_upper"].append(float(edges[b + 1]))
        table["count"].append(int(mask.sum()))
        table["mean_prob"].append(float(probs[mask].mean()) if mask.any() else None)
        table["success_rate"].append(float(labels[mask].mean()) if mask.any() else None)
    return table


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, *, num_bins: int = 10) -> float:
    """ECE: sum over bins of (bin count / N) * |observed success rate - mean predicted probability|."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.size == 0:
        raise ValueError("expected_calibration_error needs at least one prediction")
    table = reliability_table(probs, labels, num_bins=num_bins)
    total = 0.0
    for count, mean_prob, rate in zip(table["count"], table["mean_prob"], table["success_rate"], strict=True):
        if count:
            total += count / probs.size * abs(rate - mean_prob)
    return float(total)


def cross_fitted_decisions(
    probs: np.ndarray, labels: np.ndarray, folds: np.ndarray, *, target_precision: float, floor: float = 0.0
) -> np.ndarray:
    """Accept/reject each example with a threshold chosen (by `choose_threshold`) on the other folds only.

    What a threshold-picking rule would decide on examples it did not see, so an accepted-but-failed rate read
    from these decisions is not flattered by the threshold having been fitted to the same examples. Where the
    other folds cannot show the target precision, the threshold is at least `floor` (as the detector does).
    Every fold's complement needs a positive example (stratified folds guarantee it).
    """
    probs, labels, folds = np.asarray(probs, dtype=np.float64), _as_binary_labels(labels), np.asarray(folds)
    if not probs.shape == labels.shape == folds.shape:
        raise ValueError(f"probs {probs.shape}, labels {labels.shape} and folds {folds.shape} must be the same shape")
    accepted = np.zeros(probs.shape, dtype=bool)
    for fold in np.unique(folds):
        inside, others = folds == fold, folds != fold
        if not others.any():
            raise ValueError("cross-fitted decisions need at least two folds")
        choice = choose_threshold(probs[others], labels[others], target_precision=target_precision)
        threshold = choice.threshold if choice.met_target else max(choice.threshold, floor)
        accepted[inside] = probs[inside] >= threshold
    return accepted
