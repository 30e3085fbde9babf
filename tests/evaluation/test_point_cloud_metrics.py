"""Point-cloud metrics: hand cases (shifted plane, half-covered plane), PCA normals, Kabsch and ICP
recovery of a known motion, and (only where `import open3d` works) parity with Open3D's
estimate_normals / registration_icp and Spann3R's evaluation steps."""
import math

import numpy as np
import pytest
import torch

from recon_trainer.evaluation import point_cloud_metrics as pcm


def plane(step: float = 0.1) -> np.ndarray:
    """11 x 11 grid on z = 0 over [0, 1]^2."""
    x, y = np.meshgrid(np.arange(11) * step, np.arange(11) * step, indexing="ij")
    return np.stack([x.ravel(), y.ravel(), np.zeros(x.size)], axis=-1)


def bumpy_surface(n: int = 41) -> np.ndarray:
    """A surface without symmetries: z = 0.1 sin 3x + 0.05 cos 5y + 0.1 x y over [-1, 1]^2."""
    x, y = np.meshgrid(np.linspace(-1, 1, n), np.linspace(-1, 1, n), indexing="ij")
    z = 0.1 * np.sin(3 * x) + 0.05 * np.cos(5 * y) + 0.1 * x * y
    return np.stack([x.ravel(), y.ravel(), z.ravel()], axis=-1)


def rotation(axis, degrees: float) -> np.ndarray:
    axis = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    angle = math.radians(degrees)
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k


def rigid(axis, degrees: float, translation) -> np.ndarray:
    transformation = np.eye(4)
    transformation[:3, :3] = rotation(axis, degrees)
    transformation[:3, 3] = translation
    return transformation


def test_shifted_plane():
    gt = plane()
    pred = gt + np.array([0.0, 0.0, 0.05])
    acc = pcm.accuracy(gt, pred, pcm.estimate_normals(gt), pcm.estimate_normals(pred))
    comp = pcm.completion(gt, pred)
    assert acc.mean == pytest.approx(0.05) and acc.median == pytest.approx(0.05)
    assert acc.normal_mean == pytest.approx(1.0) and acc.normal_median == pytest.approx(1.0)
    assert comp.mean == pytest.approx(0.05) and comp.normal_mean is None


def test_half_covered_plane():
    """Prediction = the GT points with x <= 0.5: accuracy 0; completion 0.1 .. 0.5 for 11 points per column."""
    gt = plane()
    pred = gt[gt[:, 0] <= 0.5 + 1e-9]
    assert pcm.accuracy(gt, pred).mean == pytest.approx(0.0)
    comp = pcm.completion(gt, pred)
    assert comp.mean == pytest.approx(11 * (0.1 + 0.2 + 0.3 + 0.4 + 0.5) / 121)
    assert comp.median == pytest.approx(0.0)  # 66 of 121 distances are 0
    assert pcm.completion_ratio(gt, pred, threshold=0.25) == pytest.approx(88 / 121)


def test_normals_of_plane_and_sphere():
    normals = pcm.estimate_normals(plane())
    np.testing.assert_allclose(np.abs(normals[:, 2]), 1.0, atol=1e-12)
    rng = np.random.default_rng(0)
    sphere = rng.normal(size=(3000, 3))
    sphere /= np.linalg.norm(sphere, axis=1, keepdims=True)
    radial = np.abs(np.sum(pcm.estimate_normals(sphere) * sphere, axis=1))
    assert radial.min() > 0.98 and np.median(radial) > 0.999
    np.testing.assert_allclose(pcm.estimate_normals(np.zeros((2, 3))), [[0, 0, 1], [0, 0, 1]])


def test_rigid_fit_recovers_motion_without_reflection():
    source = bumpy_surface(9)
    motion = rigid([1, 2, 3], 40.0, [0.3, -0.2, 1.0])
    np.testing.assert_allclose(pcm.rigid_fit(source, pcm.transform_points(source, motion)), motion, atol=1e-12)
    flat = plane()  # coplanar points: the best rotation must not be a reflection
    fit = pcm.rigid_fit(flat, pcm.transform_points(flat, motion))
    assert np.linalg.det(fit[:3, :3]) == pytest.approx(1.0)
    np.testing.assert_allclose(fit, motion, atol=1e-12)


def test_icp_recovers_known_rotation():
    target = bumpy_surface()
    motion = rigid([1, 2, 3], 2.0, [0.01, -0.005, 0.01])  # larger motions can end in a sliding local minimum
    source = pcm.transform_points(target, np.linalg.inv(motion))
    result = pcm.icp_point_to_point(torch.from_numpy(source), target, max_distance=0.1, max_iteration=100)
    np.testing.assert_allclose(result.transformation, motion, atol=1e-6)
    assert result.fitness == 1.0 and result.inlier_rmse < 1e-6 and result.iterations < 100
    start = pcm.icp_point_to_point(source, target, 0.1, init=motion)  # already aligned: one step
    assert start.iterations == 1 and start.inlier_rmse < 1e-9


