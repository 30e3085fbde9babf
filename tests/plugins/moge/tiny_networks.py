"""Tiny MoGe network configs (random weights, a 3-block 32-wide DINOv2) for the tests."""

TINY_BACKBONE = {"embed_dim": 32, "depth": 3, "num_heads": 2, "mlp_ratio": 2.0, "img_size": 56}


def v1_config(**changes):
    config = {"encoder": "dinov2_vits14", "intermediate_layers": 2, "dim_proj": 16, "dim_upsample": [16, 8, 8],
              "num_res_blocks": 1, "res_block_norm": "layer_norm", "last_conv_channels": 8,
              "num_tokens_range": [30, 60], "remap_output": "exp", "backbone_override": TINY_BACKBONE}
    config.update(changes)
    return config


def head_config(dim_out):
    return {"dim_in": [16, 8, 8], "dim_out": [None, None, dim_out], "dim_res_blocks": [8, 8, 8], "num_res_blocks": 1,
            "resamplers": ["conv_transpose", "bilinear"], "res_block_in_norm": "none", "res_block_hidden_norm": "none"}


def v2_config(**changes):
    config = {
        "encoder": {"backbone": "dinov2_vits14_reg", "intermediate_layers": [0, 2], "dim_out": 16},
        "neck": {"dim_in": [18, 2, 2], "dim_out": None, "dim_res_blocks": [16, 8, 8], "num_res_blocks": 1,
                 "resamplers": ["conv_transpose", "bilinear"], "res_block_in_norm": "layer_norm",
                 "res_block_hidden_norm": "layer_norm"},
        "points_head": head_config(3), "mask_head": head_config(1), "normal_head": head_config(3),
        "scale_head": {"dims": [32, 8, 1]}, "remap_output": "exp", "num_tokens_range": [30, 60],
        "backbone_override": TINY_BACKBONE,
    }
    config.update(changes)
    return config
