"""Write tiny synthetic copies of the semantic scene completion datasets in their original layouts.

    python tools/make_ssc_datasets.py --out DIR
    python tools/make_ssc_datasets.py --out DIR --n-train 12 --n-test 4 --height 120 --width 160

DIR/NYU/depthbin/NYU{train,test}/<name>.bin, <name>_color.jpg, <name>.png (SSCNet's layout) and
DIR/NYU/preprocess/base/NYU{train,test}/<name>.pkl (MonoScene's): box rooms of
recon_trainer/data/ssc/synthetic_rooms.py; read them with NYUv2SSC(data_root='DIR/NYU/depthbin',
label_root='DIR/NYU/preprocess/base'). Train rooms are NYU1001_0000.., test rooms NYU0001_0000..
A height x width other than 480 x 640 scales NYU's K (the real images are 640 x 480).

DIR/SemanticKITTI/ and DIR/KITTI360/: street scenes in the odometry / SSCBench layouts
(recon_trainer/data/formats/semantic_kitti.py; read them with SemanticKITTI(...) / KITTI360(...)
and the data_root, label_root and depth_root printed), sequences 00 and 08 (KITTI-360: two drives),
2 frames each, by default small (94 x 310 images, 64 x 64 x 8 voxels of 0.8 m: pass
grid_shape=(64, 64, 8) to the readers); --kitti-full-size writes the real sizes (376 x 1241 images,
256 x 256 x 32 voxels; about 10 s a frame).
"""
import argparse
import os
import sys
import time
from typing import List, Optional

from recon_trainer.cli.reporting import reported_errors
from recon_trainer.data.ssc.synthetic_streets import write_tiny_kitti360, write_tiny_semantic_kitti
from recon_trainer.data.ssc.synthetic_rooms import write_synthetic_nyu

PROG = "make_ssc_datasets"


def write_nyu(out: str, n_train: int, n_test: int, image_hw: tuple, seed: int) -> str:
    """The synthetic NYU copy under out/NYU; returns that folder."""
    root = os.path.join(out, "NYU")
    data_root, label_root = os.path.join(root, "depthbin"), os.path.join(root, "preprocess", "base")
    write_synthetic_nyu(data_root, label_root, "train", [f"NYU{1001 + k:04d}_0000" for k in range(n_train)],
                        image_hw, seed)
    write_synthetic_nyu(data_root, label_root, "test", [f"NYU{1 + k:04d}_0000" for k in range(n_test)],
                        image_hw, seed)
    return root


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", required=True, help="output folder (the datasets go in sub-folders)")
    parser.add_argument("--n-train", type=int, default=12, help="NYU train rooms")
    parser.add_argument("--n-test", type=int, default=4, help="NYU test rooms")
    parser.add_argument("--height", type=int, default=480, help="image height in pixels")
    parser.add_argument("--width", type=int, default=640, help="image width in pixels")
    parser.add_argument("--seed", type=int, default=0, help="seeds the rooms and cameras")
    parser.add_argument("--kitti-full-size", action="store_true", help="SemanticKITTI / KITTI-360 at their real sizes")
    args = parser.parse_args(argv)
    with reported_errors(PROG):
        start = time.perf_counter()
        try:
            nyu = write_nyu(args.out, args.n_train, args.n_test, (args.height, args.width), args.seed)
        except OSError as error:
            sys.exit(f"{PROG}: error: cannot write under {args.out}: {error}")
        print(f"NYU: {nyu} ({args.n_train} train + {args.n_test} test rooms, {time.perf_counter() - start:.1f} s)")
        small = {} if args.kitti_full_size else {"image_hw": (94, 310), "grid_shape": (64, 64, 8)}
        for name, writer in (("SemanticKITTI", write_tiny_semantic_kitti), ("KITTI360", write_tiny_kitti360)):
            start = time.perf_counter()
            try:
                roots = writer(os.path.join(args.out, name), seed=args.seed, **small)
            except OSError as error:
                sys.exit(f"{PROG}: error: cannot write under {args.out}: {error}")
            print(f"{name}: {', '.join(f'{key}={value}' for key, value in roots.items())} "
                  f"({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    sys.exit(main())
