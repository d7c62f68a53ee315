"""What a person reads after a run: `summary.json`, `metrics.jsonl`, `report.md` and `plots/`.

The report may show ground truth (success rates, audit of the verifier); it runs after the round's training
and never feeds anything back into labeling or weighting.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from robot_si.improve.manifest import atomic_write_json


def write_metrics(run_dir: Path, rounds: list[dict[str, Any]]) -> None:
    """One line per round, rewritten whole so a resumed run never duplicates a round."""
    bulky = ("roc_curve", "weight_histogram")
    lines = [json.dumps({k: v for k, v in r.items() if k not in bulky}, default=float) for r in rounds]
    tmp = run_dir / ".metrics.jsonl.tmp"
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(run_dir / "metrics.jsonl")


def write_summary(run_dir: Path, config: dict[str, Any], rounds: list[dict[str, Any]]) -> Path:
    path = run_dir / "summary.json"
    atomic_write_json(path, {"config": config, "rounds": rounds})
    return path


def _plot_success(rounds: list[dict[str, Any]], out: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [r for r in rounds if r.get("success_rate_gt") is not None]
    if not measured:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [r["round"] for r in measured]
    ax.plot(xs, [r["success_rate_gt"] for r in measured], "k-o", lw=2, label="all tasks")
    for task in measured[0].get("success_per_task", {}):
        rates = [r["success_per_task"][task]["success_rate"] for r in measured]
        low = [r["success_per_task"][task]["ci_low"] for r in measured]
        high = [r["success_per_task"][task]["ci_high"] for r in measured]
        (line,) = ax.plot(xs, rates, "-o", label=task)
        ax.fill_between(xs, low, high, color=line.get_color(), alpha=0.12)
    ax.set_xlabel("round")
    ax.set_ylabel("held-out success (ground truth)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xticks(xs)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _plot_roc(rounds: list[dict[str, Any]], out: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = [(r["round"], r["roc_curve"], r.get("detector_auc")) for r in rounds if r.get("roc_curve")]
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    for round_index, curve, auc in curves:
        ax.plot(curve["fpr"], curve["tpr"], label=f"round {round_index} (AUC {auc:.2f})")
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("success detector ROC (audit)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _plot_weights(rounds: list[dict[str, Any]], out: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    histograms = [(r["round"], r["weight_histogram"]) for r in rounds if r.get("weight_histogram")]
    if not histograms:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for round_index, hist in histograms:
        edges = np.asarray(hist["edges"])
        centers = (edges[:-1] + edges[1:]) / 2
        ax.step(centers, hist["counts"], where="mid", label=f"round {round_index}")
    ax.set_xlabel("per-frame training weight")
    ax.set_ylabel("frames")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def write_report(run_dir: Path, config: dict[str, Any], rounds: list[dict[str, Any]], strips: dict[str, Path]) -> Path:
    """Write plots and `report.md`; returns the report's path."""
    plots = run_dir / "plots"
    plots.mkdir(exist_ok=True)
    made = {
        "success": _plot_success(rounds, plots / "success_per_round.png"),
        "roc": _plot_roc(rounds, plots / "detector_roc.png"),
        "weights": _plot_weights(rounds, plots / "weight_histogram.png"),
    }
    lines = [f"# robot_si improve: {config.get('name')}", ""]
    lines += [
        f"Tasks: {', '.join(config.get('tasks', []))}; rounds: {config.get('rounds')}; "
        f"weighting: {config.get('weighting', {}).get('method')}.",
        "",
        "| round | held-out success (GT) | 95% CI | detector AUC | accepted-but-failed | ECE | collected | accepted | labels spent | action entropy (bits) | policy kept | seconds |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]

    def fmt(value, spec=".2f"):
        return "—" if value is None else format(value, spec)

    for r in rounds:
        ci = r.get("success_ci") or [None, None]
        lines.append(
            f"| {r['round']} | {fmt(r.get('success_rate_gt'), '.1%')} | "
            f"{fmt(ci[0], '.0%')}–{fmt(ci[1], '.0%')} | {fmt(r.get('detector_auc'))} | "
            f"{fmt(r.get('accepted_but_failed'), '.1%')} | {fmt(r.get('ece'), '.3f')} | "
            f"{r.get('episodes_collected', 0)} | {r.get('episodes_accepted', 0)} | {r.get('labels_spent', 0)} | "
            f"{fmt(r.get('action_entropy', r.get('demo_action_entropy')))} | "
            f"round {r.get('policy_round', r['round'])} | {sum(r.get('phase_seconds', {}).values()):.0f} |"
        )
    lines.append("")
    notes = [(r["round"], note) for r in rounds for note in r.get("guard_notes", [])]
    if notes:
        lines += ["## Guards", ""] + [f"- round {i}: {note}" for i, note in notes] + [""]
    lines += ["## Where the time went (seconds per phase)", ""]
    phases = sorted({p for r in rounds for p in r.get("phase_seconds", {})})
    if phases:
        lines += ["| round | " + " | ".join(phases) + " |", "| --- |" + " --- |" * len(phases)]
        for r in rounds:
            lines.append(f"| {r['round']} | " + " | ".join(f"{r.get('phase_seconds', {}).get(p, 0):.1f}" for p in phases) + " |")
        lines.append("")
    for title, key in (("Success per round", "success"), ("Detector ROC", "roc"), ("Weight histogram", "weights")):
        if made[key] is not None:
            lines += [f"## {title}", "", f"![{title}]({made[key].relative_to(run_dir)})", ""]
    if strips:
        lines += ["## Episodes (last round)", ""]
        for label, path in strips.items():
            lines += [f"**{label}**", "", f"![{label}]({Path(path).relative_to(run_dir)})", ""]
    path = run_dir / "report.md"
    path.write_text("\n".join(lines))
    return path
