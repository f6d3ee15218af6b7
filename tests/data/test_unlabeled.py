"""Unlabelled images: reading a folder or SOURCE:SPLIT, bad files, overlap refusal, and the batch mix."""

import logging
import shutil
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from detdistill.data.base import DatasetError, DetectionDataset, ImageRecord
from detdistill.data.loader import MixedBatchSampler, build_loader, mix_datasets, unlabelled_per_batch
from detdistill.data.open import open_dataset
from detdistill.data.unlabeled import is_labelled, open_unlabeled, read_image_folder, refuse_overlap, split_spec
from detdistill.errors import DetDistillError


def _png(path, seed, size=(24, 16)):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def _jpeg(path, seed, size=(64, 48)):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path, quality=90)
    return path


def test_folder_of_images_reads_every_image_below_it_without_labels(tmp_path):
    _png(tmp_path / "b.png", 1)
    (tmp_path / "sub").mkdir()
    _jpeg(tmp_path / "sub" / "a.jpg", 2)
    (tmp_path / "notes.txt").write_text("not an image")
    ds = read_image_folder(tmp_path)
    assert [ds.records.file_name(i) for i in range(len(ds))] == ["b.png", "sub/a.jpg"]
    image, target = ds[1]
    assert image.shape == (3, 48, 64) and target["boxes"].shape == (0, 4)
    assert not is_labelled(target) and int(target["image_id"]) == 1


def test_folder_with_no_images_names_the_folder(tmp_path):
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(DatasetError, match=f"{tmp_path}.*holds no images"):
        read_image_folder(tmp_path)
    with pytest.raises(DatasetError, match="is not a folder"):
        open_unlabeled(str(tmp_path / "missing"))


def test_unreadable_files_are_counted_logged_and_left_out(tmp_path, caplog):
    for i in range(3):
        _jpeg(tmp_path / f"ok{i}.jpg", i)
    data = (tmp_path / "ok0.jpg").read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 2])  # the header reads; the blocks do not
    (tmp_path / "garbage.png").write_bytes(b"\x89PNG not really")
    with caplog.at_level(logging.WARNING, logger="detdistill.data"):
        ds = read_image_folder(tmp_path, on_bad_image="skip")
    assert len(ds) == 3 and ds.skips.counts == Counter({"unreadable_image": 2})
    assert sorted(ds.records.file_name(i) for i in range(3)) == ["ok0.jpg", "ok1.jpg", "ok2.jpg"]
    assert any("2 of 5 files" in r.getMessage() for r in caplog.records)
    # The default, repair, keeps the truncated JPEG (decoded as far as it goes) and counts it.
    repaired = read_image_folder(tmp_path)
    assert len(repaired) == 4 and repaired.skips.counts == Counter({"unreadable_image": 1})
    assert [m.split(": ")[0] for m in repaired.image_check.repaired] == [str(tmp_path / "truncated.jpg")]
    k = [repaired.records.file_name(i) for i in range(4)].index("truncated.jpg")
    assert repaired[k][0].shape[1:] == (repaired.records.heights[k], repaired.records.widths[k])
    (tmp_path / "ok0.jpg").unlink(), (tmp_path / "ok1.jpg").unlink(), (tmp_path / "ok2.jpg").unlink()
    with pytest.raises(DatasetError, match="none of the 2 image files"):
        read_image_folder(tmp_path, on_bad_image="skip")


def test_source_split_keeps_the_images_and_drops_the_labels():
    labelled = open_dataset("synthetic", split="val", num_images=3)
    ds = open_unlabeled("synthetic:val", num_images=3)
    assert len(ds) == 3 and ds.records.boxes.shape == (0, 4)
    assert torch.equal(ds[2][0], labelled[2][0]) and ds[2][1]["boxes"].numel() == 0
    assert split_spec("synthetic:hard:test") == ("synthetic:hard", "test")
    with pytest.raises(DatasetError, match="names a preset but no split"):
        open_unlabeled("synthetic:hard")


