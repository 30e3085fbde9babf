"""Benchmark MoGe's networks: training images/s and inference ms/image at given token counts.

    python tools/bench_moge.py [--backbones vits14 vitb14 vitl14] [--tokens 1200 2500]
                               [--dtypes fp32 bf16] [--version v1] [--batch-size 1] [--steps 2]

Randomly initialised networks (no downloads) with the released head of `--version` (v1: MoGe-1's
configs/train/v1.json head on each backbone; v2: MoGe-2's neck and heads, their widths scaled to
the backbone as the released ViT-S/B/L MoGe-2 models are) on random 4:3 images whose size gives
exactly the token count (420 x 560 px at 1200 tokens, 602 x 812 at 2500), on CUDA when available.
For each backbone, token count and dtype (fp32, or bf16 autocast), each in its own process so that
peak memory is its own, it prints:
- the parameter count;
- training images/s: MoGeModel forward in TRAINING mode with the released loss terms of a synthetic
  sample (global, local at levels 4 / 16 / 64, normal, mask) + backward + AdamW step, over
  `--steps` steps after one warm-up step;
- inference ms/image: `inference.infer` (network, focal / shift recovery, depth) at batch 1 under
  no_grad, over `--steps` passes after one warm-up pass; GFLOP/image counted by torch's
  FlopCounterMode on one more pass;
- peak resident memory of the process (CPU) or peak allocated memory (CUDA), in MiB.
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from typing import Any, Dict, Tuple

import torch
from bench_timing import device_name, flops_of, peak_memory_mib, seconds_per_call, training_step

BACKBONES = ("vits14", "vitb14", "vitl14")
ASPECT = 4 / 3  # width / height of the benchmark images


def image_size(num_tokens: int, aspect: float = ASPECT) -> Tuple[int, int]:
    """(H, W) in pixels of an image the network sees at exactly its own resolution for `num_tokens`."""
    return round(math.sqrt(num_tokens / aspect)) * 14, round(math.sqrt(num_tokens * aspect)) * 14


def network_config(version: str, backbone: str) -> Dict[str, Any]:
    """The released network config of `version` with the DINOv2 `backbone` (no weights)."""
    from recon_trainer_plugins.moge.released_configs import released_v1_config, released_v2_config

    released = released_v1_config if version == "v1" else released_v2_config
    return released(f"dinov2_{backbone}")


def random_batch(batch_size: int, size: Tuple[int, int], device: torch.device):
    """A MoGeBatch of random images over a tilted plane with a sky band (+inf depth)."""
    from recon_trainer_plugins.moge.batch import MoGeBatch

    height, width = size
    ys = torch.linspace(0, 1, height, device=device)[:, None].expand(height, width)
    depth = (2.0 + ys * 3.0).expand(batch_size, height, width).clone()
    depth[:, : height // 8] = math.inf
    intrinsics = torch.tensor([[0.8, 0, 0.5], [0, 0.8 * ASPECT, 0.5], [0, 0, 1]], device=device)
    return MoGeBatch(
        image=torch.rand(batch_size, 3, height, width, device=device),
        depth=depth,
        depth_mask_fin=torch.isfinite(depth),
        depth_mask_inf=torch.isinf(depth),
        intrinsics=intrinsics.expand(batch_size, 3, 3).clone(),
        label_type=["synthetic"] * batch_size,
        is_metric=torch.zeros(batch_size, dtype=torch.bool, device=device),
    )


def bench_one(version: str, backbone: str, num_tokens: int, dtype_name: str, batch_size: int, steps: int) -> dict:
    """Time training steps and inference passes of one configuration."""
    from recon_trainer_plugins.moge.inference import infer
    from recon_trainer_plugins.moge.loss_config import default_losses
    from recon_trainer_plugins.moge.model import MoGeModel

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype_name == "bf16")
    torch.manual_seed(0)
    losses = default_losses("v1")
    if version == "v2":  # the v2 terms of its synthetic type "A", under v1's label name
        losses["synthetic"] = default_losses("v2")["A"]
    model = MoGeModel(version=version, network=network_config(version, backbone), losses=losses,
                      low_resolution_training_steps=0).to(device)
    model.net.num_tokens_range = (num_tokens, num_tokens)
    n_params = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    size = image_size(num_tokens)
    batch = random_batch(batch_size, size, device)
    train_step = training_step(model, batch, optimizer, autocast, before=lambda: model.on_train_step_start(0, 0))
    model.train()
    train_images_per_s = batch_size / seconds_per_call(train_step, steps, device)

    model.eval()
    image = batch.image[:1]
    with torch.no_grad(), autocast:
        gflop = flops_of(lambda: infer(model.net, image, num_tokens=num_tokens), device) / 1e9
        infer_ms = 1000 * seconds_per_call(lambda: infer(model.net, image, num_tokens=num_tokens), steps, device)
    return {
        "backbone": backbone, "tokens": num_tokens, "size": f"{size[0]}x{size[1]}", "dtype": dtype_name,
        "device": device_name(device), "params_m": n_params / 1e6, "train_images_per_s": train_images_per_s,
        "infer_ms": infer_ms, "infer_gflop": gflop, "peak_mib": peak_memory_mib(device),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--version", choices=["v1", "v2"], default="v1")
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=list(BACKBONES))
    parser.add_argument("--tokens", nargs="+", type=int, default=[1200, 2500])
    parser.add_argument("--dtypes", nargs="+", choices=["fp32", "bf16"], default=["fp32", "bf16"])
    parser.add_argument("--batch-size", type=int, default=1, help="training batch size")
    parser.add_argument("--steps", type=int, default=2, help="timed training steps and inference passes")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: backbone:tokens:dtype, print JSON
    args = parser.parse_args()
    if args.one:
        backbone, tokens, dtype_name = args.one.split(":")
        print(json.dumps(bench_one(args.version, backbone, int(tokens), dtype_name, args.batch_size, args.steps)))
        return
    print(f"MoGe {args.version}, training batch {args.batch_size}, {args.steps} timed steps")
    print(f"{'backbone':8} {'tokens':>6} {'image':>9} {'dtype':5} {'params M':>8} {'train img/s':>11} "
          f"{'infer ms/img':>12} {'GFLOP/img':>9} {'peak MiB':>9}  device")
    for backbone in args.backbones:
        for tokens in args.tokens:
            for dtype_name in args.dtypes:
                command = [sys.executable, __file__, "--one", f"{backbone}:{tokens}:{dtype_name}", "--version",
                           args.version, "--batch-size", str(args.batch_size), "--steps", str(args.steps)]
                result = subprocess.run(command, capture_output=True, text=True)
                if result.returncode != 0:
                    print(f"{backbone} {tokens} {dtype_name}: failed\n{result.stderr[-2000:]}")
                    continue
                r = json.loads(result.stdout.strip().splitlines()[-1])
                print(f"{r['backbone']:8} {r['tokens']:6d} {r['size']:>9} {r['dtype']:5} {r['params_m']:8.1f} "
                      f"{r['train_images_per_s']:11.3f} {r['infer_ms']:12.0f} {r['infer_gflop']:9.0f} "
                      f"{r['peak_mib']:9.0f}  {r['device']}")


if __name__ == "__main__":
    main()
