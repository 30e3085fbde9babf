"""Make the parity fixtures of the Symphonies decoder and of mmcv's deformable attention:
tests/fixtures/symphonies/decoder_parity.pt and tests/fixtures/symphonies/msda_parity.pt.

Runs the ORIGINAL SymphoniesDecoder, DeformableSqueezeAttention and LearnableSqueezePositionalEncoding
(ssc_pl/models/..., imported from --symphonies_repo) and mmcv 2.1's MultiScaleDeformableAttention
(imported from the mmcv sources at --mmcv_src) on CPU, with every parameter random (fixed seeds), on fixed
random inputs, and stores the configurations, inputs, state dicts and outputs. Not run by the test suite;
run it as

    PYTHONPATH=/work/ref/deps_symph:/work/ref/deps python tools/parity/make_symphonies_fixtures.py \\
        --symphonies_repo /work/ref/symphonies --mmcv_src /work/ref/mmcv_src --out tests/fixtures/symphonies

with the original's dependencies on PYTHONPATH: mmengine 0.10.3 with its own (addict, yapf, rich,
termcolor, ...) and opencv (mmcv imports cv2). --mmcv_src is a folder holding mmcv 2.1's Python sources
(its mmcv/ package), not built: get them with

    pip download mmcv==2.1.0 --no-deps --no-binary :all: && tar xzf mmcv-2.1.0.tar.gz   # --mmcv_src mmcv-2.1.0

What the script patches (only here, in memory):
  * mmcv._ext, mmcv's compiled extension (absent from the sources), is a stub module created by the
    script whose every function raises: mmcv's op modules only look their functions up when imported,
    and with all tensors on the CPU MultiScaleDeformableAttention takes its PyTorch path
    (multi_scale_deformable_attn_pytorch), so no compiled op runs.
  * ssc_pl and ssc_pl.models are registered as empty packages over their source folders: their
    __init__.py import the whole training stack (lightning, hydra, the data sets, every model), which
    the decoder does not need.
  * The decoder's scene_pos, hard-coded LearnableSqueezePositionalEncoding((128, 128, 2), squeeze_dims=
    (2, 2, 1)), is replaced after construction by one of the case's (scene_pos_shape, scene_pos_squeeze),
    sized for the small grids; dropout probabilities are set to 0.

decoder_parity.pt: {case: {config, inputs, state_dict, eval_output, train_outputs, grads}} for
  nyu_like    scene (8, 8, 4), project_scale 1, downsample_z 1, 3 layers (ASPP after layer index 2),
              scene_pos (4, 4, 4) squeezed by (2, 2, 1), seed 0
  kitti_like  scene (16, 16, 8), project_scale 2, downsample_z 2 (decoder grid 8 x 8 x 2), 2 layers,
              scene_pos (4, 4, 2) squeezed by (2, 2, 1), seed 1; its state dict leaves out the ASPP
              weights (no layer reaches ASPP)
  config      embed_dims 16, num_classes 3, image_shape (32, 48), voxel_size 0.2, num_queries 8, ...
  inputs      queries (1, 8, 16), pred_pts (1, 8, 2) in (0, 1), feats [(1, 16, H / s, W / s), s = 4, 8, 16],
              depth (1, H, W), K (1, 3, 3) (the original's integer-pixel-centre convention), E (1, 4, 4)
              world -> camera, voxel_origin (1, 3), projected_pix (1, N, 2) int64 and fov_mask (1, N) bool
              of the projection grid's voxel centres (N voxels of scene_shape / project_scale)
  eval_output the last layer's logits in eval mode; train_outputs every layer's logits in train mode
  grads       of GRAD_KEYS after backward of sum_i (i + 1) * sum(train_outputs[i] * linspace(-1, 1))
msda_parity.pt:
  msda        mmcv MultiScaleDeformableAttention(16 dims, 2 heads, 3 levels, 3 points, batch_first) in eval:
              config, state_dict, value (2, 58, 16) over levels (6, 7), (3, 4), (2, 2), query / query_pos
              (2, 5, 16), reference_points (2, 5, 3, 2) (some outside [0, 1]), spatial_shapes,
              key_padding_mask (2, 58), output
  squeeze     the original DeformableSqueezeAttention(16 dims, 2 heads, 1 level, 4 points) in eval on a
              (4, 3, 5) volume: config, state_dict, value (1, 60, 16), query / query_pos (1, 7, 16),
              reference_points_xyz (1, 7, 3) (given to the original flipped to zyx), output
"""
import argparse
import os
import sys
import types
from typing import Dict, List, Tuple

