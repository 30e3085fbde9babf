"""Make the parity fixture of the Spann3R network: tests/fixtures/spann3r/spann3r_seq3.pt.

Builds the ORIGINAL Spann3R (spann3r/model.py, imported from --spann3r_repo) on a tiny random DUSt3R
(TINY_DUST3R: patch 8, encoder 32 wide and 1 deep, decoder 16 wide and 2 deep, linear head; written as a DUSt3R .pth
file for the constructor, read under torch.serialization.safe_globals([argparse.Namespace]) since
its loader calls torch.load with torch's default weights_only), gives every parameter random
values (norms included), runs it on fixed random 16 x 24 frames and stores the inputs, the state
dict (Spann3R's key layout) and the outputs. Not run by the test suite; run it as

    OMP_NUM_THREADS=1 PYTHONPATH=/work/ref/deps python tools/parity/make_spann3r_fixtures.py \\
        --spann3r_repo /work/ref/spann3r --out tests/fixtures/spann3r

What the script patches in the original (only here, in memory), because it hard-codes the ViT-L /
ViT-B widths and the memory sizes:
  * Spann3R.set_memory_encoder: called with enc_embed_dim = the DUSt3R decoder width with use_feat,
    else the encoder width (original: 768 / 1024), out_dim = encoder width (1024), enc_depth =
    VALUE_DEPTH (6) and enc_num_heads = the case's value heads (16); afterwards norm_q / norm_k /
    norm_v are replaced by LayerNorm(encoder width) (original: LayerNorm(1024)).
  * Spann3R.set_attn_head: enc_embed_dim = encoder + decoder width (1024 + 768), out_dim = encoder width.
  * spann3r.model.SpatialMemory: a subclass whose DEFAULT long_mem_size, work_mem_size, attn_thresh
    and sim_thresh are the case's (arguments the original passes, such as training's attn_thresh=0,
    still win) and which records its similarity skips and prunes (then calls the original code).

Stored keys (tensors float32 unless said):
  dust3r_model_string    the tiny DUSt3R's args.model;  value_depth (int)
  model                  the state dict (use_feat False; its value encoder has 16 heads / 8 with RoPE)
  use_feat_model         the value_encoder / value_norm / value_out entries of the use_feat variant
                         (its other weights are `model`'s)
  cases: {name: {memory: MemoryArchitecture fields, mode: "eval" | "train", images (B, T, 3, H, W),
          true_shape (B, T, 2) int64, ref_points (B, T - 1, H, W, 3), ref_conf, tgt_points, tgt_conf,
          events: [("skip", step) | ("prune", step, tokens before, tokens after)], tokens (int)}}
    seq3        B 2, T 3, eval, the original memory settings
    seq3_train  the same frames in train mode (memory_dropout 0)
    seq3_rope   eval with mem_pos_enc (value heads 8)
    seq3_feat   eval with use_feat
    long        B 1, T 12 (frame 6 repeats frame 5), eval with work_mem_size 1, long_mem_size 39,
                attn_thresh 0.02 and sim_thresh SIM_THRESH: frames skipped, prunes of unprotected tokens
  offline: order (int64), ref_points... as above for the first 4 frames of `long`: the original's
           offline_reconstruction (pairs from dust3r.inference on the complete graph) with the
           original memory settings, steps in visiting order
  read: query (2, 6, 32), mem_k (2, 18, 32), mem_v, norm weights (norm_q_weight, ...), attn_thresh,
        out (2, 6, 32), mem_attn (2, 18): the original SpatialMemory.memory_read (inference)
"""
import argparse
import os

import torch
from reference import reference_args
from torch import nn

INF = float("inf")
TINY_DUST3R_KWARGS = {"pos_embed": "RoPE100", "img_size": (16, 24), "head_type": "linear", "output_mode": "pts3d",
                      "depth_mode": ("exp", -INF, INF), "conf_mode": ("exp", 1, INF), "enc_embed_dim": 32,
                      "enc_depth": 1, "enc_num_heads": 2, "dec_embed_dim": 16, "dec_depth": 2, "dec_num_heads": 2,
                      "patch_size": 8, "landscape_only": False}
