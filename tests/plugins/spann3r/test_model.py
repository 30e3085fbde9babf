"""Spann3RModel and DUSt3RPairModel: the conf_alpha schedule, the training forward's loss terms, reconstruct(),
starting from a DUSt3R checkpoint (dust3r_path) or a Spann3R one (pretrained_path), configuration errors,
and DUSt3R's T-view sequences as T - 1 pairs."""
import argparse
from typing import Dict, List

import pytest
import torch

from recon_trainer.config import ConfigError, expand_args_fields
from recon_trainer.data.records import SequenceRecord
from recon_trainer.errors import DataFileError
from recon_trainer.models.base import EvaluationMode
from recon_trainer_plugins.spann3r.batch import PointMapBatch, PointMapBatchBuilder
from recon_trainer_plugins.spann3r.dust3r_network import DUSt3RArchitecture, DUSt3RNetwork
from recon_trainer_plugins.spann3r.losses import dust3r_pair_loss, spann3r_loss
from recon_trainer_plugins.spann3r.model import DUSt3RPairModel, Reconstruction, Spann3RModel, dust3r_architecture
from recon_trainer_plugins.spann3r.predictions import SequencePredictions

from .test_batch import make_view, pose, sequence

TRAINING = EvaluationMode.TRAINING
NETWORK = {"img_size": [32, 32], "patch_size": 8, "enc_embed_dim": 32, "enc_depth": 1, "enc_num_heads": 2,
           "dec_embed_dim": 16, "dec_depth": 2, "dec_num_heads": 2, "head_type": "linear"}
MEMORY = {"value_depth": 1, "value_num_heads": 2}
HEIGHT, WIDTH = 16, 24
MODEL_STRING = ("AsymmetricCroCo3DStereo(pos_embed='RoPE100', img_size=(32, 32), head_type='linear', "
                "output_mode='pts3d', depth_mode=('exp', -inf, inf), conf_mode=('exp', 1, inf), patch_size=8, "
                "enc_embed_dim=32, enc_depth=1, enc_num_heads=2, dec_embed_dim=16, dec_depth=2, dec_num_heads=2)")


def portrait_sequence(frames: int) -> SequenceRecord:
    """Views of 24 x 16 (H x W) pixels: the batch stores them transposed, true_shape (24, 16)."""
    return sequence(*[make_view(24, 16, seed=t, camera_to_world=pose(0.05 * t, (0.1 * t, 0.0, 0.0)))
                      for t in range(frames)])


def spann3r(seed: int = 0, **fields) -> Spann3RModel:
    expand_args_fields(Spann3RModel)
    torch.manual_seed(seed)
    return Spann3RModel(**{"network": dict(NETWORK), "memory": dict(MEMORY), **fields})


def dust3r(seed: int = 0, **fields) -> DUSt3RPairModel:
    expand_args_fields(DUSt3RPairModel)
    torch.manual_seed(seed)
    return DUSt3RPairModel(**{"network": dict(NETWORK), **fields})


def make_batch(batch_size: int = 1, frames: int = 3) -> PointMapBatch:
    """Sequences of a camera moving sideways in front of random depth (a few pixels unknown)."""
    items = []
    for b in range(batch_size):
        views = []
        for t in range(frames):
            view = make_view(HEIGHT, WIDTH, seed=10 * b + t, camera_to_world=pose(0.05 * t, (0.1 * t, 0.0, 0.0)))
            view.depth[t, :3] = 0.0
            views.append(view)
        items.append(sequence(*views, name=f"scene{b}"))
    return PointMapBatchBuilder()(items)


def dust3r_checkpoint(path, state: Dict[str, torch.Tensor]) -> str:
    """A file as DUSt3R's training script writes it: {'model': state, 'args': Namespace(model=...), 'epoch'}."""
    torch.save({"model": state, "args": argparse.Namespace(model=MODEL_STRING, lr=1e-4), "epoch": 1}, path)
    return str(path)


def tiny_dust3r_state(seed: int = 3) -> Dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    arch = DUSt3RArchitecture(**{k: tuple(v) if isinstance(v, list) else v for k, v in NETWORK.items()})
    return DUSt3RNetwork(arch).state_dict()


def assert_same_state(actual: Dict[str, torch.Tensor], expected: Dict[str, torch.Tensor]) -> None:
    assert sorted(actual) == sorted(expected)
    for key, value in expected.items():
        torch.testing.assert_close(actual[key], value, atol=0, rtol=0, msg=key)


