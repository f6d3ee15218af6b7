"""Training engine: the Trainer (any module returning a loss dict), run objects, run folders, checkpoints,
distributed helpers."""

from .checkpoint import find_resume_checkpoint
from .distributed import DistContext, init_distributed
from .folder import RunFolder
from .trainer import NonFiniteLossError, RunSummary, Trainer

__all__ = ["DistContext", "NonFiniteLossError", "RunFolder", "RunSummary", "Trainer", "find_resume_checkpoint",
           "init_distributed"]
