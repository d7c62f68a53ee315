"""`robot-si bench NAME [args]`: run a benchmark script from the repository's `bench/` folder.

Benchmarks are scripts, not tests: each writes JSON under `bench/results/` and prints a Markdown table that
goes into BENCHMARKS.md with the command that produced it. Names: `sim` (sim_throughput), `store`,
`policy`, `collect`, `detector`, `improve`.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parents[1] / "bench"
ALIASES = {
    "sim": "sim_throughput",
    "store": "store_throughput",
    "collect": "collect_throughput",
    "policy": "policy",
    "detector": "detector",
    "improve": "improve",
}


def main(argv: list[str]) -> int:
    args = argv[1:]
    if not args or args[0] in ("-h", "--help"):
        print("usage: robot-si bench {" + ",".join(ALIASES) + "} [script args...]")
        return 0
    name, rest = args[0], args[1:]
    if name not in ALIASES:
        raise ValueError(f"unknown benchmark {name!r}; choose one of {sorted(ALIASES)}")
    script = BENCH_DIR / f"{ALIASES[name]}.py"
    if not script.exists():
        raise FileNotFoundError(f"{script} not found: benchmark scripts ship with the repository, run from a clone")
    sys.argv = [str(script), *rest]
    runpy.run_path(str(script), run_name="__main__")
    return 0
