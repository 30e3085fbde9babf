"""Render the built-in scene or a mesh file into a new LLFF-layout (forward-facing) dataset folder.

    python tools/make_llff_dataset.py --out DIR
    python tools/make_llff_dataset.py --scene path/to/cow.obj --out DIR --grid 4 --height 96 --width 128

Writes poses_bounds.npy (LLFF poses, exact near/far depth bounds), images/ and images_<k>/ for each
--factors k; the cameras are a grid in front of the scene, all looking at its centre
(recon_trainer/data/providers/llff.py). Read it back with LlffDatasetMapProvider.
"""
import argparse
import inspect
import sys

from recon_trainer.data.providers.llff import render_llff_dataset


def main() -> None:
    d = {k: p.default for k, p in inspect.signature(render_llff_dataset).parameters.items()}
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--scene", default=d["scene"], help="'builtin' or the path of a mesh file (OBJ, PLY, GLB)")
    parser.add_argument("--out", required=True, help="new (or empty) output folder")
    parser.add_argument("--grid", type=int, default=d["grid"], help="grid x grid cameras")
    parser.add_argument("--spacing", type=float, default=d["spacing"], help="distance between neighbouring cameras")
    parser.add_argument("--distance", type=float, default=d["distance"], help="distance of the camera plane")
    parser.add_argument("--fov-degrees", type=float, default=d["fov_degrees"], help="field of view (shorter side)")
    parser.add_argument("--height", type=int, default=d["image_size_hw"][0], help="image height in pixels")
    parser.add_argument("--width", type=int, default=d["image_size_hw"][1], help="image width in pixels")
    parser.add_argument("--factors", type=int, nargs="*", default=list(d["factors"]), help="images_<k> folders")
    args = parser.parse_args()
    try:
        out = render_llff_dataset(
            args.out,
            scene=args.scene,
            grid=args.grid,
            spacing=args.spacing,
            distance=args.distance,
            fov_degrees=args.fov_degrees,
            image_size_hw=(args.height, args.width),
            factors=tuple(args.factors),
        )
    except (OSError, ValueError) as error:
        sys.exit(f"make_llff_dataset: {error}")
    print(f"wrote an LLFF-layout dataset of {args.scene!r} to {out}")


if __name__ == "__main__":
    main()
