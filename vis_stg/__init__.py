"""VisSTG: video instance segmentation with a spatial-temporal graph (detection, segmentation and tracking
from one GNN). Importing the package registers the ``VisSTG`` meta-architecture."""
from . import backbone  # registers build_vis_stg_resnet_fpn_backbone
from .config import add_vis_stg_config
from .meta_arch import VisSTG

__all__ = ["add_vis_stg_config", "VisSTG"]