def test_icp_without_correspondences_keeps_the_start():
    result = pcm.icp_point_to_point(plane() + 10.0, plane(), max_distance=0.1)
    np.testing.assert_array_equal(result.transformation, np.eye(4))
    assert result.fitness == 0.0 and result.inlier_rmse == 0.0 and result.iterations == 1


def test_reconstruction_metrics_after_icp():
    gt = bumpy_surface()
    pred = pcm.transform_points(gt[::2], rigid([0, 0, 1], 2.0, [0.01, 0.0, 0.0]))
    scores = pcm.reconstruction_metrics(pred, gt, icp_max_distance=0.1)
    assert scores["accuracy"] < 1e-6 and scores["icp_fitness"] == 1.0
    assert scores["completion"] > 0  # every other GT point is missing
    assert scores["chamfer"] == pytest.approx((scores["accuracy"] + scores["completion"]) / 2)
    assert scores["nc1"] > 0.99 and scores["nc2"] > 0.99
    unaligned = pcm.reconstruction_metrics(pred, gt)
    assert "icp_fitness" not in unaligned and unaligned["accuracy"] > 1e-3


def test_bad_clouds_raise():
    with pytest.raises(ValueError, match="pred_points"):
        pcm.reconstruction_metrics(np.zeros((4, 2)), plane())
    with pytest.raises(ValueError, match="gt_points"):
        pcm.reconstruction_metrics(plane(), np.zeros((0, 3)))
    with pytest.raises(ValueError, match="max_distance"):
        pcm.icp_point_to_point(plane(), plane(), 0.0)


# --- Open3D (the original's library), where it can be imported -----------------------------------

def noisy_partial_prediction(gt: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(14)
    keep = rng.random(len(gt)) < 0.7
    pred = gt[keep] + 0.005 * rng.normal(size=(int(keep.sum()), 3))
    return pcm.transform_points(pred, rigid([1, -1, 2], 3.0, [0.02, 0.01, -0.015]))


def test_matches_open3d():
    o3d = pytest.importorskip("open3d", exc_type=ImportError)
    gt = bumpy_surface()
    pred = noisy_partial_prediction(gt)

    def cloud(points):
        pcd = o3d.geometry.PointCloud()
        pcd.points = o3d.utility.Vector3dVector(points)
        return pcd

    # ICP as eval.py calls it (point-to-point, identity start, default criteria).
    reg = o3d.pipelines.registration.registration_icp(
        cloud(pred), cloud(gt), 0.1, np.eye(4), o3d.pipelines.registration.TransformationEstimationPointToPoint())
    ours = pcm.icp_point_to_point(pred, gt, 0.1)
    np.testing.assert_allclose(ours.transformation, reg.transformation, atol=1e-9)
    assert ours.fitness == pytest.approx(reg.fitness, abs=1e-12)
    assert ours.inlier_rmse == pytest.approx(reg.inlier_rmse, abs=1e-9)

    # Normals: equal up to sign.
    pcd_pred, pcd_gt = cloud(pred).transform(reg.transformation), cloud(gt)
    pcd_pred.estimate_normals()
    pcd_gt.estimate_normals()
    aligned = pcm.transform_points(pred, ours.transformation)
    for pcd, points in ((pcd_pred, aligned), (pcd_gt, gt)):
        dots = np.abs(np.sum(np.asarray(pcd.normals) * pcm.estimate_normals(points), axis=1))
        assert dots.min() > 1 - 1e-6

    # The metrics of eval.py (its accuracy / completion on Open3D's clouds and normals).
    scores = pcm.reconstruction_metrics(pred, gt, icp_max_distance=0.1)
    expected_acc = pcm.accuracy(np.asarray(pcd_gt.points), np.asarray(pcd_pred.points),
                                np.asarray(pcd_gt.normals), np.asarray(pcd_pred.normals))
    expected_comp = pcm.completion(np.asarray(pcd_gt.points), np.asarray(pcd_pred.points),
                                   np.asarray(pcd_gt.normals), np.asarray(pcd_pred.normals))
    for key, value in (("accuracy", expected_acc.mean), ("accuracy_median", expected_acc.median),
                       ("nc1", expected_acc.normal_mean), ("nc1_median", expected_acc.normal_median),
                       ("completion", expected_comp.mean), ("completion_median", expected_comp.median),
                       ("nc2", expected_comp.normal_mean), ("nc2_median", expected_comp.normal_median)):
        assert scores[key] == pytest.approx(value, abs=1e-8), key
