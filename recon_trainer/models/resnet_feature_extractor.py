"""ResNetFeatureExtractor: per-pixel features of the source images from a torchvision ResNet."""

from __future__ import annotations

import math
import os
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F

from recon_trainer.config import ConfigError, registry
from recon_trainer.config.choices import check_choices, choice_field
from recon_trainer.models.feature_extractor import FeatureExtractorBase

# Output channels of the four residual stages of each supported torchvision ResNet.
STAGE_CHANNELS = {
    "resnet18": (64, 128, 256, 512),
    "resnet34": (64, 128, 256, 512),
    "resnet50": (256, 512, 1024, 2048),
    "resnet101": (256, 512, 1024, 2048),
    "resnet152": (256, 512, 1024, 2048),
    "resnext50_32x4d": (256, 512, 1024, 2048),
    "resnext101_32x8d": (256, 512, 1024, 2048),  # MiDaS v2.1 large; the WSL weights share torchvision's keys
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_FEATURE_NAME = "image"
MASK_FEATURE_NAME = "mask"
MAX_ERROR_CHARS = 600  # load_state_dict lists every bad key; keep the start of it


def load_weights_file(module: torch.nn.Module, weights_path: str, owner: str, expected: str) -> None:
    """Load the state dict saved (torch.save) at `weights_path` into `module`, strictly.

    `owner` (e.g. "ResNetFeatureExtractor") and `expected` ("torchvision resnet18") name the field and the
    format in the errors: FileNotFoundError for a missing file, ValueError for one that is not a
    state dict of `module`'s keys and shapes.
    """
    path = os.path.expanduser(weights_path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{owner}.weights_path={weights_path!r}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        module.load_state_dict(state)
    except Exception as error:
        detail = str(error)
        if len(detail) > MAX_ERROR_CHARS:
            detail = detail[:MAX_ERROR_CHARS] + " ..."
        raise ValueError(
            f"{owner}.weights_path={weights_path!r}: not a {expected} state dict ({type(error).__name__}: {detail})"
        ) from error


def stage_feature_name(stage: int) -> str:
    """The key of residual stage `stage` (1..4) in the output dict."""
    return f"res_layer_{stage}"


@registry.register
class ResNetFeatureExtractor(FeatureExtractorBase):
    """Feature maps of chosen ResNet stages (optionally projected and L2-normalised), plus the image and mask.

    The network is randomly initialised unless `weights_path` names a torchvision state dict of the
    same architecture (e.g. the file torchvision downloads for `resnet34`). Output keys:
    "res_layer_<s>" (B, C_s, h_s, w_s) for s in `stages`, "mask" (B, 1, H, W) at the input
    resolution and "image" (B, 3, H', W') resized by image_rescale, all multiplied by
    feature_rescale. As Implicitron's: a stage is projected to proj_dim channels only when it has
    more (C_s = min(proj_dim, channels) for proj_dim > 0), and L2-normalised stage features are
    scaled by 1 / sqrt(number of stages), so that all of them together have unit length
    (tests/models/test_resnet_feature_extractor_parity.py).
    """

    # torchvision architecture: resnet18/34/50/101/152, resnext50_32x4d, resnext101_32x8d
    name: str = choice_field("resnet34", STAGE_CHANNELS)
    weights_path: Optional[str] = None  # a local torchvision state-dict file to initialise from (None: random)
    stages: Tuple[int, ...] = (1, 2, 3, 4)  # residual stages (1..4) whose outputs are features
    normalize_image: bool = True  # standardise the image with the ImageNet mean and std first
    image_rescale: float = 0.16  # resize the image by this factor before the network (128 / 800)
    first_max_pool: bool = True  # keep the max-pooling after the first convolution
    proj_dim: int = 32  # 1x1-convolve each wider stage's output to this many channels (<= 0: keep them)
    l2_norm: bool = True  # L2-normalise each stage's feature vectors (then x 1/sqrt(number of stages))
    add_masks: bool = True  # append the foreground mask as a feature map (ones when none is given)
    add_images: bool = True  # append the input image as a feature map
    global_average_pool: bool = False  # replace each stage's map by its spatial mean (constant map)
    feature_rescale: float = 1.0  # multiply every returned map (stages, mask, image) by this

    def __post_init__(self) -> None:
        check_choices(self)
        if any(s not in (1, 2, 3, 4) for s in self.stages) or len(set(self.stages)) != len(self.stages):
            raise ConfigError(f"ResNetFeatureExtractor.stages={list(self.stages)}: expected distinct stages in 1..4")
        if self.image_rescale <= 0:
            raise ConfigError(f"ResNetFeatureExtractor.image_rescale={self.image_rescale}: expected > 0")
        self.register_buffer("_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.stages = tuple(sorted(self.stages))
        if not self.stages:
            return
        resnet = self._resnet()
        pool = [resnet.maxpool] if self.first_max_pool else []
        self.stem = torch.nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu, *pool)
        layers = (resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4)
        self.layers = torch.nn.ModuleList(layers[: max(self.stages)])
        channels = STAGE_CHANNELS[self.name]
        self.projections = torch.nn.ModuleDict(
            {str(s): torch.nn.Conv2d(channels[s - 1], self.proj_dim, kernel_size=1)
             for s in self.stages if self._projected(s)}
        )

    def _resnet(self) -> torch.nn.Module:
        """The torchvision network, random or loaded from weights_path."""
        import torchvision  # imported here: ~1 s at start-up otherwise

        resnet = getattr(torchvision.models, self.name)(weights=None)
        if self.weights_path is not None:
            load_weights_file(resnet, self.weights_path, "ResNetFeatureExtractor", f"torchvision {self.name}")
        return resnet

    def _projected(self, stage: int) -> bool:
        return 0 < self.proj_dim < STAGE_CHANNELS[self.name][stage - 1]

    def _stage_dim(self, stage: int) -> int:
        return self.proj_dim if self._projected(stage) else STAGE_CHANNELS[self.name][stage - 1]

    def get_feat_dims(self) -> int:
        """Channels of all returned maps together."""
        return sum(self._stage_dim(s) for s in self.stages) + 3 * self.add_images + self.add_masks

    def forward(self, imgs: torch.Tensor, masks: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """imgs (B, 3, H, W) in [0, 1], masks (B, 1, H, W) -> named maps (see the class docstring)."""
        feats: Dict[str, torch.Tensor] = {}
        resized = imgs
        if self.image_rescale != 1.0:
            resized = F.interpolate(imgs, scale_factor=self.image_rescale, mode="bilinear", align_corners=False)
        if self.stages:
            x = resized
            if self.normalize_image:
                x = (x - self._mean.to(x.dtype)) / self._std.to(x.dtype)
            x = self.stem(x)
            for stage, layer in enumerate(self.layers, start=1):
                x = layer(x)
                if stage in self.stages:
                    feats[stage_feature_name(stage)] = self._stage_features(stage, x)
        if self.add_masks:
            feats[MASK_FEATURE_NAME] = imgs.new_ones(imgs.shape[0], 1, *imgs.shape[2:]) if masks is None else masks
        if self.add_images:
            feats[IMAGE_FEATURE_NAME] = resized
        if self.feature_rescale != 1.0:
            feats = {name: feature * self.feature_rescale for name, feature in feats.items()}
        return feats

    def _stage_features(self, stage: int, x: torch.Tensor) -> torch.Tensor:
        if self._projected(stage):
            x = self.projections[str(stage)](x)
        if self.global_average_pool:
            x = x.mean(dim=(2, 3), keepdim=True).expand_as(x)
        if self.l2_norm:
            x = F.normalize(x, dim=1) / math.sqrt(len(self.stages))
        return x
