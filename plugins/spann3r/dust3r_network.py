"""DUSt3R (dust3r/model.py::AsymmetricCroCo3DStereo): a siamese ViT encoder, two cross-attending
decoders and a point-map head per view, every width and depth set by `DUSt3RArchitecture`.

`DUSt3RNetwork.state_dict()` has exactly the original's keys, so released DUSt3R weights load with
strict=True (dust3r_checkpoint.py). `mask_token` (CroCo pretraining only) is kept for that and
frozen, as is the DPT head's refinenet4.resConfUnit1: no gradient ever reaches either.

Images are (B, 3, H, W) in [-1, 1] (DUSt3R's ImgNorm); true_shape (B, 2) int64 (height, width) of
each image. Points are in the first view's camera frame (units of the training data, scale-free up
to the loss normalisation); confidences are >= conf_mode's lower bound (1 for ("exp", 1, inf)).
"""
from __future__ import annotations

import dataclasses
import math
import re
from typing import Dict, List, Sequence, Tuple, Union

import torch
from torch import nn

from recon_trainer.config.errors import ConfigError

from .croco_blocks import NORM_EPS, Block, DecoderBlock, ManyARPatchEmbed, PatchEmbed
from .dpt_head import DPTHead, LinearHead
from .predictions import SequencePredictions
from .rope import RoPE2D

INF = math.inf
DEPTH_MODES = ("exp", "square", "linear")
CONF_MODES = ("exp", "sigmoid")
PATCH_EMBEDS = {"PatchEmbedDust3R": PatchEmbed, "ManyAR_PatchEmbed": ManyARPatchEmbed}
HEAD_TYPES = ("linear", "dpt")