TINY_DUST3R = "AsymmetricCroCo3DStereo(" + ", ".join(f"{k}={v!r}" for k, v in TINY_DUST3R_KWARGS.items()) + ")"
ENC, DEC = 32, 16
VALUE_DEPTH = 2
HEIGHT, WIDTH = 16, 24
SIM_THRESH = 0.8
ORIGINAL_MEMORY = {"long_mem_size": 4000, "work_mem_size": 5, "attn_thresh": 5e-4, "sim_thresh": 0.95}
LONG_MEMORY = {"long_mem_size": 39, "work_mem_size": 1, "attn_thresh": 0.02, "sim_thresh": SIM_THRESH}


class Settings:
    """What the patched original reads while a model is built and run."""
    value_heads = 16
    memory = dict(ORIGINAL_MEMORY)
    events: list = []
    step = 0


def patch_original(model_module) -> None:
    """The patches listed in the module docstring."""
    spann3r = model_module.Spann3R
    original_memory_encoder, original_attn_head = spann3r.set_memory_encoder, spann3r.set_attn_head

    def set_memory_encoder(self, enc_embed_dim=1024, memory_dropout=0.15, **_):
        original_memory_encoder(self, enc_depth=VALUE_DEPTH, enc_embed_dim=DEC if self.use_feat else ENC,
                                out_dim=ENC, enc_num_heads=Settings.value_heads, memory_dropout=memory_dropout)
        self.norm_q, self.norm_k, self.norm_v = nn.LayerNorm(ENC), nn.LayerNorm(ENC), nn.LayerNorm(ENC)

    def set_attn_head(self, **_):
        original_attn_head(self, enc_embed_dim=ENC + DEC, out_dim=ENC)

    spann3r.set_memory_encoder, spann3r.set_attn_head = set_memory_encoder, set_attn_head

    class RecordingMemory(model_module.SpatialMemory):
        def __init__(self, norm_q, norm_k, norm_v, **kwargs):
            super().__init__(norm_q, norm_k, norm_v, **{**Settings.memory, **kwargs})

        def check_sim(self, feat_k, thresh=0.7):
            similar = super().check_sim(feat_k, thresh)
            if similar:
                Settings.events.append(("skip", Settings.step))
            return similar

        def memory_prune(self):
            before = self.mem_k.shape[1]
            super().memory_prune()
            Settings.events.append(("prune", Settings.step, before, self.mem_k.shape[1]))

        def add_mem_check(self, *args, **kwargs):
            super().add_mem_check(*args, **kwargs)
            Settings.step += 1

    model_module.SpatialMemory = RecordingMemory


def tiny_dust3r_file(path: str) -> None:
    """A DUSt3R checkpoint of TINY_DUST3R with random weights, for the original constructor."""
    from dust3r.model import AsymmetricCroCo3DStereo
    network = AsymmetricCroCo3DStereo(**TINY_DUST3R_KWARGS)
    torch.save({"model": network.state_dict(), "args": argparse.Namespace(model=TINY_DUST3R)}, path)


def build(model_module, dust3r_path: str, use_feat: bool = False, mem_pos_enc: bool = False,
          value_heads: int = 16):
    Settings.value_heads = value_heads
    with torch.serialization.safe_globals([argparse.Namespace]):
        return model_module.Spann3R(dus3r_name=dust3r_path, use_feat=use_feat, mem_pos_enc=mem_pos_enc,
                                    memory_dropout=0.0)


