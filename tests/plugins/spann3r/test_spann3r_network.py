"""Spann3R network and spatial memory: parity with the original Spann3R (tests/fixtures/spann3r/spann3r_seq3.pt,
made by tools/parity/make_spann3r_fixtures.py from a tiny random original), the memory read against a
plain loop, the memory's bookkeeping (working / long-term memory, pruning, similarity skipping),
truncated back-propagation, offline reconstruction and checkpoint reading."""
import argparse
import math
import os

import pytest
import torch
from torch import nn

from recon_trainer.config.errors import ConfigError
from recon_trainer.errors import DataFileError
from recon_trainer_plugins.spann3r.dust3r_checkpoint import parse_model_string
from recon_trainer_plugins.spann3r.dust3r_network import DUSt3RArchitecture
from recon_trainer_plugins.spann3r.spann3r_checkpoint import load_spann3r_checkpoint, read_spann3r_checkpoint
from recon_trainer_plugins.spann3r.spann3r_network import MemoryArchitecture, Spann3RNetwork
from recon_trainer_plugins.spann3r.spatial_memory import SpatialMemory, memory_read

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "spann3r", "spann3r_seq3.pt")
PRED_KEYS = ("ref_points", "ref_conf", "tgt_points", "tgt_conf")
ATOL = RTOL = 1e-4
TINY = DUSt3RArchitecture(img_size=(16, 24), patch_size=8, enc_embed_dim=32, enc_depth=1, enc_num_heads=2,
                          dec_embed_dim=16, dec_depth=2, dec_num_heads=2)


@pytest.fixture(scope="module")
def fixture():
    return torch.load(FIXTURE, weights_only=True)


def tiny_overrides(fixture):
    """What the weights cannot tell about the fixture's DUSt3R (head counts, image size)."""
    arch = parse_model_string(fixture["dust3r_model_string"], "fixture")
    return {"enc_num_heads": arch.enc_num_heads, "dec_num_heads": arch.dec_num_heads, "img_size": arch.img_size}


def write_checkpoint(tmp_path, fixture, use_feat=False, **extra):
    state = dict(fixture["model"])
    if use_feat:
        state = {k: v for k, v in state.items() if not k.startswith(("pos_patch_embed", "value_"))}
        state.update(fixture["use_feat_model"])
    path = tmp_path / "spann3r.pth"
    torch.save({"model": state, **extra}, path)
    return str(path)


def tiny_network(seed=0, **memory):
    torch.manual_seed(seed)
    return Spann3RNetwork(TINY, MemoryArchitecture(value_depth=1, **memory))


