"""Make the parity fixtures of the DUSt3R network: tests/fixtures/spann3r/dust3r_pair_linear.pt and dust3r_pair_dpt.pt.

Builds two tiny AsymmetricCroCo3DStereo models with the ORIGINAL code (imported from --dust3r_repo,
naver/dust3r with croco/ inside; its RoPE runs the pure-torch fallback, no cuRoPE), perturbs the
random weights (every 1-D parameter: biases, LayerNorms, and mask_token get N(0, 0.05) noise, so
that loading them matters), runs its forward on fixed random pairs in eval mode and stores:

  model_string          "AsymmetricCroCo3DStereo(...)" as a released file's args.model would hold it
                        (the DPT one adds our dpt_feature_dim / dpt_layer_dims, see below)
  model                 the original's state dict (its key layout)
  cases                 {name: {img1, img2 (B, 3, H, W) in [-1, 1]; true_shape1, true_shape2 (B, 2) int64;
                        pts3d_1 (B, h, w, 3), conf_1 (B, h, w): res1; pts3d_2, conf_2: res2 (pts3d_in_other_view)}}
  released_model_string, released_shapes
                        a released model's args.model (linear: the 224 linear model; dpt: the 512 DPT
                        model, README settings) and {key: shape} of the original built from it on
                        the meta device (no weights)

Linear: ManyAR_PatchEmbed, patch 8, enc 32 x 2 blocks x 4 heads, dec 16 x 2 x 2 heads, mlp_ratio 2;
one batch of two 32x48 tensors whose second sample's true_shape is portrait (48, 32), which
exercises ManyAR's transposed embedding and transpose_to_landscape's mixed batches.
DPT: PatchEmbedDust3R, patch 16, enc 16 x 2 x 2, dec 8 x 12 x 1 (the original asserts dec_depth > 9),
landscape_only; a landscape 32x48 pair (a 2 x 3 grid: DPT's odd crop after refinenet4) and a
portrait 48x32 pair (returned transposed). The original hard-codes the DPT widths (feature_dim
256, last_dim 128, layer_dims 96/192/384/768); this script replaces dust3r.heads.dpt_head's
DPTOutputAdapter_fix by a subclass given feature_dim 8, last_dim 4, layer_dims 4/8/8/8
(DPT_OVERRIDE) to keep the file small. Not run by the test suite; run it as

    PYTHONPATH=/work/ref/deps OMP_NUM_THREADS=1 python tools/parity/make_dust3r_fixtures.py \\
        --dust3r_repo /work/ref/dust3r --out tests/fixtures/spann3r

(einops and huggingface_hub importable, as the original needs).
"""
import math
import os

import torch
from reference import reference_args

INF = math.inf
COMMON = {"pos_embed": "RoPE100", "output_mode": "pts3d", "depth_mode": ("exp", -INF, INF),
          "conf_mode": ("exp", 1, INF)}
LINEAR = dict(COMMON, patch_embed_cls="ManyAR_PatchEmbed", img_size=(32, 48), patch_size=8, head_type="linear",
              enc_embed_dim=32, enc_depth=2, enc_num_heads=4, dec_embed_dim=16, dec_depth=2, dec_num_heads=2,
              mlp_ratio=2)
DPT = dict(COMMON, patch_embed_cls="PatchEmbedDust3R", img_size=(32, 48), patch_size=16, head_type="dpt",
           enc_embed_dim=16, enc_depth=2, enc_num_heads=2, dec_embed_dim=8, dec_depth=12, dec_num_heads=1,
           landscape_only=True)
DPT_OVERRIDE = {"feature_dim": 8, "last_dim": 4, "layer_dims": [4, 8, 8, 8]}
OUR_DPT_KEYWORDS = {"dpt_feature_dim": 8, "dpt_layer_dims": (4, 8, 8, 8)}
RELEASED = {
    "linear": dict(COMMON, img_size=(224, 224), head_type="linear", enc_embed_dim=1024, enc_depth=24,
                   enc_num_heads=16, dec_embed_dim=768, dec_depth=12, dec_num_heads=12),
    "dpt": dict(COMMON, patch_embed_cls="ManyAR_PatchEmbed", img_size=(512, 512), head_type="dpt",
                enc_embed_dim=1024, enc_depth=24, enc_num_heads=16, dec_embed_dim=768, dec_depth=12,
                dec_num_heads=12),
}


