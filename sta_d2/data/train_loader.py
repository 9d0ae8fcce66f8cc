"""A training loader whose batches are a function of (seed, rank, batch number), so that a
resumed run reads exactly the batches an uninterrupted run would.

detectron2's train loader restarts its sampler when training resumes, and its augmentations
draw from per-worker random streams that depend on how many images each worker has mapped. Here
(1) :class:`StreamBatchSampler` computes each process's batches of dataset indices from the
seed alone (epoch permutations, sharded over processes, grouped by aspect ratio as detectron2
does) and can start at any batch number, and (2) :class:`SeededMapping` maps an image with the
random streams (torch, numpy, random) seeded from (seed, stream position), restoring the
caller's streams afterwards. Both honour detectron2's config keys (``DATALOADER.*``,
``SOLVER.IMS_PER_BATCH``).
"""
import itertools
import random
from typing import Iterator, List, Sequence, Tuple

import numpy as np
import torch
from detectron2.data import DatasetFromList
from detectron2.data.build import trivial_batch_collator
from detectron2.data.samplers import RepeatFactorTrainingSampler
from detectron2.utils import comm
from torch.utils.data import DataLoader, Dataset

SAMPLERS = ("TrainingSampler", "RepeatFactorTrainingSampler")


def mixed_seed(*values: int) -> int:
    """A 32-bit seed that depends on every value (independent streams per tuple)."""
    return int(np.random.SeedSequence([v % 2 ** 63 for v in values]).generate_state(1)[0])


def training_seed(cfg) -> int:
    """``cfg.SEED``, or, when it is negative, a random seed that every process shares."""
    return cfg.SEED if cfg.SEED >= 0 else comm.shared_random_seed()


class StreamBatchSampler:
    """This process's batches of (item seed, dataset index), forever.

    The stream is the concatenation of per-epoch random permutations of the dataset (with
    ``repeat_factors``, each image appears floor(r) or ceil(r) times per epoch, by stochastic
    rounding as in detectron2's RepeatFactorTrainingSampler), every epoch drawn from
    (seed, epoch); process ``rank`` takes its positions rank, rank + world, ... . With
    ``groups`` (one aspect-ratio group id per image), batches are filled per group in stream
    order. An item's seed, for its augmentation, mixes (seed, stream position).
    :meth:`start_at` makes the next iteration begin at a given batch number.
    """

    def __init__(self, size: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                 groups: Sequence[int] = None, repeat_factors: torch.Tensor = None):
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.groups = list(groups) if groups is not None else None
        self.repeat_factors = repeat_factors
        self.first_batch = 0

    def start_at(self, batch: int, seed: int) -> None:
        self.first_batch, self.seed = batch, seed

    def _epoch(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(mixed_seed(self.seed, epoch))
        if self.repeat_factors is None:
            return torch.randperm(self.size, generator=generator)
        whole = self.repeat_factors.floor()
        extra = torch.rand(len(whole), generator=generator) < self.repeat_factors - whole
        indices = torch.repeat_interleave(torch.arange(len(whole)), (whole + extra).long())
        return indices[torch.randperm(len(indices), generator=generator)]

    def _stream(self) -> Iterator[Tuple[int, int]]:
        positions = itertools.count()
        for epoch in itertools.count():
            for index in self._epoch(epoch).tolist():
                position = next(positions)
                if position % self.world_size == self.rank:
                    yield position, index

    def _batches(self) -> Iterator[List[Tuple[int, int]]]:
        buckets = {}
        for item in self._stream():
            group = self.groups[item[1]] if self.groups is not None else 0
            bucket = buckets.setdefault(group, [])
            bucket.append(item)
            if len(bucket) == self.batch_size:
                yield bucket
                buckets[group] = []

    def __iter__(self):
        for batch in itertools.islice(self._batches(), self.first_batch, None):
            yield [(mixed_seed(self.seed, position), index) for position, index in batch]

    def __len__(self):
        raise TypeError("the training stream is infinite")


class SeededMapping(Dataset):
    """``mapper(dataset_dicts[index])`` for keys (item seed, index), with the random streams
    seeded from the item seed while mapping and the caller's streams restored afterwards, so an
    image's augmentation depends on its place in the stream only."""

    def __init__(self, dataset_dicts: list, mapper):
        self.dataset = DatasetFromList(dataset_dicts, copy=True)
        self.mapper = mapper

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):
        seed, index = key
        numpy_state, python_state = np.random.get_state(), random.getstate()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            np.random.seed(seed)
            random.seed(seed)
            try:
                mapped = self.mapper(self.dataset[index])
            finally:
                np.random.set_state(numpy_state)
                random.setstate(python_state)
        if mapped is None:
            raise ValueError(f"the dataset mapper returned None for {self.dataset[index].get('file_name')}")
        return mapped


def build_stream_train_loader(cfg, dataset_dicts: list, mapper, seed: int) -> DataLoader:
    """The training loader of this process (see the module docstring): batches of
    ``SOLVER.IMS_PER_BATCH / world size`` mapped dicts, ``DATALOADER.NUM_WORKERS`` workers,
    grouped by orientation (width > height) when ``DATALOADER.ASPECT_RATIO_GROUPING``, sampled
    by ``DATALOADER.SAMPLER_TRAIN`` (``TrainingSampler`` or ``RepeatFactorTrainingSampler``)."""
    world_size, rank = comm.get_world_size(), comm.get_rank()
    total = cfg.SOLVER.IMS_PER_BATCH
    if total < 1 or total % world_size:
        raise ValueError(f"cfg.SOLVER.IMS_PER_BATCH = {total}: must be a positive multiple of the "
                         f"number of processes ({world_size})")
    name = cfg.DATALOADER.SAMPLER_TRAIN
    if name not in SAMPLERS:
        raise ValueError(f"cfg.DATALOADER.SAMPLER_TRAIN = {name!r}: STATrainer supports {', '.join(SAMPLERS)}")
    repeat_factors = None
    if name == "RepeatFactorTrainingSampler":
        repeat_factors = RepeatFactorTrainingSampler.repeat_factors_from_category_frequency(
            dataset_dicts, cfg.DATALOADER.REPEAT_THRESHOLD)
    groups = None
    if cfg.DATALOADER.ASPECT_RATIO_GROUPING:
        groups = [int(d.get("width", 0) > d.get("height", 0)) for d in dataset_dicts]
    sampler = StreamBatchSampler(len(dataset_dicts), total // world_size, seed, rank, world_size,
                                 groups, repeat_factors)
    return DataLoader(SeededMapping(dataset_dicts, mapper), batch_sampler=sampler,
                      num_workers=cfg.DATALOADER.NUM_WORKERS, collate_fn=trivial_batch_collator)
