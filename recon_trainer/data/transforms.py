"""Named image transforms: what a bare name such as `transform=ColorJitter` in a mixing expression
refers to (DUSt3R and Spann3R write their dataset strings that way).

A named transform is a class registered with `@register_transform`, built without arguments, and
called as `transform(image, generator)`: image (3, H, W) float32 RGB in [0, 1], generator a
torch.Generator (None: torch's global RNG); it returns an image of the same shape, in [0, 1].
Datasets hold the transform's name in a string field (so configs stay plain data) and build it
with `get_transform(name)`.

DUSt3R's transforms end with `ImgNorm` (ToTensor, then Normalize(0.5, 0.5): [-1, 1]). Records
keep images in [0, 1] and normalising is the method's batch step (`normalize_image`), so here
`ImgNorm` is the identity and `ColorJitter` is the jitter alone (DUSt3R's
`Compose([ColorJitter(0.5, 0.5, 0.5, 0.1), ImgNorm])` = our ColorJitter, then normalize_image).
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple, Type

import torch

from recon_trainer.config.errors import ConfigError, did_you_mean

ImageTransform = Callable[[torch.Tensor, Optional[torch.Generator]], torch.Tensor]
_TRANSFORMS: Dict[str, Type] = {}


def register_transform(cls: Type) -> Type:
    """Class decorator: make `cls` (built without arguments, called as `t(image, generator)`)
    available by its class name, e.g. as `transform=ColorJitter` in a mixing expression."""
    _TRANSFORMS[cls.__name__] = cls
    return cls


def transform_names() -> Tuple[str, ...]:
    """The registered transform names, sorted."""
    return tuple(sorted(_TRANSFORMS))


def get_transform(name: str, where: str = "transform") -> ImageTransform:
    """A new instance of the transform called `name`; ConfigError naming `where`, the closest
    registered name and the choices when there is none."""
    cls = _TRANSFORMS.get(name) if isinstance(name, str) else None
    if cls is None:
        hint = did_you_mean(name, _TRANSFORMS) if isinstance(name, str) else ""
        raise ConfigError(f"{where}={name!r} is not a registered transform{hint or ';'} "
                          f"choices: {', '.join(transform_names())}")
    return cls()


def normalize_image(image: torch.Tensor, mean: float = 0.5, std: float = 0.5) -> torch.Tensor:
    """(..., 3, H, W) image in [0, 1] to (image - mean) / std: DUSt3R's ImgNorm gives [-1, 1]."""
    return (image - mean) / std


def _uniform(low: float, high: float, generator: Optional[torch.Generator]) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def _grayscale(image: torch.Tensor) -> torch.Tensor:
    """(1, H, W) luma (ITU-R 601-2, as PIL's convert('L'))."""
    r, g, b = image.unbind(-3)
    return (0.299 * r + 0.587 * g + 0.114 * b).unsqueeze(-3)


def _shift_hue(image: torch.Tensor, shift: float) -> torch.Tensor:
    """Rotate the hue of an RGB image in [0, 1] by `shift` turns (HSV round trip)."""
    r, g, b = image.unbind(-3)
    value, _ = image.max(dim=-3)
    minimum, _ = image.min(dim=-3)
    chroma = value - minimum
    safe = torch.where(chroma > 0, chroma, torch.ones_like(chroma))
    hue = torch.where(value == r, ((g - b) / safe) % 6, torch.where(value == g, (b - r) / safe + 2, (r - g) / safe + 4))
    hue = torch.where(chroma > 0, hue / 6.0, torch.zeros_like(hue))
    hue = (hue + shift) % 1.0
    saturation = torch.where(value > 0, chroma / torch.where(value > 0, value, torch.ones_like(value)),
                             torch.zeros_like(value))
    # HSV to RGB: channel n is v - v s max(0, min(k, 4 - k, 1)) with k = (n + 6 h) mod 6, n = 5, 3, 1
    channels = []
    for n in (5.0, 3.0, 1.0):
        k = (n + hue * 6.0) % 6.0
        channels.append(value - value * saturation * torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0))
    return torch.stack(channels, dim=-3)


@register_transform
class ImgNorm:
    """The identity on [0, 1] images (DUSt3R's default transform; its normalisation to [-1, 1]
    is `normalize_image`, applied by the method when it batches)."""

    def __call__(self, image: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        return image


@register_transform
class ColorJitter:
    """Random brightness, contrast and saturation factors in [1 - 0.5, 1 + 0.5] and a hue shift in
    [-0.1, 0.1] turns, applied in a random order (DUSt3R's torchvision ColorJitter(0.5, 0.5, 0.5,
    0.1)), on a (3, H, W) image in [0, 1]; the result is clamped to [0, 1]."""

    brightness: float = 0.5  # factor drawn from [1 - b, 1 + b]
    contrast: float = 0.5  # factor drawn from [1 - c, 1 + c], blending with the mean grey level
    saturation: float = 0.5  # factor drawn from [1 - s, 1 + s], blending with the grey image
    hue: float = 0.1  # shift drawn from [-h, h] turns of the colour wheel

    def __call__(self, image: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        order = torch.randperm(4, generator=generator).tolist()
        factors = [
            _uniform(1 - self.brightness, 1 + self.brightness, generator),
            _uniform(1 - self.contrast, 1 + self.contrast, generator),
            _uniform(1 - self.saturation, 1 + self.saturation, generator),
            _uniform(-self.hue, self.hue, generator),
        ]
        for step in order:
            if step == 0:
                image = (image * factors[0]).clamp(0, 1)
            elif step == 1:
                mean = _grayscale(image).mean(dim=(-3, -2, -1), keepdim=True)
                image = (factors[1] * image + (1 - factors[1]) * mean).clamp(0, 1)
            elif step == 2:
                image = (factors[2] * image + (1 - factors[2]) * _grayscale(image)).clamp(0, 1)
            else:
                image = _shift_hue(image, factors[3]).clamp(0, 1)
        return image
