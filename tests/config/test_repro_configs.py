"""Every repro config composes, builds its model on CPU (random weights) and takes one training step.

CO3D configs read a tiny CO3D-layout dataset rendered by tools/make_co3d_dataset.py's writer (v1
and v2 files); configs with other data fall back to the built-in scene. Sizes are shrunk by
overrides (image and render size, rays, samples per ray, batches) but every network keeps its
configured architecture. After the step, one test batch is rendered in evaluation mode.
"""
import os

import pytest
import torch
from omegaconf import OmegaConf

from recon_trainer.config import expand_args_fields
from recon_trainer.config.discovery import discover_plugins, plugin_config_dirs
from recon_trainer.config.hydra_app import compose_config, store_root_config
from recon_trainer.data.providers.co3d.writer import default_sequences, write_co3d_dataset
from recon_trainer.evaluation.nvs_evaluator import withhold_target
from recon_trainer.experiment import Experiment
from recon_trainer.models.base import EvaluationMode

REPO = os.path.join(os.path.dirname(__file__), "..", "..")
CONFIG_DIR = os.path.join(REPO, "configs")  # the core's configs (the shared repro bases and fragments)
# The methods' repro configs, each in its plugin's configs/ folder.
CONFIG_DIRS = [CONFIG_DIR] + plugin_config_dirs()
# Fragments merged into other configs' defaults lists; they are composed through those.
FRAGMENTS = (
    "repro_feat_extractor_normed",
    "repro_feat_extractor_transformer",
    "repro_feat_extractor_unnormed",
    "repro_singleseq_co3dv2_base",
    "repro_multiseq_co3dv2_base",
)
REPRO_CONFIGS = sorted(
    name[: -len(".yaml")]
    for folder in CONFIG_DIRS
    for name in os.listdir(folder)
    if name.startswith("repro_") and name.endswith(".yaml") and name[: -len(".yaml")] not in FRAGMENTS
)
CATEGORY = "procedural"
DATA = "data_source_ReconDataSource_args"
MODEL = "model_factory_ReconModelFactory_args.model_GenericModel_args"


@pytest.fixture(scope="module")
def co3d_roots(tmp_path_factory):
    """{"v1": root, "v2": root} of tiny CO3D datasets (4 sequences of 8 frames, 24x32)."""
    roots = {}
    for version in ("v1", "v2"):
        root = str(tmp_path_factory.mktemp(f"co3d_{version}"))
        write_co3d_dataset(root, version, default_sequences({CATEGORY: "builtin"}, 4), n_frames=8,
                           image_size_hw=(24, 32))
        roots[version] = root
    return roots


def tiny_overrides(cfg, co3d_roots) -> None:
    """Shrink the data and the sampling of a composed config in place (architectures unchanged)."""
    data = OmegaConf.select(cfg, DATA)
    data.builtin_scene_args.resolution = 24
    data.builtin_scene_args.n_views = 20
    loader = data[f"data_loader_map_provider_{data.data_loader_map_provider_class_type}_args"]
    loader.num_workers = 0
    loader.dataset_length_train = 2
    loader.dataset_length_val = 1
    loader.dataset_length_test = 1
    if loader.get("images_per_seq_options"):
        loader.images_per_seq_options = [3, 4]
    loader.batch_size = min(loader.batch_size, 4)
    provider_type = data.dataset_map_provider_class_type
    provider = data[f"dataset_map_provider_{provider_type}_args"]
    if provider_type.startswith("JsonIndexDatasetMapProvider"):
        provider.dataset_root = co3d_roots["v2" if provider_type.endswith("V2") else "v1"]
        provider.category = CATEGORY
        dataset = provider[f"dataset_{provider.dataset_class_type}_args"]
        dataset.image_height, dataset.image_width = 24, 24
    model = OmegaConf.select(cfg, MODEL)
    model.render_image_width = model.render_image_height = 12
    model.chunk_size_grid = 256
    sampler = model[f"raysampler_{model.raysampler_class_type}_args"]
    sampler.n_rays_per_image_sampled_from_mask = 24
    for key in ("n_pts_per_ray_training", "n_pts_per_ray_evaluation"):
        sampler[key] = min(sampler[key], 6)
    renderer = model[f"renderer_{model.renderer_class_type}_args"]
    for key in ("n_pts_per_ray_fine_training", "n_pts_per_ray_fine_evaluation"):
        if key in renderer:
            renderer[key] = min(renderer[key], 6)
    if "ray_tracer_args" in renderer:
        renderer.ray_tracer_args.n_steps = 16
    encoder = model.get(f"global_encoder_{model.global_encoder_class_type}_args")
    if encoder is not None and "autodecoder_args" in encoder:
        encoder.autodecoder_args.n_instances = 8


