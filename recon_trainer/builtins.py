"""The framework's own registered implementations, imported by plugin discovery before plugins.

Add a module here when it registers classes that a default config or a plugin relies on.
"""
BUILTIN_MODULES = (
    "recon_trainer.training.model_factory",  # trainer: ReconModelFactory
    "recon_trainer.training.optimizer_factory",  # trainer: ReconOptimizerFactory
    "recon_trainer.training.training_loop",  # trainer: ReconTrainingLoop
    "recon_trainer.data.providers.blender",
    "recon_trainer.data.providers.builtin_scene",
    "recon_trainer.data.providers.co3d.providers",  # JsonIndexDataset, JsonIndexDatasetMapProvider(V2)
    "recon_trainer.data.providers.llff",
    "recon_trainer.data.providers.rendered_mesh",
    "recon_trainer.data.depth.diw",  # monocular depth formats: DIW, ETH3D, KITTI, NYUv2, ReDWeb, Sintel, TUM
    "recon_trainer.data.depth.eth3d",
    "recon_trainer.data.depth.kitti",
    "recon_trainer.data.depth.nyu",
    "recon_trainer.data.depth.redweb",
    "recon_trainer.data.depth.sintel",
    "recon_trainer.data.depth.tum",
    "recon_trainer.data.depth.sequences",  # TUMSequences, KITTISequences, SintelSequences, ETH3DSequences
    "recon_trainer.data.multiview",  # DUSt3R / Spann3R datasets: Scannet, Scannetpp, ArkitScene, Habitat, Co3d, ...
    "recon_trainer.data.ssc.nyu",  # semantic scene completion: NYUv2SSC
    "recon_trainer.data.ssc.semantic_kitti",  # SemanticKITTI, KITTI360
    "recon_trainer.data.data_loader_map_provider",
    "recon_trainer.data.data_source",
    "recon_trainer.data.mixing.data_source",  # MixtureDataSource
    "recon_trainer.rendering.raysampler",
    "recon_trainer.rendering.raymarcher",
    "recon_trainer.rendering.multipass_ea",
    "recon_trainer.models.generic_model",
    "recon_trainer.models.overfit_model",
    "recon_trainer.models.global_encoder",  # SequenceAutodecoder, HarmonicTimeEncoder
    "recon_trainer.models.resnet_feature_extractor",  # ResNetFeatureExtractor
    "recon_trainer.models.view_pooling.feature_aggregator",  # the four feature aggregators
    "recon_trainer.evaluation.nvs_evaluator",
)
