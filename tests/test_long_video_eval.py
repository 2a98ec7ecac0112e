"""Long videos through accumulation + evaluation: tracks present in more than 255 frames (pycocotools' area()
overflows on > 255 RLEs per call) and the compact per-frame RLE storage of VideoTrackAccumulator."""

import numpy as np
import torch
from detectron2.structures import Instances

from projects.evaluation import evaluate_ytvis
from projects.modeling import VideoTrackAccumulator
from projects.utils.masks import decode_mask, encode_mask


def test_track_over_300_frames_is_accumulated_and_scores_perfectly():
    h, w, length = 12, 16, 300
    acc = VideoTrackAccumulator(length)
    gt_segms = []
    for t in range(length):
        mask = np.zeros((h, w), bool)
        mask[2:8, t % 8 : t % 8 + 6] = True
        gt_segms.append(encode_mask(mask))
        empty = np.zeros((h, w), bool)
        inst = Instances(
            (h, w),
            track_ids=torch.tensor([3, 4]),
            scores=torch.tensor([0.9, 0.2]),
            pred_classes=torch.tensor([0, 0]),
            pred_masks=torch.from_numpy(np.stack([mask, empty])),
        )
        acc.add_frame(t, inst)
    assert set(acc.tracks) == {3}  # an all-empty track reports nothing
    track = acc.tracks[3]
    assert all(isinstance(c, bytes) for c in track.masks.values()) and track.size == [h, w]
    np.testing.assert_array_equal(decode_mask(track.mask(5), h, w), decode_mask(gt_segms[5], h, w))
    track.default_score_and_class()
    results = [dict(r, video_id=1, category_id=1) for r in acc.finish()]
    gt = {
        "videos": [{"id": 1, "height": h, "width": w, "length": length}],
        "categories": [{"id": 1, "name": "a"}],
        "annotations": [
            {"id": 1, "video_id": 1, "category_id": 1, "iscrowd": 0, "segmentations": gt_segms, "areas": [36] * length}
        ],
    }
    metrics = evaluate_ytvis(gt, results)
    assert abs(metrics["AP"] - 1.0) < 1e-9
