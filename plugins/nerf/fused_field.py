"""A fused evaluation of NeRF's field (point MLP and radiance head) with a hand-written backward.

`fused_radiance_field` computes what `MLPWithInputSkips` followed by `RadianceHead` compute (the
plain path, kept as the reference: tests/plugins/nerf/test_fused_field.py checks the two agree),
with fewer passes over memory:
- each linear layer and its ReLU are one call (oneDNN's fused linear + ReLU where available);
- a skip layer adds the skip input through its own slice of the weight instead of concatenating
  (x @ W^T = h @ W_h^T + s @ W_s^T), so the (points, 319) copy is never made;
- the head's density layer and its colour path share one matmul: the intermediate layer feeds
  the colour layer's first linear map without a non-linearity in between, so their product
  W_cf W_i (colour width x feature width) is formed once per call and applied to the features;
- the backward masks gradients in place and reuses two buffers for the per-layer gradients,
  instead of allocating several (points, width) tensors per layer.

The parameters (and their state-dict keys) are the plain modules'; only the arithmetic is
rearranged, so results agree with the plain path to float rounding. Under CPU autocast the
whole field runs in the autocast dtype (as autocast would run each linear layer), the
parameters' gradients come back in their own dtype.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], relu: bool) -> torch.Tensor:
    """relu?(x @ weight^T + bias) for x (M, K) contiguous, as one oneDNN call on CPU when available."""
    if x.device.type == "cpu" and x.dtype in (torch.float32, torch.bfloat16) and torch.backends.mkldnn.is_available():
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "relu" if relu else "none", [], "")
    out = torch.nn.functional.linear(x, weight, bias)
    return out.relu_() if relu else out


def _mask_relu_grad(grad: torch.Tensor, activation: torch.Tensor, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The gradient through a ReLU, from its output `activation`: grad where activation > 0, else 0.

    Written into `out` (default: in place into grad)."""
    out = grad if out is None else out
    return torch.ops.aten.threshold_backward.grad_input(grad, activation, 0, grad_input=out)


