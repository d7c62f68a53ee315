"""`robot-si bench NAME [args]`: run a benchmark script from the repository's `bench/` folder.

Benchmarks are scripts, not tests: each writes JSON under `bench/results/` and prints a Markdown table.
`robot-si bench report` regenerates BENCHMARKS.md from those JSON files (bench/make_benchmarks_md.py), with the
command that produced each table and its target. `robot-si bench` alone lists the benchmarks and whether each
has results yet. Names: `sim` (sim_throughput), `store`, `policy`, `collect`, `detector`, `improve`, `report`.
"""

from __future__ import annotations

import ast
import runpy
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parents[1] / "bench"
RESULTS_DIR = BENCH_DIR / "results"
ALIASES = {
    "sim": "sim_throughput",
    "store": "store_throughput",
    "collect": "collect_throughput",
    "policy": "policy",
    "bc": "bc_generalization",
    "detector": "detector",
    "improve": "improve",
    "report": "make_benchmarks_md",
}


def _summary(script: Path) -> str:
    """First sentence of a script's docstring, read without running it."""
    try:
        docstring = ast.get_docstring(ast.parse(script.read_text())) or ""
    except (OSError, SyntaxError):
        return ""
    paragraph = " ".join(docstring.strip().split("\n\n")[0].split())
    sentence = paragraph.split(". ")[0]
    return sentence if len(sentence) <= 110 else sentence[:107] + "..."


def list_benchmarks() -> str:
    lines = ["usage: robot-si bench {" + ",".join(ALIASES) + "} [script args...]   (NAME --help for its options)",
             ""]
    width = max(len(name) for name in ALIASES)
    for name, script_name in ALIASES.items():
        script = BENCH_DIR / f"{script_name}.py"
        if not script.exists():
            state = "script not written yet"
        elif name == "report":
            state = "writes BENCHMARKS.md"
        elif (RESULTS_DIR / f"{script_name}.json").exists():
            state = f"results: bench/results/{script_name}.json"
        else:
            state = "not measured yet"
        lines.append(f"  {name:<{width}}  bench/{script_name}.py  [{state}]")
        if script.exists() and _summary(script):
            lines.append(f"  {'':<{width}}  {_summary(script)}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    args = argv[1:]
    if not args or args[0] in ("-h", "--help", "list"):
        print(list_benchmarks())
        return 0
    name, rest = args[0], args[1:]
    if name not in ALIASES:
        raise ValueError(f"unknown benchmark {name!r}; choose one of {sorted(ALIASES)} (robot-si bench lists them)")
    script = BENCH_DIR / f"{ALIASES[name]}.py"
    if not script.exists():
        raise FileNotFoundError(f"{script} not found: benchmark scripts ship with the repository, run from a clone")
    sys.argv = [str(script), *rest]
    runpy.run_path(str(script), run_name="__main__")
    return 0
