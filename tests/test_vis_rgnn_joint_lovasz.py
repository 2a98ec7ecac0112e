"""RGNN-VIS mask loss on the joint instance map (§3.5): tracks compete for pixels in the loss."""

import torch

from vis_rgnn.losses import joint_track_probs, lovasz_hinge, lovasz_softmax_joint


def test_joint_probs_are_a_softmax_per_video_with_a_background_logit():
    logits = torch.tensor([[[2.0]], [[1.0]], [[3.0]]])  # tracks 0, 1 in video 0, track 2 in video 1
    video = torch.tensor([0, 0, 1])
    p = joint_track_probs(logits, video, 2)[:, 0, 0]
    e = torch.tensor([2.0, 1.0]).exp()
    torch.testing.assert_close(p[:2], e / (1 + e.sum()))
    torch.testing.assert_close(p[2], torch.tensor(3.0).exp() / (1 + torch.tensor(3.0).exp()))
    big = joint_track_probs(torch.full((2, 1, 1), 500.0), torch.tensor([0, 1]), 2)  # stable for large logits
    torch.testing.assert_close(big, torch.ones(2, 1, 1))


def _two_tracks(b_logit_on_a: float):
    """Track A's GT is the left half of a 4x4 map, track B's the right half; B also claims A's pixels."""
    labels = torch.zeros(2, 4, 4)
    labels[0, :, :2] = 1
    labels[1, :, 2:] = 1
    logits = torch.where(labels > 0, 6.0, -6.0)
    logits[1, :, :2] = b_logit_on_a
    return logits, labels


def test_a_track_claiming_anothers_pixels_raises_that_tracks_loss_only_when_joint():
    video = torch.zeros(2, dtype=torch.long)
    calm, labels = _two_tracks(-6.0)
    greedy, _ = _two_tracks(6.0)
    joint_calm = lovasz_softmax_joint(calm, labels, video, 1)
    joint_greedy = lovasz_softmax_joint(greedy, labels, video, 1)
    assert joint_calm.max() < 0.01
    assert joint_greedy[0] > 0.3 and joint_greedy[1] > 0.2  # A loses its pixels to B; B claims foreign ones
    hinge_calm, hinge_greedy = lovasz_hinge(calm, labels), lovasz_hinge(greedy, labels)
    torch.testing.assert_close(hinge_greedy[0], hinge_calm[0])  # alone, A's loss ignores B


def test_tracks_of_other_videos_do_not_compete():
    greedy, labels = _two_tracks(6.0)
    alone = lovasz_softmax_joint(greedy, labels, torch.tensor([0, 1]), 2)
    assert alone[0] < 0.01


def test_empty_set_stays_in_the_graph():
    logits = torch.zeros(0, 4, 4, requires_grad=True)
    out = lovasz_softmax_joint(logits, torch.zeros(0, 4, 4), torch.zeros(0, dtype=torch.long), 2)
    assert out.shape == (0,) and out.requires_grad
    out.sum().backward()
    assert logits.grad is not None


def test_stage2_training_with_the_joint_loss():
    from detectron2.modeling import build_model

    from tests.rgnn_fixtures import _clip, tiny_cfg

    torch.manual_seed(0)
    cfg = tiny_cfg(stage=2, DETECTOR__SCORE_LOGIT_THRESH=-50.0, TRAIN_INIT_THRESHOLD=-50.0, LOSS__MASK_LOSS="joint")
    model = build_model(cfg).train()
    losses = model([_clip(3, 0), _clip(3, 1)])
    assert torch.isfinite(losses["loss_mask"]) and losses["loss_mask"] > 0
    sum(losses.values()).backward()
    assert model.tracker.mask_reweighting.conv2.weight.grad.abs().sum() > 0