class _FusedRadianceField(torch.autograd.Function):
    """See `fused_radiance_field`; inputs already flattened and in the compute dtype."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        x: torch.Tensor,
        direction_term: torch.Tensor,
        skip_layers: Tuple[bool, ...],
        keep_activations: bool,
        *params: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        n_trunk = len(skip_layers)
        trunk = [(params[2 * i], params[2 * i + 1]) for i in range(n_trunk)]
        head_weight, head_bias, color_weight, color_bias = params[2 * n_trunk:]
        n_rays, hidden_dir = direction_term.shape
        activations = [x]
        h = x
        for (weight, bias), reads_skip in zip(trunk, skip_layers):
            if reads_skip:
                width = h.shape[1]
                out = _linear(x, weight[:, width:].contiguous(), bias, relu=False)
                h = out.addmm_(h, weight[:, :width].t()).relu_()
            else:
                h = _linear(h, weight, bias, relu=True)
            if keep_activations:  # without gradients each layer's output is freed after the next layer
                activations.append(h)
        head = _linear(h, head_weight, head_bias, relu=False)  # (M, 1 + hidden_dir): density, colour hidden
        densities = head[:, :1].clone()
        # the colour layer's hidden units, in place: + each ray's direction term, ReLU
        head.view(n_rays, -1, 1 + hidden_dir)[..., 1:].add_(direction_term[:, None, :]).relu_()
        hidden = head[:, 1:]
        colors = torch.addmm(color_bias, hidden, color_weight.t()).sigmoid_()
        ctx.skip_layers = skip_layers
        if keep_activations:
            ctx.save_for_backward(*activations, head, colors, direction_term, *params)
        return densities, colors

    @staticmethod
    def backward(ctx, grad_densities: Optional[torch.Tensor], grad_colors: Optional[torch.Tensor]):  # type: ignore[override]
        skip_layers = ctx.skip_layers
        n_trunk = len(skip_layers)
        saved = ctx.saved_tensors
        activations = saved[: n_trunk + 1]
        head, colors, direction_term = saved[n_trunk + 1: n_trunk + 4]
        params = saved[n_trunk + 4:]
        trunk = [(params[2 * i], params[2 * i + 1]) for i in range(n_trunk)]
        head_weight, _, color_weight, _ = params[2 * n_trunk:]
        x, features = activations[0], activations[-1]
        n_rays, hidden_dir = direction_term.shape
        with torch.autocast(x.device.type, enabled=False):
            hidden = head[:, 1:]
            grad_head = torch.empty_like(head)
            if grad_densities is None:
                grad_head[:, :1] = 0
            else:
                grad_head[:, :1] = grad_densities
            if grad_colors is None:
                grad_colors = torch.zeros_like(colors)
            grad_logits = grad_colors * colors * (1 - colors)
            grad_color_weight = grad_logits.t().mm(hidden)
            grad_color_bias = grad_logits.sum(0)
            _mask_relu_grad(grad_logits.mm(color_weight), hidden, out=grad_head[:, 1:])
            grad_direction_term = grad_head.view(n_rays, -1, 1 + hidden_dir)[..., 1:].sum(1)
            grad_head_weight = grad_head.t().mm(features)
            grad_head_bias = grad_head.sum(0)
            grad = grad_head.mm(head_weight)
            del grad_head
            spare: Optional[torch.Tensor] = None
            grad_x = torch.zeros_like(x) if ctx.needs_input_grad[0] else None
            grad_params: List[Optional[torch.Tensor]] = [None] * (2 * n_trunk)
            for i in reversed(range(n_trunk)):
                weight = trunk[i][0]
                _mask_relu_grad(grad, activations[i + 1])
                layer_input = activations[i]
                width = layer_input.shape[1]
                grad_weight = grad.t().mm(layer_input)
                if skip_layers[i]:
                    grad_weight = torch.cat([grad_weight, grad.t().mm(x)], dim=1)
                    if grad_x is not None:
                        grad_x.addmm_(grad, weight[:, width:])
                grad_params[2 * i] = grad_weight
                grad_params[2 * i + 1] = grad.sum(0)
                if i > 0:
                    if spare is None or spare.shape != (grad.shape[0], width):
                        spare = torch.empty(grad.shape[0], width, dtype=grad.dtype, device=grad.device)
                    grad, spare = torch.mm(grad, weight[:, :width], out=spare), grad
                elif grad_x is not None:
                    grad_x.addmm_(grad, weight[:, :width])
        return (
            grad_x,
            grad_direction_term,
            None,
            None,
            *grad_params,
            grad_head_weight,
            grad_head_bias,
            grad_color_weight,
            grad_color_bias,
        )


def fused_radiance_field(
    x: torch.Tensor,
    direction_term: torch.Tensor,
    trunk: Sequence[torch.nn.Linear],
    skip_layers: Sequence[int],
    density_layer: torch.nn.Linear,
    intermediate_layer: torch.nn.Linear,
    color_feature_layer: torch.nn.Linear,
    color_output_layer: torch.nn.Linear,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """NeRF's field at points: raw densities (*rays, P, 1) and colours (*rays, P, C) in (0, 1).

    x: (*rays, P, D) per-point input (the embedding, also the skip input of `skip_layers`).
    direction_term: (*rays, H_dir) each ray's direction term of the colour layer (its direction
        embedding through the colour layer's direction part).
    trunk: the point MLP's layers (each followed by a ReLU; layer i in skip_layers reads
        [h, x]); the other layers are RadianceHead's.
    Equals relu-MLP then RadianceHead up to float rounding (see the module docstring).
    """
    rays_shape, n_points = x.shape[:-2], x.shape[-2]
    n_rays = direction_term[..., 0].numel()
    if tuple(direction_term.shape[:-1]) != tuple(rays_shape):
        raise ValueError(
            f"fused_radiance_field: direction_term of shape {tuple(direction_term.shape)} for points of shape "
            f"{tuple(x.shape)}; expected one term per ray {tuple(rays_shape)}"
        )
    dtype = x.dtype
    if torch.is_autocast_enabled(x.device.type):
        dtype = torch.get_autocast_dtype(x.device.type)
    skips = set(int(i) for i in skip_layers)
    with torch.autocast(x.device.type, enabled=False):
        # Colour path: hidden = W_cf (W_i f + b_i) + b_cf = (W_cf W_i) f + (W_cf b_i + b_cf).
        color_weight = color_feature_layer.weight
        head_weight = torch.cat([density_layer.weight, color_weight @ intermediate_layer.weight])
        head_bias = torch.cat([density_layer.bias, color_weight @ intermediate_layer.bias + color_feature_layer.bias])
        params: List[torch.Tensor] = []
        for layer in trunk:
            params += [layer.weight, layer.bias]
        params += [head_weight, head_bias, color_output_layer.weight, color_output_layer.bias]
        inputs = [x, direction_term, *params]
        keep_activations = torch.is_grad_enabled() and any(t.requires_grad for t in inputs)
        densities, colors = _FusedRadianceField.apply(
            x.reshape(n_rays * n_points, x.shape[-1]).to(dtype).contiguous(),
            direction_term.reshape(n_rays, -1).to(dtype),
            tuple(i in skips for i in range(len(trunk))),
            keep_activations,
            *(p.to(dtype) for p in params),
        )
    return (
        densities.view(*rays_shape, n_points, 1),
        colors.view(*rays_shape, n_points, colors.shape[-1]),
    )
