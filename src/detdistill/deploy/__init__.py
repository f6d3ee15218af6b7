"""Deployment: a checkpoint exported as the artifact it ships as (OpenVINO or ONNX Runtime; fp32, bf16 or int8),
loaded back behind the detector's inference interface, and timed side by side with the eager model.

Layout: :mod:`.artifact` (the folder and its manifest), :mod:`.export` (``detdistill export``), :mod:`.quantize`
(NNCF int8 with the accuracy kept), :mod:`.runtime` (:func:`load_artifact`: an artifact as a detector callable),
:mod:`.speed` (one timing table per checkpoint across runtimes and precisions).
"""

from .artifact import ArtifactError, Manifest, is_artifact, read_manifest
from .runtime import ArtifactDetector, load_artifact

__all__ = ["ArtifactDetector", "ArtifactError", "Manifest", "is_artifact", "load_artifact", "read_manifest"]
