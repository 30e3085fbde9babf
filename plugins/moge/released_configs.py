"""The released MoGe networks' constructor arguments (MoGe's configs/train/v1.json and v2.json,
"model" blocks), the defaults of the moge_v1 / moge_v2 configs and of the benchmark."""
from __future__ import annotations

from typing import Any, Dict, List, Optional

# DINOv2 depth per backbone: MoGe-2 taps 4 evenly spaced layers of it (ViT-L: 5, 11, 17, 23)
BACKBONE_DEPTH = {"dinov2_vits14": 12, "dinov2_vitb14": 12, "dinov2_vitl14": 24, "dinov2_vitg14": 40}


def released_v1_config(backbone: str = "dinov2_vitl14") -> Dict[str, Any]:
    """MoGe-1's network (configs/train/v1.json) on `backbone`."""
    return {
        "encoder": backbone, "remap_output": "exp", "intermediate_layers": 4,
        "dim_upsample": [256, 128, 64], "dim_times_res_block_hidden": 2, "num_res_blocks": 2,
        "num_tokens_range": [1200, 2500], "last_conv_channels": 32, "last_conv_size": 1,
    }


def _conv_stack(dim_in: List[int], dim_out: List[Optional[int]], num_res_blocks: List[int]) -> Dict[str, Any]:
    return {
        "dim_in": dim_in, "dim_out": dim_out, "dim_res_blocks": [1024, 256, 128, 64, 32],
        "num_res_blocks": num_res_blocks, "res_block_in_norm": "none", "res_block_hidden_norm": "none",
        "resamplers": ["conv_transpose", "conv_transpose", "conv_transpose", "bilinear"],
    }


def released_v2_config(backbone: str = "dinov2_vitl14") -> Dict[str, Any]:
    """MoGe-2's network (configs/train/v2.json) on `backbone`: its 4 tapped layers evenly spaced
    (ViT-L: 5, 11, 17, 23), every other width as released."""
    depth = BACKBONE_DEPTH[backbone]
    layers = [depth // 4 * (k + 1) - 1 for k in range(4)]
    head_in = [1024, 256, 128, 64, 32]

    def head(channels: int) -> Dict[str, Any]:
        return _conv_stack(head_in, [None, None, None, None, channels], [0, 1, 1, 1, 0])

    return {
        "encoder": {"backbone": backbone, "intermediate_layers": layers, "dim_out": 1024},
        "neck": dict(_conv_stack([1026, 2, 2, 2, 2], None, [0, 2, 2, 2, 0])),
        "points_head": head(3), "normal_head": head(3), "mask_head": head(1),
        "scale_head": {"dims": [1024, 1024, 1024, 1]},
        "remap_output": "exp", "num_tokens_range": [1200, 3600],
    }
