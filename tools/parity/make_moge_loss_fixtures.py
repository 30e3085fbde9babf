"""Make the parity fixtures of MoGe's alignment solvers and training losses:
tests/fixtures/moge/alignment.pt and tests/fixtures/moge/losses.pt.

Runs the ORIGINAL `moge.utils.alignment`, `moge.train.losses` and utils3d's torch
`masked_nearest_resize` (imported from --moge_repo and the PYTHONPATH) on fixed random inputs and
stores the inputs and the original's outputs. Not run by the test suite; run it as

    PYTHONPATH=/work/ref/MoGe:/work/ref/utils3d:/work/ref/deps python \\
        tools/parity/make_moge_loss_fixtures.py --moge_repo /work/ref/MoGe --out tests/fixtures/moge

alignment.pt (float32 unless said):
  align/x, y, w (4, 24)              w has zeros; rows 2-3 have y ~ -x (negative scales)
  align/<case>/a, loss, index        case 'none' (untruncated), 't0.5', 't2' (trunc 0.5, 2.0)
  align/<case>/grad_x, grad_y        d(sum a)/dx, d(sum a)/dy
  points/src, tgt (3, 40, 3), weight (3, 40)   weight has zeros; sample 2 has a negative scale
  <fn>/<case>/scale, shift            fn scale_z_shift / scale_xyz_shift, case none / t1 / t0.05
  <fn>/<case>/grad_src                d(sum scale + sum shift)/d src
  depth_affine/<case>/scale, shift    align_depth_affine on the z of points, weight as above
  points_scale/<case>, depth_scale/<case>, z_shift/<case>, xyz_shift/<case>   the simpler solvers
  lstsq/a, lstsq/b                    align_affine_lstsq(x, y) without weights
  resize/image, resize/mask (2, 32, 40)       a map and its mask (sample 1 has empty footprints)
  resize/<h>x<w>/out, out_mask        utils3d.pt.masked_nearest_resize to (h, w)

losses.pt (a scene of 2 x 32 x 40: a slanted wall with a box, NaN holes, +inf sky corner; the
prediction is a scaled, z-shifted, noisy copy with some outliers):
  pred (2, 32, 40, 3), gt (2, 32, 40, 3)
  global/<case>/loss (2,), truncated_error, delta, scale (2,)
                        case 'default' (align_resolution 16), 'beta_sparse' (also beta 0.05,
                        trunc 0.5, sparsity_aware)
  global/default/grad   d(sum loss)/d pred (2, 32, 40, 3)
  local/<case>/loss, truncated_error, delta
                        sample 0 alone (the original's batching only works for one sample),
                        level 4, align_resolution 8, num_patches 16, torch.manual_seed(local/seed)
                        right before the call; case 'scaled' (global_scale: the default global
                        loss's), 'no_global' (None), 'beta_sparse' (also beta 0.05, sparsity_aware)
  local/scaled/grad     d loss/d pred[0] (32, 40, 3)
  local/seed, local/focal
  normal/loss, edge/loss, mask_l2/loss, mask_bce/loss, metric_scale/loss, normal_map/loss
  mask/pred (2, 32, 40) in (0, 1), mask/pos, mask/neg bool; metric/pred, metric/gt (4,) (gt has
  0 and a negative); normal/pred, normal/gt (2, 16, 20, 3) (gt has NaN vectors)
"""
import os
from typing import Dict

import torch
from reference import reference_args

ALIGN_CASES = {"none": None, "t0.5": 0.5, "t2": 2.0}
POINT_CASES = {"none": None, "t1": 1.0, "t0.05": 0.05}
RESIZE_SIZES = [(16, 16), (13, 17), (40, 48)]
LOCAL_SEED = 1234


def random_rows(generator: torch.Generator) -> Dict[str, torch.Tensor]:
    """Rows for `align`: y ≈ s x with outliers, zero weights, negative scales in rows 2 and 3."""
    x = torch.randn(4, 24, generator=generator)
    scale = torch.tensor([1.5, 0.3, -2.0, -0.7])[:, None]
    y = scale * x + 0.1 * torch.randn(4, 24, generator=generator)
    y[:, :4] += 3 * torch.randn(4, 4, generator=generator)  # outliers
    w = torch.rand(4, 24, generator=generator) * (torch.rand(4, 24, generator=generator) > 0.25)
    return {"x": x, "y": y, "w": w}