# ------------------------------------------------------------------------------------------------ alpha


def spann3r_alpha(epoch: int, epochs: int) -> float:
    """Spann3R training.py's alpha_c2f with alpha_init 0.4."""
    return 0.4 - 0.2 * max((epoch - 0.5 * epochs) / (0.5 * epochs), 0)


def test_conf_alpha_follows_spann3rs_schedule_and_dust3rs_constant():
    model = spann3r(max_epochs=120)
    assert model.alpha == pytest.approx(0.4)
    for epoch in (0, 30, 60, 61, 90, 119, 120):
        model.on_train_step_start(global_step=7, epoch=epoch)
        assert model.alpha == pytest.approx(spann3r_alpha(epoch, 120)), epoch
    pair = dust3r()
    for epoch in (0, 50, 99):
        pair.on_train_step_start(global_step=0, epoch=epoch)
        assert pair.alpha == pytest.approx(0.2)
    custom = dust3r(conf_alpha="0.1 + 0.3 * epoch / max_epochs", max_epochs=10)
    custom.on_train_step_start(global_step=0, epoch=5)
    assert custom.alpha == pytest.approx(0.25)
    with pytest.raises(ConfigError, match="conf_alpha") as error:
        dust3r(conf_alpha="0.2 * step")
    assert "\n" not in str(error.value)


# ------------------------------------------------------------------------------------------------ Spann3R


def test_training_forward_is_spann3rs_loss_at_the_epochs_alpha():
    model = spann3r(max_epochs=10).eval()  # eval: the memory's inference path, deterministic
    batch = make_batch(batch_size=2)
    for epoch in (0, 10):
        model.on_train_step_start(global_step=0, epoch=epoch)
        out = model(batch, evaluation_mode=TRAINING)
        assert set(model.log_vars) <= set(out)
        assert out["points"].shape == (2, 3, HEIGHT, WIDTH, 3) and out["conf"].shape == (2, 3, HEIGHT, WIDTH)
        assert float(out["alpha"]) == pytest.approx(spann3r_alpha(epoch, 10))
        predictions = model.predict(batch.images, batch.true_shape)
        total, terms = spann3r_loss(predictions, batch.points, batch.valid, batch.camera_to_world, alpha=model.alpha)
        torch.testing.assert_close(out["objective"], total)
        torch.testing.assert_close(out["loss_regr"], terms["loss_regr"])
        torch.testing.assert_close(out["points"], predictions.per_frame()[0])


def test_training_forward_back_propagates_and_evaluation_has_no_loss():
    model = spann3r().train()
    batch = make_batch()
    out = model(batch, evaluation_mode=TRAINING)
    assert torch.isfinite(out["objective"])
    out["objective"].backward()
    grads = [p.grad for name, p in model.named_parameters() if name.startswith("net.dust3r.enc_blocks")]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    with torch.no_grad():
        plain = model.eval()(batch)
    assert set(plain) == {"points", "conf"} and (plain["conf"] >= 1).all()


def test_reconstruct_returns_per_frame_points_and_the_forward_time():
    model = spann3r().eval()
    batch = make_batch(batch_size=2)
    with torch.no_grad():
        result = model.reconstruct(batch)
        predictions = model.predict(batch.images, batch.true_shape)
    assert isinstance(result, Reconstruction) and isinstance(result.predictions, SequencePredictions)
    assert result.points.shape == (2, 3, HEIGHT, WIDTH, 3) and result.conf.shape == (2, 3, HEIGHT, WIDTH)
    assert result.points.dtype == result.conf.dtype == torch.float32
    points, conf = predictions.per_frame()
    torch.testing.assert_close(result.points, points)
    torch.testing.assert_close(result.conf, conf)
    panels = model.visualize(batch)
    assert list(panels) == ["sequence_0"] and panels["sequence_0"].shape == (3, 3 * HEIGHT, 3 * WIDTH)


def test_detach_every_reaches_the_network_in_training_only(monkeypatch):
    model = spann3r(detach_every=2)
    calls: List[int] = []
    original = model.net.forward

    def recording(images, true_shape, detach_every=0):
        calls.append(detach_every)
        return original(images, true_shape, detach_every=detach_every)

    monkeypatch.setattr(model.net, "forward", recording)
    batch = make_batch()
    model.train()(batch, evaluation_mode=TRAINING)
    with torch.no_grad():
        model.eval().reconstruct(batch)
    assert calls == [2, 0]


