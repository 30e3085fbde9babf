"""Make the parity fixture of MoGe's focal/shift recovery and view-plane UV grid:
tests/fixtures/moge/focal_shift.pt.

Runs the ORIGINAL `moge.utils.geometry_torch.recover_focal_shift` and
`normalized_view_plane_uv` (imported from --moge_repo) on fixed synthetic inputs and stores the
inputs and the original's outputs. Not run by the test suite; run it as

    PYTHONPATH=/work/ref/MoGe:/work/ref/utils3d:/work/ref/deps python \\
        tools/parity/make_moge_geometry_fixtures.py --moge_repo /work/ref/MoGe --out tests/fixtures/moge

Stored keys (float32 unless said):
  points (4, 20, 28, 3)   affine-invariant point maps: perspective maps of a random smooth depth
                          with a random focal, scaled and shifted in z, plus 1 % noise
  mask (4, 20, 28) bool   about 70 % of the pixels; image 3 keeps only one pixel (the fallback)
  known_focal (4,)        a focal per image for the shift-only solve
  focal, shift (4,)       original, default downsample (64, 64): upsamples these 20x28 maps
  focal_16, shift_16 (4,) original, downsample_size (12, 16): a real downsampling
  shift_known (4,)        original with focal=known_focal, default downsample
  uv_<W>x<H> (H, W, 2)    normalized_view_plane_uv(W, H) for a few sizes
"""
import os

import torch
from reference import reference_args

UV_SIZES = [(28, 20), (7, 5), (1, 1), (16, 24)]  # (width, height)


def synthetic_point_maps(batch: int, height: int, width: int, seed: int = 0):
    """(points (B, H, W, 3), mask (B, H, W), focal (B,)) as described in the module docstring."""
    generator = torch.Generator().manual_seed(seed)

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator, dtype=torch.float64)

    aspect = width / height
    half_diagonal = (1 + aspect**2) ** 0.5
    u = ((torch.arange(width, dtype=torch.float64) * 2 + 1) / width - 1) * aspect / half_diagonal
    v = ((torch.arange(height, dtype=torch.float64) * 2 + 1) / height - 1) / half_diagonal
    grid_v, grid_u = torch.meshgrid(v, u, indexing="ij")
    focal = 0.6 + 1.4 * rand(batch)
    slope = (rand(batch, 2) - 0.5)[:, :, None, None]
    depth = 1.5 + 2 * rand(batch, 1, 1) + slope[:, 0] * grid_u + slope[:, 1] * grid_v
    depth = depth + 0.3 * torch.sin(7 * grid_u + 3 * rand(batch, 1, 1)) * rand(batch, 1, 1)
    shift = (rand(batch) - 0.5) * 1.5
    scale = 0.5 + rand(batch)
    xy = torch.stack([grid_u, grid_v], dim=-1) * (depth / focal[:, None, None])[..., None]
    points = torch.cat([xy, (depth - shift[:, None, None])[..., None]], dim=-1)
    points = points * scale[:, None, None, None]
    points = points + 0.01 * torch.randn(points.shape, generator=generator, dtype=torch.float64) * points[..., 2:]
    mask = rand(batch, height, width) > 0.3
    mask[-1] = False
    mask[-1, height // 2, width // 2] = True
    return points.float(), mask, focal.float()


def main() -> None:
    args = reference_args(__doc__.splitlines()[0], "focal_shift.pt")
    from moge.utils.geometry_torch import normalized_view_plane_uv, recover_focal_shift

    points, mask, known_focal = synthetic_point_maps(4, 20, 28)
    focal, shift = recover_focal_shift(points, mask)
    focal_16, shift_16 = recover_focal_shift(points, mask, downsample_size=(12, 16))
    _, shift_known = recover_focal_shift(points, mask, focal=known_focal)
    fixture = {
        "points": points,
        "mask": mask,
        "known_focal": known_focal,
        "focal": focal,
        "shift": shift,
        "focal_16": focal_16,
        "shift_16": shift_16,
        "shift_known": shift_known,
    }
    for width, height in UV_SIZES:
        fixture[f"uv_{width}x{height}"] = normalized_view_plane_uv(width, height, dtype=torch.float32)
    path = os.path.join(args.out, "focal_shift.pt")
    torch.save(fixture, path)
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    main()
