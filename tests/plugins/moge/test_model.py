"""MoGeModel: the per-label-type losses, the token schedule, released checkpoints, evaluation outputs."""
import math

import pytest
import torch

from recon_trainer.config import ConfigError
from recon_trainer.errors import UserError
from recon_trainer.models.base import EvaluationMode
from recon_trainer.training.param_groups import assign_param_groups
from recon_trainer_plugins.moge.batch import MoGeBatch
from recon_trainer_plugins.moge.loss_config import default_losses
from recon_trainer_plugins.moge.loss_terms import LossTargets, group_terms, sample_terms
from recon_trainer_plugins.moge.model import MoGeModel

from .tiny_networks import v1_config, v2_config

FIXTURES = "tests/fixtures/moge"
TRAINING = EvaluationMode.TRAINING


def tiny_losses(version):
    """The released terms with alignment grids small enough for 28 x 36 images."""
    losses = default_losses(version)
    for terms in losses.values():
        for name in [n for n in terms if n in ("patch_16", "patch_64")]:
            del terms[name]
        for term in terms.values():
            if "align_resolution" in term["params"]:
                term["params"]["align_resolution"] = 8
            if term["function"] == "affine_invariant_local_loss":
                term["params"]["num_patches"] = 2
    return losses


def tiny_model(version="v1", **fields):
    torch.manual_seed(0)
    network = v1_config() if version == "v1" else v2_config()
    return MoGeModel(version=version, network=network, losses=tiny_losses(version), **fields)


def make_batch(label_types, height=28, width=36, metric=True):
    """Views of a tilted plane (depth 2..5) with a sky band on top and a few unknown pixels."""
    n = len(label_types)
    rows = torch.linspace(0, 1, height)[:, None].expand(height, width)
    depth = (2.0 + 3.0 * rows).expand(n, height, width).clone()
    depth[:, :4] = math.inf
    depth[:, 10, 5:9] = math.nan
    intrinsics = torch.tensor([[0.9, 0.0, 0.5], [0.0, 0.9 * width / height, 0.5], [0.0, 0.0, 1.0]]).expand(n, 3, 3)
    normal = torch.zeros(n, height, width, 3)
    normal[..., 1] = -1.0
    return MoGeBatch(
        image=torch.rand(n, 3, height, width, generator=torch.Generator().manual_seed(1)),
        depth=depth, depth_mask_fin=torch.isfinite(depth) | torch.isnan(depth), depth_mask_inf=torch.isinf(depth),
        intrinsics=intrinsics.clone(), is_metric=torch.full((n,), metric), normal=normal,
        normal_mask=torch.isfinite(depth), label_type=list(label_types), dataset=["plane"] * n,
    )


def test_training_forward_gives_every_term_and_the_mean_of_the_samples():
    model = tiny_model()
    batch = make_batch(["synthetic", "lidar"])
    preds = model(batch, evaluation_mode=TRAINING)
    assert preds["points"].shape == (2, 28, 36, 3) and preds["mask"].shape == (2, 28, 36)
    assert set(model.log_vars) <= set(preds) | {"skipped_steps"}
    # synthetic: global, patch_4, normal, mask; lidar: global, patch_4, mask
    single = [model(batch.select(i), evaluation_mode=TRAINING)["objective"] for i in range(2)]
    torch.testing.assert_close(preds["objective"], torch.stack(single).mean())
    preds["objective"].backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("version, label", [("v1", "synthetic"), ("v2", "A")])
def test_terms_grouped_by_label_type_equal_the_per_sample_reference(version, label):
    model = tiny_model(version)
    batch = make_batch([label, label, label])
    batch.is_metric[1] = False
    with torch.no_grad():
        preds = model(batch)
    terms = model._losses[label]
    targets = LossTargets.of(batch)
    grouped = group_terms(terms, preds, targets, [0, 1, 2])
    for i in range(3):
        reference = sample_terms(terms, preds, targets, i)
        for name, (samples, values) in grouped.items():
            assert (i in samples) == (name in reference), name
            if i in samples and terms[name]["function"] != "affine_invariant_local_loss":  # random patches
                torch.testing.assert_close(values[samples.index(i)], reference[name], rtol=1e-5, atol=1e-7)
    if version == "v2":
        assert grouped["metric_scale"][0] == [0, 2]  # sample 1 has relative depth


def test_invalid_samples_add_zero_and_unknown_label_types_are_named():
    model = tiny_model()
    both = model(make_batch(["synthetic", "invalid"]), evaluation_mode=TRAINING)["objective"]
    alone = model(make_batch(["synthetic"]), evaluation_mode=TRAINING)["objective"]
    torch.testing.assert_close(both, alone / 2)  # MoGe averages over every sample, invalid ones add 0
    invalid = model(make_batch(["invalid"]), evaluation_mode=TRAINING)["objective"]
    invalid.backward()  # the graph is kept: the step runs, with zero gradients
    assert float(invalid.detach()) == 0.0
    with pytest.raises(ValueError, match=r"label_type 'outdoor', which MoGeModel.losses does not list"):
        model(make_batch(["outdoor"]), evaluation_mode=TRAINING)


