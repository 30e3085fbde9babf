"""Render synthetic rooms and objects along smooth camera paths into tiny copies of the multi-view
datasets (DUSt3R / Spann3R layouts), each in its original on-disk layout.

    python tools/make_multiview_datasets.py --out DIR
    python tools/make_multiview_datasets.py --out DIR --layouts scannet habitat --n-scenes 2 --n-frames 12

Each layout goes to DIR/<folder> (recon_trainer/data/multiview/synthetic_copies.py: LAYOUTS); read it
back with the dataset class named there, e.g. "Scannet(split='train', ROOT='DIR/scannet',
resolution=64, num_frames=4)".
"""
import argparse
import os
import sys

from recon_trainer.data.multiview.synthetic_copies import LAYOUTS, write_layout


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--out", required=True, help="output folder (the layouts go in sub-folders)")
    parser.add_argument("--layouts", nargs="+", choices=list(LAYOUTS), default=list(LAYOUTS), help="layouts to write")
    parser.add_argument("--n-scenes", type=int, default=2, help="training scenes per layout")
    parser.add_argument("--n-frames", type=int, default=12, help="frames per scene")
    parser.add_argument("--height", type=int, default=48, help="image height in pixels")
    parser.add_argument("--width", type=int, default=64, help="image width in pixels")
    parser.add_argument("--seed", type=int, default=0, help="seeds the rooms and camera paths")
    args = parser.parse_args()
    for layout in args.layouts:
        folder = os.path.join(args.out, LAYOUTS[layout].folder)
        try:
            path = write_layout(layout, folder, args.n_scenes, args.n_frames, (args.height, args.width), args.seed)
        except (OSError, ValueError) as error:
            sys.exit(f"make_multiview_datasets: {layout}: {error}")
        print(f"{layout}: {path} (read with {LAYOUTS[layout].dataset})")


if __name__ == "__main__":
    main()
