"""ViewRayTransformer: NeRFormer's encoder, attention across source views and along rays, then view pooling.

The sample points of a batch of rays carry one feature vector per source view. Each layer first
attends across the source views of every point, then along the points of every ray separately for
each view, and narrows the width by `dim_down_factor`. Last, a softmax over learned per-view
scores pools the views into one feature vector per point.

Two paths compute the same function from the same parameters. The plain one (`forward`) moves
the data between the two attentions: (rays x points, views) sequences, then (rays x views,
points) ones. The fast one (`forward_grid`, taken by NeRFormerImplicitFunction on CPU, see
`recon_trainer.models.mlp.fast_paths_enabled`) keeps one (rays, points, views, width) layout
throughout and hands scaled_dot_product_attention strided views of it for either axis, with the
query/key/value projections as three matmuls, so no transposed copies (and their gradients'
copies) are made; its first and skip layers read the point, view and code parts of the input
separately (`split_linear`) instead of their concatenation.

A third, `compiled_forward_grid`, runs forward_grid through torch.compile (opt-in:
NeRFormerImplicitFunction.compile_transformer_on_cpu): the attention across the few source views
is then written out (`attend_few`), which Inductor fuses into a loop over the points, where torch's
attention kernel spends most of its time on per-sequence overhead at 4 views and head width 5-20.
"""

from __future__ import annotations

import logging
from typing import Callable, List, Optional, Sequence

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

N_ATTENTION_HEADS = 4  # heads of every attention layer (NeRFormer's choice)


