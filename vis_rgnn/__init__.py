"""RGNN-VIS: Learning Video Instance Segmentation with Recurrent Graph Neural Networks (Johnander et al.)."""
from .config import add_rgnn_config
from .meta_arch import RGNNVIS  # registers the meta-architecture

__all__ = ["add_rgnn_config", "RGNNVIS"]
