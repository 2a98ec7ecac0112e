"""VisSTG: video instance segmentation with a spatial-temporal graph (detection, segmentation and tracking
from one GNN). Importing the package registers the ``VisSTG`` meta-architecture."""

from .backbone import build_vis_stg_resnet_fpn_backbone  # registered in BACKBONE_REGISTRY
from .config import add_vis_stg_config
from .meta_arch import VisSTG

__all__ = ["add_vis_stg_config", "build_vis_stg_resnet_fpn_backbone", "VisSTG"]
