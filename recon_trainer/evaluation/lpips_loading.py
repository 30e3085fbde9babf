"""LPIPS with an AlexNet trunk built from local files only: nothing is downloaded.

The `lpips` package ships its calibrated linear layers; the AlexNet trunk comes from a
torchvision AlexNet state dict the user provides (e.g. `torchvision.models.alexnet(weights=
"IMAGENET1K_V1").state_dict()` saved with `torch.save` on a machine with network access).
"""

from __future__ import annotations

import os
import re
import warnings

import torch

# AlexNet's pooling stages need at least this many pixels per side.
LPIPS_MIN_IMAGE_SIZE = 32


def load_lpips_alex(backbone_weights: str) -> torch.nn.Module:
    """An eval-mode `lpips.LPIPS(net="alex")` whose trunk is loaded from `backbone_weights`.

    `backbone_weights` is a torchvision AlexNet state dict (keys `features.<i>.weight/bias`;
    classifier keys are ignored), read with `torch.load(weights_only=True)`. Raises
    FileNotFoundError for a missing file, TypeError or ValueError for a file that is not such a state dict.
    The model maps two (B, 3, H, W) images in [-1, 1] to (B, 1, 1, 1) distances.
    """
    if not os.path.isfile(backbone_weights):
        raise FileNotFoundError(
            f"lpips_backbone_weights={backbone_weights!r}: no such file; expected a torchvision AlexNet state dict"
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
        model = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False)
    trunk = model.net
    trunk_state = {}
    missing = []
    for name in trunk.state_dict():  # "slice2.3.weight" holds AlexNet's "features.3.weight"
        key = "features." + re.sub(r"^slice\d+\.", "", name)
        if key in state:
            trunk_state[name] = state[key]
        else:
            missing.append(key)
    if missing:
        raise ValueError(
            f"lpips_backbone_weights={backbone_weights!r} is not a torchvision AlexNet state dict: missing {missing}"
        )
    try:
        trunk.load_state_dict(trunk_state)
    except RuntimeError as error:
        raise ValueError(f"lpips_backbone_weights={backbone_weights!r} does not fit AlexNet: {error}") from error
    return model.eval()
