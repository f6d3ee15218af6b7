import hashlib

import numpy as np
import pytest

from detdistill.data import LOOKALIKE_PAIRS, SYNTHETIC_CLASS_NAMES, DatasetError, SyntheticConfig, SyntheticShapes
from detdistill.data.convert import to_coco_dict


def _digest(ds: SyntheticShapes, indices) -> str:
    h = hashlib.sha256()
    for i in indices:
        h.update(ds.render(i).tobytes())
        h.update(ds.records[i].boxes.tobytes())
    return h.hexdigest()


def test_same_seed_same_bytes_in_any_order():
    a = SyntheticShapes("train", num_images=6, seed=3)
    b = SyntheticShapes("train", num_images=6, seed=3)
    assert _digest(a, range(6)) == _digest(b, range(6))
    # Rendering image 4 first, or alone, does not change it: each image is a function of (seed, split, index).
    assert _digest(b, [4]) == _digest(SyntheticShapes("train", num_images=6, seed=3), [4])
    # A longer split starts with the same images.
    assert _digest(SyntheticShapes("train", num_images=9, seed=3), range(6)) == _digest(a, range(6))


def test_seeds_and_splits_are_disjoint_streams():
    base = _digest(SyntheticShapes("train", num_images=4, seed=0), range(4))
    assert base != _digest(SyntheticShapes("train", num_images=4, seed=1), range(4))
    assert base != _digest(SyntheticShapes("val", num_images=4, seed=0), range(4))
    assert _digest(SyntheticShapes("val", num_images=4), range(4)) != _digest(SyntheticShapes("test", num_images=4), range(4))


def test_targets_follow_the_interface():
    ds = SyntheticShapes("val", num_images=20, seed=0)
    s = ds.config.image_size
    for i in range(len(ds)):
        image, target = ds[i]
        assert image.shape == (3, s, s) and image.dtype.is_floating_point
        assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
        boxes, labels = target["boxes"], target["labels"]
        assert boxes.shape[1] == 4 and len(labels) == len(boxes)
        assert ((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])).all()
        assert float(boxes.min()) >= 0 and float(boxes.max()) <= s
        assert int(labels.min()) >= 1 and int(labels.max()) <= len(SYNTHETIC_CLASS_NAMES)
        assert int(target["image_id"]) == i
        assert target["orig_size"].tolist() == [s, s]
    assert ds.num_classes == len(SYNTHETIC_CLASS_NAMES) + 1


def test_class_balance_on_the_default_train_split():
    counts = np.array(list(SyntheticShapes("train", seed=0).summary()["classes"].values()))
    expected = counts.sum() / len(counts)
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    # 5 degrees of freedom: chi2 < 20.5 holds for a uniform class draw with probability 0.999.
    assert chi2 < 20.5, counts


def test_lookalike_pairs_present_and_alike():
    assert LOOKALIKE_PAIRS == (("square", "wide_rectangle"), ("circle", "ellipse"), ("triangle", "trapezoid"))
    cfg = SyntheticConfig(max_rotation=0.0)
    ds = SyntheticShapes("train", num_images=120, seed=0, config=cfg)
    aspect = {name: [] for name in SYNTHETIC_CLASS_NAMES}
    for rec in ds.records:
        for box, label in zip(rec.boxes, rec.labels):
            w, h = box[2] - box[0], box[3] - box[1]
            if 0 < box[0] and 0 < box[1] and box[2] < cfg.image_size and box[3] < cfg.image_size:
                aspect[SYNTHETIC_CLASS_NAMES[label - 1]].append(w / h)
    # Unrotated squares and circles are exactly as wide as tall; their look-alikes are 1.5-2.2x wider.
    assert np.allclose(aspect["square"], 1.0, atol=1e-4)
    assert np.allclose(aspect["circle"], 1.0, atol=0.02)
    assert min(aspect["wide_rectangle"]) >= 1.6 - 1e-3 and max(aspect["wide_rectangle"]) <= 2.2 + 1e-3
    assert min(aspect["ellipse"]) >= 1.5 - 1e-3 and max(aspect["ellipse"]) <= 2.0 + 1e-3
    # Triangles and trapezoids share the same box shape: only the top edge tells them apart.
    assert np.allclose(aspect["triangle"], 1.2 / 0.95, atol=1e-3)
    assert np.allclose(aspect["trapezoid"], 1.2 / 0.95, atol=1e-3)


def test_difficulty_knob_changes_object_count_and_size():
    easy = SyntheticShapes("train", num_images=50, config=SyntheticConfig.preset("easy"))
    hard = SyntheticShapes("train", num_images=50, config=SyntheticConfig.preset("hard"))
    per_image = lambda ds: [r.num_boxes for r in ds.records]  # noqa: E731
    assert max(per_image(easy)) <= 3 and min(per_image(hard)) >= 1
    assert np.mean(per_image(hard)) > 2 * np.mean(per_image(easy))
    mean_area = lambda ds: np.mean(np.concatenate([r.area for r in ds.records]))  # noqa: E731
    assert mean_area(hard) < mean_area(easy)


def test_bad_config_names_the_field():
    with pytest.raises(DatasetError, match="max_size"):
        SyntheticConfig(max_size=400)
    with pytest.raises(DatasetError, match="split"):
        SyntheticShapes("holdout")
    with pytest.raises(DatasetError, match="preset"):
        SyntheticConfig.preset("extreme")


def test_exports_to_coco_with_every_box():
    ds = SyntheticShapes("test", num_images=5, seed=0)
    coco = to_coco_dict(ds)
    assert [c["name"] for c in coco["categories"]] == list(SYNTHETIC_CLASS_NAMES)
    assert len(coco["images"]) == 5
    assert len(coco["annotations"]) == sum(r.num_boxes for r in ds.records)
    first = ds.records[0]
    x1, y1, x2, y2 = first.boxes[0]
    assert coco["annotations"][0]["bbox"] == pytest.approx([x1, y1, x2 - x1, y2 - y1])
    assert coco["annotations"][0]["category_id"] == int(first.labels[0])