def test_dust3r_path_starts_the_dust3r_part_and_copies_the_patch_embedding(tmp_path):
    state = tiny_dust3r_state()
    path = dust3r_checkpoint(tmp_path / "dust3r.pth", state)
    model = spann3r(dust3r_path=path, network={})
    assert_same_state(model.net.dust3r.state_dict(), state)
    assert_same_state(model.net.pos_patch_embed.state_dict(), model.net.dust3r.patch_embed.state_dict())
    with pytest.raises(DataFileError, match="missing.pth") as error:
        spann3r(dust3r_path=str(tmp_path / "missing.pth"), network={})
    assert "\n" not in str(error.value)
    with pytest.raises(ConfigError, match=r"Spann3RModel.network: the architecture comes from dust3r_path"):
        spann3r(dust3r_path=path)
    with pytest.raises(ConfigError, match="pretrained_path .* or dust3r_path .* not both"):
        spann3r(dust3r_path=path, pretrained_path=path, network={})


def test_pretrained_path_loads_a_spann3r_checkpoint(tmp_path):
    source = spann3r(seed=5).eval()
    path = tmp_path / "spann3r.pth"
    torch.save({"model": source.net.state_dict()}, path)
    # the tiny widths' head counts and img_size cannot be read from the weights (the released ones: 64 per head)
    model = spann3r(pretrained_path=str(path), network={"enc_num_heads": 2, "dec_num_heads": 2, "img_size": [32, 32]})
    assert_same_state(model.net.state_dict(), source.net.state_dict())
    batch = make_batch()
    with torch.no_grad():
        torch.testing.assert_close(model.eval().reconstruct(batch).points, source.reconstruct(batch).points)
    torch.save({"weights": source.net.state_dict()}, path)
    with pytest.raises(DataFileError, match="'model'") as error:
        spann3r(pretrained_path=str(path))
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("fields, pattern", [
    ({"network": {**NETWORK, "enc_widht": 8}}, r"Spann3RModel\.network: unknown field\(s\) \['enc_widht'\]"),
    ({"network": {**NETWORK, "enc_num_heads": 3}}, r"Spann3RModel\.network: .*enc_num_heads"),
    ({"memory": {**MEMORY, "work_memory": 3}}, r"Spann3RModel\.memory: unknown field\(s\) \['work_memory'\]"),
    ({"detach_every": -1}, r"Spann3RModel\.detach_every=-1: expected >= 0"),
])
def test_configuration_mistakes_are_one_line_config_errors(fields, pattern):
    with pytest.raises(ConfigError, match=pattern) as error:
        spann3r(**fields)
    assert "\n" not in str(error.value)


# ------------------------------------------------------------------------------------------------ DUSt3R pairs


def test_dust3r_pairs_of_a_sequence_and_their_loss():
    model = dust3r().eval()
    batch = make_batch(batch_size=2, frames=3)
    out = model(batch, evaluation_mode=TRAINING)
    assert out["points"].shape == (2, 2, 2, HEIGHT, WIDTH, 3) and out["conf"].shape == (2, 2, 2, HEIGHT, WIDTH)
    assert set(model.log_vars) <= set(out) and float(out["alpha"]) == pytest.approx(0.2)
    with torch.no_grad():
        for b in range(2):
            for k in range(2):
                pair = model.net(batch.images[b:b + 1, k], batch.images[b:b + 1, k + 1],
                                 batch.true_shape[b:b + 1, k], batch.true_shape[b:b + 1, k + 1])
                torch.testing.assert_close(out["points"][b, k, 0], pair.ref_points[0, 0])
                torch.testing.assert_close(out["points"][b, k, 1], pair.tgt_points[0, 0])
                torch.testing.assert_close(out["conf"][b, k, 1], pair.tgt_conf[0, 0])
    order = [(b, k) for b in range(2) for k in range(2)]  # the pairs (k, k + 1), sequence after sequence

    def pairs_of(x):
        return torch.stack([x[b, k:k + 2] for b, k in order])

    expected, _ = dust3r_pair_loss(model.pairs(batch.images, batch.true_shape), pairs_of(batch.points),
                                   pairs_of(batch.valid), pairs_of(batch.camera_to_world), alpha=0.2)
    torch.testing.assert_close(out["objective"], expected)


