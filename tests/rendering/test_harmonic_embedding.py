"""HarmonicEmbedding: output size and hand-computed values."""
import math

import torch

from recon_trainer.rendering.harmonic_embedding import HarmonicEmbedding


def test_output_dim():
    assert HarmonicEmbedding(10).get_output_dim(3) == 63  # NeRF's xyz embedding: 3 * (2 * 10 + 1)
    assert HarmonicEmbedding(4, append_input=False).get_output_dim(3) == 24
    assert HarmonicEmbedding(0).get_output_dim(2) == 2
    x = torch.rand(5, 7, 3)
    assert HarmonicEmbedding(6)(x).shape == (5, 7, HarmonicEmbedding(6).get_output_dim(3))


def test_values_by_hand_logspace():
    # frequencies 1 and 2; the sines, then the cosines, input dimension first, then x
    x = torch.tensor([[0.5, -1.0]])
    s, c = math.sin, math.cos
    expected = [s(0.5), s(1.0), s(-1.0), s(-2.0), c(0.5), c(1.0), c(-1.0), c(-2.0), 0.5, -1.0]
    torch.testing.assert_close(HarmonicEmbedding(2)(x), torch.tensor([expected]))


def test_values_by_hand_linear_frequencies_and_omega():
    # logspace=False: 3 frequencies evenly from omega_0 to omega_0 * 2^2 = 0.5, 1.25, 2.0
    x = torch.tensor([0.3])
    out = HarmonicEmbedding(3, omega_0=0.5, logspace=False, append_input=False)(x)
    frequencies = [0.5, 1.25, 2.0]
    expected = [math.sin(f * 0.3) for f in frequencies] + [math.cos(f * 0.3) for f in frequencies]
    torch.testing.assert_close(out, torch.tensor(expected))


def test_float64_input_keeps_its_dtype():
    assert HarmonicEmbedding(2)(torch.zeros(1, 3, dtype=torch.float64)).dtype == torch.float64
