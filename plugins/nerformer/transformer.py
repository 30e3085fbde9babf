"""ViewRayTransformer: NeRFormer's encoder, attention across source views and along rays, then view pooling.

The sample points of a batch of rays carry one feature vector per source view. Each layer first
attends across the source views of every point, then along the points of every ray separately for
each view, and narrows the width by `dim_down_factor`. Last, a softmax over learned per-view
scores pools the views into one feature vector per point.
"""

from __future__ import annotations

from typing import List, Sequence

import torch

N_ATTENTION_HEADS = 4  # heads of every attention layer (NeRFormer's choice)


class AttentionBlock(torch.nn.Module):
    """Post-norm transformer encoder block whose output may be narrower than its input.

    x (batch, L, d_in) -> LayerNorm(x + self-attention over L) = h ->
    LayerNorm(project(h) + feed-forward(h)) (batch, L, d_out), where `project` is a linear map when
    d_out != d_in (identity otherwise) and the feed-forward net is d_in -> d_ff (ReLU) -> d_out.
    """

    def __init__(self, d_in: int, d_out: int, d_ff: int, n_heads: int = N_ATTENTION_HEADS) -> None:
        super().__init__()
        self.attention = torch.nn.MultiheadAttention(d_in, n_heads, batch_first=True)
        self.attention_norm = torch.nn.LayerNorm(d_in)
        self.feed_forward = torch.nn.Sequential(
            torch.nn.Linear(d_in, d_ff), torch.nn.ReLU(), torch.nn.Linear(d_ff, d_out)
        )
        self.project = torch.nn.Identity() if d_in == d_out else torch.nn.Linear(d_in, d_out)
        self.output_norm = torch.nn.LayerNorm(d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, L, d_in) -> (batch, L, d_out); attention runs over L."""
        attended, _ = self.attention(x, x, x, need_weights=False)
        h = self.attention_norm(x + attended)
        return self.output_norm(self.project(h) + self.feed_forward(h))


def layer_widths(hidden_dim: int, n_layers: int, dim_down_factor: float) -> List[int]:
    """Widths [w_0, ..., w_n]: layer i maps w_i to w_{i+1}, w_i = round(hidden_dim / dim_down_factor^i)."""
    return [int(round(hidden_dim / dim_down_factor**i)) for i in range(n_layers + 1)]


class ViewRayTransformer(torch.nn.Module):
    """Per-view point features (M rays, P points, N views, input_dim) -> pooled features (M, P, output_dim).

    n_layers: layers, each an attention block across views then one along the ray.
    input_dim: channels of the per-view input x; skip_dim: channels of the skip input z.
    hidden_dim: width of the first layer (and of the feed-forward nets); layer i narrows the width
        from w_i to w_{i+1} (see `layer_widths`).
    input_skips: layers that add a linear map of z to their input (NeRF's skip connections, as a sum).
    dim_down_factor: how much each layer narrows the width (>= 1).
    """

    def __init__(
        self,
        n_layers: int,
        input_dim: int,
        output_dim: int,
        skip_dim: int,
        hidden_dim: int,
        input_skips: Sequence[int] = (),
        dim_down_factor: float = 1.0,
    ) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"ViewRayTransformer: n_layers must be >= 1, got {n_layers}")
        if dim_down_factor < 1.0:
            raise ValueError(f"ViewRayTransformer: dim_down_factor must be >= 1, got {dim_down_factor}")
        widths = layer_widths(hidden_dim, n_layers, dim_down_factor)
        bad = [w for w in widths if w < N_ATTENTION_HEADS or w % N_ATTENTION_HEADS]
        if bad:
            raise ValueError(
                f"ViewRayTransformer: hidden width {hidden_dim} narrowed by {dim_down_factor} over {n_layers} layers "
                f"gives widths {widths}; each must be a positive multiple of {N_ATTENTION_HEADS} (attention heads)"
            )
        self.input_skips = sorted(int(i) for i in input_skips)
        outside = [i for i in self.input_skips if not 0 <= i < n_layers]
        if outside:
            raise ValueError(f"ViewRayTransformer: input_skips {outside} are not layer indices 0..{n_layers - 1}")
        self.first = torch.nn.Linear(input_dim, hidden_dim)
        self.skip_layers = torch.nn.ModuleDict({str(i): torch.nn.Linear(skip_dim, widths[i]) for i in self.input_skips})
        self.view_blocks = torch.nn.ModuleList(
            AttentionBlock(widths[i], widths[i + 1], hidden_dim) for i in range(n_layers)
        )
        self.ray_blocks = torch.nn.ModuleList(
            AttentionBlock(widths[i + 1], widths[i + 1], hidden_dim) for i in range(n_layers)
        )
        self.view_score = torch.nn.Linear(widths[-1], 1)
        self.last = torch.nn.Linear(widths[-1], output_dim)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """x (M, P, N, input_dim), skip (M, P, N, skip_dim) -> (M, P, output_dim).

        M: rays, P: points per ray, N: source views. The output does not depend on the order of the
        N views (no positional encoding; the pooling is a weighted sum).
        """
        m, p, n, _ = x.shape
        y = self.first(x)
        for i, (view_block, ray_block) in enumerate(zip(self.view_blocks, self.ray_blocks)):
            if str(i) in self.skip_layers:
                y = y + self.skip_layers[str(i)](skip)
            y = view_block(y.reshape(m * p, n, -1))  # attention across the N views of each point
            y = y.reshape(m, p, n, -1).transpose(1, 2).reshape(m * n, p, -1)
            y = ray_block(y)  # attention along each ray, per view
            y = y.reshape(m, n, p, -1).transpose(1, 2)
        weights = torch.softmax(self.view_score(y), dim=2)  # (M, P, N, 1)
        return self.last((weights * y).sum(dim=2))
