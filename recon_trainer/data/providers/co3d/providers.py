"""CO3D v1 and v2 dataset map providers: train / val / test JsonIndexDatasets of a category folder.

v1 (`JsonIndexDatasetMapProvider`), files in `<dataset_root>/<category>/`: frame_annotations.jgz,
sequence_annotations.jgz, set_lists.json, eval_batches_<task_str>.json. Set lists by task:
- singlesequence: train = test_known; val = test = test_known + test_unseen, all restricted to the
  test_restrict_sequence_id-th distinct sequence among the eval batches' targets;
- multisequence: train = train_known; val = test = test_* + train_* (known and unseen);
- test_on_train: val = test = train (no eval batches).
The test dataset's eval_batches come from the eval-batches file (target first).

v2 (`JsonIndexDatasetMapProviderV2`), per category: frame_annotations.jgz, sequence_annotations.jgz,
set_lists/set_lists_<subset_name>.json ({"train", "val", "test"}) and
eval_batches/eval_batches_<subset_name>.json. Frames get their annotation's meta["frame_type"]
if it has one, else train_known (train) or test_unseen (val, test). With n_known_frames_for_test,
each eval batch gains that many random train frames of its sequence (seeded), added to the test set.

In mixing expressions (data/mixing/): `Co3d` reads the frames of a v1 or v2 layout as ViewRecords
(JsonIndexDataset.read_record), `Co3dSequences` samples SequenceRecords of N views per sequence
(data/sampling/sequences.py), e.g. `Co3dSequences(root='co3d', category='teddybear', num_views=4)`.
"""
from __future__ import annotations

import os
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from omegaconf import DictConfig

from recon_trainer.config import ConfigError, plain, registry, remove_keys, run_auto_creation
from recon_trainer.config.choices import check_choices, choice_field
from recon_trainer.data.dataset_map_provider import DatasetMapProviderBase
from recon_trainer.data.file_check import DataFile
from recon_trainer.data.mixing.base import ListedDataset, MixableDataset
from recon_trainer.data.providers.co3d.annotations import (
    V1_SET_NAMES,
    V2_SET_NAMES,
    Co3dFormatError,
    FrameRef,
    load_eval_batches,
    load_set_lists,
)
from recon_trainer.data.providers.co3d.dataset import JsonIndexDataset
from recon_trainer.data.records import ViewRecord
from recon_trainer.data.sampling.sequences import SequenceDataset, SequenceEntry
from recon_trainer.data.splits import DatasetMap

# The 51 object categories of CO3D.
CO3D_CATEGORIES: Tuple[str, ...] = (
    "apple", "backpack", "ball", "banana", "baseballbat", "baseballglove", "bench", "bicycle", "book",
    "bottle", "bowl", "broccoli", "cake", "car", "carrot", "cellphone", "chair", "couch", "cup", "donut",
    "frisbee", "hairdryer", "handbag", "hotdog", "hydrant", "keyboard", "kite", "laptop", "microwave",
    "motorcycle", "mouse", "orange", "parkingmeter", "pizza", "plant", "remote", "sandwich", "skateboard",
    "stopsign", "suitcase", "teddybear", "toaster", "toilet", "toybus", "toyplane", "toytrain", "toytruck",
    "tv", "umbrella", "vase", "wineglass",
)
TASKS = ("singlesequence", "multisequence")

# JsonIndexDataset fields the providers set themselves (hidden from dataset_<type>_args).
_V1_CONTROLLED = (
    "dataset_root", "eval_batches", "eval_batch_index", "n_frames_per_sequence", "pick_sequence", "subsets",
    "frame_annotations_file", "sequence_annotations_file", "subset_lists_file",
)
_V2_CONTROLLED = (
    "dataset_root", "eval_batches", "eval_batch_index", "subsets",
    "frame_annotations_file", "sequence_annotations_file", "subset_lists_file",
)


