"""Sequences of N views with a frame-gap curriculum: sample_frames, Spann3R's ratio schedule, the
SequenceDataset base (per-epoch hook, seeds from the mixing sampler, DataLoader workers)."""
import collections
import random

import pytest
import torch

from recon_trainer.config import ConfigError, registry
from recon_trainer.data.epoch_hooks import start_epoch
from recon_trainer.data.mixing import build_mixture
from recon_trainer.data.mixing.data_source import MixtureDataSource
from recon_trainer.data.records import ViewRecord
from recon_trainer.data.sampling.sequences import (
    SequenceDataset,
    SequenceEntry,
    frame_gap,
    item_generator,
    sample_frames,
)


@registry.register
class ToyFrames(SequenceDataset):
    """`count` sequences of `length` frames; frame k of sequence s is a 2x2 image of value k / 1000."""

    count: int = 3  # sequences
    length: int = 40  # frames per sequence

    def list_sequences(self):
        return [SequenceEntry(f"seq{s}", tuple(range(self.length + s))) for s in range(self.count)]

    def load_frame(self, sequence, frame):
        return ViewRecord(torch.full((3, 2, 2), frame / 1000), sequence=sequence.name, frame=frame)


def _gaps(frames):
    return [abs(b - a) for a, b in zip(frames, frames[1:])]


def test_frame_gap_and_the_spann3r_schedule():
    assert frame_gap(0.0, 10, 100) == 10 and frame_gap(1.0, 10, 100) == 100 and frame_gap(0.55, 5, 20) == 13
    assert frame_gap(0.0, 0, 5) == 1  # at least one frame apart
    toy = ToyFrames()
    ratios = {}
    for epoch in (0, 20, 37, 50, 74, 75, 80, 90, 99):
        toy.on_epoch_start(epoch, 100)
        ratios[epoch] = toy.ratio
    spann3r = {e: min(1, e / 100 * 2.0) if e / 100 < 0.75 else max(0.5, 1 - (e / 100 - 0.75) / 0.25) for e in ratios}
    assert ratios == pytest.approx(spann3r)
    assert ratios[0] == 0 and ratios[50] == 1 and ratios[90] == 0.5


