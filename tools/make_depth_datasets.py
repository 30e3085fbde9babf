"""Render synthetic rooms into tiny copies of the depth datasets, each in its original on-disk layout.

    python tools/make_depth_datasets.py --out DIR
    python tools/make_depth_datasets.py --out DIR --datasets redweb tum diw --n-images 16 --height 64 --width 96

Writes DIR/ReDWeb_V1, DIR/tum/rgbd_dataset_freiburg2_desk_with_person, DIR/DIW, DIR/kitti, DIR/nyu,
DIR/sintel and DIR/eth3d (recon_trainer/data/depth/synthetic.py DATASET_LAYOUTS); read them back
with the dataset classes of recon_trainer/data/depth (ReDWeb, TUM, DIW, KITTI, NYU, Sintel, ETH3D).
"""
import argparse
import sys

from recon_trainer.data.depth.synthetic import DATASET_LAYOUTS, write_depth_datasets


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--out", required=True, help="output folder (the datasets go in sub-folders)")
    names = list(DATASET_LAYOUTS)
    parser.add_argument("--datasets", nargs="+", choices=names, default=names, help="which datasets to write")
    parser.add_argument("--n-images", type=int, default=8, help="images per dataset")
    parser.add_argument("--height", type=int, default=64, help="image height in pixels")
    parser.add_argument("--width", type=int, default=64, help="image width in pixels")
    parser.add_argument("--seed", type=int, default=0, help="seeds the scenes and cameras")
    args = parser.parse_args()
    try:
        written = write_depth_datasets(
            args.out, args.datasets, n_images=args.n_images, image_size_hw=(args.height, args.width), seed=args.seed
        )
    except (OSError, ValueError) as error:
        sys.exit(f"make_depth_datasets: {error}")
    for name, path in written.items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
