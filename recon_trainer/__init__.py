"""recon_trainer: one Hydra-configured trainer for 3D reconstruction and geometry estimation."""

__version__ = "0.1.0"
