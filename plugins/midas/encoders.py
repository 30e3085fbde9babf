"""The MiDaS encoder slot and its convolutional implementation (torchvision ResNet / ResNeXt).

Implementations: ResNetEncoder (here) and ViTEncoder (dpt_encoder.py, DPT / MiDaS v3).
"""
from __future__ import annotations

import abc
from typing import List, Optional, Tuple

import torch
import torchvision

from recon_trainer.config import ReplaceableBase, registry
from recon_trainer.config.choices import check_choices, choice_field
from recon_trainer.models.resnet_feature_extractor import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    STAGE_CHANNELS,
    load_weights_file,
)


class MidasEncoderBase(ReplaceableBase, torch.nn.Module):
    """An image encoder for the MiDaS decoder: four feature maps at strides 4, 8, 16 and 32.

    forward takes the image already normalised with `normalization()`, (B, 3, H, W) with H and W
    multiples of 32, and returns [(B, C_s, H / s, W / s) for s in 4, 8, 16, 32], C = stage_channels().
    """

    @abc.abstractmethod
    def stage_channels(self) -> Tuple[int, int, int, int]:
        """Channels of the four returned maps, finest first."""

    @abc.abstractmethod
    def normalization(self) -> Tuple[Tuple[float, float, float], Tuple[float, float, float]]:
        """(mean, std) per RGB channel that the input is standardised with (its pretraining's)."""

    @abc.abstractmethod
    def forward(self, image: torch.Tensor) -> List[torch.Tensor]:
        """Normalised image (B, 3, H, W) -> four maps, see the class docstring."""


@registry.register
class ResNetEncoder(MidasEncoderBase):
    """A torchvision ResNet or ResNeXt: stem + layer1 (stride 4), layer2, layer3, layer4 (stride 32).

    Randomly initialised unless `weights_path` names a torchvision-format state dict of `arch`
    (e.g. torchvision's resnet50 file, or ig_resnext101_32x8 (WSL) for resnext101_32x8d, MiDaS v2.1 large).
    The classifier (fc) is loaded with the rest and then dropped. Input normalisation: ImageNet.
    """

    # torchvision network: resnet18/34/50/101/152, resnext50_32x4d, resnext101_32x8d
    arch: str = choice_field("resnext101_32x8d", STAGE_CHANNELS)
    weights_path: Optional[str] = None  # a local torchvision state-dict file to initialise from (None: random)

    def __post_init__(self) -> None:
        check_choices(self)
        network = getattr(torchvision.models, self.arch)(weights=None)
        if self.weights_path is not None:
            load_weights_file(network, self.weights_path, "ResNetEncoder", f"torchvision {self.arch}")
        stem = torch.nn.Sequential(network.conv1, network.bn1, network.relu, network.maxpool)
        self.stages = torch.nn.ModuleList(
            [torch.nn.Sequential(stem, network.layer1), network.layer2, network.layer3, network.layer4]
        )

    def stage_channels(self) -> Tuple[int, int, int, int]:
        return STAGE_CHANNELS[self.arch]

    def normalization(self) -> Tuple[Tuple[float, float, float], Tuple[float, float, float]]:
        return IMAGENET_MEAN, IMAGENET_STD

    def forward(self, image: torch.Tensor) -> List[torch.Tensor]:
        features = []
        x = image
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features
