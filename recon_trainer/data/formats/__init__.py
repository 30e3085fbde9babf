"""On-disk formats: one module per layout, each reading records (data/records.py) and writing tiny
synthetic copies for tests.

- moge: MoGe's `.index.txt` instances (image.jpg, log-encoded 16-bit depth.png, meta.json);
- scannet: ScanNet as SimpleRecon exports it (Spann3R's layout);
- nyu_ssc: NYUv2 semantic scene completion as MonoScene pre-processes it (pkl labels);
- sintel_dpt: Sintel's .dpt depth and .cam camera files;
- colmap: COLMAP's text model (cameras.txt, images.txt; ETH3D's calibration);
- poses: rotations as the files store them (quaternions), 4x4 matrices as text;
- scene_files: what the multi-view scene formats share (list files, folder listings, RGB + 16-bit depth PNGs).

The monocular depth datasets (data/depth/) and the NVS providers (data/providers/) read their
layouts into records too, with these modules for the shared file formats.
"""