def randomise(model: nn.Module, seed: int) -> None:
    """Every parameter random (fixed seed): weights about their initial scale (the heads' halved, so
    that points stay within about 10), norms near 1 / 0."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            if "norm" in name or name.endswith("mask_token"):
                parameter.copy_((1.0 if name.endswith("weight") and parameter.ndim == 1 else 0.0) + 0.2 * noise)
            elif parameter.ndim == 1:
                parameter.copy_(0.05 * noise)
            else:
                fan_in = parameter[0].numel()
                parameter.copy_(noise / fan_in ** 0.5 * (0.5 if name.startswith("dust3r.downstream_head") else 1.0))


def frames(batch: int, count: int, seed: int) -> torch.Tensor:
    """(batch, count, 3, H, W) smooth random images in [-1, 1]."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch * count, 3, HEIGHT // 4, WIDTH // 4, generator=generator)
    fine = torch.nn.functional.interpolate(coarse, size=(HEIGHT, WIDTH), mode="bilinear", align_corners=False)
    noise = 0.1 * torch.randn(fine.shape, generator=generator)
    return (2 * fine - 1 + noise).clamp(-1, 1).reshape(batch, count, 3, HEIGHT, WIDTH)


def views(images: torch.Tensor) -> list:
    batch = images.shape[0]
    shape = torch.tensor([[HEIGHT, WIDTH]] * batch)
    return [{"img": images[:, k], "true_shape": shape, "idx": k, "instance": str(k)} for k in range(images.shape[1])]


def stacked(preds_all: list) -> dict:
    """The original's preds_all [(res1, res2) per step] as ref/tgt tensors (B, steps, ...)."""
    def key(res):
        return "pts3d" if "pts3d" in res else "pts3d_in_other_view"
    return {"ref_points": torch.stack([r1[key(r1)] for r1, _ in preds_all], 1),
            "ref_conf": torch.stack([r1["conf"] for r1, _ in preds_all], 1),
            "tgt_points": torch.stack([r2[key(r2)] for _, r2 in preds_all], 1),
            "tgt_conf": torch.stack([r2["conf"] for _, r2 in preds_all], 1)}


def run_case(model, images: torch.Tensor, mode: str, memory: dict, **fields) -> dict:
    Settings.memory, Settings.events, Settings.step = dict(memory), [], 0
    model.train(mode == "train")
    with torch.no_grad():
        _, preds_all, sp_mem = model(views(images), return_memory=True)
    arch = {"work_mem_size": memory["work_mem_size"], "long_mem_size": memory["long_mem_size"],
            "attn_thresh": memory["attn_thresh"], "sim_thresh": memory["sim_thresh"], "memory_dropout": 0.0,
            "value_depth": VALUE_DEPTH, "prune_keeps_time_order": False, **fields}
    print(f"{mode}: events {Settings.events}, tokens {sp_mem.mem_k.shape[1]}")
    return {"memory": arch, "mode": mode, "images": images, "true_shape": views(images)[0]["true_shape"][:, None]
            .expand(-1, images.shape[1], -1).contiguous(), **stacked(preds_all), "events": list(Settings.events),
            "tokens": int(sp_mem.mem_k.shape[1])}


def similarities(model_module, model, images: torch.Tensor) -> None:
    """Print the similarity of every frame's key with the working memory (to choose SIM_THRESH)."""
    Settings.memory, Settings.events, Settings.step = dict(LONG_MEMORY, sim_thresh=1.0), [], 0
    model.eval()
    keys = []
    original_add = model_module.SpatialMemory.add_mem

    def add(self, feat_k, feat_v, *rest):
        keys.append(feat_k)
        original_add(self, feat_k, feat_v, *rest)
    model_module.SpatialMemory.add_mem = add
    with torch.no_grad():
        model(views(images))
    model_module.SpatialMemory.add_mem = original_add
    normed = [torch.nn.functional.normalize(k, dim=-1) for k in keys]
    for i in range(1, len(normed)):
        print(f"key {i} vs {i - 1}: {float((normed[i] * normed[i - 1]).sum(-1).mean()):.4f}")


