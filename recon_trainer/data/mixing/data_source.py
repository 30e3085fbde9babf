"""MixtureDataSource: datasets from mixing expressions, train batches mixed in fixed shares."""
from __future__ import annotations

import collections
from typing import Any, Dict, Iterable, List, Optional, Tuple

from torch.utils.data import DataLoader

from recon_trainer.config import ConfigError, registry, run_auto_creation
from recon_trainer.config.choices import check_choices, choice_field
from recon_trainer.data.batching import BatchBuilderBase, BatchCollate
from recon_trainer.data.builtin_data import BuiltinDataBase
from recon_trainer.data.data_loader_map_provider import dataloader_workers
from recon_trainer.data.data_source import SPLITS, DataLoaderMap, DatasetMap, DataSourceBase
from recon_trainer.data.file_check import check_split_files
from recon_trainer.data.mixing.combinators import ConcatDataset
from recon_trainer.data.mixing.expression import (
    MAX_ITEMS,
    MAX_ITEMS_TEXT,
    assemble_mixture,
    build_leaves,
    top_level_terms,
    unique_names,
    validate_mixture,
)
from recon_trainer.data.mixing.sampler import MixingBatchSampler

MIXING_MODES = ("concat", "equal", "weighted")


@registry.register
class MixtureDataSource(DataSourceBase):
    """Each split is a mixing expression such as
    `"10000 @ ReDWeb(root='ReDWeb_V1', training_crop=384) + 2 * TUM(root='tum')"`
    (see recon_trainer/data/mixing/expression.py); its top-level '+' terms are the components.

    Train batches (MixingBatchSampler) hold the components in fixed shares: `concat` in proportion
    to their lengths (uniform over the concatenation), `equal` the same number from each (MiDaS's
    naive mixing), `weighted` in proportion to `weights`. Val and test go through in order.

    Construction checks the expressions (syntax, dataset names, keywords, sizes); building the
    datasets first checks the files of every split's datasets (data/file_check.py), before the
    combinators and loaders are made.

    With an empty data_root and a `builtin_data` generator (a method's configs name theirs), the
    expressions read the generator's synthetic data, written once into the cache
    (data/builtin_data.py).

    Batches: `batch_builder` turns the datasets' items into the method's batch (data/batching.py);
    the default FrameDataBatch collates FrameData items as frame_data.collate always did and
    converts records to FrameData. The loaders' `test` covers the whole test expression and
    `test_sets` has one loader per top-level term, named by its dataset (repeats: #2, #3, ...).
    """

    data_root: str = ""  # relative dataset paths in the expressions are joined to it; "": as written
    train: str = ""  # mixing expression of the train split; "": no train split
    val: str = ""  # mixing expression of the val split; "": no val split
    test: str = ""  # mixing expression of the test split; "": no test split
    mixing: str = choice_field("concat", MIXING_MODES)  # train shares: concat (by length), equal or weighted (weights)
    weights: Tuple[float, ...] = ()  # mixing=weighted: one positive weight per top-level term of `train`
    batch_size: int = 8  # train items per batch
    batches_per_epoch: int = 0  # train batches per epoch; 0: len(train) // batch_size (at least 1)
    num_workers: int = 0  # DataLoader worker processes (0: the main process); capped at the CPU cores available
    eval_batch_size: int = 1  # val and test items per batch (items of different sizes need 1)
    skip_unreadable: bool = False  # skip (and count) items whose files fail the check instead of stopping
    check_files: bool = True  # check every split's files (headers) before training
    batch_builder: BatchBuilderBase
    batch_builder_class_type: str = "FrameDataBatch"  # items to batches: FrameDataBatch, RecordBatch or a method's
    builtin_data: Optional[BuiltinDataBase]
    builtin_data_class_type: Optional[str] = None  # with data_root "": the method's built-in data generator

    def __post_init__(self) -> None:
        name = type(self).__name__
        run_auto_creation(self)
        check_choices(self)
        for key in ("batch_size", "eval_batch_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{name}.{key} must be >= 1, got {getattr(self, key)}")
        for key in ("batches_per_epoch", "num_workers"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{name}.{key} must be >= 0, got {getattr(self, key)}")
        if self.batches_per_epoch > MAX_ITEMS:
            raise ConfigError(f"{name}.batches_per_epoch={self.batches_per_epoch}: above the maximum {MAX_ITEMS_TEXT}")
        terms = {split: self._terms(split) for split in SPLITS}  # syntax, names and keywords: errors now
        weights = [float(w) for w in self.weights]
        if self.mixing != "weighted":
            if weights:
                raise ConfigError(f"{name}.weights={weights} is only used with mixing='weighted' "
                                  f"(mixing={self.mixing!r})")
        elif len(weights) != len(terms["train"]) or any(not w > 0 for w in weights):
            raise ConfigError(
                f"{name}.weights={weights}: mixing='weighted' needs one positive weight per top-level term of "
                f"train, which has {len(terms['train'])}: {[t.text for t in terms['train']]}"
            )

    def _terms(self, split: str) -> Tuple:
        text = getattr(self, split)
        return top_level_terms(validate_mixture(text)) if text.strip() else ()

    def get_datasets_and_dataloaders(self) -> Tuple[DatasetMap, DataLoaderMap]:
        data_root = self.data_root
        if not data_root and self.builtin_data is not None:
            data_root = self.builtin_data.ensure_written()
            print(f"recon_trainer: no data_root given ({type(self).__name__}.data_root); training on the built-in "
                  f"data: {self.builtin_data.describe()}, cached in {data_root}", flush=True)
        texts = {split: getattr(self, split) for split in SPLITS if getattr(self, split).strip()}
        leaves = {split: build_leaves(text, data_root) for split, text in texts.items()}
        if self.check_files:
            check_split_files(leaves, self.skip_unreadable, f"data_source_{type(self).__name__}_args")
        datasets = DatasetMap(**{split: assemble_mixture(text, leaves[split]) for split, text in texts.items()})
        loaders = DataLoaderMap(
            train=self._train_loader(datasets.train),
            val=self._eval_loader(datasets.val),
            test=self._eval_loader(datasets.test),
            test_sets=self.test_sets(datasets.test),
        )
        return datasets, loaders

    def test_sets(self, dataset: Optional[ConcatDataset]) -> Dict[str, DataLoader]:
        """One eval loader per top-level term of the test split, named by the term's label."""
        if dataset is None:
            return {}
        return dict(zip(unique_names(dataset.labels()), (self._eval_loader(term) for term in dataset.children)))

    def train_shares(self, dataset: ConcatDataset) -> List[float]:
        """Each component's share of a train batch (not normalised)."""
        if self.mixing == "equal":
            return [1.0] * len(dataset.children)
        if self.mixing == "weighted":
            return [float(w) for w in self.weights]
        return list(dataset.component_sizes)

    def _train_loader(self, dataset: Optional[ConcatDataset]) -> Optional[DataLoader]:
        if dataset is None:
            return None
        n_batches = self.batches_per_epoch or max(1, len(dataset) // self.batch_size)
        sampler = MixingBatchSampler(dataset.component_sizes, self.batch_size, n_batches, self.train_shares(dataset))
        return DataLoader(dataset, batch_sampler=sampler, num_workers=self._workers(),
                          collate_fn=BatchCollate(self.batch_builder))

    def _eval_loader(self, dataset: Optional[Any]) -> Optional[DataLoader]:
        if dataset is None:
            return None
        return DataLoader(dataset, batch_size=self.eval_batch_size, shuffle=False, num_workers=self._workers(),
                          collate_fn=BatchCollate(self.batch_builder))

    def _workers(self) -> int:
        """num_workers, at most the CPU cores available (data_loader_map_provider.dataloader_workers)."""
        return dataloader_workers(self.num_workers, f"{type(self).__name__}.num_workers")


def count_labels(batches: Iterable, key: str = "dataset") -> Dict[str, int]:
    """How many items of the collated `batches` carry each label under meta["frames"][i][key]."""
    counts: Dict[str, int] = collections.Counter()
    for batch in batches:
        for frame in batch.meta.get("frames", ()):
            if key not in frame:
                raise ValueError(f"count_labels: a frame's meta has no {key!r} key (keys: {sorted(frame)})")
            counts[frame[key]] += 1
    return dict(counts)
