"""A direct, loop-and-boolean-index re-statement of YOLACT-R50's evaluation path on the *official* state-dict
layout (torchvision ResNet, ``fpn.lat_layers`` stored C5-first, ``proto_net`` Sequential indices, one shared
``prediction_layers.0``, background-first 81-way softmax), written from the YOLACT paper and its published
evaluation semantics. Tests compare ``vis_rgnn``'s sync-free, re-named implementation against it.

Also: ``official_state_dict_layout`` -- the 354 (key, shape) pairs of ``yolact_resnet50_config``'s checkpoint.
"""

from __future__ import annotations

import math
from itertools import product
from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F
import torchvision

MEANS_BGR = (103.94, 116.78, 123.68)
STD_BGR = (57.38, 57.12, 58.40)


def official_state_dict_layout(blocks=(3, 4, 6, 3), num_classes: int = 81, anchors: int = 3, protos: int = 32):
    """[(key, shape)] in Yolact.state_dict() order for a ResNet-50 (blocks (3, 4, 6, 3)) YOLACT."""
    out: List[Tuple[str, Tuple[int, ...]]] = []

    def bn(prefix, c):
        out.extend(
            [
                (f"{prefix}.weight", (c,)),
                (f"{prefix}.bias", (c,)),
                (f"{prefix}.running_mean", (c,)),
                (f"{prefix}.running_var", (c,)),
                (f"{prefix}.num_batches_tracked", ()),
            ]
        )

    inplanes = 64
    for li, n in enumerate(blocks):
        planes = 64 * 2**li
        for b in range(n):
            p = f"backbone.layers.{li}.{b}"
            out.append((f"{p}.conv1.weight", (planes, inplanes, 1, 1)))
            bn(f"{p}.bn1", planes)
            out.append((f"{p}.conv2.weight", (planes, planes, 3, 3)))
            bn(f"{p}.bn2", planes)
            out.append((f"{p}.conv3.weight", (planes * 4, planes, 1, 1)))
            bn(f"{p}.bn3", planes * 4)
            if b == 0:
                out.append((f"{p}.downsample.0.weight", (planes * 4, inplanes, 1, 1)))
                bn(f"{p}.downsample.1", planes * 4)
            inplanes = planes * 4
    out.append(("backbone.conv1.weight", (64, 3, 7, 7)))
    bn("backbone.bn1", 64)
    for i in (0, 2, 4, 8):
        out += [(f"proto_net.{i}.weight", (256, 256, 3, 3)), (f"proto_net.{i}.bias", (256,))]
    out += [("proto_net.10.weight", (protos, 256, 1, 1)), ("proto_net.10.bias", (protos,))]
    for i, c in enumerate((2048, 1024, 512)):
        out += [(f"fpn.lat_layers.{i}.weight", (256, c, 1, 1)), (f"fpn.lat_layers.{i}.bias", (256,))]
    for name in ("pred_layers.0", "pred_layers.1", "pred_layers.2", "downsample_layers.0", "downsample_layers.1"):
        out += [(f"fpn.{name}.weight", (256, 256, 3, 3)), (f"fpn.{name}.bias", (256,))]
    h = "prediction_layers.0"
    out += [(f"{h}.upfeature.0.weight", (256, 256, 3, 3)), (f"{h}.upfeature.0.bias", (256,))]
    for name, c in (
        ("bbox_layer", anchors * 4),
        ("conf_layer", anchors * num_classes),
        ("mask_layer", anchors * protos),
    ):
        out += [(f"{h}.{name}.weight", (c, 256, 3, 3)), (f"{h}.{name}.bias", (c,))]
    out += [("semantic_seg_conv.weight", (num_classes - 1, 256, 1, 1)), ("semantic_seg_conv.bias", (num_classes - 1,))]
    return out


