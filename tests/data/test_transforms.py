import torch

from detdistill.data import AugmentConfig, DetectionAugment


def _sample():
    image = torch.rand(3, 100, 120)
    target = {
        "boxes": torch.tensor([[10.0, 20.0, 50.0, 60.0], [100.0, 0.0, 120.0, 30.0], [5.0, 5.0, 6.2, 6.2]]),
        "labels": torch.tensor([1, 2, 3]),
        "iscrowd": torch.tensor([0, 1, 0]),
        "difficult": torch.tensor([False, True, False]),
        "area": torch.tensor([1600.0, 600.0, 1.44]),
        "image_id": torch.tensor(7),
        "orig_size": torch.tensor([100, 120]),
    }
    return image, target


def test_horizontal_flip_moves_boxes_with_pixels():
    image, target = _sample()
    out_img, out = DetectionAugment(AugmentConfig(hflip_prob=1.0))(image, target)
    assert torch.equal(out_img, image.flip(-1))
    # x1' = W - x2, x2' = W - x1 with W = 120
    assert torch.equal(out["boxes"][0], torch.tensor([70.0, 20.0, 110.0, 60.0]))
    assert torch.equal(out["boxes"][1], torch.tensor([0.0, 0.0, 20.0, 30.0]))
    assert torch.equal(out["labels"], target["labels"]) and int(out["image_id"]) == 7
    assert type(out["boxes"]) is torch.Tensor  # plain tensors leave the pipeline


def test_no_flip_at_probability_zero():
    image, target = _sample()
    out_img, out = DetectionAugment(AugmentConfig(hflip_prob=0.0))(image, target)
    assert torch.equal(out_img, image) and torch.equal(out["boxes"], target["boxes"])


def test_scale_jitter_scales_boxes_exactly_and_drops_collapsed_boxes_with_their_fields():
    image, target = _sample()
    out_img, out = DetectionAugment(AugmentConfig(hflip_prob=0.0, scale_jitter=(0.5, 0.5)))(image, target)
    assert out_img.shape == (3, 50, 60)
    # The 1.2 px box becomes 0.6 px: dropped together with its label, crowd flag, difficult flag and area.
    assert torch.allclose(out["boxes"], torch.tensor([[5.0, 10.0, 25.0, 30.0], [50.0, 0.0, 60.0, 15.0]]))
    assert out["labels"].tolist() == [1, 2]
    assert out["iscrowd"].tolist() == [0, 1]
    assert out["difficult"].tolist() == [False, True]
    assert torch.allclose(out["area"], torch.tensor([400.0, 150.0]))


def test_scale_jitter_then_flip_compose():
    image, target = _sample()
    torch.manual_seed(0)
    out_img, out = DetectionAugment(AugmentConfig(hflip_prob=1.0, scale_jitter=(2.0, 2.0)))(image, target)
    assert out_img.shape == (3, 200, 240)
    assert torch.allclose(out["boxes"][0], torch.tensor([240 - 100.0, 40.0, 240 - 20.0, 120.0]))


def test_photometric_changes_pixels_not_boxes():
    image, target = _sample()
    torch.manual_seed(1)
    out_img, out = DetectionAugment(AugmentConfig(hflip_prob=0.0, photometric=True))(image, target)
    assert not torch.equal(out_img, image)
    assert torch.equal(out["boxes"], target["boxes"][:2]) or torch.equal(out["boxes"], target["boxes"])
