"""Render the built-in scene or a mesh file into a new NeRF Blender-layout dataset folder.

    python tools/export_blender_dataset.py --scene builtin --out DIR --n-views 50 --resolution 128
    python tools/export_blender_dataset.py --scene path/to/cow.obj --out DIR

Writes transforms_{train,val,test}.json (camera_angle_x, transform_matrix), RGBA PNGs and exact
depth (.npy) beside them; views are split as BuiltinScene splits them
(recon_trainer/data/providers/builtin_scene.py). Read it back with BlenderDatasetMapProvider.
"""
import argparse
import sys

from recon_trainer.config import get_default_args
from recon_trainer.data.providers.builtin_scene import BuiltinScene, export_blender_dataset


def main() -> None:
    d = get_default_args(BuiltinScene)
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--scene", default=d.scene, help="'builtin' or the path of a mesh file (OBJ, PLY, GLB)")
    parser.add_argument("--out", required=True, help="new (or empty) output folder")
    parser.add_argument("--n-views", type=int, default=d.n_views, help="views of all splits together")
    parser.add_argument("--holdout-every", type=int, default=d.holdout_every, help="every n-th view is held out")
    parser.add_argument("--resolution", type=int, default=d.resolution, help="image height and width in pixels")
    parser.add_argument("--distance", type=float, default=d.distance, help="camera distance from the scene centre")
    parser.add_argument("--fov-degrees", type=float, default=d.fov_degrees, help="field of view in degrees")
    parser.add_argument("--elevation-range", type=float, nargs=2, default=list(d.elevation_range), help="degrees")
    parser.add_argument("--seed", type=int, default=d.seed, help="seeds the view elevations")
    args = parser.parse_args()
    try:
        out = export_blender_dataset(
            args.out,
            scene=args.scene,
            n_views=args.n_views,
            holdout_every=args.holdout_every,
            resolution=args.resolution,
            distance=args.distance,
            fov_degrees=args.fov_degrees,
            elevation_range=tuple(args.elevation_range),
            seed=args.seed,
        )
    except (OSError, ValueError) as error:
        sys.exit(f"export_blender_dataset: {error}")
    print(f"wrote a Blender-layout dataset of {args.scene!r} to {out}")


if __name__ == "__main__":
    main()
