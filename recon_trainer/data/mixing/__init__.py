"""Dataset mixing: mixing expressions ("N @ A(...) + k * B(...)"), their combinators and the
batch sampler that mixes components in fixed shares.

MixtureDataSource (the data source built on them) lives in recon_trainer.data.mixing.data_source;
it is not imported here, so that datasets can import `mixing.base` without the data-source stack.
"""
from recon_trainer.data.mixing.base import MixableDataset
from recon_trainer.data.mixing.combinators import (
    ConcatDataset,
    RepeatedDataset,
    ResizedDataset,
    label_of,
    split_draw,
    split_index,
    takes_epoch_seed,
)
from recon_trainer.data.mixing.expression import (
    Concat,
    DatasetCall,
    Repeated,
    Resized,
    build_mixture,
    make_dataset,
    named_terms,
    parse_mixture,
    top_level_terms,
    unique_names,
)
from recon_trainer.data.mixing.sampler import MixingBatchSampler, quota_counts

__all__ = [
    "Concat",
    "ConcatDataset",
    "DatasetCall",
    "MixableDataset",
    "MixingBatchSampler",
    "RepeatedDataset",
    "Repeated",
    "Resized",
    "ResizedDataset",
    "build_mixture",
    "label_of",
    "make_dataset",
    "named_terms",
    "parse_mixture",
    "quota_counts",
    "split_draw",
    "split_index",
    "takes_epoch_seed",
    "top_level_terms",
    "unique_names",
]