def model_string(kwargs: dict) -> str:
    """The constructor call as a released file's args.model spells it (repr of inf is 'inf')."""
    return "AsymmetricCroCo3DStereo(" + ", ".join(f"{key}={value!r}" for key, value in kwargs.items()) + ")"


def perturb(model: torch.nn.Module, generator: torch.Generator) -> None:
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.ndim == 1 or name == "mask_token":
                parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))


def run_case(model, img1, img2, true_shape1, true_shape2) -> dict:
    views = [{"img": img, "true_shape": shape, "instance": [f"{tag}{i}" for i in range(len(img))]}
             for img, shape, tag in ((img1, true_shape1, "a"), (img2, true_shape2, "b"))]
    with torch.no_grad():
        res1, res2 = model(*views)
    return {"img1": img1, "img2": img2, "true_shape1": true_shape1, "true_shape2": true_shape2,
            "pts3d_1": res1["pts3d"], "conf_1": res1["conf"], "pts3d_2": res2["pts3d_in_other_view"],
            "conf_2": res2["conf"]}


def released_shapes(model_class, kwargs: dict) -> dict:
    with torch.device("meta"):
        model = model_class(**kwargs)
    return {key: list(value.shape) for key, value in model.state_dict().items()}


def images(generator: torch.Generator, batch: int, height: int, width: int) -> torch.Tensor:
    return torch.rand(batch, 3, height, width, generator=generator) * 2 - 1


def main() -> None:
    args = reference_args(__doc__.splitlines()[0], "dust3r_pair_linear.pt and dust3r_pair_dpt.pt", "dust3r_repo",
                          "checkout of naver/dust3r (with croco/) to import")
    import dust3r.heads.dpt_head as dpt_head
    from dust3r.model import AsymmetricCroCo3DStereo

    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    linear = AsymmetricCroCo3DStereo(**LINEAR).eval()
    perturb(linear, generator)
    mixed = torch.tensor([[32, 48], [48, 32]])
    linear_fixture = {
        "model_string": model_string(LINEAR), "model": linear.state_dict(),
        "cases": {"mixed": run_case(linear, images(generator, 2, 32, 48), images(generator, 2, 32, 48),
                                    mixed, mixed.flip(0))},
        "released_model_string": model_string(RELEASED["linear"]),
        "released_shapes": released_shapes(AsymmetricCroCo3DStereo, RELEASED["linear"]),
    }

    original_adapter = dpt_head.DPTOutputAdapter_fix

    class TinyAdapter(original_adapter):
        def __init__(self, **kwargs):
            super().__init__(**dict(kwargs, **DPT_OVERRIDE))

    dpt_head.DPTOutputAdapter_fix = TinyAdapter
    dpt = AsymmetricCroCo3DStereo(**DPT).eval()
    dpt_head.DPTOutputAdapter_fix = original_adapter
    perturb(dpt, generator)
    landscape, portrait = torch.tensor([[32, 48]]), torch.tensor([[48, 32]])
    dpt_fixture = {
        "model_string": model_string(dict(DPT, **OUR_DPT_KEYWORDS)), "model": dpt.state_dict(),
        "cases": {"landscape": run_case(dpt, images(generator, 1, 32, 48), images(generator, 1, 32, 48),
                                        landscape, landscape),
                  "portrait": run_case(dpt, images(generator, 1, 48, 32), images(generator, 1, 48, 32),
                                       portrait, portrait)},
        "released_model_string": model_string(RELEASED["dpt"]),
        "released_shapes": released_shapes(AsymmetricCroCo3DStereo, RELEASED["dpt"]),
    }
    for name, fixture in (("dust3r_pair_linear.pt", linear_fixture), ("dust3r_pair_dpt.pt", dpt_fixture)):
        path = os.path.join(args.out, name)
        torch.save(fixture, path)
        print(f"{path}: {os.path.getsize(path) / 1e3:.0f} kB")


if __name__ == "__main__":
    main()