@pytest.mark.parametrize("length, views, gap", [(5, 5, 1), (10, 3, 1), (40, 5, 3), (40, 5, 100), (100, 4, 7), (6, 1, 2)])
def test_sample_frames_respects_the_gap_and_the_range(length, views, gap):
    orders = collections.Counter()
    starts = set()
    for seed in range(300):
        frames = sample_frames(length, views, gap, torch.Generator().manual_seed(seed))
        increasing = frames == sorted(frames)
        orders[increasing] += 1
        ordered = sorted(frames)
        assert len(set(frames)) == views and 0 <= ordered[0] and ordered[-1] < length
        assert all(1 <= g <= gap for g in _gaps(ordered))
        starts.add(ordered[0])
    if views > 1:
        assert 100 < orders[True] < 200  # reversed with probability 1/2
    # the first pick ranges over Spann3R's range max(length // views, length - gap * (views - 1))
    allowed = set(range(min(max(length // views, length - gap * (views - 1)), length - views + 1)))
    assert starts <= allowed and len(starts) >= 0.9 * len(allowed)


def test_sample_frames_options_and_errors():
    generator = torch.Generator().manual_seed(0)
    assert all(f == sorted(f) for f in (sample_frames(30, 4, 5, generator, reverse_prob=0.0) for _ in range(50)))
    torch.manual_seed(3)
    first = sample_frames(30, 4, 5)  # the global RNG when no generator is given
    torch.manual_seed(3)
    assert sample_frames(30, 4, 5) == first
    with pytest.raises(ValueError, match="fewer than num_views=5"):
        sample_frames(4, 5, 3)
    with pytest.raises(ValueError, match="must be >= 1"):
        sample_frames(4, 2, 0)


def test_items_are_sequences_drawn_from_the_seed_and_the_draw():
    toy = ToyFrames(num_views=4, min_thresh=2, max_thresh=6)
    assert len(toy) == 3 and ToyFrames(items_per_sequence=4).__len__() == 12
    item = toy[(1, 7, 11)]
    assert len(item) == 4 and item.sequence == "seq1" and item.dataset == "ToyFrames"
    assert item.extras == {"max_gap": 6, "ratio": 1.0}  # initial_ratio 1 before any epoch hook
    frames = [view.frame for view in item.views]
    assert all(g <= 6 for g in _gaps(sorted(frames)))
    assert [v.frame for v in toy[(1, 7, 11)].views] == frames  # the same seed and draw: the same frames
    assert {tuple(v.frame for v in toy[(1, 7, d)].views) for d in range(20)} != {tuple(frames)}  # other draws differ
    assert [v.frame for v in toy[1].views] == [v.frame for v in toy[(1, 0, 1)].views]  # an int: seed 0, draw = index
    stacked = item.views[0]
    assert float(stacked.image[0, 0, 0]) == pytest.approx(frames[0] / 1000)
    with pytest.raises(IndexError, match=r"ToyFrames: index 3 out of range \[0, 3\)"):
        toy[3]


def test_repeated_draws_of_one_sequence_differ():
    """`N @ ds` with N > len(ds) draws a sequence many times per epoch: each draw samples anew
    (DUSt3R and Spann3R advance one RNG per worker; here the draw index keys the generator)."""
    mixture = build_mixture("50 @ ToyFrames(count=1, length=60, num_views=3, min_thresh=5, max_thresh=5)")
    draws = [tuple(v.frame for v in mixture[(i, 9)].views) for i in range(50)]
    assert len(set(draws)) > 25
    assert draws == [tuple(v.frame for v in mixture[(i, 9)].views) for i in range(50)]


def test_full_video_and_transform():
    toy = ToyFrames(full_video=True, kf_every=10, length=35, count=1)
    assert [v.frame for v in toy[0].views] == [0, 10, 20, 30]
    jittered = ToyFrames(transform="ColorJitter", count=1, num_views=2)
    a, b = jittered[(0, 1, 0)], jittered[(0, 1, 0)]
    assert torch.equal(a.views[0].image, b.views[0].image)
    assert not torch.allclose(a.views[0].image, torch.full((3, 2, 2), a.views[0].frame / 1000))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_views": 0}, r"ToyFrames.num_views must be >= 1, got 0"),
        ({"min_thresh": 20, "max_thresh": 10}, r"max_thresh=10 is below min_thresh=20"),
        ({"ratio_schedule": "min(1, epoch / max_epoch)"}, r"ToyFrames.ratio_schedule .*unknown name 'max_epoch'; "
                                                           r"did you mean 'max_epochs'\?"),
        ({"ratio_schedule": "__import__('os')"}, r"unknown function '__import__'"),
        ({"transform": "Jitter"}, r"ToyFrames.transform='Jitter' is not a registered transform"),
        ({"num_views": 50, "length": 10}, r"ToyFrames: no sequence with at least num_views=50 frames"),
        ({"initial_ratio": 2.0}, r"initial_ratio must be in \[0, 1\]"),
    ],
)
def test_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        ToyFrames(**kwargs)


def _max_gaps_of_epoch(loader, epoch, max_epochs):
    """{dataset label: the largest gap between consecutive sampled frames} over one epoch, and
    the max_gap the items report."""
    start_epoch(loader, epoch, max_epochs)
    torch.manual_seed(epoch)
    gaps, reported = collections.defaultdict(int), set()
    for batch in loader:
        for frames, labels in zip(batch.frame.tolist(), batch.dataset):
            gaps[labels[0]] = max(gaps[labels[0]], *_gaps(sorted(frames)))
        reported |= {int(g) for g in batch.extras["sequence"]["max_gap"]}
    return dict(gaps), reported


def test_the_curriculum_reaches_workers_under_every_combinator():
    train = ("2 * (3 @ ToyFrames(count=2, length=90, num_views=4, min_thresh=1, max_thresh=30, name='curriculum')) + "
             "ToyFrames(count=1, num_views=4, name='other')")
    source = MixtureDataSource(train=train, batch_size=4, batches_per_epoch=12, num_workers=2,
                               batch_builder_class_type="RecordBatch")
    datasets, loaders = source.get_datasets_and_dataloaders()
    early, early_reported = _max_gaps_of_epoch(loaders.train, 0, 10)  # ratio 0: gaps of at most min_thresh
    late, late_reported = _max_gaps_of_epoch(loaders.train, 5, 10)  # ratio 1: up to max_thresh
    assert early["curriculum"] == 1 and early_reported == {1, 10}  # ToyFrames' default min_thresh: 10
    assert late["curriculum"] > 10 and late_reported == {30, 100}
    assert early["other"] <= 10
    inner = datasets.train.children[0].dataset.dataset
    assert inner.ratio == 1.0  # the main process's copy; the workers got theirs at each epoch's start


def test_workers_give_the_same_batches_as_the_main_process():
    train = "7 @ ToyFrames(count=2, length=50, num_views=3, transform='ColorJitter') + 2 * ToyFrames(count=1, num_views=2)"
    epochs = []
    for workers in (0, 2):
        source = MixtureDataSource(train=train, batch_size=3, batches_per_epoch=4, num_workers=workers, mixing="equal")
        loader = source.get_datasets_and_dataloaders()[1].train
        start_epoch(loader, 2, 8)
        torch.manual_seed(11)
        epochs.append([(batch.frame_number.tolist(), batch.sequence_name, batch.image_rgb) for batch in loader])
    assert [e[:2] for e in epochs[0]] == [e[:2] for e in epochs[1]]
    assert all(torch.equal(a[2], b[2]) for a, b in zip(*epochs))


def test_item_generator_is_a_pure_function_of_seed_and_draw():
    a = torch.rand(3, generator=item_generator(5, 7))
    assert torch.equal(a, torch.rand(3, generator=item_generator(5, 7)))
    assert not torch.equal(a, torch.rand(3, generator=item_generator(5, 8)))
    assert not torch.equal(a, torch.rand(3, generator=item_generator(6, 7)))
    random.seed(0)
    item_generator(2**62 + random.randint(0, 2**40), 10**12)  # large seeds and draws are fine