@dataclasses.dataclass
class DUSt3RArchitecture:
    """AsymmetricCroCo3DStereo's constructor arguments (same names); defaults are the released ViT-L/B models'.

    img_size: int or (H, W) training size, only checked to be a multiple of patch_size (as the original).
    depth_mode: (mode, -inf, inf): "exp" maps xyz to xyz/|xyz| * expm1(|xyz|), "square" to
        xyz * |xyz|, "linear" keeps it (the original accepts no finite bounds).
    conf_mode: (mode, vmin, vmax): "exp" -> vmin + min(exp(x), vmax - vmin), "sigmoid" ->
        vmin + (vmax - vmin) sigmoid(x).
    landscape_only: True: heads run on the landscape-or-transposed grid and return landscape maps
        (the original's transpose_to_landscape); False: every true_shape of a batch must be equal.
    patch_embed_cls: "PatchEmbedDust3R" (tokens follow the tensor) or "ManyAR_PatchEmbed" (landscape
        tensors, portrait samples stored transposed).
    dpt_feature_dim, dpt_layer_dims: the DPT head's fusion width and per-level widths (the original
        hard-codes 256 and (96, 192, 384, 768); its last_dim is dpt_feature_dim // 2).
    """

    img_size: Union[int, Tuple[int, int]] = 224
    patch_size: int = 16
    enc_embed_dim: int = 1024
    enc_depth: int = 24
    enc_num_heads: int = 16
    dec_embed_dim: int = 768
    dec_depth: int = 12
    dec_num_heads: int = 12
    mlp_ratio: float = 4.0
    norm_im2_in_dec: bool = True
    pos_embed: str = "RoPE100"
    head_type: str = "linear"
    output_mode: str = "pts3d"
    depth_mode: Tuple[str, float, float] = ("exp", -INF, INF)
    conf_mode: Tuple[str, float, float] = ("exp", 1.0, INF)
    landscape_only: bool = True
    patch_embed_cls: str = "PatchEmbedDust3R"
    dpt_feature_dim: int = 256
    dpt_layer_dims: Tuple[int, int, int, int] = (96, 192, 384, 768)

    def __post_init__(self) -> None:
        for name in ("img_size", "depth_mode", "conf_mode", "dpt_layer_dims"):
            if isinstance(getattr(self, name), list):
                setattr(self, name, tuple(getattr(self, name)))
        self._check_sizes()
        self._check_modes()

    def _fail(self, name: str, expected: str) -> None:
        raise ConfigError(f"DUSt3RArchitecture.{name}={getattr(self, name)!r}: expected {expected}")

    @property
    def rope_freq(self) -> float:
        """The RoPE base frequency of pos_embed "RoPE<freq>"."""
        return float(self.pos_embed[len("RoPE"):])

    @property
    def img_hw(self) -> Tuple[int, int]:
        """img_size as (H, W)."""
        return (self.img_size, self.img_size) if isinstance(self.img_size, int) else tuple(self.img_size)

    def _check_sizes(self) -> None:
        for name in ("patch_size", "enc_embed_dim", "enc_depth", "enc_num_heads", "dec_embed_dim", "dec_depth",
                     "dec_num_heads", "dpt_feature_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                self._fail(name, "a positive integer")
        size = self.img_size
        if not (isinstance(size, int) or (isinstance(size, tuple) and len(size) == 2
                                          and all(isinstance(s, int) for s in size))):
            self._fail("img_size", "an integer or (height, width)")
        if any(side % self.patch_size for side in self.img_hw):
            self._fail("img_size", f"sides that are multiples of patch_size {self.patch_size}")
        if not (isinstance(self.mlp_ratio, (int, float)) and self.mlp_ratio > 0):
            self._fail("mlp_ratio", "a positive number")
        for side in ("enc", "dec"):
            dim, heads = getattr(self, f"{side}_embed_dim"), getattr(self, f"{side}_num_heads")
            if dim % heads or (dim // heads) % 4:
                self._fail(f"{side}_num_heads", f"a divisor of {side}_embed_dim {dim} leaving a head width "
                                                "divisible by 4 (2-D RoPE)")
        if self.head_type == "dpt":
            if self.patch_size != 16:
                self._fail("patch_size", "16 with head_type 'dpt' (the DPT head upsamples the patch grid 16x)")
            if self.dpt_feature_dim < 2 or self.dpt_feature_dim % 2:
                self._fail("dpt_feature_dim", "an even integer >= 2")
            dims = self.dpt_layer_dims
            if not (isinstance(dims, tuple) and len(dims) == 4 and all(isinstance(d, int) and d > 0 for d in dims)):
                self._fail("dpt_layer_dims", "four positive integers")

    def _check_modes(self) -> None:
        if not (isinstance(self.pos_embed, str) and re.fullmatch(r"RoPE\d+(\.\d*)?", self.pos_embed)):
            self._fail("pos_embed", "'RoPE<frequency>' such as 'RoPE100' (CroCo's 'cosine' is not supported)")
        if self.head_type not in HEAD_TYPES:
            self._fail("head_type", f"one of {HEAD_TYPES}")
        if self.output_mode != "pts3d":
            self._fail("output_mode", "'pts3d'")
        if self.patch_embed_cls not in PATCH_EMBEDS:
            self._fail("patch_embed_cls", f"one of {tuple(PATCH_EMBEDS)}")
        if not isinstance(self.landscape_only, bool):
            self._fail("landscape_only", "true or false")
        if not isinstance(self.norm_im2_in_dec, bool):
            self._fail("norm_im2_in_dec", "true or false")
        depth, conf = self.depth_mode, self.conf_mode
        if not (isinstance(depth, tuple) and len(depth) == 3 and depth[0] in DEPTH_MODES
                and depth[1] == -INF and depth[2] == INF):
            self._fail("depth_mode", f"(mode, -inf, inf) with mode one of {DEPTH_MODES}")
        if not (isinstance(conf, tuple) and len(conf) == 3 and conf[0] in CONF_MODES
                and all(isinstance(v, (int, float)) for v in conf[1:]) and conf[1] < conf[2] and conf[1] > -INF):
            self._fail("conf_mode", f"(mode, vmin, vmax) with mode one of {CONF_MODES}, finite vmin < vmax")


def points_from_raw(xyz: torch.Tensor, depth_mode: Tuple[str, float, float]) -> torch.Tensor:
    """(..., 3) raw head output -> (..., 3) points as depth_mode says (see DUSt3RArchitecture)."""
    if depth_mode[0] == "linear":
        return xyz
    distance = xyz.norm(dim=-1, keepdim=True)
    direction = xyz / distance.clip(min=1e-8)
    return direction * (distance.square() if depth_mode[0] == "square" else torch.expm1(distance))


def confidence_from_raw(x: torch.Tensor, conf_mode: Tuple[str, float, float]) -> torch.Tensor:
    """(...) raw head output -> (...) confidence as conf_mode says (see DUSt3RArchitecture)."""
    mode, vmin, vmax = conf_mode
    if mode == "exp":
        return vmin + x.exp().clip(max=vmax - vmin)
    return (vmax - vmin) * torch.sigmoid(x) + vmin


class DUSt3RNetwork(nn.Module):
    """AsymmetricCroCo3DStereo with the original's module names (see the module docstring)."""

    def __init__(self, arch: DUSt3RArchitecture) -> None:
        super().__init__()
        self.arch = arch
        self.patch_size = arch.patch_size
        self.enc_embed_dim, self.enc_depth = arch.enc_embed_dim, arch.enc_depth
        self.dec_embed_dim, self.dec_depth = arch.dec_embed_dim, arch.dec_depth
        self.patch_embed = PATCH_EMBEDS[arch.patch_embed_cls](arch.patch_size, 3, arch.enc_embed_dim)
        self.rope = RoPE2D(freq=arch.rope_freq)
        self.enc_blocks = nn.ModuleList(Block(arch.enc_embed_dim, arch.enc_num_heads, arch.mlp_ratio, rope=self.rope)
                                        for _ in range(arch.enc_depth))
        self.enc_norm = nn.LayerNorm(arch.enc_embed_dim, eps=NORM_EPS)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, arch.dec_embed_dim), requires_grad=False)
        self.decoder_embed = nn.Linear(arch.enc_embed_dim, arch.dec_embed_dim)
        self.dec_blocks = nn.ModuleList(self._decoder_blocks())
        self.dec_norm = nn.LayerNorm(arch.dec_embed_dim, eps=NORM_EPS)
        self._init_weights()
        self.dec_blocks2 = nn.ModuleList(self._decoder_blocks())
        self.dec_blocks2.load_state_dict(self.dec_blocks.state_dict())  # the original deep-copies dec_blocks
        self.downstream_head1, self.downstream_head2 = (self._make_head() for _ in range(2))

    def _decoder_blocks(self) -> List[DecoderBlock]:
        arch = self.arch
        return [DecoderBlock(arch.dec_embed_dim, arch.dec_num_heads, arch.mlp_ratio, norm_mem=arch.norm_im2_in_dec,
                             rope=self.rope) for _ in range(arch.dec_depth)]

    def _make_head(self) -> nn.Module:
        arch = self.arch
        if arch.head_type == "linear":
            return LinearHead(arch.dec_embed_dim, arch.patch_size)
        return DPTHead(arch.enc_embed_dim, arch.dec_embed_dim, arch.dec_depth, arch.patch_size,
                       arch.dpt_layer_dims, arch.dpt_feature_dim)

    def _init_weights(self) -> None:
        """CroCo's initialisation of the encoder and decoder (the heads keep torch's defaults, as the original)."""
        weight = self.patch_embed.proj.weight.data
        nn.init.xavier_uniform_(weight.view(weight.shape[0], -1))
        nn.init.normal_(self.mask_token, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def encode_image(self, img: torch.Tensor, true_shape: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """img (B, 3, H, W) in [-1, 1], true_shape (B, 2) -> features (B, P, enc_embed_dim), positions (B, P, 2)."""
        x, pos = self.patch_embed(img, true_shape)
        for block in self.enc_blocks:
            x = block(x, pos)
        return self.enc_norm(x), pos

    def encode_pair(self, img1: torch.Tensor, img2: torch.Tensor, true_shape1: torch.Tensor,
                    true_shape2: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Both views' (features, positions) as encode_image: one batch when the tensors' sizes match."""
        if img1.shape[-2:] != img2.shape[-2:]:
            return (*self.encode_image(img1, true_shape1), *self.encode_image(img2, true_shape2))
        feat, pos = self.encode_image(torch.cat((img1, img2)), torch.cat((true_shape1, true_shape2)))
        feat1, feat2 = feat.chunk(2)
        pos1, pos2 = pos.chunk(2)
        return feat1, pos1, feat2, pos2

    def decode(self, f1: torch.Tensor, pos1: torch.Tensor, f2: torch.Tensor,
               pos2: torch.Tensor) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
        """Encoder features (B, P1, Ce), (B, P2, Ce) and positions -> for each view the dec_depth + 1
        outputs: [its encoder features (Ce), block 1, ..., dec_norm(block dec_depth)] (Cd). Block k of
        each view attends to the other view's output of block k - 1."""
        outputs1, outputs2 = [f1], [f2]
        x1, x2 = self.decoder_embed(f1), self.decoder_embed(f2)
        for block1, block2 in zip(self.dec_blocks, self.dec_blocks2):
            x1, x2 = block1(x1, x2, pos1, pos2)[0], block2(x2, x1, pos2, pos1)[0]
            outputs1.append(x1)
            outputs2.append(x2)
        outputs1[-1], outputs2[-1] = self.dec_norm(x1), self.dec_norm(x2)
        return outputs1, outputs2

    def _run_head(self, module: nn.Module, tokens: Sequence[torch.Tensor],
                  image_size: Tuple[int, int]) -> Dict[str, torch.Tensor]:
        raw = module(tokens, image_size).permute(0, 2, 3, 1)  # (B, H, W, 4)
        return {"pts3d": points_from_raw(raw[..., :3], self.arch.depth_mode),
                "conf": confidence_from_raw(raw[..., 3], self.arch.conf_mode)}

    def head(self, which: int, tokens: Sequence[torch.Tensor], true_shape: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Head 1 (reference view) or 2 on the decoder outputs of `decode`, in float32 (autocast off).

        Returns {"pts3d": (B, H, W, 3), "conf": (B, H, W)}. With landscape_only, H <= W are the
        smallest and largest entries of true_shape: a portrait sample's maps are predicted on its
        portrait grid and returned transposed (the original's transpose_to_landscape)."""
        if which not in (1, 2):
            raise ValueError(f"head must be 1 or 2, got {which!r}")
        module = self.downstream_head1 if which == 1 else self.downstream_head2
        with torch.autocast(device_type=tokens[-1].device.type, enabled=False):
            tokens = [t.float() for t in tokens]
            if not self.arch.landscape_only:
                if not bool((true_shape == true_shape[:1]).all()):
                    raise ValueError("with landscape_only false, every true_shape of a batch must be equal")
                height, width = (int(v) for v in true_shape[0])
                return self._run_head(module, tokens, (height, width))
            short, long = int(true_shape.min()), int(true_shape.max())
            landscape = (true_shape[:, 1] >= true_shape[:, 0]).to(tokens[-1].device)
            if bool(landscape.all()):
                return self._run_head(module, tokens, (short, long))
            if not bool(landscape.any()):
                return {k: v.transpose(1, 2) for k, v in self._run_head(module, tokens, (long, short)).items()}
            wide = self._run_head(module, [t[landscape] for t in tokens], (short, long))
            tall = self._run_head(module, [t[~landscape] for t in tokens], (long, short))
            result = {}
            for key, value in wide.items():
                merged = value.new_empty(len(true_shape), *value.shape[1:])
                merged[landscape] = value
                merged[~landscape] = tall[key].transpose(1, 2)
                result[key] = merged
            return result

    def forward(self, img1: torch.Tensor, img2: torch.Tensor, true_shape1: torch.Tensor,
                true_shape2: torch.Tensor) -> SequencePredictions:
        """A pair of (B, 3, H, W) images in [-1, 1] and their true shapes (B, 2) -> T = 2 predictions:
        ref = view 1's points and confidence, tgt = view 2's points in view 1's frame and confidence."""
        feat1, pos1, feat2, pos2 = self.encode_pair(img1, img2, true_shape1, true_shape2)
        dec1, dec2 = self.decode(feat1, pos1, feat2, pos2)
        res1, res2 = self.head(1, dec1, true_shape1), self.head(2, dec2, true_shape2)
        return SequencePredictions(ref_points=res1["pts3d"][:, None], ref_conf=res1["conf"][:, None],
                                   tgt_points=res2["pts3d"][:, None], tgt_conf=res2["conf"][:, None])
