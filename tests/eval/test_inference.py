"""predict_dataset / evaluate_model: id remapping, model modes, a real tiny Faster R-CNN, the gather path."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops import MultiScaleRoIAlign

from detdistill.data.base import DetectionDataset, ImageRecord
from detdistill.data.convert import to_coco_dict
from detdistill.eval import inference
from detdistill.eval.coco import coco_evaluate
from detdistill.eval.inference import evaluate_model, gather_detections, outputs_to_coco, predict_dataset


class TinyDataset(DetectionDataset):
    """Three 32x24 images, source category ids 3 and 17 (non-contiguous), pixels from the index."""

    def __init__(self) -> None:
        records = [
            ImageRecord(image_id=101, file_name="a.png", width=32, height=24,
                        boxes=[[1, 2, 11, 12], [15, 5, 30, 20]], labels=[1, 2]),
            ImageRecord(image_id=205, file_name="b.png", width=32, height=24,
                        boxes=[[4, 4, 20, 20]], labels=[2], difficult=[True]),
            ImageRecord(image_id=7, file_name="c.png", width=32, height=24, boxes=[[0, 0, 8, 8]], labels=[1]),
        ]
        super().__init__(records, ["cat", "dog"], category_ids=[3, 17], name="tiny")

    def load_image(self, idx: int) -> torch.Tensor:
        return torch.full((3, 24, 32), idx / 10.0)


class Oracle(nn.Module):
    """Returns each image's ground truth (found from the image's fill value), plus one wrong-class box."""

    def __init__(self, dataset: DetectionDataset) -> None:
        super().__init__()
        self.dataset = dataset
        self.frozen = nn.BatchNorm2d(1)
        self.seen_training: list[bool] = []

    def forward(self, images):
        self.seen_training.append(self.training)
        outs = []
        for img in images:
            t = self.dataset.get_target(int(round(float(img[0, 0, 0]) * 10)))
            outs.append({"boxes": t["boxes"], "scores": torch.linspace(0.9, 0.5, len(t["boxes"])),
                         "labels": t["labels"]})
        return outs


def test_outputs_to_coco_maps_labels_and_boxes():
    out = [{"boxes": torch.tensor([[1.0, 2.0, 11.0, 12.5], [0.0, 0.0, 4.0, 4.0]]),
            "scores": torch.tensor([0.75, 0.25]), "labels": torch.tensor([2, 1])}]
    assert outputs_to_coco(out, [205], [3, 17]) == [
        {"image_id": 205, "category_id": 17, "bbox": [1.0, 2.0, 10.0, 10.5], "score": 0.75},
        {"image_id": 205, "category_id": 3, "bbox": [0.0, 0.0, 4.0, 4.0], "score": 0.25},
    ]
    bad = [{"boxes": torch.zeros(1, 4), "scores": torch.ones(1), "labels": torch.tensor([3])}]
    with pytest.raises(ValueError, match=r"label 3 for image 9 is outside 1..2"):
        outputs_to_coco(bad, [9], [3, 17])


def test_predict_dataset_remaps_ids_in_dataset_order():
    ds = TinyDataset()
    dets = predict_dataset(Oracle(ds), ds, batch_size=2, progress=False)
    assert [(d["image_id"], d["category_id"]) for d in dets] == [(101, 3), (101, 17), (205, 17), (7, 3)]
    assert dets[1]["bbox"] == [15.0, 5.0, 15.0, 15.0]
    assert dets[0]["score"] == pytest.approx(0.9) and dets[1]["score"] == pytest.approx(0.5)


@pytest.mark.parametrize("metric", ["coco", "voc"])
def test_evaluate_model_oracle_and_mode_restored(metric):
    ds = TinyDataset()
    model = Oracle(ds)
    model.train()
    model.frozen.eval()  # a trainer's frozen BatchNorm must stay frozen
    result = evaluate_model(model, ds, metric=metric, batch_size=2)
    assert model.seen_training == [False, False]
    assert model.training is True and model.frozen.training is False
    assert result.metrics["mAP50"] == pytest.approx(1.0) and result.metrics["AP"] == pytest.approx(1.0)
    assert [r["category_id"] for r in result.per_class] == [3, 17]
    assert len(result.detections) == 4 and result.metric == metric


def test_evaluate_model_voc_ignores_difficult_coco_does_not():
    ds = TinyDataset()

    class MissesDifficult(Oracle):
        def forward(self, images):
            outs = super().forward(images)
            return [o if round(float(img[0, 0, 0]) * 10) != 1 else {k: v[:0] for k, v in o.items()}
                    for o, img in zip(outs, images)]

    voc = evaluate_model(MissesDifficult(ds), ds, metric="voc")
    coco = evaluate_model(MissesDifficult(ds), ds, metric="coco")
    assert voc.metrics["mAP50"] == pytest.approx(1.0)  # the only dog missed is difficult
    # COCO counts it: dog recall 1/2 with precision 1 -> 51 of 101 recall points.
    dog = coco.per_class[1]
    assert dog["AP50"] == pytest.approx(51 / 101) and coco.metrics["mAP50"] == pytest.approx((1 + 51 / 101) / 2)


def tiny_faster_rcnn(num_classes: int) -> FasterRCNN:
    backbone = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
                             nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU())
    backbone.out_channels = 8
    anchors = AnchorGenerator(sizes=((8, 16),), aspect_ratios=((0.5, 1.0, 2.0),))
    torch.manual_seed(0)
    return FasterRCNN(backbone, num_classes=num_classes, min_size=32, max_size=48,
                      rpn_anchor_generator=anchors, box_roi_pool=MultiScaleRoIAlign(["0"], 7, 2),
                      representation_size=32, box_score_thresh=0.0, box_detections_per_img=20)


def test_real_tiny_faster_rcnn_matches_direct_call():
    ds = TinyDataset()
    model = tiny_faster_rcnn(ds.num_classes)
    result = evaluate_model(model, ds, batch_size=3)
    model.eval()
    with torch.no_grad():
        outs = model([ds.load_image(i) for i in range(len(ds))])
    expected = []
    for out, rec in zip(outs, ds.records):
        for box, score, label in zip(out["boxes"].tolist(), out["scores"].tolist(), out["labels"].tolist()):
            expected.append((rec.image_id, ds.category_ids[label - 1], box[0], box[1], box[2] - box[0],
                             box[3] - box[1], score))
    got = [(d["image_id"], d["category_id"], *d["bbox"], d["score"]) for d in result.detections]
    assert len(got) == len(expected) > 0
    np.testing.assert_allclose(np.array(got), np.array(expected), rtol=1e-5, atol=1e-4)
    again = coco_evaluate(to_coco_dict(ds), result.detections)
    assert result.metrics["AP"] == again.stats["AP"] and result.metrics["mAP50"] == again.stats["AP50"]


def test_gather_detections_single_process_orders_by_index():
    local = [(2, [{"id": "c"}]), (0, [{"id": "a1"}, {"id": "a2"}]), (1, [])]
    assert [d["id"] for d in gather_detections(local)] == ["a1", "a2", "c"]


def _ddp_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    import json

    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        ds = TinyDataset()
        model = Oracle(ds)
        seen: list[int] = []
        original = model.forward
        model.forward = lambda images: (seen.extend(int(round(float(i[0, 0, 0]) * 10)) for i in images),
                                        original(images))[1]
        result = evaluate_model(model, ds, metric="voc", batch_size=1)
        with open(f"{out_dir}/rank{rank}.json", "w") as fh:
            json.dump({"seen": seen, "metrics": result.metrics, "detections": result.detections,
                       "per_class": result.per_class}, fh)
    finally:
        dist.destroy_process_group()


def test_distributed_gather_with_two_gloo_processes(tmp_path):
    import json

    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0]["seen"] == [0, 2] and ranks[1]["seen"] == [1]  # interleaved shards
    ds = TinyDataset()
    single = evaluate_model(Oracle(ds), ds, metric="voc")
    for r in ranks:
        assert r["detections"] == single.detections  # the whole set, in dataset order, on every rank
        assert r["metrics"] == pytest.approx(single.metrics)
        assert r["per_class"] == single.per_class


def test_bad_arguments():
    ds = TinyDataset()
    with pytest.raises(ValueError, match="metric 'map' is not one of"):
        evaluate_model(Oracle(ds), ds, metric="map")
    with pytest.raises(ValueError, match="batch_size must be positive"):
        predict_dataset(Oracle(ds), ds, batch_size=0)


def test_docstring_examples():
    assert doctest.testmod(inference).failed == 0
