"""data.auto_split: the same split across two opens (and whatever order a reader lists the files), another
split for another seed, stratified (each class in each part where it has the images), sizes by fraction."""

import json

import numpy as np
import pytest

from detdistill.config import load_config
from detdistill.data import DatasetError, open_dataset
from detdistill.data.prepare import open_config_datasets
from detdistill.data.split import stratified_split

CLASSES = ["common", "mid", "rare"]


def _dataset(tmp_path, make, n=40):
    """n images in annots/ + images/; 'rare' on 3 images, 'mid' on every 5th, 'common' on the rest."""
    for k in range(n):
        cls = "rare" if k in (4, 17, 33) else "mid" if k % 5 == 0 else "common"
        make.image(tmp_path / "images" / f"im{k:02d}.jpg", 24, 16, seed=k)
        (tmp_path / "annots").mkdir(exist_ok=True)
        (tmp_path / "annots" / f"im{k:02d}.xml").write_text(make.voc_xml(f"im{k:02d}.jpg", 24, 16,
                                                                         [(cls, 1, 1, 10, 10)]))
    return tmp_path


def _names(ds):
    return sorted(ds.records.file_name(i) for i in range(len(ds)))


def _classes_in(ds):
    return {ds.class_names[int(lb) - 1] for lb in ds.records.labels}


def test_the_split_is_identical_across_opens_differs_across_seeds_and_is_stratified(tmp_path, make):
    root = _dataset(tmp_path, make)
    first = {s: open_dataset(root, s, auto_split=[0.6, 0.2, 0.2], auto_split_seed=7) for s in ("train", "val", "test")}
    again = {s: open_dataset(root, s, auto_split=[0.6, 0.2, 0.2], auto_split_seed=7) for s in ("train", "val", "test")}
    other = {s: open_dataset(root, s, auto_split=[0.6, 0.2, 0.2], auto_split_seed=8) for s in ("train", "val", "test")}
    assert all(_names(first[s]) == _names(again[s]) for s in first)
    assert any(_names(first[s]) != _names(other[s]) for s in first)
    assert [len(first[s]) for s in ("train", "val", "test")] == [24, 8, 8]
    assert sorted(sum((_names(d) for d in first.values()), [])) == sorted(f"images/im{k:02d}.jpg" for k in range(40))
    for ds in first.values():  # 'rare' has exactly three images: one in each part
        assert _classes_in(ds) == set(CLASSES)
        assert ds.class_names == CLASSES


def test_the_split_does_not_depend_on_the_order_files_are_listed():
    rng = np.random.default_rng(0)
    names = [f"{k:03d}.jpg" for k in range(60)]
    classes = [rng.choice(4, size=rng.integers(0, 3)).tolist() for _ in names]
    parts = stratified_split(names, classes, [0.7, 0.15, 0.15], seed=3)
    order = rng.permutation(60)
    shuffled = stratified_split([names[i] for i in order], [classes[i] for i in order], [0.7, 0.15, 0.15], seed=3)
    assert (shuffled == parts[order]).all()
    assert np.bincount(parts, minlength=3).tolist() == [42, 9, 9]


def test_a_run_config_uses_the_parts_and_the_split_is_written(tmp_path, make):
    root = _dataset(tmp_path / "data", make)
    cfg = load_config(None, [f"data.source={root}", "data.auto_split=[0.6, 0.2, 0.2]", "data.auto_split_seed=7"])
    prepared = open_config_datasets(cfg.data)
    assert _names(prepared.val) == _names(open_dataset(root, "val", auto_split=[0.6, 0.2, 0.2], auto_split_seed=7))
    prepared.write_records(tmp_path / "run")
    written = (tmp_path / "run" / "splits" / "test.txt").read_text().split()
    assert sorted(written) == _names(prepared.test)
    record = json.loads((tmp_path / "run" / "splits" / "auto_split.json").read_text())
    assert record["seed"] == 7 and record["parts"]["train"]["images"] == 24
    assert record["parts"]["val"]["images_per_class"]["rare"] == 1
    bad = load_config(None, [f"data.source={root}", "data.auto_split=[0.6, 0.2, 0.2]", "data.train_split=trainval"])
    with pytest.raises(DatasetError, match="data.train_split: value 'trainval'; with data.auto_split the splits are"):
        open_config_datasets(bad.data)


def test_data_stats_prints_the_split(tmp_path, make, capsys):
    from detdistill.cli import main

    root = _dataset(tmp_path, make)
    assert main(["data", "stats", str(root), "--auto-split", "0.6,0.2,0.2", "--auto-split-seed", "7",
                 "--write-split", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "auto split [0.6, 0.2, 0.2] (seed 7):" in out
    assert "  val: 8 images, 8 boxes; images with each class: common 5, mid 2, rare 1" in out
    assert (tmp_path / "out" / "splits" / "train.txt").is_file()
