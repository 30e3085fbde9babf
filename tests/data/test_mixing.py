"""Mixing expressions (safe parser, builder), the combinators and MixingBatchSampler."""
import collections
import os
import random
from typing import Tuple

import pytest
import torch

from recon_trainer.config import ConfigError, registry
from recon_trainer.data.mixing import (
    Concat,
    ConcatDataset,
    DatasetCall,
    MixableDataset,
    MixingBatchSampler,
    Repeated,
    RepeatedDataset,
    Resized,
    ResizedDataset,
    build_mixture,
    parse_mixture,
    quota_counts,
)


@registry.register
class MixToyItems(MixableDataset):
    """Items (label, index, root); `size` items."""

    PATH_FIELDS = ("root",)

    root: str = ""  # a path (joined to data_root)
    size: int = 4  # number of items
    scale: float = 1.0  # unused
    shape: Tuple[int, ...] = ()  # unused

    def __post_init__(self) -> None:
        if self.size < 0:
            raise ValueError(f"size must be >= 0, got {self.size}")

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int):
        assert isinstance(index, int), "leaves receive a plain int"
        return self.label(), index, self.root


@registry.register
class MixToyRooted(MixToyItems):
    """MixToyItems with a non-empty default root."""

    root: str = "rooted_default"  # a path (joined to data_root)


def _call(name, **kwargs):
    return DatasetCall(name, kwargs)


# ---------------------------------------------------------------- parser


def test_parses_the_dust3r_example():
    text = "10000 @ ReDWeb(root='ReDWeb_V1', training_crop=384) + 2 * TUM(root='tum', split='test')"
    tree = parse_mixture(text)
    assert tree == Concat((
        Resized(10000, _call("ReDWeb", root="ReDWeb_V1", training_crop=384)),
        Repeated(2, _call("TUM", root="tum", split="test")),
    ))
    assert [term.text for term in tree.children] == [
        "10000 @ ReDWeb(root='ReDWeb_V1', training_crop=384)", "2 * TUM(root='tum', split='test')"
    ]


def test_literal_values_and_multiline_text():
    text = """
        1_000 @ Co3d(split='train', resolution=(512, 384), mask_bg='rand', aug=True, crop=None,
                     offset=-2, scale=-0.5, sizes=[1, 2.5])
        + Blend
    """
    tree = parse_mixture(text)
    expected = _call("Co3d", split="train", resolution=(512, 384), mask_bg="rand", aug=True, crop=None,
                     offset=-2, scale=-0.5, sizes=[1, 2.5])
    assert tree == Concat((Resized(1000, expected), _call("Blend")))


@pytest.mark.parametrize(
    "text, expected",
    [
        ("10 @ A + 3 * B", Concat((Resized(10, _call("A")), Repeated(3, _call("B"))))),
        ("A + 3 * B @ C", None),  # (3 * B) @ C: a dataset as count
        ("2 * (A + B)", Repeated(2, Concat((_call("A"), _call("B"))))),
        ("2 * (10 @ A)", Repeated(2, Resized(10, _call("A")))),
        ("A + (B + C)", Concat((_call("A"), _call("B"), _call("C")))),
        ("(5 @ A)", Resized(5, _call("A"))),
        ("5 @ (A + 2 * B) + C", Concat((Resized(5, Concat((_call("A"), Repeated(2, _call("B"))))), _call("C")))),
    ],
)
def test_precedence(text, expected):
    if expected is None:
        with pytest.raises(ConfigError, match="must be a positive integer literal"):
            parse_mixture(text)
    else:
        assert parse_mixture(text) == expected


