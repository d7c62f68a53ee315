"""Stage completion records for resume: `round_XXX/manifest.json` says which stages of a round are done.

A stage is marked done only after everything it wrote is in place, and the manifest itself is replaced
atomically (write to a temp file, then `os.replace`), so a `kill -9` at any moment leaves either the old or
the new manifest, never a torn one. Rerunning then skips completed stages and redoes the interrupted one.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_json(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        json.dump(payload, handle, indent=2, default=str)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


class RoundManifest:
    """Which stages of one round are complete, with each stage's small result payload."""

    def __init__(self, round_dir: Path):
        self.path = Path(round_dir) / "manifest.json"
        self._stages: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            try:
                self._stages = json.loads(self.path.read_text())["stages"]
            except (json.JSONDecodeError, KeyError) as error:
                raise RuntimeError(
                    f"{self.path} is corrupt ({error}); delete it to redo this round from its first stage"
                ) from error

    def is_done(self, stage: str) -> bool:
        return stage in self._stages

    def result(self, stage: str) -> dict[str, Any]:
        return self._stages[stage]["result"]

    def seconds(self, stage: str) -> float:
        return float(self._stages[stage]["seconds"])

    def mark_done(self, stage: str, result: dict[str, Any], seconds: float) -> None:
        self._stages[stage] = {"result": result, "seconds": round(float(seconds), 3)}
        atomic_write_json(self.path, {"stages": self._stages})

    @property
    def completed(self) -> list[str]:
        return list(self._stages)
