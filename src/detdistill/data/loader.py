"""Data loading: collate, a seeded and resumable batch sampler, and a DataLoader builder.

With unlabelled images (``data.unlabeled``) the training set is a :class:`MixedDataset` and every batch
holds a fixed share of them (:class:`MixedBatchSampler`, ``data.unlabeled_ratio``), drawn from their own
seeded stream, so the mix is as reproducible and resumable as the labelled order.

Determinism does not depend on worker count or on where a run resumes: the sampler yields
``(index, sample_seed)`` pairs, and :class:`SeededView` seeds torch's RNG with ``sample_seed`` before the
augmentation of that one sample. So batch ``k`` of epoch ``e`` is the same images with the same
augmentation whether the run went straight through or was killed and resumed.
"""

from __future__ import annotations

import math
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..errors import DetDistillError
from .base import DetectionDataset, RecordTable, Target, Transform, without_crowd


def collate_detection(batch: Sequence[tuple[torch.Tensor, Target]]) -> tuple[list[torch.Tensor], list[Target]]:
    """Keep images and targets as lists: detection images differ in size and box count."""
    images, targets = zip(*batch) if batch else ((), ())
    return list(images), list(targets)


class SeededView(Dataset):
    """Wraps a dataset so that ``view[(index, seed)]`` augments sample ``index`` with RNG seed ``seed``."""

    def __init__(self, dataset: DetectionDataset, transforms: Transform | None = None) -> None:
        self.dataset = dataset
        self.transforms = transforms

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int] | int) -> tuple[torch.Tensor, Target]:
        index, seed = key if isinstance(key, tuple) else (key, 0)
        image, target = self.dataset[index]
        if self.transforms is not None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                image, target = self.transforms(image, target)
        return image, target


