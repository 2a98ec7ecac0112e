"""Ground-truth assignment to FPN levels and centre cells (§3.3, §4.2).

Every GT object goes to one FPN level by its size and to the cell of that level containing its box centre. The
level follows FCOS/CondInst (``LEVEL_ASSIGNMENT "fcos"``): an object goes to the level whose range
(``SIZES_OF_INTEREST``, FCOS's 64/128/256/512) holds its maximum regression distance max(l, t, r, b) seen from
its centre, i.e. max(w, h) / 2; ``"max_side"`` compares max(w, h) itself with the ranges (one level coarser). That
cell is the object's node at frame t: the
positive of the CenterNet heat map, the location whose dynamic kernel must segment it (§3.4) and the target
node of its graph edges (§3.5). The heat map follows CenterNet: a gaussian per object whose radius comes from
the box size (CornerNet's min-overlap rule).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence, Tuple

import torch
from detectron2.structures import Instances

__all__ = ["CenterTargets", "assign_centers", "gaussian_radius", "draw_heatmaps", "gather_at_cells", "expand_positives"]


#: Multiplier of max(w, h) compared with SIZES_OF_INTEREST: FCOS's max regression distance from the box centre
#: is half the longer side.
LEVEL_MEASURE = {"fcos": 0.5, "max_side": 1.0}


@dataclass
class CenterTargets:
    """The G ground-truth objects of a batch, each at its level and centre cell.

    ``batch_idx`` (G,) image index; ``gt_idx`` (G,) index in that image's Instances; ``level`` (G,);
    ``cells`` (G, 2) integer (x, y) on the level grid; ``offsets`` (G, 2) sub-cell centre offset in [0, 1);
    ``sizes`` (G, 2) box (w, h) in cells of the level; ``classes`` (G,); ``ids`` (G,) track ids (-1 if unknown);
    ``heatmaps``: one (B, K, H_l, W_l) tensor per level; ``centers`` (G, 2) box centre (x, y) in input pixels
    (to find an object's cell on a level other than its own, :mod:`.edge_targets`).
    """

    batch_idx: torch.Tensor
    gt_idx: torch.Tensor
    level: torch.Tensor
    cells: torch.Tensor
    offsets: torch.Tensor
    sizes: torch.Tensor
    classes: torch.Tensor
    ids: torch.Tensor
    heatmaps: List[torch.Tensor]
    centers: torch.Tensor

    def __len__(self) -> int:
        return self.batch_idx.numel()

    def flat_cells(self, shapes: Sequence[Tuple[int, int]]) -> torch.Tensor:
        """(G,) index of each centre cell in its level flattened as (B, H_l, W_l)."""
        hw = torch.tensor([h * w for h, w in shapes], device=self.level.device)
        width = torch.tensor([w for _, w in shapes], device=self.level.device)
        return self.batch_idx * hw[self.level] + self.cells[:, 1] * width[self.level] + self.cells[:, 0]


def gaussian_radius(height: torch.Tensor, width: torch.Tensor, min_overlap: float) -> torch.Tensor:
    """Largest centre displacement (cells) keeping IoU >= ``min_overlap`` with the GT box (CornerNet §3.2 rule,
    in the form CenterNet uses). Element-wise over (G,) box heights/widths."""
    hw_sum, area = height + width, height * width
    b1, c1 = hw_sum, area * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + torch.sqrt((b1**2 - 4 * c1).clamp(min=0))) / 2
    b2, c2 = 2 * hw_sum, (1 - min_overlap) * area
    r2 = (b2 + torch.sqrt((b2**2 - 16 * c2).clamp(min=0))) / 2
    a3, b3, c3 = 4 * min_overlap, -2 * min_overlap * hw_sum, (min_overlap - 1) * area
    r3 = (b3 + torch.sqrt((b3**2 - 4 * a3 * c3).clamp(min=0))) / 2
    return torch.minimum(torch.minimum(r1, r2), r3)


def draw_heatmaps(
    targets_cells: torch.Tensor,
    radius: torch.Tensor,
    slots: torch.Tensor,
    num_slots: int,
    height: int,
    width: int,
) -> torch.Tensor:
    """Max-composite one gaussian per object into (num_slots, H, W) (slot = image * K + class).

    ``targets_cells`` (G, 2) integer (x, y); ``radius`` (G,) integer radius; sigma = (2r + 1) / 6 (CenterNet).
    """
    heat = torch.zeros(num_slots, height, width, device=targets_cells.device)
    if targets_cells.numel() == 0:
        return heat
    ys = torch.arange(height, device=heat.device, dtype=torch.float32).view(1, -1, 1)
    xs = torch.arange(width, device=heat.device, dtype=torch.float32).view(1, 1, -1)
    cx = targets_cells[:, 0].float().view(-1, 1, 1)
    cy = targets_cells[:, 1].float().view(-1, 1, 1)
    r = radius.float().view(-1, 1, 1)
    sigma = (2 * r + 1) / 6
    dx, dy = xs - cx, ys - cy
    g = torch.exp(-(dx**2 + dy**2) / (2 * sigma**2))
    g = g * ((dx.abs() <= r) & (dy.abs() <= r))
    return heat.scatter_reduce_(0, slots.view(-1, 1, 1).expand_as(g), g, reduce="amax", include_self=True)


@torch.no_grad()
def assign_centers(
    instances: Sequence[Instances],
    shapes: Sequence[Tuple[int, int]],
    strides: Sequence[int],
    sizes_of_interest: Sequence[float],
    num_classes: int,
    min_overlap: float = 0.7,
    level_assignment: str = "fcos",
) -> CenterTargets:
    """Assign the GT boxes of each image to a level and centre cell and draw the CenterNet heat maps.

    ``instances``: per image, with ``gt_boxes`` (XYXY, input pixels), ``gt_classes`` and optionally ``gt_ids``.
    ``shapes``: (H_l, W_l) per level; ``strides``: per level; ``sizes_of_interest``: len(levels) - 1 boundaries;
    ``level_assignment``: "fcos" (max(w, h) / 2 against the boundaries) or "max_side" (max(w, h)).
    """
    if level_assignment not in LEVEL_MEASURE:
        raise ValueError(f"VIS_STG.LEVEL_ASSIGNMENT must be one of {sorted(LEVEL_MEASURE)}, got {level_assignment!r}")
    if len(sizes_of_interest) != len(strides) - 1:
        raise ValueError(
            f"need {len(strides) - 1} SIZES_OF_INTEREST for {len(strides)} levels, got {list(sizes_of_interest)}"
        )
    device = instances[0].gt_boxes.device
    boxes = torch.cat([x.gt_boxes.tensor for x in instances]).float()
    classes = torch.cat([x.gt_classes for x in instances]).long()
    ids = torch.cat(
        [x.gt_ids if x.has("gt_ids") else torch.full((len(x),), -1, device=device) for x in instances]
    ).long()
    counts = [len(x) for x in instances]
    batch_idx = torch.repeat_interleave(
        torch.arange(len(instances), device=device), torch.tensor(counts, device=device)
    )
    gt_idx = torch.cat([torch.arange(n, device=device) for n in counts])

    wh = (boxes[:, 2:] - boxes[:, :2]).clamp(min=0)
    bounds = torch.tensor(list(sizes_of_interest), device=device, dtype=torch.float32)
    level = torch.bucketize(wh.max(dim=1).values * LEVEL_MEASURE[level_assignment], bounds, right=True)

    stride = torch.tensor(list(strides), device=device, dtype=torch.float32)[level]
    grid_w = torch.tensor([w for _, w in shapes], device=device)[level]
    grid_h = torch.tensor([h for h, _ in shapes], device=device)[level]
    centers = (boxes[:, :2] + boxes[:, 2:]) / 2
    center = centers / stride[:, None]
    cells = center.floor().long()
    cells[:, 0] = torch.minimum(cells[:, 0].clamp(min=0), grid_w - 1)
    cells[:, 1] = torch.minimum(cells[:, 1].clamp(min=0), grid_h - 1)
    offsets = center - cells.float()
    sizes = wh / stride[:, None]

    radius = gaussian_radius(sizes[:, 1].ceil(), sizes[:, 0].ceil(), min_overlap).floor().clamp(min=0).long()
    heatmaps = []
    for lvl, (h, w) in enumerate(shapes):
        sel = level == lvl
        heat = draw_heatmaps(
            cells[sel], radius[sel], batch_idx[sel] * num_classes + classes[sel], len(instances) * num_classes, h, w
        )
        heatmaps.append(heat.view(len(instances), num_classes, h, w))
    return CenterTargets(batch_idx, gt_idx, level, cells, offsets, sizes, classes, ids, heatmaps, centers)


def gather_at_cells(
    maps: Sequence[torch.Tensor], level: torch.Tensor, batch_idx: torch.Tensor, cells: torch.Tensor
) -> torch.Tensor:
    """Read per-level dense maps (B, C, H_l, W_l) at G cells: ``level`` (G,), ``batch_idx`` (G,), ``cells``
    (G, 2) integer (x, y). Returns (G, C) in the order of the cells (differentiable)."""
    out = maps[0].new_zeros(level.numel(), maps[0].shape[1])
    for lvl, m in enumerate(maps):
        sel = torch.nonzero(level == lvl).flatten()
        if sel.numel():
            out = out.index_copy(0, sel, m[batch_idx[sel], :, cells[sel, 1], cells[sel, 0]])
    return out


def expand_positives(
    targets: CenterTargets, radius: int, shapes: Sequence[Tuple[int, int]]
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Cells within Chebyshev ``radius`` of each centre cell (clipped to the level grid).

    Returns (P,) index into ``targets`` and (P, 2) integer (x, y) cells; radius 0 gives the centres.
    """
    idx = torch.arange(len(targets), device=targets.cells.device)
    if radius <= 0:
        return idx, targets.cells
    d = torch.arange(-radius, radius + 1, device=idx.device)
    dy, dx = torch.meshgrid(d, d, indexing="ij")
    cells = targets.cells[:, None, :] + torch.stack([dx.flatten(), dy.flatten()], dim=1)[None]  # (G, K, 2)
    grid_w = torch.tensor([w for _, w in shapes], device=idx.device)[targets.level][:, None]
    grid_h = torch.tensor([h for h, _ in shapes], device=idx.device)[targets.level][:, None]
    valid = (cells[..., 0] >= 0) & (cells[..., 0] < grid_w) & (cells[..., 1] >= 0) & (cells[..., 1] < grid_h)
    return idx[:, None].expand_as(valid)[valid], cells[valid]