class _JsonIndexProviderBase(DatasetMapProviderBase):
    """The shared part: dataset_root, building datasets of the chosen class, lazy loading."""

    PATH_FIELD = "dataset_root"

    def __post_init__(self) -> None:
        run_auto_creation(self)
        check_choices(self)
        if self.only_test_set and self.test_on_train:
            raise ConfigError(f"{type(self).__name__}: only_test_set and test_on_train cannot both be set")
        self._dataset_map: Optional[DatasetMap] = None

    def create_dataset(self) -> None:
        """The datasets are built by get_dataset_map, one per split."""

    def data_path(self) -> Optional[str]:
        return self.dataset_root or None

    def file_map(self) -> DatasetMap:
        """The datasets themselves: they read their files only when indexed."""
        return self.get_dataset_map()

    def get_dataset_map(self) -> DatasetMap:
        if self._dataset_map is None:
            if not self.dataset_root:
                raise ValueError(f"{type(self).__name__}.dataset_root is empty: set it to the CO3D folder")
            if not self.category:
                raise ValueError(f"{type(self).__name__}.category is empty: set it to a category, e.g. 'teddybear'")
            self._dataset_map = self._load()
        return self._dataset_map

    def _new_dataset(self, **controlled: Any) -> JsonIndexDataset:
        dataset_type = registry.get(JsonIndexDataset, self.dataset_class_type)
        args = dict(plain(getattr(self, f"dataset_{self.dataset_class_type}_args")))
        return dataset_type(**args, dataset_root=self.dataset_root, **controlled)

    def _category_file(self, category: str, *names: str) -> str:
        return os.path.join(self.dataset_root, category, *names)


@registry.register
class JsonIndexDatasetMapProvider(_JsonIndexProviderBase):
    """CO3D v1: one category, single- or multi-sequence task (module doc)."""

    category: str = ""  # CO3D category folder, e.g. "teddybear" (required with dataset_root)
    task_str: str = choice_field("singlesequence", TASKS)  # singlesequence or multisequence
    dataset_root: str = ""  # folder holding the category folders; "" = train on the built-in scene
    n_frames_per_sequence: int = -1  # random train frames kept per sequence (-1 = all)
    test_on_train: bool = False  # val and test are the train dataset
    restrict_sequence_name: Tuple[str, ...] = ()  # multisequence: only these sequences (empty = all)
    test_restrict_sequence_id: int = -1  # singlesequence: which eval sequence (index among the eval batches')
    assert_single_seq: bool = False  # fail unless all datasets hold one sequence
    only_test_set: bool = False  # build only the test dataset (train and val None)
    dataset: JsonIndexDataset
    dataset_class_type: str = "JsonIndexDataset"  # the dataset class (JsonIndexDataset or a registered subclass)

    @classmethod
    def dataset_tweak_args(cls, member_type: type, args: DictConfig) -> None:
        remove_keys(args, _V1_CONTROLLED)

    def _load(self) -> DatasetMap:

        batches_path = self._category_file(self.category, f"eval_batches_{self.task_str}.json")
        eval_batches = load_eval_batches(batches_path)
        restrict = list(self.restrict_sequence_name)
        if self.task_str == "singlesequence":
            if self.test_restrict_sequence_id < 0 or restrict:
                raise ConfigError(
                    "JsonIndexDatasetMapProvider: the singlesequence task needs test_restrict_sequence_id >= 0 "
                    f"(got {self.test_restrict_sequence_id}) and an empty restrict_sequence_name (got {restrict})"
                )
            names = list(dict.fromkeys(batch[0][0] for batch in eval_batches))
            if self.test_restrict_sequence_id >= len(names):
                raise ConfigError(
                    f"JsonIndexDatasetMapProvider.test_restrict_sequence_id={self.test_restrict_sequence_id}: "
                    f"{batches_path} has only {len(names)} evaluation sequences"
                )
            restrict = [names[self.test_restrict_sequence_id]]
        if restrict:
            eval_batches = [batch for batch in eval_batches if batch[0][0] in restrict]
        sets = _v1_set_names(self.task_str)
        common = {
            "frame_annotations_file": self._category_file(self.category, "frame_annotations.jgz"),
            "sequence_annotations_file": self._category_file(self.category, "sequence_annotations.jgz"),
            "subset_lists_file": self._category_file(self.category, "set_lists.json"),
            "pick_sequence": tuple(restrict),
        }
        load_set_lists(common["subset_lists_file"], V1_SET_NAMES)  # fails early, naming a missing set list
        train = None
        if not self.only_test_set:
            train = self._new_dataset(subsets=sets["train"], n_frames_per_sequence=self.n_frames_per_sequence, **common)
        if self.test_on_train:
            val = test = train
        else:
            val = self._new_dataset(subsets=sets["test"], n_frames_per_sequence=-1, **common)
            test = self._new_dataset(
                subsets=sets["test"], n_frames_per_sequence=-1, eval_batch_index=eval_batches, **common
            )
        datasets = DatasetMap(train=train, val=val, test=test)
        if self.assert_single_seq:
            names = {n for d in (train, val, test) if d is not None for n in d.sequence_names()}
            if len(names) > 1:
                raise ValueError(f"JsonIndexDatasetMapProvider.assert_single_seq: {len(names)} sequences loaded")
        return datasets


