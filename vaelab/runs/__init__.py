"""The run directory: its layout, its JSON files, its checkpoints, and older directories brought
up to today's form on load.

    directory.py    RunDir (the file names), config.json, metrics.jsonl, eval.json, a run's model
    checkpoints.py  safetensors + JSON checkpoints of the model, the optimizer and the random streams
    migration.py    run directories of earlier versions in today's form, as they are read
"""

from .checkpoints import Checkpoint, load_checkpoint, parse_checkpoint, save_checkpoint
from .directory import (RunDir, check_agreement, new_model, read_json, read_metrics, stored_config, write_json,
                        write_metrics)

__all__ = ["Checkpoint", "RunDir", "check_agreement", "load_checkpoint", "new_model", "parse_checkpoint", "read_json",
           "read_metrics", "save_checkpoint", "stored_config", "write_json", "write_metrics"]
