"""Benchmark Spann3R: training sequences/s and online reconstruction FPS, with peak memory.

    python tools/bench_spann3r.py [--models tiny vitl] [--dtypes fp32 bf16] [--frames 5]
                                  [--batch-size 1] [--steps 2] [--size 224]
    python tools/bench_spann3r.py --models tiny --bptt 5 10 20 40 --detach-every 5

Randomly initialised networks (no downloads), on CUDA when available:
- tiny: the +preset=spann3r_quick widths (encoder 96 x 4 layers x 3 heads, decoders 64 x 3 x 2,
  linear head, one memory block) with patch 16;
- vitl: the paper's network, DUSt3R_ViTLarge_BaseDecoder_512_dpt (ViT-L encoder, two ViT-B
  decoders, DPT heads) with Spann3R's memory (6 blocks of 1024, working memory 5, long-term 4000).
Images are `--size` x `--size` (Spann3R: 224, 196 tokens), random, over a plane seen from moving
cameras. For each model and dtype (fp32, or bf16 autocast), each in its own process so that peak
memory is its own, it prints the parameter count; training sequences/s: Spann3RModel forward in
TRAINING mode on `--frames`-frame sequences with Spann3R's loss + backward + AdamW step, over
`--steps` steps after one warm-up step; online FPS: frames / wall time of the eval-mode forward
(memory with similarity skipping, as Spann3R's eval.py times it) on a `--frames`-frame sequence;
peak resident memory (CPU) or peak allocated memory (CUDA), in MiB.
With --bptt, it times training on sequences of each length instead, with the memory and carried
features detached every `--detach-every` frames (truncated back-propagation) and without (0).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from typing import Any, Dict

import torch
from bench_timing import device_name, peak_memory_mib, seconds_per_call, training_step

MODELS: Dict[str, Dict[str, Any]] = {
    "tiny": {"network": {"patch_size": 16, "enc_embed_dim": 96, "enc_depth": 4, "enc_num_heads": 3,
                         "dec_embed_dim": 64, "dec_depth": 3, "dec_num_heads": 2, "head_type": "linear"},
             "memory": {"value_depth": 1, "value_num_heads": 3}},
    "vitl": {"network": {}, "memory": {}},  # {}: the released DUSt3R 512 DPT and Spann3R's memory
}


def random_batch(batch_size: int, frames: int, size: int, device: torch.device):
    """A PointMapBatch of random images over a plane z = 3 m seen by cameras moving along x."""
    from recon_trainer_plugins.spann3r.batch import PointMapBatch

    b, t, h, w = batch_size, frames, size, size
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    points = torch.stack([xs, ys, torch.full_like(xs, 3.0)], dim=-1).expand(b, t, h, w, 3).clone()
    pose = torch.eye(4).expand(b, t, 4, 4).clone()
    pose[..., 0, 3] = torch.linspace(0, 0.5, t)
    return PointMapBatch(images=torch.rand(b, t, 3, h, w) * 2 - 1, rgb=torch.rand(b, t, 3, h, w),
                         true_shape=torch.tensor([h, w]).expand(b, t, 2).clone(), depth=points[..., 2].clone(),
                         intrinsics=torch.eye(3).expand(b, t, 3, 3).clone(), camera_to_world=pose, points=points,
                         valid=torch.ones(b, t, h, w, dtype=torch.bool), dataset=["bench"] * b,
                         sequence=["plane"] * b).to(device)


def build(model_name: str, size: int, detach_every: int, device: torch.device):
    from recon_trainer.config import expand_args_fields
    from recon_trainer_plugins.spann3r.model import Spann3RModel

    expand_args_fields(Spann3RModel)
    spec = MODELS[model_name]
    network = dict(spec["network"], img_size=[size, size]) if spec["network"] else {}
    return Spann3RModel(network=network, memory=spec["memory"], detach_every=detach_every).to(device)


def bench_one(model_name: str, dtype_name: str, batch_size: int, frames: int, steps: int, size: int,
              detach_every: int, online: bool) -> dict:
    """Time training steps (and online passes) of one configuration."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype_name == "bf16")
    torch.manual_seed(0)
    model = build(model_name, size, detach_every, device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    batch = random_batch(batch_size, frames, size, device)
    train_step = training_step(model, batch, optimizer, autocast)
    model.train()
    result = {"model": model_name, "dtype": dtype_name, "frames": frames, "detach_every": detach_every,
              "device": device_name(device), "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
              "train_seq_per_s": batch_size / seconds_per_call(train_step, steps, device)}
    if online:
        model.eval()
        single = batch.select([0])
        with torch.no_grad(), autocast:
            seconds = seconds_per_call(lambda: model.reconstruct(single), steps, device)
        result["online_fps"] = frames / seconds
    result["peak_mib"] = peak_memory_mib(device)
    return result


def run(args: argparse.Namespace, model_name: str, dtype_name: str, frames: int, detach_every: int,
        online: bool) -> dict:
    command = [sys.executable, __file__, "--one", json.dumps([model_name, dtype_name, frames, detach_every, online]),
               "--batch-size", str(args.batch_size), "--steps", str(args.steps), "--size", str(args.size)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        return {"error": result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "failed"}
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--dtypes", nargs="+", choices=["fp32", "bf16"], default=["fp32", "bf16"])
    parser.add_argument("--frames", type=int, default=5, help="frames per sequence (Spann3R trains on 5)")
    parser.add_argument("--batch-size", type=int, default=1, help="training sequences per batch")
    parser.add_argument("--steps", type=int, default=2, help="timed training steps and online passes")
    parser.add_argument("--size", type=int, default=224, help="image side in pixels")
    parser.add_argument("--bptt", nargs="+", type=int, default=[], help="sequence lengths for the truncated-BPTT table")
    parser.add_argument("--detach-every", type=int, default=5, help="with --bptt: detach every K frames")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: one configuration as JSON, print JSON
    args = parser.parse_args()
    if args.one:
        model_name, dtype_name, frames, detach_every, online = json.loads(args.one)
        print(json.dumps(bench_one(model_name, dtype_name, args.batch_size, frames, args.steps, args.size,
                                   detach_every, online)))
        return
    print(f"Spann3R at {args.size}x{args.size}, training batch {args.batch_size}, {args.steps} timed steps")
    if args.bptt:
        print(f"{'model':5} {'dtype':5} {'frames':>6} {'detach':>6} {'train seq/s':>11} {'peak MiB':>9}  device")
        for model_name in args.models:
            for dtype_name in args.dtypes:
                for frames in args.bptt:
                    for detach in (0, args.detach_every):
                        r = run(args, model_name, dtype_name, frames, detach, online=False)
                        if "error" in r:
                            print(f"{model_name:5} {dtype_name:5} {frames:6d} {detach:6d}  failed: {r['error']}")
                            continue
                        print(f"{model_name:5} {dtype_name:5} {frames:6d} {detach:6d} {r['train_seq_per_s']:11.3f} "
                              f"{r['peak_mib']:9.0f}  {r['device']}")
        return
    print(f"{'model':5} {'dtype':5} {'params M':>8} {'frames':>6} {'train seq/s':>11} {'online FPS':>10} "
          f"{'peak MiB':>9}  device")
    for model_name in args.models:
        for dtype_name in args.dtypes:
            r = run(args, model_name, dtype_name, args.frames, 0, online=True)
            if "error" in r:
                print(f"{model_name:5} {dtype_name:5}  failed: {r['error']}")
                continue
            print(f"{model_name:5} {dtype_name:5} {r['params_m']:8.1f} {r['frames']:6d} {r['train_seq_per_s']:11.3f} "
                  f"{r['online_fps']:10.2f} {r['peak_mib']:9.0f}  {r['device']}")


if __name__ == "__main__":
    main()
