"""Table 1 ablation switches of RGNN-VIS: constant-variance appearance and YOLACT-average scoring."""

import pytest
import torch
from detectron2.modeling import build_model

from projects.modeling.online import VideoTrack
from tests.rgnn_fixtures import tiny_cfg
from vis_rgnn.appearance import AppearanceUpdate, nix2_update


def test_constant_variance_update_moves_only_the_mean():
    upd = AppearanceUpdate(8, init_log_var=-7.0, learn_variance=False)
    assert {n for n, _ in upd.named_parameters()} == {"alpha.weight", "alpha.bias"}  # nothing unused under DDP
    alpha, beta, s2 = upd(torch.randn(2, 3, 8))
    mean, var = torch.zeros(2, 3, 5), torch.full((2, 3, 5), 7.0)
    new_mean, new_var = nix2_update(mean, var, torch.ones(2, 3, 5), s2, alpha, beta)
    torch.testing.assert_close(new_var, var)
    torch.testing.assert_close(new_mean, alpha.expand(2, 3, 5))


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
    # confidence 1 - p(background), class argmax; the others at p(c) / p(best)
    assert (tracks[0].category_id, tracks[0].score) == (0, pytest.approx(0.8))
    assert tracks[0].class_hypotheses(3) == [(pytest.approx(0.8), 0), (pytest.approx(0.4), 1), (pytest.approx(0.08), 2)]
    assert tracks[1].class_hypotheses(1) == [(pytest.approx(0.6), 2)]
