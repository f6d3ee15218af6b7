"""The errors a user can fix: ``detdistill`` prints any of them as one line (``--debug``: traceback).

Every user-facing error of the package derives from :class:`DetDistillError`; the CLI turns those (and the
operating system's file errors) into one line, and lets anything else keep its traceback (a bug to report).
``DetDistillError`` subclasses ``ValueError`` so code that caught ``ValueError`` before keeps working.
The subclasses a layer owns live beside it (``DatasetError`` in ``data/base.py``, ``WeightsError`` in
``models/weights.py``, ``TeacherCacheError`` in ``distill/teacher_cache.py``, ``NonFiniteLossError`` in
``engine/trainer.py``, ...); the ones shared by several layers live here.
"""


class DetDistillError(ValueError):
    """Bad input or settings; the message names the file, the field (or config key) and the value."""


class ConfigError(DetDistillError):
    """A config problem a user can fix; the message names the file, the key and the value."""


class PairingError(DetDistillError):
    """Teacher and student cannot be distilled as configured; the message says what to change."""


class ModelError(DetDistillError):
    """A model name, override, weights choice or low-rank spec that cannot build; names the key and value."""


class CheckpointError(DetDistillError):
    """A file that is not a usable detdistill checkpoint; the message names the file and the missing field."""


class UsageError(DetDistillError):
    """A command line that cannot run as given (flags that go together, an output folder in use)."""