def random_points(generator: torch.Generator) -> Dict[str, torch.Tensor]:
    """Point sets for the scale + shift solvers; sample 2 is best fit by a negative scale."""
    src = torch.randn(3, 40, 3, generator=generator) + torch.tensor([0.0, 0.0, 3.0])
    scale = torch.tensor([1.3, 0.4, -0.8])[:, None, None]
    shift = torch.randn(3, 1, 3, generator=generator)
    tgt = scale * src + shift + 0.05 * torch.randn(3, 40, 3, generator=generator)
    tgt[:, :5] += torch.randn(3, 5, 3, generator=generator)
    weight = (0.2 + torch.rand(3, 40, generator=generator)) * (torch.rand(3, 40, generator=generator) > 0.2)
    return {"src": src, "tgt": tgt, "weight": weight}


def scene(generator: torch.Generator, batch: int = 2, height: int = 32, width: int = 40) -> Dict[str, torch.Tensor]:
    """Ground-truth and predicted point maps as described in the module docstring."""
    u = ((torch.arange(width) + 0.5) / width - 0.5)[None, :].expand(height, width)
    v = ((torch.arange(height) + 0.5) / height - 0.5)[:, None].expand(height, width)
    gts, preds = [], []
    for b in range(batch):
        depth = (3 + 1.5 * u + 0.8 * v + 0.2 * torch.rand(1, generator=generator)
                 + 0.02 * torch.randn(height, width, generator=generator))
        depth[10:22, 12 + 4 * b:26 + 4 * b] = 1.6 + 0.1 * b  # a box in front of the wall
        focal = 0.7 + 0.2 * b
        gt = torch.stack([u / focal * depth, v / focal * depth, depth], dim=-1)
        gt[torch.rand(height, width, generator=generator) < 0.1] = float("nan")
        gt[:4, :6] = float("inf")
        finite = torch.nan_to_num(gt, nan=2.0, posinf=5.0)
        pred = ((0.6 + 0.3 * b) * (finite - torch.tensor([0.0, 0.0, 0.5]))
                + 0.02 * torch.randn(height, width, 3, generator=generator))
        outliers = torch.rand(height, width, generator=generator) < 0.05
        pred[outliers] += torch.randn(int(outliers.sum()), 3, generator=generator)
        gts.append(gt)
        preds.append(pred)
    return {"pred": torch.stack(preds), "gt": torch.stack(gts), "focal": torch.tensor([0.7, 0.9])}


def alignment_fixture(alignment, utils3d, generator: torch.Generator) -> Dict[str, torch.Tensor]:
    out = {}
    rows = random_rows(generator)
    out.update({f"align/{k}": v for k, v in rows.items()})
    for case, trunc in ALIGN_CASES.items():
        x, y = rows["x"].clone().requires_grad_(), rows["y"].clone().requires_grad_()
        a, loss, index = alignment.align(x, y, rows["w"], trunc)
        grad_x, grad_y = torch.autograd.grad(a.sum(), (x, y))
        out.update({f"align/{case}/a": a.detach(), f"align/{case}/loss": loss.detach(), f"align/{case}/index": index,
                    f"align/{case}/grad_x": grad_x, f"align/{case}/grad_y": grad_y})

    points = random_points(generator)
    out.update({f"points/{k}": v for k, v in points.items()})
    tgt, weight = points["tgt"], points["weight"]
    for case, trunc in POINT_CASES.items():
        for name in ("scale_z_shift", "scale_xyz_shift"):
            src = points["src"].clone().requires_grad_()
            scale, shift = getattr(alignment, f"align_points_{name}")(src, tgt, weight, trunc)
            (grad_src,) = torch.autograd.grad(scale.sum() + shift.sum(), src)
            out.update({f"{name}/{case}/scale": scale.detach(), f"{name}/{case}/shift": shift.detach(),
                        f"{name}/{case}/grad_src": grad_src})
        src = points["src"]
        scale, shift = alignment.align_depth_affine(src[..., 2], tgt[..., 2], weight, trunc)
        out.update({f"depth_affine/{case}/scale": scale, f"depth_affine/{case}/shift": shift})
        out[f"points_scale/{case}"] = alignment.align_points_scale(src, tgt, weight, trunc)
        out[f"depth_scale/{case}"] = alignment.align_depth_scale(src[..., 2], tgt[..., 2], weight, trunc)
        out[f"z_shift/{case}"] = alignment.align_points_z_shift(src, tgt, weight, trunc)
        out[f"xyz_shift/{case}"] = alignment.align_points_xyz_shift(src, tgt, weight, trunc)
    out["lstsq/a"], out["lstsq/b"] = alignment.align_affine_lstsq(rows["x"], rows["y"])

    image = torch.randn(2, 32, 40, generator=generator)
    mask = torch.rand(2, 32, 40, generator=generator) > 0.4
    mask[1, :12] = False  # empty footprints
    for h, w in RESIZE_SIZES:
        resized, resized_mask = utils3d.pt.masked_nearest_resize(image, mask=mask, size=(h, w))
        out.update({f"resize/{h}x{w}/out": resized, f"resize/{h}x{w}/out_mask": resized_mask})
    out.update({"resize/image": image, "resize/mask": mask})
    return out


