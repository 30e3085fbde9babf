"""recon_import_implicitron on an Implicitron NeRF exp_dir: the imported run renders what Implicitron
rendered, works with the runner and the visualizer's loading path, and user mistakes end in one line.

The fixture tests/fixtures/implicitron/ (tools/parity/make_implicitron_checkpoint_fixtures.py) holds
exp_nerf/ as Implicitron's trainer writes it (expconfig.yaml, model_epoch_00000000.pth: a small
2-pass NeRF with seeded random weights) and nerf_render.pt: one camera and Implicitron's full-grid
render of it (16 x 12, 8 + 8 points per ray); exp_nerf_ad/ and nerf_ad_render.pt the same NeRF
with a SequenceAutodecoder (NeRF+AD), rendered with the code of sequence "seq_a".
"""
import os
import shutil

import pytest
import torch
import yaml

from recon_trainer.cli.import_implicitron import main as import_main
from recon_trainer.config import expand_args_fields
from recon_trainer.config.saved import load_saved_config
from recon_trainer.data.cameras import PerspectiveCameras
from recon_trainer.data.frame_data import FrameData
from recon_trainer.experiment import Experiment
from recon_trainer.models.base import EvaluationMode
from recon_trainer.models.implicitron_import import IMPORT_RECORD, import_implicitron
from recon_trainer.training.checkpoints import list_checkpoints, load_checkpoint
from recon_trainer_plugins.nerf.implicitron_import import map_nerf_state_dict

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "implicitron")
EXP_NERF = os.path.join(FIXTURES, "exp_nerf")
ATOL = 1e-4
RENDER_KEYS = ("images_render", "depths_render", "masks_render")


def load_render(name="nerf"):
    return torch.load(os.path.join(FIXTURES, f"{name}_render.pt"), weights_only=True)


def fixture_camera(render) -> PerspectiveCameras:
    return PerspectiveCameras(R=render["R"], T=render["T"], focal_length=render["focal_length"],
                              principal_point=render["principal_point"], image_size=render["image_size"])


def imported_model(dst):
    """The model as `eval_only` / recon_visualizer get it: the saved config and the model factory."""
    expand_args_fields(Experiment)
    cfg = load_saved_config(os.path.join(dst, "expconfig.yaml"), Experiment)
    experiment = Experiment(**cfg)
    model = experiment.model_factory(exp_dir=str(dst))
    assert experiment.model_factory.resumed_checkpoint() is not None
    return model.eval()


def copy_exp(tmp_path):
    src = tmp_path / "implicitron_exp"
    shutil.copytree(EXP_NERF, src)
    return src


@pytest.mark.parametrize("name, sequence_name", [("nerf", None), ("nerf_ad", ["seq_a"])])
def test_imported_checkpoint_renders_as_implicitron(tmp_path, name, sequence_name):
    render = load_render(name)
    dst = tmp_path / "ours"
    result = import_implicitron(os.path.join(FIXTURES, f"exp_{name}"), str(dst))
    assert (result.epoch, result.implicit_function) == (0, "NeuralRadianceFieldImplicitFunction")
    assert [os.path.basename(f.path) for f in list_checkpoints(str(dst))] == ["checkpoint_epoch_00000000.pth"]
    model = imported_model(dst)
    if sequence_name is not None:  # Implicitron's row order of the codes is kept
        assert model.global_encoder.autodecoder.get_extra_state() == {"names": ["seq_b", "seq_a", "seq_c"]}
    batch = FrameData(camera=fixture_camera(render), sequence_name=sequence_name)
    with torch.no_grad():
        rays = model.raysampler(fixture_camera(render), EvaluationMode.EVALUATION)
        preds = model(batch, evaluation_mode=EvaluationMode.EVALUATION)
    # The rays first (Implicitron's unit-length directions, lengths = distances along the ray) ...
    torch.testing.assert_close(rays.directions, render["ray_directions"], atol=1e-5, rtol=0)
    torch.testing.assert_close(rays.lengths, render["ray_lengths"], atol=1e-5, rtol=0)
    # ... then the render of both passes' imported weights.
    for key in RENDER_KEYS:
        assert preds[key].shape == render[key].shape, key
        torch.testing.assert_close(preds[key], render[key], atol=ATOL, rtol=0, msg=lambda m, k=key: f"{k}: {m}")


def test_written_run_directory(tmp_path):
    dst = tmp_path / "ours"
    import_implicitron(EXP_NERF, str(dst))
    assert sorted(os.listdir(dst)) == ["checkpoint_epoch_00000000.pth", "expconfig.yaml", IMPORT_RECORD]
    config = yaml.safe_load((dst / "expconfig.yaml").read_text())
    factory = config["model_factory_ReconModelFactory_args"]
    model = factory["model_GenericModel_args"]
    assert model["implicit_function_class_type"] == "NeuralRadianceFieldImplicitFunction"
    assert list(k for k in model if k.startswith("implicit_function_")) == [
        "implicit_function_class_type", "implicit_function_NeuralRadianceFieldImplicitFunction_args"]
    assert model["num_passes"] == 2 and (model["render_image_height"], model["render_image_width"]) == (12, 16)
    assert model["chunk_size_grid"] == 64  # points per chunk, as in Implicitron
    assert config["training_loop_class_type"] == "ReconTrainingLoop"
    assert config["exp_dir"] == str(dst)
    checkpoint = load_checkpoint(str(dst / "checkpoint_epoch_00000000.pth"))
    assert checkpoint.epoch_finished and checkpoint.optimizer is None
    assert checkpoint.config_yaml == (dst / "expconfig.yaml").read_text()
    record = yaml.safe_load((dst / IMPORT_RECORD).read_text())
    assert record["checkpoint"] == "model_epoch_00000000.pth"
    left_out = "\n".join(record["left_out"])
    for key in ("use_integrated_positional_encoding=False", "cast_ray_bundle_as_cone=False", "visdom_port"):
        assert key in left_out
    # The run's own config, built again from the file, is the one in the checkpoint (no "config changed" warning).
    expand_args_fields(Experiment)
    experiment = Experiment(**load_saved_config(str(dst / "expconfig.yaml"), Experiment))
    from omegaconf import OmegaConf
    assert OmegaConf.to_yaml(experiment.resolved_config()) == checkpoint.config_yaml