class ResumableBatchSampler(Sampler[list[tuple[int, int]]]):
    """Epoch-wise batches of ``(index, sample_seed)``, reproducible from ``(seed, epoch)``.

    Call :meth:`set_position` before iterating to start at ``(epoch, batch)``: the trainer records how many
    batches it consumed (not how many the loader prefetched) and restores exactly that position.

    For distributed training each of ``num_replicas`` ranks takes a disjoint, interleaved shard of the same
    epoch permutation (padded by wrapping around so every rank has the same number of batches, as
    ``DistributedSampler`` does).
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = False,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        if num_samples <= 0:
            raise ValueError("ResumableBatchSampler: the dataset is empty")
        if batch_size <= 0:
            raise ValueError(f"ResumableBatchSampler: batch_size must be positive, got {batch_size}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"ResumableBatchSampler: rank {rank} outside [0, {num_replicas})")
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self.start_batch = 0

    def set_position(self, epoch: int, batch: int = 0) -> None:
        self.epoch, self.start_batch = int(epoch), int(batch)

    def _shard(self, epoch: int) -> np.ndarray:
        if self.shuffle:
            order = np.random.default_rng([self.seed, epoch]).permutation(self.num_samples)
        else:
            order = np.arange(self.num_samples)
        per_rank = math.ceil(self.num_samples / self.num_replicas)
        total = per_rank * self.num_replicas
        if total > len(order):
            order = np.concatenate([order, order[: total - len(order)]])
        return order[self.rank:total:self.num_replicas]

    def batches_per_epoch(self) -> int:
        per_rank = math.ceil(self.num_samples / self.num_replicas)
        return per_rank // self.batch_size if self.drop_last else math.ceil(per_rank / self.batch_size)

    def epoch_batches(self, epoch: int) -> list[list[tuple[int, int]]]:
        shard = self._shard(epoch)
        # One seed per (epoch, dataset index): augmentation does not depend on rank or batch layout.
        seeds = np.random.default_rng([self.seed, epoch, 1]).integers(0, 2**31 - 1, self.num_samples)
        batches = []
        for b in range(self.batches_per_epoch()):
            idx = shard[b * self.batch_size:(b + 1) * self.batch_size]
            batches.append([(int(i), int(seeds[i])) for i in idx])
        return batches

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        yield from self.epoch_batches(self.epoch)[self.start_batch:]

    def __len__(self) -> int:
        return self.batches_per_epoch() - self.start_batch


def unlabelled_per_batch(batch_size: int, ratio: float) -> int:
    """Unlabelled images in a batch of ``batch_size`` at share ``ratio`` (rounded, at least one each kind).

    >>> unlabelled_per_batch(4, 0.5), unlabelled_per_batch(4, 0.25), unlabelled_per_batch(8, 0.7)
    (2, 1, 6)
    """
    if not 0.0 <= ratio < 1.0:
        raise DetDistillError(f"data.unlabeled_ratio: value {ratio} must lie in [0, 1) (the unlabelled share of "
                              "each batch; 1 would leave no labelled image)")
    count = int(math.floor(batch_size * ratio + 0.5))
    if count < 1 or count >= batch_size:
        raise DetDistillError(
            f"data.unlabeled_ratio: value {ratio} with train.batch_size {batch_size} puts {count} unlabelled and "
            f"{batch_size - count} labelled images in a batch; each batch needs both. Choose a ratio near "
            f"{1 / batch_size:.2f}..{1 - 1 / batch_size:.2f} or a larger batch")
    return count


class MixedDataset(DetectionDataset):
    """Labelled images (indices ``0..L-1``) followed by unlabelled ones (``L..L+U-1``) as one training set.

    The unlabelled images' ids move past the labelled ids (ids key the teacher cache), and every target
    carries ``labelled`` (a bool tensor). ``records`` spans both parts, so the teacher cache covers both.
    """

    def __init__(self, labelled: DetectionDataset, unlabelled: DetectionDataset, ratio: float) -> None:
        from .unlabeled import LABELLED_KEY

        self._key = LABELLED_KEY
        self.labelled, self.unlabelled, self.ratio = labelled, unlabelled, float(ratio)
        self.id_offset = int(labelled.records.image_ids.max()) + 1 if len(labelled) else 0
        a, b = labelled.records, unlabelled.records
        table = RecordTable(
            image_ids=np.concatenate([a.image_ids, b.image_ids + self.id_offset]),
            widths=np.concatenate([a.widths, b.widths]), heights=np.concatenate([a.heights, b.heights]),
            names=np.concatenate([a.names, b.names]),
            name_offsets=np.concatenate([a.name_offsets, b.name_offsets[1:] + a.name_offsets[-1]]),
            box_offsets=np.concatenate([a.box_offsets, b.box_offsets[1:] + a.box_offsets[-1]]),
            boxes=np.concatenate([a.boxes, b.boxes]), labels=np.concatenate([a.labels, b.labels]),
            iscrowd=np.concatenate([a.iscrowd, b.iscrowd]), difficult=np.concatenate([a.difficult, b.difficult]),
            area=np.concatenate([a.area, b.area]))
        super().__init__(table, labelled.class_names, labelled.category_ids, name=f"{labelled.name}+{unlabelled.name}")
        self.skips = getattr(labelled, "skips", None)

    @property
    def num_labelled(self) -> int:
        return len(self.labelled)

    @property
    def num_unlabelled(self) -> int:
        return len(self.unlabelled)

    def _part(self, idx: int) -> tuple[DetectionDataset, int]:
        idx = int(idx)
        return (self.labelled, idx) if idx < len(self.labelled) else (self.unlabelled, idx - len(self.labelled))

    def image_path(self, idx: int):  # noqa: ANN201 - a Path, as DetectionDataset's
        part, j = self._part(idx)
        return part.image_path(j)

    def load_image(self, idx: int) -> torch.Tensor:
        part, j = self._part(idx)
        return part.load_image(j)

    def get_target(self, idx: int) -> Target:
        part, j = self._part(idx)
        target = part.get_target(j)
        target["image_id"] = torch.tensor(int(self.records.image_ids[int(idx)]), dtype=torch.int64)
        target[self._key] = torch.tensor(part is self.labelled)
        return target


def mix_datasets(labelled: DetectionDataset, unlabelled: DetectionDataset, ratio: float) -> MixedDataset:
    """The training set of a run with ``data.unlabeled`` (see :class:`MixedDataset`)."""
    return MixedDataset(labelled, unlabelled, ratio)


class MixedBatchSampler(ResumableBatchSampler):
    """:class:`ResumableBatchSampler` over the labelled part of a :class:`MixedDataset`, each batch topped up
    with unlabelled images to ``batch_size``.

    The labelled part keeps its epochs (``batch_size − unlabelled_per_batch`` images per batch); the
    unlabelled images come from an endless stream of seeded permutations, position ``(global batch × ranks +
    rank) × per batch``, so a batch depends only on ``(seed, epoch, batch, rank)`` and resumes exactly.
    """

    def __init__(self, num_labelled: int, num_unlabelled: int, batch_size: int, ratio: float, seed: int = 0,
                 shuffle: bool = True, drop_last: bool = True, num_replicas: int = 1, rank: int = 0) -> None:
        if num_unlabelled <= 0:
            raise DetDistillError("data.unlabeled: the unlabelled set is empty")
        self.per_batch_unlabelled = unlabelled_per_batch(batch_size, ratio)
        super().__init__(num_labelled, batch_size - self.per_batch_unlabelled, seed=seed, shuffle=shuffle,
                         drop_last=drop_last, num_replicas=num_replicas, rank=rank)
        self.num_labelled, self.num_unlabelled = num_labelled, num_unlabelled
        self._cycles: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def _cycle(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        if k not in self._cycles:
            if len(self._cycles) > 4:
                self._cycles.clear()
            order = np.random.default_rng([self.seed, k, 2]).permutation(self.num_unlabelled)
            seeds = np.random.default_rng([self.seed, k, 3]).integers(0, 2**31 - 1, self.num_unlabelled)
            self._cycles[k] = (order, seeds)
        return self._cycles[k]

    def unlabelled_at(self, position: int, count: int) -> list[tuple[int, int]]:
        """``count`` unlabelled ``(index in the mixed dataset, sample seed)`` from stream ``position`` on."""
        out = []
        for p in range(position, position + count):
            order, seeds = self._cycle(p // self.num_unlabelled)
            i = int(order[p % self.num_unlabelled])
            out.append((self.num_labelled + i, int(seeds[i])))
        return out

    def epoch_batches(self, epoch: int) -> list[list[tuple[int, int]]]:
        per_epoch = self.batches_per_epoch()
        n = self.per_batch_unlabelled
        return [batch + self.unlabelled_at(((epoch * per_epoch + b) * self.num_replicas + self.rank) * n, n)
                for b, batch in enumerate(super().epoch_batches(epoch))]


def _seed_worker(worker_id: int) -> None:  # noqa: ARG001 - DataLoader's signature
    # Per-sample seeding does the real work; this only keeps stray numpy/random use reproducible.
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    import random

    random.seed(seed)


class _CrowdFree:
    """``transforms`` after dropping crowd boxes (a class, not a closure: spawned workers pickle it)."""

    def __init__(self, transforms: Transform | None) -> None:
        self.transforms = transforms

    def __call__(self, image: torch.Tensor, target: Target) -> tuple[torch.Tensor, Target]:
        target = without_crowd(target)
        return self.transforms(image, target) if self.transforms is not None else (image, target)


def build_loader(
    dataset: DetectionDataset,
    batch_size: int,
    *,
    train: bool,
    transforms: Transform | None = None,
    seed: int = 0,
    num_workers: int = 0,
    drop_last: bool | None = None,
    num_replicas: int = 1,
    rank: int = 0,
    pin_memory: bool | None = None,
) -> DataLoader:
    """A DataLoader over ``dataset`` that yields ``(list[image], list[target])``.

    Training loaders shuffle with a per-epoch permutation from ``seed`` and augment with ``transforms``;
    evaluation loaders keep file order and never augment. The batch sampler is
    :class:`ResumableBatchSampler` (reach it as ``loader.batch_sampler`` to set the position), or for a
    training :class:`MixedDataset` the :class:`MixedBatchSampler` that mixes in its unlabelled images.
    Memory is pinned when CUDA is available unless ``pin_memory`` says otherwise.
    """
    if isinstance(dataset, MixedDataset) and train:
        sampler: ResumableBatchSampler = MixedBatchSampler(
            dataset.num_labelled, dataset.num_unlabelled, batch_size, dataset.ratio, seed=seed,
            drop_last=True if drop_last is None else drop_last, num_replicas=num_replicas, rank=rank)
    else:
        sampler = ResumableBatchSampler(
            len(dataset), batch_size, seed=seed, shuffle=train,
            drop_last=train if drop_last is None else drop_last,
            num_replicas=num_replicas, rank=rank,
        )
    generator = torch.Generator()
    generator.manual_seed(seed)
    return DataLoader(
        # Training never learns crowd boxes as objects (torchvision's references); evaluation keeps them.
        SeededView(dataset, _CrowdFree(transforms) if train else None),
        batch_sampler=sampler,
        collate_fn=collate_detection,
        num_workers=num_workers,
        worker_init_fn=_seed_worker if num_workers > 0 else None,
        generator=generator,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        persistent_workers=False,
    )
