"""Render a tiny CO3D-layout dataset (v1 or v2 files) from meshes with known geometry.

    python tools/make_co3d_dataset.py --out DIR --version v1
    python tools/make_co3d_dataset.py --out DIR --version v2 --category cow=recon_trainer/data/assets/cow_mesh/cow.obj

Each --category NAME=SCENE (SCENE: "builtin" or a mesh file) gets --n-sequences sequences of
--n-frames views; layout, splits and eval batches: recon_trainer/data/providers/co3d/writer.py.
Read it back with JsonIndexDatasetMapProvider (v1) or JsonIndexDatasetMapProviderV2 (v2),
dataset_root=DIR.
"""
import argparse
import os
import sys

from recon_trainer.data.providers.co3d.writer import VERSIONS, default_sequences, write_co3d_dataset


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--out", required=True, help="new (or empty) output folder: the dataset_root")
    parser.add_argument("--version", choices=sorted(VERSIONS), default="v1", help="CO3D v1 or v2 files")
    parser.add_argument("--category", action="append", default=None, metavar="NAME=SCENE",
                        help="a category and its scene ('builtin' or a mesh file); repeatable "
                             "(default: procedural=builtin)")
    parser.add_argument("--n-sequences", type=int, default=4, help="sequences per category (half seen, half unseen)")
    parser.add_argument("--n-frames", type=int, default=8, help="frames per sequence (every 4th, from 1, unseen)")
    parser.add_argument("--height", type=int, default=32, help="image height in pixels")
    parser.add_argument("--width", type=int, default=40, help="image width in pixels")
    args = parser.parse_args()
    scenes = {}
    for item in args.category or ["procedural=builtin"]:
        name, sep, scene = item.partition("=")
        if not sep or not name or not scene:
            sys.exit(f"make_co3d_dataset: --category {item!r}: expected NAME=SCENE, e.g. cow=path/to/cow.obj")
        scenes[name] = scene
    if os.path.isdir(args.out) and os.listdir(args.out):
        sys.exit(f"make_co3d_dataset: {args.out} exists and is not empty; choose a new folder")
    if args.n_sequences < 2:
        sys.exit(f"make_co3d_dataset: --n-sequences {args.n_sequences}: need at least 2 (seen and unseen)")
    try:
        written = write_co3d_dataset(
            args.out,
            args.version,
            default_sequences(scenes, args.n_sequences),
            n_frames=args.n_frames,
            image_size_hw=(args.height, args.width),
        )
    except (OSError, ValueError) as error:
        sys.exit(f"make_co3d_dataset: {error}")
    for category, names in written.items():
        print(f"{category}: {len(names)} sequences ({', '.join(names)})")
    print(f"wrote a CO3D {args.version} dataset to {os.path.abspath(args.out)}")


if __name__ == "__main__":
    main()
