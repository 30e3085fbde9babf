"""Ground-truth rendering of triangle meshes by ray casting (trimesh + Embree), one ray per pixel.

Rays go through pixel centres of pytorch3d's NDC grid: pixel (row i, column j) of an HxW image has
`x = (W - 2j - 1) / min(H, W)`, `y = (H - 2i - 1) / min(H, W)` (so a square image spans
`1 - (2j + 1) / W`). The first triangle hit gives an exact 0/1 mask, the view-space depth Z and,
through its barycentric coordinates, the surface colour: a bilinear texture lookup for meshes with
UV texture, else the material colour, the face colours or the interpolated vertex colours.

Shading is fixed and view-independent (so every view of a point has the same colour, as an NVS
model assumes): Lambertian (`lambertian_shading`) with one light plus an ambient term, on flat face
normals turned towards the viewer; `ambient=1` renders the unlit albedo. The light is directional
(`light_direction`) or, with `light_location`, a point light at a fixed world position.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Optional, Sequence, Tuple

import numpy as np
import torch
import trimesh
import trimesh.ray.ray_pyembree

from recon_trainer.data.cameras import PerspectiveCameras

DEFAULT_LIGHT_DIRECTION = (0.4, 1.0, 0.6)  # world direction towards the light (from above, +Y up)
DEFAULT_AMBIENT = 0.5  # fraction of the albedo that is lit regardless of the surface orientation
_UNCOLOURED = (0.7, 0.7, 0.7)  # albedo of a mesh without any colour information


@dataclasses.dataclass
class MeshRendering:
    """Renders of N views.

    rgb: (N, H, W, 3) in [0, 1], premultiplied on black (0 where no surface is hit).
    mask: (N, H, W) exactly 1 where a pixel's ray hits the mesh, else 0.
    depth: (N, H, W) view-space Z (pytorch3d camera z) of the hit, in scene units; 0 where no hit.
    """

    rgb: torch.Tensor
    mask: torch.Tensor
    depth: torch.Tensor


def pixel_center_ndc(image_size_hw: Tuple[int, int]) -> torch.Tensor:
    """(H, W, 2) NDC (x, y) of every pixel centre, pytorch3d's convention (x left, y up)."""
    h, w = image_size_hw
    short = float(min(h, w))
    x = (w - 2.0 * torch.arange(w, dtype=torch.float64) - 1.0) / short
    y = (h - 2.0 * torch.arange(h, dtype=torch.float64) - 1.0) / short
    return torch.stack([x[None, :].expand(h, w), y[:, None].expand(h, w)], dim=-1)


def camera_rays(cameras: PerspectiveCameras, image_size_hw: Tuple[int, int]) -> Tuple[torch.Tensor, torch.Tensor]:
    """Rays through the pixel centres, float64.

    Returns origins (N, H, W, 3), the camera centres, and directions (N, H, W, 3) in world space,
    scaled so that `origin + t * direction` has view-space depth Z = t.
    """
    R = cameras.R.double()
    focal = cameras.focal_length.double()[:, None, None]
    principal = cameras.principal_point.double()[:, None, None]
    xy = pixel_center_ndc(image_size_hw)[None]
    view_xy = (xy - principal) / focal
    view_dirs = torch.cat([view_xy, torch.ones_like(view_xy[..., :1])], dim=-1)
    # view = world @ R + T, so a view-space direction v is v @ R^T in world space.
    directions = torch.einsum("nhwj,nij->nhwi", view_dirs, R)
    origins = cameras.get_camera_center().double()[:, None, None].expand_as(directions)
    return origins, directions


