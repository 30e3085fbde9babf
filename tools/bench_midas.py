"""Benchmark MidasModel's encoders: training images/s and inference ms/image at 384 x 384.

    python tools/bench_midas.py [--encoders v21_large resnet50 dpt_large] [--batch-size 2] [--steps 3]
                                [--dtypes fp32 bf16] [--size 384]

Randomly initialised models (no downloads) on random images, on CUDA when available. For each
encoder config and dtype (fp32, or bf16 autocast), each in its own process so that peak memory is
its own, it prints:
- the parameter count;
- training images/s: forward (TRAINING mode, MiDaS loss) + backward + Adam step at `--batch-size`,
  over `--steps` steps after one warm-up step;
- inference ms/image: batch 1 in evaluation mode under no_grad, over `--steps` passes after one
  warm-up pass; GFLOP/image counted by torch's FlopCounterMode on one more pass;
- peak resident memory of the process (CPU) or peak allocated memory (CUDA), in MiB.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from typing import Dict

import torch
from bench_timing import device_name, flops_of, peak_memory_mib, seconds_per_call, training_step

# name -> MidasModel fields: MiDaS v2.1 large (ResNeXt-101 32x8d WSL), a ResNet-50 variant, DPT-Large.
ENCODERS: Dict[str, dict] = {
    "v21_large": {"encoder_class_type": "ResNetEncoder", "encoder": {"arch": "resnext101_32x8d"}},
    "resnet50": {"encoder_class_type": "ResNetEncoder", "encoder": {"arch": "resnet50"}},
    "dpt_large": {
        "encoder_class_type": "ViTEncoder",
        "encoder": {"arch": "vit_large_patch16_384", "hooks": (5, 11, 17, 23)},
    },
}


def build_model(name: str, features: int, size: int) -> torch.nn.Module:
    """The MidasModel of ENCODERS[name] with `features` decoder channels and net_size `size` (random weights)."""
    from recon_trainer_plugins.midas.model import MidasModel
    from recon_trainer.config import get_default_args

    spec = ENCODERS[name]
    cfg = get_default_args(MidasModel)
    cfg.features, cfg.net_size, cfg.encoder_class_type = features, size, spec["encoder_class_type"]
    encoder_args = getattr(cfg, f"encoder_{spec['encoder_class_type']}_args")
    for key, value in spec["encoder"].items():
        setattr(encoder_args, key, value)
    return MidasModel(**cfg)


def bench_one(name: str, dtype_name: str, batch_size: int, steps: int, size: int, features: int) -> dict:
    """Time training steps and inference passes of one encoder config in one dtype."""
    from recon_trainer_plugins.midas.batch import DepthBatch

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype_name == "bf16")
    torch.manual_seed(0)
    model = build_model(name, features, size).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    train_batch = DepthBatch(
        image_rgb=torch.rand(batch_size, 3, size, size, device=device),
        disparity_map=torch.rand(batch_size, 1, size, size, device=device) + 0.1,
        depth_mask=torch.ones(batch_size, 1, size, size, device=device),
    )
    train_step = training_step(model, train_batch, optimizer, autocast)
    model.train()
    train_images_per_s = batch_size / seconds_per_call(train_step, steps, device)

    model.eval()
    image = DepthBatch(image_rgb=torch.rand(1, 3, size, size, device=device))
    with torch.no_grad(), autocast:
        gflop = flops_of(lambda: model(image), device) / 1e9
        infer_ms = 1000 * seconds_per_call(lambda: model(image), steps, device)
    return {
        "encoder": name,
        "dtype": dtype_name,
        "device": device_name(device),
        "params_m": n_params / 1e6,
        "train_images_per_s": train_images_per_s,
        "infer_ms": infer_ms,
        "infer_gflop": gflop,
        "peak_mib": peak_memory_mib(device),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--encoders", nargs="+", default=list(ENCODERS), choices=list(ENCODERS))
    parser.add_argument("--dtypes", nargs="+", choices=["fp32", "bf16"], default=["fp32", "bf16"])
    parser.add_argument("--batch-size", type=int, default=2, help="training batch size")
    parser.add_argument("--steps", type=int, default=3, help="timed training steps and inference passes")
    parser.add_argument("--size", type=int, default=384, help="square image side (pixels, a multiple of 32)")
    parser.add_argument("--features", type=int, default=256, help="decoder channels")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one encoder:dtype, print JSON
    args = parser.parse_args()
    if args.one:
        name, dtype_name = args.one.split(":")
        print(json.dumps(bench_one(name, dtype_name, args.batch_size, args.steps, args.size, args.features)))
        return
    print(f"images {args.size}x{args.size}, training batch {args.batch_size}, {args.steps} timed steps, "
          f"features {args.features}")
    print(f"{'encoder':10} {'dtype':5} {'params M':>8} {'train img/s':>11} {'infer ms/img':>12} "
          f"{'GFLOP/img':>9} {'peak MiB':>9}  device")
    for name in args.encoders:
        for dtype_name in args.dtypes:
            command = [sys.executable, __file__, "--one", f"{name}:{dtype_name}", "--batch-size", str(args.batch_size),
                       "--steps", str(args.steps), "--size", str(args.size), "--features", str(args.features)]
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                print(f"{name} {dtype_name}: failed\n{result.stderr[-2000:]}")
                continue
            r = json.loads(result.stdout.strip().splitlines()[-1])
            print(f"{r['encoder']:10} {r['dtype']:5} {r['params_m']:8.1f} {r['train_images_per_s']:11.2f} "
                  f"{r['infer_ms']:12.1f} {r['infer_gflop']:9.1f} {r['peak_mib']:9.0f}  {r['device']}")


if __name__ == "__main__":
    main()
