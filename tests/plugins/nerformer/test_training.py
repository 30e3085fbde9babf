"""NerFormer trains on a tiny multi-view scene and renders held-out views from training source views.

GenericModel with a small random-init ResNet, identity view pooling and NeRFormerImplicitFunction,
trained on the built-in scene at 32x32 (batches: a target frame + 3 of its 5 nearest other
training frames as sources), evaluated by NVSEvaluator on the held-out views with the 3 nearest
training views as sources (the target's own ground truth withheld). It must clearly beat
predicting the mean training colour everywhere.

Measured (300 steps of 128 rays x 16 points): held-out PSNR 21.1 dB against a 18.0 dB baseline
(gain 3.1 dB; 2.6-3.1 dB over nearby settings), hence the asserted 2 dB margin.
"""

import time
from typing import List, Sequence

import pytest
import torch

from recon_trainer.config import expand_args_fields, get_default_args
from recon_trainer.data.frame_data import FrameData, collate
from recon_trainer.data.providers.builtin_scene import BuiltinScene
from recon_trainer.evaluation.nvs_evaluator import NVSEvaluator
from recon_trainer.models.base import EvaluationMode
from recon_trainer.models.generic_model import GenericModel

SCENE = {"resolution": 32, "n_views": 30, "holdout_every": 5}  # 24 train, 3 val, 3 test views
N_SOURCES = 3  # source views besides the target
N_CANDIDATES = 5  # training sources are drawn from the target's nearest training views
N_STEPS = 300
LR = 3e-3
N_RAYS, N_PTS = 128, 16  # rays per training step, points per ray
MARGIN_DB = 2.0  # required PSNR gain over the mean-colour baseline


def nerformer_model() -> GenericModel:
    cfg = get_default_args(GenericModel)
    cfg.render_image_width = cfg.render_image_height = SCENE["resolution"]
    cfg.num_passes = 1  # one pass keeps the test fast (num_passes=2 is covered by test_generic_model.py)
    cfg.chunk_size_grid = 2048
    cfg.loss_weights = {"loss_rgb_mse": 1.0, "loss_prev_stage_rgb_mse": 1.0, "loss_mask_bce": 1.0}
    cfg.image_feature_extractor_class_type = "ResNetFeatureExtractor"
    cfg.view_pooler_enabled = True
    cfg.implicit_function_class_type = "NeRFormerImplicitFunction"
    extractor = cfg.image_feature_extractor_ResNetFeatureExtractor_args
    extractor.name, extractor.stages, extractor.proj_dim = "resnet18", [1, 2], 8
    extractor.image_rescale, extractor.first_max_pool = 1.0, False
    cfg.view_pooler_args.feature_aggregator_class_type = "IdentityFeatureAggregator"
    function = cfg.implicit_function_NeRFormerImplicitFunction_args
    function.n_harmonic_functions_xyz, function.n_harmonic_functions_dir = 6, 2
    function.n_hidden_neurons_xyz, function.n_hidden_neurons_dir = 32, 32
    sampler = cfg.raysampler_AdaptiveRaySampler_args
    sampler.scene_extent = 1.2  # the scene fits in the unit sphere
    sampler.n_rays_per_image_sampled_from_mask = N_RAYS
    sampler.n_pts_per_ray_training = sampler.n_pts_per_ray_evaluation = N_PTS
    return GenericModel(**cfg)


def batch_of(frames: Sequence[FrameData], target: int, sources: Sequence[int]) -> FrameData:
    return collate([frames[target]] + [frames[i] for i in sources])


def nearest_sources(target: FrameData, known: List[FrameData], n: int) -> List[int]:
    """Indices of the n known frames whose camera centres are closest to the target's."""
    centres = torch.cat([frame.camera.get_camera_center() for frame in known])
    distances = (centres - target.camera.get_camera_center()).norm(dim=-1)
    return distances.argsort()[:n].tolist()


def mean_colour_psnr(train: List[FrameData], held_out: List[FrameData]) -> float:
    """PSNR of predicting every pixel of the held-out views as the mean training colour."""
    mean = torch.stack([frame.image_rgb for frame in train]).mean(dim=(0, 2, 3))
    images = torch.stack([frame.image_rgb for frame in held_out])
    mse = ((images - mean[None, :, None, None]) ** 2).mean(dim=(1, 2, 3))
    return float((-10 * torch.log10(mse)).mean())


@pytest.fixture
def one_thread():
    """Run on one thread: these small ops gain little from two, and oversubscribed cores slow them ~10x."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def scene_frames(tmp_path_factory):
    expand_args_fields(BuiltinScene)
    datasets = BuiltinScene(**SCENE, cache_dir=str(tmp_path_factory.mktemp("scene"))).get_dataset_map()
    train = [datasets.train[i] for i in range(len(datasets.train))]
    held_out = [dataset[i] for dataset in (datasets.test, datasets.val) for i in range(len(dataset))]
    return train, held_out


def source_choices(frames: List[FrameData], n_candidates: int) -> List[List[int]]:
    """For each frame, the indices of the n_candidates other frames nearest to it."""
    choices = []
    for i, frame in enumerate(frames):
        others = [j for j in range(len(frames)) if j != i]
        choices.append([others[k] for k in nearest_sources(frame, [frames[j] for j in others], n_candidates)])
    return choices


def train_model(train: List[FrameData], n_steps: int = N_STEPS, lr: float = LR) -> GenericModel:
    """Adam on random targets, each with N_SOURCES of its N_CANDIDATES nearest training views as sources."""
    torch.manual_seed(0)
    model = nerformer_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, [int(0.7 * n_steps)], gamma=0.2)
    candidates = source_choices(train, N_CANDIDATES)
    model.train()
    for _ in range(n_steps):
        target = int(torch.randint(len(train), ()))
        sources = [candidates[target][k] for k in torch.randperm(N_CANDIDATES)[:N_SOURCES].tolist()]
        preds = model(batch_of(train, target, sources), evaluation_mode=EvaluationMode.TRAINING)
        optimizer.zero_grad()
        preds["objective"].backward()
        optimizer.step()
        scheduler.step()
    return model


def held_out_psnr(model: GenericModel, train: List[FrameData], held_out: List[FrameData]) -> float:
    """NVSEvaluator's mean psnr_full_image; sources: the N_SOURCES nearest training views."""
    expand_args_fields(NVSEvaluator)
    batches = [collate([frame] + [train[i] for i in nearest_sources(frame, train, N_SOURCES)]) for frame in held_out]
    return NVSEvaluator().run(model=model, dataloader=batches, device=torch.device("cpu"))["psnr_full_image"]


def test_nerformer_beats_the_mean_colour_on_held_out_views(scene_frames, one_thread):
    train, held_out = scene_frames
    start = time.time()
    model = train_model(train)
    train_seconds = time.time() - start
    psnr, baseline = held_out_psnr(model, train, held_out), mean_colour_psnr(train, held_out)
    print(
        f"\nNerFormer: {N_STEPS} steps in {train_seconds:.1f} s; held-out PSNR {psnr:.2f} dB "
        f"(mean-colour baseline {baseline:.2f} dB, gain {psnr - baseline:.2f} dB, required {MARGIN_DB} dB)"
    )
    assert psnr > baseline + MARGIN_DB, (psnr, baseline)