def _v1_set_names(task_str: str) -> Dict[str, List[str]]:
    """The v1 set lists of train and of val / test for a task."""
    if task_str == "singlesequence":
        return {"train": ["test_known"], "test": ["test_known", "test_unseen"]}
    return {"train": ["train_known"], "test": ["test_known", "test_unseen", "train_known", "train_unseen"]}


@registry.register
class JsonIndexDatasetMapProviderV2(_JsonIndexProviderBase):
    """CO3D v2: one or more categories, a named subset such as manyview_dev_0 or fewview_test (module doc)."""

    category: str = ""  # category folder(s), comma-separated, e.g. "teddybear" or "apple,car"
    subset_name: str = ""  # e.g. "manyview_dev_0", "fewview_test": set_lists/set_lists_<subset_name>.json
    dataset_root: str = ""  # folder holding the category folders; "" = train on the built-in scene
    test_on_train: bool = False  # val and test are the train dataset
    only_test_set: bool = False  # build only the test dataset (train and val None)
    load_eval_batches: bool = True  # read eval_batches/eval_batches_<subset_name>.json into the test dataset
    n_known_frames_for_test: int = 0  # random train frames of the target's sequence added to each eval batch
    dataset: JsonIndexDataset
    dataset_class_type: str = "JsonIndexDataset"  # the dataset class (JsonIndexDataset or a registered subclass)

    @classmethod
    def dataset_tweak_args(cls, member_type: type, args: DictConfig) -> None:
        remove_keys(args, _V2_CONTROLLED)

    def _load(self) -> DatasetMap:

        maps = [self._load_category(c.strip()) for c in self.category.split(",") if c.strip()]
        if len(maps) == 1:
            return maps[0]
        joined = {}
        for split in ("train", "val", "test"):
            parts = [getattr(m, split) for m in maps]
            joined[split] = None if parts[0] is None else parts[0].join(parts[1:])
        if self.test_on_train:
            joined["val"] = joined["test"] = joined["train"]
        return DatasetMap(**joined)

    def available_subset_names(self, category: str) -> List[str]:
        """The subset names that `<category>/set_lists/` has files for."""
        folder = self._category_file(category, "set_lists")
        if not os.path.isdir(folder):
            raise Co3dFormatError(f"CO3D v2: {folder} not found; is dataset_root the folder of the category folders?")
        names = [f[len("set_lists_"):-len(".json")] for f in os.listdir(folder)
                 if f.startswith("set_lists_") and f.endswith(".json")]
        return sorted(names)

    def _load_category(self, category: str) -> DatasetMap:

        available = self.available_subset_names(category)
        if self.subset_name not in available:
            raise ConfigError(
                f"JsonIndexDatasetMapProviderV2.subset_name={self.subset_name!r} has no set list in "
                f"{self._category_file(category, 'set_lists')}; available: {available}"
            )
        sets = load_set_lists(self._category_file(category, "set_lists", f"set_lists_{self.subset_name}.json"),
                              V2_SET_NAMES)
        batches_path = self._category_file(category, "eval_batches", f"eval_batches_{self.subset_name}.json")
        eval_batches = load_eval_batches(batches_path) if self.load_eval_batches else None
        everything = self._new_dataset(
            frame_annotations_file=self._category_file(category, "frame_annotations.jgz"),
            sequence_annotations_file=self._category_file(category, "sequence_annotations.jgz"),
            subset_lists_file="",
            subsets=None,
        )
        train = None if self.only_test_set else everything.subset_from_frame_index(sets["train"], "train_known")
        if self.test_on_train:
            return DatasetMap(train=train, val=train, test=train)
        val = everything.subset_from_frame_index(sets["val"], "test_unseen")
        test_refs, test_types = list(sets["test"]), ["test_unseen"] * len(sets["test"])
        if eval_batches is not None and self.n_known_frames_for_test > 0:
            eval_batches, known = _add_known_views(eval_batches, sets["train"], self.n_known_frames_for_test)
            seen = {(r[0], r[1]) for r in test_refs}
            for ref in known:
                if (ref[0], ref[1]) not in seen:
                    seen.add((ref[0], ref[1]))
                    test_refs.append(ref)
                    test_types.append("train_known")
        test = everything.subset_from_frame_index(test_refs, test_types)
        if eval_batches is not None:
            test.eval_batches = test.frame_refs_to_indices(eval_batches, remove_missing=True)
            n_wanted, n_found = sum(len(b) for b in eval_batches), sum(len(b) for b in test.eval_batches)
            if n_found < n_wanted:
                warnings.warn(f"{batches_path}: {n_wanted - n_found} eval batch frames are not in the test dataset "
                              "(filtered out or missing) and were dropped; results are not comparable to the benchmark")
        return DatasetMap(train=train, val=val, test=test)


