"""ImplicitRenderingModel: the body GenericModel and OverfitModel share.

A batch's target views are rendered by casting rays (raysampler), evaluating one implicit
function per rendering pass at points along them and raymarching (renderer). Subclasses say
which implicit function each pass uses (`_build_implicit_functions`, `_implicit_functions_per_pass`).
"""

from __future__ import annotations

import abc
import dataclasses
import functools
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from recon_trainer.config import ConfigError, expand_args_fields, registry, remove_keys, run_auto_creation
from recon_trainer.config.choices import check_choices, choice_field
from recon_trainer.config.errors import did_you_mean
from recon_trainer.config.registry import late_registration_message
from recon_trainer.data.frame_data import FrameData
from recon_trainer.evaluation.nvs_metrics import mask_background
from recon_trainer.models.base import EvaluationMode, ModelBase
from recon_trainer.models.global_encoder import GlobalEncoderBase
from recon_trainer.models.view_losses import VIEW_LOSS_NAMES, sample_at_ndc, view_losses
from recon_trainer.rendering.implicit_function import ImplicitFunctionBase, ParentDimensions
from recon_trainer.rendering.ray_bundle import RayBundle
from recon_trainer.rendering.raysampler import FULL_GRID, MASK_SAMPLE, SAMPLING_MODES, RaySamplerBase
from recon_trainer.rendering.renderer import LOSSES_AUX_KEY, BaseRenderer, RendererOutput, render_in_chunks

PREV_STAGE_PREFIX = "prev_stage_"  # loss names of the pass before the last one
# Loss names every model can produce; loss_weights may name these and the renderer's LOSS_NAMES.
KNOWN_LOSSES = (
    *(f"loss_{stage}{name}" for stage in ("", PREV_STAGE_PREFIX) for name in VIEW_LOSS_NAMES),
    "loss_autodecoder_norm",
)

# Fields of the members that the model sets from its own fields (hidden from their configs).
RAYSAMPLER_PARENT_FIELDS = ("image_width", "image_height", "sampling_mode_training", "sampling_mode_evaluation")
RENDERER_PARENT_FIELDS = ("render_features_dimensions", "object_bounding_sphere")


def hide_parent_fields(implicit_function_type: type, args: Any) -> None:
    """Remove from an implicit function's args the fields its owning model sets (tweak_args hook)."""
    remove_keys(args, implicit_function_type.fields_set_by_parent(ParentDimensions()))


def _default_loss_weights() -> Dict[str, float]:
    return {"loss_rgb_mse": 1.0, "loss_prev_stage_rgb_mse": 1.0, "loss_mask_bce": 0.0, "loss_prev_stage_mask_bce": 0.0}


