"""Data loading: collate, a seeded and resumable batch sampler, and a DataLoader builder.

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

from .base import DetectionDataset, Target, Transform, without_crowd


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
    :class:`ResumableBatchSampler` (reach it as ``loader.batch_sampler`` to set the position).
    Memory is pinned when CUDA is available unless ``pin_memory`` says otherwise.
    """
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