def _add_known_views(
    eval_batches: List[List[FrameRef]], train_refs: List[FrameRef], n_known: int
) -> Tuple[List[List[FrameRef]], List[FrameRef]]:
    """Each batch extended by n_known random train frames of its target's sequence (rng seed 0)."""
    by_sequence: Dict[str, List[FrameRef]] = {}
    for ref in train_refs:
        by_sequence.setdefault(ref[0], []).append(ref)
    rng = np.random.default_rng(0)
    extended, added = [], []
    for batch in eval_batches:
        candidates = by_sequence.get(batch[0][0], [])
        picks = [candidates[i] for i in rng.permutation(len(candidates))[:n_known]]
        extended.append(list(batch) + picks)
        added += picks
    return extended, added


# Reading in mixing expressions: frames (Co3d) or sequences of N views (Co3dSequences).

# Frame type of the frames of each v2 set list (as JsonIndexDatasetMapProviderV2 gives them).
V2_FRAME_TYPES = {"train": "train_known", "val": "test_unseen", "test": "test_unseen"}


class Co3dSource(MixableDataset):
    """The fields and frame index shared by Co3d and Co3dSequences (not registered itself)."""

    PATH_FIELDS = ("root",)

    root: str = ""  # folder holding the category folders (CO3D's dataset_root)
    category: str = ""  # category folder(s), comma-separated, e.g. "teddybear" or "apple,car"
    subset_name: str = ""  # v2: set_lists/set_lists_<subset_name>.json; "": v1's set_lists.json
    subsets: Tuple[str, ...] = ()  # frames of these set lists (v1: train_known, ...; v2: train, val, test); (): all
    image_height: Optional[int] = 800  # output height in pixels; null (with image_width) = no resizing
    image_width: Optional[int] = 800  # output width in pixels; the aspect ratio is kept, the rest is padding
    box_crop: bool = True  # crop around the foreground mask's bounding box before resizing
    box_crop_context: float = 0.3  # the crop box grows by this fraction of the bounding box size
    load_depths: bool = True  # read the depth maps (records' depth)
    load_masks: bool = True  # read the foreground masks (records' mask_fg)

    def frame_index(self) -> JsonIndexDataset:
        """The frames of every category (annotation files read, no image), joined in category order."""
        name = type(self).__name__
        categories = [c.strip() for c in self.category.split(",") if c.strip()]
        if not self.root or not categories:
            raise ConfigError(f"{name}: set root (the folder of the category folders) and category, got "
                              f"root={self.root!r}, category={self.category!r}")
        allowed = V1_SET_NAMES if not self.subset_name else V2_SET_NAMES
        unknown = [s for s in self.subsets if s not in allowed]
        if unknown:
            raise ConfigError(f"{name}.subsets: {unknown} are not set lists of CO3D "
                              f"{'v2' if self.subset_name else 'v1'}; expected some of {list(allowed)}")
        datasets = [self._category_frames(category) for category in categories]
        index = datasets[0].join(datasets[1:])
        if len(index) == 0:
            raise ConfigError(f"{name}: no frames in {self.root!r} for category={self.category!r}, "
                              f"subset_name={self.subset_name!r}, subsets={list(self.subsets)}")
        return index

    def _category_frames(self, category: str) -> JsonIndexDataset:
        folder = os.path.join(self.root, category)
        settings = dict(
            dataset_root=self.root,
            frame_annotations_file=os.path.join(folder, "frame_annotations.jgz"),
            sequence_annotations_file=os.path.join(folder, "sequence_annotations.jgz"),
            image_height=self.image_height, image_width=self.image_width, box_crop=self.box_crop,
            box_crop_context=self.box_crop_context, load_depths=self.load_depths, load_masks=self.load_masks,
        )
        if not self.subset_name:
            set_lists = os.path.join(folder, "set_lists.json")
            if self.subsets or os.path.isfile(set_lists):
                settings.update(subset_lists_file=set_lists, subsets=list(self.subsets) or None)
            return JsonIndexDataset(**settings)
        everything = JsonIndexDataset(**settings)
        sets = load_set_lists(os.path.join(folder, "set_lists", f"set_lists_{self.subset_name}.json"), V2_SET_NAMES)
        chosen: Dict[Tuple[str, int], Tuple[FrameRef, str]] = {}  # a frame in several set lists (val = test) once
        for set_name in self.subsets or V2_SET_NAMES:
            for ref in sets[set_name]:
                chosen.setdefault((ref[0], ref[1]), (ref, V2_FRAME_TYPES[set_name]))
        refs, types = zip(*chosen.values()) if chosen else ((), ())
        return everything.subset_from_frame_index(list(refs), list(types))

    def read_frame(self, frames: JsonIndexDataset, index: int) -> ViewRecord:
        """Frame `index` of `frames` (frame_index()) as a ViewRecord labelled with this dataset."""
        view = frames.read_record(index)
        view.dataset = self.label()
        return view


