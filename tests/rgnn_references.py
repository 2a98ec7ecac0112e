"""Reference implementations of RGNN-VIS operations that only serve as test oracles and benchmark baselines.

- :class:`ScatterLayout` / :func:`scatter_gnn`: the GNN of ``vis_rgnn.graph`` (§3.1, eq. 1) on flat lists of the
  active tracks, detections and edges, its sums reduced with ``projects.graph.scatter_sum`` (data-dependent sizes,
  host syncs). ``TrackDetectionGNN`` (fixed-size padded tensors with masks, App. A.3) must equal it on the active
  elements; ``benchmarks/bench_vis_rgnn.py`` times it next to the library's form.
- :func:`fast_nms`: compact class-agnostic Fast NMS (YOLACT §3.4) returning the kept indices, the rule that
  ``vis_rgnn.box_ops.fast_nms_keep`` implements on a padded set.
- :func:`plain_mask_reweighting`: the mask weighting module of Table 3 as written (Conv3x3 over the broadcast
  embedding concatenated with the two map channels), which ``MaskReweighting.forward`` computes with fewer
  multiply-adds.
"""

from __future__ import annotations

from typing import Dict

import torch
import torch.nn.functional as F
from torchvision.ops import box_iou

from projects.graph import scatter_sum
from vis_rgnn.graph import TrackDetectionGNN
from vis_rgnn.heads import MaskReweighting, mask_logits


class ScatterLayout:
    """Flat lists of active elements: tracks (Nt, F), detections (Nd, F), edges (E, F), empty track (B, F). Edges
    are all active track x detection pairs of the same video. Same methods as ``vis_rgnn.graph.DenseLayout``."""

    def __init__(self, track_mask: torch.Tensor, det_mask: torch.Tensor):
        self.track_mask, self.det_mask = track_mask, det_mask
        self.edge_mask = track_mask[:, :, None] & det_mask[:, None, :]
        self.batch_size = track_mask.shape[0]
        self.n_tracks, self.n_dets = int(track_mask.sum()), int(det_mask.sum())
        track_flat = torch.full(track_mask.shape, -1, dtype=torch.long, device=track_mask.device)
        track_flat[track_mask] = torch.arange(self.n_tracks, device=track_mask.device)
        det_flat = torch.full(det_mask.shape, -1, dtype=torch.long, device=det_mask.device)
        det_flat[det_mask] = torch.arange(self.n_dets, device=det_mask.device)
        b, i, j = self.edge_mask.nonzero(as_tuple=True)
        self.edge_track, self.edge_det = track_flat[b, i], det_flat[b, j]
        self.det_batch = det_mask.nonzero(as_tuple=True)[0]

    def track_to_edge(self, t: torch.Tensor) -> torch.Tensor:
        return t[self.edge_track]

    def det_to_edge(self, d: torch.Tensor) -> torch.Tensor:
        return d[self.edge_det]

    def empty_to_det(self, t0: torch.Tensor) -> torch.Tensor:
        return t0[self.det_batch]

    def sum_to_tracks(self, msg: torch.Tensor) -> torch.Tensor:
        return scatter_sum(msg, self.edge_track, self.n_tracks)

    def sum_to_dets(self, msg: torch.Tensor) -> torch.Tensor:
        return scatter_sum(msg, self.edge_det, self.n_dets)

    def sum_to_empty(self, msg: torch.Tensor) -> torch.Tensor:
        return scatter_sum(msg, self.det_batch, self.batch_size)


def _padded(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Flat rows of the active elements -> padded tensor of ``mask``'s shape, zero rows elsewhere."""
    out = x.new_zeros(tuple(mask.shape) + tuple(x.shape[1:]))
    out[mask] = x
    return out


def scatter_gnn(
    gnn: TrackDetectionGNN,
    tracks: torch.Tensor,
    dets: torch.Tensor,
    edges: torch.Tensor,
    empty_edges: torch.Tensor,
    track_mask: torch.Tensor,
    det_mask: torch.Tensor,
    empty: torch.Tensor,
) -> Dict[str, torch.Tensor]:
    """``gnn(...)`` on the edge-list layout: same inputs and outputs (padded; inactive rows zero)."""
    layout = ScatterLayout(track_mask, det_mask)
    t0 = empty
    t = tracks[track_mask]
    g = {
        "tracks": t,
        "dets": dets[det_mask],
        "edges": torch.cat([edges[layout.edge_mask], layout.track_to_edge(t)], dim=-1),
        "empty_edges": torch.cat([empty_edges[det_mask], layout.empty_to_det(t0)], dim=-1),
        "empty": t0,
    }
    g = gnn.propagate(g, layout)
    out = {
        "tracks": _padded(g["tracks"], track_mask),
        "edges": _padded(g["edges"], layout.edge_mask),
        "empty_edges": _padded(g["empty_edges"], det_mask),
        "dets": _padded(g["dets"], det_mask),
        "empty": g["empty"],
    }
    return out


def fast_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Compact Fast NMS: the indices of the kept boxes by decreasing score. A box is dropped when its IoU with any
    higher-scoring box (kept or not) exceeds ``iou_threshold``. boxes: (N, 4) XYXY; scores: (N,)."""
    order = scores.argsort(descending=True)
    if len(order) == 0:
        return order
    iou = box_iou(boxes[order], boxes[order]).triu_(diagonal=1)
    return order[iou.max(dim=0).values <= iou_threshold]


def plain_mask_reweighting(
    module: MaskReweighting, h: torch.Tensor, masks: torch.Tensor, box_masks: torch.Tensor
) -> torch.Tensor:
    """``module(h, masks, box_masks)`` as Table 3 writes it: ReLU(Linear(h)) broadcast over the (H, W) map,
    concatenated with the two map channels, Conv3x3 + ReLU + Conv3x3 (zero padding). Returns logits (P, H, W)."""
    p, hh, ww = masks.shape
    emb = F.relu(module.embed(h))[:, :, None, None].expand(-1, -1, hh, ww)
    x = torch.cat([emb, masks[:, None], box_masks[:, None]], dim=1)
    out = module.conv2(F.relu(module.conv1(x)))[:, 0]
    return out + mask_logits(masks) if module.residual else out