@pytest.mark.parametrize(
    "text, message",
    [
        ("A * 2", r"the count goes first: write '2 \* dataset'.*column 1: 'A \* 2'"),
        ("A @ 100", r"the count goes first: write '100 @ dataset'"),
        ("5 + A", r"5 is not a dataset.*'5 @ Dataset\(...\)'.*column 1: '5'"),
        ("0 @ A", r"count before '@' must be a positive integer, got 0"),
        ("-3 * A", r"count before '\*' must be a positive integer, got -3"),
        ("2.5 @ A", r"got 2.5"),
        ("True @ A", r"got True"),
        ("'7' @ A", r"got '7'"),
        ("A - B", r"operator '-' is not supported"),
        ("A / 2", r"operator '/' is not supported"),
        ("A(**cfg)", r"'\*\*' unpacking is not supported"),
        ("A(*sizes)", r"A: '\*' unpacking is not supported; write key=value \(column 3: '\*sizes'\)"),
        ("A(1 + 2, split='x')", r"A: positional argument 1 must be a literal .*\(column 3: '1 \+ 2'\)"),
        ("A(transform=ColorJiter)", r"value of 'transform' must be a literal .* or the name of a registered transform; "
                                    r"did you mean 'ColorJitter'\? transforms: ColorJitter, ImgNorm.*quote it: "
                                    r"'ColorJiter' \(column 13: 'ColorJiter'\)"),
        ("A(x=os)", r"value of 'x' must be a literal.*quote it: 'os'"),
        ("A(x=1 + 2)", r"value of 'x' must be a literal"),
        ("A(x={1: 2})", r"value of 'x' must be a literal"),
        ("A(x=b'raw')", r"value of 'x' must be a literal"),
        ("A(x=f'{y}')", r"value of 'x' must be a literal"),
        ("os.path", r"attribute access is not allowed.*column 1: 'os.path'"),
        ("10 @ os.system('ls')", r"only a registered dataset name can be called.*column 6: 'os.system'"),
        ("A()()", r"only a registered dataset name can be called"),
        ("A[0]", r"subscripting is not allowed"),
        ("(lambda: A)()", r"only a registered dataset name can be called"),
        ("lambda: A", r"a lambda is not allowed"),
        ("A if B else C", r"a conditional is not allowed"),
        ("A(", r"invalid syntax at column 2"),
        ("A; B", r"invalid syntax"),
        ("   ", r"mixing expression is empty"),
    ],
)
def test_rejects_invalid_and_unsafe_forms(text, message):
    with pytest.raises(ConfigError, match=message) as raised:
        parse_mixture(text)
    assert str(raised.value).startswith("mixing expression")


def test_positional_arguments_and_transform_names_parse():
    tree = parse_mixture("+ 100_000 @ Habitat(1_000_000, split='train', transform=ColorJitter) + B(3, (4, 5))")
    habitat, b = tree.children
    assert habitat == Resized(100_000, DatasetCall("Habitat", {"split": "train", "transform": "ColorJitter"},
                                                   args=(1_000_000,)))
    assert b == DatasetCall("B", {}, args=(3, (4, 5)))
    assert parse_mixture("A(transform=ImgNorm)") == parse_mixture("A(transform='ImgNorm')")  # the name, as a string


@pytest.mark.parametrize(
    "text, message",
    [
        ("MixToyItems(1000, scale=2.0)", r"^mixing expression 'MixToyItems\(1000, scale=2.0\)': MixToyItems: positional "
                                         r"arguments are not supported; write key=value \(got 1000\)$"),
        ("__import__('os')", r"dataset='__import__' is not registered for MixableDataset"),
    ],
)
def test_positional_arguments_need_positional_fields(text, message):
    with pytest.raises(ConfigError, match=message):
        build_mixture(text)


def test_nothing_is_executed(tmp_path):
    marker = tmp_path / "marker"
    attempts = [
        f"__import__('os').system('touch {marker}')",
        f"open(file='{marker}', mode='w')",  # parses (keyword call) but names no registered dataset
        f"A(x=__import__('os').system('touch {marker}'))",
        f"[open('{marker}', 'w') for _ in range(1)]",
    ]
    for text in attempts:
        with pytest.raises(ConfigError):
            build_mixture(text)
    assert not marker.exists()


# ---------------------------------------------------------------- builder


def test_build_mixture_components_and_items():
    mixture = build_mixture("2 * MixToyItems(size=3, name='a') + 5 @ MixToyItems(size=2)")
    assert mixture.component_sizes == [6, 5]
    assert mixture.labels() == ["a", "MixToyItems"]
    assert [mixture[i][:2] for i in range(6)] == [("a", 0), ("a", 0), ("a", 1), ("a", 1), ("a", 2), ("a", 2)]
    assert sorted({mixture[i][1] for i in range(6, 11)}) == [0, 1]


