"""The data_loader_map_provider slot of ReconDataSource: how each split's frames are batched."""
from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Iterable, Optional

import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler

from recon_trainer.config import ReplaceableBase, registry
from recon_trainer.data.frame_data import collate

if TYPE_CHECKING:  # data_source imports this module to build ReconDataSource's slot
    from recon_trainer.data.data_source import DataLoaderMap, DatasetMap


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
    num_workers: int = 0  # DataLoader worker processes (0 = load in the main process)
    dataset_length_train: int = 0  # batches per train epoch, frames drawn with replacement; 0 = one pass
    dataset_length_val: int = 0  # val batches over evenly spaced frames, in order; 0 = every frame
    dataset_length_test: int = 0  # test batches (one frame each) over evenly spaced frames; 0 = every frame

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"SimpleDataLoaderMapProvider.batch_size must be >= 1, got {self.batch_size}")

    def get_data_loader_map(self, datasets: DatasetMap) -> DataLoaderMap:
        from recon_trainer.data.data_source import DataLoaderMap  # imported here: data_source imports this module

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
            num_workers=self.num_workers,
            collate_fn=collate,
        )