def test_dust3r_reconstructs_pairs_only():
    model = dust3r().eval()
    with torch.no_grad():
        result = model.reconstruct(make_batch(batch_size=2, frames=2))
        assert result.points.shape == (2, 2, HEIGHT, WIDTH, 3)
        with pytest.raises(ValueError, match="3 frames"):
            model.reconstruct(make_batch(frames=3))
        with pytest.raises(ValueError, match="num_frames >= 2"):
            model(make_batch(frames=1))
        panels = model.visualize(make_batch(frames=3))  # the first pair of longer training sequences
    assert list(panels) == ["sequence_0"] and panels["sequence_0"].shape == (3, 3 * HEIGHT, 2 * WIDTH)


def test_dust3r_pretrained_path_and_config_errors(tmp_path):
    state = tiny_dust3r_state()
    model = dust3r(pretrained_path=dust3r_checkpoint(tmp_path / "dust3r.pth", state))
    assert_same_state(model.net.state_dict(), state)
    with pytest.raises(ConfigError, match=r"DUSt3RPairModel\.network: unknown field\(s\) \['depth'\]"):
        dust3r(network={"depth": 3})


def test_dust3r_with_manyar_reads_stored_portraits_as_the_portraits_they_are():
    """ManyAR_PatchEmbed + landscape_only on the batch's transposed portraits = the same weights run on the
    portrait tensors themselves (PatchEmbedDust3R, landscape_only false), transposed as the ground truth is."""
    record = portrait_sequence(2)
    batch = PointMapBatchBuilder()([record])
    assert batch.images.shape[-2:] == (16, 24) and batch.true_shape[0, 0].tolist() == [24, 16]
    manyar = dust3r(network={**NETWORK, "patch_embed_cls": "ManyAR_PatchEmbed"}).eval()
    upright = dust3r(network={**NETWORK, "landscape_only": False}).eval()
    upright.load_state_dict(manyar.state_dict())
    images = torch.stack([view.image for view in record.views])[None] * 2 - 1  # (1, 2, 3, 24, 16)
    with torch.no_grad():
        stored = manyar.reconstruct(batch).points
        expected = upright.predict(images, batch.true_shape).per_frame()[0]
    assert expected.shape == (1, 2, 24, 16, 3)
    torch.testing.assert_close(stored, expected.transpose(2, 3))


@pytest.mark.parametrize("make, frames, patch_embed",
                         [(spann3r, 3, "ManyAR_PatchEmbed"), (dust3r, 2, "PatchEmbedDust3R")])
def test_portraits_are_refused_by_networks_that_would_scramble_them(make, frames, patch_embed):
    """PatchEmbedDust3R (Spann3R's always, as the original replaces ManyAR; DUSt3R's by choice) reads a stored
    portrait as a landscape image."""
    model = make(network={**NETWORK, "patch_embed_cls": patch_embed}).eval()
    with pytest.raises(ValueError, match=r"portrait view \(true_shape 24x16\).*'PatchEmbedDust3R'") as error:
        model(PointMapBatchBuilder()([portrait_sequence(frames)]))
    assert "\n" not in str(error.value)


def test_an_empty_network_is_the_released_512_dpt():
    arch = dust3r_architecture({}, "Spann3RModel.network")
    assert arch == DUSt3RArchitecture(img_size=(512, 512), head_type="dpt", patch_embed_cls="ManyAR_PatchEmbed")
    assert (arch.enc_embed_dim, arch.enc_depth, arch.dec_embed_dim, arch.dec_depth) == (1024, 24, 768, 12)
    assert dust3r_architecture({"head_type": "linear"}, "key").img_size == 224  # a given network: the class defaults


def test_offline_mode_reconstructs_in_the_order_it_chose_and_the_evaluator_follows():
    from recon_trainer_plugins.spann3r.evaluator import PointMapEvaluator

    model = spann3r(offline=True).eval()
    batch = make_batch(batch_size=1, frames=4)
    with torch.no_grad():
        result = model.reconstruct(batch)
        direct = model.net.offline_reconstruction(batch.images, batch.true_shape)
    assert sorted(result.order) == [0, 1, 2, 3] and result.order == direct.order
    torch.testing.assert_close(result.points, direct.predictions.per_frame()[0])
    model.train()
    assert model.predict_in_order(batch.images, batch.true_shape)[1] is None  # training: online, as given
    expand_args_fields(PointMapEvaluator)
    evaluation = PointMapEvaluator().evaluate(model=model, dataloader=[batch], device=torch.device("cpu"))
    assert evaluation.metrics["accuracy"] >= 0 and evaluation.results["n_scenes"] == {batch.dataset[0]: 1}
