"""Parity fixture for recon_import_implicitron: a small trained-looking Implicitron NeRF exp_dir and
Implicitron's render of one camera.

Run with a Python where pytorch3d (built from source, with its compiled extension) imports and the
trainer's own dependencies (hydra-core, accelerate) are installed:

    python tools/parity/make_implicitron_checkpoint_fixtures.py --pytorch3d_repo /path/to/pytorch3d \
        --out tests/fixtures/implicitron

--pytorch3d_repo is the checkout the build came from: its projects/ folder provides the trainer
(`implicitron_trainer.experiment`), whose `dump_cfg` writes expconfig.yaml exactly as a run does.

Writes under --out, for NAME = nerf and nerf_ad (the same NeRF plus a SequenceAutodecoder: a
4-channel code for each of 3 sequences, rendered with the code of "seq_a", row 1):
  exp_NAME/expconfig.yaml              Implicitron's Experiment config (only the chosen implementations)
  exp_NAME/model_epoch_00000000.pth    the GenericModel's state dict (Implicitron's key layout)
  NAME_render.pt                       the camera (R, T, focal_length, principal_point in NDC, image_size
                                       (H, W)), the coarse pass's ray directions and lengths, and the
                                       full-grid render: images_render (1, 3, H, W), depths_render and
                                       masks_render (1, 1, H, W)

The model is small (2 passes, 4 x 32 xyz layers, 4 + 2 harmonics, 8 + 8 points per ray on a
16 x 12 image) with seeded random weights (biases too, so every tensor's mapping is exercised);
the render is deterministic (evaluation mode: no stratification, no density noise, quantile
importance sampling).
"""
from __future__ import annotations

import argparse
import os
import sys

N_HARMONIC_XYZ, N_HARMONIC_DIR = 4, 2
HIDDEN_XYZ, HIDDEN_DIR, LAYERS_XYZ, SKIPS = 32, 16, 4, (2,)
WIDTH, HEIGHT = 16, 12
N_PTS_COARSE, N_PTS_FINE = 8, 8
SCENE_EXTENT = 2.0
SEED = 0
AD_ENCODING_DIM, AD_SEQUENCES, AD_TARGET = 4, ("seq_b", "seq_a", "seq_c"), "seq_a"  # NeRF+AD: codes per sequence


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pytorch3d_repo", required=True,
                        help="the pytorch3d checkout (its projects/ has the trainer)")
    parser.add_argument("--out", required=True, help="output folder (tests/fixtures/implicitron)")
    return parser.parse_args()


def experiment_config(exp_dir: str, autodecoder: bool = False):
    """Implicitron's Experiment defaults with the small NeRF, as a Hydra override file would set them;
    `autodecoder`: with a SequenceAutodecoder global encoder (NeRF+AD)."""
    from implicitron_trainer.experiment import Experiment
    from pytorch3d.implicitron.tools.config import get_default_args

    cfg = get_default_args(Experiment)
    cfg.exp_dir = exp_dir
    data = cfg.data_source_ImplicitronDataSource_args
    data.dataset_map_provider_class_type = "RenderedMeshDatasetMapProvider"
    data.dataset_map_provider_RenderedMeshDatasetMapProvider_args.num_views = 8
    data.dataset_map_provider_RenderedMeshDatasetMapProvider_args.resolution = 16
    model = cfg.model_factory_ImplicitronModelFactory_args.model_GenericModel_args
    model.render_image_width, model.render_image_height = WIDTH, HEIGHT
    model.num_passes = 2
    model.chunk_size_grid = 64  # several chunks per image
    sampler = model.raysampler_AdaptiveRaySampler_args
    sampler.n_pts_per_ray_training = sampler.n_pts_per_ray_evaluation = N_PTS_COARSE
    sampler.scene_extent = SCENE_EXTENT
    renderer = model.renderer_MultiPassEmissionAbsorptionRenderer_args
    renderer.n_pts_per_ray_fine_training = renderer.n_pts_per_ray_fine_evaluation = N_PTS_FINE
    nerf = model.implicit_function_NeuralRadianceFieldImplicitFunction_args
    nerf.n_harmonic_functions_xyz, nerf.n_harmonic_functions_dir = N_HARMONIC_XYZ, N_HARMONIC_DIR
    nerf.n_hidden_neurons_xyz, nerf.n_hidden_neurons_dir = HIDDEN_XYZ, HIDDEN_DIR
    nerf.n_layers_xyz, nerf.append_xyz = LAYERS_XYZ, list(SKIPS)
    if autodecoder:
        model.global_encoder_class_type = "SequenceAutodecoder"
        codes = model.global_encoder_SequenceAutodecoder_args.autodecoder_args
        codes.encoding_dim, codes.n_instances = AD_ENCODING_DIM, len(AD_SEQUENCES)
    cfg.training_loop_ImplicitronTrainingLoop_args.max_epochs = 1
    return cfg