@pytest.fixture(scope="module")
def experiment_schema():
    discover_plugins()
    expand_args_fields(Experiment)
    store_root_config(Experiment)


def test_the_repro_tables_are_all_there():
    methods = ["nerf", "nerf_wce", "nerformer", "idr", "srn", "srn_noharm", "srn_wce", "srn_wce_noharm"]
    multiseq = ["idr_ad", "nerf_ad", "nerf_wce", "nerformer", "nerformer_angle_w", "srn_ad_hypernet",
                "srn_ad_hypernet_noharm", "srn_wce", "srn_wce_noharm"]
    expected = (
        [f"repro_singleseq_{m}" for m in methods]
        + [f"repro_multiseq_{m}" for m in multiseq]
        + [f"repro_singleseq_v2_{m}" for m in ("idr", "nerf", "nerformer", "srn_noharm")]
        + [f"repro_multiseq_v2_{m}" for m in ("nerf_ad", "nerf_wce", "nerformer", "srn_ad_hypernet", "srn_wce",
                                              "srn_wce_noharm")]
    )
    assert sorted(set(expected) - set(REPRO_CONFIGS)) == []
    assert sorted(set(IMPLICITRON_README_TABLES) - set(REPRO_CONFIGS)) == []
    for fragment in FRAGMENTS:
        assert os.path.isfile(os.path.join(CONFIG_DIR, f"{fragment}.yaml"))


# Every config file named in the method tables of Implicitron's README
# (pytorch3d/projects/implicitron_trainer/README.md: the CO3D tables, then "CO3Dv2 experiments").
# Its repository never shipped two of the v2 ones (repro_multiseq_v2_nerf_ad and
# repro_multiseq_v2_srn_wce_noharm); ours does, built like the other v2 configs.
IMPLICITRON_README_TABLES = (
    "repro_singleseq_nerf", "repro_singleseq_nerf_wce", "repro_singleseq_nerformer", "repro_singleseq_idr",
    "repro_singleseq_srn_noharm", "repro_singleseq_srn", "repro_singleseq_srn_wce_noharm",
    "repro_multiseq_nerf_ad", "repro_multiseq_srn_ad_hypernet_noharm", "repro_multiseq_srn_ad_hypernet",
    "repro_multiseq_nerf_wce", "repro_multiseq_nerformer", "repro_multiseq_srn_wce_noharm", "repro_multiseq_srn_wce",
)
IMPLICITRON_README_V2_TABLES = (
    "repro_singleseq_v2_nerf", "repro_singleseq_v2_nerformer", "repro_singleseq_v2_idr",
    "repro_singleseq_v2_srn_noharm",
    "repro_multiseq_v2_nerf_ad", "repro_multiseq_v2_srn_ad_hypernet",
    "repro_multiseq_v2_nerf_wce", "repro_multiseq_v2_nerformer", "repro_multiseq_v2_srn_wce_noharm",
    "repro_multiseq_v2_srn_wce",
)


@pytest.mark.parametrize("config_name", IMPLICITRON_README_TABLES + IMPLICITRON_README_V2_TABLES)
def test_every_config_of_implicitrons_tables_composes(config_name, experiment_schema):
    """The name a user copies from Implicitron's README composes here; a v2 one is its v1
    counterpart (the same name without `_v2`) on the CO3D v2 data of the v2 base configs."""
    cfg = compose_config(config_name, [])
    provider = cfg[DATA].dataset_map_provider_class_type
    if "_v2_" not in config_name:
        assert provider == "JsonIndexDatasetMapProvider"
        return
    assert provider == "JsonIndexDatasetMapProviderV2"
    v2_data = cfg[DATA].dataset_map_provider_JsonIndexDatasetMapProviderV2_args
    assert v2_data.category == "teddybear"
    multisequence = config_name.startswith("repro_multiseq")
    assert v2_data.subset_name == ("fewview_dev" if multisequence else "manyview_dev_0")
    assert cfg.training_loop_ReconTrainingLoop_args.evaluator_NVSEvaluator_args.is_multisequence == multisequence
    v1 = compose_config(config_name.replace("_v2_", "_"), [])
    assert OmegaConf.select(cfg, MODEL) == OmegaConf.select(v1, MODEL)  # the same method


