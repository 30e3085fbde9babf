"""Every dataset expression DUSt3R's README and Spann3R's training script ship, parsed by the safe
parser and built over stand-in datasets: the same lengths, multiplicities, fields and test sets.

The strings are verbatim from naver/dust3r README.md (demo and "Our Hyperparameters"; the 512 dpt
command repeats the 512 linear strings) and HengyiWang/spann3r spann3r/training.py (the defaults of
--train_dataset and --test_dataset). DUSt3R semantics (dust3r/datasets/base/easy_dataset.py):
`N @ ds` has N items, a permutation of ds tiled cyclically (each item N // len or N // len + 1
times); `k * ds` repeats each item k times in a row; `+` concatenates; `Habitat(n, ...)` has n
items (its first positional argument); the test string is split on '+', one loader per part,
named by the part before '('.
"""
import collections
from typing import Any, Optional

import pytest
import torch

from recon_trainer.config import ConfigError, registry
from recon_trainer.data.epoch_hooks import start_epoch
from recon_trainer.data.mixing import MixableDataset, build_mixture, named_terms
from recon_trainer.data.mixing.data_source import MixtureDataSource
from recon_trainer.data.records import ViewRecord

DUST3R_DEMO_224_TRAIN = (
    "1000 @ Co3d(split='train', ROOT='data/co3d_subset_processed', aug_crop=16, mask_bg='rand', "
    'resolution=224, transform=ColorJitter)'
)
DUST3R_DEMO_224_TEST = "100 @ Co3d(split='test', ROOT='data/co3d_subset_processed', resolution=224, seed=777)"
DUST3R_DEMO_512_TRAIN = (
    "1000 @ Co3d(split='train', ROOT='data/co3d_subset_processed', aug_crop=16, mask_bg='rand', "
    'resolution=[(512, 384), (512, 336), (512, 288), (512, 256), (512, 160)], transform=ColorJitter)'
)
DUST3R_DEMO_512_TEST = "100 @ Co3d(split='test', ROOT='data/co3d_subset_processed', resolution=(512,384), seed=777)"
DUST3R_224_TRAIN = (
    " + 100_000 @ Habitat(1_000_000, split='train', aug_crop=16, resolution=224, transform=ColorJitter) "
    "+ 100_000 @ BlendedMVS(split='train', aug_crop=16, resolution=224, transform=ColorJitter) + 100_000 "
    "@ MegaDepth(split='train', aug_crop=16, resolution=224, transform=ColorJitter) + 100_000 @ "
    "ARKitScenes(aug_crop=256, resolution=224, transform=ColorJitter) + 100_000 @ Co3d(split='train', "
    "aug_crop=16, mask_bg='rand', resolution=224, transform=ColorJitter) + 100_000 @ "
    "StaticThings3D(aug_crop=256, mask_bg='rand', resolution=224, transform=ColorJitter) + 100_000 @ "
    "ScanNetpp(split='train', aug_crop=256, resolution=224, transform=ColorJitter) + 100_000 @ "
    'InternalUnreleasedDataset(aug_crop=128, resolution=224, transform=ColorJitter) '
)
DUST3R_224_TEST = (
    " Habitat(1_000, split='val', resolution=224, seed=777) + 1_000 @ BlendedMVS(split='val', "
    "resolution=224, seed=777) + 1_000 @ MegaDepth(split='val', resolution=224, seed=777) + 1_000 @ "
    "Co3d(split='test', mask_bg='rand', resolution=224, seed=777) "
)
DUST3R_512_TRAIN = (
    " + 10_000 @ Habitat(1_000_000, split='train', aug_crop=16, resolution=[(512, 384), (512, 336), "
    "(512, 288), (512, 256), (512, 160)], transform=ColorJitter) + 10_000 @ BlendedMVS(split='train', "
    'aug_crop=16, resolution=[(512, 384), (512, 336), (512, 288), (512, 256), (512, 160)], '
    "transform=ColorJitter) + 10_000 @ MegaDepth(split='train', aug_crop=16, resolution=[(512, 384), "
    '(512, 336), (512, 288), (512, 256), (512, 160)], transform=ColorJitter) + 10_000 @ '
    'ARKitScenes(aug_crop=256, resolution=[(512, 384), (512, 336), (512, 288), (512, 256), (512, 160)], '
    "transform=ColorJitter) + 10_000 @ Co3d(split='train', aug_crop=16, mask_bg='rand', "
    'resolution=[(512, 384), (512, 336), (512, 288), (512, 256), (512, 160)], transform=ColorJitter) + '
    "10_000 @ StaticThings3D(aug_crop=256, mask_bg='rand', resolution=[(512, 384), (512, 336), (512, "
    "288), (512, 256), (512, 160)], transform=ColorJitter) + 10_000 @ ScanNetpp(split='train', "
    'aug_crop=256, resolution=[(512, 384), (512, 336), (512, 288), (512, 256), (512, 160)], '
    'transform=ColorJitter) + 10_000 @ InternalUnreleasedDataset(aug_crop=128, resolution=[(512, 384), '
    '(512, 336), (512, 288), (512, 256), (512, 160)], transform=ColorJitter) '
)
DUST3R_512_TEST = (
    " Habitat(1_000, split='val', resolution=(512,384), seed=777) + 1_000 @ BlendedMVS(split='val', "
    "resolution=(512,384), seed=777) + 1_000 @ MegaDepth(split='val', resolution=(512,336), seed=777) + "
    "1_000 @ Co3d(split='test', resolution=(512,384), seed=777) "
)
SPANN3R_TRAIN = (
    "10000 @ Co3d(split='train', ROOT='./data/co3d_preprocessed_50', resolution=224, num_frames=5, "
    "mask_bg='rand', transform=ColorJitter) + 10000 @ Co3d(split='train', "
    "ROOT='./data/co3d_preprocessed_50', resolution=224, num_frames=5, mask_bg='rand', "
    "transform=ColorJitter, use_comb=False) + 10000 @ BlendMVS(split='train', ROOT='./data/blendmvg', "
    "resolution=224) + 10000 @ Scannetpp(split='train', ROOT='./data/scannetpp', resolution=224, "
    "transform=ColorJitter) + 10000 @ habitat(split='train', ROOT='./data/habitat_5frame', "
    "resolution=224, transform=ColorJitter) + 10000 @ Scannet(split='train', ROOT='./data/scannet', "
    "resolution=224, transform=ColorJitter, max_thresh=50) + 10000 @ ArkitScene(split='train', "
    "ROOT='./data/arkit_lowres', resolution=224, transform=ColorJitter, max_thresh=100)"
)
SPANN3R_TEST = (
    "Scannetpp(split='val', ROOT='./data/scannetpp', resolution=224, num_seq=1, kf_every=10, seed=777, "
    "full_video=True) + 1000 @ Co3d(split='test', ROOT='./data/co3d_preprocessed_50', resolution=224, "
    'num_frames=5, mask_bg=False, seed=777)'
)