def make_exp(out: str, name: str, autodecoder: bool) -> None:
    """Write out/<name>/ (expconfig.yaml, model_epoch_00000000.pth) and out/<name>_render.pt."""
    import torch
    from implicitron_trainer.experiment import dump_cfg
    from pytorch3d.implicitron.models.generic_model import EvaluationMode, GenericModel
    from pytorch3d.implicitron.tools.config import expand_args_fields
    from pytorch3d.renderer import PerspectiveCameras, look_at_view_transform

    exp_dir = os.path.join(out, f"exp_{name}")
    os.makedirs(exp_dir, exist_ok=True)
    cfg = experiment_config(exp_dir, autodecoder)
    expand_args_fields(GenericModel)
    torch.manual_seed(SEED)
    model = GenericModel(**cfg.model_factory_ImplicitronModelFactory_args.model_GenericModel_args)
    with torch.no_grad():
        for parameter_name, parameter in model.named_parameters():
            if parameter_name.endswith("bias"):
                parameter.normal_(0.0, 0.2)
    model.eval()
    sequence_name = None
    if autodecoder:
        model.global_encoder(sequence_name=list(AD_SEQUENCES))  # the rows, in the order training met them
        sequence_name = [AD_TARGET]

    R, T = look_at_view_transform(dist=3.0, elev=20.0, azim=35.0)
    camera = PerspectiveCameras(
        R=R, T=T, focal_length=torch.tensor([[1.8, 2.1]]), principal_point=torch.tensor([[0.06, -0.04]]),
    )
    with torch.no_grad():
        bundle = model.raysampler(camera, EvaluationMode.EVALUATION)
        preds = model(image_rgb=None, camera=camera, sequence_name=sequence_name,
                      evaluation_mode=EvaluationMode.EVALUATION)

    dump_cfg(cfg)  # exp_dir/expconfig.yaml, as the trainer writes it (unused components removed)
    torch.save(model.state_dict(), os.path.join(exp_dir, "model_epoch_00000000.pth"))  # as model_io.save_model
    render = {
        "R": camera.R.clone(),
        "T": camera.T.clone(),
        "focal_length": camera.focal_length.clone(),
        "principal_point": camera.principal_point.clone(),
        "image_size": torch.tensor([[HEIGHT, WIDTH]]),
        "ray_directions": bundle.directions.clone(),
        "ray_lengths": bundle.lengths.clone(),
        **{key: preds[key].detach().clone() for key in ("images_render", "depths_render", "masks_render")},
    }
    torch.save(render, os.path.join(out, f"{name}_render.pt"))
    masks = render["masks_render"]
    print(f"wrote {exp_dir} and {name}_render.pt: mask in [{masks.min():.3f}, {masks.max():.3f}], "
          f"depth in [{render['depths_render'].min():.3f}, {render['depths_render'].max():.3f}], "
          f"rgb mean {render['images_render'].mean():.3f}")


def main() -> None:
    args = parse_args()
    sys.path.insert(0, os.path.join(os.path.abspath(args.pytorch3d_repo), "projects"))
    make_exp(args.out, "nerf", autodecoder=False)
    make_exp(args.out, "nerf_ad", autodecoder=True)


if __name__ == "__main__":
    main()