def random_official_state_dict(seed: int = 0, **layout) -> Dict[str, torch.Tensor]:
    """Random tensors in the official layout, scaled so a forward pass stays numerically tame."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in official_state_dict_layout(**layout):
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(800000, dtype=torch.int64)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=g) + 0.5
        elif key.endswith("running_mean"):
            state[key] = torch.randn(shape, generator=g) * 0.1
        elif len(shape) == 1 and (".bn" in key or "downsample.1" in key or key.startswith("backbone.bn1")):
            state[key] = (
                (torch.rand(shape, generator=g) * 0.4 + 0.3)
                if key.endswith("weight")
                else torch.randn(shape, generator=g) * 0.1
            )
        elif len(shape) == 4:
            fan_in = shape[1] * shape[2] * shape[3]
            gain = 4.0 if "conf_layer" in key or "bbox_layer" in key else 1.0
            state[key] = torch.randn(shape, generator=g) * gain / math.sqrt(fan_in)
        else:
            state[key] = torch.randn(shape, generator=g) * 0.1
    return state


def _torchvision_resnet(state: Dict[str, torch.Tensor], blocks) -> torch.nn.Module:
    net = torchvision.models.resnet.ResNet(torchvision.models.resnet.Bottleneck, list(blocks))
    tv = {}
    for k, v in state.items():
        if k.startswith("backbone.layers."):
            li, rest = k[len("backbone.layers.") :].split(".", 1)
            tv[f"layer{int(li) + 1}.{rest}"] = v
        elif k.startswith("backbone."):
            tv[k[len("backbone.") :]] = v
    missing, unexpected = net.load_state_dict(tv, strict=False)
    assert set(missing) == {"fc.weight", "fc.bias"} and not unexpected, (missing, unexpected)
    return net.eval()


def _conv(x, state, prefix, **kw):
    return F.conv2d(x, state[prefix + ".weight"], state[prefix + ".bias"], **kw)


@torch.no_grad()
def reference_raw_outputs(state, image_bgr_hwc: torch.Tensor, max_size: int = 550, blocks=(3, 4, 6, 3)):
    """FastBaseTransform + network. Returns loc (A, 4), conf (A, 81) softmaxed, coeffs (A, 32), protos
    (h, w, 32), priors (A, 4)."""
    img = image_bgr_hwc.float().permute(2, 0, 1)[None]
    img = F.interpolate(img, (max_size, max_size), mode="bilinear", align_corners=False)
    img = (img - torch.tensor(MEANS_BGR).view(1, 3, 1, 1)) / torch.tensor(STD_BGR).view(1, 3, 1, 1)
    img = img[:, (2, 1, 0)]
    net = _torchvision_resnet(state, blocks)
    x = net.maxpool(net.relu(net.bn1(net.conv1(img))))
    c2 = net.layer1(x)
    c3 = net.layer2(c2)
    c4 = net.layer3(c3)
    c5 = net.layer4(c4)
    convouts = [c3, c4, c5]
    out = [None, None, None]
    x = None
    for i in range(3):  # lat_layers.0 is C5
        j = 2 - i
        lat = _conv(convouts[j], state, f"fpn.lat_layers.{i}")
        x = lat if x is None else F.interpolate(x, size=lat.shape[-2:], mode="bilinear", align_corners=False) + lat
        out[j] = x
    for i in range(3):
        j = 2 - i
        out[j] = F.relu(_conv(out[j], state, f"fpn.pred_layers.{i}", padding=1))
    for i in range(2):
        out.append(_conv(out[-1], state, f"fpn.downsample_layers.{i}", stride=2, padding=1))
    p = out[0]
    for i in (0, 2, 4):
        p = F.relu(_conv(p, state, f"proto_net.{i}", padding=1))
    p = F.relu(F.interpolate(p, scale_factor=2, mode="bilinear", align_corners=False))
    p = F.relu(_conv(p, state, "proto_net.8", padding=1))
    protos = F.relu(_conv(p, state, "proto_net.10"))[0].permute(1, 2, 0)
    locs, confs, coefs, priors = [], [], [], []
    scales = [24, 48, 96, 192, 384]
    for level, f in enumerate(out):
        t = F.relu(_conv(f, state, "prediction_layers.0.upfeature.0", padding=1))
        locs.append(_conv(t, state, "prediction_layers.0.bbox_layer", padding=1).permute(0, 2, 3, 1).reshape(-1, 4))
        confs.append(_conv(t, state, "prediction_layers.0.conf_layer", padding=1).permute(0, 2, 3, 1).reshape(-1, 81))
        coefs.append(
            torch.tanh(_conv(t, state, "prediction_layers.0.mask_layer", padding=1)).permute(0, 2, 3, 1).reshape(-1, 32)
        )
        h, w = f.shape[-2:]
        for j, i in product(range(h), range(w)):
            for ar in (1, 0.5, 2):
                side = scales[level] * math.sqrt(ar) / max_size
                priors.append([(i + 0.5) / w, (j + 0.5) / h, side, side])
    return (torch.cat(locs), torch.cat(confs).softmax(-1), torch.cat(coefs), protos, torch.tensor(priors))


def _jaccard(a, b):
    lt = torch.max(a[:, :, None, :2], b[:, None, :, :2])
    rb = torch.min(a[:, :, None, 2:], b[:, None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)

    def area(x):
        return (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])

    return inter / (area(a)[:, :, None] + area(b)[:, None, :] - inter)


@torch.no_grad()
def reference_detect(
    loc, conf, coefs, protos, priors, out_h, out_w, conf_thresh=0.05, nms_thresh=0.5, top_k=200, max_num=100
):
    """Decode, candidate filter, per-class sort + Fast NMS, global top, crop, upsample, binarise, boxes."""
    boxes = torch.cat(
        [priors[:, :2] + loc[:, :2] * 0.1 * priors[:, 2:], priors[:, 2:] * torch.exp(loc[:, 2:] * 0.2)], 1
    )
    low = boxes[:, :2] - boxes[:, 2:] / 2
    boxes = torch.cat([low, boxes[:, 2:] + low], 1)
    cur = conf.t()[1:]  # (80, A)
    keep = cur.max(dim=0).values > conf_thresh
    scores, boxes, coefs = cur[:, keep], boxes[keep], coefs[keep]
    if scores.shape[1] == 0:
        return None
    scores, idx = scores.sort(1, descending=True)
    idx, scores = idx[:, :top_k], scores[:, :top_k]
    c, d = idx.shape
    b = boxes[idx.reshape(-1)].view(c, d, 4)
    m = coefs[idx.reshape(-1)].view(c, d, -1)
    iou = _jaccard(b, b).triu_(diagonal=1)
    kept = iou.max(dim=1).values <= nms_thresh
    classes = torch.arange(c)[:, None].expand_as(kept)[kept]
    b, m, scores = b[kept], m[kept], scores[kept]
    scores, order = scores.sort(0, descending=True)
    order, scores = order[:max_num], scores[:max_num]
    classes, b, m = classes[order], b[order], m[order]
    masks = torch.sigmoid(protos @ m.t())  # (h, w, n)
    ph, pw, n = masks.shape

    def sanitize(x1, x2, size, pad):
        x1, x2 = x1 * size, x2 * size
        return torch.clamp(torch.min(x1, x2) - pad, min=0), torch.clamp(torch.max(x1, x2) + pad, max=size)

    x1, x2 = sanitize(b[:, 0], b[:, 2], pw, 1)
    y1, y2 = sanitize(b[:, 1], b[:, 3], ph, 1)
    cols = torch.arange(pw, dtype=x1.dtype).view(1, -1, 1).expand(ph, pw, n)
    rows = torch.arange(ph, dtype=x1.dtype).view(-1, 1, 1).expand(ph, pw, n)
    crop = (cols >= x1) & (cols < x2) & (rows >= y1) & (rows < y2)
    masks = (masks * crop.float()).permute(2, 0, 1)
    masks = F.interpolate(masks[None], (out_h, out_w), mode="bilinear", align_corners=False)[0] > 0.5
    bx1, bx2 = sanitize(b[:, 0], b[:, 2], out_w, 0)
    by1, by2 = sanitize(b[:, 1], b[:, 3], out_h, 0)
    boxes_px = torch.stack([bx1, by1, bx2, by2], 1).long()
    return classes, scores, boxes_px, masks
