"""The training wing: one step's loss and gradients, the epoch loop, the trainer, signals and random streams.

    step.py        TrainStep: the loss and its gradients (compiled or eager, the same numbers)
    epoch.py       train_epoch, validate
    trainer.py     train: a run directory from a config (checkpoints, resume, early stopping)
    randomness.py  RandomStreams: the named generators (order, pixels, noise) stored in checkpoints
    signals.py     StopSignals: Ctrl-C and SIGTERM saved as a resumable state
    grids.py       the sample grids saved during training
"""

from ..runtime.devices import DeviceSplit, resolve_device
from .epoch import train_epoch, validate
from .randomness import RandomStreams
from .step import TrainStep
from .trainer import COMPILE_FROM_STEPS, new_training, train

__all__ = ["COMPILE_FROM_STEPS", "DeviceSplit", "RandomStreams", "TrainStep", "new_training", "resolve_device",
           "train", "train_epoch", "validate"]
