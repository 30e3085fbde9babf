"""The MiDaS encoder slot and its convolutional implementation (torchvision ResNet / ResNeXt).

Implementations: ResNetEncoder (here) and ViTEncoder (dpt_encoder.py, DPT / MiDaS v3).
"""
from __future__ import annotations

import abc
import types
from typing import List, Optional, Tuple

import torch

from recon_trainer.config import ConfigError, ReplaceableBase, registry
from recon_trainer.config.choices import check_choices, choice_field
from recon_trainer.models.resnet_feature_extractor import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    STAGE_CHANNELS,
    load_weights_file,
)

TORCHVISION_STEM_WIDTH = 64  # channels of a torchvision ResNet's stem; stage s has 64 * 2^s planes


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

    def decoder_variant(self) -> str:
        """The decoder this encoder had in the original (decoder.DECODER_VARIANTS): MidasModel's
        decoder_variant=auto takes it."""
        return "midas_v21"


def scaled_resnet(block: type, layers: Tuple[int, ...], stem_width: int, groups: int,
                  width_per_group: int) -> torch.nn.Module:
    """A torchvision-style ResNet trunk (conv1, bn1, relu, maxpool, layer1..4; no classifier) whose
    stem has `stem_width` channels instead of 64 and stage s (0..3) `stem_width * 2^s` planes with
    `layers[s]` blocks of torchvision's `block`; its state-dict keys and initialisation are
    torchvision's. For small networks (tests, parity fixtures)."""
    import torchvision  # imported here: ~1 s at start-up otherwise

    net = torch.nn.Module()
    net.conv1 = torch.nn.Conv2d(3, stem_width, kernel_size=7, stride=2, padding=3, bias=False)
    net.bn1 = torch.nn.BatchNorm2d(stem_width)
    net.relu = torch.nn.ReLU(inplace=True)
    net.maxpool = torch.nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
    # torchvision's own stage builder, run on the attributes it reads (the planes it is given are ours)
    builder = types.SimpleNamespace(_norm_layer=torch.nn.BatchNorm2d, inplanes=stem_width, dilation=1,
                                    groups=groups, base_width=width_per_group)
    for stage, count in enumerate(layers):
        planes = stem_width * 2**stage
        layer = torchvision.models.ResNet._make_layer(builder, block, planes, count, stride=1 if stage == 0 else 2)
        setattr(net, f"layer{stage + 1}", layer)
    for module in net.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, torch.nn.BatchNorm2d):
            torch.nn.init.constant_(module.weight, 1)
            torch.nn.init.constant_(module.bias, 0)
    return net


@registry.register
class ResNetEncoder(MidasEncoderBase):
    """A torchvision ResNet or ResNeXt: stem + layer1 (stride 4), layer2, layer3, layer4 (stride 32).

    Randomly initialised unless `weights_path` names a torchvision-format state dict of `arch`
    (e.g. torchvision's resnet50 file, or ig_resnext101_32x8 (WSL) for resnext101_32x8d, MiDaS v2.1 large).
    The classifier (fc) is loaded with the rest and then dropped. Input normalisation: ImageNet.
    `stem_width` and `stage_blocks` shrink the arch (same block type and groups) into a small
    network for tests (scaled_resnet; its weights_path file has torchvision's keys without fc).
    """

    # torchvision network: resnet18/34/50/101/152, resnext50_32x4d, resnext101_32x8d
    arch: str = choice_field("resnext101_32x8d", STAGE_CHANNELS)
    weights_path: Optional[str] = None  # a local torchvision state-dict file to initialise from (None: random)
    stem_width: int = 0  # channels of the stem; stage s has stem_width * 2^s planes (0: the arch's own, 64)
    stage_blocks: Tuple[int, ...] = ()  # residual blocks in each of the 4 stages (empty: the arch's own)

    def __post_init__(self) -> None:
        check_choices(self)
        network = self._build_network()
        if self.weights_path is not None:
            load_weights_file(network, self.weights_path, "ResNetEncoder", f"torchvision {self.arch}")
        stem = torch.nn.Sequential(network.conv1, network.bn1, network.relu, network.maxpool)
        self.stages = torch.nn.ModuleList(
            [torch.nn.Sequential(stem, network.layer1), network.layer2, network.layer3, network.layer4]
        )

    def _build_network(self) -> torch.nn.Module:
        """The torchvision `arch`, or its scaled_resnet with stem_width / stage_blocks; sets _stage_channels."""
        import torchvision  # imported here: ~1 s at start-up otherwise

        self._stage_channels = STAGE_CHANNELS[self.arch]
        if self.stem_width == 0 and not self.stage_blocks:
            return getattr(torchvision.models, self.arch)(weights=None)
        if self.stem_width < 0 or (self.stage_blocks and (len(self.stage_blocks) != 4 or min(self.stage_blocks) < 1)):
            raise ConfigError(
                f"ResNetEncoder: stem_width={self.stem_width}, stage_blocks={list(self.stage_blocks)}: expected "
                f"stem_width >= 0 and four positive block counts (or none)"
            )
        with torch.device("meta"):  # the arch's block type, block counts and groups, nothing allocated
            full = getattr(torchvision.models, self.arch)(weights=None)
        block = type(full.layer1[0])
        layers = tuple(self.stage_blocks) or tuple(len(getattr(full, f"layer{s}")) for s in range(1, 5))
        stem_width = self.stem_width or TORCHVISION_STEM_WIDTH
        if block is torchvision.models.resnet.Bottleneck and stem_width * full.base_width < 64:
            raise ConfigError(
                f"ResNetEncoder.stem_width={self.stem_width}: {self.arch} needs at least {-(-64 // full.base_width)} "
                f"(each group of its blocks is {full.base_width}/64 of the planes wide)"
            )
        self._stage_channels = tuple(stem_width * 2**s * block.expansion for s in range(4))
        return scaled_resnet(block, layers, stem_width, full.groups, full.base_width)

    def stage_channels(self) -> Tuple[int, int, int, int]:
        return self._stage_channels

    def normalization(self) -> Tuple[Tuple[float, float, float], Tuple[float, float, float]]:
        return IMAGENET_MEAN, IMAGENET_STD

    def forward(self, image: torch.Tensor) -> List[torch.Tensor]:
        features = []
        x = image
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features
