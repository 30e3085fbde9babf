"""Named image transforms: the registry, ImgNorm, ColorJitter's ranges, determinism and its hue
rotation against torchvision's."""
import pytest
import torch

from recon_trainer.config import ConfigError
from recon_trainer.data.transforms import (
    ColorJitter,
    ImgNorm,
    _shift_hue,
    get_transform,
    normalize_image,
    register_transform,
    transform_names,
)


def _image(seed=0, size=(3, 8, 10)):
    return torch.rand(size, generator=torch.Generator().manual_seed(seed))


def test_registry_and_errors():
    assert {"ColorJitter", "ImgNorm"} <= set(transform_names())
    assert isinstance(get_transform("ColorJitter"), ColorJitter) and isinstance(get_transform("ImgNorm"), ImgNorm)
    with pytest.raises(ConfigError, match=r"^Seq.transform='ColourJitter' is not a registered transform; did you mean "
                                          r"'ColorJitter'\? choices: .*ColorJitter, ImgNorm"):
        get_transform("ColourJitter", "Seq.transform")


def test_a_registered_transform_is_found(monkeypatch):
    from recon_trainer.data import transforms

    monkeypatch.setattr(transforms, "_TRANSFORMS", dict(transforms._TRANSFORMS))

    @register_transform
    class Invert:
        def __call__(self, image, generator=None):
            return 1 - image

    assert torch.equal(get_transform("Invert")(torch.zeros(3, 1, 1)), torch.ones(3, 1, 1))


def test_imgnorm_is_the_identity_and_normalize_image_is_dust3rs():
    image = _image()
    assert torch.equal(ImgNorm()(image), image)
    assert torch.allclose(normalize_image(torch.tensor([0.0, 0.5, 1.0])), torch.tensor([-1.0, 0.0, 1.0]))


def test_color_jitter_is_deterministic_per_generator_and_in_range():
    image = _image()
    jitter = ColorJitter()
    a = jitter(image, torch.Generator().manual_seed(5))
    b = jitter(image, torch.Generator().manual_seed(5))
    c = jitter(image, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == image.shape and float(a.min()) >= 0 and float(a.max()) <= 1
    outputs = torch.stack([jitter(image, torch.Generator().manual_seed(s)) for s in range(200)])
    brightness = outputs.mean(dim=(1, 2, 3)) / image.mean()
    assert float(brightness.min()) < 0.75 and float(brightness.max()) > 1.2  # factors in [0.5, 1.5]


def test_hue_rotation_matches_torchvision():
    functional = pytest.importorskip("torchvision.transforms.functional")
    image = _image(1, (3, 16, 16))
    image[:, 0, 0] = 0.5  # a grey pixel (no chroma)
    image[:, 0, 1] = 0.0
    for shift in (-0.1, -0.03, 0.0, 0.07, 0.1, 0.45):
        assert torch.allclose(_shift_hue(image, shift), functional.adjust_hue(image, shift), atol=1e-5), shift
