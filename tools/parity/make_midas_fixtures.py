"""Make the MiDaS fixtures: tests/fixtures/midas/{midasnet_parity.pt, dpt_parity.pt, released_layouts.json,
transforms.json}.

Runs the ORIGINAL MidasNet (v2.1) and DPTDepthModel (imported from --midas_repo, isl-org/MiDaS) on
CPU in eval mode with random weights (fixed seeds) on fixed random images, and stores their state
dicts in the original key layout, their inputs and outputs. Not run by the test suite; run it as

    python tools/parity/make_midas_fixtures.py --midas_repo /work/ref/midas --out tests/fixtures/midas

with torch, torchvision and timm importable (made with torch 2.15, torchvision 0.29.2, timm 1.0.31).

What the script patches (only here, in memory):
  * torch.hub.load: the original fetches its ResNeXt-101 32x8d from torch hub
    ("facebookresearch/WSL-Images", resnext101_32x8d_wsl, which is torchvision's resnext101_32x8d
    architecture). There is no network here: hub.load returns torchvision.models.resnext101_32x8d()
    (random) for the full-size layout, and the tiny ResNeXt below for the parity network.
  * cv2: midas/transforms.py imports OpenCV at the top but Resize.get_size and NormalizeImage do not
    use it; a stub module with the three interpolation constants the signatures name stands in.
  * The parity networks are built small by replacing, in the original's modules, the function
    that makes its encoder (`_make_encoder`, as midas_net / dpt_depth import it) by one that
    assembles the original's own pieces at small sizes:
      MidasNet: blocks._make_pretrained_resnext101_wsl (its torch.hub.load patched to a tiny
        ResNeXt: torchvision's Bottleneck blocks with 32 groups of 8/64 of the planes, like
        resnext101_32x8d, but a stem of 8 channels and blocks (1, 2, 1, 1): stage channels 32, 64,
        128, 256) and blocks._make_scratch with those channels. Its head's first conv, hard-coded
        features -> 128 in MidasNet, is replaced after construction by features -> features / 2
        and the next conv's input likewise (the full network has features 256, so 128 there).
      DPT: backbones.vit._make_vit_b16_backbone around a tiny timm ViT, created as
        timm.create_model("vit_tiny_patch16_384", embed_dim=32, depth=5, num_heads=2,
        num_classes=10) (a 24 x 24 position grid as ViT-L/16 384's), hooks (0, 1, 2, 3) (block 4
        is never read, as the blocks after the last hook are not), readout "project", reassembly
        channels (8, 16, 24, 32); blocks._make_scratch with those channels. timm 1.0.31 runs the
        original's vit code unchanged (its forward_flex reads patch_embed.proj, cls_token,
        no_embed_class, pos_drop, blocks and norm, all still there).
  * Random weights: torch's and timm's own initialisation, then every BatchNorm gets random
    running statistics and affine parameters, LayerNorms random affine parameters, the ViT's class
    token and position embedding N(0, 0.5), and the last conv's weight and bias are set so that
    on the stored input its output has unit spread and 80 % of the pixels pass the final ReLU.

midasnet_parity.pt / dpt_parity.pt:
  config      the sizes, for building our MidasModel alike (see the tests); decoder features:
              MidasNet 8, DPT 16
  state_dict  the original model's state dict (its key layout)
  input       float32 (2, 3, 64, 64) (MidasNet), (2, 3, 64, 96) (DPT): a random image in [0, 1]
              normalised as run.py does (MidasNet: ImageNet mean / std; DPT: 0.5 / 0.5); the DPT's
              24 x 24 position grid is resized to 4 x 6
  layers      the four encoder maps the original's decoder reads (MidasNet pretrained.layer1..4,
              DPT forward_vit), finest first
  output      (2, H, W): the original model(input) (its final squeeze included)
released_layouts.json: for "midas_v21_384" (MidasNet(non_negative=True)) and "dpt_large_384"
  (DPTDepthModel(backbone="vitl16_384", non_negative=True)), as model_loader.py builds them at full
  size (on the meta device, no weights): "state_dict" {key: shape} in the order of state_dict() and
  "parameters", the number of parameter elements.
transforms.json: the original Resize(384, 384, keep_aspect_ratio=True, ensure_multiple_of=32,
  resize_method=m).get_size(w, h) for m in upper_bound, lower_bound, minimal over a list of image
  sizes ("sizes": [[h, w, method, out_h, out_w], ...]), and NormalizeImage's outputs on one pixel.
"""
import contextlib
import json
import os
import sys
import types
from typing import Any, Dict, Iterator, List, Tuple

import torch
import torchvision
from reference import reference_args

