"""LPIPS with a VGG-16 or AlexNet trunk built from local files only: nothing is downloaded.

The `lpips` package ships its calibrated linear layers; the trunk comes from a torchvision
state dict the user provides (e.g. `torchvision.models.vgg16(weights="IMAGENET1K_V1").state_dict()`
or `alexnet(...)`, saved with `torch.save` on a machine with network access). Implicitron's
evaluator uses `lpips.LPIPS(net="vgg")`; AlexNet is the LPIPS paper's default.
"""

from __future__ import annotations

import os
import re
import warnings

import torch

# The trunks' pooling stages need at least this many pixels per side.
LPIPS_MIN_IMAGE_SIZE = 32
LPIPS_NETS = {"vgg": "VGG-16", "alex": "AlexNet"}  # lpips' name -> the torchvision model the weights are for


def load_lpips(backbone_weights: str, net: str = "vgg") -> torch.nn.Module:
    """An eval-mode `lpips.LPIPS(net=net)` whose trunk is loaded from `backbone_weights`.

    `net` is "vgg" (VGG-16, as Implicitron's evaluator) or "alex" (AlexNet). `backbone_weights`
    is the matching torchvision state dict (keys `features.<i>.weight/bias`; classifier keys are
    ignored), read with `torch.load(weights_only=True)`. Raises FileNotFoundError for a missing
    file, TypeError or ValueError for a file that is not such a state dict. The model maps two
    (B, 3, H, W) images in [-1, 1] to (B, 1, 1, 1) distances.
    """
    if net not in LPIPS_NETS:
        raise ValueError(f"lpips_net={net!r}: expected one of {sorted(LPIPS_NETS)}")
    arch = LPIPS_NETS[net]
    if not os.path.isfile(backbone_weights):
        raise FileNotFoundError(
            f"lpips_backbone_weights={backbone_weights!r}: no such file; expected a torchvision {arch} state dict"
        )
    try:
        state = torch.load(backbone_weights, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(
            f"lpips_backbone_weights={backbone_weights!r} could not be read as a state dict: {error}"
        ) from error
    if not isinstance(state, dict):
        raise TypeError(
            f"lpips_backbone_weights={backbone_weights!r} holds a {type(state).__name__}, expected a state dict"
        )

    import lpips

    with warnings.catch_warnings():  # lpips builds the random trunk with torchvision's deprecated `pretrained=`
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
    trunk = model.net
    trunk_state = {}
    missing = []
    for name in trunk.state_dict():  # "slice2.3.weight" holds the torchvision model's "features.3.weight"
        key = "features." + re.sub(r"^slice\d+\.", "", name)
        if key in state:
            trunk_state[name] = state[key]
        else:
            missing.append(key)
    if missing:
        raise ValueError(
            f"lpips_backbone_weights={backbone_weights!r} is not a torchvision {arch} state dict "
            f"(lpips_net={net!r}): missing {missing[:4]}{' ...' if len(missing) > 4 else ''}"
        )
    try:
        trunk.load_state_dict(trunk_state)
    except RuntimeError as error:
        raise ValueError(f"lpips_backbone_weights={backbone_weights!r} does not fit {arch}: {error}") from error
    return model.eval()
