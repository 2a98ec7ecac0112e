"""Training edge set and labels of the edge classifier (§3.5, eq. (6)).

Eq. (6) is a BCE over E_prune: the cross-frame edges whose target node is *predicted* to be an instance
(background pruning) of the reference instance's class (class pruning). At test time these are the edges to
the detections; so that the classifier also sees at training what it must reject — false-positive detections,
detections of other objects of the same class — the training set is built the same way, from the heat maps the
detection head predicts on F̂_t (``TRACK.TRAIN_EDGE_SET``):

- ``"predicted"`` (the paper): target cells that are 3×3 local maxima of the predicted heat map with a score
  >= ``TRACK.TRAIN_SCORE_THRESH``, pruned by the *predicted* class (the argmax class at the cell);
- ``"gt"``: target cells that are GT centre cells of frame t, pruned by the GT classes (every GT object is
  supervised from the first iteration, but no false positive ever is);
- ``"gt+predicted"``: the union.

Label y_ij = 1 iff the target cell belongs to reference instance i's own object in frame t ("a positive
prediction indicates the two nodes belong to the same instance", §3.5), on *every* level: the object's centre
is projected onto the edge's level (the cell of that level containing its box centre) and the label is 1 at
that cell, and at cells within Chebyshev distance ``TRACK.TRAIN_MATCH_RADIUS`` of it that are not another
object's GT centre cell (a trained CenterNet peak sits on the centre cell or next to it). An object whose
size puts it on P4 in frame t may still peak on P3 (objects near the FCOS size boundaries, objects that grew
or shrank since frame k): that edge is the same instance, so it is a positive, not a negative. On the
object's own level the projected cell is its GT centre cell. Several GT centres may share one cell; each
reference whose object is centred there gets a positive, so no object loses its supervision.

Shapes: R reference instances, G GT objects of frame t, E edges of one level, K classes.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from .graph import GraphEdges
from .targets import CenterTargets

__all__ = ["EDGE_SETS", "predicted_cells", "projected_cells", "edge_set_and_labels"]

EDGE_SETS = ("predicted", "gt", "gt+predicted")


def predicted_cells(heatmap_logits: torch.Tensor, score_thresh: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """Detections of one level as CenterNet decodes them (3×3 max-pool NMS over each class map).

    ``heatmap_logits`` (B, K, H, W). Returns ``detected`` (B·H·W,) bool — the cell is a peak of some class with
    probability >= ``score_thresh`` — and ``pred_class`` (B·H·W,) the class of the best such peak."""
    prob = heatmap_logits.detach().sigmoid()
    peaks = prob * (prob == F.max_pool2d(prob, 3, stride=1, padding=1))
    score, pred_class = peaks.max(dim=1)  # (B, H, W)
    return (score >= score_thresh).flatten(), pred_class.flatten()


def _flat_cells(targets: CenterTargets, lvl: int, h: int, w: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """(G,) flat (B, H, W) index of every GT centre cell on level ``lvl`` (-1 elsewhere) and (G,) on-level mask."""
    on_level = targets.level == lvl
    flat = targets.batch_idx * (h * w) + targets.cells[:, 1] * w + targets.cells[:, 0]
    return torch.where(on_level, flat, torch.full_like(flat, -1)), on_level


def projected_cells(targets: CenterTargets, stride: float, h: int, w: int) -> torch.Tensor:
    """(G, 2) integer (x, y): the cell of an (h, w) level of ``stride`` that holds each GT box centre (clipped
    to the grid as :func:`.targets.assign_centers` clips; on the object's own level this is its centre cell)."""
    cells = (targets.centers / stride).floor().long()
    return torch.stack([cells[:, 0].clamp(0, w - 1), cells[:, 1].clamp(0, h - 1)], dim=1)


def edge_set_and_labels(
    edges: GraphEdges,
    lvl: int,
    shape: Tuple[int, int],
    stride: float,
    ref_ids: torch.Tensor,
    ref_classes: torch.Tensor,
    ref_batch: torch.Tensor,
    targets: CenterTargets,
    heatmap_logits: Optional[torch.Tensor],
    num_classes: int,
    edge_set: str = "predicted",
    score_thresh: float = 0.05,
    match_radius: int = 1,
    prune_class_mismatch: bool = True,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Which edges of one level enter eq. (6), and their labels.

    ``edges``: src (E,) reference index, dst (E,) flat (B, H, W) target cell of level ``lvl`` (``shape``
    (H, W), ``stride`` input pixels per cell); ``ref_ids`` / ``ref_classes`` / ``ref_batch`` (R,); ``targets``:
    the G GT objects of frame t; ``heatmap_logits`` (B, K, H, W) predicted on F̂_t (needed unless
    ``edge_set == "gt"``); ``num_classes`` K. Returns ``keep`` (E,) bool and ``labels`` (E,) float.
    """
    if edge_set not in EDGE_SETS:
        raise ValueError(f"TRACK.TRAIN_EDGE_SET must be one of {EDGE_SETS}, got {edge_set!r}")
    h, w = shape
    src, dst = edges.src, edges.dst
    gt_flat, on_level = _flat_cells(targets, lvl, h, w)

    # Background / class pruning by the GT centres (several objects may share a cell: test (cell, class) pairs).
    # GT nodes exist on their own level only (the "gt" edge set is the GT objects' nodes).
    is_gt_cell = torch.isin(dst, gt_flat[on_level])
    if prune_class_mismatch:
        gt_keys = gt_flat[on_level] * num_classes + targets.classes[on_level]
        keep_gt = torch.isin(dst * num_classes + ref_classes[src], gt_keys)
    else:
        keep_gt = is_gt_cell
    keep = torch.zeros_like(dst, dtype=torch.bool)
    if edge_set in ("gt", "gt+predicted"):
        keep |= keep_gt
    if edge_set in ("predicted", "gt+predicted"):
        if heatmap_logits is None:
            raise ValueError(f"TRACK.TRAIN_EDGE_SET {edge_set!r} needs the predicted heat maps")
        detected, pred_class = predicted_cells(heatmap_logits, score_thresh)
        keep_pred = detected[dst]
        if prune_class_mismatch:
            keep_pred &= pred_class[dst] == ref_classes[src]
        keep |= keep_pred

    # Labels by identity, on any level: the reference's own object in frame t (same id, same image; ids are
    # unique within a frame, so at most one) and its centre projected onto this level.
    same = (ref_ids[:, None] == targets.ids[None, :]) & (ref_ids[:, None] >= 0)
    same &= ref_batch[:, None] == targets.batch_idx[None, :]  # (R, G)
    same = torch.cat([same, same.new_zeros(len(ref_ids), 1)], dim=1)  # a sentinel column: G may be 0
    cells = torch.cat([projected_cells(targets, stride, h, w), targets.cells.new_zeros(1, 2)])
    has_obj, obj = same.max(dim=1)
    cx, cy = cells[obj, 0], cells[obj, 1]  # (R,) (the sentinel's (0, 0) where not has_obj)
    pix = dst % (h * w)
    dx = (pix % w - cx[src]).abs()
    dy = (pix // w - cy[src]).abs()
    own = has_obj[src] & (dst // (h * w) == ref_batch[src])
    at_centre = own & (dx == 0) & (dy == 0)
    # Near the centre, but not on another object's GT centre cell (that cell is the other object's node).
    near = own & (torch.maximum(dx, dy) <= match_radius) & ~is_gt_cell
    return keep, (at_centre | near).float()