def test_v2_adds_normal_map_and_metric_scale_only_where_they_apply():
    model = tiny_model("v2")
    with torch.no_grad():
        metric = model(make_batch(["A"]), evaluation_mode=TRAINING)
        relative = model(make_batch(["A"], metric=False), evaluation_mode=TRAINING)
    assert float(metric["loss_metric_scale"]) > 0 and float(relative["loss_metric_scale"]) == 0
    assert float(metric["loss_normal_map"]) > 0
    expected = sum(term["weight"] * metric[f"loss_{name}"] for name, term in tiny_losses("v2")["A"].items())
    torch.testing.assert_close(metric["objective"], expected)
    assert set(metric) >= {"normal", "metric_scale"}


@pytest.mark.parametrize("losses, message", [
    ({"synthetic": {"g": {"function": "affine_invariant_globl_loss"}}},
     r"MoGeModel.losses.synthetic.g.function='affine_invariant_globl_loss': unknown loss function; did you mean "
     r"'affine_invariant_global_loss'"),
    ({"synthetic": {"g": {"function": "affine_invariant_global_loss", "params": {"align_res": 8}}}},
     r"MoGeModel.losses.synthetic.g.params.align_res: affine_invariant_global_loss has no such parameter"),
    ({"synthetic": {"p": {"function": "affine_invariant_local_loss", "params": {"level": 4}}}},
     r"MoGeModel.losses.synthetic.p: affine_invariant_local_loss uses the global alignment scale"),
    ({"synthetic": {"m": {"function": "mask_l2_loss", "weight": -1}}}, r"MoGeModel.losses.synthetic.m.weight=-1"),
    ({"synthetic": {"m": {"function": "mask_l2_loss", "wieght": 1}}}, r"synthetic.m.wieght: unknown key; did you mean"),
])
def test_loss_config_mistakes_name_the_key(losses, message):
    with pytest.raises(ConfigError, match=message):
        MoGeModel(network=v1_config(), losses=losses)


def test_token_count_is_low_first_then_drawn_per_step_the_same_after_a_resume():
    model = tiny_model(low_resolution_training_steps=10)
    model.on_train_step_start(9, 0)
    assert model._train_tokens == 30
    drawn = []
    for step in (10, 11, 12, 500):
        model.on_train_step_start(step, 0)
        drawn.append(model._train_tokens)
    again = tiny_model(low_resolution_training_steps=10)
    again.on_train_step_start(500, 3)
    assert all(30 <= n <= 60 for n in drawn) and len(set(drawn)) > 1 and again._train_tokens == drawn[-1]
    assert model.num_tokens_at_level(0) == 30 and model.num_tokens_at_level(9) == 60


def test_backbone_group_and_unused_parameters_frozen():
    model = tiny_model()
    groups = assign_param_groups(model)
    backbone = {id(p) for p in model.net.backbone.parameters() if p.requires_grad}
    assert {id(p) for p in groups["backbone"]} == backbone and backbone
    assert not model.net.backbone.mask_token.requires_grad  # never used: DDP would wait for its gradient


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_released_checkpoint_through_the_config_gives_the_originals_outputs(tmp_path, version):
    fixture = torch.load(f"{FIXTURES}/{version}_network.pt", weights_only=True)
    path = tmp_path / "model.pt"
    config = dict(fixture["model_config"], backbone_override=fixture["backbone_override"])  # the tiny original
    torch.save({"model_config": config, "model": fixture["model"]}, path)
    model = MoGeModel(version=version, pretrained_path=str(path)).eval()
    with torch.no_grad():
        out = model.net(fixture["image"], int(fixture["num_tokens"]))
    torch.testing.assert_close(out["points"], fixture["points"], atol=1e-4, rtol=1e-4)
    other = "v2" if version == "v1" else "v1"
    with pytest.raises(ConfigError, match=rf"holds a MoGe {version} model; set MoGeModel.version={version}"):
        MoGeModel(version=other, pretrained_path=str(path))
    with pytest.raises(UserError, match="missing.pt"):
        MoGeModel(version=version, pretrained_path=str(tmp_path / "missing.pt"))


@pytest.mark.parametrize("version, kind", [("v1", "scale_invariant"), ("v2", "metric")])
def test_evaluation_outputs_and_visualisation(version, kind):
    model = tiny_model(version).eval()
    batch = make_batch(["synthetic" if version == "v1" else "A"] * 2)
    with torch.no_grad():
        geometry = model.predict_geometry(batch)
        images = model.visualize(batch)
    assert set(geometry) == {f"points_{kind}", f"depth_{kind}", "intrinsics", "mask"}
    assert geometry[f"points_{kind}"].shape == (2, 28, 36, 3) and geometry["intrinsics"].shape == (2, 3, 3)
    assert sorted(images) == ["geometry_0", "geometry_1"]
    assert images["geometry_0"].shape == (3, 56, 144) and 0 <= float(images["geometry_0"].min())
    model.use_gt_fov = True
    with torch.no_grad():
        given = model.predict_geometry(batch)["intrinsics"]
    torch.testing.assert_close(given[:, 0, 0], batch.intrinsics[:, 0, 0], atol=1e-5, rtol=1e-5)
