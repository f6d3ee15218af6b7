import torch

from detdistill.data import DetectionAugment, ResumableBatchSampler, SyntheticShapes, build_loader, collate_detection


def _ids(batch):
    return [int(t["image_id"]) for t in batch[1]]


def _epoch(loader, epoch, start=0):
    loader.batch_sampler.set_position(epoch, start)
    return list(loader)


def test_same_seed_same_batches_and_augmentation_with_or_without_workers():
    ds = SyntheticShapes("train", num_images=12, seed=0)
    aug = DetectionAugment()
    a = _epoch(build_loader(ds, 4, train=True, transforms=aug, seed=5), 0)
    b = _epoch(build_loader(ds, 4, train=True, transforms=aug, seed=5, num_workers=2), 0)
    assert [_ids(x) for x in a] == [_ids(x) for x in b]
    for (ia, ta), (ib, tb) in zip(a, b):
        assert all(torch.equal(x, y) for x, y in zip(ia, ib))
        assert all(torch.equal(x["boxes"], y["boxes"]) for x, y in zip(ta, tb))
    c = _epoch(build_loader(ds, 4, train=True, transforms=aug, seed=6), 0)
    assert [_ids(x) for x in a] != [_ids(x) for x in c]


def test_resume_from_a_position_gives_the_remaining_batches_exactly():
    ds = SyntheticShapes("train", num_images=10, seed=0)
    loader = build_loader(ds, 3, train=True, transforms=DetectionAugment(), seed=1)
    full = _epoch(loader, 2)
    resumed = _epoch(build_loader(ds, 3, train=True, transforms=DetectionAugment(), seed=1), 2, start=1)
    assert [_ids(x) for x in resumed] == [_ids(x) for x in full[1:]]
    assert all(torch.equal(x, y) for (ia, _), (ib, _) in zip(full[1:], resumed) for x, y in zip(ia, ib))
    assert _ids(full[0]) != _ids(_epoch(loader, 3)[0]) or _ids(full[1]) != _ids(_epoch(loader, 3)[1])


def test_epoch_permutations_cover_the_data_and_drop_last():
    sampler = ResumableBatchSampler(10, 3, seed=0, shuffle=True, drop_last=True)
    batches = sampler.epoch_batches(0)
    assert len(batches) == 3 == sampler.batches_per_epoch()
    flat = [i for b in batches for i, _ in b]
    assert len(set(flat)) == 9
    keep = ResumableBatchSampler(10, 3, seed=0, shuffle=True, drop_last=False)
    assert sorted(i for b in keep.epoch_batches(0) for i, _ in b) == list(range(10))


def test_distributed_shards_are_disjoint_and_cover_the_data():
    shards = [ResumableBatchSampler(11, 2, seed=3, num_replicas=3, rank=r) for r in range(3)]
    per_rank = [[i for b in s.epoch_batches(4) for i, _ in b] for s in shards]
    assert all(len(p) == 4 for p in per_rank)  # ceil(11 / 3) = 4, padded by wrapping
    assert set().union(*per_rank) == set(range(11))
    # Only the one padded (wrapped) sample is shared between ranks.
    assert sum(len(p) for p in per_rank) - len(set().union(*per_rank)) == 1


def test_evaluation_loader_keeps_file_order_and_no_augmentation():
    ds = SyntheticShapes("val", num_images=5, seed=0)
    loader = build_loader(ds, 2, train=False, transforms=DetectionAugment())
    batches = list(loader)
    assert [i for b in batches for i in _ids(b)] == [0, 1, 2, 3, 4]
    assert torch.equal(batches[0][0][0], ds[0][0])


def test_collate_keeps_lists():
    images, targets = collate_detection([(torch.zeros(3, 4, 5), {"a": 1}), (torch.ones(3, 6, 2), {"a": 2})])
    assert [tuple(i.shape) for i in images] == [(3, 4, 5), (3, 6, 2)] and [t["a"] for t in targets] == [1, 2]
