"""Helpers shared by the multi-view dataset tests (tests/data/test_multiview_*.py)."""
from recon_trainer.data.records import ViewRecord


def depth_agreement(a: ViewRecord, b: ViewRecord) -> float:
    """The median relative difference between the depth in b of a's valid points that b sees (where
    b has depth) and b's depth map there: small when depth, K and poses agree (occlusions and
    pixel-size slopes aside), inf when b sees too few of them."""
    points = a.points_world()[a.depth_valid()]
    seen = b.project(points)
    pixels = seen.pixels[seen.in_view].long()
    target = b.depth[pixels[:, 1], pixels[:, 0]]
    known = target > 0
    if int(known.sum()) < 20:
        return float("inf")
    return float(((seen.depth[seen.in_view][known] - target[known]).abs() / target[known]).median())
