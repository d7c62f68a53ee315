"""The episode store and everything read from or written beside it.

Owns: `EpisodeStore` (LeRobotDataset v3 shards, crash-safe appends; store.py), `EpisodeMeta` (records.py),
versioned label tables (labels.py), the torch `TrainingView` (views.py), robomimic HDF5 export/import
(hdf5.py), scripted-expert demo recording (demos.py) and the `demos` / `export-hdf5` / `import-hdf5`
commands (commands.py). Knows nothing of policies or verifiers; ground truth is kept only in the store's
audit file and read back only through `EpisodeStore.audit_table()`.

Heavy modules (lerobot, torch, h5py) are imported lazily so `import robot_si.data` stays cheap.
"""

from robot_si.data.labels import EpisodeLabel, LabelSet, list_label_versions, read_label_set, write_label_set
from robot_si.data.records import EPISODE_SOURCES, EpisodeMeta
from robot_si.data.store import EpisodeStore, EpisodeWriter, StoreSpec

__all__ = [
    "EPISODE_SOURCES",
    "EpisodeLabel",
    "EpisodeMeta",
    "EpisodeStore",
    "EpisodeWriter",
    "LabelSet",
    "StoreSpec",
    "list_label_versions",
    "read_label_set",
    "write_label_set",
]
