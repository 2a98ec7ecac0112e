"""The online inference driver: per-frame Instances -> video-level tracks."""

import pytest
import torch
from detectron2.structures import ImageList, Instances

from projects.modeling import run_online_inference
from projects.modeling.online import check_num_classes, normalize_image, pad_frame, to_host
from projects.utils.masks import decode_mask


class ScriptedModel:
    """Frame t: track 1 (class 0, score 0.8/0.4 alternating) everywhere; track 2 (class 1) only in frames >= 2."""

    def init_video_state(self):
        return {"frames": 0}

    def step(self, frame, state):
        state["frames"] += 1
        t, h, w = frame["frame_idx"], frame["height"], frame["width"]
        ids, scores, classes, masks = [1], [0.8 if t % 2 == 0 else 0.4], [0], [torch.zeros(h, w, dtype=torch.bool)]
        masks[0][t : t + 2, :3] = True
        if t >= 2:
            ids.append(2), scores.append(0.9), classes.append(1 if t != 3 else 0)
            masks.append(torch.zeros(h, w, dtype=torch.bool))
            masks[-1][5:, 5:] = True
        out = Instances((h, w))
        out.track_ids = torch.tensor(ids)
        out.scores = torch.tensor(scores)
        out.pred_classes = torch.tensor(classes)
        out.pred_masks = torch.stack(masks)
        return out


def _video(n=5):
    return {"video_id": 9, "height": 8, "width": 10, "length": n, "image": [torch.zeros(3, 4, 5)] * n}


def test_tracks_accumulate_with_null_frames_and_default_scores():
    out = run_online_inference(ScriptedModel(), _video())
    assert out["video_id"] == 9 and out["length"] == 5
    by_score = out["tracks"]
    assert [round(t["score"], 4) for t in by_score] == [0.9, round((0.8 * 3 + 0.4 * 2) / 5, 4)]
    t2, t1 = by_score
    assert t2["segmentations"][:2] == [None, None] and all(s is not None for s in t2["segmentations"][2:])
    assert t2["category_id"] == 1  # weighted majority: class 1 in 2 of 3 frames
    assert decode_mask(t1["segmentations"][3], 8, 10)[3:5, :3].all()


def test_finalize_hook_and_max_tracks():
    class Rescored(ScriptedModel):
        def finalize_video(self, state, tracks):
            assert state["frames"] == 5
            tracks[1].score, tracks[1].category_id = 0.99, 1

    out = run_online_inference(Rescored(), _video(), max_tracks=1)
    assert len(out["tracks"]) == 1 and out["tracks"][0]["score"] == 0.99 and out["tracks"][0]["category_id"] == 1
    # a model without video_diagnostics (RGNN-VIS) still reports what the cap dropped
    assert out["diagnostics"] == {"videos_over_max_tracks": 1, "tracks_over_max_tracks": 1}
    roomy = run_online_inference(ScriptedModel(), _video(), max_tracks=2)
    assert roomy["diagnostics"] == {"videos_over_max_tracks": 0, "tracks_over_max_tracks": 0}  # exactly at the cap


def test_classes_per_track_reports_a_track_under_its_best_classes():
    # Track 2 votes class 1 (0.9 + 0.9) over class 0 (0.9): shares {1: 1, 0: 0.5}; track 1 votes class 0 only.
    out = run_online_inference(ScriptedModel(), _video(), classes_per_track=2)
    entries = [(t["track_id"], t["category_id"], round(t["score"], 4)) for t in out["tracks"]]
    assert entries == [(2, 1, 0.9), (1, 0, round((0.8 * 3 + 0.4 * 2) / 5, 4)), (2, 0, 0.45)]
    assert out["tracks"][2]["segmentations"] == out["tracks"][0]["segmentations"]  # the same masks
    capped_out = run_online_inference(ScriptedModel(), _video(), max_tracks=2, classes_per_track=3)
    capped = capped_out["tracks"]
    assert [(t["track_id"], t["category_id"]) for t in capped] == [(2, 1), (1, 0)]  # max_tracks caps the entries
    assert capped_out["diagnostics"]["tracks_over_max_tracks"] == 1  # the (2, 0) entry
    with pytest.raises(ValueError, match="CLASSES_PER_TRACK"):
        run_online_inference(ScriptedModel(), _video(), classes_per_track=0)


def test_to_host_round_trips_mixed_dtypes_in_one_buffer():
    """Any dtypes / shapes (empty and 0-dim too) come back equal, in order, as views of one packed buffer."""
    parts = [
        torch.rand(2, 3, 5) > 0.5,
        torch.rand(3),
        torch.arange(3),
        torch.zeros(0, 4, 5, dtype=torch.bool),
        torch.tensor(7),
        torch.rand(2, 2, dtype=torch.float64),
        torch.tensor([1, 2], dtype=torch.int32),
    ]
    out = to_host(parts)
    for a, b in zip(parts, out):
        assert b.dtype == a.dtype and b.shape == a.shape and torch.equal(a, b)
    storages = {t.untyped_storage().data_ptr() for t in out}
    assert len(storages) == 1


def test_pad_frame_matches_imagelist_padding():
    x = torch.rand(3, 13, 22)
    for div in (0, 1, 8, 32):
        ref = ImageList.from_tensors([x], div).tensor
        assert torch.equal(pad_frame(x, div), ref)


def test_normalize_image_and_num_classes_check():
    mean, std = torch.tensor([1.0, 2.0, 3.0]).view(3, 1, 1), torch.tensor([2.0, 4.0, 8.0]).view(3, 1, 1)
    image = torch.full((3, 2, 2), 9, dtype=torch.uint8)
    assert torch.equal(normalize_image(image, mean, std)[:, 0, 0], torch.tensor([4.0, 1.75, 0.75]))
    assert check_num_classes(5, "M") == 5
    with pytest.raises(ValueError, match="MODEL.NUM_CLASSES is -1.*building M"):
        check_num_classes(-1, "M")
