"""The Implicitron importer's core: config translation rules and the member-wise state-dict mapping.

The end-to-end import of a real Implicitron exp_dir (with render parity) is in
tests/plugins/nerf/test_implicitron_import.py.
"""
import pytest
import torch

from recon_trainer.config import ConfigError
from recon_trainer.errors import UserError
from recon_trainer.models.implicitron_import import (
    ImplicitronImplementation,
    _map_resnet_feature_extractor,
    _map_sequence_autodecoder,
    map_state_dict,
    register_implicitron_implementation,
    translate_config,
)

MODEL = "model_factory_ImplicitronModelFactory_args"


def implicitron_tree(**model):
    """A pruned Implicitron config tree as its trainer writes it (the parts these tests need)."""
    return {
        "data_source_class_type": "ImplicitronDataSource",
        "model_factory_class_type": "ImplicitronModelFactory",
        "training_loop_class_type": "ImplicitronTrainingLoop",
        "seed": 7,
        "hydra": {"run": {"dir": "."}},
        "data_source_ImplicitronDataSource_args": {
            "dataset_map_provider_class_type": "JsonIndexDatasetMapProviderV2",
            "data_loader_map_provider_class_type": "TrainEvalDataLoaderMapProvider",
            "dataset_map_provider_JsonIndexDatasetMapProviderV2_args": {
                "category": "teddybear", "num_load_workers": 4, "some_future_key": 1,
                "path_manager_factory_class_type": "PathManagerFactory",
            },
            "data_loader_map_provider_TrainEvalDataLoaderMapProvider_args": {"batch_size": 1},
        },
        MODEL: {
            "model_class_type": "GenericModel",
            "resume_epoch": 5,
            "model_GenericModel_args": {
                "num_passes": 2,
                "tqdm_trigger_threshold": 16,
                "raysampler_class_type": "AdaptiveRaySampler",
                "raysampler_AdaptiveRaySampler_args": {"scene_extent": 3.0, "cast_ray_bundle_as_cone": False},
                **model,
            },
        },
        "training_loop_ImplicitronTrainingLoop_args": {
            "store_checkpoints_purge": 3, "visdom_port": 8097, "evaluator_class_type": "ImplicitronEvaluator",
            "evaluator_ImplicitronEvaluator_args": {"is_multisequence": True, "camera_difficulty_bin_breaks": [0.9]},
        },
    }


def test_translation_renames_leaves_out_and_sets_implicitron_semantics():
    result = translate_config(implicitron_tree(), "/tmp/somewhere")
    tree = result.tree
    assert tree["data_source_class_type"] == "ReconDataSource"
    assert tree["model_factory_class_type"] == "ReconModelFactory"
    assert "hydra" not in tree and tree["seed"] == 7 and tree["exp_dir"] == "/tmp/somewhere"
    data = tree["data_source_ReconDataSource_args"]
    assert data["dataset_map_provider_JsonIndexDatasetMapProviderV2_args"] == {"category": "teddybear"}
    assert "data_loader_map_provider_class_type" not in data  # not implemented here: our default is used
    loop = tree["training_loop_ReconTrainingLoop_args"]
    assert loop["checkpoint_keep_last"] == 4 and "visdom_port" not in loop
    assert loop["evaluator_class_type"] == "NVSEvaluator"
    evaluator = loop["evaluator_NVSEvaluator_args"]
    assert evaluator.pop("metrics_convention", "implicitron") == "implicitron"  # where ours has the switch
    assert evaluator == {"is_multisequence": True}
    factory = tree["model_factory_ReconModelFactory_args"]
    assert (factory["resume"], factory["resume_epoch"], factory["force_resume"]) == (True, -1, False)
    sampler = factory["model_GenericModel_args"]["raysampler_AdaptiveRaySampler_args"]
    assert sampler["scene_extent"] == 3.0 and "cast_ray_bundle_as_cone" not in sampler
    if "unit_directions" in sampler:  # where our sampler has the switch, Implicitron's behaviour is chosen
        assert sampler["unit_directions"] is True
    left_out = "\n".join(result.left_out)
    for key in ("some_future_key=1", "num_load_workers=4", "TrainEvalDataLoaderMapProvider", "tqdm_trigger_threshold",
                "camera_difficulty_bin_breaks", "path_manager_factory_class_type", "hydra"):
        assert key in left_out, key