IMAGE_SHAPES = {"midasnet": (2, 3, 64, 64), "dpt": (2, 3, 64, 96)}  # DPT: a 4 x 6 token grid, not square
FEATURES = {"midasnet": 8, "dpt": 16}
TINY_RESNEXT = {"stem_width": 8, "stage_blocks": (1, 2, 1, 1)}  # resnext101_32x8d's blocks and groups
TINY_VIT = {"embed_dim": 32, "depth": 5, "num_heads": 2, "num_classes": 10}
VIT_HOOKS = (0, 1, 2, 3)
VIT_CHANNELS = (8, 16, 24, 32)
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
DPT_NORM = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
TRANSFORM_SIZES = [(480, 640), (375, 1242), (1242, 375), (384, 384), (100, 390), (390, 100), (720, 1280),
                   (436, 1024), (512, 512), (10, 1000), (401, 401), (250, 333)]


@contextlib.contextmanager
def patched(target: Any, name: str, value: Any) -> Iterator[None]:
    """`target.name` is `value` inside the block, its own value again after it."""
    saved = getattr(target, name)
    setattr(target, name, value)
    try:
        yield
    finally:
        setattr(target, name, saved)


def install_cv2_stub() -> None:
    """midas/transforms.py imports cv2 at the top; its Resize.get_size and NormalizeImage never call it."""
    cv2 = types.ModuleType("cv2")
    cv2.INTER_AREA, cv2.INTER_NEAREST, cv2.INTER_CUBIC = 3, 0, 2
    sys.modules.setdefault("cv2", cv2)


def tiny_resnext() -> torch.nn.Module:
    """torchvision's ResNet with a stem of 8 channels, planes 8 * 2^s, TINY_RESNEXT blocks of its
    Bottleneck with resnext101_32x8d's groups (32) and width per group (8): stage channels 32..256."""
    from torchvision.models.resnet import Bottleneck, ResNet

    class TinyResNeXt(ResNet):
        def __init__(self) -> None:
            torch.nn.Module.__init__(self)
            width = TINY_RESNEXT["stem_width"]
            self._norm_layer, self.inplanes, self.dilation, self.groups, self.base_width = (
                torch.nn.BatchNorm2d, width, 1, 32, 8)
            self.conv1 = torch.nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
            self.bn1 = torch.nn.BatchNorm2d(width)
            self.relu = torch.nn.ReLU(inplace=True)
            self.maxpool = torch.nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
            for s, blocks in enumerate(TINY_RESNEXT["stage_blocks"]):
                layer = self._make_layer(Bottleneck, width * 2**s, blocks, stride=1 if s == 0 else 2)
                setattr(self, f"layer{s + 1}", layer)

    return TinyResNeXt()


