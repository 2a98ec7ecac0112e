"""The config of this repository's entry points: detectron2's defaults, the shared video keys and every method's keys.

The shared layer (``projects/``) knows no method; the methods (``vis_stg/``, ``vis_rgnn/``) build on it. Their
config is composed here, where detectron2 composes a project's config (``train_net.py``, ``demo/``, ``tools/``),
and importing this module registers both methods' meta-architectures and backbones for ``build_model``.
"""

from detectron2.config import CfgNode, get_cfg

from projects.config import add_video_config
from projects.engine.amp import add_amp_config
from projects.modeling import add_oracle_config
from vis_rgnn import add_rgnn_config
from vis_stg import add_vis_stg_config


def get_project_cfg() -> CfgNode:
    """detectron2's default config plus every key of this project (video data, both methods, the GT oracle,
    mixed precision): what ``train_net.py``, the demo, ``tools/`` and ``experiments/`` build their configs from."""
    cfg = get_cfg()
    add_video_config(cfg)
    add_vis_stg_config(cfg)
    add_rgnn_config(cfg)
    add_oracle_config(cfg)
    add_amp_config(cfg)
    return cfg
