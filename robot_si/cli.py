"""The `robot-si` command: pick a subcommand, hand the rest of the command line to that stage.

Each stage owns its command in `robot_si/<stage>/commands.py` as `main(argv: list[str]) -> int`; Hydra-style
stages compose their config with `robot_si.config.compose`. Imports are lazy so `robot-si --help` is fast.
"""

from __future__ import annotations

import importlib
import sys

# subcommand -> (module with main(argv), one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "envs": ("robot_si.envs.commands", "list tasks, render a task to a GIF"),
    "demos": ("robot_si.data.commands", "record scripted-expert demos into a store"),
    "export-hdf5": ("robot_si.data.commands", "export a store to robomimic-style HDF5"),
    "import-hdf5": ("robot_si.data.commands", "import a robomimic-style HDF5 file into a store"),
    "train": ("robot_si.train.commands", "behaviour cloning (weighted) from one or more stores"),
    "detector": ("robot_si.verify.commands", "train / evaluate / label with the success detector"),
    "collect": ("robot_si.collect.commands", "collect autonomous rollouts with a policy"),
    "eval": ("robot_si.collect.commands", "evaluate a policy: success per task with Wilson intervals"),
    "improve": ("robot_si.improve.commands", "the self-improvement loop"),
    "bench": ("robot_si.bench_commands", "run a benchmark script from bench/"),
}


def _usage() -> str:
    lines = ["usage: robot-si <subcommand> [args...]", "", "subcommands:"]
    lines += [f"  {name:<12} {help_text}" for name, (_, help_text) in SUBCOMMANDS.items()]
    lines += ["", "Run `robot-si <subcommand> --help` for a subcommand's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"robot-si: unknown subcommand {name!r}.\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(SUBCOMMANDS[name][0])
    try:
        return int(module.main([name, *rest]) or 0)
    except (ValueError, FileNotFoundError, FileExistsError, RuntimeError) as error:
        # User-facing errors carry their own fix; a traceback would bury it.
        print(f"robot-si {name}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
