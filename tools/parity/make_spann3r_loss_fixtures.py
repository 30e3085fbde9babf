"""Make tests/fixtures/spann3r/losses.pt: the ORIGINAL Spann3R and DUSt3R loss classes run on fixed
random sequences (world-frame ground truth with invalid pixels, noisy scaled predictions).

Spann3R's `spann3r/loss.py` is imported from --spann3r_repo (with its own dust3r copy), then the
modules named dust3r are dropped and naver/dust3r's `dust3r/losses.py` is imported from --dust3r_repo.
Not run by the test suite; run it as

    PYTHONPATH=/work/ref/deps python tools/parity/make_spann3r_loss_fixtures.py \\
        --spann3r_repo /work/ref/spann3r --dust3r_repo /work/ref/dust3r --out tests/fixtures/spann3r

Content (float32; H x W = 6 x 8):
  <case>/gt_points (B, T, H, W, 3) world, NaN at some invalid pixels; <case>/valid (B, T, H, W) bool;
  <case>/camera_to_world (B, T, 4, 4); <case>/ref_points, tgt_points (B, T - 1, H, W, 3);
  <case>/ref_conf, tgt_conf (B, T - 1, H, W) >= 1
  cases: 'b1' (B 1, T 4), 'b2' (B 2, T 4; sample 0's prediction is larger than the GT, sample 1's
  smaller), 'b2_large' (B 2, T 4; both larger), 'pair' (B 2, T 2)
  spann3r/<case>/{loss_conf, loss_factor, total}   ConfLoss_t(Regr3D_t(L21, 'avg_dis', fix_first=False),
        alpha=<case>/alpha) for b1, b2, b2_large; total = loss_conf + loss_factor as training.py
  spann3r/<case>/grad_{ref,tgt}_{points,conf}      d total / d inputs
  spann3r/<case>/regr_mean                         the Regr3D_t per-pixel L21 mean of every term, original order
  spann3r/<case>/per_sample_total                  b2, b2_large: the total without the batch quirk, assembled
        from the original run on each sample alone (see per_sample_total)
  dust3r/<case>/loss, grad_*                       ConfLoss(Regr3D(L21, 'avg_dis'), alpha=0.2) for pair and
        the first pair of b1 (case 'b1_pair')
  test/<case>/loss                                 Regr3D_t_ScaleShiftInv(L21, gt_scale=True) for b1, b2
  align/<case>/points, gt_points (B, T, H, W, 3)   Regr3D_t_ScaleShiftInv(L21, norm_mode=False, gt_scale=True)
        then eval.py's step 3 (add the GT z shift, map with frame 0's pose), per sample, for b1, b2
"""
import argparse
import os
import sys
from typing import Dict, List, Tuple

import torch

HEIGHT, WIDTH = 6, 8
CASES = {"b1": (1, 4, (1.3,)), "b2": (2, 4, (1.4, 0.7)), "b2_large": (2, 4, (1.2, 1.5)), "pair": (2, 2, (0.8, 1.3))}
ALPHA = {"b1": 0.4, "b2": 0.3, "b2_large": 0.25}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spann3r_repo", required=True, help="checkout of HengyiWang/spann3r")
    parser.add_argument("--dust3r_repo", required=True, help="checkout of naver/dust3r")
    parser.add_argument("--out", required=True, help="output folder of losses.pt")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    return args


def random_rotation(generator: torch.Generator) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=generator))
    q = q * torch.sign(torch.diagonal(r))[None, :]
    return q * torch.det(q)


def random_case(generator: torch.Generator, batch: int, frames: int, scales: Tuple[float, ...]) -> Dict:
    """World GT from random depth along random camera poses; predictions in camera 0 = scaled noisy GT."""
    u = (torch.arange(WIDTH) + 0.5 - WIDTH / 2) / 5.0
    v = (torch.arange(HEIGHT) + 0.5 - HEIGHT / 2) / 5.0
    rays = torch.stack([u[None, :].expand(HEIGHT, WIDTH), v[:, None].expand(HEIGHT, WIDTH),
                        torch.ones(HEIGHT, WIDTH)], dim=-1)
    poses = torch.eye(4).repeat(batch, frames, 1, 1)
    for b in range(batch):
        for t in range(frames):
            poses[b, t, :3, :3] = random_rotation(generator)
            poses[b, t, :3, 3] = torch.randn(3, generator=generator)
    depth = 1.0 + 4.0 * torch.rand(batch, frames, HEIGHT, WIDTH, generator=generator)
    cam = rays * depth[..., None]
    world = torch.einsum("btij,bthwj->bthwi", poses[..., :3, :3], cam) + poses[:, :, None, None, :3, 3]
    valid = torch.rand(batch, frames, HEIGHT, WIDTH, generator=generator) > 0.25
    valid[0, 1, :2] = False  # a frame with more holes
    to_cam0 = torch.linalg.inv(poses[:, 0])
    gt_cam0 = torch.einsum("bij,bthwj->bthwi", to_cam0[:, :3, :3], world) + to_cam0[:, None, None, None, :3, 3]
    world[~valid & (torch.rand(valid.shape, generator=generator) < 0.5)] = float("nan")
    scale = torch.tensor(scales).view(batch, 1, 1, 1, 1)
    steps = frames - 1

    def noisy(frame_slice: slice) -> torch.Tensor:
        base = gt_cam0[:, frame_slice] * scale
        return base + 0.1 * torch.randn(base.shape, generator=generator)

    return {
        "gt_points": world, "valid": valid, "camera_to_world": poses,
        "ref_points": noisy(slice(0, steps)), "tgt_points": noisy(slice(1, frames)),
        "ref_conf": 1 + torch.exp(torch.randn(batch, steps, HEIGHT, WIDTH, generator=generator)),
        "tgt_conf": 1 + torch.exp(torch.randn(batch, steps, HEIGHT, WIDTH, generator=generator)),
    }


