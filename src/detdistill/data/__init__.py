"""Datasets, readers, transforms and loaders. See :mod:`detdistill.data.base` for the interface."""

from .base import DatasetError, DetectionDataset, ImageRecord, load_rgb_image
from .convert import convert_dataset, write_coco
from .loader import ResumableBatchSampler, build_loader, collate_detection
from .open import detect_format, open_dataset
from .synthetic import CLASS_NAMES as SYNTHETIC_CLASS_NAMES
from .synthetic import LOOKALIKE_PAIRS, SyntheticConfig, SyntheticShapes
from .transforms import AugmentConfig, DetectionAugment

__all__ = [
    "AugmentConfig", "DatasetError", "DetectionAugment", "DetectionDataset", "ImageRecord", "LOOKALIKE_PAIRS",
    "ResumableBatchSampler", "SYNTHETIC_CLASS_NAMES", "SyntheticConfig", "SyntheticShapes", "build_loader",
    "collate_detection", "load_rgb_image",
    "convert_dataset", "detect_format", "open_dataset", "write_coco",
]
