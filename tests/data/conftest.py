"""Fixture writers for the reader tests: tiny files in each format, written per test under tmp_path."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from PIL import Image


@pytest.fixture(autouse=True)
def _image_check_cache(tmp_path, monkeypatch):
    """The pre-flight image check caches its verdicts per test, never in the user's cache folder."""
    monkeypatch.setenv("DETDISTILL_CACHE_DIR", str(tmp_path / "detdistill-cache"))


def write_image(path: Path, width: int = 32, height: int = 24, mode: str = "RGB", seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rgb = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")
    img = rgb.convert("P") if mode == "P" else rgb.convert(mode)
    img.save(path)
    return path


def voc_xml(file_name: str | None, width: int | None, height: int | None, objects: list[tuple]) -> str:
    """objects: (name, xmin, ymin, xmax, ymax[, difficult]) with values written verbatim."""
    parts = ["<annotation>"]
    if file_name is not None:
        parts.append(f"<filename>{file_name}</filename>")
    if width is not None:
        parts.append(f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>")
    for obj in objects:
        name, x1, y1, x2, y2, *rest = obj
        diff = rest[0] if rest else 0
        parts.append(f"<object><name>{name}</name><difficult>{diff}</difficult><bndbox><xmin>{x1}</xmin>"
                     f"<ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>")
    parts.append("</annotation>")
    return "\n".join(parts)


def make_voc(root: Path, items: dict[str, dict], splits: dict[str, list[str]] | None = None,
             layout: str = "voc") -> Path:
    """items: stem -> {objects, width, height, mode, ext, write_image(bool), size_in_xml(bool)}."""
    ann, img = ("Annotations", "JPEGImages") if layout == "voc" else ("annotations", "images")
    split_dir = root / ("ImageSets/Main" if layout == "voc" else "splits")
    (root / ann).mkdir(parents=True, exist_ok=True)
    (root / img).mkdir(parents=True, exist_ok=True)
    for k, (stem, it) in enumerate(items.items()):
        w, h = it.get("width", 32), it.get("height", 24)
        fname = stem + it.get("ext", ".png")
        if it.get("write_image", True):
            write_image(root / img / fname, w, h, it.get("mode", "RGB"), seed=k)
        xml = voc_xml(fname, w if it.get("size_in_xml", True) else None, h, it.get("objects", []))
        (root / ann / f"{stem}.xml").write_text(xml)
    for split, ids in (splits or {}).items():
        split_dir.mkdir(parents=True, exist_ok=True)
        (split_dir / f"{split}.txt").write_text("".join(i + "\n" for i in ids))
    return root


def make_coco(root: Path, images: list[dict], annotations: list[dict], categories: list[dict],
              json_name: str = "annotations/train.json", write_images: bool = True) -> Path:
    for im in images:
        if write_images:
            write_image(root / "images" / im["file_name"], im["width"], im["height"], seed=im["id"])
    path = root / json_name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


def make_yolo(root: Path, items: dict[str, dict], names: list[str] | None, split: str | None = "train",
              names_file: bool = False) -> Path:
    """items: stem -> {lines: [str], width, height, label(bool)}; images under images/<split>/."""
    sub = Path(split) if split else Path()
    for k, (stem, it) in enumerate(items.items()):
        write_image(root / "images" / sub / f"{stem}.png", it.get("width", 40), it.get("height", 20), seed=k)
        if it.get("label", True):
            lab = root / "labels" / sub / f"{stem}.txt"
            lab.parent.mkdir(parents=True, exist_ok=True)
            lab.write_text("".join(line + "\n" for line in it.get("lines", [])))
    if names is not None and names_file:
        (root / "classes.txt").write_text("".join(n + "\n" for n in names))
    elif names is not None:
        cfg = {"names": {i: n for i, n in enumerate(names)}}
        if split:
            cfg[split] = f"images/{split}"
        (root / "data.yaml").write_text(yaml.safe_dump(cfg))
    return root


def kitti_line(typ: str, x1: float, y1: float, x2: float, y2: float) -> str:
    return f"{typ} 0.00 0 -1.57 {x1} {y1} {x2} {y2} 1.5 1.6 3.9 1.0 1.5 20.0 -1.5"


def make_kitti(root: Path, items: dict[str, dict]) -> Path:
    """items: stem -> {lines: [str], width, height}."""
    for k, (stem, it) in enumerate(items.items()):
        write_image(root / "image_2" / f"{stem}.png", it.get("width", 50), it.get("height", 30), seed=k)
        lab = root / "label_2" / f"{stem}.txt"
        lab.parent.mkdir(parents=True, exist_ok=True)
        lab.write_text("".join(line + "\n" for line in it.get("lines", [])))
    return root


@pytest.fixture
def make() -> SimpleNamespace:
    """The writers above, as one fixture (tests folders have no __init__.py to import them from)."""
    return SimpleNamespace(image=write_image, voc=make_voc, voc_xml=voc_xml, coco=make_coco, yolo=make_yolo,
                           kitti=make_kitti, kitti_line=kitti_line)


@pytest.fixture
def real_data(shared_data: Path) -> Path:
    """``../shared/data`` with both real sets present, else a clear skip."""
    for name in ("bccd", "raccoon"):
        if not (shared_data / name).is_dir():
            pytest.skip(f"real data set {name!r} not found in {shared_data}")
    return shared_data
