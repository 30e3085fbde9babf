"""NeRF's coarse-to-fine renderer: one raymarching pass per implicit function."""
from collections.abc import Callable
from typing import Any

from recon_trainer.config import registry, run_auto_creation
from recon_trainer.models.base import EvaluationMode

from .ray_bundle import RayBundle
from .ray_point_refiner import RayPointRefiner
from .raymarcher import RaymarcherBase
from .renderer import BaseRenderer, RendererOutput


@registry.register
class MultiPassEmissionAbsorptionRenderer(BaseRenderer):
    """Renders len(implicit_functions) passes over the same rays.

    Pass 0 evaluates the first function at the raysampler's depths. Each later pass draws new
    depths from the previous pass's weights (importance sampling, `RayPointRefiner`), evaluates
    the next function there and raymarches again. The last pass's output is returned; its
    `prev_stage` holds the pass before it, and so on.
    """

    raymarcher: RaymarcherBase
    raymarcher_class_type: str = "EmissionAbsorptionRaymarcher"
    n_pts_per_ray_fine_training: int = 64  # depths drawn per ray for each later pass in training
    n_pts_per_ray_fine_evaluation: int = 64  # depths drawn per ray for each later pass in evaluation
    stratified_sampling_coarse_training: bool = True  # random draws from the previous weights in training
    stratified_sampling_coarse_evaluation: bool = False  # random draws from the previous weights in evaluation
    append_coarse_samples_to_fine: bool = True  # a later pass also evaluates the previous pass's depths
    density_noise_std_train: float = 0.0  # std of Gaussian noise added to densities in training
    return_weights: bool = False  # put each pass's sample weights (B, ..., P) in aux["weights"]
    blurpool_weights: bool = False  # smooth the weights before sampling (mip-NeRF)
    sample_pdf_eps: float = 1e-5  # extra mass after the last bin in importance sampling (sample_pdf)

    def __post_init__(self) -> None:
        run_auto_creation(self)
        # no parameters, so a plain dict (a ModuleDict key may not be "training")
        self._refiners = {
            EvaluationMode.TRAINING: self._refiner(
                self.n_pts_per_ray_fine_training, self.stratified_sampling_coarse_training
            ),
            EvaluationMode.EVALUATION: self._refiner(
                self.n_pts_per_ray_fine_evaluation, self.stratified_sampling_coarse_evaluation
            ),
        }

    def _refiner(self, n_pts_per_ray: int, random_sampling: bool) -> RayPointRefiner:
        return RayPointRefiner(
            n_pts_per_ray=n_pts_per_ray,
            random_sampling=random_sampling,
            add_input_samples=self.append_coarse_samples_to_fine,
            blurpool_weights=self.blurpool_weights,
            sample_pdf_eps=self.sample_pdf_eps,
        )

    def forward(
        self,
        *,
        ray_bundle: RayBundle,
        implicit_functions: list[Callable],
        evaluation_mode: EvaluationMode,
        **kwargs: Any,
    ) -> RendererOutput:
        """RendererOutput of the last pass: features (B, ..., C), depths and masks (B, ..., 1)."""
        if not implicit_functions:
            raise ValueError("MultiPassEmissionAbsorptionRenderer needs at least one implicit function")
        training = evaluation_mode == EvaluationMode.TRAINING
        noise_std = self.density_noise_std_train if training else 0.0
        refiner = self._refiners[evaluation_mode]
        output, weights = None, None
        for implicit_function in implicit_functions:
            if weights is not None:
                ray_bundle = refiner(ray_bundle, weights)
            output = self._render_pass(implicit_function, ray_bundle, noise_std, output)
            weights = output.aux["weights"] if self.return_weights else output.aux.pop("weights")
        return output

    def _render_pass(
        self, implicit_function: Callable, ray_bundle: RayBundle, noise_std: float, prev_stage: RendererOutput | None
    ) -> RendererOutput:
        densities, features, aux = implicit_function(ray_bundle=ray_bundle)
        if features.shape[-1] != self.render_features_dimensions:
            raise ValueError(
                f"MultiPassEmissionAbsorptionRenderer: the implicit function returned {features.shape[-1]} feature "
                f"channels, render_features_dimensions is {self.render_features_dimensions}"
            )
        output = self.raymarcher(densities, features, ray_bundle.lengths, density_noise_std=noise_std)
        output.aux = {**aux, **output.aux}
        output.prev_stage = prev_stage
        return output
