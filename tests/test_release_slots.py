"""Slot allocation of the authors' RGNN-VIS release (rgnnvis/models/rgnn.py): new tracks take the lowest free slots
in detection order, and no slot is ever evicted or re-used (vis_rgnn/slots.py)."""

import torch

from vis_rgnn.slots import allocate_slots

torch.set_num_threads(1)


def test_lowest_free_slots_in_detection_order():
    """4 slots: 1 and 3 free, 0 and 2 alive (held or not). Detections 0, 2, 3 start tracks: 0 -> slot 1, 2 -> slot
    3; the third new track finds no free slot and is dropped (slot 2's inactive track is not evicted)."""
    alive = torch.tensor([[True, False, True, False]])
    new = torch.tensor([[True, False, True, True]])
    slot_det, slot_rank = allocate_slots(alive, new)
    assert slot_det.tolist() == [[-1, 0, -1, 2]]
    assert slot_rank.tolist() == [[-1, 0, -1, 1]]


def test_full_slots_never_start_and_batch_is_independent():
    alive = torch.tensor([[True, True, True], [False, True, False]])
    new = torch.tensor([[True, True], [False, True]])
    slot_det, slot_rank = allocate_slots(alive, new)
    assert slot_det.tolist() == [[-1, -1, -1], [1, -1, -1]]
    assert slot_rank.tolist() == [[-1, -1, -1], [0, -1, -1]]
    none, _ = allocate_slots(alive, torch.zeros(2, 0, dtype=torch.bool))
    assert none.tolist() == [[-1, -1, -1], [-1, -1, -1]]


def test_what_the_slot_cap_dropped_is_counted():
    """The step-regression model (6 slots; frame 2 starts 10 new tracks, 4 of which find no free slot): the video's
    diagnostics count the frames and the new tracks the cap dropped; with slots to spare they read 0."""
    from tests.rgnn_step_video import build, video

    model = build("gnn_learned")
    with torch.no_grad():
        (capped,) = model([video()])
    assert capped["diagnostics"]["frames_over_track_slots"] == 1  # frame 2 only: later frames start no track
    assert capped["diagnostics"]["tracks_over_track_slots"] == 4
    started = max(t["track_id"] for t in capped["tracks"]) + 1 if capped["tracks"] else 0
    assert started <= 6  # a slot is never re-used: at most MAX_TRACKS ids per video
    model.tracker.max_tracks = 64  # the same weights, slots to spare
    with torch.no_grad():
        (free,) = model([video()])
    assert free["diagnostics"]["frames_over_track_slots"] == 0
    assert free["diagnostics"]["tracks_over_track_slots"] == 0
