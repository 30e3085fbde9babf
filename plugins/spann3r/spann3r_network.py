"""Spann3R (spann3r/model.py::Spann3R, method notes §B.4): DUSt3R run over a sequence, frame pair by
frame pair, with a spatial memory (spatial_memory.py) that carries the scene between steps.

Step k of a sequence of T frames predicts frames k (reference decoder) and k + 1 (target decoder),
both in camera 0's coordinates. Step 0 decodes the encoder features of frames 0 and 1; step k > 0
decodes frame k's memory read instead, queried with step k - 1's target key. Every step adds frame
k to the memory: key attn_head_1([encoder feature | last reference-decoder token]), value
value_encoder(pos_patch_embed(frame k's predicted points)) + key. The target key of the next query
is attn_head_2([encoder feature | last target-decoder token]) of frame k + 1.

State-dict keys are the original's (`dust3r.*` as DUSt3RNetwork, value_encoder, value_norm,
value_out, pos_patch_embed, norm_q / norm_k / norm_v, attn_head_1 / attn_head_2), so a released
spann3r.pth loads strictly (spann3r_checkpoint.py). The original builds its DUSt3R with
PatchEmbedDust3R and landscape_only=True whatever the DUSt3R file says; so does this class.

Images: (B, T, 3, H, W) in [-1, 1]; true_shape (B, T, 2) int64 (height, width), None: the tensor's.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn

from .croco_blocks import NORM_EPS, Block, PatchEmbed
from .dust3r_checkpoint import load_dust3r_state
from .dust3r_network import DUSt3RArchitecture, DUSt3RNetwork
from .predictions import SequencePredictions
from .spatial_memory import MemoryArchitecture, SpatialMemory

__all__ = ["MemoryArchitecture", "OfflineReconstruction", "OnlineReconstruction", "Spann3RNetwork", "view_score"]

Heads = Dict[str, torch.Tensor]  # {"pts3d": (B, H, W, 3), "conf": (B, H, W)}
Decoded = Tuple[List[torch.Tensor], List[torch.Tensor], Heads, Heads]  # dec1, dec2, res1, res2


@dataclasses.dataclass
class OnlineReconstruction:
    """One point map per frame of B sequences, reconstructed online (module doc).

    points (B, T, H, W, 3) camera-0 coordinates; conf (B, T, H, W); predictions: both decoders of
    every step; memory: the memory's counters at the end (SpatialMemory.stats).
    """

    points: torch.Tensor
    conf: torch.Tensor
    predictions: SequencePredictions
    memory: Dict[str, int]


@dataclasses.dataclass
class OfflineReconstruction:
    """A sequence reconstructed in the order offline_reconstruction chose.

    predictions: the steps in visiting order (frame order[k] is the k-th frame of per_frame());
    order: the frame indices in visiting order; points (1, T, H, W, 3) and conf (1, T, H, W) back
    in the input's frame order, in the coordinates of frame order[0]; pair_scores (T, T): the
    pairwise DUSt3R score of (reference i, target j) that chose the first pair.
    """

    predictions: SequencePredictions
    order: List[int]
    points: torch.Tensor
    conf: torch.Tensor
    pair_scores: torch.Tensor


def view_score(conf: torch.Tensor) -> torch.Tensor:
    """Mean of (conf - 1) / conf over all but the batch dimension: (B, H, W) -> (B,)."""
    return ((conf - 1) / conf).flatten(1).mean(dim=1)


def _stack(steps: List[Tuple[Heads, Heads]]) -> SequencePredictions:
    """Per-step (reference, target) head outputs -> SequencePredictions (B, T - 1, ...)."""
    return SequencePredictions(ref_points=torch.stack([ref["pts3d"] for ref, _ in steps], dim=1),
                               ref_conf=torch.stack([ref["conf"] for ref, _ in steps], dim=1),
                               tgt_points=torch.stack([tgt["pts3d"] for _, tgt in steps], dim=1),
                               tgt_conf=torch.stack([tgt["conf"] for _, tgt in steps], dim=1))


def _key_head(width: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, out_dim))


class Spann3RNetwork(nn.Module):
    """The Spann3R network (module doc). `architecture` is the DUSt3R part's (its patch_embed_cls and
    landscape_only are replaced as the original does); `memory` the memory's (None: the original's)."""

    def __init__(self, architecture: DUSt3RArchitecture, memory: Optional[MemoryArchitecture] = None) -> None:
        super().__init__()
        self.memory_architecture = memory = memory or MemoryArchitecture()
        self.dust3r = DUSt3RNetwork(dataclasses.replace(architecture, patch_embed_cls="PatchEmbedDust3R",
                                                        landscape_only=True))
        enc, dec = self.dust3r.enc_embed_dim, self.dust3r.dec_embed_dim
        value_dim = dec if memory.use_feat else enc
        rope = self.dust3r.rope if memory.mem_pos_enc else None
        self.value_encoder = nn.ModuleList(Block(value_dim, memory.value_num_heads, memory.value_mlp_ratio,
                                                 qkv_bias=True, rope=rope) for _ in range(memory.value_depth))
        self.value_norm = nn.LayerNorm(value_dim, eps=NORM_EPS)
        self.value_out = nn.Linear(value_dim, enc)
        if not memory.use_feat:
            self.pos_patch_embed = PatchEmbed(self.dust3r.patch_size, 3, enc)
            self.pos_patch_embed.load_state_dict(self.dust3r.patch_embed.state_dict())
        self.norm_q, self.norm_k, self.norm_v = nn.LayerNorm(enc), nn.LayerNorm(enc), nn.LayerNorm(enc)
        self.attn_head_1 = _key_head(enc + dec, enc)
        self.attn_head_2 = _key_head(enc + dec, enc)

    def load_dust3r_state_dict(self, state: Dict[str, torch.Tensor], source: str = "DUSt3R weights") -> None:
        """Load DUSt3R weights (original key layout, no `dust3r.` prefix) into the DUSt3R part and copy
        its patch embedding into pos_patch_embed, as the original's constructor does (DataFileError
        naming `source` if they do not fit)."""
        load_dust3r_state(self.dust3r, state, source)
        if not self.memory_architecture.use_feat:
            self.pos_patch_embed.load_state_dict(self.dust3r.patch_embed.state_dict())

    def new_memory(self, inference: bool) -> SpatialMemory:
        """An empty memory: thresholded reads and similarity checks (inference) or dropout (training)."""
        return SpatialMemory(self.norm_q, self.norm_k, self.norm_v, self.memory_architecture, training=not inference)

    # ------------------------------------------------------------------------------------------ one step

    def _decode(self, feat_fuse: torch.Tensor, pos1: torch.Tensor, shape1: torch.Tensor, feat2: torch.Tensor,
                pos2: torch.Tensor, shape2: torch.Tensor) -> Decoded:
        """Decoder outputs of both views and their heads' {"pts3d", "conf"}."""
        dec1, dec2 = self.dust3r.decode(feat_fuse, pos1, feat2, pos2)
        return dec1, dec2, self.dust3r.head(1, dec1, shape1), self.dust3r.head(2, dec2, shape2)

    def _encode_value(self, dec1: List[torch.Tensor], res1: Heads, pos1: torch.Tensor,
                      shape1: torch.Tensor) -> torch.Tensor:
        """The reference frame's memory value before adding its key: (B, P, enc_embed_dim)."""
        if self.memory_architecture.use_feat:
            x, pos = dec1[-1], pos1
        else:
            x, pos = self.pos_patch_embed(res1["pts3d"].permute(0, 3, 1, 2), shape1)
        for block in self.value_encoder:
            x = block(x, pos)
        return self.value_out(self.value_norm(x))

    def _remember(self, memory: SpatialMemory, inference: bool, feat1: torch.Tensor, dec1: List[torch.Tensor],
                  res1: Heads, pos1: torch.Tensor, shape1: torch.Tensor) -> None:
        """Add the reference frame of a step (key and key + value) to the memory."""
        key = self.attn_head_1(torch.cat((feat1, dec1[-1]), dim=-1))
        value = self._encode_value(dec1, res1, pos1, shape1) + key
        if inference:
            memory.add_checked(key, value)
        else:
            memory.add(key, value)

    def _query(self, feat2: torch.Tensor, dec2: List[torch.Tensor]) -> torch.Tensor:
        """The target frame's key, the next step's memory query: (B, P, enc_embed_dim)."""
        return self.attn_head_2(torch.cat((feat2, dec2[-1]), dim=-1))

    # ------------------------------------------------------------------------------------------ sequences

    @staticmethod
    def _inputs(images: torch.Tensor, true_shape: Optional[torch.Tensor]) -> torch.Tensor:
        """Check images (B, T, 3, H, W) with T >= 2; the true shapes (B, T, 2)."""
        if images.ndim != 5 or images.shape[2] != 3 or images.shape[1] < 2:
            raise ValueError(f"Spann3R expects images (B, T >= 2, 3, H, W), got {tuple(images.shape)}")
        if true_shape is None:
            size = torch.tensor(images.shape[-2:], device=images.device)
            return size.expand(*images.shape[:2], 2)
        if tuple(true_shape.shape) != (*images.shape[:2], 2):
            raise ValueError(f"Spann3R expects true_shape {(*images.shape[:2], 2)}, got {tuple(true_shape.shape)}")
        return true_shape

    def run(self, images: torch.Tensor, true_shape: Optional[torch.Tensor] = None, inference: bool = False,
            detach_every: int = 0) -> Tuple[SequencePredictions, SpatialMemory]:
        """The frames in order (module doc); inference: thresholded reads, similar frames skipped and
        the memory pruned; otherwise every frame is added and reads use dropout. detach_every = K > 0
        (ours): after every K steps the memory and the features carried to the next step are detached,
        so that gradients stop there (truncated back-propagation through the sequence).
        Returns the predictions of the T - 1 steps and the memory."""
        if detach_every < 0:
            raise ValueError(f"detach_every={detach_every}: expected >= 0 (0: never)")
        true_shape = self._inputs(images, true_shape)
        memory = self.new_memory(inference)
        feat1, pos1, feat2, pos2 = self.dust3r.encode_pair(images[:, 0], images[:, 1], true_shape[:, 0],
                                                           true_shape[:, 1])
        feat_fuse, query = feat1, None
        steps: List[Tuple[Heads, Heads]] = []
        for k in range(images.shape[1] - 1):
            if k > 0:
                feat1, pos1 = feat2, pos2
                feat2, pos2 = self.dust3r.encode_image(images[:, k + 1], true_shape[:, k + 1])
                feat_fuse = memory.read(query)
            dec1, dec2, res1, res2 = self._decode(feat_fuse, pos1, true_shape[:, k], feat2, pos2, true_shape[:, k + 1])
            self._remember(memory, inference, feat1, dec1, res1, pos1, true_shape[:, k])
            query = self._query(feat2, dec2)
            steps.append((res1, res2))
            if detach_every and (k + 1) % detach_every == 0:
                memory.detach()
                feat2, query = feat2.detach(), query.detach()
        return _stack(steps), memory

    def forward(self, images: torch.Tensor, true_shape: Optional[torch.Tensor] = None,
                detach_every: int = 0) -> SequencePredictions:
        """The predictions of every step (`run`): the inference path in eval mode (as the original)."""
        return self.run(images, true_shape, inference=not self.training, detach_every=detach_every)[0]

    @torch.no_grad()
    def online(self, images: torch.Tensor, true_shape: Optional[torch.Tensor] = None) -> OnlineReconstruction:
        """Inference over the frames in order, without gradients: one point map and confidence per
        frame (frame k < T - 1 from step k's reference decoder, the last from the last target)."""
        predictions, memory = self.run(images, true_shape, inference=True)
        points, conf = predictions.per_frame()
        return OnlineReconstruction(points, conf, predictions, memory.stats())

    # ------------------------------------------------------------------------------------------ offline

    @torch.no_grad()
    def pair_scores(self, images: torch.Tensor, true_shape: torch.Tensor, pair_batch: int = 8) -> torch.Tensor:
        """Pairwise DUSt3R on the complete graph of one sequence (images (T, 3, H, W), true_shape (T, 2)):
        (T, T) view_score(reference conf) + view_score(target conf) of the pair (i, j), 0 on the diagonal."""
        count = images.shape[0]
        pairs = [(i, j) for i in range(count) for j in range(count) if i != j]
        scores = images.new_zeros(count, count, dtype=torch.float32)
        for start in range(0, len(pairs), pair_batch):
            chunk = pairs[start:start + pair_batch]
            first, second = (torch.tensor(index, device=images.device) for index in zip(*chunk))
            pred = self.dust3r(images[first], images[second], true_shape[first], true_shape[second])
            scores[first, second] = (view_score(pred.ref_conf[:, 0]) + view_score(pred.tgt_conf[:, 0])).float()
        return scores

    @torch.no_grad()
    def offline_reconstruction(self, images: torch.Tensor, true_shape: Optional[torch.Tensor] = None,
                               pair_batch: int = 8) -> OfflineReconstruction:
        """The original's offline mode for ONE sequence (B = 1): start from the pair with the best
        pairwise DUSt3R score (pair_scores), then repeatedly add the remaining frame whose decoding
        against the memory read has the best view_score sum, updating the memory as at inference."""
        true_shape = self._inputs(images, true_shape)
        if images.shape[0] != 1:
            raise ValueError(f"offline_reconstruction takes one sequence (B = 1), got B = {images.shape[0]}")
        frames, shapes = images[0, :, None], true_shape[0, :, None]  # (T, 1, ...): frame k is a batch of one
        scores = self.pair_scores(images[0], true_shape[0], pair_batch)
        order = list(divmod(int(scores.argmax()), frames.shape[0]))
        todo = [k for k in range(frames.shape[0]) if k not in order]
        memory = self.new_memory(inference=True)
        shape1, shape2 = shapes[order[0]], shapes[order[1]]
        feat1, pos1, feat2, pos2 = self.dust3r.encode_pair(frames[order[0]], frames[order[1]], shape1, shape2)
        dec1, dec2, res1, res2 = self._decode(feat1, pos1, shape1, feat2, pos2, shape2)
        steps: List[Tuple[Heads, Heads]] = []
        while True:
            self._remember(memory, True, feat1, dec1, res1, pos1, shape1)
            query = self._query(feat2, dec2)
            steps.append((res1, res2))
            if not todo:
                break
            feat1, pos1, shape1 = feat2, pos2, shape2
            feat_fuse = memory.read(query)
            best = None
            for k in todo:
                candidate_feat, candidate_pos = self.dust3r.encode_image(frames[k], shapes[k])
                decoded = self._decode(feat_fuse, pos1, shape1, candidate_feat, candidate_pos, shapes[k])
                score = float(view_score(decoded[2]["conf"]) + view_score(decoded[3]["conf"]))
                if best is None or score > best[0]:
                    best = (score, k, candidate_feat, candidate_pos, decoded)
            _, chosen, feat2, pos2, (dec1, dec2, res1, res2) = best
            shape2 = shapes[chosen]
            todo.remove(chosen)
            order.append(chosen)
        predictions = _stack(steps)
        points, conf = predictions.per_frame()
        inverse = torch.tensor(order, device=images.device).argsort()
        return OfflineReconstruction(predictions, order, points[:, inverse], conf[:, inverse], scores)