def attend_few(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """scaled_dot_product_attention written out for short sequences: (B, H, L, D) each -> (B, H, L, D).

    The scores are broadcast products summed over D and the output a weighted sum over the L keys,
    so a compiler fuses each into one pass over the batch instead of B x H tiny matrix products
    (eager PyTorch runs it slower than the attention kernel: it is used under torch.compile only).
    """
    scores = (query.unsqueeze(3) * key.unsqueeze(2)).sum(-1) * query.shape[-1] ** -0.5  # (B, H, L, L)
    return (scores.softmax(-1).unsqueeze(-1) * value.unsqueeze(2)).sum(3)


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

    def forward_grid(self, x: torch.Tensor, axis: int, written_out_attention: bool = False) -> torch.Tensor:
        """forward on the sequences along one axis of a grid, without moving the data.

        x: (M, P, N, d_in) contiguous; axis 1 attends along P (for each m, n), axis 2 along N
        (for each m, p). Returns (M, P, N, d_out), equal to forward on the sequences up to float
        rounding. written_out_attention: attend across N with `attend_few` (for torch.compile).
        """
        m, p, n, d = x.shape
        attention = self.attention
        heads = attention.num_heads
        weight, bias = attention.in_proj_weight, attention.in_proj_bias

        def sequences(t: torch.Tensor) -> torch.Tensor:
            """(M, P, N, d) -> a (batch, heads, L, d / heads) view for scaled_dot_product_attention."""
            if axis == 2:
                return t.view(m * p, n, heads, d // heads).transpose(1, 2)
            return t.view(m, p, n * heads, d // heads).transpose(1, 2)  # heads of every view at once

        query, key, value = (
            sequences(F.linear(x, weight[i * d:(i + 1) * d], bias[i * d:(i + 1) * d])) for i in range(3)
        )
        attend = attend_few if written_out_attention and axis == 2 else F.scaled_dot_product_attention
        dtype = query.dtype
        if dtype in (torch.bfloat16, torch.float16) and x.device.type == "cpu":
            # CPU's attention kernel is several times slower in bf16 than in float32 at these
            # head widths (5-20): attend in float32 (the softmax and sums are more exact, too).
            with torch.autocast("cpu", enabled=False):
                attended = attend(query.float(), key.float(), value.float()).to(dtype)
        else:
            attended = attend(query, key, value)
        attended = attended.transpose(1, 2).reshape(m, p, n, d)
        h = self.attention_norm(_add(F.linear(attended, attention.out_proj.weight, attention.out_proj.bias), x))
        first, _, second = self.feed_forward
        return self.output_norm(_add(second(first(h).relu_()), self.project(h)))


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

    def forward_grid(self, parts: Sequence[torch.Tensor], written_out_attention: bool = False) -> torch.Tensor:
        """The fast path of forward(x, x): the per-view input x given as parts concatenated along
        the channels, parts[i] (M or 1, P or 1, N or 1, C_i) broadcasting to (M, P, N, C_i)
        (e.g. a point embedding shared by the views). -> (M, P, output_dim).
        written_out_attention: see AttentionBlock.forward_grid."""
        y = split_linear(self.first, parts)
        for i, (view_block, ray_block) in enumerate(zip(self.view_blocks, self.ray_blocks)):
            if str(i) in self.skip_layers:
                y = _add(split_linear(self.skip_layers[str(i)], parts), y)
            y = view_block.forward_grid(y, axis=2, written_out_attention=written_out_attention)
            y = ray_block.forward_grid(y, axis=1)
        weights = torch.softmax(self.view_score(y), dim=2)  # (M, P, N, 1)
        return self.last((weights * y).sum(dim=2))

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

    def compiled_forward_grid(self, parts: Sequence[torch.Tensor]) -> torch.Tensor:
        """forward_grid through torch.compile, with the attention across views written out.

        The first call with a new input shape compiles (tens of seconds on a CPU; after a second
        shape the sizes are compiled as symbols). Where compiling fails (e.g. no C++ compiler),
        one warning says why and forward_grid runs uncompiled from then on, in every instance.
        """
        global _compiled_forward_grid, _compile_failed
        if not _compile_failed:
            if _compiled_forward_grid is None:
                _compiled_forward_grid = torch.compile(ViewRayTransformer.forward_grid, dynamic=False)
            try:
                return _compiled_forward_grid(self, parts, written_out_attention=True)
            except Exception as error:  # torch's compile errors have no common base class
                _compile_failed = True
                first_line = str(error).splitlines()[0] if str(error) else ""
                logger.warning("NerFormer: torch.compile failed (%s: %s); running the transformer uncompiled",
                               type(error).__name__, first_line)
        return self.forward_grid(parts)


# ViewRayTransformer.forward_grid compiled once per process, at its first use (not per instance: a
# module's copy, e.g. an EMA model, must run its own weights); _compile_failed: never try again.
_compiled_forward_grid: Optional[Callable[..., torch.Tensor]] = None
_compile_failed = False


def split_linear(layer: torch.nn.Linear, parts: Sequence[torch.Tensor]) -> torch.Tensor:
    """layer(cat(parts, -1)) with broadcasting parts, without the concatenation: the sum of each
    part through its slice of the weight's columns. parts[i] (..., C_i), broadcasting together to
    (..., sum C_i); sum C_i = layer.in_features."""
    starts, start = [], 0
    for part in parts:
        starts.append(start)
        start += part.shape[-1]
    if start != layer.in_features:
        raise ValueError(f"split_linear: parts of {start} channels for a layer of {layer.in_features} inputs")
    shape = torch.broadcast_shapes(*(part.shape[:-1] for part in parts))
    # a part of the full shape first, so that the others add to its output in place
    order = sorted(range(len(parts)), key=lambda i: (parts[i].shape[:-1] != shape, -parts[i].numel()))
    out: Optional[torch.Tensor] = None
    for i in order:
        weight = layer.weight[:, starts[i]:starts[i] + parts[i].shape[-1]]
        if out is None:
            out = F.linear(parts[i], weight, layer.bias)
            if out.shape[:-1] != shape:
                out = out.expand(*shape, layer.out_features).contiguous()
        else:
            out = _add(out, F.linear(parts[i], weight))
    assert out is not None
    return out


def _add(fresh: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """fresh + other, in place into `fresh` (a linear layer's output, which its backward does not
    read) when that keeps the promoted dtype (under autocast a bf16 output plus a float32 tensor
    is added out of place, in float32, as the plain path does)."""
    if fresh.dtype == torch.promote_types(fresh.dtype, other.dtype) and fresh.shape == torch.broadcast_shapes(
        fresh.shape, other.shape
    ):
        return fresh.add_(other)
    return fresh + other