def frames(batch, count, seed=0):
    return torch.rand(batch, count, 3, 16, 24, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def identity_norms():
    return [nn.Identity() for _ in range(3)]


# ---------------------------------------------------------------------------------------------- memory read

def loop_read(query, keys, values, thresh):
    """memory_read with plain Python loops (LayerNorms without affine, as nn.LayerNorm's defaults)."""
    def normed(x):
        mean = sum(x) / len(x)
        var = sum((v - mean) ** 2 for v in x) / len(x)
        return [(v - mean) / math.sqrt(var + 1e-5) for v in x]
    out = torch.zeros_like(query)
    received = torch.zeros(keys.shape[:2])
    for b in range(query.shape[0]):
        nk = [normed(keys[b, n].tolist()) for n in range(keys.shape[1])]
        nv = [normed(values[b, n].tolist()) for n in range(keys.shape[1])]
        for p in range(query.shape[1]):
            q = normed(query[b, p].tolist())
            logits = [sum(a * c for a, c in zip(q, k)) / math.sqrt(len(q)) for k in nk]
            top = max(logits)
            weights = [math.exp(v - top) for v in logits]
            weights = [w / sum(weights) for w in weights]
            if thresh > 0:
                weights = [w if w >= thresh else 0.0 for w in weights]
                weights = [w / sum(weights) for w in weights]
            for n, w in enumerate(weights):
                received[b, n] += w
                for c in range(query.shape[2]):
                    out[b, p, c] += w * nv[n][c]
            out[b, p] += query[b, p]
    return out, received


@pytest.mark.parametrize("thresh", [0.0, 0.08])
def test_memory_read_matches_a_plain_loop(thresh):
    generator = torch.Generator().manual_seed(1)
    query, keys, values = (torch.randn(2, n, 8, generator=generator) for n in (3, 7, 7))
    norms = [nn.LayerNorm(8) for _ in range(3)]
    out, attention = memory_read(query, keys, values, *norms, attn_thresh=thresh)
    expected, received = loop_read(query, keys, values, thresh)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(attention.sum(dim=1), received, atol=1e-6, rtol=1e-5)
    if thresh:
        assert bool((attention == 0).any()) and bool(((attention == 0) | (attention >= thresh)).all())


def test_memory_read_dropout_scales_kept_entries():
    generator = torch.Generator().manual_seed(2)
    query, keys, values = (torch.randn(1, n, 8, generator=generator) for n in (4, 50, 50))
    norms = [nn.LayerNorm(8) for _ in range(3)]
    _, plain = memory_read(query, keys, values, *norms)
    torch.manual_seed(0)
    _, dropped = memory_read(query, keys, values, *norms, dropout=0.5)
    kept = dropped != 0
    assert 0 < int(kept.sum()) < kept.numel()
    torch.testing.assert_close(dropped[kept], 2 * plain[kept])


def test_memory_read_never_gives_nan_when_all_entries_are_below_the_threshold():
    query, keys, values = torch.ones(1, 1, 4), torch.ones(1, 10, 4), torch.randn(1, 10, 4)
    keys[0, :, 0] = 2.0
    out, attention = memory_read(query, keys, values, *identity_norms(), attn_thresh=0.5)
    assert bool((attention == 0).all()) and torch.equal(out, query)


def test_memory_read_matches_the_original(fixture):
    read = fixture["read"]
    norms = []
    for name in "qkv":
        norm = nn.LayerNorm(read["query"].shape[-1])
        norm.load_state_dict({"weight": read[f"norm_{name}_weight"], "bias": read[f"norm_{name}_bias"]})
        norms.append(norm)
    memory = SpatialMemory(*norms, MemoryArchitecture(attn_thresh=read["attn_thresh"]), training=False)
    memory.add(read["mem_k"], read["mem_v"])
    with torch.no_grad():
        out = memory.read(read["query"])
    torch.testing.assert_close(out, read["out"], atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(memory.received, read["mem_attn"], atol=ATOL, rtol=RTOL)


# ---------------------------------------------------------------------------------------------- bookkeeping

def orthogonal_frames(count, patches=2, width=16):
    """Keys of `count` frames, pairwise orthogonal (never similar)."""
    basis = torch.eye(width)
    return [basis[i * patches:(i + 1) * patches][None] for i in range(count)]


def test_working_memory_moves_frames_to_long_term_and_prunes_with_protection():
    arch = MemoryArchitecture(work_mem_size=2, long_mem_size=5, sim_thresh=0.9)
    memory = SpatialMemory(*identity_norms(), arch, training=False)
    keys = orthogonal_frames(8)
    for i, key in enumerate(keys[:4]):
        assert memory.add_checked(key, key + i)
    assert (memory.working_frames, memory.long_term_tokens, memory.num_tokens) == (2, 4, 8)
    # attention received: the older a token, the more it received
    memory.received = torch.arange(8.0)[None].flip(1).clone()
    memory.counts = memory.counts + 8  # age every frame beyond the protection window (2 + 5 frames)
    assert memory.add_checked(keys[4], keys[4])  # long-term 6 > 5 tokens: prune to 5
    assert memory.prunes == 1 and memory.num_tokens == 5
    assert memory.long_term_tokens == 5 - 2 * 2
    # the newest frame (count 0) is protected; the others ranked by attention / age; time order kept
    kept_values = memory.values[0, :, :].argmax(dim=-1).tolist()
    assert kept_values == sorted(kept_values) and kept_values[-2:] == [8, 9]
    torch.testing.assert_close(memory.keys[0, -2:], keys[4][0])


def test_original_prune_order_sorts_by_weight():
    arch = MemoryArchitecture(work_mem_size=1, long_mem_size=3, prune_keeps_time_order=False)
    memory = SpatialMemory(*identity_norms(), arch, training=False)
    for key in orthogonal_frames(2):
        memory.add_checked(key, key)
    memory.received = torch.tensor([[1.0, 5.0, 3.0, 0.0]])
    memory.counts = torch.tensor([[20.0, 20.0, 20.0, 20.0]])
    memory.prune()
    assert memory.keys[0].argmax(dim=-1).tolist() == [1, 2, 0]


def test_long_mem_size_zero_drops_the_oldest_frame():
    memory = SpatialMemory(*identity_norms(), MemoryArchitecture(work_mem_size=2, long_mem_size=0), training=False)
    keys = orthogonal_frames(3)
    for key in keys:
        memory.add_checked(key, key)
    assert memory.num_tokens == 4 and memory.prunes == 0
    torch.testing.assert_close(memory.keys[0], torch.cat([keys[1][0], keys[2][0]]))


def test_a_frame_similar_to_the_working_memory_is_skipped():
    memory = SpatialMemory(*identity_norms(), MemoryArchitecture(sim_thresh=0.95), training=False)
    key = orthogonal_frames(1)[0]
    assert memory.add_checked(key, key)
    assert not memory.add_checked(key * 3 + 0.01, key)
    assert memory.stats()["frames_skipped"] == 1 and memory.num_tokens == 2
    never = SpatialMemory(*identity_norms(), MemoryArchitecture(sim_thresh=1.0), training=False)
    assert never.add_checked(key, key) and never.add_checked(key, key)


def test_training_adds_every_frame_and_reads_with_dropout():
    memory = SpatialMemory(*identity_norms(), MemoryArchitecture(memory_dropout=0.3), training=True)
    key = orthogonal_frames(1)[0]
    for _ in range(8):
        memory.add(key, key)
    assert memory.num_tokens == 16 and (memory.dropout, memory.attn_thresh) == (0.3, 0.0)
    assert memory.counts[0].tolist() == [7.0, 7.0, 6.0, 6.0, 5.0, 5.0, 4.0, 4.0, 3.0, 3.0, 2.0, 2.0, 1.0, 1.0, 0, 0]


@pytest.mark.parametrize("field, value, message", [
    ("work_mem_size", 0, "work_mem_size=0: expected > 0"),
    ("long_mem_size", -1, "long_mem_size=-1: expected >= 0"),
    ("memory_dropout", 1.0, "memory_dropout=1.0: expected in"),
    ("sim_thresh", 1.5, "sim_thresh=1.5: expected a cosine similarity"),
])
def test_memory_architecture_rejects_bad_values(field, value, message):
    with pytest.raises(ValueError, match=message):
        MemoryArchitecture(**{field: value})


# ---------------------------------------------------------------------------------------------- parity

@pytest.mark.parametrize("name", ["seq3", "seq3_train", "seq3_rope", "seq3_feat", "long"])
def test_forward_matches_the_original(tmp_path, fixture, name):
    case = fixture["cases"][name]
    path = write_checkpoint(tmp_path, fixture, use_feat=case["memory"].get("use_feat", False))
    network = load_spann3r_checkpoint(path, memory_overrides=case["memory"], dust3r_overrides=tiny_overrides(fixture))
    network.train(case["mode"] == "train")
    with torch.no_grad():
        predictions, memory = network.run(case["images"], case["true_shape"], inference=case["mode"] == "eval")
    for key in PRED_KEYS:
        torch.testing.assert_close(getattr(predictions, key), case[key], atol=ATOL, rtol=RTOL,
                                   msg=lambda m: f"{key}: {m}")
    assert memory.num_tokens == case["tokens"]
    events = case["events"]
    assert memory.frames_skipped == sum(event[0] == "skip" for event in events)
    assert memory.prunes == sum(event[0] == "prune" for event in events)
    if name == "long":  # the case exercises skipping and two prunes
        assert memory.frames_skipped == 1 and memory.prunes == 2


def test_forward_of_the_module_follows_the_training_flag(tmp_path, fixture):
    case = fixture["cases"]["seq3"]
    network = load_spann3r_checkpoint(write_checkpoint(tmp_path, fixture), dust3r_overrides=tiny_overrides(fixture),
                                      memory_overrides={"memory_dropout": 0.0})
    with torch.no_grad():
        predictions = network.eval()(case["images"], case["true_shape"])
        online = network.online(case["images"], case["true_shape"])
    torch.testing.assert_close(predictions.ref_points, case["ref_points"], atol=ATOL, rtol=RTOL)
    points, conf = predictions.per_frame()
    assert online.points.shape == (2, 3, 16, 24, 3) and online.conf.shape == (2, 3, 16, 24)
    torch.testing.assert_close(online.points, points)
    torch.testing.assert_close(online.conf, conf)
    assert online.memory["frames_added"] == 2 and online.memory["working_frames"] == 2


def test_offline_reconstruction_matches_the_original(tmp_path, fixture):
    expected = fixture["offline"]
    images = fixture["cases"]["long"]["images"][:, :4]
    network = load_spann3r_checkpoint(write_checkpoint(tmp_path, fixture), dust3r_overrides=tiny_overrides(fixture))
    result = network.eval().offline_reconstruction(images, pair_batch=5)
    assert result.order == expected["order"].tolist()
    for key in PRED_KEYS:
        torch.testing.assert_close(getattr(result.predictions, key), expected[key], atol=ATOL, rtol=RTOL)
    points, _ = result.predictions.per_frame()
    for step, frame in enumerate(result.order):
        torch.testing.assert_close(result.points[:, frame], points[:, step])
    assert result.pair_scores.shape == (4, 4) and float(result.pair_scores.diagonal().abs().sum()) == 0.0


def test_offline_reconstruction_takes_one_sequence():
    with pytest.raises(ValueError, match="B = 1"):
        tiny_network().offline_reconstruction(frames(2, 3))


# ---------------------------------------------------------------------------------------------- training

def test_detach_every_cuts_gradients_to_earlier_frames():
    network = tiny_network(memory_dropout=0.0).train()
    images = frames(1, 4, seed=3)
    values = {}
    for detach_every in (0, 1):
        leaf = images.clone().requires_grad_(True)
        predictions = network(leaf, detach_every=detach_every)
        values[detach_every] = predictions.ref_points.detach()
        predictions.ref_points[:, 2].sum().backward()  # step 2: frames 2 and 3, reading frames 0 and 1 from memory
        values[f"grad{detach_every}"] = leaf.grad[0].flatten(1).abs().sum(dim=1)
    torch.testing.assert_close(values[0], values[1])
    assert float(values["grad0"][0]) > 0 and float(values["grad0"][1]) > 0
    assert float(values["grad0"][2]) > 0 and float(values["grad0"][3]) > 0
    # detached after every step: step 2 sees frames 0 - 2 only through detached memory and features
    assert values["grad1"][:3].tolist() == [0.0, 0.0, 0.0] and float(values["grad1"][3]) > 0
    with pytest.raises(ValueError, match="detach_every=-1"):
        network(images, detach_every=-1)


def test_inputs_are_checked():
    network = tiny_network()
    with pytest.raises(ValueError, match="T >= 2"):
        network(frames(1, 1))
    with pytest.raises(ValueError, match="true_shape"):
        network(frames(1, 2), torch.zeros(1, 3, 2, dtype=torch.long))


def test_dust3r_part_is_built_as_the_original_and_starts_from_dust3r_weights():
    import dataclasses
    network = tiny_network(value_num_heads=4)
    arch = dataclasses.replace(TINY, patch_embed_cls="ManyAR_PatchEmbed", landscape_only=False)
    built = Spann3RNetwork(arch, MemoryArchitecture(value_depth=1, value_num_heads=4))
    assert built.dust3r.arch.patch_embed_cls == "PatchEmbedDust3R" and built.dust3r.arch.landscape_only
    state = {k: v + 1.0 for k, v in network.dust3r.state_dict().items()}
    built.load_dust3r_state_dict(state)
    torch.testing.assert_close(built.pos_patch_embed.proj.weight, state["patch_embed.proj.weight"])
    with pytest.raises(DataFileError, match="missing"):
        built.load_dust3r_state_dict({k: v for k, v in state.items() if k != "enc_norm.weight"})


def test_dpt_head_runs_over_a_sequence():
    arch = DUSt3RArchitecture(img_size=32, patch_size=16, enc_embed_dim=32, enc_depth=1, enc_num_heads=2,
                              dec_embed_dim=16, dec_depth=4, dec_num_heads=2, head_type="dpt", dpt_feature_dim=8,
                              dpt_layer_dims=(4, 4, 8, 8))
    torch.manual_seed(0)
    network = Spann3RNetwork(arch, MemoryArchitecture(value_depth=1)).eval()
    result = network.online(torch.rand(1, 3, 3, 32, 48) * 2 - 1)
    assert result.points.shape == (1, 3, 32, 48, 3) and bool(torch.isfinite(result.points).all())


# ---------------------------------------------------------------------------------------------- checkpoints

def test_architecture_is_inferred_from_the_weights(tmp_path, fixture):
    dust3r, memory, state = read_spann3r_checkpoint(write_checkpoint(tmp_path, fixture))
    tiny = parse_model_string(fixture["dust3r_model_string"], "fixture")
    for field in ("patch_size", "enc_embed_dim", "enc_depth", "dec_embed_dim", "dec_depth", "mlp_ratio", "head_type",
                  "norm_im2_in_dec"):
        assert getattr(dust3r, field) == getattr(tiny, field), field
    assert (dust3r.img_size, dust3r.enc_num_heads) == (224, 1)  # the released defaults (64-wide heads)
    assert (memory.value_depth, memory.use_feat, memory.mem_pos_enc) == (fixture["value_depth"], False, False)
    assert len(state) == len(fixture["model"])
    _, feat_memory, _ = read_spann3r_checkpoint(write_checkpoint(tmp_path, fixture, use_feat=True))
    assert feat_memory.use_feat


def test_dpt_architecture_round_trips(tmp_path):
    arch = DUSt3RArchitecture(img_size=224, patch_size=16, enc_embed_dim=64, enc_depth=1, enc_num_heads=1,
                              dec_embed_dim=64, dec_depth=4, dec_num_heads=1, head_type="dpt", dpt_feature_dim=8,
                              dpt_layer_dims=(4, 4, 8, 8))
    network = Spann3RNetwork(arch, MemoryArchitecture(value_depth=1, value_num_heads=4))
    path = tmp_path / "dpt.pth"
    torch.save({"model": network.state_dict()}, path)
    dust3r, memory, _ = read_spann3r_checkpoint(str(path), memory_overrides={"value_num_heads": 4})
    assert dust3r == arch and memory.value_num_heads == 4
    loaded = load_spann3r_checkpoint(str(path), memory_overrides={"value_num_heads": 4})
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), network.state_dict().values()))


