"""SymphoniesModel with its batch builder, depth sources and evaluator on tiny synthetic NYU rooms, the
configs of the usage guide's variants, and the SemanticKITTI path on a tiny copy of its layout."""
import numpy as np
import pytest
import torch

from recon_trainer.config.hydra_app import compose_config, store_root_config
from recon_trainer.data.formats import nyu_ssc
from recon_trainer.data.ssc.synthetic_streets import write_tiny_semantic_kitti
from recon_trainer.data.ssc.nyu import NYUv2SSC
from recon_trainer.data.ssc.semantic_kitti import SemanticKITTI
from recon_trainer.data.ssc.synthetic_rooms import write_synthetic_nyu
from recon_trainer.experiment import Experiment
from recon_trainer.models.base import EvaluationMode
from recon_trainer.training.optimizer_factory import ReconOptimizerFactory
from recon_trainer_plugins.symphonies.batch import SSCBatch, SSCBatchBuilder
from recon_trainer_plugins.symphonies.depth_source import DataDepth
from recon_trainer_plugins.symphonies.evaluator import SSCEvaluator
from recon_trainer_plugins.symphonies.model import SymphoniesModel

TINY = dict(num_classes=12, scene_shape=(30, 30, 18), image_shape=(60, 80), embed_dims=16, num_heads=2,
            num_points=2, num_queries=4, resnet_depth=18, fpn_channels=16, num_layers=3)


@pytest.fixture(scope="module")
def rooms(tmp_path_factory):
    root = tmp_path_factory.mktemp("nyu")
    for split, names in (("train", ["NYU0001_0000", "NYU0002_0000"]), ("test", ["NYU1001_0000"])):
        write_synthetic_nyu(str(root / "depthbin"), str(root / "base"), split, names, image_hw=(60, 80), seed=3)
    return root


def nyu(rooms, **fields):
    return NYUv2SSC(data_root=str(rooms / "depthbin"), label_root=str(rooms / "base"), **fields)


def test_the_builder_gives_the_projection_grid_and_frustums(rooms):
    view = nyu(rooms, split="train", voxel_size=0.16)[0]
    batch = SSCBatchBuilder(project_scale=2, frustum_size=4)([view, view])
    assert isinstance(batch, SSCBatch) and len(batch) == 2
    assert batch.target.shape == (2, 30, 30, 18) and batch.projected_pix.shape == (2, 15 * 15 * 9, 2)
    assert batch.fov_mask.dtype == torch.bool and batch.fov_mask.any()
    assert batch.frustum_masks.shape == (2, 16, 30, 30, 18) and batch.frustum_counts.shape == (2, 16, 12)
    assert torch.allclose(batch.voxel_size, torch.full((2, 3), 0.16))
    assert torch.allclose(batch.world_to_camera[0] @ torch.from_numpy(np.asarray(view.camera_to_world)).float(),
                          torch.eye(4), atol=1e-5)
    # the frustum counts are the labels of the in-view voxels of each image tile
    labels = batch.target[0]
    assert batch.frustum_counts[0].sum() == (labels[batch.frustum_masks[0].any(0)] != 255).sum()


def test_a_training_forward_gives_every_loss_and_an_eval_forward_the_logits(rooms):
    torch.manual_seed(0)
    model = SymphoniesModel(**TINY)
    batch = SSCBatchBuilder(frustum_size=2)([nyu(rooms, split="train", voxel_size=0.16)[i] for i in range(2)])
    preds = model(batch, EvaluationMode.TRAINING)
    assert set(model.log_vars) <= set(preds)
    assert torch.isclose(preds["objective"], sum(preds[f"loss_{n}"] for n in model.criteria))
    preds["objective"].backward()
    assert model.network.encoder.backbone.conv1.weight.grad is not None
    model.eval()
    logits = model(batch)["ssc_logits"]
    assert logits.shape == (2, 12, 30, 30, 18) and logits.dtype == torch.float32
    with pytest.raises(ValueError, match="scene_shape"):
        SymphoniesModel(**{**TINY, "scene_shape": (20, 20, 10)})(batch)


def test_the_decoder_stays_in_float32_under_autocast_unless_asked(rooms):
    batch = SSCBatchBuilder(frustum_size=0)([nyu(rooms, split="train", voxel_size=0.16)[0]])
    for decoder_fp32 in (True, False):
        model = SymphoniesModel(**TINY, decoder_fp32=decoder_fp32).eval()
        seen = []
        model.network.decoder.head.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(batch)["ssc_logits"]
        assert torch.isfinite(logits).all() and logits.dtype == torch.float32
        assert seen == [torch.float32 if decoder_fp32 else torch.bfloat16]