def test_unknown_dataset_and_field_name_the_closest():
    with pytest.raises(ConfigError, match=r"dataset='MixToyItem' is not registered for MixableDataset; "
                                          r"did you mean 'MixToyItems'\?.*choices: .*MixToyItems"):
        build_mixture("MixToyItem(size=2)")
    with pytest.raises(ConfigError, match=r"MixToyItems has no field 'sise'; did you mean 'size'\?"):
        build_mixture("3 @ MixToyItems(sise=2)")


def test_field_values_are_type_checked_and_converted():
    with pytest.raises(ConfigError, match=r"MixToyItems.size='many'"):
        build_mixture("MixToyItems(size='many')")
    dataset = build_mixture("MixToyItems(scale=2, shape=[4, 5])").children[0]
    assert dataset.scale == 2.0 and isinstance(dataset.scale, float)
    assert dataset.shape == (4, 5)


def test_constructor_errors_name_the_term():
    with pytest.raises(ValueError, match=r"^MixToyItems\(size=-1\): size must be >= 0, got -1"):
        build_mixture("MixToyItems(size=2) + 3 @ MixToyItems(size=-1)")


def test_data_root_joins_relative_paths(tmp_path):
    text = f"MixToyItems(root='rel/a') + MixToyItems(root='{tmp_path}') + MixToyItems() + MixToyRooted()"
    roots = [child.root for child in build_mixture(text, data_root=str(tmp_path / "data")).children]
    assert roots == [os.path.join(str(tmp_path / "data"), "rel/a"), str(tmp_path), "",
                     os.path.join(str(tmp_path / "data"), "rooted_default")]
    assert [child.root for child in build_mixture(text).children] == ["rel/a", str(tmp_path), "", "rooted_default"]


# ---------------------------------------------------------------- combinators


def _items(n, name="toy"):
    return MixToyItems(size=n, name=name)


def test_resized_subsamples_and_repeats_a_permutation_per_seed():
    base = _items(10)
    small = ResizedDataset(4, base)
    picked = [small[(i, 7)][1] for i in range(4)]
    assert len(set(picked)) == 4  # a subsample without repeats
    assert picked == [small.permutation(7)[i] for i in range(4)]
    assert [small[(i, 7)][1] for i in range(4)] == picked  # same seed, same items
    assert [small[i][1] for i in range(4)] == [small.permutation(0)[i] for i in range(4)]  # int index: seed 0
    epochs = {tuple(small[(i, seed)][1] for i in range(4)) for seed in range(6)}
    assert len(epochs) > 1  # another epoch seed draws other items

    big = ResizedDataset(25, base)
    picked = [big[(i, 3)][1] for i in range(25)]
    assert sorted(picked[:10]) == list(range(10))  # the first pass is a permutation
    assert picked[10:20] == picked[:10] and picked[20:] == picked[:5]  # tiled cyclically
    assert collections.Counter(collections.Counter(picked).values()) == {3: 5, 2: 5}
    with pytest.raises(IndexError):
        big[(25, 3)]