def original_inputs(case: Dict) -> Tuple[List[Dict], List[Tuple[Dict, Dict]], Dict[str, torch.Tensor]]:
    """Spann3R's batch (list of view dicts) and preds_all (list of (res1, res2)); the leaves needing grad."""
    leaves = {k: case[k].clone().requires_grad_() for k in ("ref_points", "tgt_points", "ref_conf", "tgt_conf")}
    frames = case["valid"].shape[1]
    gts = [{"pts3d": case["gt_points"][:, t], "valid_mask": case["valid"][:, t],
            "camera_pose": case["camera_to_world"][:, t]} for t in range(frames)]
    preds_all = []
    for k in range(frames - 1):
        res1 = {"pts3d" if k == 0 else "pts3d_in_other_view": leaves["ref_points"][:, k],
                "conf": leaves["ref_conf"][:, k]}
        res2 = {"pts3d_in_other_view": leaves["tgt_points"][:, k], "conf": leaves["tgt_conf"][:, k]}
        preds_all.append((res1, res2))
    return gts, preds_all, leaves


def grads(total: torch.Tensor, leaves: Dict[str, torch.Tensor], prefix: str) -> Dict[str, torch.Tensor]:
    names = list(leaves)
    values = torch.autograd.grad(total, [leaves[n] for n in names], allow_unused=True)
    return {f"{prefix}/grad_{n}": (torch.zeros_like(leaves[n]) if g is None else g) for n, g in zip(names, values)}


def per_sample_total(case: Dict, alpha: float, ConfLoss_t, Regr3D_t, L21) -> torch.Tensor:
    """The B > 1 loss as it would be without the batch quirk, from the original run on each sample
    alone (B = 1): per-pixel L21 of sample b concatenated in batch order, weighted by the
    confidences as ConfLoss_t; the scale loss averaged over the samples whose factor is larger."""
    batch = case["valid"].shape[0]
    pixel_losses, factors = [], []
    for b in range(batch):
        gts, preds_all, _ = original_inputs({k: v[b:b + 1] for k, v in case.items()})
        criterion = ConfLoss_t(Regr3D_t(L21, norm_mode="avg_dis", fix_first=False), alpha=alpha)
        (losses, _, _), _, _ = criterion.pixel_loss.compute_frame_loss(gts, preds_all)
        *_, gt_factor, pr_factor, _, _ = criterion.pixel_loss.get_all_pts3d_t(gts, preds_all)
        pixel_losses.append([x.detach() for x in losses])
        factors.append((float(pr_factor), float(gt_factor)))
    gts, preds_all, _ = original_inputs(case)
    confs = []  # (confidence, frame) of every term in the original's order
    for frame in range(len(preds_all) + 1):
        if frame < len(preds_all):
            confs.append((preds_all[frame][0]["conf"], frame))
        if frame > 0:
            confs.append((preds_all[frame - 1][1]["conf"], frame))
    terms = []
    for i, (conf, frame) in enumerate(confs):
        error = torch.cat([pixel_losses[b][i] for b in range(batch)])
        c = conf.detach()[case["valid"][:, frame]]
        terms.append((error * c - alpha * torch.log(c)).mean())
    larger = [pr - gt for pr, gt in factors if pr > gt]
    scale = sum(larger) / len(larger) if larger else 0.0
    return (torch.stack(terms) * 2.0).mean() + scale