def test_the_encoder_learns_at_lr_times_its_multiplier():
    model = SymphoniesModel(**TINY)
    optimizer, _ = ReconOptimizerFactory(breed="AdamW", lr=2e-4, eps=1e-3, group_lr_multipliers={"encoder": 0.1})(
        model=model, exp_dir="unused")
    rates = {group["name"]: group["lr"] for group in optimizer.param_groups}
    assert rates == {"default": 2e-4, "encoder": pytest.approx(2e-5)}
    encoder = {id(p) for p in model.network.encoder.backbone.parameters()}
    (group,) = [g for g in optimizer.param_groups if g["name"] == "encoder"]
    assert encoder <= {id(p) for p in group["params"]}


def test_precomputed_relative_depth_is_scaled_per_scene_to_the_label_depth(rooms, tmp_path):
    name = "NYU0001_0000"
    label = nyu_ssc.read_depth_png(str(rooms / "depthbin" / "NYUtrain" / f"{name}.png"))
    (tmp_path / "NYUtrain").mkdir()
    nyu_ssc.write_depth_png(str(tmp_path / "NYUtrain" / f"{name}_pred.png"), label * 0.37)  # relative: wrong scale
    dataset = nyu(rooms, split="train", voxel_size=0.16, depth_root=str(tmp_path), depth_suffix="_pred")
    batch = SSCBatchBuilder(frustum_size=0)([dataset[0]])
    assert batch.reference_depth is not None
    depth = DataDepth(kind="relative_depth", alignment="per_scene").depth(batch)
    valid = batch.reference_depth > 0
    assert torch.allclose(depth[valid], batch.reference_depth[valid], rtol=2e-3)
    fixed = DataDepth(kind="relative_depth", alignment="prior_scale", prior_scale=2.0).depth(batch)
    assert torch.allclose(fixed, 2.0 * batch.depth)


class Oracle(torch.nn.Module):
    """Logits that put every voxel in its target class (and class 1 on unknown voxels)."""

    def forward(self, batch):
        target = torch.where(batch.target == 255, 1, batch.target)
        return {"ssc_logits": torch.nn.functional.one_hot(target, 12).permute(0, 4, 1, 2, 3).float()}


def test_the_evaluator_scores_a_perfect_prediction_one_and_saves_labels(rooms, tmp_path):
    batch = SSCBatchBuilder(frustum_size=0)([nyu(rooms, split="test", voxel_size=0.16)[0]])
    evaluator = SSCEvaluator(class_names=nyu_ssc.CLASS_NAMES, predictions_dir=str(tmp_path))
    evaluation = evaluator.evaluate(model=Oracle(), dataloader=[batch], device=torch.device("cpu"))
    present = torch.unique(batch.target[batch.target != 255])
    assert evaluation.metrics["IoU"] == pytest.approx(1.0)
    for index in present.tolist():
        assert evaluation.metrics[f"iou_{nyu_ssc.CLASS_NAMES[index]}"] == pytest.approx(1.0)
    assert evaluation.results["n_samples"] == 1 and "mIoU" in evaluation.summary
    saved = np.load(tmp_path / "NYU1001_0000.npy")
    assert saved.dtype == np.uint8 and saved.shape == (30, 30, 18)


@pytest.fixture
def compose(tmp_path, monkeypatch):
    for name in ("NYU_SSC_DATA_ROOT", "SEMANTIC_KITTI_ROOT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RECON_TRAINER_CACHE", str(tmp_path))
    store_root_config(Experiment)
    return compose_config


@pytest.mark.parametrize("variant, grid, voxel, embed", [
    ("", (100, 100, 50), 0.04, 64), ("+nyu=crop_4cm", (100, 100, 50), 0.04, 64),
    ("+nyu=scale_4cm", (100, 100, 50), 0.04, 64), ("+nyu=crop_8cm", (50, 50, 25), 0.08, 128),
    ("+nyu=full_8cm", (60, 60, 36), 0.08, 128)])
