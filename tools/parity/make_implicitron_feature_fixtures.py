"""Make the parity fixture of the source-view feature extractor: tests/fixtures/implicitron/resnet_features.pt.

Runs the ORIGINAL `pytorch3d.implicitron.models.feature_extractor.resnet_feature_extractor.ResNetFeatureExtractor`
(randomly initialised, `pretrained=False`) on fixed images and masks and stores, per case, its
settings, its state dict (Implicitron's keys) and the dict of maps it returned. Nothing in the
original is patched. Not run by the test suite; run it with a Python in which pytorch3d (built from
source, DEVELOPERS.md) and torchvision import, e.g.

    /work/ref/p3venv/bin/python tools/parity/make_implicitron_feature_fixtures.py \\
        --pytorch3d_repo /work/ref/pytorch3d --out tests/fixtures/implicitron

(--pytorch3d_repo is put first on the import path only when it holds a built `pytorch3d/_C*`;
otherwise the installed pytorch3d is used.) Each case is resnet18 up to its second stage, on 2
images of 3 x 48 x 40, in evaluation mode; every case has the same backbone (stored once: random
weights, batch-norm running statistics set to random values), the projections are each case's own:
  normed       stages 1 and 2, proj_dim 16, L2-normalised (x 1/sqrt(2)), image_rescale 0.5, max-pool
  identity     stages 1 and 2, proj_dim 64: stage 1 (64 channels) is not projected, stage 2 (128) is;
               no max-pool, feature_rescale 2 (scales the mask and image maps too)
  unnormed     stage 2 only, proj_dim -1, no L2 norm, no image normalisation, image_rescale 0.375
Fixture layout: {"backbone": {key: tensor} (stem.* and layers.*, Implicitron's keys), "cases": {name:
{"args": {field: value}, "images": (2, 3, 48, 40), "masks": (2, 1, 48, 40), "state_dict": {key:
tensor} (the case's other tensors: proj_layers.*), "outputs": {name: tensor}}}}.
"""
import os
from typing import Any, Dict

import torch
from reference import pytorch3d_args

CASES: Dict[str, Dict[str, Any]] = {
    "normed": dict(stages=(1, 2), proj_dim=16, l2_norm=True, image_rescale=0.5, first_max_pool=True),
    "identity": dict(stages=(1, 2), proj_dim=64, l2_norm=True, image_rescale=0.5, first_max_pool=False,
                     feature_rescale=2.0),
    "unnormed": dict(stages=(2,), proj_dim=-1, l2_norm=False, normalize_image=False, image_rescale=0.375),
}


def main() -> None:
    args = pytorch3d_args(__doc__.splitlines()[0], "resnet_features.pt")
    from pytorch3d.implicitron.models.feature_extractor.resnet_feature_extractor import ResNetFeatureExtractor
    from pytorch3d.implicitron.tools.config import expand_args_fields

    expand_args_fields(ResNetFeatureExtractor)
    cases, backbone = {}, None
    for index, (name, fields) in enumerate(CASES.items()):
        torch.manual_seed(100 + index)
        extractor = ResNetFeatureExtractor(name="resnet18", pretrained=False, **fields).eval()
        with torch.no_grad():
            if backbone is None:
                for module in extractor.modules():  # running statistics other than the initial 0 / 1
                    if isinstance(module, torch.nn.BatchNorm2d):
                        module.running_mean.uniform_(-0.2, 0.2)
                        module.running_var.uniform_(0.5, 1.5)
                backbone = {k: v.clone() for k, v in extractor.state_dict().items()
                            if k.startswith(("stem.", "layers."))}
            else:
                extractor.load_state_dict(backbone, strict=False)
            images = torch.rand(2, 3, 48, 40)
            masks = (torch.rand(2, 1, 48, 40) > 0.4).float()
            outputs = extractor(images, masks)
        state = extractor.state_dict()
        assert all(torch.equal(state[k], v) for k, v in backbone.items())
        cases[name] = {
            "args": dict(name="resnet18", **fields),
            "images": images,
            "masks": masks,
            "state_dict": {k: v.clone() for k, v in state.items() if k not in backbone},
            "outputs": {str(k): v.clone() for k, v in outputs.items()},
        }
        shapes = {str(k): tuple(v.shape) for k, v in outputs.items()}
        print(name, shapes, "own tensors:", list(cases[name]["state_dict"]))
    path = os.path.join(args.out, "resnet_features.pt")
    torch.save({"backbone": backbone, "cases": cases}, path)
    print(f"wrote {path}: {os.path.getsize(path) / 1024:.0f} kB")


if __name__ == "__main__":
    main()
