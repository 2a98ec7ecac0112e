#!/usr/bin/env python
"""Which cue picks the right track in RGNN-VIS's association: box IoU, the appearance log-likelihood (§3.4), or
the GNN's match logits (§3.1)? The diagnostic behind the appearance rows of vis_rgnn/README.md (Results).

Runs a trained stage-2 model online over an annotated VIS split, exactly as inference does, and labels every
detection with the annotation it covers (box IoU >= ``MODEL.RGNN.LOSS.DET_MATCH_IOU``, the training assignment
of §3.5) and every track with the annotation of the detection that started it (the training identities). For
each detection whose annotation is held by an alive track of the previous frame (the "true track"), it asks
whether the arg-max over the alive tracks of each cue is that track; "contested" detections are those that
overlap (IoU > 0) two or more alive tracks, where box overlap alone cannot decide. It also gives the ROC AUC of
each cue between true and false (track, detection) pairs. Prints one Markdown table.

    python -m experiments.rgnn_association_cues --config-file configs/vis_rgnn/synthetic_R18_stage2.yaml \
        MODEL.WEIGHTS output/rgnn_s2/model_final.pth [--dataset NAME=JSON:ROOT DATASETS.TEST "('NAME',)"]

A model trained without the appearance model (``MODEL.RGNN.APPEARANCE.ENABLED False``) has no log-likelihood
column. The labels come from the boxes only; the cues' arg-max ignores the thresholds of the association itself.
"""

from __future__ import annotations

from typing import Dict, List

import numpy as np
import torch
from detectron2.structures import BoxMode
from scipy.stats import rankdata

from experiments.annotated_split_runs import run_checkpoint_on_annotated_split
from vis_rgnn.graph_inputs import graph_inputs
from vis_rgnn.targets import assign_detections
from vis_rgnn.track_state import FrameDetections

CUES = ("iou", "appearance", "gnn")


def detection_identities(
    boxes: torch.Tensor, valid: torch.Tensor, anns: List[Dict], scale: torch.Tensor, iou: float
) -> torch.Tensor:
    """(1, M) annotation id of every detection slot (-1: none, or padding), the training assignment (§3.5).
    ``boxes`` (1, M, 4) in input pixels; ``scale`` maps the annotations' XYXY boxes to input pixels."""
    ids = torch.full(valid.shape, -1, dtype=torch.long)
    n = int(valid[0].sum())
    if anns and n:
        gt = torch.tensor([BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in anns]) * scale
        match = assign_detections(boxes[0, :n], gt, iou)
        ann_ids = torch.tensor([a["id"] for a in anns])
        ids[0, :n] = torch.where(match >= 0, ann_ids[match.clamp(min=0)], -1)
    return ids


def video_records(model, video_dict: Dict, video_input: Dict) -> List[Dict[str, np.ndarray]]:
    """Per frame with a previous track: the cues (N, M), the pair labels and masks, for one video."""
    tracker = model.tracker
    state = tracker.init_state(1, model.device)
    height, width = video_dict["height"], video_dict["width"]
    records = []
    for t, image in enumerate(video_input["image"]):
        images = model.preprocess([image])
        fpn, bottom_up = model.extract_features(images)
        dets = model.detector(fpn, images.image_sizes)
        fd = FrameDetections.from_instances(dets, model.describe(bottom_up, dets), images.image_sizes).float32()
        h, w = images.image_sizes[0]
        scale = torch.tensor([w / width, h / height, w / width, h / height])
        det_id = detection_identities(
            fd.boxes.cpu(), fd.valid.cpu(), video_dict["annotations"][t], scale, model.det_match_iou
        )
        n = state.alive.shape[1]
        edges, _, _, iou = graph_inputs(state, fd, n, tracker.empty_appearance(state, fd))
        out = tracker.step(state, fd, det_id.to(model.device))
        records.append(
            {
                "iou": iou[0].cpu().numpy(),
                "appearance": edges[0, ..., -1].cpu().numpy() if tracker.use_appearance else None,
                "gnn": out.match_logits[0].cpu().numpy(),
                "alive": out.prev_alive[0].cpu().numpy(),  # (N,) tracks of the previous frame
                "track_id": out.prev_identity[0].cpu().numpy(),  # (N,)
                "det_id": det_id[0].numpy(),  # (M,)
                "det_valid": fd.valid[0].cpu().numpy(),
            }
        )
    return records


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Probability that a random positive scores above a random negative (ties count one half)."""
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)  # ties share their mean rank
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def summarise(records: List[Dict[str, np.ndarray]]) -> Dict[str, Dict[str, float]]:
    """Top-1 accuracy of each cue over detections with a true track (all, and contested ones) and its ROC AUC
    over the (alive track, labelled detection) pairs."""
    hits = {c: {"all": [], "contested": []} for c in CUES}
    pair_scores = {c: [] for c in CUES}
    pair_labels = []
    for r in records:
        alive, tid, did = r["alive"], r["track_id"], r["det_id"]
        for j in np.flatnonzero(r["det_valid"] & (did >= 0)):
            cand = np.flatnonzero(alive)
            if len(cand) == 0:
                continue
            truth = cand[tid[cand] == did[j]]
            pair_labels.append(tid[cand] == did[j])
            for c in CUES:
                if r[c] is not None:
                    pair_scores[c].append(r[c][cand, j])
            if len(truth) != 1:  # the annotation has no track (or two, after a duplicate start)
                continue
            contested = (r["iou"][cand, j] > 0).sum() >= 2
            for c in CUES:
                if r[c] is None:
                    continue
                right = cand[np.argmax(r[c][cand, j])] == truth[0]
                hits[c]["all"].append(right)
                if contested:
                    hits[c]["contested"].append(right)
    labels = np.concatenate(pair_labels) if pair_labels else np.zeros(0, bool)
    out = {}
    for c in CUES:
        if not pair_scores[c]:
            continue
        out[c] = {
            "n": len(hits[c]["all"]),
            "top1": float(np.mean(hits[c]["all"])) if hits[c]["all"] else float("nan"),
            "n_contested": len(hits[c]["contested"]),
            "top1_contested": float(np.mean(hits[c]["contested"])) if hits[c]["contested"] else float("nan"),
            "auc": roc_auc(np.concatenate(pair_scores[c]), labels),
        }
    return out


def main(argv=None) -> Dict[str, Dict[str, float]]:
    name, weights, records = run_checkpoint_on_annotated_split(
        __doc__, argv, "a trained stage-2 checkpoint", video_records
    )
    summary = summarise(records)
    print(f"\n{name}, {weights}")
    print("| cue | detections with a true track | top-1 right | contested | top-1 right (contested) | pair ROC AUC |")
    print("|---|---:|---:|---:|---:|---:|")
    for c, s in summary.items():
        print(f"| {c} | {s['n']} | {s['top1']:.3f} | {s['n_contested']} | {s['top1_contested']:.3f} | {s['auc']:.3f} |")
    return summary


if __name__ == "__main__":
    main()
