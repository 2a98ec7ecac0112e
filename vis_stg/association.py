"""Association of frame t's detections with the reference instances (§3.5) and its Table-2 alternatives, behind
one interface and a registry.

An association cue (``TRACK.ASSOCIATION``) is a registered :class:`Association`; :func:`build_association`
builds it from the config (``from_config``), the meta-architecture only calls the interface:

- :meth:`Association.training_losses`: its loss on a batch of (k, t) pairs (:class:`PairInputs`), λ3 of eq. (7)
  applied by the caller;
- :meth:`Association.frame_maps` / :meth:`Association.detection_cues`: what it reads from frame t's heads' input
  (per-level maps, then one value per detection slot, stored with the reference instances);
- :meth:`Association.pair_scores`: (N_ref, D) scores and candidate pairs of one frame (:class:`FrameInputs`),
  which :func:`.online_step.match` turns into a one-to-one matching.

Registered cues: ``edge`` (the paper, §3.5 eq. (6): :mod:`.edge_classifier`), ``embedding`` (Table 2,
MaskTrack R-CNN: :mod:`.embedding_head`), ``offset`` (Table 2, CenterTrack: :mod:`.offset_head`), ``box_iou``
(box IoU to the references, no learned cue: :mod:`.box_iou_association`; ``INFERENCE.BASELINE iou``).
A cue's parameters sit under :attr:`Association.module_name` on ``VisSTG``, the attribute they had before the
registry existed, so state-dict keys (and checkpoints) are unchanged.

Shapes: B images, L FPN levels (B, D, H_l, W_l), N reference instances, D detection slots (``valid`` mask).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple, Type

import torch
from detectron2.config import CfgNode
from fvcore.common.registry import Registry
from torch import nn

if TYPE_CHECKING:  # annotations only
    from .detection_head import Detections
    from .graph import GraphEdges
    from .state import ReferenceSet
    from .targets import CenterTargets

__all__ = ["ASSOCIATION_REGISTRY", "Association", "FrameInputs", "PairInputs", "association_class", "build_association"]

ASSOCIATION_REGISTRY = Registry("VIS_STG_ASSOCIATION")
ASSOCIATION_REGISTRY.__doc__ = """VisSTG association cues (§3.5, Table 2), looked up by their ``cue`` attribute
(the ``MODEL.VIS_STG.TRACK.ASSOCIATION`` value); built with ``cls(cfg, dim)`` (``@configurable``)."""


@dataclass
class PairInputs:
    """One training batch of (k, t) pairs as the association losses read it.

    ``heads_in``: per level (B, D, H, W) the heads' input on frame t (F̂_t); ``feats_k`` / ``feats_t``: F_k / F_t;
    ``edges``: the graph's final edges per level (None without the graph); ``targets_k`` / ``targets_t``: GT
    centres; ``shapes`` (H_l, W_l) and ``strides`` per level, ``level_strides`` the same as an (L,) tensor;
    ``heatmaps_t``: per level (B, K, H, W) heat-map logits predicted on F̂_t; ``fine_k`` / ``fine_t``: the mask
    branch's finer level on frames k / t (``MASK.IN_FEATURE``; None without)."""

    heads_in: List[torch.Tensor]
    feats_k: List[torch.Tensor]
    feats_t: List[torch.Tensor]
    edges: Optional[List[GraphEdges]]
    targets_k: CenterTargets
    targets_t: CenterTargets
    shapes: Sequence[Tuple[int, int]]
    strides: Sequence[int]
    level_strides: torch.Tensor
    heatmaps_t: List[torch.Tensor]
    fine_k: Optional[torch.Tensor] = None
    fine_t: Optional[torch.Tensor] = None


@dataclass
class FrameInputs:
    """One online frame: the N reference instances, the D detection slots, the graph's edges in the fixed online
    layout (None without the graph), the cue's ``frame_maps`` and ``detection_cues`` (None if it has none) and
    the (L,) level strides."""

    refs: ReferenceSet
    dets: Detections
    edges: Optional[List[GraphEdges]]
    maps: Optional[List[torch.Tensor]]
    cues: Optional[torch.Tensor]
    level_strides: torch.Tensor


class Association(nn.Module):
    """An association cue: how a detection of frame t is scored against the reference instances."""

    #: ``TRACK.ASSOCIATION`` value
    cue: str = ""
    #: attribute of ``VisSTG`` holding it, the prefix of its state-dict keys
    module_name: str = ""
    #: reads the graph's final edge features (§3.2), so the graph is built when this cue is trained
    reads_edges: bool = False

    def training_losses(self, pair: PairInputs) -> Dict[str, torch.Tensor]:
        """Unweighted losses on a training batch (none for a cue without parameters)."""
        return {}

    def frame_maps(
        self, heads_in: Sequence[torch.Tensor], prev_features: Optional[Sequence[torch.Tensor]]
    ) -> Optional[List[torch.Tensor]]:
        """Per-level maps this cue reads on frame t (from the heads' input and F_{t-1}), or None."""
        return None

    def detection_cues(self, maps: Optional[List[torch.Tensor]], dets: Detections) -> Optional[torch.Tensor]:
        """Per-slot values (D, ·) kept with the detections when they become reference instances, or None."""
        return None

    def pair_scores(self, frame: FrameInputs) -> Tuple[torch.Tensor, torch.Tensor]:
        """(N_ref, D) pair scores (higher = better) and the candidate mask (N_ref, D) of the pairs this cue
        accepts; class pruning and the one-to-one matching are :func:`.online_step.match`."""
        raise NotImplementedError


def association_class(cue: str) -> Type[Association]:
    """The registered :class:`Association` whose ``cue`` is ``cue`` (a clear error naming the config key)."""
    classes = {cls.cue: cls for _, cls in ASSOCIATION_REGISTRY}
    if cue not in classes:
        raise ValueError(f"VIS_STG.TRACK.ASSOCIATION must be one of {sorted(classes)}, got {cue!r}")
    return classes[cue]


def build_association(cue: str, cfg: CfgNode, dim: int) -> Association:
    """The association ``cue`` built from ``cfg`` for features of ``dim`` channels."""
    return association_class(cue)(cfg, dim)
