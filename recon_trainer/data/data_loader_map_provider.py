"""The data_loader_map_provider slot of ReconDataSource: how each split's frames are batched."""
from __future__ import annotations

import abc
import functools
import os
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import torch
from torch.utils.data import BatchSampler, ConcatDataset, DataLoader, Dataset, RandomSampler

from recon_trainer.config import ConfigError, ReplaceableBase, registry
from recon_trainer.config.choices import check_choices, choice_field
from recon_trainer.data.frame_data import collate
from recon_trainer.data.splits import DataLoaderMap, DatasetMap


def available_cpu_cores() -> int:
    """The CPU cores this process may run on (its affinity mask: what a container or `taskset` allows)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def dataloader_workers(requested: int, key: str) -> int:
    """The DataLoader workers to start for `requested` (a config's num_workers, named `key` in
    messages): `requested`, lowered to the CPU cores available to this process (`available_cpu_cores`).

    More workers than cores only compete with the training process for the same cores (torch warns
    "This DataLoader will create 8 worker processes in total. Our suggested max number of worker
    ... is 2"), so a config written for a large machine (repro_base.yaml's 8, as Implicitron's)
    runs on a small one with one worker per core; one line says so, once per process and value.
    0 (the field default, what tests use) stays 0: loading in the main process, deterministic and
    without process start-up. Raises ConfigError for a negative value.
    """
    if requested < 0:
        raise ConfigError(f"{key}={requested}: expected a number of worker processes >= 0 (0: the main process)")
    cores = available_cpu_cores()
    if requested <= cores:
        return requested
    _note_fewer_workers(key, requested, cores)
    return cores


@functools.lru_cache(maxsize=None)
def _note_fewer_workers(key: str, requested: int, cores: int) -> None:
    print(f"recon_trainer: {key}={requested} but this process has {cores} CPU core(s); using {cores} "
          f"DataLoader worker(s)", flush=True)


class DataLoaderMapProviderBase(ReplaceableBase):
    """Turns the datasets of each split into iterables of collated FrameData batches."""

    @abc.abstractmethod
    def get_data_loader_map(self, datasets: DatasetMap) -> DataLoaderMap:
        """A loader for each split that has a dataset (None for the others)."""


@registry.register
class SimpleDataLoaderMapProvider(DataLoaderMapProviderBase):
    """Batches of frames: train shuffled, val and test in order (one frame per test batch).

    The train order comes from torch's global RNG, so it is reproducible when the loop seeds it.
    """

    batch_size: int = 1  # frames per train and val batch
    num_workers: int = 0  # DataLoader worker processes (0: the main process); capped at the CPU cores available
    dataset_length_train: int = 0  # batches per train epoch, frames drawn with replacement; 0 = one pass
    dataset_length_val: int = 0  # val batches over evenly spaced frames, in order; 0 = every frame
    dataset_length_test: int = 0  # test batches (one frame each) over evenly spaced frames; 0 = every frame

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"SimpleDataLoaderMapProvider.batch_size must be >= 1, got {self.batch_size}")

    def get_data_loader_map(self, datasets: DatasetMap) -> DataLoaderMap:

        return DataLoaderMap(
            train=self._train_loader(datasets.train),
            val=self._ordered_loader(datasets.val, self.batch_size, self.dataset_length_val),
            test=self._ordered_loader(datasets.test, 1, self.dataset_length_test),
        )

    def _train_loader(self, dataset: Optional[Dataset]) -> Optional[DataLoader]:
        if dataset is None:
            return None
        if self.dataset_length_train > 0:
            sampler = RandomSampler(dataset, replacement=True, num_samples=self.dataset_length_train * self.batch_size)
        else:
            sampler = RandomSampler(dataset)
        return self._loader(dataset, sampler, self.batch_size)

    def _ordered_loader(self, dataset: Optional[Dataset], batch_size: int, n_batches: int) -> Optional[DataLoader]:
        if dataset is None:
            return None
        n_frames = len(dataset)
        if 0 < n_batches * batch_size < n_frames:
            indices = torch.linspace(0, n_frames - 1, n_batches * batch_size).round().long().tolist()
        else:
            indices = list(range(n_frames))
        return self._loader(dataset, indices, batch_size)

    def _loader(self, dataset: Dataset, sampler: Iterable[int], batch_size: int) -> DataLoader:
        return DataLoader(
            dataset,
            batch_sampler=BatchSampler(sampler, batch_size=batch_size, drop_last=False),
            num_workers=dataloader_workers(self.num_workers, f"{type(self).__name__}.num_workers"),
            collate_fn=collate,
        )


CONDITIONING_TYPES = ("SAME", "TRAIN", "KNOWN")
EVAL_SEED = 0  # seeds the choice of val / test source frames


def _sequence_groups(dataset: Dataset) -> Dict[str, List[int]]:
    """{sequence name: dataset indices} of a FrameDataset, in index order."""
    groups: Dict[str, List[int]] = {}
    for index, name in enumerate(dataset.sequence_names()):
        groups.setdefault(name, []).append(index)
    return groups


class _SameSequenceBatches:
    """Train batch sampler: each batch holds frames of one sequence (a fresh draw per epoch).

    The sequence is drawn uniformly; the batch size uniformly from `sizes`; frames are drawn
    without replacement (all of them when the sequence is shorter), or as a run of consecutive
    frames (by frame order in the dataset) with gaps of 1..max_gap frames. The draws use a
    generator seeded from torch's global RNG, so a seeded loop reproduces them.
    """

    def __init__(self, groups: Dict[str, List[int]], n_batches: int, sizes: Sequence[int],
                 consecutive: bool, max_gap: int) -> None:
        self.groups = [indices for indices in groups.values() if indices]
        self.n_batches, self.sizes, self.consecutive, self.max_gap = n_batches, list(sizes), consecutive, max_gap

    def __len__(self) -> int:
        return self.n_batches

    def __iter__(self) -> Iterator[List[int]]:
        generator = torch.Generator().manual_seed(int(torch.randint(0, 2**62, ()).item()))
        for _ in range(self.n_batches):
            indices = self.groups[int(torch.randint(len(self.groups), (), generator=generator))]
            size = min(self.sizes[int(torch.randint(len(self.sizes), (), generator=generator))], len(indices))
            if self.consecutive:
                gaps = torch.randint(1, max(self.max_gap, 1) + 1, (size - 1,), generator=generator)
                span = int(gaps.sum())
                while span >= len(indices):  # too long for the sequence: shrink the gaps
                    gaps = (gaps - 1).clamp(min=1)
                    span = int(gaps.sum())
                start = int(torch.randint(len(indices) - span, (), generator=generator))
                offsets = [0] + torch.cumsum(gaps, 0).tolist()
                yield [indices[start + o] for o in offsets]
            else:
                yield [indices[int(k)] for k in torch.randperm(len(indices), generator=generator)[:size]]


@registry.register
class SequenceDataLoaderMapProvider(DataLoaderMapProviderBase):
    """Sequence-aware batches of FrameDatasets (datasets.py), element 0 of each batch the target.

    Train: each batch holds frames of one sequence (`_SameSequenceBatches`). Val and test: one
    batch per target frame, deterministic (sources drawn with EVAL_SEED); a dataset with `eval_batches` uses
    them. Otherwise the target gets batch_size - 1 source frames chosen by the split's
    conditioning type: SAME = other frames of its sequence from the same split, KNOWN = frames of
    its sequence from the train dataset, TRAIN = any train frames. Sources come from the train
    dataset through a concatenation (split frames, then train frames). Fewer candidates than
    needed give a smaller batch.
    """

    batch_size: int = 1  # frames per batch (target + sources in val / test)
    num_workers: int = 0  # DataLoader worker processes (0: the main process); capped at the CPU cores available
    dataset_length_train: int = 0  # batches per train epoch; 0 = len(train) // batch_size
    dataset_length_val: int = 0  # val batches over evenly spaced targets (or eval batches); 0 = all
    dataset_length_test: int = 0  # test batches over evenly spaced targets (or eval batches); 0 = all
    images_per_seq_options: Tuple[int, ...] = ()  # train batch sizes drawn uniformly; empty = (batch_size,)
    sample_consecutive_frames: bool = False  # train batches are runs of consecutive frames of a sequence
    consecutive_frames_max_gap: int = 0  # gap between consecutive picks is 1..max_gap frames (0 = 1)
    train_conditioning_type: str = choice_field("SAME", ("SAME",))  # train batches: only SAME (one sequence per batch)
    val_conditioning_type: str = choice_field("SAME", CONDITIONING_TYPES)  # SAME, KNOWN or TRAIN (see the class doc)
    test_conditioning_type: str = choice_field("KNOWN", CONDITIONING_TYPES)  # SAME, KNOWN or TRAIN (see the class doc)

    def __post_init__(self) -> None:
        name = type(self).__name__
        check_choices(self)
        if self.batch_size < 1:
            raise ConfigError(f"{name}.batch_size must be >= 1, got {self.batch_size}")
        if any(int(n) < 1 for n in self.images_per_seq_options):
            options = list(self.images_per_seq_options)
            raise ConfigError(f"{name}.images_per_seq_options must be positive, got {options}")

    def get_data_loader_map(self, datasets: DatasetMap) -> DataLoaderMap:

        return DataLoaderMap(
            train=self._train_loader(datasets.train),
            val=self._eval_loader(datasets.val, datasets.train, self.val_conditioning_type, self.dataset_length_val),
            test=self._eval_loader(datasets.test, datasets.train, self.test_conditioning_type,
                                   self.dataset_length_test),
        )

    def _train_loader(self, dataset: Optional[Dataset]) -> Optional[DataLoader]:
        if dataset is None:
            return None
        sizes = [int(n) for n in self.images_per_seq_options] or [self.batch_size]
        n_batches = self.dataset_length_train or max(1, len(dataset) // self.batch_size)
        sampler = _SameSequenceBatches(_sequence_groups(dataset), n_batches, sizes,
                                       self.sample_consecutive_frames, self.consecutive_frames_max_gap)
        return self._loader(dataset, sampler)

    def _eval_loader(self, dataset: Optional[Dataset], train: Optional[Dataset], conditioning: str,
                     n_batches: int) -> Optional[DataLoader]:
        if dataset is None:
            return None
        eval_batches = getattr(dataset, "eval_batches", None)
        if eval_batches is not None:
            return self._loader(dataset, _evenly_spaced(list(eval_batches), n_batches))
        targets = _evenly_spaced(list(range(len(dataset))), n_batches)
        n_sources = self.batch_size - 1
        if n_sources == 0 or (conditioning != "SAME" and train is None):
            return self._loader(dataset, [[t] for t in targets])
        generator = torch.Generator().manual_seed(EVAL_SEED)
        if conditioning == "SAME":
            pool, offset = dataset, 0
        else:
            pool, offset = train, len(dataset)
        names = dataset.sequence_names()
        groups = _sequence_groups(pool)
        every = list(range(len(pool)))
        batches = []
        for t in targets:
            candidates = every if conditioning == "TRAIN" else groups.get(names[t], [])
            candidates = [c for c in candidates if not (pool is dataset and c == t)]
            picks = torch.randperm(len(candidates), generator=generator)[:n_sources].tolist()
            batches.append([t] + [offset + candidates[k] for k in picks])
        combined = dataset if offset == 0 else ConcatDataset([dataset, train])
        return self._loader(combined, batches)

    def _loader(self, dataset: Dataset, batch_sampler: Iterable[List[int]]) -> DataLoader:
        workers = dataloader_workers(self.num_workers, f"{type(self).__name__}.num_workers")
        return DataLoader(dataset, batch_sampler=batch_sampler, num_workers=workers, collate_fn=collate)


def _evenly_spaced(items: List, n: int) -> List:
    """n evenly spaced items (all when n is 0 or at least len(items))."""
    if 0 < n < len(items):
        return [items[i] for i in torch.linspace(0, len(items) - 1, n).round().long().tolist()]
    return items