def randomise(model: torch.nn.Module, generator: torch.Generator, x: torch.Tensor) -> None:
    """Random norm statistics and affine parameters, class token / position embedding; the last
    conv's weight and bias set so that its output on `x` has unit spread and 80 % of it is > 0."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.2)
                module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
                module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(n, generator=generator) * 0.1)
            elif isinstance(module, torch.nn.LayerNorm):
                module.weight.copy_(torch.rand(module.weight.shape, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(module.bias.shape, generator=generator) * 0.1)
        for name, param in model.named_parameters():
            if name.endswith(("cls_token", "pos_embed")):
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
        last = model.scratch.output_conv[4]
        seen = []
        # cloned: the in-place ReLU after the conv overwrites its output
        handle = last.register_forward_hook(lambda module, args, out: seen.append(out.clone()))
        model.eval()(x.clone())
        handle.remove()
        response = seen[0] - last.bias.view(1, -1, 1, 1)  # the weights' part
        spread = response.std()
        last.weight.div_(spread)
        last.bias.copy_(-torch.quantile(response.flatten() / spread, 0.2))


def normalised_image(seed: int, shape: Tuple[int, ...], mean_std: Tuple[Tuple[float, ...], Tuple[float, ...]]
                     ) -> torch.Tensor:
    image = torch.rand(shape, generator=torch.Generator().manual_seed(seed))
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in mean_std)
    return (image - mean) / std


def midasnet_fixture() -> Dict[str, object]:
    import midas.blocks as blocks
    import midas.midas_net as midas_net

    def make_encoder(backbone, features, use_pretrained, **kwargs):
        assert backbone == "resnext101_wsl"
        pretrained = blocks._make_pretrained_resnext101_wsl(use_pretrained)  # torch.hub.load -> tiny_resnext()
        return pretrained, blocks._make_scratch([32, 64, 128, 256], features)

    torch.manual_seed(0)
    features = FEATURES["midasnet"]
    with patched(torch.hub, "load", lambda *args, **kwargs: tiny_resnext()), \
            patched(midas_net, "_make_encoder", make_encoder):
        model = midas_net.MidasNet(None, features=features, non_negative=True)
    head = model.scratch.output_conv  # its first conv is hard-coded features -> 128: features / 2 here
    head[0] = torch.nn.Conv2d(features, features // 2, kernel_size=3, stride=1, padding=1)
    head[2] = torch.nn.Conv2d(features // 2, 32, kernel_size=3, stride=1, padding=1)
    x = normalised_image(2, IMAGE_SHAPES["midasnet"], IMAGENET)
    randomise(model, torch.Generator().manual_seed(1), x)
    with torch.no_grad():
        layers: List[torch.Tensor] = []
        y = x.clone()
        for name in ("layer1", "layer2", "layer3", "layer4"):
            y = getattr(model.pretrained, name)(y)
            layers.append(y.clone())
        output = model(x.clone())
    config = {"arch": "resnext101_32x8d", **TINY_RESNEXT, "features": features}
    return {"config": config, "state_dict": model.state_dict(), "input": x, "layers": layers, "output": output}


def dpt_fixture() -> Dict[str, object]:
    import timm

    import midas.blocks as blocks
    import midas.dpt_depth as dpt_depth
    from midas.backbones.vit import _make_vit_b16_backbone, forward_vit

    def make_encoder(backbone, features, use_pretrained, hooks=None, use_readout="ignore", **kwargs):
        assert backbone == "vitl16_384" and use_readout == "project"
        vit = timm.create_model("vit_tiny_patch16_384", pretrained=False, **TINY_VIT)
        pretrained = _make_vit_b16_backbone(vit, features=list(VIT_CHANNELS), hooks=list(VIT_HOOKS),
                                            vit_features=TINY_VIT["embed_dim"], use_readout=use_readout)
        return pretrained, blocks._make_scratch(list(VIT_CHANNELS), features)

    torch.manual_seed(3)
    with patched(dpt_depth, "_make_encoder", make_encoder):
        model = dpt_depth.DPTDepthModel(path=None, backbone="vitl16_384", non_negative=True, features=FEATURES["dpt"])
    x = normalised_image(5, IMAGE_SHAPES["dpt"], DPT_NORM)
    randomise(model, torch.Generator().manual_seed(4), x)
    with torch.no_grad():
        layers = [t.clone() for t in forward_vit(model.pretrained, x.clone())]
        output = model(x.clone())
    config = {"arch": "vit_tiny_patch16_384", **{k: v for k, v in TINY_VIT.items() if k != "num_classes"},
              "hooks": VIT_HOOKS, "reassemble_channels": VIT_CHANNELS, "readout": "project",
              "features": FEATURES["dpt"]}
    return {"config": config, "state_dict": model.state_dict(), "input": x, "layers": layers, "output": output}


def released_layouts() -> Dict[str, object]:
    import midas.dpt_depth as dpt_depth
    import midas.midas_net as midas_net

    layouts = {}
    hub_resnext = patched(torch.hub, "load", lambda *args, **kwargs: torchvision.models.resnext101_32x8d())
    with torch.device("meta"), hub_resnext:
        for name, build in (("midas_v21_384", lambda: midas_net.MidasNet(None, non_negative=True)),
                            ("dpt_large_384", lambda: dpt_depth.DPTDepthModel(path=None, backbone="vitl16_384",
                                                                              non_negative=True))):
            model = build()
            layouts[name] = {
                "parameters": sum(p.numel() for p in model.parameters()),
                "state_dict": {key: list(value.shape) for key, value in model.state_dict().items()},
            }
    return layouts


def transforms() -> Dict[str, object]:
    install_cv2_stub()
    import numpy as np

    from midas.transforms import NormalizeImage, Resize

    sizes = []
    for method in ("upper_bound", "lower_bound", "minimal"):
        resize = Resize(384, 384, resize_target=None, keep_aspect_ratio=True, ensure_multiple_of=32,
                        resize_method=method)
        for h, w in TRANSFORM_SIZES:
            out_w, out_h = resize.get_size(w, h)
            sizes.append([h, w, method, int(out_h), int(out_w)])
    pixel = np.array([[[0.1, 0.5, 0.9]]], dtype=np.float32)
    normalised = {}
    for name, (mean, std) in (("imagenet", IMAGENET), ("dpt", DPT_NORM)):
        sample = NormalizeImage(mean=list(mean), std=list(std))({"image": pixel.copy()})
        normalised[name] = sample["image"][0, 0].tolist()
    return {"sizes": sizes, "pixel": pixel[0, 0].tolist(), "normalised": normalised}


def main() -> None:
    args = reference_args(__doc__.splitlines()[0], "the MiDaS fixtures", "midas_repo",
                          "checkout of isl-org/MiDaS to import the original from")
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)  # timm.models.layers, imported by dpt_depth
    torch.set_num_threads(1)
    with open(os.path.join(args.out, "transforms.json"), "w") as f:
        json.dump(transforms(), f)
    for name, make in (("midasnet_parity.pt", midasnet_fixture), ("dpt_parity.pt", dpt_fixture)):
        fixture = make()
        torch.save(fixture, os.path.join(args.out, name))
        output = fixture["output"]
        print(f"{name}: {sum(v.numel() for v in fixture['state_dict'].values())} state values, output "
              f"{tuple(output.shape)} in [{output.min():.4f}, {output.max():.4f}], "
              f"{(output > 0).float().mean():.1%} > 0")
    layouts = released_layouts()
    with open(os.path.join(args.out, "released_layouts.json"), "w") as f:
        json.dump(layouts, f, indent=0)
    for name, layout in layouts.items():
        print(f"{name}: {layout['parameters']} parameters, {len(layout['state_dict'])} state-dict entries")


if __name__ == "__main__":
    main()
