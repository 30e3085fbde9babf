"""The framework's own registered implementations, imported by plugin discovery before plugins.

Add a module here when it registers classes that a default config or a plugin relies on.
"""
BUILTIN_MODULES = (
    "recon_trainer.training.model_factory",  # trainer: ReconModelFactory
    "recon_trainer.training.optimizer_factory",  # trainer: ReconOptimizerFactory
    "recon_trainer.training.training_loop",  # trainer: ReconTrainingLoop
    "recon_trainer.data.providers.blender",
    "recon_trainer.data.providers.builtin_scene",
    "recon_trainer.data.data_loader_map_provider",
    "recon_trainer.data.data_source",
    "recon_trainer.rendering.raysampler",
    "recon_trainer.rendering.raymarcher",
    "recon_trainer.rendering.multipass_ea",
    "recon_trainer.models.generic_model",
    "recon_trainer.models.overfit_model",
    "recon_trainer.evaluation.nvs_evaluator",
)
