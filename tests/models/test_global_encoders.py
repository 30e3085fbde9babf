"""Global encoders: the per-sequence autodecoder (rows, limits, saving) and the harmonic time encoder."""

import io

import pytest
import torch

from recon_trainer.config import get_default_args
from recon_trainer.data.frame_data import FrameData
from recon_trainer.models.global_encoder import HarmonicTimeEncoder, SequenceAutodecoder


def autodecoder(**fields) -> SequenceAutodecoder:
    torch.manual_seed(0)
    return SequenceAutodecoder(autodecoder_args=fields)


def names(*sequence_names) -> FrameData:
    return FrameData(sequence_name=list(sequence_names))


def test_defaults_follow_implicitron():
    cfg = get_default_args(SequenceAutodecoder).autodecoder_args
    assert dict(cfg) == {"encoding_dim": 0, "n_instances": 1, "init_scale": 1.0, "ignore_input": False}
    assert dict(get_default_args(HarmonicTimeEncoder)) == {
        "n_harmonic_functions": 10,
        "append_input": True,
        "time_divisor": 1.0,
    }


def test_each_sequence_gets_its_own_row_in_order_of_appearance():
    encoder = autodecoder(encoding_dim=3, n_instances=3)
    codes = encoder(names("b", "a", "b"))
    table = encoder.autodecoder._codes.weight
    assert codes.shape == (3, 3)
    assert torch.equal(codes[0], table[0]) and torch.equal(codes[1], table[1]) and torch.equal(codes[2], table[0])
    assert encoder.calculate_squared_encoding_norm().item() == pytest.approx((table**2).mean().item())


def test_more_names_than_instances_is_an_error_naming_the_name():
    encoder = autodecoder(encoding_dim=2, n_instances=2)
    encoder(names("a", "b"))
    with pytest.raises(ValueError, match=r"'c'.*n_instances=2"):
        encoder(names("c"))


def test_unknown_names_in_evaluation_get_the_zero_code_and_no_row():
    encoder = autodecoder(encoding_dim=2, n_instances=2)
    encoder(names("a"))
    encoder.eval()
    codes = encoder(names("a", "new"))
    assert torch.all(codes[1] == 0) and torch.equal(codes[0], encoder.autodecoder._codes.weight[0])
    assert encoder.autodecoder.get_extra_state() == {"names": ["a"]}


def test_ignore_input_shares_one_code():
    encoder = autodecoder(encoding_dim=2, n_instances=1, ignore_input=True)
    codes = encoder(names("a", "b", "c"))
    assert torch.equal(codes[0], codes[2])


def test_encoding_dim_zero_means_no_code():
    encoder = autodecoder()
    assert encoder.get_encoding_dim() == 0 and encoder(names("a")) is None
    assert encoder.calculate_squared_encoding_norm() is None


def test_the_name_map_survives_a_weights_only_save_and_load():
    encoder = autodecoder(encoding_dim=2, n_instances=3)
    before = encoder(names("x", "y"))
    buffer = io.BytesIO()
    torch.save(encoder.state_dict(), buffer)
    buffer.seek(0)
    restored = autodecoder(encoding_dim=2, n_instances=3)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    restored.eval()
    assert torch.equal(restored(names("y", "x")), before.flip(0))


def test_harmonic_time_encoder_embeds_the_scaled_timestamp():
    encoder = HarmonicTimeEncoder(n_harmonic_functions=2, time_divisor=2.0)
    codes = encoder(FrameData(frame_timestamp=torch.tensor([0.0, 1.0])))
    assert encoder.get_encoding_dim() == 5 and codes.shape == (2, 5)
    t = torch.tensor(0.5)
    expected = torch.stack([t.sin(), (2 * t).sin(), t.cos(), (2 * t).cos(), t])
    assert torch.allclose(codes[1], expected)
    with pytest.raises(ValueError, match="frame_timestamp"):
        encoder(FrameData())
