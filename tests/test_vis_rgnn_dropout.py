"""RGNN-VIS feature dropout (App. A.2: 0.1 on backbone features) only while the segmenter trains (stage 1)."""

import torch
from detectron2.modeling import build_model

from tests.rgnn_fixtures import H, W, tiny_cfg


def _features_twice(model):
    images = model.preprocess([torch.randint(0, 255, (3, H, W), dtype=torch.uint8)])
    with torch.no_grad():
        return [model.extract_features(images)[0]["p3"] for _ in range(2)]


def test_stage2_trains_on_the_features_the_test_sees():
    torch.manual_seed(0)
    model = build_model(tiny_cfg(stage=2, FEATURE_DROPOUT=0.5)).train()
    assert not model.feature_dropout.training
    a, b = _features_twice(model)
    torch.testing.assert_close(a, b)


def test_stage1_keeps_feature_dropout():
    torch.manual_seed(0)
    model = build_model(tiny_cfg(stage=1, FEATURE_DROPOUT=0.5)).train()
    assert model.feature_dropout.training
    a, b = _features_twice(model)
    assert not torch.equal(a, b)