def render_mesh(
    mesh: trimesh.Trimesh,
    cameras: PerspectiveCameras,
    image_size_hw: Tuple[int, int],
    *,
    light_direction: Sequence[float] = DEFAULT_LIGHT_DIRECTION,
    ambient: float = DEFAULT_AMBIENT,
    light_location: Optional[Sequence[float]] = None,
    diffuse: Optional[float] = None,
    intersector: str = "embree",
) -> MeshRendering:
    """Render `mesh` from each of the N `cameras` at image size (H, W).

    light_direction: (3,) world direction towards the light; ambient in [0, 1] (1 = unlit).
    light_location: (3,) world position of a point light, used instead of light_direction when given.
    diffuse: weight of the diffuse term; None = 1 - ambient (a surface facing the light has its albedo).
    intersector: "embree" (Embree through trimesh) or "reference" (brute force over every
    triangle in numpy: slow, for parity tests on tiny meshes).
    """
    if intersector == "embree":
        first_hits = trimesh.ray.ray_pyembree.RayMeshIntersector(mesh).intersects_first
    elif intersector == "reference":
        first_hits = functools.partial(first_hits_reference, mesh.triangles)
    else:
        raise ValueError(f"render_mesh: unknown intersector {intersector!r}, expected 'embree' or 'reference'")
    h, w = image_size_hw
    albedo_source = _AlbedoSource(mesh)
    light = np.asarray(light_direction if light_location is None else light_location, dtype=np.float64)
    diffuse = 1.0 - ambient if diffuse is None else diffuse
    face_normals = np.asarray(mesh.face_normals, dtype=np.float64)
    triangles = np.asarray(mesh.triangles, dtype=np.float64)

    all_origins, all_directions = camera_rays(cameras.to("cpu"), (h, w))
    n = len(cameras)
    rgb = np.zeros((n, h * w, 3), dtype=np.float64)
    mask = np.zeros((n, h * w), dtype=np.float64)
    depth = np.zeros((n, h * w), dtype=np.float64)
    for i in range(n):
        origins = all_origins[i].reshape(-1, 3).numpy()
        directions = all_directions[i].reshape(-1, 3).numpy()
        face = np.asarray(first_hits(origins, directions))
        rays = np.nonzero(face >= 0)[0]
        face = face[rays]
        normals = face_normals[face]
        # Exact ray-plane intersection in float64; t is the view depth since direction has Z = 1.
        t = np.einsum("ij,ij->i", triangles[face, 0] - origins[rays], normals) / np.einsum(
            "ij,ij->i", directions[rays], normals
        )
        points = origins[rays] + t[:, None] * directions[rays]
        barycentric = trimesh.triangles.points_to_barycentric(triangles[face], points)
        facing = np.where((np.einsum("ij,ij->i", normals, directions[rays]) > 0)[:, None], -normals, normals)
        to_light = light[None] if light_location is None else light - points
        to_light = to_light / np.linalg.norm(to_light, axis=-1, keepdims=True)
        rgb[i, rays] = lambertian_shading(albedo_source(face, barycentric), facing, to_light, ambient, diffuse)
        mask[i, rays] = 1.0
        depth[i, rays] = t
    return MeshRendering(
        rgb=torch.from_numpy(np.clip(rgb, 0.0, 1.0)).float().reshape(n, h, w, 3),
        mask=torch.from_numpy(mask).float().reshape(n, h, w),
        depth=torch.from_numpy(depth).float().reshape(n, h, w),
    )


def lambertian_shading(
    albedo: np.ndarray, normals: np.ndarray, to_light: np.ndarray, ambient: float, diffuse: float
) -> np.ndarray:
    """(M, 3) colours: `albedo * (ambient + diffuse * max(0, normal . to_light))`.

    albedo: (M, 3) in [0, 1]; normals: (M, 3) unit surface normals; to_light: (M, 3) or (1, 3) unit
    directions from the surface towards the light.
    """
    cosine = np.clip(np.einsum("mc,mc->m", normals, np.broadcast_to(to_light, normals.shape)), 0.0, None)
    return albedo * (ambient + diffuse * cosine)[:, None]