import torch
from torch import nn

GRAD_KEYS = ("scene_pos.proj.weight", "layers.0.scene_query_cross_attn.attn.in_proj_bias",
             "layers.0.query_image_cross_defrom_attn.attn.sampling_offsets.weight",
             "voxel_proposal.attn.attn.value_proj.weight")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symphonies_repo", required=True, help="checkout of hustvl/Symphonies")
    parser.add_argument("--mmcv_src", required=True, help="folder holding mmcv 2.1's sources (its mmcv/ package)")
    parser.add_argument("--out", required=True, help="output folder of decoder_parity.pt and msda_parity.pt")
    args = parser.parse_args()
    sys.path[:0] = [os.path.abspath(args.mmcv_src), os.path.abspath(args.symphonies_repo)]
    os.makedirs(args.out, exist_ok=True)
    return args


def install_mmcv_ext_stub() -> None:
    """mmcv._ext as a module whose every (non-dunder) attribute is a function that raises."""
    def compiled_op(*args, **kwargs):
        raise RuntimeError("mmcv._ext stub: a compiled mmcv op was called")

    def getattr_(name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return compiled_op

    stub = types.ModuleType("mmcv._ext", "Stub of mmcv's compiled extension (make_symphonies_fixtures.py).")
    stub.__getattr__ = getattr_
    sys.modules["mmcv._ext"] = stub


def skip_package_inits(symphonies_repo: str) -> None:
    """ssc_pl and ssc_pl.models as empty packages over their source folders."""
    for name in ("ssc_pl", "ssc_pl.models"):
        package = types.ModuleType(name)
        package.__path__ = [os.path.join(os.path.abspath(symphonies_repo), *name.split("."))]
        sys.modules[name] = package


def randomise(module: nn.Module, generator: torch.Generator) -> None:
    """Small random values everywhere (so zero-initialised parts are exercised too), norms near 1 / 0,
    larger sampling-offset biases, random BatchNorm running statistics."""
    norms = (nn.LayerNorm, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm)
    with torch.no_grad():
        for module_name, child in module.named_modules():
            for name, parameter in child.named_parameters(recurse=False):
                if isinstance(child, norms):
                    parameter.copy_((1.0 if name == "weight" else 0.0)
                                    + 0.1 * torch.randn(parameter.shape, generator=generator))
                elif module_name.endswith("sampling_offsets") and name == "bias":
                    parameter.copy_(1.5 * torch.randn(parameter.shape, generator=generator))
                else:
                    parameter.copy_(0.2 * torch.randn(parameter.shape, generator=generator))
            for name, buffer in child.named_buffers(recurse=False):
                if name == "running_mean":
                    buffer.copy_(0.1 * torch.randn(buffer.shape, generator=generator))
                elif name == "running_var":
                    buffer.copy_(0.5 + torch.rand(buffer.shape, generator=generator))


def no_dropout(module: nn.Module) -> None:
    for child in module.modules():
        if isinstance(child, nn.Dropout):
            child.p = 0.0


def rotation(a: float, b: float, c: float) -> torch.Tensor:
    """Rz(c) @ Ry(b) @ Rx(a)."""
    a, b, c = torch.tensor(a), torch.tensor(b), torch.tensor(c)
    rx = torch.tensor([[1, 0, 0], [0, a.cos(), -a.sin()], [0, a.sin(), a.cos()]])
    ry = torch.tensor([[b.cos(), 0, b.sin()], [0, 1, 0], [-b.sin(), 0, b.cos()]])
    rz = torch.tensor([[c.cos(), -c.sin(), 0], [c.sin(), c.cos(), 0], [0, 0, 1]])
    return rz @ ry @ rx


def make_inputs(generator: torch.Generator, scene_shape: Tuple[int, int, int], project_scale: int,
                image_shape: Tuple[int, int], embed: int, num_queries: int, voxel_size: float) -> Dict:
    """The decoder's inputs: a random depth map seen by a rotated camera, the grid origin put where about
    half of its lifted pixels fall inside the grid, and the projection grid's voxel centres projected as the
    original's vox2pix does (centre -> pixel index)."""
    height, width = image_shape
    K = torch.tensor([[40.0, 0, width / 2], [0, 40.0, height / 2], [0, 0, 1]])  # integer pixel centres
    E = torch.eye(4)  # world -> camera
    E[:3, :3] = rotation(0.3, -0.2, 0.1)
    E[:3, 3] = torch.tensor([0.2, -0.1, 0.3])
    depth = 1.0 + 1.5 * torch.rand(1, height, width, generator=generator)
    v, u = torch.meshgrid(torch.arange(height).float(), torch.arange(width).float(), indexing="ij")
    pixels = torch.stack([u, v, torch.ones_like(u)]).reshape(3, -1) * depth.reshape(1, -1)
    camera = torch.linalg.inv(K) @ pixels
    world = (torch.linalg.inv(E) @ torch.cat([camera, torch.ones(1, camera.shape[1])]))[:3]
    origin = world.quantile(0.3, dim=1) - 0.1
    projection_shape = [s // project_scale for s in scene_shape]
    size = voxel_size * project_scale
    index = torch.stack(torch.meshgrid(*[torch.arange(s).float() for s in projection_shape], indexing="ij"), -1)
    centres = origin + (index.reshape(-1, 3) + 0.5) * size
    centres_camera = (E @ torch.cat([centres.t(), torch.ones(1, centres.shape[0])]))[:3]
    projected = K @ centres_camera
    projected = (projected[:2] / projected[2:]).t().floor().long()
    fov = ((projected[:, 0] >= 0) & (projected[:, 0] < width) & (projected[:, 1] >= 0) & (projected[:, 1] < height)
           & (centres_camera[2] > 0))
    feats = [torch.randn(1, embed, height // s, width // s, generator=generator) for s in (4, 8, 16)]
    return {"queries": torch.randn(1, num_queries, embed, generator=generator),
            "pred_pts": torch.rand(1, num_queries, 2, generator=generator) * 0.98 + 0.01,
            "feats": feats, "depth": depth, "K": K[None], "E": E[None], "voxel_origin": origin[None],
            "projected_pix": projected[None], "fov_mask": fov[None]}


def decoder_case(name: str, scene_shape: Tuple[int, int, int], project_scale: int, downsample_z: int,
                 pos_shape: Tuple[int, int, int], pos_squeeze: Tuple[int, int, int], num_layers: int,
                 seed: int) -> Dict:
    from ssc_pl.models.decoders.symphonies_decoder import SymphoniesDecoder
    from ssc_pl.models.layers import LearnableSqueezePositionalEncoding

    generator = torch.Generator().manual_seed(seed)
    embed, classes, image_shape, voxel_size, num_queries = 16, 3, (32, 48), 0.2, 8
    torch.manual_seed(seed)
    decoder = SymphoniesDecoder(embed, classes, num_layers=num_layers, num_levels=3, scene_shape=list(scene_shape),
                                project_scale=project_scale, image_shape=list(image_shape), voxel_size=voxel_size,
                                downsample_z=downsample_z)
    decoder.scene_pos = LearnableSqueezePositionalEncoding(pos_shape, embed, squeeze_dims=pos_squeeze)
    randomise(decoder, generator)
    no_dropout(decoder)
    inputs = make_inputs(generator, scene_shape, project_scale, image_shape, embed, num_queries, voxel_size)
    state = {k: v.clone() for k, v in decoder.state_dict().items()}

    def run() -> List[torch.Tensor]:
        pred = {"queries": inputs["queries"].clone(), "pred_pts": inputs["pred_pts"].clone()}
        return decoder(pred, [f.clone() for f in inputs["feats"]], None, inputs["depth"], inputs["K"], inputs["E"],
                       inputs["voxel_origin"], inputs["projected_pix"].clone(), inputs["fov_mask"].clone())

    decoder.eval()
    with torch.no_grad():
        eval_out = run()
    decoder.train()
    train_out = run()
    loss = sum((o * torch.linspace(-1, 1, o.numel()).view_as(o)).sum() * (i + 1) for i, o in enumerate(train_out))
    loss.backward()
    grads = {k: p.grad.clone() for k, p in decoder.named_parameters() if p.grad is not None and k in GRAD_KEYS}
    missing_grad = [k for k, p in decoder.named_parameters() if p.grad is None]
    fov = inputs["fov_mask"]
    print(name, "fov voxels", int(fov.sum()), "/", fov.numel(), "eval", tuple(eval_out[-1].shape),
          "train outputs", len(train_out), "params without grad", missing_grad)
    if num_layers <= 2:  # ASPP runs after layer index 2 only: its (unused) weights are left out to save space
        state = {k: v for k, v in state.items() if not k.startswith("aspp.")}
    return {
        "config": {"embed_dims": embed, "num_classes": classes, "scene_shape": tuple(scene_shape),
                   "project_scale": project_scale, "image_shape": image_shape, "downsample_z": downsample_z,
                   "num_layers": num_layers, "scene_pos_shape": tuple(pos_shape),
                   "scene_pos_squeeze": tuple(pos_squeeze), "voxel_size": voxel_size, "num_queries": num_queries},
        "inputs": inputs, "state_dict": state,
        "eval_output": eval_out[-1].detach(), "train_outputs": [o.detach() for o in train_out],
        "grads": grads,
    }


def msda_case() -> Dict:
    from mmcv.ops import MultiScaleDeformableAttention
    from ssc_pl.models.layers import DeformableSqueezeAttention

    generator = torch.Generator().manual_seed(3)
    torch.manual_seed(3)
    attn = MultiScaleDeformableAttention(16, 2, 3, 3, batch_first=True)
    randomise(attn, generator)
    attn.eval()
    shapes = torch.tensor([[6, 7], [3, 4], [2, 2]])
    starts = torch.cat([shapes.new_zeros(1), shapes.prod(1).cumsum(0)[:-1]])
    value = torch.randn(2, int(shapes.prod(1).sum()), 16, generator=generator)
    query = torch.randn(2, 5, 16, generator=generator)
    pos = torch.randn(2, 5, 16, generator=generator)
    ref = torch.rand(2, 5, 3, 2, generator=generator) * 1.4 - 0.2  # some outside [0, 1]
    mask = torch.rand(2, value.shape[1], generator=generator) < 0.2
    with torch.no_grad():
        out = attn(query, value=value, query_pos=pos, reference_points=ref, spatial_shapes=shapes,
                   level_start_index=starts, key_padding_mask=mask)

    squeeze = DeformableSqueezeAttention(16, 2, 1, 4, batch_first=True)
    randomise(squeeze, generator)
    squeeze.eval()
    volume_shape = torch.tensor([[4, 3, 5]])
    volume = torch.randn(1, 60, 16, generator=generator)
    squeeze_query = torch.randn(1, 7, 16, generator=generator)
    squeeze_pos = torch.randn(1, 7, 16, generator=generator)
    ref_xyz = torch.rand(1, 7, 1, 3, generator=generator)
    with torch.no_grad():
        squeeze_out = squeeze(squeeze_query, volume, query_pos=squeeze_pos,
                              reference_points=torch.flip(ref_xyz, dims=[-1]), spatial_shapes=volume_shape,
                              level_start_index=torch.tensor([0]))
    return {"msda": {"config": {"embed_dims": 16, "num_heads": 2, "num_levels": 3, "num_points": 3},
                     "state_dict": attn.state_dict(), "value": value, "query": query, "query_pos": pos,
                     "reference_points": ref, "spatial_shapes": shapes, "key_padding_mask": mask, "output": out},
            "squeeze": {"config": {"embed_dims": 16, "num_heads": 2, "num_points": 4, "volume_shape": (4, 3, 5)},
                        "state_dict": squeeze.state_dict(), "value": volume, "query": squeeze_query,
                        "query_pos": squeeze_pos, "reference_points_xyz": ref_xyz[:, :, 0], "output": squeeze_out}}


def main() -> None:
    args = parse_args()
    install_mmcv_ext_stub()
    skip_package_inits(args.symphonies_repo)
    fixtures = {
        "decoder_parity.pt": {
            "nyu_like": decoder_case("nyu_like", (8, 8, 4), 1, 1, (4, 4, 4), (2, 2, 1), 3, seed=0),
            "kitti_like": decoder_case("kitti_like", (16, 16, 8), 2, 2, (4, 4, 2), (2, 2, 1), 2, seed=1),
        },
        "msda_parity.pt": msda_case(),
    }
    for name, fixture in fixtures.items():
        path = os.path.join(args.out, name)
        torch.save(fixture, path)
        print(f"wrote {path}: {os.path.getsize(path) / 1024:.0f} kB")


if __name__ == "__main__":
    main()
