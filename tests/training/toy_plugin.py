"""A tiny plugin for the trainer's tests: a linear per-pixel model on random FrameData frames.

Registers ToyDataSource, ToyModel and ToyEvaluator. Import it before any container using
their namespaces (Experiment, ReconModelFactory, ReconTrainingLoop) is expanded.
"""
import time
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F

from recon_trainer.config import get_default_args, registry
from recon_trainer.data.data_source import DataLoaderMap, DatasetMap, DataSourceBase
from recon_trainer.data.frame_data import FrameData, collate
from recon_trainer.evaluation.evaluator import EvaluatorBase, Evaluation
from recon_trainer.models.base import EvaluationMode, ModelBase, require_finite

EPOCH_HOOK_CALLS: List[Tuple[int, int]] = []  # (epoch, max_epochs) of each on_epoch_start of an epoch-aware train set


class EpochAwareFrames(list):
    """A list of frames whose on_epoch_start calls are recorded in EPOCH_HOOK_CALLS."""

    def on_epoch_start(self, epoch: int, max_epochs: int) -> None:
        EPOCH_HOOK_CALLS.append((epoch, max_epochs))


@registry.register
class ToyDataSource(DataSourceBase):
    """Frames of 2x2 random RGB pixels whose depth is a fixed linear function of the colour."""

    n_train: int = 24
    n_val: int = 8
    n_test: int = 8
    batch_size: int = 4
    shuffle: bool = True  # shuffle the train split (with torch's global generator)
    data_seed: int = 0
    num_workers: int = 0  # DataLoader worker processes
    epoch_aware: bool = False  # the train set records its on_epoch_start calls in EPOCH_HOOK_CALLS
    n_test_sets: int = 0  # > 0: the test split is also given as this many named parts, test_sets["part<i>"]

    def _frames(self, n: int, offset: int, split: str, generator: torch.Generator):
        weights = torch.tensor([0.5, -1.0, 2.0])
        frames = []
        for i in range(n):
            rgb = torch.rand(3, 2, 2, generator=generator)
            depth = (rgb * weights[:, None, None]).sum(0, keepdim=True) + 0.3
            frames.append(
                FrameData(image_rgb=rgb, depth_map=depth, sequence_name=f"toy_{split}", frame_number=offset + i,
                          frame_type="train_known" if split == "train" else "test_unseen")
            )
        return frames

    def get_datasets_and_dataloaders(self) -> Tuple[DatasetMap, DataLoaderMap]:
        generator = torch.Generator().manual_seed(self.data_seed)
        train = self._frames(self.n_train, 0, "train", generator)
        datasets = DatasetMap(
            train=EpochAwareFrames(train) if self.epoch_aware else train,
            val=self._frames(self.n_val, 1000, "val", generator) if self.n_val else None,
            test=self._frames(self.n_test, 2000, "test", generator) if self.n_test else None,
        )

        def loader(dataset, shuffle=False):
            if dataset is None:
                return None
            return torch.utils.data.DataLoader(
                dataset, batch_size=self.batch_size, shuffle=shuffle, collate_fn=collate, num_workers=self.num_workers
            )

        parts = [datasets.test[i :: self.n_test_sets] for i in range(self.n_test_sets)] if datasets.test else []
        return datasets, DataLoaderMap(
            train=loader(datasets.train, self.shuffle), val=loader(datasets.val), test=loader(datasets.test),
            test_sets={f"part{i}": loader(part) for i, part in enumerate(parts)},
        )