def first_hits_reference(triangles: np.ndarray, origins: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """Index (R,) of the nearest triangle (F, 3, 3) hit by each ray (R, 3) + (R, 3), -1 for none.

    Moeller-Trumbore test of every ray against every triangle: O(R * F), for tests only.
    """
    triangles = np.asarray(triangles, dtype=np.float64)
    v0, e1, e2 = triangles[:, 0], triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0]
    nearest = np.full(len(origins), -1, dtype=np.int64)
    for start in range(0, len(origins), 256):
        o, d = origins[start : start + 256, None], directions[start : start + 256, None]  # (r, 1, 3)
        p = np.cross(d, e2)  # (r, F, 3)
        det = np.einsum("rfc,fc->rf", p, e1)
        ok_det = np.abs(det) > 1e-12
        inv = np.where(ok_det, 1.0 / np.where(ok_det, det, 1.0), 0.0)
        s = o - v0
        u = np.einsum("rfc,rfc->rf", s, p) * inv
        q = np.cross(s, e1)
        v = np.einsum("rfc,rc->rf", q, d[:, 0]) * inv
        t = np.einsum("rfc,fc->rf", q, e2) * inv
        hit = ok_det & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 0)
        t = np.where(hit, t, np.inf)
        best = np.argmin(t, axis=1)
        nearest[start : start + 256] = np.where(np.isfinite(t[np.arange(len(t)), best]), best, -1)
    return nearest


class _AlbedoSource:
    """The surface colour (M, 3) in [0, 1] at hit points given by face ids (M,) and barycentrics (M, 3)."""

    def __init__(self, mesh: trimesh.Trimesh) -> None:
        self.mesh = mesh
        self.texture = None
        self.constant = np.asarray(_UNCOLOURED)
        visual = mesh.visual
        if isinstance(visual, trimesh.visual.texture.TextureVisuals):
            material = visual.material
            image = getattr(material, "image", None)
            if image is None:
                image = getattr(material, "baseColorTexture", None)
            if image is not None and visual.uv is not None and len(visual.uv) == len(mesh.vertices):
                self.texture = np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0
                self.uv = np.asarray(visual.uv, dtype=np.float64)
            elif material is not None:
                self.constant = np.asarray(material.main_color[:3], dtype=np.float64) / 255.0
        if self.texture is not None:
            self.kind = "texture"
        elif isinstance(visual, trimesh.visual.color.ColorVisuals):
            self.kind = visual.kind  # "face", "vertex" or None (no colours)
        else:
            self.kind = None  # a constant colour

    def __call__(self, face: np.ndarray, barycentric: np.ndarray) -> np.ndarray:
        corners = self.mesh.faces[face]  # (M, 3) vertex ids
        if self.kind == "texture":
            uv = np.einsum("mk,mkc->mc", barycentric, self.uv[corners])
            return sample_texture_bilinear(self.texture, uv)
        if self.kind == "face":
            return np.asarray(self.mesh.visual.face_colors, dtype=np.float64)[face, :3] / 255.0
        if self.kind == "vertex":
            colours = np.asarray(self.mesh.visual.vertex_colors, dtype=np.float64)[:, :3] / 255.0
            return np.einsum("mk,mkc->mc", barycentric, colours[corners])
        return np.broadcast_to(self.constant, (len(face), 3))


def sample_texture_bilinear(texture: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear lookup of texture (Ht, Wt, C) at uv (M, 2) -> (M, C).

    OBJ convention: u goes right, v goes up from the bottom row; the texture repeats outside [0, 1].
    """
    ht, wt = texture.shape[:2]
    u = np.mod(uv[:, 0], 1.0) * wt - 0.5
    v = (1.0 - np.mod(uv[:, 1], 1.0)) * ht - 0.5
    x0, y0 = np.floor(u), np.floor(v)
    fx, fy = (u - x0)[:, None], (v - y0)[:, None]
    x0, y0 = x0.astype(np.int64), y0.astype(np.int64)
    xs = np.clip([x0, x0 + 1], 0, wt - 1)
    ys = np.clip([y0, y0 + 1], 0, ht - 1)
    top = texture[ys[0], xs[0]] * (1 - fx) + texture[ys[0], xs[1]] * fx
    bottom = texture[ys[1], xs[0]] * (1 - fx) + texture[ys[1], xs[1]] * fx
    return top * (1 - fy) + bottom * fy
