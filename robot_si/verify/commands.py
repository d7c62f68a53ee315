"""`robot-si detector train|eval|label key=value ...`: the verifier's command (config: configs/detector.yaml).

    robot-si detector train stores=[datasets/demos] out=runs/detector [label_version=latest] [verifier=fast]
    robot-si detector eval detector=runs/detector store=datasets/heldout out=runs/detector/audit [source=autonomous]
    robot-si detector label detector=runs/detector store=datasets/auto [progress=DIR] [labeling.source=oracle labeling.budget=20]

`train` writes <out>/detector (success detector) and <out>/progress (progress/value model) and
<out>/train_report.json. `eval` audits against the store's simulator ground truth and writes
<out>/audit.json + reliability / ROC PNGs. `label` writes a new label version beside the store.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

ACTIONS = ("train", "eval", "label")


def _configs(cfg: DictConfig, *, image_size: int | None = None):
    from robot_si.verify.detector import DetectorConfig
    from robot_si.verify.progress import ProgressConfig

    detector_kwargs = OmegaConf.to_container(cfg.verifier.detector, resolve=True)
    if image_size is not None:  # the spatial encoder's maps fit the stores' images unless the config says otherwise
        detector_kwargs.setdefault("image_size", image_size)
    progress_kwargs = OmegaConf.to_container(cfg.verifier.progress, resolve=True)
    return (
        DetectorConfig(encoder=cfg.verifier.encoder, **detector_kwargs),
        ProgressConfig(encoder=cfg.verifier.encoder, **progress_kwargs),
    )


def _require(cfg: DictConfig, *keys: str, action: str) -> None:
    missing = [k for k in keys if cfg.get(k) in (None, "", [])]
    if missing:
        raise ValueError(f"`robot-si detector {action}` needs {', '.join(f'{k}=...' for k in missing)} (see --help)")


def _detector_dir(path: str) -> Path:
    path = Path(path)
    return path / "detector" if (path / "detector").is_dir() and not (path / "detector_config.json").exists() else path


def _progress_dir(cfg: DictConfig) -> Path | None:
    if cfg.progress:
        return Path(cfg.progress)
    beside = _detector_dir(cfg.detector).parent / "progress"
    return beside if (beside / "progress_config.json").exists() else None


def _open_store(path: str):
    from robot_si.data import EpisodeStore

    return EpisodeStore(path)


def train(cfg: DictConfig) -> dict[str, Any]:
    from robot_si.verify.detector import SuccessDetector
    from robot_si.verify.progress import ProgressModel

    _require(cfg, "stores", "out", action="train")
    stores = [_open_store(p) for p in cfg.stores]
    detector_config, progress_config = _configs(cfg, image_size=stores[0].spec.image_height)
    detector = SuccessDetector(detector_config, cache_dir=cfg.cache_dir)
    detector_report = detector.fit_stores(stores, label_version=cfg.label_version)
    # the progress model shares the detector's encoders (and their feature cache)
    progress = ProgressModel(progress_config, feature_cache=detector.feature_cache)
    progress_report = progress.fit_stores(stores, label_version=cfg.label_version)
    out = Path(cfg.out)
    detector.save_pretrained(out / "detector")
    progress.save_pretrained(out / "progress")
    report = {
        "detector_version": detector.version, "progress_version": progress.version,
        "temperature": detector.temperature, "bias": detector.bias, "threshold": detector.threshold,
        "detector": {k: v for k, v in detector_report.items() if k != "history"},
        "progress": progress_report, "stores": list(cfg.stores), "label_version": cfg.label_version,
    }
    (out / "train_report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"detector {detector.version} (T={detector.temperature:.2f}, bias={detector.bias:+.2f}, threshold={detector.threshold:.3f}) -> {out / 'detector'}")
    print(f"progress model {progress.version} -> {out / 'progress'}")
    print("training examples by source: " + json.dumps(detector_report["examples_by_source"]))
    return report


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    from robot_si.verify.audit import audit_detector
    from robot_si.verify.detector import SuccessDetector

    _require(cfg, "detector", "store", "out", action="eval")
    detector = SuccessDetector.from_pretrained(_detector_dir(cfg.detector), cache_dir=cfg.cache_dir)
    out = Path(cfg.out)
    report = audit_detector(_open_store(cfg.store), detector, out_dir=out, source=cfg.source)
    out.mkdir(parents=True, exist_ok=True)
    (out / "audit.json").write_text(json.dumps(report, indent=2) + "\n")

    def fmt(value, spec=".3f"):
        return "—" if value is None else format(value, spec)

    print(f"audit of {detector.version} on {report['episodes']} episodes of {cfg.store}: AUC {fmt(report['auc'])}, "
          f"accepted-but-failed {fmt(report['accepted_but_failed'], '.1%')}, ECE {fmt(report['ece'])} -> {out / 'audit.json'}")
    return report


def label(cfg: DictConfig) -> dict[str, Any]:
    from robot_si.verify.detector import SuccessDetector
    from robot_si.verify.labeler import label_store, labelling_summary
    from robot_si.verify.labeling import DEFAULT_RANDOM_SHARE, make_label_source
    from robot_si.verify.progress import ProgressModel

    _require(cfg, "detector", "store", action="label")
    store = _open_store(cfg.store)
    detector = SuccessDetector.from_pretrained(_detector_dir(cfg.detector), cache_dir=cfg.cache_dir)
    progress_dir = _progress_dir(cfg)
    progress = None
    if progress_dir is not None:
        progress = ProgressModel.from_pretrained(progress_dir, feature_cache=detector.feature_cache)
    source = make_label_source(cfg.labeling.source, budget=int(cfg.labeling.budget), media_dir=cfg.labeling.media_dir)
    version = label_store(
        store, detector, progress, label_source=source, version=cfg.labeling.version, round=cfg.labeling.round,
        strategy=cfg.labeling.strategy, seed=int(cfg.labeling.get("seed", 0)),
        random_share=float(cfg.labeling.get("random_share", DEFAULT_RANDOM_SHARE)),
    )
    summary = labelling_summary(store.root, version)
    print(f"label version {version} in {store.root}: {summary['episodes_labelled']} episodes, "
          f"{summary['episodes_accepted']} accepted, {summary['labels_spent']} {cfg.labeling.source} labels spent")
    return summary


def main(argv: list[str]) -> int:
    args = argv[1:]
    if not args or args[0] in ("-h", "--help", "help"):
        print(__doc__)
        return 0
    action, overrides = args[0], args[1:]
    if action not in ACTIONS:
        raise ValueError(f"unknown detector action {action!r}; use one of {ACTIONS}, e.g. `robot-si detector train ...`")
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ValueError(f"arguments must be key=value overrides (got {bad}), e.g. stores=[datasets/demos] out=runs/detector")
    from robot_si.config import compose

    cfg = compose("detector", overrides)
    {"train": train, "eval": evaluate, "label": label}[action](cfg)
    return 0