@pytest.mark.parametrize("config_name", REPRO_CONFIGS)
def test_config_builds_and_takes_a_training_step(config_name, co3d_roots, experiment_schema, tmp_path, monkeypatch):
    monkeypatch.setenv("RECON_TRAINER_CACHE", str(tmp_path.parent / "scene_cache"))
    cfg = compose_config(config_name, [f"exp_dir={tmp_path}"])
    tiny_overrides(cfg, co3d_roots)
    torch.manual_seed(0)
    experiment = Experiment(**cfg)
    _, loaders = experiment.data_source.get_datasets_and_dataloaders()
    model = experiment.model_factory(exp_dir=str(tmp_path))
    optimizer, _ = experiment.optimizer_factory(model=model, exp_dir=str(tmp_path))
    before = [p.detach().clone() for p in model.parameters() if p.requires_grad]
    model.train()
    preds = model(next(iter(loaders.train)), evaluation_mode=EvaluationMode.TRAINING)
    assert torch.isfinite(preds["objective"]), config_name
    optimizer.zero_grad()
    preds["objective"].backward()
    optimizer.step()
    after = [p.detach() for p in model.parameters() if p.requires_grad]
    assert any(not torch.equal(a, b) for a, b in zip(before, after)), f"{config_name}: no parameter changed"
    model.eval()
    with torch.no_grad():
        test_preds = model(withhold_target(next(iter(loaders.test))), evaluation_mode=EvaluationMode.EVALUATION)
    assert test_preds["images_render"].shape[-2:] == (12, 12)
    assert torch.isfinite(test_preds["images_render"]).all()


def test_one_command_line_switches_many_slots(experiment_schema, tmp_path):
    cfg = compose_config(
        "repro_singleseq_nerf",
        [
            f"exp_dir={tmp_path}",
            f"{MODEL}.implicit_function_class_type=SRNHyperNetImplicitFunction",
            f"{MODEL}.renderer_class_type=LSTMRenderer",
            f"{MODEL}.raysampler_class_type=NearFarRaySampler",
            f"{MODEL}.global_encoder_class_type=SequenceAutodecoder",
            f"{MODEL}.global_encoder_SequenceAutodecoder_args.autodecoder_args.encoding_dim=8",
            f"{MODEL}.image_feature_extractor_class_type=ResNetFeatureExtractor",
            f"{MODEL}.view_pooler_enabled=true",
            f"{MODEL}.view_pooler_args.feature_aggregator_class_type=ReductionFeatureAggregator",
            f"{MODEL}.num_passes=1",
            f"{DATA}.data_loader_map_provider_class_type=SimpleDataLoaderMapProvider",
            "optimizer_factory_ReconOptimizerFactory_args.breed=SGD",
        ],
    )
    experiment = Experiment(**cfg)
    model = experiment.model_factory(exp_dir=str(tmp_path))
    names = {
        "implicit function": type(model._implicit_functions[0]).__name__,
        "renderer": type(model.renderer).__name__,
        "raysampler": type(model.raysampler).__name__,
        "global encoder": type(model.global_encoder).__name__,
        "feature extractor": type(model.image_feature_extractor).__name__,
        "aggregator": type(model.view_pooler.feature_aggregator).__name__,
        "loader": type(experiment.data_source.data_loader_map_provider).__name__,
    }
    assert names == {
        "implicit function": "SRNHyperNetImplicitFunction",
        "renderer": "LSTMRenderer",
        "raysampler": "NearFarRaySampler",
        "global encoder": "SequenceAutodecoder",
        "feature extractor": "ResNetFeatureExtractor",
        "aggregator": "ReductionFeatureAggregator",
        "loader": "SimpleDataLoaderMapProvider",
    }
    optimizer, _ = experiment.optimizer_factory(model=model, exp_dir=str(tmp_path))
    assert type(optimizer).__name__ == "SGD"