def loss_fixture(losses, generator: torch.Generator) -> Dict[str, torch.Tensor]:
    data = scene(generator)
    pred, gt = data["pred"], data["gt"]
    out = {"pred": pred, "gt": gt}

    global_cases = {
        "default": {"align_resolution": 16},
        "beta_sparse": {"align_resolution": 16, "beta": 0.05, "trunc": 0.5, "sparsity_aware": True},
    }
    for case, params in global_cases.items():
        p = pred.clone().requires_grad_()
        loss, misc, scale = losses.affine_invariant_global_loss(p, gt, **params)
        if case == "default":
            out["global/default/grad"] = torch.autograd.grad(loss.sum(), p)[0]
        out.update({f"global/{case}/loss": loss.detach(), f"global/{case}/scale": scale,
                    f"global/{case}/truncated_error": torch.tensor(misc["truncated_error"]),
                    f"global/{case}/delta": torch.tensor(misc["delta"])})

    focal = data["focal"][0]
    global_scale = out["global/default/scale"][0]
    local_cases = {
        "scaled": (global_scale, {}),
        "no_global": (None, {}),
        "beta_sparse": (global_scale, {"beta": 0.05, "sparsity_aware": True}),
    }
    for case, (reference, params) in local_cases.items():
        p = pred[0].clone().requires_grad_()
        torch.manual_seed(LOCAL_SEED)
        loss, misc = losses.affine_invariant_local_loss(
            p, gt[0], focal, reference, 4, align_resolution=8, num_patches=16, **params
        )
        if case == "scaled":
            out["local/scaled/grad"] = torch.autograd.grad(loss, p)[0]
        out.update({f"local/{case}/loss": loss.detach(),
                    f"local/{case}/truncated_error": torch.tensor(misc["truncated_error"]),
                    f"local/{case}/delta": torch.tensor(misc["delta"])})
    out.update({"local/seed": torch.tensor(LOCAL_SEED), "local/focal": focal})

    out["normal/loss"] = losses.normal_loss(pred, gt)[0]
    out["edge/loss"] = losses.edge_loss(pred, gt)[0]

    mask_pred = torch.rand(2, 32, 40, generator=generator) * 0.98 + 0.01
    pos = torch.isfinite(gt).all(dim=-1)
    neg = torch.isinf(gt[..., 2]) & (gt[..., 2] > 0)
    out.update({"mask/pred": mask_pred, "mask/pos": pos, "mask/neg": neg})
    out["mask_l2/loss"] = losses.mask_l2_loss(mask_pred, pos, neg)[0]
    out["mask_bce/loss"] = losses.mask_bce_loss(mask_pred, pos, neg)[0]

    metric_pred = torch.tensor([0.5, 2.0, 1.3, 0.9])
    metric_gt = torch.tensor([0.7, 0.0, -1.0, 0.9])
    out.update({"metric/pred": metric_pred, "metric/gt": metric_gt,
                "metric_scale/loss": losses.metric_scale_loss(metric_pred, metric_gt)[0]})

    normal_gt = torch.nn.functional.normalize(torch.randn(2, 16, 20, 3, generator=generator), dim=-1)
    normal_gt[torch.rand(2, 16, 20, generator=generator) < 0.2] = float("nan")
    normal_pred = torch.nn.functional.normalize(
        torch.nan_to_num(normal_gt, nan=1.0) + 0.3 * torch.randn(2, 16, 20, 3, generator=generator), dim=-1
    )
    normal_pred[0, 0, :3] = -normal_pred[0, 0, :3].nan_to_num(1.0)  # near-opposite directions
    out.update({"normal/pred": normal_pred, "normal/gt": normal_gt,
                "normal_map/loss": losses.normal_map_loss(normal_pred, normal_gt)[0]})
    return out


def main() -> None:
    args = reference_args(__doc__.splitlines()[0], "alignment.pt and losses.pt")
    import utils3d
    from moge.train import losses
    from moge.utils import alignment

    generator = torch.Generator().manual_seed(0)
    for name, fixture in (("alignment.pt", alignment_fixture(alignment, utils3d, generator)),
                          ("losses.pt", loss_fixture(losses, generator))):
        path = os.path.join(args.out, name)
        torch.save({k: v.detach().contiguous().clone() for k, v in fixture.items()}, path)
        print(f"{path}: {len(fixture)} tensors, {os.path.getsize(path) / 1024:.0f} kB")


if __name__ == "__main__":
    main()