def test_state_dict_mapping_splits_the_colour_layer():
    state = torch.load(os.path.join(EXP_NERF, "model_epoch_00000000.pth"), weights_only=True)
    prefix = "_implicit_functions.1._fn."
    part = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    mapped = map_nerf_state_dict(part)
    joined = torch.cat([mapped["head.color_feature_layer.weight"], mapped["head.color_direction_layer.weight"]], dim=1)
    torch.testing.assert_close(joined, part["color_layer.0.weight"], atol=0, rtol=0)
    assert mapped["xyz_encoder.layers.2.weight"] is part["xyz_encoder.mlp.2.0.weight"]
    assert len(mapped) == len(part) + 1


def test_cli_writes_and_says_how_to_evaluate(tmp_path, capsys):
    dst = tmp_path / "ours"
    import_main([EXP_NERF, str(dst)])
    out = capsys.readouterr().out
    assert "epoch 0" in out and "--config-name expconfig" in out and str(dst) in out


def one_line_error(capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        import_main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("recon_import_implicitron: error: ")
    return err


def test_missing_config_or_weights(tmp_path, capsys):
    src = copy_exp(tmp_path)
    os.remove(src / "expconfig.yaml")
    assert "expconfig.yaml does not exist" in one_line_error(capsys, [str(src), str(tmp_path / "a")])
    src = copy_exp(tmp_path / "b")
    os.remove(src / "model_epoch_00000000.pth")
    assert "no Implicitron model file" in one_line_error(capsys, [str(src), str(tmp_path / "c")])
    assert "is not a folder" in one_line_error(capsys, [str(tmp_path / "nothing"), str(tmp_path / "d")])
    assert "model_epoch_00000007.pth" in one_line_error(capsys, [EXP_NERF, str(tmp_path / "e"), "--epoch", "7"])
    assert not any(p.name in "acde" for p in tmp_path.iterdir())


def edit_config(src, edit):
    path = src / "expconfig.yaml"
    config = yaml.safe_load(path.read_text())
    edit(config["model_factory_ImplicitronModelFactory_args"]["model_GenericModel_args"])
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def test_unsupported_implicit_function_or_setting(tmp_path, capsys):
    src = copy_exp(tmp_path)
    edit_config(src, lambda m: m.update(implicit_function_class_type="IdrFeatureField"))
    err = one_line_error(capsys, [str(src), str(tmp_path / "x")])
    assert "IdrFeatureField: importing its weights is not supported" in err
    edit_config(src, lambda m: m.update(implicit_function_class_type="VoxelGridImplicitFunction"))
    err = one_line_error(capsys, [str(src), str(tmp_path / "x")])
    assert "VoxelGridImplicitFunction: importing its weights is not supported" in err
    src = copy_exp(tmp_path / "b")
    edit_config(src, lambda m: m["implicit_function_NeuralRadianceFieldImplicitFunction_args"].update(
        use_integrated_positional_encoding=True))
    err = one_line_error(capsys, [str(src), str(tmp_path / "x")])
    assert "use_integrated_positional_encoding=True: only False can be imported" in err
    src = copy_exp(tmp_path / "c")
    edit_config(src, lambda m: m.update(a_new_implicitron_field=3))
    assert "a_new_implicitron_field=3" in one_line_error(capsys, [str(src), str(tmp_path / "x")])
    assert not (tmp_path / "x").exists()


def test_unexpected_or_missing_tensors(tmp_path, capsys):
    src = copy_exp(tmp_path)
    path = src / "model_epoch_00000000.pth"
    state = torch.load(path, weights_only=True)
    state["_implicit_functions.0._fn.extra_layer.weight"] = torch.zeros(2)
    torch.save(state, path)
    err = one_line_error(capsys, [str(src), str(tmp_path / "x")])
    assert "1 unexpected: _implicit_functions.0.extra_layer.weight" in err
    del state["_implicit_functions.0._fn.extra_layer.weight"], state["_implicit_functions.1._fn.density_layer.bias"]
    torch.save(state, path)
    assert "1 missing: _implicit_functions.1.head.density_layer.bias" in one_line_error(
        capsys, [str(src), str(tmp_path / "x")])
    path.write_bytes(b"not a checkpoint")
    assert "not a readable torch state dict" in one_line_error(capsys, [str(src), str(tmp_path / "x")])
    assert not (tmp_path / "x").exists()


def test_never_overwrites_the_destination(tmp_path, capsys):
    dst = tmp_path / "ours"
    dst.mkdir()
    (dst / "keep.txt").write_text("mine")
    assert "already exists" in one_line_error(capsys, [EXP_NERF, str(dst)])
    assert os.listdir(dst) == ["keep.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    import_implicitron(EXP_NERF, str(empty))  # an empty folder is fine
    assert "expconfig.yaml" in os.listdir(empty)
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".tmp_")]
