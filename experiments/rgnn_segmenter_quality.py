#!/usr/bin/env python
"""Frame-level quality of the RGNN-VIS stage-1 segmenter (YOLACT) on an annotated VIS split; prints one line.

For every annotated object in every frame, the detection with the highest box IoU is taken; the script reports
the fraction of object-frames found (box IoU >= 0.5) and, over those, the mean mask IoU on the prototype grid,
the fraction whose arg-max class is right and their mean confidence. This is the diagnostic behind the anchor
choice of ``configs/vis_rgnn/synthetic_R18_stage1.yaml`` (vis_rgnn/README.md, Results).

    python -m experiments.rgnn_segmenter_quality --config-file configs/vis_rgnn/synthetic_R18_stage1.yaml \
        MODEL.WEIGHTS output/rgnn_s1/model_final.pth [--dataset NAME=JSON:ROOT DATASETS.TEST "('NAME',)"]
"""

import numpy as np
import torch
import torch.nn.functional as F
from detectron2.structures import BitMasks, Boxes, BoxMode, Instances
from torchvision.ops import box_iou

from experiments.annotated_split_runs import run_checkpoint_on_annotated_split
from projects.utils.masks import decode_mask
from vis_rgnn.targets import gt_masks_on_grid


def object_frame_records(model, video_dict, video_input):
    """(box IoU, grid mask IoU, class correct, confidence) of the best-overlapping detection per annotation."""
    stride = model.detector.mask_stride
    height, width = video_dict["height"], video_dict["width"]
    records = []
    for t, image in enumerate(video_input["image"]):
        anns = video_dict["annotations"][t]
        images = model.preprocess([image])
        fpn, _ = model.extract_features(images)
        det = model.detector(fpn, images.image_sizes)[0].to("cpu")
        det = det[det.valid]  # the detector's output is fixed-size with a valid mask
        if len(det) == 0:
            records += [(0.0, 0.0, False, 0.0)] * len(anns)
            continue
        if not anns:
            continue
        h, w = images.image_sizes[0]
        scale = torch.tensor([w / width, h / height, w / width, h / height])
        gt = Instances((h, w))
        gt.gt_boxes = Boxes(
            torch.tensor([BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in anns]) * scale
        )
        masks = torch.stack([torch.from_numpy(decode_mask(a["segmentation"], height, width)) for a in anns])
        gt.gt_masks = BitMasks(F.interpolate(masks[:, None].float(), size=(h, w), mode="nearest")[:, 0] > 0.5)
        gt_grid = gt_masks_on_grid(gt, det.image_size, stride) > 0.5  # (G, h/s, w/s) on the prototype grid
        ious = box_iou(gt.gt_boxes.tensor, det.pred_boxes.tensor)  # (G, M)
        for g, j in enumerate(ious.argmax(dim=1).tolist()):
            pred = det.pred_masks[j] > 0.5
            mask_iou = float((pred & gt_grid[g]).sum()) / max(float((pred | gt_grid[g]).sum()), 1.0)
            correct = int(det.pred_classes[j]) == anns[g]["category_id"]
            records.append((float(ious[g, j]), mask_iou, correct, float(det.scores[j])))
    return records


def main(argv=None) -> None:
    name, _, records = run_checkpoint_on_annotated_split(
        __doc__, argv, "a trained stage-1 or stage-2 checkpoint", object_frame_records
    )
    r = np.array(records, dtype=float).reshape(-1, 4)
    found = r[:, 0] >= 0.5
    print(
        f"{name}: {len(r)} object-frames; found (box IoU >= 0.5) {found.mean():.2f}; of those: mask IoU "
        f"{r[found, 1].mean():.2f}, class right {r[found, 2].mean():.2f}, confidence {r[found, 3].mean():.2f}"
    )


if __name__ == "__main__":
    main()
