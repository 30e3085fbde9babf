"""Render synthetic box rooms into tiny datasets in MoGe's layout (MoGe's built-in data).

    python tools/make_moge_datasets.py --out DIR
    python tools/make_moge_datasets.py --out DIR --n-train 64 --n-sfm 32 --n-eval 8 --height 192 --width 256

Writes DIR/Rooms and DIR/RoomsSfM (training: synthetic with sky and normals; SfM-like sparse depth)
and DIR/EvalRooms and DIR/EvalObjects (benchmarks with segmentation.png), each with its .index.txt
(recon_trainer_plugins/moge/builtin_data.py); read them with the MoGe dataset, e.g.
"MoGeDataset(root='DIR/Rooms', depth_unit=1.0)". A bad argument or an unwritable folder ends with one line
on stderr and exit code 2.
"""
import argparse
import os
import sys


def fail(message: str) -> None:
    """One line on stderr, exit code 2."""
    print(f"make_moge_datasets: error: {message}", file=sys.stderr)
    sys.exit(2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", required=True, help="output folder (the datasets go in sub-folders)")
    parser.add_argument("--n-train", type=int, default=32, help="views of Rooms")
    parser.add_argument("--n-sfm", type=int, default=20, help="views of RoomsSfM")
    parser.add_argument("--n-eval", type=int, default=4, help="views of each benchmark")
    parser.add_argument("--height", type=int, default=96, help="image height in pixels")
    parser.add_argument("--width", type=int, default=128, help="image width in pixels")
    parser.add_argument("--seed", type=int, default=0, help="seeds the rooms and cameras")
    args = parser.parse_args()
    from recon_trainer_plugins.moge.builtin_data import DATASETS, write_moge_datasets

    if os.path.isdir(args.out) and os.listdir(args.out):
        fail(f"{args.out} exists and is not empty; choose a new folder")
    try:
        written = write_moge_datasets(
            args.out, DATASETS, args.n_train, args.n_sfm, args.n_eval, (args.height, args.width), args.seed
        )
    except (OSError, ValueError) as error:
        fail(str(error))
    for name, path in written.items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
