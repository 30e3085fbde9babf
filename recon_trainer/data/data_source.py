"""The data_source slot of Experiment: what the data is and how it is batched."""
import abc
from typing import Tuple

from recon_trainer.config import ReplaceableBase, registry, run_auto_creation
from recon_trainer.data.data_loader_map_provider import DataLoaderMapProviderBase
from recon_trainer.data.dataset_map_provider import DatasetMapProviderBase
from recon_trainer.data.file_check import check_split_files
from recon_trainer.data.providers.builtin_scene import BuiltinScene
from recon_trainer.data.splits import SPLITS, DataLoaderMap, DatasetMap

__all__ = ["SPLITS", "DataLoaderMap", "DataSourceBase", "DatasetMap", "ReconDataSource"]


class DataSourceBase(ReplaceableBase):
    """Where the data comes from: builds the datasets of each split and their loaders."""

    @abc.abstractmethod
    def get_datasets_and_dataloaders(self) -> Tuple[DatasetMap, DataLoaderMap]:
        """The datasets and the loaders over them."""


@registry.register
class ReconDataSource(DataSourceBase):
    """Datasets from `dataset_map_provider`, batched by `data_loader_map_provider`.

    When the provider has no data path (e.g. BlenderDatasetMapProvider with an empty base_dir) it
    trains on `builtin_scene` instead and prints one line saying so and where the scene is cached.
    Before anything is loaded, the files of every split are checked (data/file_check.py).
    """

    dataset_map_provider: DatasetMapProviderBase
    dataset_map_provider_class_type: str = "BlenderDatasetMapProvider"
    data_loader_map_provider: DataLoaderMapProviderBase
    data_loader_map_provider_class_type: str = "SimpleDataLoaderMapProvider"
    builtin_scene: BuiltinScene
    skip_unreadable: bool = False  # skip (and count) items whose files fail the check instead of stopping
    check_files: bool = True  # check every split's files (headers) before training

    def __post_init__(self) -> None:
        run_auto_creation(self)

    def get_datasets_and_dataloaders(self) -> Tuple[DatasetMap, DataLoaderMap]:
        provider = self.dataset_map_provider
        if provider.data_path() is None:
            print(
                f"recon_trainer: no dataset path given ({type(provider).__name__}.{provider.PATH_FIELD}); "
                f"training on the built-in scene {self.builtin_scene.describe()} "
                f"cached in {self.builtin_scene.cache_folder()}",
                flush=True,
            )
            datasets = self.builtin_scene.get_dataset_map()
        else:
            files = provider.file_map() if self.check_files else None
            if files is not None:
                splits = {split: [getattr(files, split)] for split in SPLITS}
                check_split_files(splits, self.skip_unreadable, f"data_source_{type(self).__name__}_args")
            datasets = provider.get_dataset_map()
        return datasets, self.data_loader_map_provider.get_data_loader_map(datasets)
