"""Predict geometry from your own images with a MoGe model (a released or converted model.pt).

    python tools/moge_infer.py --pretrained model.pt --input photos/ --output out/ [--fov_x 60]
        [--resolution_level 9 | --num_tokens N] [--device cuda] [--fp16] [--ply] [--glb] [--maps]

--input is one image or a folder (its images, not its sub-folders). Per image, out/<stem>/ gets
(recon_trainer_plugins.moge.predictions.write_predictions): with --maps points.npy, depth.npy,
depth_vis.png, mask.png, normal.png, fov.json; with --ply pointcloud.ply; with --glb mesh.glb
(all three when none is chosen). A mistake (missing file, not an image, not a MoGe checkpoint)
ends with one line on stderr and exit code 2; --debug adds the traceback.
"""
import argparse
import os
from typing import List, Optional, Sequence

PROG = "moge_infer"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--pretrained", required=True, help="MoGe model.pt ({'model_config', 'model'})")
    parser.add_argument("--input", required=True, help="an image or a folder of images")
    parser.add_argument("--output", required=True, help="folder for the per-image output folders")
    parser.add_argument("--fov_x", type=float, default=None, help="horizontal field of view in degrees, if known")
    parser.add_argument("--resolution_level", type=int, default=9, choices=range(10), metavar="0..9",
                        help="token count over the model's num_tokens_range (higher: finer, slower)")
    parser.add_argument("--num_tokens", type=int, default=None, help="token count (overrides --resolution_level)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--fp16", action="store_true", help="mixed precision (float16 on CUDA, bfloat16 on CPU)")
    parser.add_argument("--maps", action="store_true", help="write the maps and fov.json")
    parser.add_argument("--ply", action="store_true", help="write pointcloud.ply")
    parser.add_argument("--glb", action="store_true", help="write mesh.glb")
    parser.add_argument("--edge_rtol", type=float, default=0.04,
                        help="relative depth jump beyond which points and faces are dropped from the PLY/GLB")
    return parser.parse_args(list(argv))


def input_images(path: str) -> List[str]:
    """The image `path` itself, or the images directly in the folder `path`."""
    from recon_trainer.errors import UserError
    from recon_trainer.visualization.images import list_images

    if os.path.isdir(path):
        return list_images(path)
    if not os.path.exists(path):
        raise UserError(f"--input {path!r} does not exist: expected an image or a folder of images")
    return [path]


def run(args: argparse.Namespace) -> List[str]:
    """Load the model, write the predictions; the per-image folders."""
    from recon_trainer.cli.devices import device_from_option
    from recon_trainer.errors import UserError
    from recon_trainer_plugins.moge.checkpoint import load_released
    from recon_trainer_plugins.moge.predictions import write_predictions

    if args.num_tokens is not None and args.num_tokens <= 0:
        raise UserError(f"--num_tokens {args.num_tokens}: expected a positive token count")
    if args.fov_x is not None and not 0 < args.fov_x < 180:
        raise UserError(f"--fov_x {args.fov_x}: expected degrees between 0 and 180")
    images = input_images(args.input)
    if not os.path.isfile(args.pretrained):
        raise UserError(f"--pretrained {args.pretrained!r} does not exist: expected a MoGe model.pt")
    device = device_from_option(args.device)
    network = load_released(args.pretrained, map_location=device)
    write_all = not (args.maps or args.ply or args.glb)
    return write_predictions(
        network, images, args.output, device, resolution_level=args.resolution_level, num_tokens=args.num_tokens,
        fov_x=args.fov_x, use_fp16=args.fp16, maps=args.maps or write_all, ply=args.ply or write_all,
        glb=args.glb or write_all, edge_rtol=args.edge_rtol)


def main(argv: Optional[Sequence[str]] = None) -> None:
    from recon_trainer.cli.reporting import pop_debug_flag, reported_errors

    argv, _ = pop_debug_flag(argv)
    args = parse_args(argv)
    with reported_errors(PROG):
        folders = run(args)
    print(f"{PROG}: wrote the predictions for {len(folders)} image(s) to {args.output}")


if __name__ == "__main__":
    main()
