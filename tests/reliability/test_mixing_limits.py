"""Mixing expressions at absurd sizes: memory independent of N (lazy permutations), sizes above the
documented maximum refused with a ConfigError, unknown names found when the data source is made."""
import collections
import itertools
import json
import subprocess
import sys

import pytest
import torch

from recon_trainer.config import ConfigError, registry
from recon_trainer.data.mixing import MixableDataset, MixingBatchSampler, ResizedDataset
from recon_trainer.data.mixing.data_source import MixtureDataSource
from recon_trainer.data.mixing.permutation import LazyPermutation
from tests.reliability.helpers import REPO, environment


@registry.register
class LimitToyItems(MixableDataset):
    """`size` items; item i is i."""

    size: int = 4  # number of items

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> int:
        return index


# ---------------------------------------------------------------------------------------------
# LazyPermutation


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 8, 13, 16, 64, 97, 100, 1000, 1024, 4099])
def test_lazy_permutation_hits_every_index_once(n):
    for seed in (0, 1, 2**62 - 1):
        permutation = LazyPermutation(n, seed)
        values = [permutation[i] for i in range(n)]
        assert sorted(values) == list(range(n))
        assert values == [LazyPermutation(n, seed)[i] for i in range(n)]  # deterministic from the seed
    if n >= 8:
        assert len({tuple(LazyPermutation(n, seed)[i] for i in range(n)) for seed in range(4)}) == 4
    with pytest.raises(IndexError):
        LazyPermutation(n, 0)[n]


def test_lazy_permutation_is_uniform_over_seeds():
    orders = collections.Counter(tuple(LazyPermutation(3, seed)[i] for i in range(3)) for seed in range(6000))
    assert sorted(orders) == list(itertools.permutations(range(3)))
    assert all(850 < count < 1150 for count in orders.values()), orders  # 1000 +- 5 standard deviations
    firsts = collections.Counter(LazyPermutation(10, seed)[0] for seed in range(5000))
    assert sorted(firsts) == list(range(10)) and all(400 < count < 600 for count in firsts.values()), firsts


def test_lazy_permutation_of_a_huge_range():
    n = 10**12
    permutation = LazyPermutation(n, 7)
    values = [permutation[i] for i in range(2000)]
    assert len(set(values)) == 2000 and all(0 <= v < n for v in values)
    assert max(values) > n // 2  # spread over the range, not the first indices


def test_sampler_over_a_huge_component_keeps_its_shares():
    sizes = [10**12, 3]
    torch.manual_seed(0)
    batches = list(MixingBatchSampler(sizes, 8, 6, [1, 1]))
    small = [i - sizes[0] for batch in batches for i, _ in batch if i >= sizes[0]]
    assert [sum(i >= sizes[0] for i, _ in batch) for batch in batches] == [4] * 6
    assert collections.Counter(small) == {0: 8, 1: 8, 2: 8}  # 8 whole passes over the small component
    large = [i for batch in batches for i, _ in batch if i < sizes[0]]
    assert len(set(large)) == 24 and max(large) > 10**11


def test_resized_node_over_a_huge_resized_node():
    inner = ResizedDataset(10**12, LimitToyItems(size=5))
    outer = ResizedDataset(4, inner)
    assert [outer[(i, 3)] for i in range(4)] == [inner[(outer.permutation(3)[i], 3)] for i in range(4)]


# ---------------------------------------------------------------------------------------------
# Sizes refused


@pytest.mark.parametrize(
    "train, piece",
    [
        ("10000000000000 @ LimitToyItems(size=2)",
         r"the count before '@' is 10000000000000, above the maximum 10\*\*12 \(column 1: '10000000000000'\)"),
        ("LimitToyItems() + 1" + "0" * 40 + " * LimitToyItems()", r"the count before '\*' is 10{40}, above the "
                                                                   r"maximum 10\*\*12 \(column 19: '10{40}'\)"),
    ],
)
def test_counts_above_the_maximum_fail_when_the_source_is_made(train, piece):
    with pytest.raises(ConfigError, match=rf"^mixing expression '{train[:10]}.*: {piece}$"):
        MixtureDataSource(train=train)


