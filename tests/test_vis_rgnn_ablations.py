"""Table 1 ablation switches of RGNN-VIS: constant-variance appearance (in the release's form of the update) and
YOLACT-average scoring."""

import pytest
import torch
from detectron2.modeling import build_model

from projects.modeling.online import VideoTrack
from tests.rgnn_fixtures import _synthetic_detections, _tracker, tiny_cfg
from vis_rgnn.appearance import AppearanceUpdate
from vis_rgnn.losses import tracker_clip_losses
from vis_rgnn.track_state import FrameDetections

FIELDS = ("boxes", "class_probs", "scores", "masks", "appearance", "valid", "image_sizes", "class_logits")


def test_constant_variance_update_moves_only_the_mean():
    """eta_v = 0 in the release's update: the variance stays, the mean moves by the learned eta_m; a new track's
    variance is softplus(init_var), which it keeps."""
    upd = AppearanceUpdate(8, init_log_var=-7.0, appearance_dim=5, learn_variance=False)
    assert {n for n, _ in upd.named_parameters()} == {"alpha.weight", "alpha.bias", "init_var"}  # none unused (DDP)
    h = torch.randn(2, 3, 8)
    eta_m = torch.sigmoid(upd.alpha(h))
    mean, var = torch.zeros(2, 3, 5), torch.full((2, 3, 5), 7.0)
    new_mean, new_var = upd.update(mean, var, torch.ones(2, 3, 5), h)
    torch.testing.assert_close(new_var, var)
    torch.testing.assert_close(new_mean, eta_m.expand(2, 3, 5))
    x = torch.randn(2, 3, 5)
    init_mean, init_var = upd.initial(x, h)
    torch.testing.assert_close(init_mean, eta_m * x)
    torch.testing.assert_close(init_var, torch.nn.functional.softplus(torch.full((2, 3, 5), -7.0)))


def test_constant_variance_tracker_keeps_every_variance_and_trains_every_parameter():
    torch.manual_seed(0)
    tracker = _tracker(appearance_update="constant_variance", train_init_threshold=-50.0).train()
    frames, identities, targets = _synthetic_detections(b=2, length=3, seed=1)
    weights = {"loss_class": 1.0, "loss_mask": 1.0, "loss_match": 4.0, "loss_new_track": 1.0}
    losses = tracker_clip_losses(tracker, frames, identities, targets, frame_decay=0.8, loss_weights=weights)
    sum(losses.values()).backward()
    assert not [n for n, p in tracker.named_parameters() if p.grad is None]
    state = tracker.eval().init_state(1, torch.device("cpu"))
    with torch.no_grad():
        for f in frames:
            tracker.step(state, FrameDetections(**{k: getattr(f, k)[:1] for k in FIELDS}))
    init = torch.nn.functional.softplus(tracker.appearance_update.init_var)
    assert bool(state.alive.any())
    torch.testing.assert_close(state.app_var[state.alive], init.expand(int(state.alive.sum()), -1))
    torch.testing.assert_close(state.empty_app_var, torch.nn.functional.softplus(tracker.empty_init_var)[None])


def test_unknown_appearance_update_is_refused():
    with pytest.raises(ValueError, match="APPEARANCE.UPDATE"):
        build_model(tiny_cfg(stage=2, APPEARANCE__UPDATE="lstm"))


def test_yolact_average_scores_a_track_by_its_mean_class_vector():
    model = build_model(tiny_cfg(stage=2, SCORING="yolact_average")).eval()
    k = model.detector.num_classes  # 3 classes + background, then the count column
    state = model.init_video_state()
    state["num_ids"] = 2
    ids, n = torch.tensor([0, 1, 0]), 4
    held = torch.tensor([[0.6, 0.1, 0.1, 0.2, 1.0], [0.1, 0.2, 0.3, 0.4, 1.0], [0.0, 0.5, 0.1, 0.4, 1.0]])
    model._write_id_rows(state, "class_probs", ids, None, held, n, True)
    tracks = {0: VideoTrack(0), 1: VideoTrack(1)}
    model.finalize_video(state, tracks)
    # track 0: mean (0.3, 0.3, 0.1 | 0.3) -> first best class 0, score 0.3; track 1: class 2, score 0.3
    assert tracks[0].category_id == 0 and tracks[0].score == pytest.approx(0.3)
    assert tracks[1].category_id == 2 and tracks[1].score == pytest.approx(0.3)
    assert k == 3
    # TEST.VIDEO.CLASSES_PER_TRACK: every class's mean probability over the best one's
    assert tracks[0].class_shares == pytest.approx({0: 1.0, 1: 1.0, 2: 1 / 3})
    assert tracks[0].class_hypotheses(2) == [(pytest.approx(0.3), 0), (pytest.approx(0.3), 1)]


def test_learned_scoring_shares_rank_the_other_classes():
    model = build_model(tiny_cfg(stage=2)).eval()
    assert model.scoring == "learned"
    state = {"class_probs": torch.tensor([[0.5, 0.25, 0.05, 0.2], [0.1, 0.1, 0.4, 0.4]]), "num_ids": 2}
    tracks = {0: VideoTrack(0), 1: VideoTrack(1)}
    model.finalize_video(state, tracks)
    # confidence max_c p(c) (the release), class argmax; the others at p(c) / p(best)
    assert (tracks[0].category_id, tracks[0].score) == (0, pytest.approx(0.5))
    assert tracks[0].class_hypotheses(3) == [
        (pytest.approx(0.5), 0),
        (pytest.approx(0.25), 1),
        (pytest.approx(0.05), 2),
    ]
    assert tracks[1].class_hypotheses(1) == [(pytest.approx(0.4), 2)]
