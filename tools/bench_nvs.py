"""Benchmark training and rendering of the novel-view-synthesis methods' default configs.

    python tools/bench_nvs.py [--configs nerf srn idr nerformer nerf_quick] [--steps 3] [--precision fp32 bf16]
        [--reference] [--implicitron PYTORCH3D_REPO]

Each name in `--configs` is a key of CONFIGS: a config file plus overrides. For each (each in its
own process, so peak memory is its own) it prints:
- training rays/s over `--steps` optimizer steps (after warm-up), counting the rays of every
  rendered target view (the batches are loaded before the timing);
- the training step's FLOPs, counted by torch's FlopCounterMode on the plain reference paths
  (fused fast paths rearrange the arithmetic; the count is then the model's FLOPs by layer; the
  steps cycle through two batches, and where their sizes differ, e.g. NerFormer's 2-10 frames,
  the mean over the timed steps is printed and each step is compared with its own count),
  and the FLOPs per second as a fraction of the machine's matmul FLOP/s (fp32, or bf16 under
  `--precision bf16`: a 2048 x 2048 matmul). The matmul rate is measured right before each timed
  step and each step is compared with its own measurement (a shared machine's rate changes from
  minute to minute); the median over the steps is printed, per wall second and per second of the
  process's CPU time per thread ("CPU t", which leaves out time other processes hold the cores);
- the time to render one full test image at the config's render size (on CPU, an image over
  `--max-render-pixels` is timed at a smaller size and scaled by pixel count; marked "~") and the
  render's fraction of the matmul rate, the same two ways;
- peak resident memory of the process (CPU) or peak allocated memory (CUDA).
`--reference` times the plain reference paths instead of the fused fast paths.
`--implicitron PYTORCH3D_REPO` adds, for the configs in IMPLICITRON_CONFIGS, a row for
Implicitron's own GenericModel on the same setting (its repro_singleseq_nerf model settings read
from the checkout's projects/implicitron_trainer/configs, our built-in scene's batches, an Adam
step); run the script with a Python where pytorch3d imports.
With no dataset path the configs fall back to the built-in scene (cached under a temporary folder
unless RECON_TRAINER_CACHE is set); pass dataset overrides after `--` to time real data.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List, Tuple

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
    "nerformer": ("repro_singleseq_nerformer", []),
    "nerformer_compiled": ("repro_singleseq_nerformer", [
        f"{MODEL}.implicit_function_NeRFormerImplicitFunction_args.compile_transformer_on_cpu=true"]),
}
# configs that --implicitron also times with Implicitron's GenericModel (its repro_singleseq_nerf)
IMPLICITRON_CONFIGS = ("nerf",)


def matmul_flops_per_second(
    dtype: torch.dtype, device: torch.device, size: int = 2048, repeats: int = 10
) -> Tuple[float, float]:
    """Measured FLOP/s of a square matmul (2 n^3 FLOPs each): (per wall second, per thread-second of
    this process's CPU time; on CUDA both are per wall second)."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    a @ b
    flops = 2 * size**3 * repeats
    wall, cpu = _timed(lambda: [a @ b for _ in range(repeats)], device)
    return flops / wall, flops / cpu


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(call: Callable[[], object], device: torch.device) -> Tuple[float, float]:
    """(wall seconds, CPU seconds of this process per thread) of one call. The CPU time leaves
    out the time other processes hold the cores, so it is the steadier measure on a shared
    machine; on CUDA it is the wall time."""
    _sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    call()
    _sync(device)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return wall, (cpu / torch.get_num_threads() if device.type == "cpu" else wall)


def _register_fused_linear_flops() -> None:
    """Let FlopCounterMode count oneDNN's fused linear (used by fused fast paths): 2 M K N."""
    from torch.utils.flop_counter import register_flop_formula

    if not hasattr(torch.ops.mkldnn, "_linear_pointwise"):
        return

    @register_flop_formula(torch.ops.mkldnn._linear_pointwise)
    def _linear_pointwise_flops(x_shape, w_shape, *args, out_shape=None, **kwargs) -> int:
        return 2 * math.prod(x_shape[:-1]) * w_shape[0] * w_shape[1]


def _reference_paths():
    """Context in which fused fast paths take their plain reference path (the FLOPs by layer count)."""
    from recon_trainer.models.mlp import reference_paths

    return reference_paths()


def _median(values: List[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _experiment(name: str, extra: list, exp_dir: str):
    """The Experiment of CONFIGS[name] with the `extra` overrides, writing to exp_dir."""
    from recon_trainer.config import expand_args_fields
    from recon_trainer.config.discovery import discover_plugins
    from recon_trainer.config.hydra_app import compose_config, store_root_config
    from recon_trainer.experiment import Experiment

    discover_plugins()
    expand_args_fields(Experiment)
    store_root_config(Experiment)
    config_name, overrides = CONFIGS[name]
    cfg = compose_config(config_name, overrides + extra + [f"exp_dir={exp_dir}"])
    return Experiment(**cfg)


def bench_one(name: str, steps: int, precision: str, max_render_pixels: int, extra: list) -> dict:
    """Build the experiment of CONFIGS[name], time training steps and one full render."""
    from recon_trainer.evaluation.nvs_evaluator import withhold_target
    from recon_trainer.models.base import EvaluationMode

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    autocast = _autocast(precision, device)
    with tempfile.TemporaryDirectory() as exp_dir:
        experiment = _experiment(name, extra, exp_dir)
        _, loaders = experiment.data_source.get_datasets_and_dataloaders()
        model = experiment.model_factory(exp_dir=exp_dir).to(device)
        optimizer, _ = experiment.optimizer_factory(model=model, exp_dir=exp_dir)
        batches = iter(loaders.train)
        train_batches = [next(batches).to(device) for _ in range(2)]
        rays_per_step = model.raysampler.n_rays_per_image_sampled_from_mask * model.n_targets(train_batches[0], True)

        def train_step(index: int) -> None:
            with autocast():
                preds = model(train_batches[index % len(train_batches)], evaluation_mode=EvaluationMode.TRAINING)
            optimizer.zero_grad()
            preds["objective"].backward()
            optimizer.step()

        full_size = int(model.render_image_height), int(model.render_image_width)
        size = _render_size(full_size, max_render_pixels, device)
        model.render_image_height, model.render_image_width = size
        model.raysampler.image_height, model.raysampler.image_width = size
        test_batch = withhold_target(next(iter(loaders.test)).to(device))

        def render() -> None:
            with torch.no_grad(), autocast():
                model(test_batch, evaluation_mode=EvaluationMode.EVALUATION)

        return _measure(name, precision, device, model, train_step, render, rays_per_step, full_size, size, steps)


def bench_implicitron(
    pytorch3d_repo: str, name: str, steps: int, precision: str, max_render_pixels: int, extra: list
) -> dict:
    """Implicitron's own GenericModel on the same setting as CONFIGS[name] (a NeRF config): its
    repro_singleseq_nerf model settings (projects/implicitron_trainer/configs in the pytorch3d
    checkout, NeRF widths as its defaults), our built-in scene's batches, an Adam step."""
    from omegaconf import OmegaConf
    from pytorch3d.implicitron.models.generic_model import EvaluationMode, GenericModel
    from pytorch3d.implicitron.tools.config import expand_args_fields, get_default_args
    from pytorch3d.renderer import PerspectiveCameras

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    autocast = _autocast(precision, device)
    config_dir = os.path.join(pytorch3d_repo, "projects", "implicitron_trainer", "configs")
    expand_args_fields(GenericModel)
    model_args = get_default_args(GenericModel)
    for config in ("repro_base", "repro_singleseq_base", "repro_singleseq_nerf"):
        loaded = OmegaConf.load(os.path.join(config_dir, f"{config}.yaml"))
        section = loaded.get("model_factory_ImplicitronModelFactory_args", {}).get("model_GenericModel_args")
        if section is not None:
            model_args = OmegaConf.merge(model_args, section)
    with tempfile.TemporaryDirectory() as exp_dir:
        experiment = _experiment(name, extra, exp_dir)
        ours = experiment.model_factory(exp_dir=exp_dir)
        full_size = int(ours.render_image_height), int(ours.render_image_width)
        sampler_args = model_args.raysampler_AdaptiveRaySampler_args
        if (full_size, sampler_args.n_rays_per_image_sampled_from_mask) != (
            (model_args.render_image_height, model_args.render_image_width),
            ours.raysampler.n_rays_per_image_sampled_from_mask,
        ):
            raise ValueError(f"bench_nvs --implicitron: {name} is not Implicitron's repro_singleseq_nerf setting")
        del ours
        size = _render_size(full_size, max_render_pixels, device)
        model_args.render_image_height, model_args.render_image_width = size
        model = GenericModel(**model_args).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=5e-4)
        _, loaders = experiment.data_source.get_datasets_and_dataloaders()
        batches = iter(loaders.train)

        def implicitron_inputs(batch) -> dict:
            batch = batch.to(device)
            camera = batch.camera
            return {
                "image_rgb": batch.image_rgb,
                "fg_probability": batch.fg_probability,
                "mask_crop": batch.mask_crop,
                "camera": PerspectiveCameras(
                    R=camera.R, T=camera.T, focal_length=camera.focal_length,
                    principal_point=camera.principal_point, device=device,
                ),
            }

        train_batches = [implicitron_inputs(next(batches)) for _ in range(2)]
        test_batch = implicitron_inputs(next(iter(loaders.test)))
        test_batch["image_rgb"] = test_batch["fg_probability"] = test_batch["mask_crop"] = None
        n_targets = train_batches[0]["image_rgb"].shape[0]
        if model.n_train_target_views != -1:
            n_targets = min(model.n_train_target_views, n_targets)
        rays_per_step = sampler_args.n_rays_per_image_sampled_from_mask * n_targets

        def train_step(index: int) -> None:
            with autocast():
                preds = model(**train_batches[index % len(train_batches)], evaluation_mode=EvaluationMode.TRAINING)
            optimizer.zero_grad()
            preds["objective"].backward()
            optimizer.step()

        def render() -> None:
            with torch.no_grad(), autocast():
                model(**test_batch, evaluation_mode=EvaluationMode.EVALUATION)

        return _measure(
            f"{name}:Implicitron", precision, device, model, train_step, render, rays_per_step, full_size, size, steps
        )


def _autocast(precision: str, device: torch.device) -> Callable[[], contextlib.AbstractContextManager]:
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    return functools.partial(torch.autocast, device.type, dtype=dtype, enabled=precision == "bf16")


def _render_size(full_size: Tuple[int, int], max_render_pixels: int, device: torch.device) -> Tuple[int, int]:
    """The size a full render is timed at: on CPU, the largest of full_size's shape within the budget."""
    height, width = full_size
    scale = min(1.0, math.sqrt(max_render_pixels / (height * width))) if device.type == "cpu" else 1.0
    return max(8, int(height * scale)), max(8, int(width * scale))


def _measure(
    label: str,
    precision: str,
    device: torch.device,
    model: torch.nn.Module,
    train_step: Callable[[int], None],
    render: Callable[[], None],
    rays_per_step: int,
    full_size: Tuple[int, int],
    render_size: Tuple[int, int],
    steps: int,
) -> dict:
    """Time `steps` calls of train_step(i) (after a warm-up) and one render(), count their FLOPs
    (on the plain reference paths, i.e. by layer count) and return bench_one's result dict."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    _register_fused_linear_flops()
    model.train()
    train_step(0)  # warm-up
    step_flops, executed_flops = [], []
    for index in range(2):  # the two batches train_step cycles through (their sizes may differ)
        with _reference_paths(), FlopCounterMode(display=False) as counter:
            train_step(index)
        step_flops.append(counter.get_total_flops())
        with FlopCounterMode(display=False) as counter:
            train_step(index)
        executed_flops.append(counter.get_total_flops())
    timings = _time_steps(train_step, steps, step_flops, dtype, device)

    model.eval()
    render()  # warm-up
    with _reference_paths(), FlopCounterMode(display=False) as counter:
        render()
    render_flops = counter.get_total_flops()
    render_timings = _time_steps(lambda index: render(), 1, [render_flops], dtype, device)
    scale_to_full = full_size[0] * full_size[1] / (render_size[0] * render_size[1])
    if device.type == "cuda":
        peak_memory = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_memory = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    step_seconds = _median(timings["wall"])
    mean_flops = sum(step_flops[index % 2] for index in range(steps)) / steps  # of the timed steps
    return {
        "config": label,
        "precision": precision,
        "device": device.type,
        "rays_per_step": int(rays_per_step),
        "step_s": step_seconds,
        "rays_per_s": rays_per_step / step_seconds,
        "step_gflop": mean_flops / 1e9,
        "executed_step_gflop": sum(executed_flops[index % 2] for index in range(steps)) / steps / 1e9,
        "achieved_gflops": mean_flops / _median(timings["wall"]) / 1e9,
        "matmul_gflops": _median(timings["peak_wall"]) / 1e9,
        "fraction_of_matmul": _median(timings["fraction_wall"]),
        "fraction_of_matmul_cpu": _median(timings["fraction_cpu"]),
        "step_cpu_s": _median(timings["cpu"]),
        "render_size": f"{full_size[0]}x{full_size[1]}",
        "render_s": render_timings["wall"][0] * scale_to_full,
        "render_gflop": render_flops * scale_to_full / 1e9,
        "render_fraction_of_matmul": render_timings["fraction_wall"][0],
        "render_fraction_of_matmul_cpu": render_timings["fraction_cpu"][0],
        "render_extrapolated": scale_to_full != 1.0,
        "peak_memory_mib": peak_memory,
    }


def _time_steps(
    step: Callable[[int], None], steps: int, flops: List[float], dtype: torch.dtype, device: torch.device
) -> Dict[str, List[float]]:
    """Wall and per-thread CPU seconds of `steps` calls step(i), call i doing flops[i % len(flops)]
    FLOPs, each call right after a measurement of the matmul rate (on a shared machine the rate
    changes from minute to minute), and each call's FLOP rate as a fraction of that matmul rate."""
    keys = ("wall", "cpu", "peak_wall", "peak_cpu", "fraction_wall", "fraction_cpu")
    timings: Dict[str, List[float]] = {key: [] for key in keys}
    for index in range(steps):
        peak_wall, peak_cpu = matmul_flops_per_second(dtype, device, repeats=5)
        wall, cpu = _timed(lambda: step(index), device)
        call_flops = flops[index % len(flops)]
        values = (wall, cpu, peak_wall, peak_cpu, call_flops / wall / peak_wall, call_flops / cpu / peak_cpu)
        for key, value in zip(keys, values):
            timings[key].append(value)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default = ["nerf_quick", "nerf", "srn", "idr", "nerformer"]
    parser.add_argument("--configs", nargs="+", default=default, choices=sorted(CONFIGS))
    parser.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "bf16"])
    parser.add_argument("--steps", type=int, default=3, help="timed optimizer steps per config")
    parser.add_argument("--max-render-pixels", type=int, default=128 * 128, help="CPU render budget (pixels)")
    parser.add_argument(
        "--reference", action="store_true", help="time the plain reference paths instead of the fused fast paths"
    )
    parser.add_argument(
        "--implicitron",
        metavar="PYTORCH3D_REPO",
        help="also time Implicitron's GenericModel on the same setting (configs in IMPLICITRON_CONFIGS), from this "
        "pytorch3d checkout (its projects/ configs); run the benchmark with a Python where pytorch3d imports",
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one config, print JSON
    parser.add_argument("--one-implicitron", help=argparse.SUPPRESS)  # internal: the same for Implicitron
    parser.add_argument("overrides", nargs="*", help="config overrides for every config (after --)")
    args = parser.parse_args()
    if args.one or args.one_implicitron:
        name, precision = (args.one or args.one_implicitron).split(":")
        with _reference_paths() if args.reference else contextlib.nullcontext():
            if args.one:
                result = bench_one(name, args.steps, precision, args.max_render_pixels, args.overrides)
            else:
                result = bench_implicitron(
                    args.implicitron, name, args.steps, precision, args.max_render_pixels, args.overrides
                )
        print(json.dumps(result))
        return
    os.environ.setdefault("RECON_TRAINER_CACHE", os.path.join(tempfile.gettempdir(), "recon_trainer_bench_cache"))
    if args.implicitron and importlib.util.find_spec("pytorch3d") is None:
        print(f"--implicitron: pytorch3d does not import in {sys.executable}; timing ours only")
        args.implicitron = None
    print(HEADER, flush=True)
    common = ["--steps", str(args.steps), "--max-render-pixels", str(args.max_render_pixels)]
    common += ["--reference"] * args.reference
    for name in args.configs:
        for precision in args.precision:
            runs = [["--one", f"{name}:{precision}"]]
            if args.implicitron and name in IMPLICITRON_CONFIGS:
                runs.append(["--one-implicitron", f"{name}:{precision}", "--implicitron", args.implicitron])
            for run in runs:
                command = [sys.executable, __file__, *run, *common, "--", *args.overrides]
                result = subprocess.run(command, capture_output=True, text=True)
                if result.returncode != 0:
                    print(f"{' '.join(run[:2])}: failed\n{result.stderr[-2000:]}")
                    continue
                print(format_row(json.loads(result.stdout.strip().splitlines()[-1])), flush=True)
    print("matmul: the GFLOP/s of a 2048 x 2048 matmul in the row's precision, measured before each timed step "
          "(median); the fractions compare each step with the measurement just before it")


HEADER = (
    f"{'config':17} {'prec':5} {'rays/step':>9} {'s/step':>8} {'rays/s':>8} {'GFLOP/step':>10} {'GFLOP/s':>8} "
    f"{'matmul':>7} {'of matmul':>9} {'(CPU t)':>8} {'render':>10} {'full render s':>13} {'of matmul':>9} "
    f"{'(CPU t)':>8} {'peak MiB':>9}"
)


def format_row(r: dict) -> str:
    """One line of the table under HEADER from bench_one's result."""
    mark = "~" if r["render_extrapolated"] else " "
    return (
        f"{r['config']:17} {r['precision']:5} {r['rays_per_step']:9d} {r['step_s']:8.2f} {r['rays_per_s']:8.0f} "
        f"{r['step_gflop']:10.1f} {r['achieved_gflops']:8.1f} {r['matmul_gflops']:7.0f} {r['fraction_of_matmul']:9.1%} "
        f"{r['fraction_of_matmul_cpu']:8.1%} {r['render_size']:>10} {mark}{r['render_s']:12.2f} "
        f"{r['render_fraction_of_matmul']:9.1%} {r['render_fraction_of_matmul_cpu']:8.1%} {r['peak_memory_mib']:9.0f}"
    )


if __name__ == "__main__":
    main()
