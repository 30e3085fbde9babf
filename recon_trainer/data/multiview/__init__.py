"""Multi-view sequence datasets in the on-disk layouts DUSt3R and Spann3R train and test on, each a
registered CroppedSequences (data/multiview/base.py) found by its original's name in a mixing
expression. Importing this package registers them."""
from recon_trainer.data.multiview.base import CroppedSequences, parse_resolution
from recon_trainer.data.multiview.crop import crop_resize_like_dust3r
from recon_trainer.data.multiview import blendedmvs, co3d, dtu, nrgbd, seven_scenes  # noqa: F401 (registers)
from recon_trainer.data.multiview import arkitscenes, habitat, scannet, scannetpp  # noqa: F401 (registers)

__all__ = ["CroppedSequences", "crop_resize_like_dust3r", "parse_resolution"]
