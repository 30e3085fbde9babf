"""Harmonic (positional) embedding of coordinates: sines and cosines at several frequencies."""
import torch


class HarmonicEmbedding(torch.nn.Module):
    """Maps x (..., D) to [sin(f_1 x), ..., sin(f_N x), cos(f_1 x), ..., cos(f_N x), x].

    The sine block is ordered input dimension first: for D = 2, N = 2 it is
    sin(f_1 x_1), sin(f_2 x_1), sin(f_1 x_2), sin(f_2 x_2); the cosine block likewise.

    n_harmonic_functions: N, the number of frequencies.
    omega_0: the lowest frequency f_1.
    logspace: frequencies f_k = omega_0 * 2^(k-1) (k = 1..N); otherwise N frequencies evenly
        spaced between omega_0 and omega_0 * 2^(N-1).
    append_input: append x itself to the output.
    """

    def __init__(
        self, n_harmonic_functions: int = 6, omega_0: float = 1.0, logspace: bool = True, append_input: bool = True
    ) -> None:
        super().__init__()
        if n_harmonic_functions < 0:
            raise ValueError(f"HarmonicEmbedding: n_harmonic_functions must be >= 0, got {n_harmonic_functions}")
        if logspace:
            frequencies = 2.0 ** torch.arange(n_harmonic_functions, dtype=torch.float32)
        else:
            frequencies = torch.linspace(1.0, 2.0 ** (n_harmonic_functions - 1), n_harmonic_functions)
        self.register_buffer("_frequencies", frequencies * omega_0, persistent=False)
        self.n_harmonic_functions = n_harmonic_functions
        self.append_input = append_input

    def get_output_dim(self, input_dims: int = 3) -> int:
        """The embedding size for `input_dims` input coordinates: D * (2 N + append_input)."""
        return input_dims * (2 * self.n_harmonic_functions + int(self.append_input))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., D) to (..., get_output_dim(D))."""
        scaled = (x[..., None] * self._frequencies.to(x.dtype)).flatten(-2)
        parts = [scaled.sin(), scaled.cos()]
        if self.append_input:
            parts.append(x)
        return torch.cat(parts, dim=-1)
