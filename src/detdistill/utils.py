"""Small helpers shared by every concern: atomic checkpoint writes, safe loads, seeding."""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from .errors import CheckpointError


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """A temp path in ``path``'s folder to write to; renamed over ``path`` when the block ends, removed when
    it raises (even on KeyboardInterrupt), so readers see the old file or the new one, never a torn one.

    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "out.txt"
    >>> with atomic_output(target) as tmp:
    ...     _ = tmp.write_text("done")
    >>> target.read_text()
    'done'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    _respect_umask(tmp)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temp file in the same folder, fsync, then rename over ``path``.

    A crash (even SIGKILL) mid-write leaves either the old file or the new one, never a torn file.
    """
    with atomic_output(path) as tmp, open(tmp, "wb") as fh:
        torch.save(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())
    return Path(path)


def atomic_write_text(text: str, path: str | Path) -> Path:
    """Write a text file atomically (temp file + rename)."""
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def _respect_umask(tmp: str) -> None:
    """``mkstemp`` creates 0600 files; a finished output gets the mode ``open()`` would give it (0666 & ~umask)."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(tmp, 0o666 & ~mask)


_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since 1.6
_PICKLE_MAGIC = b"\x80"  # the legacy format starts with a pickle protocol byte
# torch's legacy (pre-zip) format pickles this magic number first; a plain ``pickle.dump`` file has no such start.
_LEGACY_TORCH_MAGIC = (0x1950A86A20F9469CFC6C).to_bytes(10, "little")


def safe_torch_load(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(..., weights_only=True)`` with a clear one-line error naming the file.

    Errors are :class:`CheckpointError` (a missing file: ``FileNotFoundError``); torch's own warnings about
    the file (pickle protocols, with a site-packages path) are not passed on: the error says what is wrong.
    """
    import warnings

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint file not found")
    with open(path, "rb") as fh:
        head = fh.read(32)
    if not head:
        raise CheckpointError(f"{path}: empty file (0 bytes), not a checkpoint; was its write cut short?")
    if not head.startswith((_ZIP_MAGIC, _PICKLE_MAGIC)):
        hint = " (an ONNX model? detdistill reads the .pt checkpoint it was exported from)" \
            if path.suffix.lower() == ".onnx" or head[:1] == b"\x08" else ""
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (the file starts with bytes {head[:4]!r}){hint}")
    if head.startswith(_PICKLE_MAGIC) and _LEGACY_TORCH_MAGIC not in head:
        raise CheckpointError(f"{path}: a plain Python pickle (pickle.dump), not a torch checkpoint that "
                                  "torch.load(weights_only=True) reads; detdistill does not unpickle arbitrary "
                                  "objects (safety): save the tensors with torch.save(model.state_dict(), path) instead")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or unsafe files
        text = str(exc)
        if "weights_only" in text or "Unsupported global" in text:
            raise CheckpointError(f"{path}: holds Python objects beyond tensors and plain data, which detdistill "
                                      "does not unpickle (safety); save a state dict or a detdistill checkpoint "
                                      "instead") from None
        first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
        raise CheckpointError(f"{path}: cannot load as a checkpoint ({first})") from exc


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB chunks (teachers and cache manifests are identified by it)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_utf8_text(path: str | Path, what: str, error: type[Exception]) -> str:
    """A UTF-8 text file (a leading BOM, as Windows editors write, is dropped); failures raise ``error`` with a
    message that names the file and says what ``what`` should have been.

    >>> read_utf8_text("/no/such.yaml", "config file", ValueError)
    Traceback (most recent call last):
    ValueError: /no/such.yaml: config file not found
    """
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: {what} is not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise error(f"{path}: {what} is a folder, expected a text file") from None