STAND_IN_SIZE = 60  # items of a stand-in dataset (Habitat: its positional size)
RESOLUTIONS_512 = [[512, 384], [512, 336], [512, 288], [512, 256], [512, 160]]


class StandIn(MixableDataset):
    """A stand-in for a DUSt3R / Spann3R dataset: the fields their expressions set; item i is a
    2x2 ViewRecord with frame=i and dataset=label; counts the per-epoch hook calls."""

    PATH_FIELDS = ("ROOT",)

    ROOT: str = ""  # dataset folder
    split: Optional[str] = None  # train, val or test
    resolution: Any = None  # 224, (512, 384) or a list of (width, height)
    transform: str = "ImgNorm"  # a named transform
    aug_crop: int = 0  # random crop margin in pixels
    mask_bg: Any = False  # True, False or 'rand'
    seed: Optional[int] = None  # fixed per-item seed (test sets)
    size: int = STAND_IN_SIZE  # number of items
    num_frames: int = 5  # Spann3R: views per item
    num_seq: int = 100  # Spann3R: items per sequence
    kf_every: int = 1  # Spann3R: full_video frame step
    full_video: bool = False  # Spann3R: every kf_every-th frame
    min_thresh: int = 10  # Spann3R: smallest largest frame gap
    max_thresh: int = 100  # Spann3R: largest frame gap
    use_comb: bool = True  # Spann3R Co3d: combination sampling

    def __post_init__(self) -> None:
        self.epochs_seen = []

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> ViewRecord:
        return ViewRecord(torch.zeros(3, 2, 2), frame=index, dataset=self.label())

    def on_epoch_start(self, epoch: int, max_epochs: int) -> None:
        self.epochs_seen.append((epoch, max_epochs))


