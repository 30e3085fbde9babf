"""SRN trains on a tiny scene and beats the mean-colour baseline on held-out views; the hypernet variant trains."""

import torch

from recon_trainer.data.frame_data import FrameData
from recon_trainer.evaluation.nvs_metrics import psnr_from_mse
from recon_trainer.models.base import EvaluationMode
from recon_trainer.models.generic_model import GenericModel
from tests.models.tiny_scene import CAMERA_DISTANCE, sphere_batch

from .helpers import srn_model_args

SIZE = 24
STEPS = 400
TRAIN_AZIMUTHS = tuple(float(a) for a in range(0, 360, 30))
TEST_AZIMUTHS = (15.0, 105.0, 195.0, 285.0)  # between training views
MARGIN_DB = 5.0  # measured: +9 dB over the baseline on average (PSNR 21.4 vs 12.4)


def _frame(frames: FrameData, i: int) -> FrameData:
    keys = ("image_rgb", "fg_probability", "mask_crop", "depth_map", "depth_mask")
    return FrameData(camera=frames.camera[i : i + 1], **{k: getattr(frames, k)[i : i + 1] for k in keys})


def test_srn_beats_the_mean_colour_baseline_on_held_out_views():
    torch.manual_seed(0)
    cfg = srn_model_args(
        render_size=SIZE,
        init_depth=CAMERA_DISTANCE,  # untrained rays end near the scene centre
        features=64,
        loss_weights={"loss_rgb_mse": 1.0, "loss_mask_bce": 1.0},
    )
    cfg.raysampler_NearFarRaySampler_args.n_rays_per_image_sampled_from_mask = 256
    model = GenericModel(**cfg)
    train, test = sphere_batch(TRAIN_AZIMUTHS, size=SIZE), sphere_batch(TEST_AZIMUTHS, size=SIZE)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(STEPS):
        i = int(torch.randint(len(TRAIN_AZIMUTHS), ()))
        objective = model(_frame(train, i), evaluation_mode=EvaluationMode.TRAINING)["objective"]
        optimizer.zero_grad()
        objective.backward()
        optimizer.step()

    model.eval()
    mean_colour = train.image_rgb.mean(dim=(0, 2, 3))[None, :, None, None]
    psnrs, baselines, start_depth = [], [], cfg.raysampler_NearFarRaySampler_args.min_depth + CAMERA_DISTANCE
    with torch.no_grad():
        for i in range(len(TEST_AZIMUTHS)):
            preds = model(FrameData(camera=test.camera[i : i + 1]), evaluation_mode=EvaluationMode.EVALUATION)
            target = test.image_rgb[i : i + 1]
            psnrs.append(float(psnr_from_mse(((preds["images_render"] - target) ** 2).mean())))
            baselines.append(float(psnr_from_mse(((mean_colour - target) ** 2).mean())))
            depth_shift = float((preds["depths_render"] - start_depth).abs().mean())
    mean_psnr, mean_baseline = sum(psnrs) / len(psnrs), sum(baselines) / len(baselines)
    print(f"SRN held-out PSNR {[round(p, 2) for p in psnrs]} mean {mean_psnr:.2f} dB; mean-colour baseline "
          f"{[round(b, 2) for b in baselines]} mean {mean_baseline:.2f} dB; depth moved {depth_shift:.3f} from "
          "the untrained marcher's end depth (printed only)")
    assert mean_psnr > mean_baseline + MARGIN_DB
    assert all(p > b + 2.0 for p, b in zip(psnrs, baselines))


def test_hypernet_with_a_sequence_autodecoder_trains_a_step():
    torch.manual_seed(0)
    cfg = srn_model_args(
        "SRNHyperNetImplicitFunction",
        global_encoder_class_type="SequenceAutodecoder",
        loss_weights={"loss_rgb_mse": 1.0, "loss_autodecoder_norm": 0.01},
    )
    cfg.global_encoder_SequenceAutodecoder_args.autodecoder_args.encoding_dim = 8
    cfg.global_encoder_SequenceAutodecoder_args.autodecoder_args.n_instances = 2
    model = GenericModel(**cfg)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    batch = sphere_batch()
    preds = model(batch, evaluation_mode=EvaluationMode.TRAINING)
    assert torch.isfinite(preds["objective"]) and torch.isfinite(preds["loss_autodecoder_norm"])
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer.zero_grad()
    preds["objective"].backward()
    optimizer.step()
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert any("global_encoder" in name for name in changed)
    assert any("hypernet.heads" in name for name in changed)
    assert any("renderer._lstm" in name for name in changed)
