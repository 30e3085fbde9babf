"""ResNetFeatureExtractor against Implicitron's, run by tools/parity/make_implicitron_feature_fixtures.py on
fixed images with random weights: the same maps from the same tensors (its keys mapped as the importer maps
them): projections only of wider stages, L2-normalised features scaled by 1/sqrt(stages), the rescaled
image, feature_rescale on every map."""
import os

import pytest
import torch

from recon_trainer.models.implicitron_import import _map_resnet_feature_extractor
from recon_trainer.models.resnet_feature_extractor import ResNetFeatureExtractor

FIXTURE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "implicitron", "resnet_features.pt")


@pytest.fixture(scope="module")
def fixture():
    return torch.load(FIXTURE, weights_only=True)


@pytest.mark.parametrize("case", ["normed", "identity", "unnormed"])
def test_feature_maps_equal_implicitrons(fixture, case):
    data = fixture["cases"][case]
    extractor = ResNetFeatureExtractor(**data["args"]).eval()
    state = _map_resnet_feature_extractor({**fixture["backbone"], **data["state_dict"]})
    extractor.load_state_dict(state)  # strict: the same tensors, nothing more or less
    with torch.no_grad():
        outputs = extractor(data["images"], data["masks"])
    assert sorted(outputs) == sorted(data["outputs"])
    assert extractor.get_feat_dims() == sum(v.shape[1] for v in data["outputs"].values())
    for name, expected in data["outputs"].items():
        assert outputs[name].shape == expected.shape, name
        torch.testing.assert_close(outputs[name], expected, atol=1e-5, rtol=1e-5, msg=f"{case}: {name}")
