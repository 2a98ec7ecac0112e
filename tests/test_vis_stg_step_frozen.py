"""``VisSTG.step`` reproduces the outputs frozen from the implementation before the sync-free rewrite
(``tests/data/vis_stg_step_reference.pt``, written by ``tests/vis_stg_step_video.py``): track ids and
classes exactly, scores / boxes allclose, masks equal up to pixels at the threshold."""

import pytest
import torch

from tests.vis_stg_step_video import REFERENCE, VARIANTS, build_seeded_model, run_video, unpack_masks

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def reference():
    return {name: unpack_masks(frames) for name, frames in torch.load(REFERENCE).items()}


def test_the_fixture_exercises_detections_matches_and_new_tracks(reference):
    for name in VARIANTS:
        frames = reference[name]
        assert all(len(f["track_ids"]) > 0 for f in frames), name
        ids = [set(f["track_ids"].tolist()) for f in frames]
        continued = sum(len(a & b) for a, b in zip(ids, ids[1:]))
        new = sum(len(b - set().union(*ids[: i + 1])) for i, b in enumerate(ids[1:]))
        assert continued >= 5 and new >= 3, (name, continued, new)
    # A match to an instance of the occlusion memory (a track that skips a frame) happens.
    ids = [set(f["track_ids"].tolist()) for f in reference["embedding"]]
    assert any((ids[t] & ids[t - 2]) - ids[t - 1] for t in range(2, len(ids)))


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_step_reproduces_the_frozen_outputs(reference, variant):
    got = run_video(build_seeded_model(variant))
    assert len(got) == len(reference[variant])
    for t, (g, r) in enumerate(zip(got, reference[variant])):
        assert g["track_ids"].tolist() == r["track_ids"].tolist(), (variant, t)
        assert g["classes"].tolist() == r["classes"].tolist(), (variant, t)
        torch.testing.assert_close(g["scores"], r["scores"], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(g["boxes"], r["boxes"], rtol=1e-4, atol=1e-3)
        assert g["masks"].shape == r["masks"].shape
        assert (g["masks"] != r["masks"]).float().mean() < 1e-3, (variant, t)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_step_needs_at_most_4_host_syncs_per_frame(variant):
    from projects.utils.host_syncs import count_host_syncs
    from tests.vis_stg_step_video import H, W, video_frames

    model = build_seeded_model(variant)
    state = model.init_video_state()
    for t, image in enumerate(video_frames()[:4]):
        frame = {"image": image, "height": H, "width": W, "frame_idx": t}
        _, counts = count_host_syncs(lambda frame=frame: model.step(frame, state))
        if t > 0:
            assert sum(counts.values()) <= 4, (variant, t, counts)
