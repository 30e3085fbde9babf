"""Semantic scene completion data: voxel-grid geometry (geometry.py), the NYUv2 SSC dataset in
SSCNet's / MonoScene's layout (nyu.py, registered as NYUv2SSC) and synthetic rooms in that layout
(synthetic_rooms.py). Importing recon_trainer.data.ssc.nyu registers the dataset."""
