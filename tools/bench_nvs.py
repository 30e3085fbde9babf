"""Benchmark training and rendering of the novel-view-synthesis methods' default configs.

    python tools/bench_nvs.py [--configs nerf srn idr nerformer nerf_quick] [--steps 3] [--precision fp32 bf16]

Each name in `--configs` is a key of CONFIGS: a config file plus overrides. For each (each in its
own process, so peak memory is its own) it prints:
- training rays/s over `--steps` optimizer steps (after one warm-up step), counting the rays of
  every rendered target view;
- the training step's FLOPs (counted by torch's FlopCounterMode) per second, as a fraction of
  the machine's fp32 (or bf16) matmul FLOP/s measured at the start;
- the time to render one full test image at the config's render size (on CPU, an image over
  `--max-render-pixels` is timed at a smaller size and scaled by pixel count; marked "~");
- peak resident memory of the process (CPU) or peak allocated memory (CUDA).
With no dataset path the configs fall back to the built-in scene (cached under a temporary folder
unless RECON_TRAINER_CACHE is set); pass dataset overrides after `--` to time real data.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

MODEL = "model_factory_ReconModelFactory_args.model_GenericModel_args"
# name -> (config file, overrides): each method's default config, and NeRF's CPU preset.
CONFIGS = {
    "nerf": ("repro_singleseq_nerf", []),
    "nerf_blender": ("repro_singleseq_nerf_blender", []),
    "nerf_quick": ("repro_singleseq_nerf_blender", ["+preset=quick"]),
    "srn": ("repro_singleseq_srn", []),
    "idr": ("repro_singleseq_idr", []),
    # Rendering 16000 rays x 48 points x 9 source views at once needs over 24 GiB: smaller render
    # chunks (the same image, less memory) let it run on a CPU machine.
    "nerformer": ("repro_singleseq_nerformer", [f"{MODEL}.chunk_size_grid=2000"]),
}


def matmul_flops_per_second(dtype: torch.dtype, device: torch.device, size: int = 2048, repeats: int = 10) -> float:
    """Measured FLOP/s of a square matmul (2 n^3 FLOPs each)."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    a @ b
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    return 2 * size**3 * repeats / (time.perf_counter() - start)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_one(name: str, steps: int, precision: str, max_render_pixels: int, extra: list) -> dict:
    """Build the experiment of CONFIGS[name], time training steps and one full render."""
    from recon_trainer.config import expand_args_fields
    from recon_trainer.config.discovery import discover_plugins
    from recon_trainer.config.hydra_app import compose_config, store_root_config
    from recon_trainer.evaluation.nvs_evaluator import withhold_target
    from recon_trainer.experiment import Experiment
    from recon_trainer.models.base import EvaluationMode

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    peak_matmul = matmul_flops_per_second(dtype, device)
    discover_plugins()
    expand_args_fields(Experiment)
    store_root_config(Experiment)
    config_name, overrides = CONFIGS[name]
    with tempfile.TemporaryDirectory() as exp_dir:
        cfg = compose_config(config_name, overrides + extra + [f"exp_dir={exp_dir}"])
        experiment = Experiment(**cfg)
        _, loaders = experiment.data_source.get_datasets_and_dataloaders()
        model = experiment.model_factory(exp_dir=exp_dir).to(device)
        optimizer, _ = experiment.optimizer_factory(model=model, exp_dir=exp_dir)
        batches = iter(loaders.train)
        rays_per_step = 0

        def train_step() -> None:
            nonlocal rays_per_step
            batch = next(batches).to(device)
            rays_per_step = model.raysampler.n_rays_per_image_sampled_from_mask * model.n_targets(batch, training=True)
            with torch.autocast(device.type, dtype=dtype, enabled=precision == "bf16"):
                preds = model(batch, evaluation_mode=EvaluationMode.TRAINING)
            optimizer.zero_grad()
            preds["objective"].backward()
            optimizer.step()

        model.train()
        train_step()  # warm-up
        with FlopCounterMode(display=False) as counter:
            train_step()
        step_flops = counter.get_total_flops()
        _sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            train_step()
        _sync(device)
        step_seconds = (time.perf_counter() - start) / steps

        height, width = int(model.render_image_height), int(model.render_image_width)
        scale = min(1.0, math.sqrt(max_render_pixels / (height * width))) if device.type == "cpu" else 1.0
        size = (max(8, int(height * scale)), max(8, int(width * scale)))
        model.render_image_height, model.render_image_width = size
        model.raysampler.image_height, model.raysampler.image_width = size
        batch = withhold_target(next(iter(loaders.test)).to(device))
        model.eval()
        with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=precision == "bf16"):
            start = time.perf_counter()
            model(batch, evaluation_mode=EvaluationMode.EVALUATION)
            _sync(device)
            rendered_seconds = time.perf_counter() - start
        pixels_rendered = model.render_image_height * model.render_image_width
        render_seconds = rendered_seconds * height * width / pixels_rendered
    if device.type == "cuda":
        peak_memory = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_memory = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "config": name,
        "precision": precision,
        "device": device.type,
        "rays_per_step": int(rays_per_step),
        "step_s": step_seconds,
        "rays_per_s": rays_per_step / step_seconds,
        "step_gflop": step_flops / 1e9,
        "achieved_gflops": step_flops / step_seconds / 1e9,
        "matmul_gflops": peak_matmul / 1e9,
        "fraction_of_matmul": step_flops / step_seconds / peak_matmul,
        "render_size": f"{height}x{width}",
        "render_s": render_seconds,
        "render_extrapolated": pixels_rendered != height * width,
        "peak_memory_mib": peak_memory,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default = ["nerf_quick", "nerf", "srn", "idr", "nerformer"]
    parser.add_argument("--configs", nargs="+", default=default, choices=sorted(CONFIGS))
    parser.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "bf16"])
    parser.add_argument("--steps", type=int, default=3, help="timed optimizer steps per config")
    parser.add_argument("--max-render-pixels", type=int, default=128 * 128, help="CPU render budget (pixels)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one config, print JSON
    parser.add_argument("overrides", nargs="*", help="config overrides for every config (after --)")
    args = parser.parse_args()
    if args.one:
        name, precision = args.one.split(":")
        print(json.dumps(bench_one(name, args.steps, precision, args.max_render_pixels, args.overrides)))
        return
    os.environ.setdefault("RECON_TRAINER_CACHE", os.path.join(tempfile.gettempdir(), "recon_trainer_bench_cache"))
    header = (
        f"{'config':12} {'prec':5} {'rays/step':>9} {'s/step':>8} {'rays/s':>9} {'GFLOP/step':>10} "
        f"{'GFLOP/s':>8} {'of matmul':>9} {'render':>10} {'full render s':>13} {'peak MiB':>9}"
    )
    print(header)
    matmul = {}
    for name in args.configs:
        for precision in args.precision:
            command = [sys.executable, __file__, "--one", f"{name}:{precision}", "--steps", str(args.steps)]
            command += ["--max-render-pixels", str(args.max_render_pixels), "--", *args.overrides]
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                print(f"{name} {precision}: failed\n{result.stderr[-2000:]}")
                continue
            r = json.loads(result.stdout.strip().splitlines()[-1])
            matmul[(r["device"], r["precision"])] = r["matmul_gflops"]
            mark = "~" if r["render_extrapolated"] else " "
            print(
                f"{r['config']:12} {r['precision']:5} {r['rays_per_step']:9d} {r['step_s']:8.2f} "
                f"{r['rays_per_s']:9.0f} "
                f"{r['step_gflop']:10.1f} {r['achieved_gflops']:8.1f} {r['fraction_of_matmul']:9.1%} "
                f"{r['render_size']:>10} {mark}{r['render_s']:12.2f} {r['peak_memory_mib']:9.0f}"
            )
    for (device, precision), gflops in matmul.items():
        print(f"measured {precision} matmul on {device}: {gflops:.0f} GFLOP/s")


if __name__ == "__main__":
    main()