def test_training_args_are_read_without_evaluation(tmp_path, fixture):
    args = argparse.Namespace(model="Spann3R(dus3r_name='./checkpoints/x.pth', use_feat=False, mem_pos_enc=True, "
                                    "memory_dropout=0.1)")
    _, memory, _ = read_spann3r_checkpoint(write_checkpoint(tmp_path, fixture, args=args, epoch=3))
    assert memory.mem_pos_enc and memory.memory_dropout == 0.1
    bad = argparse.Namespace(model="Spann3R(dus3r_name=__import__('os').getcwd())")
    with pytest.raises(DataFileError, match="is not a literal value"):
        read_spann3r_checkpoint(write_checkpoint(tmp_path, fixture, args=bad))
    wrong = argparse.Namespace(model="Spann3R(use_feat=True)")
    with pytest.raises(DataFileError, match="use_feat=True but the weights have pos_patch_embed"):
        read_spann3r_checkpoint(write_checkpoint(tmp_path, fixture, args=wrong))


def test_bad_files_and_overrides_give_one_line_errors(tmp_path, fixture):
    with pytest.raises(DataFileError, match="no such file"):
        read_spann3r_checkpoint(str(tmp_path / "missing.pth"))
    (tmp_path / "junk.pth").write_text("not torch")
    with pytest.raises(DataFileError, match="not a readable torch file"):
        read_spann3r_checkpoint(str(tmp_path / "junk.pth"))
    torch.save({"state_dict": {}}, tmp_path / "other.pth")
    with pytest.raises(DataFileError, match="expected a dict with a 'model' state dict"):
        read_spann3r_checkpoint(str(tmp_path / "other.pth"))
    torch.save({"model": {"encoder.weight": torch.zeros(1)}}, tmp_path / "foreign.pth")
    with pytest.raises(DataFileError, match="not Spann3R weights"):
        read_spann3r_checkpoint(str(tmp_path / "foreign.pth"))
    path = write_checkpoint(tmp_path, fixture)
    with pytest.raises(ConfigError, match=r"Spann3RModel.memory: unknown field\(s\) \['long_mem'\]"):
        load_spann3r_checkpoint(path, memory_overrides={"long_mem": 3})
    with pytest.raises(ConfigError, match="Spann3RModel.network"):
        load_spann3r_checkpoint(path, dust3r_overrides={"enc_num_heads": 3})
    with pytest.raises(DataFileError, match="do not fit the architecture: wrong shape"):
        load_spann3r_checkpoint(path, memory_overrides={"value_mlp_ratio": 2.0},
                                dust3r_overrides=tiny_overrides(fixture))
    state = dict(fixture["model"])
    del state["norm_q.weight"]
    torch.save({"model": state}, tmp_path / "partial.pth")
    with pytest.raises(DataFileError, match="missing norm_q.weight"):
        load_spann3r_checkpoint(str(tmp_path / "partial.pth"), dust3r_overrides=tiny_overrides(fixture))