@registry.register
class ToyModel(ModelBase):
    """depth = head(relu(hidden(rgb + noise))) per pixel; the noise draws from torch's generator."""

    n_hidden: int = 8
    input_noise_std: float = 0.01  # makes the result depend on the random state (resume tests)
    nan_at_forward: int = -1  # training forward number (0-based, this process) whose objective is NaN
    sleep_per_batch_s: float = 0.0  # slows training down for the kill-and-resume test
    mask_bce_weight: float = 0.0  # > 0: also a binary cross-entropy of sigmoid(depth) (fails on NaN input)
    frozen_norm: bool = False  # a BatchNorm with frozen parameters after the hidden layer
    record_hooks: bool = False  # record on_train_step_start calls and the weights they see in `hook_calls`

    def __post_init__(self) -> None:
        generator = torch.Generator().manual_seed(1)  # the same initial weights in every process
        self.hidden = torch.nn.Linear(3, self.n_hidden)
        self.head = torch.nn.Linear(self.n_hidden, 1)
        with torch.no_grad():
            for param in self.parameters():
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
        if self.frozen_norm:
            self.norm = torch.nn.BatchNorm1d(self.n_hidden)
            self.norm.requires_grad_(False)
        self._n_forwards = 0
        self.autocast_dtype: Optional[torch.dtype] = None  # in the last training forward; None: no autocast
        self.hook_calls: List[Tuple[int, int, Dict[str, torch.Tensor]]] = []  # (global_step, epoch, weights)
        self.visualize_calls: List[Tuple[bool, bool]] = []  # (training mode, grad enabled) of each visualize()

    def on_train_step_start(self, global_step: int, epoch: int) -> None:
        if self.record_hooks:
            weights = {name: param.detach().clone() for name, param in self.named_parameters()}
            self.hook_calls.append((global_step, epoch, weights))

    def visualize(self, batch: FrameData) -> Dict[str, torch.Tensor]:
        self.visualize_calls.append((self.training, torch.is_grad_enabled()))
        depth = self(batch, evaluation_mode=EvaluationMode.EVALUATION)["depth"][:4, 0].reshape(2, 2)
        return {"rgb": batch.image_rgb[0], "depth/pred": (depth - depth.min()) / (depth.max() - depth.min() + 1e-8)}

    @property
    def log_vars(self) -> Tuple[str, ...]:
        return ("objective", "loss_mse", "loss_l1")

    def forward(self, batch: FrameData, evaluation_mode: EvaluationMode = EvaluationMode.EVALUATION) -> Dict[str, Any]:
        rgb = batch.image_rgb.permute(0, 2, 3, 1).reshape(-1, 3)
        if evaluation_mode == EvaluationMode.TRAINING:
            cpu_autocast = torch.is_autocast_enabled("cpu")
            self.autocast_dtype = torch.get_autocast_dtype("cpu") if cpu_autocast else None
            rgb = rgb + self.input_noise_std * torch.randn_like(rgb)
            if self.sleep_per_batch_s:
                time.sleep(self.sleep_per_batch_s)
        hidden = self.hidden(rgb)
        if self.frozen_norm:
            hidden = self.norm(hidden)
        depth = self.head(torch.relu(hidden))
        target = batch.depth_map.permute(0, 2, 3, 1).reshape(-1, 1)
        mse = ((depth - target) ** 2).mean()
        preds = {"depth": depth, "loss_mse": mse, "loss_l1": (depth - target).abs().mean(), "objective": mse}
        if self.mask_bce_weight > 0:
            mask = torch.sigmoid(depth)
            require_finite("the toy mask", mask)
            preds["objective"] = mse + self.mask_bce_weight * F.binary_cross_entropy(mask, (target > 0.5).float())
        if evaluation_mode == EvaluationMode.TRAINING:
            if self._n_forwards == self.nan_at_forward:
                preds["objective"] = mse * float("nan")
            self._n_forwards += 1
        return preds


@registry.register
class ToyEvaluator(EvaluatorBase):
    """The mean squared depth error over the loader; results_test.json when asked."""

    def reset(self, device: torch.device) -> None:
        self._total, self._count = 0.0, 0

    def process(self, model: torch.nn.Module, batch: FrameData) -> None:
        preds = model(batch, evaluation_mode=EvaluationMode.EVALUATION)
        self._total += float(preds["loss_mse"]) * len(batch)
        self._count += len(batch)

    def compute(self, epoch: Optional[int] = None) -> Evaluation:
        metrics = {"mse": self._total / self._count}
        results = [{"subset": "test", "subsubset": "diff=all", "metrics": metrics, "eval_epoch": epoch}]
        return Evaluation(metrics=metrics, results=results, summary=f"toy evaluation: mse {metrics['mse']:.6f}")


def toy_config(exp_dir: str, logging: Optional[Dict[str, Any]] = None, **loop_args: Any):
    """The default Experiment config with the toy plugin in every slot and quiet output;
    `loop_args` set the training loop's fields, `logging` those of its logging_args."""
    from recon_trainer.experiment import Experiment

    cfg = get_default_args(Experiment)
    cfg.exp_dir = str(exp_dir)
    cfg.seed = 3
    cfg.data_source_class_type = "ToyDataSource"
    cfg.model_factory_ReconModelFactory_args.model_class_type = "ToyModel"
    optimizer = cfg.optimizer_factory_ReconOptimizerFactory_args
    optimizer.lr = 0.01
    loop = cfg.training_loop_ReconTrainingLoop_args
    loop.evaluator_class_type = "ToyEvaluator"
    loop.max_epochs = 3
    loop.metric_print_interval = 0
    loop.progress_bar = False
    for key, value in loop_args.items():
        loop[key] = value
    for key, value in (logging or {}).items():
        loop.logging_args[key] = value
    return cfg