def offline_case(model, images: torch.Tensor) -> dict:
    from dust3r.image_pairs import make_pairs
    from dust3r.inference import inference
    Settings.memory, Settings.events, Settings.step = dict(ORIGINAL_MEMORY), [], 0
    model.eval()
    batch = views(images)
    pairs = make_pairs(batch, scene_graph="complete", prefilter=None, symmetrize=True)
    with torch.no_grad():
        output = inference(pairs, model.dust3r, "cpu", batch_size=2, verbose=False)
        _, preds_all, order = model.offline_reconstruction(batch, output)
    print(f"offline order {order}")
    return {"order": torch.tensor([int(i) for i in order]), **stacked(preds_all)}


def read_case(model_module) -> dict:
    generator = torch.Generator().manual_seed(5)
    norms = [nn.LayerNorm(ENC) for _ in range(3)]
    with torch.no_grad():
        for norm in norms:
            norm.weight.copy_(1 + 0.2 * torch.randn(ENC, generator=generator))
            norm.bias.copy_(0.2 * torch.randn(ENC, generator=generator))
    memory = model_module.SpatialMemory(*norms, attn_thresh=0.05)
    query = torch.randn(2, 6, ENC, generator=generator)
    memory.mem_k = torch.randn(2, 18, ENC, generator=generator)
    memory.mem_v = torch.randn(2, 18, ENC, generator=generator)
    memory.mem_attn = torch.zeros(2, 18, 1)
    with torch.no_grad():
        out = memory.memory_read(query, res=True)
    return {"query": query, "mem_k": memory.mem_k, "mem_v": memory.mem_v, "attn_thresh": 0.05, "out": out,
            "mem_attn": memory.mem_attn[..., 0],
            **{f"norm_{n}_{p}": getattr(norm, p).detach().clone() for n, norm in zip("qkv", norms)
               for p in ("weight", "bias")}}


def main() -> None:
    args = reference_args(__doc__.splitlines()[0], "spann3r_seq3.pt", "spann3r_repo",
                          "checkout of HengyiWang/spann3r (with dust3r/, croco/)")
    import spann3r.model as model_module
    patch_original(model_module)
    dust3r_path = os.path.join(args.out, "_tiny_dust3r.pth")
    torch.manual_seed(0)
    tiny_dust3r_file(dust3r_path)
    model = build(model_module, dust3r_path)
    rope_model = build(model_module, dust3r_path, mem_pos_enc=True, value_heads=8)
    feat_model = build(model_module, dust3r_path, use_feat=True)
    os.remove(dust3r_path)
    randomise(model, seed=1)
    state = model.state_dict()
    rope_model.load_state_dict(state)
    randomise(feat_model, seed=2)
    feat_own = {k: v for k, v in feat_model.state_dict().items() if k.startswith(("value_encoder", "value_norm",
                                                                                   "value_out"))}
    feat_model.load_state_dict({**{k: v for k, v in state.items() if not k.startswith("pos_patch_embed")},
                                **feat_own})

    seq3 = frames(2, 3, seed=3)
    long = frames(1, 12, seed=4)
    long[:, 6] = long[:, 5]
    similarities(model_module, model, long)
    cases = {
        "seq3": run_case(model, seq3, "eval", ORIGINAL_MEMORY),
        "seq3_train": run_case(model, seq3, "train", ORIGINAL_MEMORY),
        "seq3_rope": run_case(rope_model, seq3, "eval", ORIGINAL_MEMORY, mem_pos_enc=True, value_num_heads=8),
        "seq3_feat": run_case(feat_model, seq3, "eval", ORIGINAL_MEMORY, use_feat=True),
        "long": run_case(model, long, "eval", LONG_MEMORY),
    }
    fixture = {"dust3r_model_string": TINY_DUST3R, "value_depth": VALUE_DEPTH, "model": state,
               "use_feat_model": feat_own, "cases": cases, "offline": offline_case(model, long[:, :4]),
               "read": read_case(model_module)}
    path = os.path.join(args.out, "spann3r_seq3.pt")
    torch.save(fixture, path)
    print(f"wrote {path}: {os.path.getsize(path) / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