def _folder_set(folder, files):
    return DetectionDataset([ImageRecord(i, f, 24, 16) for i, f in enumerate(files)], ["x"], root=folder,
                            name=folder.name)


def test_overlap_with_an_evaluation_split_is_refused_by_content(tmp_path):
    test_dir, unl_dir = tmp_path / "test", tmp_path / "unl"
    test_dir.mkdir(), unl_dir.mkdir()
    for i in range(3):
        _png(test_dir / f"t{i}.png", 10 + i)
        _png(unl_dir / f"u{i}.png", 20 + i)
    test = _folder_set(test_dir, ["t0.png", "t1.png", "t2.png"])
    unlabeled = read_image_folder(unl_dir)
    refuse_overlap(unlabeled, {"data.val_split": None, "data.test_split": test})  # disjoint: accepted
    shutil.copy(test_dir / "t1.png", unl_dir / "renamed.png")  # same bytes under another name
    unlabeled = read_image_folder(unl_dir)
    with pytest.raises(DatasetError, match=r"1 of 4 unlabelled images .* data.test_split=test .*renamed.png = .*t1.png"):
        refuse_overlap(unlabeled, {"data.test_split": test})
    # Generated images (no files) are compared by their pixels.
    with pytest.raises(DatasetError, match="3 of 3 unlabelled images"):
        refuse_overlap(open_unlabeled("synthetic:val", num_images=3),
                       {"data.val_split": open_dataset("synthetic", split="val", num_images=3)})


def test_every_batch_holds_the_configured_share_and_the_stream_covers_every_unlabelled_image():
    sampler = MixedBatchSampler(num_labelled=12, num_unlabelled=5, batch_size=4, ratio=0.25, seed=3)
    assert sampler.per_batch_unlabelled == 1 and sampler.batches_per_epoch() == 4
    unlabelled = []
    for epoch in range(5):
        for batch in sampler.epoch_batches(epoch):
            indices = [i for i, _ in batch]
            assert len(batch) == 4 and sum(i >= 12 for i in indices) == 1
            unlabelled += [i for i in indices if i >= 12]
    # 20 draws from 5 images: each cycle of 5 draws is a permutation, so each image comes 4 times.
    assert Counter(unlabelled) == Counter({i: 4 for i in range(12, 17)})
    sampler.set_position(2, 3)  # resumes exactly where a run stopped
    assert list(sampler) == sampler.epoch_batches(2)[3:]
    assert MixedBatchSampler(12, 5, 4, 0.5, seed=3).per_batch_unlabelled == 2


def test_ratios_that_leave_a_batch_without_either_kind_are_refused():
    assert unlabelled_per_batch(8, 0.5) == 4
    with pytest.raises(DetDistillError, match=r"data.unlabeled_ratio: value 1.0 must lie in \[0, 1\)"):
        unlabelled_per_batch(4, 1.0)
    with pytest.raises(DetDistillError, match="puts 0 unlabelled and 2 labelled"):
        unlabelled_per_batch(2, 0.2)
    with pytest.raises(DetDistillError, match="puts 4 unlabelled and 0 labelled"):
        unlabelled_per_batch(4, 0.9)


def test_mixed_loader_flags_targets_and_keeps_ids_unique():
    labelled = open_dataset("synthetic", split="train", num_images=6)
    mixed = mix_datasets(labelled, open_unlabeled("synthetic:test", num_images=4), 0.5)
    ids = mixed.records.image_ids
    assert len(mixed) == 10 and len(set(ids.tolist())) == 10 and ids[6] == mixed.id_offset == 6
    loader = build_loader(mixed, 4, train=True, seed=0)
    batches = list(loader)
    assert len(batches) == 3  # 6 labelled images, 2 per batch
    for _, targets in batches:
        flags = [is_labelled(t) for t in targets]
        assert flags == [True, True, False, False]
        assert all(t["boxes"].numel() == 0 for t, ok in zip(targets, flags) if not ok)
        assert all(t["boxes"].shape[0] > 0 for t, ok in zip(targets, flags) if ok)
