"""Reconstruct your own video or image folder online with a Spann3R model: a coloured point cloud
(PLY) and a confidence per frame.

    python tools/spann3r_reconstruct.py --pretrained spann3r.pth --input video.mp4 --output out/
        [--size 224] [--kf_every 10] [--offline] [--max_frames 0] [--conf_threshold 1.5] [--device cuda]

--pretrained is a released Spann3R checkpoint (spann3r.pth) or a checkpoint of a recon_trainer run
(exp_dir/checkpoints/...: use `recon_visualizer exp_dir=... images_dir=frames/` for those).
--input is a folder of images (taken in name order) or a video file; every kf_every-th frame is
used. out/ gets pointcloud.ply, confidence.npy, points.npy, confidence/*.png and frames.txt
(recon_trainer_plugins.spann3r.reconstruction). The forward's FPS is printed. A mistake (missing
file, not a video, not a Spann3R checkpoint) ends with one line on stderr and exit code 2; --debug
adds the traceback.
"""
import argparse
from typing import List, Optional, Sequence

PROG = "spann3r_reconstruct"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--pretrained", required=True, help="a Spann3R checkpoint (spann3r.pth: {'model': ...})")
    parser.add_argument("--input", required=True, help="a folder of images or a video file")
    parser.add_argument("--output", required=True, help="folder for the point cloud and the confidences")
    parser.add_argument("--size", type=int, default=224,
                        help="input size: below 512 a centre square of this side (Spann3R: 224), else the long side")
    parser.add_argument("--kf_every", type=int, default=1, help="use every N-th frame")
    parser.add_argument("--max_frames", type=int, default=0, help="use at most N frames (0: all)")
    parser.add_argument("--conf_threshold", type=float, default=1.5,
                        help="points with a confidence at most this are left out of the PLY (1: keep all)")
    parser.add_argument("--offline", action="store_true",
                        help="Spann3R's offline mode: pairwise scores choose the frame order (slower: T^2 pairs)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    return parser.parse_args(list(argv))


def run(args: argparse.Namespace) -> List[str]:
    """Load the network, reconstruct, write; the written paths."""
    from recon_trainer.cli.devices import device_from_option
    from recon_trainer.errors import UserError
    from recon_trainer_plugins.spann3r.reconstruction import (check_size, read_frames, reconstruct_frames,
                                                              write_reconstruction)
    from recon_trainer_plugins.spann3r.spann3r_checkpoint import load_spann3r_checkpoint

    if args.conf_threshold < 1:
        raise UserError(f"--conf_threshold {args.conf_threshold}: confidences are >= 1; expected >= 1")
    frames, names = read_frames(args.input, args.kf_every, args.max_frames)
    device = device_from_option(args.device)
    network = load_spann3r_checkpoint(args.pretrained).to(device)
    patch_size = network.dust3r.patch_embed.patch_size
    check_size(args.size, patch_size, "--size")
    result = reconstruct_frames(network, frames, names, device, args.size, patch_size, offline=args.offline)
    print(f"{PROG}: {len(names)} frames in {result.seconds:.2f} s ({result.fps:.2f} FPS)")
    return write_reconstruction(result, args.output, args.conf_threshold)


def main(argv: Optional[Sequence[str]] = None) -> None:
    from recon_trainer.cli.reporting import pop_debug_flag, reported_errors

    argv, _ = pop_debug_flag(argv)
    args = parse_args(argv)
    with reported_errors(PROG):
        written = run(args)
    print(f"{PROG}: wrote {len(written)} files to {args.output}")


if __name__ == "__main__":
    main()
