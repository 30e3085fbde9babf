"""Install recon_trainer: the framework, the built-in plugins and the packaged configs."""
from setuptools import find_packages, setup

PLUGINS_PACKAGE = "recon_trainer_plugins"  # the plugins/ folder's import name (not a bare "plugins")

setup(
    name="recon_trainer",
    version="0.1.0",
    description="One Hydra-configured trainer for 3D reconstruction and geometry estimation.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["recon_trainer", "recon_trainer.*"])
    + ["recon_trainer.configs"]
    + [PLUGINS_PACKAGE] + [f"{PLUGINS_PACKAGE}.{name}" for name in find_packages("plugins")],
    # The core's YAML configs live in the top-level configs/ folder and are installed as the
    # package recon_trainer.configs, so `--config-name X` works from any directory. The built-in
    # methods in plugins/ install as the package recon_trainer_plugins, each with its configs/.
    package_dir={"recon_trainer.configs": "configs", PLUGINS_PACKAGE: "plugins"},
    package_data={
        "recon_trainer.configs": ["*.yaml", "**/*.yaml"],
        PLUGINS_PACKAGE: ["*/configs/*.yaml", "*/configs/**/*.yaml"],
        "recon_trainer.data": ["assets/cow_mesh/*"],  # the default mesh of RenderedMeshDatasetMapProvider
    },
    install_requires=[
        "torch>=2.1",
        "torchvision",
        "hydra-core>=1.3,<1.4",
        "omegaconf>=2.3,<2.4",
        "numpy",
        "accelerate>=0.30",
        "tqdm",
        "matplotlib",
        "pillow",
        "imageio>=2.30",
        "imageio-ffmpeg",
        "trimesh>=4",
        "embreex",
        "lpips",
        "timm>=0.9",  # ViT encoders (MiDaS DPT)
        "h5py",  # NYUv2 labelled .mat (MATLAB v7.3 = HDF5)
        "scipy",  # NYUv2 splits.mat (MATLAB v5), nearest neighbours of the point-cloud metrics
        "OpenEXR>=3",  # Habitat's EXR depth (CroCo's rendered sets)
        "tensorboard",
        "mlflow>=2.10",
        "visdom",
    ],
    extras_require={"test": ["pytest>=7"]},
    entry_points={
        "console_scripts": [
            "recon_runner=recon_trainer.cli.runner:main",
            "recon_visualizer=recon_trainer.cli.visualizer:main",
            "recon_import_implicitron=recon_trainer.cli.import_implicitron:main",  # an Implicitron exp_dir as our run
        ],
    },
)
