"""Look at MoGe-layout data: an instance as a coloured point cloud and a depth image.

    python tools/moge_vis_data.py PATH_TO_INSTANCE --ply [-o OUT] [--depth depth.png] [--max_depth 100]

PATH is an instance folder (image.jpg, depth.png, meta.json) or any folder above instances: every
folder below it that holds a meta.json is one. Per instance, OUT/<instance name>/ (default: the
instance folder itself) gets depth_vis.png (near warm, far cool; sky and unknown black) and, with
--ply, pointcloud.ply: the known depth unprojected with meta.json's intrinsics, coloured by the
image, in OpenGL axes (x right, y up, z towards the viewer) as MoGe's vis_data writes it. A bad
path or file ends with one line on stderr and exit code 2; --debug adds the traceback.
"""
import argparse
import os
from typing import List, Optional, Sequence

PROG = "moge_vis_data"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("path", help="an instance folder, or a folder above instances")
    parser.add_argument("-o", "--output", default=None, help="folder for the outputs (default: each instance folder)")
    parser.add_argument("--ply", action="store_true", help="write pointcloud.ply")
    parser.add_argument("--depth", default="depth.png", help="the depth file of each instance")
    parser.add_argument("--max_depth", type=float, default=float("inf"),
                        help="leave out of the PLY points farther than this many times the nearest depth")
    return parser.parse_args(list(argv))


def find_instances(path: str) -> List[str]:
    """`path` when it holds meta.json, else every folder below it that does (sorted)."""
    from recon_trainer.errors import UserError

    if not os.path.isdir(path):
        raise UserError(f"{path}: no such folder; expected a MoGe instance folder (image.jpg, depth.png, meta.json) "
                        f"or a folder above instances")
    if os.path.isfile(os.path.join(path, "meta.json")):
        return [path]
    found = sorted(root for root, _, files in os.walk(path) if "meta.json" in files)
    if not found:
        raise UserError(f"{path}: no instance below it (no folder holds a meta.json)")
    return found


def visualise(instance: str, out_dir: str, depth_file: str, ply: bool, max_depth: float) -> List[str]:
    """Write depth_vis.png (and pointcloud.ply) of one instance into out_dir; the files written."""
    import numpy as np
    import torch
    from PIL import Image
    from recon_trainer_plugins.moge.geometry import depth_to_points

    from recon_trainer.data.formats import moge
    from recon_trainer.visualization.point_clouds import opencv_to_opengl, write_ply
    from recon_trainer.visualization.video import colorize_depth, to_uint8_frames

    view = moge.read_instance(instance, depth_file=depth_file)
    depth = view.depth
    known = torch.isfinite(depth)
    os.makedirs(out_dir, exist_ok=True)
    colours = colorize_depth(torch.where(known, depth, 0.0)[None, None], known[None, None].float())
    written = [os.path.join(out_dir, "depth_vis.png")]
    Image.fromarray(to_uint8_frames(colours)[0]).save(written[0])
    if ply:
        keep = known & (depth < depth[known].min() * max_depth) if bool(known.any()) else known
        points = depth_to_points(depth, view.normalized_intrinsics())
        rgb = view.image.permute(1, 2, 0)
        written.append(write_ply(os.path.join(out_dir, "pointcloud.ply"), opencv_to_opengl(points[keep].numpy()),
                                 rgb[keep].numpy().astype(np.float32)))
    return written


def run(args: argparse.Namespace) -> List[str]:
    """Every instance under args.path; the files written."""
    written = []
    for instance in find_instances(args.path):
        out_dir = (instance if args.output is None
                   else os.path.join(args.output, os.path.basename(os.path.normpath(instance))))
        written += visualise(instance, out_dir, args.depth, args.ply, args.max_depth)
    return written


def main(argv: Optional[Sequence[str]] = None) -> None:
    from recon_trainer.cli.reporting import pop_debug_flag, reported_errors

    argv, _ = pop_debug_flag(argv)
    args = parse_args(argv)
    with reported_errors(PROG):
        for path in run(args):
            print(path)


if __name__ == "__main__":
    main()
