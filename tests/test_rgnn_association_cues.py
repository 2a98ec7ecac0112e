"""``experiments/rgnn_association_cues.py``: the ROC AUC, the top-1 accounting of each association cue on a
hand-made frame, and the online labelling of a tiny model's detections."""

import numpy as np
import torch
from detectron2.modeling import build_model
from detectron2.structures import BoxMode

from experiments.rgnn_association_cues import roc_auc, summarise, video_records
from tests.rgnn_fixtures import H, W, _clip, tiny_cfg


def test_roc_auc_equals_the_pairwise_definition_with_ties():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, size=60).astype(float)  # many ties
    positive = rng.random(60) < 0.4
    pos, neg = scores[positive], scores[~positive]
    brute = np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])
    assert abs(roc_auc(scores, positive) - brute) < 1e-12
    assert np.isnan(roc_auc(scores, np.zeros(60, bool)))


def test_top1_per_cue_and_contested_detections():
    # two alive tracks (annotations 4 and 9) and a free slot; three detections
    iou = np.array([[0.8, 0.5, 0.0], [0.0, 0.3, 0.0], [0.0, 0.0, 0.0]])  # det 1 overlaps both tracks
    appearance = np.array([[-1.0, -9.0, -5.0], [-8.0, -2.0, -5.0], [0.0, 0.0, 0.0]])
    gnn = np.array([[-1.0, 3.0, -4.0], [2.0, 4.0, -4.0], [9.0, 9.0, 9.0]])  # the free slot must be ignored
    record = {
        "iou": iou,
        "appearance": appearance,
        "gnn": gnn,
        "alive": np.array([True, True, False]),
        "track_id": np.array([4, 9, -1]),
        "det_id": np.array([4, 9, -1]),  # det 2 covers no annotation: not counted
        "det_valid": np.array([True, True, True]),
    }
    s = summarise([record])
    assert s["iou"]["n"] == s["gnn"]["n"] == 2 and s["iou"]["n_contested"] == 1
    assert s["iou"]["top1"] == 0.5 and s["iou"]["top1_contested"] == 0.0  # det 1: IoU prefers track 4
    assert s["appearance"]["top1"] == 1.0 and s["appearance"]["top1_contested"] == 1.0
    assert s["gnn"]["top1"] == 0.5 and s["gnn"]["top1_contested"] == 1.0  # det 0: the GNN prefers track 9
    assert s["appearance"]["auc"] == 1.0  # pairs: (4,0)+ (9,0)- (4,1)- (9,1)+
    no_appearance = dict(record, appearance=None)
    assert "appearance" not in summarise([no_appearance])


def test_online_labels_follow_the_annotations():
    cfg = tiny_cfg(stage=2, DETECTOR__SCORE_LOGIT_THRESH=-50.0, INIT_THRESHOLD=-50.0)  # every detection starts a track
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    clip = _clip(3)
    anns = [
        [
            {"bbox": box.tolist(), "bbox_mode": BoxMode.XYXY_ABS, "id": int(i)}
            for box, i in zip(inst.gt_boxes.tensor, inst.gt_ids)
        ]
        for inst in clip["instances"]
    ]
    video_dict = {"height": H, "width": W, "annotations": anns}
    with torch.no_grad():
        records = video_records(model, video_dict, {"image": clip["image"]})
    assert len(records) == 3
    n = cfg.MODEL.RGNN.MAX_TRACKS
    for r in records:
        m = len(r["det_id"])
        assert r["iou"].shape == r["gnn"].shape == r["appearance"].shape == (n, m)
        assert set(np.unique(r["det_id"])) <= {-1, 4, 9}
        assert (r["det_id"][~r["det_valid"]] == -1).all()
    assert not records[0]["alive"].any()  # no track before the first frame
    assert (records[0]["det_id"] >= 0).any()  # some random detection covers an annotation...
    first = set(records[0]["det_id"][records[0]["det_id"] >= 0])
    assert first <= set(records[1]["track_id"][records[1]["alive"]])  # ...and the track it started carries it
    assert set(summarise(records)) == {"iou", "appearance", "gnn"}
