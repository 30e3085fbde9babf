"""Speed and memory of Symphonies on the usage guide's NYU grids: training samples/s (forward +
backward + AdamW step, batch 1) and inference ms per sample, with the peak memory, for

    4cm: the 4 x 4 x 2 m crop at 4 cm (100 x 100 x 50 voxels), embedding width 64
    8cm: the same crop at 8 cm (50 x 50 x 25 voxels), embedding width 128

on one synthetic room in NYU's layout (640 x 480 image, label depth, ResNet-50 encoder, 3 layers,
100 queries), in fp32, bf16 autocast with the decoder in float32 (as the original) and bf16
throughout (decoder_fp32=false). The deformable attention runs in plain torch; where an mmcv
build with compiled ops is importable (CUDA only) it is timed too (--paths torch mmcv).

    python tools/bench_symphonies.py                       # both grids, fp32 and bf16, on the GPU if any
    python tools/bench_symphonies.py --grids 8cm --image-scale 0.5 --device cpu
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from typing import Dict

import torch
from bench_timing import device_name, peak_memory_mib, seconds_per_call, training_step
from recon_trainer_plugins.symphonies import deformable_attention
from recon_trainer_plugins.symphonies.batch import SSCBatchBuilder
from recon_trainer_plugins.symphonies.model import SymphoniesModel

from recon_trainer.cli.devices import device_from_option
from recon_trainer.data.ssc.nyu import NYUv2SSC
from recon_trainer.data.ssc.synthetic_rooms import write_synthetic_nyu
from recon_trainer.models.base import EvaluationMode

GRIDS: Dict[str, dict] = {
    "4cm": {"voxel_size": 0.04, "scene_shape": (100, 100, 50), "scene_pos_shape": (20, 20, 50), "embed_dims": 64},
    "8cm": {"voxel_size": 0.08, "scene_shape": (50, 50, 25), "scene_pos_shape": (10, 10, 25), "embed_dims": 128},
}


def bench(grid: str, dtype: str, path: str, args: argparse.Namespace, device: torch.device, root: str) -> str:
    settings = GRIDS[grid]
    dataset = NYUv2SSC(data_root=f"{root}/depthbin", label_root=f"{root}/preprocess/base", split="train",
                       voxel_size=settings["voxel_size"], extent="crop", image_scale=args.image_scale)
    batch = SSCBatchBuilder(frustum_size=8)([dataset[0]]).to(device)
    model = SymphoniesModel(scene_shape=settings["scene_shape"], image_shape=tuple(batch.image.shape[-2:]),
                            embed_dims=settings["embed_dims"], scene_pos_shape=settings["scene_pos_shape"],
                            scene_pos_squeeze=(5, 5, 1), decoder_fp32=dtype != "bf16-all").to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-4, eps=1e-3)
    deformable_attention.use_torch_path(path == "torch")
    autocast = (contextlib.nullcontext() if dtype == "fp32" else torch.autocast(device.type, dtype=torch.bfloat16))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    def infer() -> None:
        with torch.no_grad(), autocast:
            model(batch, EvaluationMode.EVALUATION)

    train_seconds = seconds_per_call(training_step(model, batch, optimizer, autocast), args.iters, device)
    model.eval()
    infer_seconds = seconds_per_call(infer, args.iters, device)
    h, w = batch.image.shape[-2:]
    return (f"| {grid} {tuple(settings['scene_shape'])} | {h}x{w} | {settings['embed_dims']} | {dtype} | {path} | "
            f"{1.0 / train_seconds:.3f} | {1000 * infer_seconds:.0f} | {peak_memory_mib(device) / 1024:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grids", nargs="+", default=list(GRIDS), choices=list(GRIDS))
    # bf16: autocast with the decoder in float32 as the original; bf16-all: the decoder in bf16 too (decoder_fp32=false)
    dtypes = ["fp32", "bf16", "bf16-all"]
    parser.add_argument("--dtypes", nargs="+", default=dtypes, choices=dtypes)
    parser.add_argument("--paths", nargs="+", default=["torch", "mmcv"], choices=["torch", "mmcv"])
    parser.add_argument("--image-scale", type=float, default=1.0, help="image, depth and K scaled by this")
    parser.add_argument("--iters", type=int, default=2, help="timed calls after one untimed warm-up call")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    args = parser.parse_args()
    device = device_from_option(args.device)
    paths = [p for p in args.paths if p == "torch" or (device.type == "cuda" and
                                                        deformable_attention.mmcv_deformable_attention_function())]
    skipped = sorted(set(args.paths) - set(paths))
    print(f"device {device_name(device)}, torch {torch.__version__}, {torch.get_num_threads()} threads"
          + (f"; skipped {skipped} (no mmcv build with compiled ops, or not on CUDA)" if skipped else ""))
    print("| grid (voxels) | image | width | dtype | attention | train samples/s | inference ms/sample | peak GiB |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as root:
        write_synthetic_nyu(f"{root}/depthbin", f"{root}/preprocess/base", "train", ["NYU0001_0000"])
        for grid in args.grids:
            for dtype in args.dtypes:
                for path in paths:
                    print(bench(grid, dtype, path, args, device, root), flush=True)


if __name__ == "__main__":
    sys.exit(main())
