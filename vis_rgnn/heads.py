"""Output heads of RGNN-VIS: association logits (§3.1), track scoring (§3.2) and mask re-weighting (§3.2,
App. A.2 Table 3 "Mask weighting module").

Shapes: B videos, N track slots, M detection slots (padded), D embedding dim, K+1 classes (background last),
P tracks holding a detection this frame, (H, W) their mask grid.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .box_ops import box_grid_masks, crop_masks

__all__ = ["AssociationHeads", "TrackScoringHead", "MaskReweighting", "mask_logits", "exclusive_masks"]


class AssociationHeads(nn.Module):
    """Logistic models on the final GNN embeddings: match logit per edge e_ij, new-track logit per n_j.
    Linear(D, 1) each, bias initialised to ``bias_init`` (-2.1, p = 0.11). With the default ``INIT_THRESHOLD``
    -2.0 most detections of the first stage-2 iterations still start a track (measured: untrained new-track
    logits -1.97 +- 0.04); the new-track loss pushes false ones below the threshold within ~100 iterations."""

    def __init__(self, dim: int, bias_init: float = -2.1):
        super().__init__()
        self.match, self.new_track = nn.Linear(dim, 1), nn.Linear(dim, 1)
        for layer in (self.match, self.new_track):
            nn.init.constant_(layer.bias, bias_init)

    def forward(self, edges: torch.Tensor, empty_edges: torch.Tensor):
        """edges (B, N, M, D), empty_edges (B, M, D) -> match logits (B, N, M), new-track logits (B, M)."""
        return self.match(edges).squeeze(-1), self.new_track(empty_edges).squeeze(-1)


class TrackScoringHead(nn.Module):
    """Multinomial logistic model on the gated track embedding: logits over K classes + background (§3.2).

    ``evidence`` (our addition, ``MODEL.RGNN.SCORING_EVIDENCE``): the logits are added to the mean class
    log-probability of the detections the track has held, and the linear layer starts at zero, so an untrained
    head scores a track exactly like the averaged detections and training learns the correction. Without it
    (the paper's head), a few hundred CPU iterations only learn the class prior (vis_rgnn/README.md, Results).
    """

    def __init__(self, dim: int, num_classes: int, evidence: bool = False):
        super().__init__()
        self.cls = nn.Linear(dim, num_classes + 1)
        self.evidence = evidence
        if evidence:
            nn.init.zeros_(self.cls.weight)
            nn.init.zeros_(self.cls.bias)

    def forward(self, h: torch.Tensor, mean_log_probs: Optional[torch.Tensor] = None) -> torch.Tensor:
        """h (..., D), mean_log_probs (..., K+1) -> logits (..., K+1); background last."""
        logits = self.cls(h)
        if self.evidence:
            if mean_log_probs is None:
                raise ValueError("TrackScoringHead(evidence=True) needs the tracks' mean class log-probabilities")
            logits = logits + mean_log_probs
        return logits


class MaskReweighting(nn.Module):
    """Re-weights a track's detection mask given its embedding (§3.2, Table 3): Linear(D, 16) + ReLU broadcast
    over the mask, concatenated with the detection mask and its box mask (18 channels), Conv3x3(18, 16) + ReLU +
    Conv3x3(16, 1). Output: per-pixel logits; :func:`exclusive_masks` then gives each pixel to at most one
    track.

    ``residual`` (``MODEL.RGNN.MASK_RESIDUAL``, off in the paper configs, on in the synthetic ones): the paper
    "reweights the segmentation scores", so
    the CNN's output is added to the detection mask's logit and its last layer starts at zero -- an untrained
    module returns the segmenter's mask. Without it the CNN predicts the logits from scratch; on the synthetic
    data a 500-iteration stage-2 run then drove every mask logit below zero (Lovász hinge rising 2.4 -> 2.9,
    empty masks) while the same weights with the segmenter's masks did not (figures: vis_rgnn/README.md).

    ``inputs`` "release" (``MODEL.RGNN.MASK_REWEIGHT_INPUT``, the release's ``TrackModule.get_segscores`` with
    ``use_raw_plus_box_segscore=False``): ``masks`` are the detector's release score maps (raw logits +
    ``box_weight`` x box map, ``DETECTION_MASK_SCORES release``); the two map channels are the uncropped raw logit
    map and the 0/1 ``box_to_seg`` map (:func:`~vis_rgnn.box_ops.box_grid_masks`). Channel layout of ``conv1``
    here: [embedding (E), map, box]; the release's is [map, box, embedding].
    """

    def __init__(
        self,
        dim: int,
        embed_channels: int = 16,
        hidden_channels: int = 16,
        residual: bool = True,
        inputs: str = "ours",
        box_weight: float = 10.0,
    ):
        super().__init__()
        if inputs not in ("ours", "release"):
            raise ValueError(f"MODEL.RGNN.MASK_REWEIGHT_INPUT must be 'ours' or 'release', got {inputs!r}")
        if inputs == "release" and residual:
            raise ValueError("MODEL.RGNN.MASK_REWEIGHT_INPUT 'release' predicts the logits itself: MASK_RESIDUAL False")
        self.inputs, self.box_weight = inputs, box_weight
        self.embed = nn.Linear(dim, embed_channels)
        self.conv1 = nn.Conv2d(embed_channels + 2, hidden_channels, 3, padding=1)
        self.conv2 = nn.Conv2d(hidden_channels, 1, 3, padding=1)
        self.residual = residual
        if residual:
            nn.init.zeros_(self.conv2.weight)
            nn.init.zeros_(self.conv2.bias)
        if inputs == "release":
            self._init_as_detection_scores(embed_channels)

    @torch.no_grad()
    def _init_as_detection_scores(self, e: int) -> None:
        """Our initialisation of the release-input CNN (the runfile uses PyTorch's default and trains 150 epochs;
        converted weights replace it): an untrained module returns the detection's score map s = raw + box_weight
        x box (hidden channels 0 / 1 = ReLU(s) / ReLU(-s) from the centre taps, output their difference; the other
        hidden channels start with zero output weight), so its masks are the segmenter's (s > 10) until trained."""
        if self.conv1.out_channels < 2:
            raise ValueError("MASK_REWEIGHT_INPUT 'release' needs MASK_HIDDEN_CHANNELS >= 2")
        self.conv1.weight[:2].zero_()
        self.conv1.bias[:2].zero_()
        self.conv2.weight.zero_()
        self.conv2.bias.zero_()
        for sign, ch in ((1.0, 0), (-1.0, 1)):
            self.conv1.weight[ch, e, 1, 1] = sign
            self.conv1.weight[ch, e + 1, 1, 1] = sign * self.box_weight
            self.conv2.weight[0, ch, 1, 1] = sign

    def map_inputs(self, masks: torch.Tensor, boxes: torch.Tensor, stride: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """The two map channels from the detections' masks (P, H, W) and boxes (P, 4) XYXY input pixels on a grid
        of ``stride``: ours (masks, box-cropped ones); release (masks - box_weight x box map, box map)."""
        if self.inputs == "release":
            box = box_grid_masks(boxes, tuple(masks.shape[-2:]), stride)
            return masks - self.box_weight * box, box
        return masks, crop_masks(torch.ones_like(masks), boxes / stride)

    def from_detections(self, h: torch.Tensor, masks: torch.Tensor, boxes: torch.Tensor, stride: int) -> torch.Tensor:
        """h: (P, D); masks: (P, H, W) the held detections' masks (ours: in [0, 1]; release: score maps); boxes:
        (P, 4) XYXY input pixels; ``stride`` of the mask grid. Returns logits (P, H, W)."""
        return self(h, *self.map_inputs(masks, boxes, stride))

    def forward(self, h: torch.Tensor, masks: torch.Tensor, box_masks: torch.Tensor) -> torch.Tensor:
        """h: (P, D); masks, box_masks: (P, H, W) the two map channels (:meth:`map_inputs`). Returns logits
        (P, H, W).

        The first convolution is linear and its 16 embedding channels are constant over the map, so it is
        computed as a 2-channel convolution of [mask, box mask] plus the embedding's response, which is the same
        at every pixel except on the border rows / columns, where the zero padding drops the kernel taps that
        fall outside (subtracted there); at inference the maps are updated in place, channels-last. Same result
        as the plain convolution of the broadcast 18-channel input (``tests/rgnn_references.py``, the oracle of
        ``tests/test_vis_rgnn_graph.py``), ~6x fewer multiply-adds. Kept because it saves 5.3-5.7 % of the R50
        paper-config online step on one CPU thread (16 masks on the 120x216 grid: 32-36 vs 151-166 ms, step
        2.2-2.4 s; ``OMP_NUM_THREADS=1 python -m benchmarks.bench_vis_rgnn --threads 1``, table 3)."""
        p, hh, ww = masks.shape
        emb = F.relu(self.embed(h))  # (P, E)
        e = emb.shape[1]
        weight = self.conv1.weight  # (C, E + 2, 3, 3)
        inplace = not torch.is_grad_enabled()  # inference: no autograd, update the (P, C, H, W) map in place
        x = torch.stack([masks, box_masks], dim=1)
        if inplace:  # channels-last maps: ~2x faster small-channel convolutions on CPU (oneDNN)
            x = x.contiguous(memory_format=torch.channels_last)
        x = F.conv2d(x, weight[:, e:], self.conv1.bias, padding=1)
        taps = torch.einsum("pe,ceij->pcij", emb, weight[:, :e])  # (P, C, 3, 3) embedding response per tap
        cols = torch.ones(3, ww, dtype=x.dtype, device=x.device)
        cols[0, 0] = 0  # tap column j = 0 reads x - 1: outside at x = 0
        cols[2, ww - 1] = 0  # j = 2 reads x + 1: outside at x = W - 1
        per_row = torch.einsum("pcij,jx->pcix", taps, cols)  # (P, C, 3, W): each tap row's response per column
        full = per_row.sum(dim=2)[:, :, None, :]
        x = x.add_(full) if inplace else x + full
        x[:, :, 0] -= per_row[:, :, 0]  # tap row i = 0 reads y - 1: outside at y = 0
        x[:, :, hh - 1] -= per_row[:, :, 2]  # i = 2 reads y + 1: outside at y = H - 1
        out = self.conv2(x.relu_() if inplace else F.relu(x))[:, 0]
        if self.residual:
            out = out + mask_logits(masks)
        return out


def mask_logits(masks: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """Mask probabilities in [0, 1] -> finite logits (clamped to [eps, 1 - eps]); any shape."""
    return torch.logit(masks.clamp(eps, 1 - eps))


def exclusive_masks(logits: torch.Tensor) -> torch.Tensor:
    """(P, H, W) logits -> bool masks where each pixel goes to the highest-logit track (the first one on ties) if
    that logit is > 0. One max-reduction with indices, then a comparison per track."""
    if logits.shape[0] == 0:
        return logits > 0
    best, owner = logits.max(dim=0)
    tracks = torch.arange(logits.shape[0], device=logits.device)[:, None, None]
    return (owner[None] == tracks) & (best > 0)[None]
