"""The config helpers can be called in any order, any number of times, without losing merged values."""

from detectron2.config import get_cfg

from projects.config import add_video_config
from vis_rgnn.config import add_rgnn_config
from vis_stg.config import add_vis_stg_config


def test_method_configs_add_the_video_keys_themselves_and_are_idempotent():
    cfg = get_cfg()
    add_vis_stg_config(cfg)  # no add_video_config first
    assert cfg.MODEL.NUM_CLASSES == -1 and cfg.TEST.VIDEO.MAX_TRACKS == 100
    cfg.MODEL.NUM_CLASSES = 7
    cfg.MODEL.VIS_STG.GRAPH.NUM_ITERS = 1
    add_rgnn_config(cfg)
    cfg.MODEL.RGNN.STAGE = 2
    add_video_config(cfg)
    add_vis_stg_config(cfg)
    add_rgnn_config(cfg)
    assert cfg.MODEL.NUM_CLASSES == 7 and cfg.MODEL.VIS_STG.GRAPH.NUM_ITERS == 1 and cfg.MODEL.RGNN.STAGE == 2