def test_seed_is_passed_down_through_combinators():
    inner = ResizedDataset(3, _items(6))
    outer = RepeatedDataset(2, inner)
    for seed in (1, 2):
        assert [outer[(i, seed)][1] for i in range(6)] == [inner[(i // 2, seed)][1] for i in range(6)]
        assert [inner[(i, seed)][1] for i in range(3)] == [inner.permutation(seed)[i] for i in range(3)]


def test_repeated_and_concat_match_brute_force():
    a, b, c = _items(3, "a"), _items(1, "b"), _items(4, "c")
    repeated = RepeatedDataset(3, a)
    assert len(repeated) == 9 and [repeated[i] for i in range(9)] == [a[i // 3] for i in range(9)]
    concat = ConcatDataset([a, RepeatedDataset(2, b), c])
    flat = [a[i] for i in range(3)] + [b[0], b[0]] + [c[i] for i in range(4)]
    assert len(concat) == 9 and [concat[i] for i in range(9)] == flat
    assert [concat.component_of(i) for i in range(9)] == [0, 0, 0, 1, 1, 2, 2, 2, 2]
    assert concat.component_sizes == [3, 2, 4] and concat.labels() == ["a", "b", "c"]
    assert ResizedDataset(5, concat).label() == "a+b+c"
    for bad in (-1, 9):
        with pytest.raises(IndexError):
            concat[bad]


# ---------------------------------------------------------------- sampler


def _per_batch_counts(sampler, sizes):
    ends = torch.tensor(sizes).cumsum(0)
    return [torch.bincount(torch.searchsorted(ends, torch.tensor([i for i, _ in batch]), right=True),
                           minlength=len(sizes)).tolist() for batch in sampler]


def test_sampler_equal_weighted_and_concat_shares():
    torch.manual_seed(0)
    assert _per_batch_counts(MixingBatchSampler([5, 30], 8, 6, [1, 1]), [5, 30]) == [[4, 4]] * 6
    assert _per_batch_counts(MixingBatchSampler([7, 9], 8, 5, [3.0, 1.0]), [7, 9]) == [[6, 2]] * 5
    sizes = [30, 10, 20]
    assert _per_batch_counts(MixingBatchSampler(sizes, 6, 4, sizes), sizes) == [[3, 1, 2]] * 4


def test_sampler_running_totals_stay_within_one_of_the_share():
    torch.manual_seed(0)
    counts = _per_batch_counts(MixingBatchSampler([3, 4, 5], 8, 9, [1, 1, 1]), [3, 4, 5])
    assert all(sum(c) == 8 for c in counts)
    totals = torch.tensor(counts).cumsum(0)
    targets = torch.arange(1, 10)[:, None] * 8 / 3
    assert (totals - targets).abs().max() < 1
    assert totals[-1].tolist() == [24, 24, 24]
    rng = random.Random(1)
    for _ in range(200):  # the quota property for random shares, at every batch boundary
        weights = [rng.choice([0, rng.randint(1, 40)]) for _ in range(rng.randint(1, 5))] + [1]
        batch, n = rng.randint(1, 9), rng.randint(1, 12)
        running = torch.zeros(len(weights))
        for b, row in enumerate(quota_counts(weights, batch, n)):
            assert sum(row) == batch and min(row) >= 0
            running += torch.tensor(row, dtype=torch.float)
            exact = (b + 1) * batch * torch.tensor(weights, dtype=torch.float64) / sum(weights)
            assert ((running - exact).abs() < 1 - 1e-9).all()


def test_sampler_cycles_components_and_reshuffles():
    torch.manual_seed(0)
    batches = list(MixingBatchSampler([3, 100], 4, 6, [1, 1]))
    small = [i for batch in batches for i, _ in batch if i < 3]
    assert len(small) == 12
    passes = [small[k:k + 3] for k in range(0, 12, 3)]
    assert all(sorted(p) == [0, 1, 2] for p in passes)  # every item once per pass
    assert len({tuple(p) for p in passes}) > 1  # reshuffled between passes
    large = [i for batch in batches for i, _ in batch if i >= 3]
    assert len(set(large)) == 12  # no repeats before a pass is over
    assert len({tuple(sorted(i < 3 for i, _ in batch)) for batch in batches}) == 1  # 2 + 2 in each batch
    assert any([i < 3 for i, _ in batch] != [True, True, False, False] for batch in batches)  # positions shuffled


def test_sampler_is_reproducible_from_the_global_seed():
    sampler = MixingBatchSampler([5, 7], 4, 5, [2, 1])
    torch.manual_seed(11)
    first = list(sampler)
    torch.manual_seed(11)
    assert list(sampler) == first
    seeds = {seed for batch in first for _, seed in batch}
    assert len(seeds) == 1  # one epoch seed for every item of the epoch
    torch.manual_seed(12)
    assert list(sampler) != first


def test_sampler_rejects_bad_arguments():
    with pytest.raises(ValueError, match="one share per component"):
        MixingBatchSampler([3, 4], 2, 1, [1])
    with pytest.raises(ValueError, match="component 1 is empty"):
        MixingBatchSampler([3, 0], 2, 1, [1, 1])
    with pytest.raises(ValueError, match="shares must be finite and >= 0"):
        MixingBatchSampler([3, 4], 2, 1, [1, -1])
    with pytest.raises(ValueError, match="all zero"):
        MixingBatchSampler([3, 4], 2, 1, [0, 0.0])
