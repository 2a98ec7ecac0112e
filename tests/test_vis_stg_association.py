"""The association cues behind one interface and a registry (vis_stg/association.py): built from the config,
checkpoints of the layout before the registry keep loading, and the box-IoU cue links like the baseline."""

import json
import os

import pytest
import torch
from detectron2.modeling import build_model

from tests.vis_stg_fixtures import H, W, _batch, _frame, tiny_cfg
from vis_stg.association import ASSOCIATION_REGISTRY, FrameInputs, association_class, build_association
from vis_stg.box_iou_association import BoxIoUAssociation
from vis_stg.edge_classifier import EdgeClassifier
from vis_stg.embedding_head import EmbeddingHead
from vis_stg.offset_head import OffsetHead

torch.set_num_threads(1)

# Written by the implementation before the registry (commit a3a041c): per variant, the state dict's keys in order,
# their shapes and the sum of each tensor right after ``torch.manual_seed(0); build_model(tiny_cfg(...))``.
LAYOUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "vis_stg_state_dict_layout.json")


def test_every_cue_is_registered_and_built_from_the_config():
    assert {cls.cue for _, cls in ASSOCIATION_REGISTRY} == {"edge", "embedding", "offset", "box_iou"}
    assert association_class("offset") is OffsetHead
    cfg = tiny_cfg(
        **{"TRACK.MATCH_THRESH": 0.3, "TRACK.OFFSET_MIN_IOU": 0.4, "INFERENCE.BASELINE_IOU": 0.2, "TRACK.EMBED_DIM": 5}
    )
    edge = build_association("edge", cfg, 16)
    assert isinstance(edge, EdgeClassifier) and edge.match_thresh == 0.3 and edge.num_classes == 3
    assert edge.mlp[0].out_features == cfg.MODEL.VIS_STG.TRACK.CLASSIFIER_HIDDEN_DIM
    embedding = build_association("embedding", cfg, 16)
    assert isinstance(embedding, EmbeddingHead) and embedding.layers[-1].out_channels == 5
    assert build_association("offset", cfg, 16).min_iou == 0.4
    assert build_association("box_iou", cfg, 16).min_iou == 0.2
    with pytest.raises(ValueError, match="TRACK.ASSOCIATION"):
        association_class("motion")


@pytest.mark.parametrize("variant", ["edge", "joint_embedding", "offset", "concat_embedding", "iou_baseline"])
def test_state_dict_layout_and_initial_weights_are_those_before_the_registry(variant):
    with open(LAYOUT) as f:
        layout = json.load(f)[variant]
    torch.manual_seed(0)
    model = build_model(tiny_cfg(**layout["overrides"]))
    state = model.state_dict()
    assert [[k, list(v.shape)] for k, v in state.items()] == [[k, shape] for k, shape, _ in layout["state_dict"]]
    for key, _, total in layout["state_dict"]:  # same construction order: same weights for a SEED
        assert float(state[key].double().sum()) == pytest.approx(total, rel=1e-5, abs=1e-5), key
    # A checkpoint of the old layout loads strictly.
    old = {k: torch.randn(shape) if state[k].is_floating_point() else state[k] for k, shape, _ in layout["state_dict"]}
    model.load_state_dict(old, strict=True)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in old.items())


def test_box_iou_pair_scores_keep_pairs_of_one_class_above_the_threshold():
    class Refs:
        boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]])
        classes = torch.tensor([0, 1])

    class Dets:
        boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 5.0], [50.0, 50.0, 60.0, 60.0]])
        classes = torch.tensor([0, 0, 0])

    iou, valid = BoxIoUAssociation(0.5).pair_scores(FrameInputs(Refs, Dets, None, None, None, torch.ones(1)))
    assert iou[0].tolist() == pytest.approx([1.0, 0.5, 0.0])
    assert valid.tolist() == [[True, True, False], [False, False, False]]


def test_box_iou_association_links_in_the_full_model():
    """``TRACK.ASSOCIATION box_iou``: the model (graph fusion, kernel warp, memory) linked by box IoU."""
    torch.manual_seed(0)
    overrides = {"INFERENCE.SCORE_THRESH": 0.0, "INFERENCE.NMS_THRESH": 0.0, "INFERENCE.MAX_DETECTIONS": 4}
    model = build_model(tiny_cfg(**{"TRACK.ASSOCIATION": "box_iou", **overrides}))
    assert model.graph is not None and not hasattr(model, "edge_classifier")  # the graph for the fusion only
    model.train()
    losses = model(_batch())
    assert not {"loss_edge", "loss_embed", "loss_track_offset"} & set(losses)
    model.eval()
    with torch.no_grad():
        model.det_head.size[-1].bias.fill_(3.0)  # non-degenerate boxes (random weights predict size ~0)
    state = model.init_video_state()
    image, _ = _frame([(1, 0, 8, 8, 28, 30)])
    ids = []
    for t in range(3):  # the same frame three times; F̂_t = F_t at initialisation: same boxes, IoU 1
        out = model.step({"image": image, "height": H, "width": W, "frame_idx": t}, state)
        assert len(out) == 4 and out.pred_masks.shape == (4, H, W)
        ids.append(out.track_ids.tolist())
    assert state.prev_thetas is not None and ids[0] == ids[1] == ids[2]
