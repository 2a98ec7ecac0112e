"""``GRAPH.TEST_SENDER_NMS`` in ``VisSTG.step``: the config reaches the online step, the graph gets the senders of
:func:`vis_stg.online_step.message_senders`, an NMS that keeps every reference changes nothing, and the step stays
within its host-sync budget."""

from dataclasses import replace

import torch

from projects.utils.host_syncs import count_host_syncs
from tests.vis_stg_fixtures import tiny_cfg
from tests.vis_stg_step_video import H, W, build_seeded_model, run_video, video_frames
from vis_stg.online_step import TrackSettings, message_senders

torch.set_num_threads(1)


def test_config_reaches_the_track_settings():
    assert TrackSettings.from_config(tiny_cfg(**{"GRAPH.TEST_SENDER_NMS": 0.5})).sender_nms == 0.5
    assert TrackSettings.from_config(tiny_cfg()).sender_nms == 0.0


def test_step_sends_from_the_nms_survivors_only():
    model = build_seeded_model("edge")
    plain = run_video(model)
    model.track = replace(model.track, sender_nms=1.0)  # IoU > 1 never: every reference sends
    for a, b in zip(run_video(model), plain):
        assert a["track_ids"].tolist() == b["track_ids"].tolist() and torch.equal(a["masks"], b["masks"])
        torch.testing.assert_close(a["scores"], b["scores"], rtol=0, atol=0)

    model.track = replace(model.track, sender_nms=0.3)
    calls, online = [], model.graph.forward_online

    def spy(nodes, centers, features, senders=None):
        calls.append(senders)
        return online(nodes, centers, features, senders)

    model.graph.forward_online = spy
    state = model.init_video_state()
    for t, image in enumerate(video_frames()):
        refs = state.refs
        frame = {"image": image, "height": H, "width": W, "frame_idx": t}
        _, counts = count_host_syncs(lambda frame=frame: model.step(frame, state))
        if refs is not None and len(refs) > 0:
            assert torch.equal(calls[-1], message_senders(refs.boxes, refs.scores, 0.3))
        if t > 0:
            assert sum(counts.values()) <= 4, (t, counts)
    assert len(calls) >= len(video_frames()) - 1
    assert any(not bool(s.all()) for s in calls)  # duplicates exist in this video: some references are silenced