@pytest.mark.parametrize(
    "train, piece, size",
    [
        ("1000000000000 * LimitToyItems(size=2)", "1000000000000 * LimitToyItems(size=2)", 2 * 10**12),
        ("1000000000000 @ LimitToyItems() + 5 @ LimitToyItems()", "1000000000000 @ LimitToyItems() + 5 @ "
                                                                   "LimitToyItems()", 10**12 + 5),
        ("3 * (1000000000000 @ LimitToyItems() + LimitToyItems())", "1000000000000 @ LimitToyItems() + "
                                                                     "LimitToyItems()", 10**12 + 4),
    ],
)
def test_lengths_above_the_maximum_fail_before_any_loader(train, piece, size):
    source = MixtureDataSource(train=train)
    message = f"mixing expression {train!r}: {piece!r} would have {size} items, above the maximum 10**12"
    with pytest.raises(ConfigError) as raised:
        source.get_datasets_and_dataloaders()
    assert str(raised.value) == message


def test_batches_per_epoch_above_the_maximum():
    with pytest.raises(ConfigError, match=r"MixtureDataSource\.batches_per_epoch=1000000000001: above the maximum "):
        MixtureDataSource(train="LimitToyItems()", batches_per_epoch=10**12 + 1)


def test_unknown_names_and_keywords_fail_when_the_source_is_made():
    with pytest.raises(ConfigError, match=r"dataset='LimitToyItem' is not registered for MixableDataset; did you mean "
                                          r"'LimitToyItems'\?.*choices: .*ReDWeb"):
        MixtureDataSource(train="LimitToyItems()", test="2 * LimitToyItem(size=2)")
    # A keyword error is found before the dataset would read its (missing) folder.
    with pytest.raises(ConfigError, match=r"ReDWeb has no field 'val_evry'; did you mean 'val_every'\? fields: "):
        MixtureDataSource(val="ReDWeb(root='/nonexistent', val_evry=3)")
    with pytest.raises(ConfigError, match=r"ReDWeb\.val_every='often'"):
        MixtureDataSource(val="ReDWeb(root='/nonexistent', val_every='often')")


# ---------------------------------------------------------------------------------------------
# Peak memory of a billion-item mixture (a fresh process, so that ru_maxrss is this build's)

MEASURE = """
import json, os, resource, sys
import numpy as np, torch
from PIL import Image
import recon_trainer.data.depth.redweb  # registers ReDWeb
from recon_trainer.data.mixing.data_source import MixtureDataSource

rng = np.random.default_rng(0)
for folder in ("Imgs", "RDs"):
    os.makedirs(os.path.join(sys.argv[1], "ReDWeb_V1", folder))
for i in range(6):  # a tiny ReDWeb_V1: 16x16 JPEGs and 8-bit relative depth PNGs
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(f"{sys.argv[1]}/ReDWeb_V1/Imgs/{i}.jpg")
    Image.fromarray(rng.integers(1, 256, (16, 16), dtype=np.uint8)).save(f"{sys.argv[1]}/ReDWeb_V1/RDs/{i}.png")
leaf = "ReDWeb(root='ReDWeb_V1', training_crop=8)"


def build_and_iterate(count):
    source = MixtureDataSource(data_root=sys.argv[1], train=f"{count} @ {leaf} + 8 @ ({count} @ {leaf})",
                               mixing="equal", batch_size=4)
    datasets, loaders = source.get_datasets_and_dataloaders()
    torch.manual_seed(0)
    shapes = [list(batch.image_rgb.shape) for _, batch in zip(range(3), loaders.train)]
    return {"items": len(datasets.train), "batches_per_epoch": len(loaders.train), "shapes": shapes}


def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


start = peak_mib()
build_and_iterate(6)  # the same mixture, small: the framework's one-time setup (plugin imports) happens here
before = peak_mib()
result = build_and_iterate(10**9)
result.update(setup_mib=before - start, growth_mib=peak_mib() - before)
print(json.dumps(result))
"""


def test_billion_item_mixture_builds_and_iterates_in_little_memory(tmp_path):
    result = subprocess.run([sys.executable, "-c", MEASURE, str(tmp_path)], cwd=REPO, env=environment(),
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    print(f"peak RSS growth building and iterating 3 batches of 1e9 @ ReDWeb: {measured['growth_mib']:.1f} MiB "
          f"(after the same with 6 @ ReDWeb, whose one-time setup took {measured['setup_mib']:.0f} MiB)")
    assert measured["items"] == 10**9 + 8 and measured["batches_per_epoch"] == (10**9 + 8) // 4
    assert measured["shapes"] == [[4, 3, 8, 8]] * 3
    assert measured["growth_mib"] < 1024