DUST3R_NAMES = ("Co3d", "BlendedMVS", "MegaDepth", "ARKitScenes", "StaticThings3D", "ScanNetpp", "Waymo", "WildRGBD",
                "InternalUnreleasedDataset")
SPANN3R_NAMES = ("BlendMVS", "Scannetpp", "Scannet", "ArkitScene", "habitat")


@pytest.fixture(autouse=True)
def stand_ins(monkeypatch):
    """The stand-ins registered under the original dataset names for this test only."""
    implementations = registry._implementations.setdefault(MixableDataset, {})
    classes = {name: type(name, (StandIn,), {"__module__": __name__}) for name in DUST3R_NAMES + SPANN3R_NAMES}
    classes["Habitat"] = type("Habitat", (StandIn,), {"__module__": __name__, "POSITIONAL_FIELDS": ("size",)})
    for name, cls in classes.items():
        monkeypatch.setitem(implementations, name, cls)
    return classes


def _leaf(term):
    while hasattr(term, "dataset"):
        term = term.dataset
    return term


def _check_resized(term, n, leaf_size):
    """`n @ leaf` as DUSt3R's ResizedDataset: n items, a permutation of the leaf tiled cyclically
    and truncated (so each item n // len or n // len + 1 times), for epoch seed 3."""
    assert len(term) == n
    first = [term[(i, 3)].frame for i in range(min(n, leaf_size, 2000))]
    assert len(set(first)) == len(first)  # no repeat within a pass
    if n > leaf_size:
        assert sorted(first) == list(range(leaf_size))
        for i in [*range(leaf_size, min(n, 2 * leaf_size)), n // 2, n - 1]:
            assert term[(i, 3)].frame == first[i % leaf_size]
    if n <= 1000:
        counts = collections.Counter(term[(i, 3)].frame for i in range(n))
        low, extra = divmod(n, leaf_size)
        expected = {low + 1: extra, low: leaf_size - extra} if low else {1: n}
        assert collections.Counter(counts.values()) == {k: v for k, v in expected.items() if v}


def _dust3r_test_names(text):
    """DUSt3R's and Spann3R's test-loader keys: `dataset.split('(')[0]` of each '+' part."""
    return [part.split("(")[0] for part in text.split("+")]


@pytest.mark.parametrize("text", [DUST3R_DEMO_224_TRAIN, DUST3R_DEMO_512_TRAIN])
def test_dust3r_demo_train(text):
    mixture = build_mixture(text)
    assert mixture.component_sizes == [1000] and mixture.labels() == ["Co3d"]
    term = mixture.children[0]
    _check_resized(term, 1000, STAND_IN_SIZE)
    leaf = _leaf(term)
    assert (leaf.split, leaf.ROOT, leaf.aug_crop, leaf.mask_bg, leaf.transform) == (
        "train", "data/co3d_subset_processed", 16, "rand", "ColorJitter")
    assert leaf.resolution == (224 if text == DUST3R_DEMO_224_TRAIN else RESOLUTIONS_512)


@pytest.mark.parametrize("text, resolution", [(DUST3R_DEMO_224_TEST, 224), (DUST3R_DEMO_512_TEST, [512, 384])])
def test_dust3r_demo_test(text, resolution):
    mixture = build_mixture(text)
    assert mixture.component_sizes == [100]
    _check_resized(mixture.children[0], 100, STAND_IN_SIZE)
    leaf = _leaf(mixture.children[0])
    assert (leaf.split, leaf.seed, leaf.resolution, leaf.transform) == ("test", 777, resolution, "ImgNorm")
    assert [name for name, _ in named_terms(text)] == ["Co3d"]


@pytest.mark.parametrize("text, n, resolution", [(DUST3R_224_TRAIN, 100_000, 224),
                                                 (DUST3R_512_TRAIN, 10_000, RESOLUTIONS_512)])
def test_dust3r_paper_train(text, n, resolution):
    mixture = build_mixture(text)  # the leading ' + ' is a unary plus on the first count, as in Python
    assert mixture.labels() == ["Habitat", "BlendedMVS", "MegaDepth", "ARKitScenes", "Co3d", "StaticThings3D",
                                "ScanNetpp", "InternalUnreleasedDataset"]
    assert mixture.component_sizes == [n] * 8 and len(mixture) == 8 * n
    habitat = mixture.children[0]
    assert len(_leaf(habitat)) == 1_000_000  # Habitat(1_000_000, ...): its size, positionally
    _check_resized(habitat, n, 1_000_000)
    _check_resized(mixture.children[1], n, STAND_IN_SIZE)
    leaves = [_leaf(term) for term in mixture.children]
    assert all(leaf.transform == "ColorJitter" and leaf.resolution == resolution for leaf in leaves)
    assert [leaf.aug_crop for leaf in leaves] == [16, 16, 16, 256, 16, 256, 256, 128]
    assert [leaf.mask_bg for leaf in leaves] == [False, False, False, False, "rand", "rand", False, False]
    assert [leaf.split for leaf in leaves] == ["train"] * 3 + [None, "train", None, "train", None]


@pytest.mark.parametrize("text, resolutions", [(DUST3R_224_TEST, [224] * 4),
                                               (DUST3R_512_TEST, [[512, 384], [512, 384], [512, 336], [512, 384]])])
def test_dust3r_paper_test_sets(text, resolutions):
    mixture = build_mixture(text)
    assert mixture.component_sizes == [1000] * 4
    habitat = mixture.children[0]
    assert type(habitat).__name__ == "Habitat" and [habitat[i].frame for i in range(1000)] == list(range(1000))
    for term in mixture.children[1:]:
        _check_resized(term, 1000, STAND_IN_SIZE)
    leaves = [_leaf(term) for term in mixture.children]
    assert [leaf.resolution for leaf in leaves] == resolutions and {leaf.seed for leaf in leaves} == {777}
    names = [name for name, _ in named_terms(text)]
    assert names == ["Habitat", "BlendedMVS", "MegaDepth", "Co3d"]
    assert names == [key.split("@")[-1].strip() for key in _dust3r_test_names(text)]


def test_spann3r_train():
    mixture = build_mixture(SPANN3R_TRAIN)
    assert mixture.labels() == ["Co3d", "Co3d", "BlendMVS", "Scannetpp", "habitat", "Scannet", "ArkitScene"]
    assert mixture.component_sizes == [10_000] * 7  # 70k sequences per epoch
    for term in mixture.children:
        _check_resized(term, 10_000, STAND_IN_SIZE)
    leaves = [_leaf(term) for term in mixture.children]
    assert [leaf.use_comb for leaf in leaves[:2]] == [True, False]
    assert [leaf.max_thresh for leaf in leaves] == [100] * 5 + [50, 100]
    assert [leaf.transform for leaf in leaves] == ["ColorJitter"] * 2 + ["ImgNorm"] + ["ColorJitter"] * 4
    assert {leaf.resolution for leaf in leaves} == {224} and {leaf.split for leaf in leaves} == {"train"}
    assert [leaf.ROOT for leaf in leaves] == ["./data/co3d_preprocessed_50"] * 2 + [
        "./data/blendmvg", "./data/scannetpp", "./data/habitat_5frame", "./data/scannet", "./data/arkit_lowres"]


def test_spann3r_test_sets_through_the_data_source():
    source = MixtureDataSource(test=SPANN3R_TEST, eval_batch_size=4)
    datasets, loaders = source.get_datasets_and_dataloaders()
    assert datasets.test.component_sizes == [STAND_IN_SIZE, 1000]
    scannetpp = datasets.test.children[0]
    assert (scannetpp.full_video, scannetpp.kf_every, scannetpp.num_seq, scannetpp.seed) == (True, 10, 1, 777)
    co3d = _leaf(datasets.test.children[1])
    assert (co3d.num_frames, co3d.mask_bg, co3d.seed) == (5, False, 777)
    names = [key.strip() for key in _dust3r_test_names(SPANN3R_TEST)]
    assert names == ["Scannetpp", "1000 @ Co3d"]  # Spann3R's keys; ours name the dataset
    assert list(loaders.test_sets) == ["Scannetpp", "Co3d"]
    assert [len(loader.dataset) for loader in loaders.test_sets.values()] == [STAND_IN_SIZE, 1000]
    first = next(iter(loaders.test_sets["Co3d"]))
    assert first.image_rgb.shape == (4, 3, 2, 2) and [f["dataset"] for f in first.meta["frames"]] == ["Co3d"] * 4
    assert len(loaders.test.dataset) == STAND_IN_SIZE + 1000  # `test` is still the whole expression


def test_repeated_names_and_a_named_term():
    text = "Co3d(size=3) + 2 * Co3d(size=2) + 5 @ Co3d(name='co3d_small', size=4)"
    assert named_terms(text) == [("Co3d", "Co3d(size=3)"), ("Co3d#2", "2 * Co3d(size=2)"),
                                 ("co3d_small", "5 @ Co3d(name='co3d_small', size=4)")]
    _, loaders = MixtureDataSource(test=text).get_datasets_and_dataloaders()
    assert list(loaders.test_sets) == ["Co3d", "Co3d#2", "co3d_small"]
    assert [len(loader) for loader in loaders.test_sets.values()] == [3, 4, 5]


def test_repeat_means_the_same_as_mul_dataset():
    mixture = build_mixture("3 * Co3d(size=4)")
    assert len(mixture) == 12 and [mixture[i].frame for i in range(12)] == [i // 3 for i in range(12)]


@pytest.mark.parametrize(
    "text, message",
    [
        ("Habitat(1, 2, split='val')", r"Habitat takes at most 1 positional argument \(size\), got 2: 1, 2$"),
        ("Habitat(5, size=3)", r"Habitat got two values for 'size': 5 \(positional\) and 3$"),
        ("Habitat('many')", r"Habitat.size='many'"),
        ("Co3d(7)", r"Co3d: positional arguments are not supported; write key=value \(got 7\)$"),
        ("Co3d(transform=ColourJitter)", r"did you mean 'ColorJitter'\?"),
        ("Co3d(mask_bg=rand)", r"quote it: 'rand'"),
    ],
)
def test_positional_and_name_errors(text, message):
    with pytest.raises(ConfigError, match=message):
        build_mixture(text)


def test_every_combinator_passes_the_epoch_hook_on(stand_ins):
    """DUSt3R's MulDataset forwarded neither set_epoch nor set_ratio; here `k *`, `N @` and `+` all do."""
    source = MixtureDataSource(train="2 * Co3d(size=4) + 3 @ (2 * BlendedMVS(size=2)) + Habitat(5)", batch_size=2)
    datasets, loaders = source.get_datasets_and_dataloaders()
    start_epoch(loaders.train, 3, 10)
    start_epoch(loaders.train, 4, 10)
    leaves = [_leaf(term) for term in datasets.train.children]
    assert [leaf.epochs_seen for leaf in leaves] == [[(3, 10), (4, 10)]] * 3  # each once per epoch