@registry.register
class Co3dFrames(ListedDataset, Co3dSource):
    """CO3D-layout frames (v1 or v2 files, one or more categories) as ViewRecords, cropped and
    resized as JsonIndexDataset does it, e.g.
    `Co3dFrames(root='co3d', category='teddybear', subsets=('train_known',))`."""

    def list_items(self) -> JsonIndexDataset:
        return self.frame_index()

    def read_item(self, index: int) -> ViewRecord:
        return self.read_frame(self._listing, index)


@registry.register
class Co3dSequences(SequenceDataset, Co3dSource):
    """CO3D sequences whose items are SequenceRecords of num_views views sampled with the frame-gap
    curriculum (data/sampling/sequences.py); a sequence's frames are its annotated frames of the
    chosen set lists, in frame_number order (CO3D frames are video frames)."""

    def list_sequences(self) -> List[SequenceEntry]:
        self._index = self.frame_index()
        by_sequence: Dict[str, List[int]] = {}
        for index in range(len(self._index)):
            by_sequence.setdefault(self._index.frame_annotation(index).sequence_name, []).append(index)
        return [SequenceEntry(name, tuple(sorted(indices, key=lambda i: self._index.frame_annotation(i).frame_number)))
                for name, indices in sorted(by_sequence.items())]

    def load_frame(self, sequence: SequenceEntry, frame: int) -> ViewRecord:
        return self.read_frame(self._index, frame)

    def frame_files(self, sequence: SequenceEntry, frame: int) -> Sequence[DataFile]:
        return self._index.item_files(frame)
