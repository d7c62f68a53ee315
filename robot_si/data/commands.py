"""`robot-si demos | export-hdf5 | import-hdf5`: the data stage's commands (argv[0] is the subcommand).

Owns argument parsing and printing for these three commands; the work is done by demos.py and hdf5.py.
"""

from __future__ import annotations

import argparse


def _demos(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="robot-si demos", description="Record scripted-expert demos into a store (resumable).")
    parser.add_argument("tasks", nargs="+", metavar="TASK", help="task names, e.g. reach push")
    parser.add_argument("--episodes", type=int, required=True, help="episodes per task")
    parser.add_argument("--root", required=True, help="store directory (created if missing)")
    parser.add_argument("--noise", type=float, default=0.0, help="expert action noise (default 0)")
    parser.add_argument("--seed", type=int, default=0, help="first env/expert seed (default 0)")
    parser.add_argument("--image-size", type=int, default=64, help="rendered image size in pixels (default 64)")
    parser.add_argument("--round", type=int, default=0, help="round number recorded in the episode metadata")
    parser.add_argument("--near-miss", action="store_true",
                        help="record deliberate failures (aimed beside the target; source near_miss): verifier negatives")
    options = parser.parse_args(args)
    from robot_si.data.demos import record_demos
    from robot_si.data.store import EpisodeStore

    metas = record_demos(
        options.tasks, episodes_per_task=options.episodes, root=options.root, noise=options.noise,
        seed=options.seed, image_size=options.image_size, round=options.round, near_miss=options.near_miss,
    )
    kind = "near misses" if options.near_miss else "demos"
    store = EpisodeStore(options.root)
    audit = store.audit_table()
    for task in options.tasks:
        ids = [m.episode_id for m in metas if m.task_name == task]
        succeeded = sum(bool(audit.get(i)) for i in ids)
        print(f"{task}: {len(ids)} {kind}, expert success {succeeded}/{len(ids)} (simulator ground truth, audit only)")
    print(f"store {options.root}: {store.num_episodes} episodes, {store.num_frames} frames")
    return 0


def _export(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="robot-si export-hdf5", description="Export a store to a robomimic-style HDF5 file.")
    parser.add_argument("root", help="store directory")
    parser.add_argument("out", help="output .hdf5 path")
    parser.add_argument("--label-version", default=None, help="label version for mask/success|failure (default: none)")
    parser.add_argument("--valid-fraction", type=float, default=0.1, help="fraction of demos in mask/valid (default 0.1)")
    parser.add_argument(
        "--masks-from-audit-ground-truth", action="store_true",
        help="write mask/audit_gt_success|failure from the simulator's ground truth (audit only, never for training)",
    )
    options = parser.parse_args(args)
    from robot_si.data.hdf5 import export_hdf5

    out = export_hdf5(
        options.root, options.out, label_version=options.label_version, valid_fraction=options.valid_fraction,
        masks_from_audit_ground_truth=options.masks_from_audit_ground_truth,
    )
    print(f"wrote {out}")
    return 0


def _import(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="robot-si import-hdf5", description="Import a robomimic-style HDF5 file into a store.")
    parser.add_argument("hdf5", help="input .hdf5 path")
    parser.add_argument("root", help="store directory (created if missing)")
    parser.add_argument("--task", default=None, help="task name (required unless the file carries robot_si metadata)")
    parser.add_argument("--instruction", default=None, help="instruction text (default: from the file, else the task name)")
    parser.add_argument("--source", default=None, choices=["demo", "autonomous", "human", "retry"], help="override the episode source")
    parser.add_argument("--fps", type=int, default=None, help="control rate, if the file does not record it")
    options = parser.parse_args(args)
    from robot_si.data.hdf5 import import_hdf5

    metas = import_hdf5(
        options.hdf5, options.root, source=options.source, task_name=options.task, instruction=options.instruction,
        fps=options.fps,
    )
    print(f"imported {len(metas)} episodes into {options.root}")
    return 0


COMMANDS = {"demos": _demos, "export-hdf5": _export, "import-hdf5": _import}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        raise ValueError(f"robot_si.data.commands handles {sorted(COMMANDS)}, not {argv[:1]!r}")
    return COMMANDS[argv[0]](list(argv[1:]))