def spann3r_fixture(cases: Dict[str, Dict]) -> Dict[str, torch.Tensor]:
    from dust3r.losses import L21
    from dust3r.utils.geometry import geotrf
    from spann3r.loss import ConfLoss_t, Regr3D_t, Regr3D_t_ScaleShiftInv

    out = {}
    for name, alpha in ALPHA.items():
        gts, preds_all, leaves = original_inputs(cases[name])
        criterion = ConfLoss_t(Regr3D_t(L21, norm_mode="avg_dis", fix_first=False), alpha=alpha)
        loss, _, factor = criterion.compute_frame_loss(gts, preds_all)
        factor = torch.as_tensor(factor, dtype=torch.float32)
        total = loss + factor
        (losses, _, _), _, _ = criterion.pixel_loss.compute_frame_loss(gts, preds_all)
        out.update({f"spann3r/{name}/loss_conf": loss.detach(), f"spann3r/{name}/loss_factor": factor.detach(),
                    f"spann3r/{name}/total": total.detach(), f"spann3r/{name}/alpha": torch.tensor(alpha),
                    f"spann3r/{name}/regr_mean": torch.stack([x.mean() for x in losses]).detach()})
        out.update(grads(total, leaves, f"spann3r/{name}"))
        if cases[name]["valid"].shape[0] > 1:
            out[f"spann3r/{name}/per_sample_total"] = per_sample_total(cases[name], alpha, ConfLoss_t, Regr3D_t, L21)

    for name in ("b1", "b2"):
        gts, preds_all, _ = original_inputs(cases[name])
        test_loss, _, _ = Regr3D_t_ScaleShiftInv(L21, gt_scale=True).compute_frame_loss(gts, preds_all)
        out[f"test/{name}/loss"] = test_loss.detach()

        aligned, aligned_gt = [], []
        for b in range(cases[name]["valid"].shape[0]):  # eval.py runs at B = 1 (its shift is a batch mean)
            gts_b, preds_b, _ = original_inputs({k: v[b:b + 1] for k, v in cases[name].items()})
            with torch.no_grad():  # as eval.py; the criterion shifts and scales the predictions in place
                gt_b, pred_b, _, _, _, mon_b = Regr3D_t_ScaleShiftInv(
                    L21, norm_mode=False, gt_scale=True).get_all_pts3d_t(gts_b, preds_b)
            shift = mon_b["gt_shift_z"].item()
            pose0 = cases[name]["camera_to_world"][b, 0]
            frames_b, frames_gt = [], []
            for j in range(len(gt_b)):
                p = (pred_b[0][j] if j < len(pred_b[0]) else pred_b[1][-1]).detach()[0].clone()
                g = gt_b[j].detach()[0].clone()
                p[..., -1] += shift
                g[..., -1] += shift
                frames_b.append(geotrf(pose0, p))
                frames_gt.append(geotrf(pose0, g))
            aligned.append(torch.stack(frames_b))
            aligned_gt.append(torch.stack(frames_gt))
        out[f"align/{name}/points"] = torch.stack(aligned)
        out[f"align/{name}/gt_points"] = torch.stack(aligned_gt)
    return out


def dust3r_fixture(cases: Dict[str, Dict]) -> Dict[str, torch.Tensor]:
    from dust3r.losses import L21, ConfLoss, Regr3D

    pairs = {"pair": cases["pair"], "b1_pair": {k: (v[:, :2] if k in ("gt_points", "valid", "camera_to_world")
                                                   else v[:, :1]) for k, v in cases["b1"].items()}}
    out = {}
    for name, case in pairs.items():
        gts, preds_all, leaves = original_inputs(case)
        criterion = ConfLoss(Regr3D(L21, norm_mode="avg_dis"), alpha=0.2)
        loss, _ = criterion(gts[0], gts[1], preds_all[0][0], preds_all[0][1])
        out[f"dust3r/{name}/loss"] = loss.detach()
        out.update(grads(loss, leaves, f"dust3r/{name}"))
    return out


def main() -> None:
    args = parse_args()
    generator = torch.Generator().manual_seed(14)
    cases = {name: random_case(generator, *spec) for name, spec in CASES.items()}
    out = {f"{name}/{k}": v for name, case in cases.items() for k, v in case.items()}

    sys.path.insert(0, os.path.abspath(args.spann3r_repo))
    out.update(spann3r_fixture(cases))
    sys.path.remove(os.path.abspath(args.spann3r_repo))
    for module in [m for m in sys.modules if m == "dust3r" or m.startswith("dust3r.")]:
        del sys.modules[module]
    sys.path.insert(0, os.path.abspath(args.dust3r_repo))
    import dust3r.losses
    assert os.path.abspath(dust3r.losses.__file__).startswith(os.path.abspath(args.dust3r_repo))
    out.update(dust3r_fixture(cases))

    path = os.path.join(args.out, "losses.pt")
    torch.save(out, path)
    print(f"wrote {path}: {len(out)} tensors, {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