@pytest.mark.parametrize("model, message", [
    ({"raysampler_AdaptiveRaySampler_args": {"cast_ray_bundle_as_cone": True}}, "only False can be imported"),
    ({"a_key_from_the_future": 1}, "a_key_from_the_future=1: this Implicitron setting has no counterpart"),
    ({"global_encoder_class_type": "SomethingNew"}, "recon_trainer has no SomethingNew"),
    ({"implicit_function_class_type": "IdrFeatureField"}, "importing its weights is not supported"),
    ({"image_feature_extractor_class_type": "ResNetFeatureExtractor"},
     "not supported yet: its feature maps equal Implicitron's, but"),
])
def test_model_settings_that_cannot_be_reproduced_stop_the_import(model, message):
    tree = implicitron_tree()
    for key, value in model.items():
        args = tree[MODEL]["model_GenericModel_args"]
        if isinstance(value, dict):
            args[key].update(value)
        else:
            args[key] = value
    with pytest.raises(ConfigError, match=message):
        translate_config(tree, "/tmp/x")


def test_only_generic_model_is_imported():
    tree = implicitron_tree()
    tree[MODEL]["model_class_type"] = "OverfitModel"
    with pytest.raises(ConfigError, match="only Implicitron's GenericModel"):
        translate_config(tree, "/tmp/x")


def test_state_dict_mapping_unwraps_the_passes_and_maps_each_member():
    register_implicitron_implementation(ImplicitronImplementation(
        "renderer", "_TestRenderer", map_state_dict=lambda part: {"renamed." + k: v for k, v in part.items()}))
    one, two = torch.ones(1), torch.zeros(1)
    state = {"_implicit_functions.1._fn.a.weight": one, "renderer.b": two, "image_feature_extractor.c": one}
    mapped = map_state_dict(state, {"renderer_class_type": "_TestRenderer", "implicit_function_class_type": "Nothing"})
    assert mapped == {"_implicit_functions.1.a.weight": one, "renderer.renamed.b": two,
                      "image_feature_extractor.c": one}


def test_autodecoder_codes_and_names():
    codes = torch.randn(3, 2)
    mapped = _map_sequence_autodecoder({"autodecoder._autodecoder_codes.weight": codes,
                                        "autodecoder._key_map": {"b": 1, "a": 0, "c": 2}})
    assert mapped["autodecoder._codes.weight"] is codes
    assert mapped["autodecoder._extra_state"] == {"names": ["a", "b", "c"]}
    with pytest.raises(UserError, match="rows 0..1"):
        _map_sequence_autodecoder({"autodecoder._key_map": {"a": 0, "b": 5}})


def test_autodecoder_state_loads_into_our_sequence_autodecoder():
    from recon_trainer.config import expand_args_fields
    from recon_trainer.models.global_encoder import SequenceAutodecoder

    expand_args_fields(SequenceAutodecoder)
    encoder = SequenceAutodecoder(autodecoder_args={"encoding_dim": 2, "n_instances": 3})
    codes = torch.randn(3, 2)
    encoder.load_state_dict(_map_sequence_autodecoder(
        {"autodecoder._autodecoder_codes.weight": codes, "autodecoder._key_map": {"s1": 1, "s0": 0}}))
    encoder.eval()
    torch.testing.assert_close(encoder.autodecoder(["s1", "s0"]), codes[[1, 0]])


def test_resnet_projections_are_indexed_by_stage():
    weight, kept = torch.ones(1), torch.zeros(1)
    assert _map_resnet_feature_extractor({"proj_layers.0.weight": weight, "proj_layers.3.bias": weight,
                                          "layers.0.0.conv1.weight": kept}) == {
        "projections.1.weight": weight, "projections.4.bias": weight, "layers.0.0.conv1.weight": kept}
