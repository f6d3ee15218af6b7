"""Datasets, readers, transforms and loaders. See :mod:`detdistill.data.base` for the interface."""

from .base import DatasetError, DetectionDataset, ImageRecord, load_rgb_image
from .loader import ResumableBatchSampler, build_loader, collate_detection
from .synthetic import CLASS_NAMES as SYNTHETIC_CLASS_NAMES
from .synthetic import LOOKALIKE_PAIRS, SyntheticConfig, SyntheticShapes
from .transforms import AugmentConfig, DetectionAugment

__all__ = [
    "AugmentConfig", "DatasetError", "DetectionAugment", "DetectionDataset", "ImageRecord", "LOOKALIKE_PAIRS",
    "ResumableBatchSampler", "SYNTHETIC_CLASS_NAMES", "SyntheticConfig", "SyntheticShapes", "build_loader",
    "collate_detection", "load_rgb_image",
]
