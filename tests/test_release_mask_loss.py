"""``MODEL.RGNN.LOSS.MASK_LOSS "release"``: the release's stage-2 mask loss (``SegLoss('Lovasz per image')``),
checked against a brute-force Lovász extension (the integral of the Jaccard set loss over thresholds, Berman et
al. 2018, Prop. 1) written here independently of the sorted-gradient form the library uses."""

import os
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from detectron2.config import get_cfg

from projects.config import add_video_config
from vis_rgnn import add_rgnn_config
from vis_rgnn.losses import FrameTargets, lovasz_softmax_present, release_mask_loss

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _jaccard_set_loss(fg: set, wrong: set) -> float:
    """Jaccard loss of a prediction whose mispredicted pixels are ``wrong``: |wrong| / |fg u wrong| (0 if empty)."""
    return len(wrong) / len(fg | wrong) if wrong else 0.0


def _lovasz_extension(errors, fg: set) -> float:
    """Integral over t of the set loss of {i : errors_i >= t} (errors in [0, 1]), exact on the breakpoints."""
    levels = sorted(set(errors), reverse=True) + [0.0]
    return sum(
        (hi - lo) * _jaccard_set_loss(fg, {i for i, e in enumerate(errors) if e >= hi})
        for hi, lo in zip(levels[:-1], levels[1:])
    )


def _oracle(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean over the classes present in labels (P,) of the Lovász extension of |1[label = c] - probs[c]|."""
    losses = []
    for c in range(probs.shape[0]):
        fg = {i for i, y in enumerate(labels.tolist()) if y == c}
        if fg:
            errors = [abs(float(i in fg) - p) for i, p in enumerate(probs[c].tolist())]
            losses.append(_lovasz_extension(errors, fg))
    return sum(losses) / len(losses)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lovasz_softmax_present_equals_the_lovasz_extension(seed):
    g = torch.Generator().manual_seed(seed)
    probs = torch.randn(4, 9, generator=g, dtype=torch.float64).mul(2).softmax(dim=0)
    labels = torch.randint(0, 3, (9,), generator=g)  # class 3 never present: not averaged
    labels[0] = 0
    got = lovasz_softmax_present(probs, labels)
    assert abs(float(got) - _oracle(probs, labels)) < 1e-12
    # a perfect prediction costs nothing; the absent class does not count either way
    assert float(lovasz_softmax_present(F.one_hot(labels, 4).t().double(), labels)) == 0.0


def test_release_mask_loss_channels_targets_and_crop():
    """One image, 3 slots on a 2 x 3 grid at stride 2, the input 4 x 5 (the grid covers 4 x 6). Slots 0 and 1 hold
    a detection, slot 2 none (-20). At the clip's last frame annotation 7 is carried by slots 0 and 2 (slot 0,
    the lowest, owns it) and annotation 9 by no slot (its pixels are background)."""
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 2, 3, generator=g, dtype=torch.float64) * 8
    out = SimpleNamespace(mask_logits=logits, mask_index=torch.tensor([[0, 0], [0, 1]]))
    final_identity = torch.tensor([[7, -1, 7]])
    pixel = torch.zeros(2, 4, 6, dtype=torch.float64)
    pixel[0, :2, :3] = 1  # annotation 7
    pixel[1, 2:, 3:] = 1  # annotation 9
    targets = [FrameTargets(torch.tensor([7, 9]), pixel[:, ::2, ::2], {7: 0, 9: 1}, pixel)]
    got = release_mask_loss(out, final_identity, targets, torch.tensor([[4.0, 5.0]]), stride=2)

    full = torch.cat([torch.full((1, 2, 3), 10.0, dtype=torch.float64), logits, torch.full((1, 2, 3), -20.0)])
    scores = F.interpolate(full[None], size=(4, 6), mode="bilinear", align_corners=False)[0, :, :4, :5]
    labels = torch.zeros(4, 5, dtype=torch.long)
    labels[:2, :3] = 1  # slot 0 -> channel 1
    want = _oracle(scores.softmax(dim=0).flatten(1), labels.flatten())
    assert abs(float(got) - want) < 1e-9


@pytest.mark.parametrize(
    "config, mask_loss, late_object_class",
    [
        ("release_R50_ytvis19.yaml", "release", "background"),
        ("R50_FPN_stage2_150ep_ytvis19.yaml", "release", "background"),
        ("R101_FPN_stage2_150ep_ytvis19.yaml", "release", "background"),
        ("synthetic_R18_stage2.yaml", "per_track", "object"),
    ],
)
def test_release_losses_in_release_and_paper_configs(config, mask_loss, late_object_class):
    """The release's mask loss and label zeroing (tests/test_rgnn_late_object_class.py) in its and the paper's
    configs; the synthetic config keeps this project's."""
    cfg = get_cfg()
    add_video_config(cfg)
    add_rgnn_config(cfg)
    cfg.merge_from_file(os.path.join(ROOT, "configs", "vis_rgnn", config))
    assert cfg.MODEL.RGNN.LOSS.MASK_LOSS == mask_loss
    assert cfg.MODEL.RGNN.LOSS.LATE_OBJECT_CLASS == late_object_class


def test_paper_stage2_training_with_the_release_mask_loss():
    """The paper's stage-2 config (shrunk) trains with it: finite, positive, and it reaches the re-weighting CNN."""
    from detectron2.modeling import build_model

    from tests.rgnn_fixtures import PAPER_STAGE2, small_cfg
    from tests.rgnn_fixtures import paper_clip as _clip

    low = {"DETECTOR__SCORE_LOGIT_THRESH": -50.0, "INIT_THRESHOLD": -50.0, "INACTIVE_THRESHOLD": -50.0}
    cfg = small_cfg(PAPER_STAGE2, STAGE=2, TRAIN_RESIZE=[68, 100], **low)
    assert cfg.MODEL.RGNN.LOSS.MASK_LOSS == "release"
    torch.manual_seed(0)
    model = build_model(cfg).train()
    losses = model([_clip(60, 90, 3, 0)])
    loss = float(losses["loss_mask"].detach())
    assert 0 < loss <= cfg.MODEL.RGNN.LOSS.MASK_WEIGHT  # finite; a mean of Lovász-softmax losses, each <= 1
    losses["loss_mask"].backward()
    grads = [p.grad for p in model.tracker.mask_reweighting.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