class ImplicitRenderingModel(ModelBase):
    """Renders the target views of a FrameData batch through raysampler, implicit functions, renderer.

    forward(batch, evaluation_mode) returns a dict:
      "loss_<name>" scalars for the last pass and "loss_prev_stage_<name>" for the one before
        (names in VIEW_LOSS_NAMES), when the batch has the ground truth they need;
      "loss_autodecoder_norm" with a global encoder that has codes; the renderer's own terms
        (its LOSS_NAMES, e.g. an SDF renderer's eikonal term) when it returns them;
      "objective": Σ loss_weights[k] · preds[k] (always in training; in evaluation with ground truth);
      with full_grid sampling: "images_render" (B_t, C, H, W), "depths_render" and "masks_render"
        (B_t, 1, H, W), H, W = render_image_height, render_image_width.
    B_t (target views) is n_train_target_views in training (-1: every frame) and 1 in evaluation.

    The implicit functions are called with `ray_bundle`, `camera` (the B_t target cameras),
    `global_code` ((B_t, D_g) or None) and `fun_viewpool` (None unless a subclass pools source-view
    features); a renderer whose `requires_object_mask()` is True also gets `object_mask`
    (B_t, *rays) bool, the thresholded fg_probability at the rays (None without fg_probability).
    """

    mask_images: bool = True  # fill the image outside the thresholded foreground with bg_color
    mask_depths: bool = True  # zero the depth outside the thresholded foreground
    render_image_width: int = 400  # width of full-grid renders (pixels)
    render_image_height: int = 400  # height of full-grid renders (pixels)
    mask_threshold: float = 0.5  # fg_probability > this is foreground when masking
    bg_color: Tuple[float, float, float] = (0.0, 0.0, 0.0)  # masked-out background (match the raymarcher's bg_color)
    chunk_size_grid: int = 4096  # full-grid mode: sampled points per chunk of each image (Implicitron's rule)
    render_features_dimensions: int = 3  # channels the implicit function and renderer produce
    n_train_target_views: int = 1  # the first frames of a training batch that are rendered; -1 = all
    # "mask_sample" (rays drawn within mask_crop) or "full_grid"
    sampling_mode_training: str = choice_field(MASK_SAMPLE, SAMPLING_MODES)
    # "full_grid" (whole image, chunked) or "mask_sample"
    sampling_mode_evaluation: str = choice_field(FULL_GRID, SAMPLING_MODES)
    loss_weights: Dict[str, float] = dataclasses.field(default_factory=_default_loss_weights)  # objective terms
    log_vars: Tuple[str, ...] = (  # prediction keys the training loop averages per epoch
        "objective",
        "loss_rgb_mse",
        "loss_rgb_psnr",
        "loss_rgb_psnr_fg",
        "loss_mask_bce",
        "loss_depth_abs",
        "loss_depth_abs_fg",
        "loss_prev_stage_rgb_mse",
        "loss_prev_stage_rgb_psnr",
        "loss_prev_stage_rgb_psnr_fg",
        "loss_prev_stage_mask_bce",
        "loss_rgb_l1",
        "loss_rgb_huber",
        "loss_mask_neg_iou",
        "loss_autodecoder_norm",
    )

    global_encoder: Optional[GlobalEncoderBase]
    global_encoder_class_type: Optional[str] = None
    raysampler: RaySamplerBase
    raysampler_class_type: str = "AdaptiveRaySampler"
    renderer: BaseRenderer
    renderer_class_type: str = "MultiPassEmissionAbsorptionRenderer"
    implicit_function: ImplicitFunctionBase
    implicit_function_class_type: str = "NeuralRadianceFieldImplicitFunction"

    @classmethod
    def raysampler_tweak_args(cls, member_type: type, args: Any) -> None:
        remove_keys(args, RAYSAMPLER_PARENT_FIELDS)

    @classmethod
    def renderer_tweak_args(cls, member_type: type, args: Any) -> None:
        remove_keys(args, RENDERER_PARENT_FIELDS)

    @classmethod
    def implicit_function_tweak_args(cls, member_type: type, args: Any) -> None:
        hide_parent_fields(member_type, args)

    def __post_init__(self) -> None:
        self._check_fields()
        run_auto_creation(self)
        self._build_implicit_functions()
        self._check_loss_weights()
        # The renderer's own loss terms are logged with the model's.
        self.log_vars = tuple(dict.fromkeys((*self.log_vars, *self.renderer.LOSS_NAMES)))

    def _check_fields(self) -> None:
        name = type(self).__name__
        check_choices(self)
        if self.n_train_target_views < 1 and self.n_train_target_views != -1:
            raise ConfigError(f"{name}.n_train_target_views={self.n_train_target_views}: expected >= 1 or -1 (all)")
        for key in ("chunk_size_grid", "render_image_width", "render_image_height"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{name}.{key}={getattr(self, key)}: expected a positive integer")

    def _check_loss_weights(self) -> None:
        known = (*KNOWN_LOSSES, *self.renderer.LOSS_NAMES)
        for key in self.loss_weights:
            if key not in known:
                raise ConfigError(
                    f"{type(self).__name__}.loss_weights has the key {key!r}, which the model (with the renderer "
                    f"{type(self.renderer).__name__}) never produces{did_you_mean(key, known) or ';'} known keys: "
                    f"{', '.join(known)}"
                )

    # --- building the members -------------------------------------------------------------

    def create_raysampler(self) -> None:
        self.raysampler = self._build_member(
            "raysampler",
            self.raysampler_class_type,
            image_width=self.render_image_width,
            image_height=self.render_image_height,
            sampling_mode_training=self.sampling_mode_training,
            sampling_mode_evaluation=self.sampling_mode_evaluation,
        )

    def create_renderer(self) -> None:
        scene_extent = getattr(self.raysampler, "scene_extent", None)
        extent = {} if scene_extent is None else {"object_bounding_sphere": scene_extent}
        self.renderer = self._build_member(
            "renderer", self.renderer_class_type, render_features_dimensions=self.render_features_dimensions, **extent
        )

    def create_implicit_function(self) -> None:
        """No-op: `_build_implicit_functions` builds them once the other members exist."""

    @abc.abstractmethod
    def _build_implicit_functions(self) -> None:
        """Build the implicit function(s) of the passes (after every other member)."""

    @abc.abstractmethod
    def _implicit_functions_per_pass(self) -> List[torch.nn.Module]:
        """The implicit function of each rendering pass, coarse to fine."""

    def _latent_dims(self) -> Tuple[int, int]:
        """(view-pooled feature channels, global code channels) the implicit function reads per point."""
        global_dim = 0 if self.global_encoder is None else self.global_encoder.get_encoding_dim()
        return 0, global_dim

    def _view_pool_function(
        self, batch: FrameData, n_targets: int, image_rgb: Optional[torch.Tensor]
    ) -> Optional[Callable[[torch.Tensor], torch.Tensor]]:
        """`fun_viewpool` for the implicit functions: world points (B_t, *S, 3) -> pooled source-view
        features; None here (no view pooling), see GenericModel."""
        return None

    def _global_code(self, batch: FrameData, n_targets: int) -> Optional[torch.Tensor]:
        """(B_t, D_g) codes of the targets, or None without a global encoder or with D_g = 0."""
        if self.global_encoder is None or self.global_encoder.get_encoding_dim() == 0:
            return None
        return self.global_encoder(batch)[:n_targets]

    def _parent_dimensions(self) -> ParentDimensions:
        """What the implicit functions' parent-set fields are computed from."""
        view_dim, global_dim = self._latent_dims()
        return ParentDimensions(view_dim, global_dim, self.render_features_dimensions)

    def _build_implicit_function(self, member: str, class_type: Optional[str]) -> Optional[torch.nn.Module]:
        """The implicit function `class_type` of slot `member`, its parent-set fields filled."""
        if class_type is None:
            return None
        impl = registry.get(type(self)._processed_members[member].base, class_type,
                            slot=f"{type(self).__name__}.{member}_class_type")
        return self._build_member(member, class_type, **impl.fields_set_by_parent(self._parent_dimensions()))

    def _build_member(self, member: str, class_type: Optional[str], **parent_values: Any) -> Optional[torch.nn.Module]:
        """The implementation `class_type` of slot `member`, built from `<member>_<class_type>_args`
        plus those `parent_values` it declares as fields (the ones the tweak hooks hide)."""
        if class_type is None:
            return None
        container = type(self)
        spec = container._processed_members[member]
        impl = registry.get(spec.base, class_type, slot=f"{container.__name__}.{member}_class_type")
        args = getattr(self, f"{member}_{class_type}_args", None)
        if args is None:
            raise ConfigError(late_registration_message(container, member, class_type))
        expand_args_fields(impl)
        declared = {field.name for field in dataclasses.fields(impl)}
        values = {key: value for key, value in parent_values.items() if key in declared}
        clash = sorted(set(args) & set(values))
        if clash:
            raise ConfigError(
                f"{container.__name__}.{member}_{class_type}_args sets {clash}, which {container.__name__} sets "
                f"from its own fields; remove them there"
            )
        return impl(**args, **values)

    # --- forward --------------------------------------------------------------------------

    def forward(self, batch: FrameData, evaluation_mode: EvaluationMode = EvaluationMode.EVALUATION) -> Dict[str, Any]:
        """Render the batch's target views; see the class docstring for the returned keys.

        batch: FrameData of B frames; `camera` is required, the ground-truth maps (image_rgb,
        fg_probability, depth_map, depth_mask, mask_crop: (B, C, H, W)) are optional.
        """
        if batch.camera is None:
            raise ValueError(f"{type(self).__name__}.forward: the batch has no camera")
        training = evaluation_mode == EvaluationMode.TRAINING
        if training and batch.image_rgb is None:
            raise ValueError(f"{type(self).__name__}.forward: training needs image_rgb in the batch")
        n_targets = self.n_targets(batch, training)
        sampling_mode = self.sampling_mode_training if training else self.sampling_mode_evaluation
        ray_bundle, output = self._render(batch, n_targets, sampling_mode, evaluation_mode)
        preds = self._losses(batch, n_targets, output, ray_bundle.xys)
        if training or preds:
            preds["objective"] = self._objective(preds, ray_bundle.xys)
        if sampling_mode == FULL_GRID:
            preds.update(_images_from_grid(output))
        return preds

    def n_targets(self, batch: FrameData, training: bool) -> int:
        """How many of the batch's first frames are rendered: n_train_target_views in training, else 1."""
        if not training:
            return 1
        n_frames = len(batch.camera)
        return n_frames if self.n_train_target_views == -1 else min(self.n_train_target_views, n_frames)

    def _render(
        self, batch: FrameData, n_targets: int, sampling_mode: str, evaluation_mode: EvaluationMode
    ) -> Tuple[RayBundle, RendererOutput]:
        """The rays of the first n_targets cameras and their render (full grids in chunks)."""
        training = evaluation_mode == EvaluationMode.TRAINING
        target_camera = batch.camera[:n_targets]
        sampling_mask = None
        if sampling_mode == MASK_SAMPLE and batch.mask_crop is not None:
            sampling_mask = batch.mask_crop[:n_targets]
        ray_bundle = self.raysampler(target_camera, evaluation_mode, mask=sampling_mask)
        full_grid = sampling_mode == FULL_GRID
        with torch.set_grad_enabled(torch.is_grad_enabled() and (training or not full_grid)):
            fun_viewpool = self._view_pool_function(batch, n_targets, self._preprocess(batch)[0])
            global_code = self._global_code(batch, n_targets)
            implicit_functions = [
                functools.partial(function, camera=target_camera, global_code=global_code, fun_viewpool=fun_viewpool)
                for function in self._implicit_functions_per_pass()
            ]
            target_fg = None if batch.fg_probability is None else batch.fg_probability[:n_targets]

            def render(rays: RayBundle) -> RendererOutput:
                extra: Dict[str, Any] = {}
                if self.renderer.requires_object_mask():
                    extra["object_mask"] = self._object_mask(target_fg, rays.xys)
                return self.renderer(
                    ray_bundle=rays, implicit_functions=implicit_functions, evaluation_mode=evaluation_mode, **extra
                )

            if not full_grid:
                return ray_bundle, render(ray_bundle)
            return ray_bundle, render_in_chunks(render, ray_bundle, self.chunk_size_grid)

    def _object_mask(self, fg_probability: Optional[torch.Tensor], xys: torch.Tensor) -> Optional[torch.Tensor]:
        """(B_t, *rays) bool: fg_probability (B_t, 1, H, W) > mask_threshold at the rays' xys (nearest)."""
        if fg_probability is None:
            return None
        return sample_at_ndc(fg_probability, xys, "nearest")[..., 0] > self.mask_threshold

    def _losses(self, batch: FrameData, n_targets: int, output: RendererOutput, xys: torch.Tensor) -> Dict[str, Any]:
        """loss_<name> of the last pass, loss_prev_stage_<name> of the one before, loss_autodecoder_norm."""
        image_rgb, depth_map = self._preprocess(batch)

        def target(value: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
            return None if value is None else value[:n_targets]

        ground_truth = {
            "image_rgb": target(image_rgb),
            "fg_probability": target(batch.fg_probability),
            "depth_map": target(depth_map),
            "depth_mask": target(batch.depth_mask),
            "mask_crop": target(batch.mask_crop),
        }
        preds: Dict[str, Any] = {}
        stages = [("", output)] + ([(PREV_STAGE_PREFIX, output.prev_stage)] if output.prev_stage is not None else [])
        for prefix, stage in stages:
            losses = view_losses(
                features=stage.features, depths=stage.depths, masks=stage.masks, xys=xys, **ground_truth
            )
            preds.update({f"loss_{prefix}{name}": value for name, value in losses.items()})
        if self.global_encoder is not None:
            norm = self.global_encoder.calculate_squared_encoding_norm()
            if norm is not None:
                preds["loss_autodecoder_norm"] = norm
        preds.update(output.aux.get(LOSSES_AUX_KEY, {}))
        return preds

    def _preprocess(self, batch: FrameData) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
        """(image_rgb, depth_map) with the background masked out as mask_images / mask_depths say."""
        image_rgb, depth_map = batch.image_rgb, batch.depth_map
        if batch.fg_probability is None:
            return image_rgb, depth_map
        fg = (batch.fg_probability > self.mask_threshold).to(batch.fg_probability.dtype)
        if self.mask_images and image_rgb is not None:
            image_rgb = mask_background(image_rgb, fg, self.bg_color)
        if self.mask_depths and depth_map is not None:
            depth_map = depth_map * fg
        return image_rgb, depth_map

    def _objective(self, preds: Dict[str, Any], like: torch.Tensor) -> torch.Tensor:
        """Σ weight · loss over the weighted losses present in preds (terms with weight 0 skipped)."""
        objective = like.new_zeros(())
        for key, weight in self.loss_weights.items():
            if weight != 0 and key in preds:
                objective = objective + weight * preds[key]
        return objective

    def visualize(self, batch: FrameData) -> Dict[str, torch.Tensor]:
        """{"render": (3, H, 4 W) in [0, 1]}: the first frame's ground-truth image (resized; left
        out without image_rgb, giving 3 W), its full-grid render, rendered depth (coloured, near is
        warm, black outside the rendered mask) and mask, side by side at the render size H x W =
        render_image_height x render_image_width. Empty when the batch has no camera or
        evaluation does not render full grids."""
        from recon_trainer.visualization.video import colorize_depth

        if batch.camera is None:
            return {}
        preds = self.forward(batch, evaluation_mode=EvaluationMode.EVALUATION)
        if "images_render" not in preds:
            return {}
        render = preds["images_render"][:1].detach().float().cpu()
        render = render[:, :3] if render.shape[1] >= 3 else render[:, :1].expand(-1, 3, -1, -1)
        mask = preds["masks_render"][:1].detach().float().cpu()
        depth = colorize_depth(preds["depths_render"][:1].detach().float().cpu(), mask)
        panels = [render.clamp(0, 1), depth, mask.clamp(0, 1).expand(-1, 3, -1, -1)]
        if batch.image_rgb is not None:
            image = batch.image_rgb[:1].detach().float().cpu()
            image = torch.nn.functional.interpolate(image, size=render.shape[-2:], mode="bilinear", align_corners=False)
            panels.insert(0, image.clamp(0, 1))
        return {"render": torch.cat(panels, dim=-1)[0]}


def _images_from_grid(output: RendererOutput) -> Dict[str, torch.Tensor]:
    """Full-grid renders (B, H, W, C) as images (B, C, H, W)."""
    return {
        "images_render": output.features.permute(0, 3, 1, 2),
        "depths_render": output.depths.permute(0, 3, 1, 2),
        "masks_render": output.masks.permute(0, 3, 1, 2),
    }
