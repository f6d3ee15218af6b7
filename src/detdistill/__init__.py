"""detdistill: knowledge distillation for fast object detectors (Chen et al., NIPS 2017)."""

__version__ = "0.1.0"