def test_every_nyu_grid_of_the_guide_composes_with_matching_model_and_data(compose, variant, grid, voxel, embed):
    cfg = compose("symphonies_nyu", [variant] if variant else [])
    model = cfg.model_factory_ReconModelFactory_args.model_SymphoniesModel_args
    assert tuple(model.scene_shape) == grid and model.embed_dims == embed
    assert np.prod(model.scene_pos_shape) * np.prod(model.scene_pos_squeeze) == np.prod(grid)
    source = cfg.data_source_MixtureDataSource_args
    assert f"voxel_size={voxel}" in source.train and f"voxel_size={voxel}" in source.test
    optimizer = cfg.optimizer_factory_ReconOptimizerFactory_args
    assert (optimizer.breed, optimizer.lr, optimizer.eps, optimizer.weight_decay) == ("AdamW", 2e-4, 1e-3, 1e-4)
    assert dict(optimizer.group_lr_multipliers) == {"encoder": 0.1}
    assert list(optimizer.multistep_lr_milestones) == [25]
    assert cfg.training_loop_ReconTrainingLoop_args.max_epochs == 30


def test_the_quick_preset_reads_the_builtin_rooms(compose):
    from recon_trainer.data.mixing.data_source import MixtureDataSource

    cfg = compose("symphonies_nyu", ["+preset=symphonies_quick"])
    source = MixtureDataSource(**cfg.data_source_MixtureDataSource_args)
    datasets, loaders = source.get_datasets_and_dataloaders()
    assert (len(datasets.train), len(datasets.test)) == (24, 8)
    batch = next(iter(loaders.train))
    assert batch.image.shape == (2, 3, 120, 160) and batch.target.shape == (2, 30, 30, 18)


def test_the_kitti_config_trains_on_a_tiny_copy_of_semantic_kittis_layout(compose, tmp_path):
    cfg = compose("symphonies_kitti")
    model = cfg.model_factory_ReconModelFactory_args.model_SymphoniesModel_args
    assert (tuple(model.scene_shape), model.project_scale, model.downsample_z) == ((256, 256, 32), 2, 2)
    assert (tuple(model.scene_pos_shape), tuple(model.scene_pos_squeeze)) == ((128, 128, 2), (2, 2, 1))
    roots = write_tiny_semantic_kitti(str(tmp_path / "kitti"), sequences=("00",), frames_per_sequence=1,
                                      image_hw=(94, 310), grid_shape=(64, 64, 8))
    dataset = SemanticKITTI(data_root=roots["data_root"], label_root=roots["label_root"],
                            depth_root=roots["depth_root"], split="train", sequences=("00",), grid_shape=(64, 64, 8),
                            crop_hw=(92, 304))
    batch = SSCBatchBuilder(project_scale=2, frustum_size=2)([dataset[0]])
    tiny = SymphoniesModel(num_classes=20, scene_shape=(64, 64, 8), project_scale=2, downsample_z=2,
                           image_shape=tuple(batch.image.shape[-2:]), embed_dims=16, num_heads=2, num_points=2,
                           num_queries=4, resnet_depth=18, fpn_channels=16, num_layers=2)
    preds = tiny(batch, EvaluationMode.TRAINING)
    assert preds["ssc_logits"].shape == (1, 20, 64, 64, 8) and torch.isfinite(preds["objective"])


def test_a_depth_model_of_this_framework_lifts_the_pixels_without_being_trained(rooms, tmp_path, compose):
    from recon_trainer.config import expand_args_fields
    from tests.models.test_depth_predictor import MIDAS, write_run

    expand_args_fields(Experiment)
    exp_dir = str(tmp_path / "midas")
    write_run(exp_dir, "midas_redweb", MIDAS)
    model = SymphoniesModel(**TINY, depth_source_class_type="ModelDepth",
                            depth_source_ModelDepth_args={"path": exp_dir, "alignment": "per_scene"})
    batch = SSCBatchBuilder(frustum_size=2)([nyu(rooms, split="train", voxel_size=0.16)[0]])
    depth = model.depth_source.depth(batch)  # MiDaS disparity, scale and shift fitted to the label depth
    valid = batch.depth > 0
    assert depth.shape == batch.depth.shape and torch.isfinite(depth).all() and (depth[valid] > 0).all()
    plain = SymphoniesModel(**TINY)  # the depth model is in neither the parameters nor the checkpoint
    assert set(model.state_dict()) == set(plain.state_dict())
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in plain.parameters())
    preds = model(batch, EvaluationMode.TRAINING)
    assert torch.isfinite(preds["objective"])


def test_visualize_shows_the_image_the_prediction_and_the_target(rooms):
    model = SymphoniesModel(**TINY).eval()
    batch = SSCBatchBuilder(frustum_size=0)([nyu(rooms, split="test", voxel_size=0.16)[0]])
    with torch.no_grad():
        picture = model.visualize(batch)["voxels"]
    assert picture.shape == (3, 30, 120) and 0 <= picture.min() and picture.max() <= 1
    target_panel = picture[:, :, 80:]
    assert (target_panel < 0.99).any()  # the target's voxels are drawn (the background is white)
