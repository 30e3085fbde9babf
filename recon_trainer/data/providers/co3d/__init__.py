"""CO3D (Common Objects in 3D) v1 and v2 layouts: annotation files, JsonIndexDataset, dataset map
providers, and a writer of tiny CO3D-layout datasets rendered from meshes (tools/make_co3d_dataset.py)."""
