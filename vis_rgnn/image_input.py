"""Input preparation shared by the RGNN-VIS models and the detectron2 single-image call of their segmenter.

``prepare_images``: uint8 (3, h, w) images in ``INPUT.FORMAT`` -> optional bilinear resize to ``TEST_RESIZE``
(inference only) -> ``(x - PIXEL_MEAN) / PIXEL_STD`` -> optional channel reversal to ``NETWORK_FORMAT`` -> padded
``ImageList``. With the YOLACT config (BGR input, resize 550 x 550, means / stds of YOLACT in BGR order,
``NETWORK_FORMAT RGB``) this is YOLACT's ``FastBaseTransform``: resize, normalise, BGR -> RGB.

The online video step (``RGNNVIS.step``) preprocesses each frame with the same call, so a frame of a video and
the same picture given as an image reach the network identically.

``segment_images``: the standard detectron2 image call ``model([{"image", "height", "width"}])`` ->
``[{"instances": Instances}]`` with pred_boxes, scores, pred_classes and bool pred_masks at (height, width),
so ``DefaultPredictor``, ``inference_on_dataset`` and ``COCOEvaluator`` run on any stage-1 model.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from detectron2.structures import BitMasks, Boxes, ImageList, Instances

from projects.modeling.online import normalize_image, pad_frame

from .detector import segmenter_features

__all__ = [
    "prepare_images",
    "is_image_batch",
    "segment_images",
    "channel_flip",
    "resize_training_instances",
    "warn_train_resize",
]
logger = logging.getLogger(__name__)


def channel_flip(input_format: str, network_format: str) -> bool:
    """Whether the channels must be reversed between the loader's and the backbone's formats."""
    network_format = network_format or input_format
    pair = {input_format, network_format}
    if input_format != network_format and pair != {"RGB", "BGR"}:
        raise ValueError(
            f"MODEL.RGNN.NETWORK_FORMAT {network_format!r} cannot be reached from INPUT.FORMAT {input_format!r}"
        )
    return input_format != network_format


def prepare_images(
    images: Sequence[torch.Tensor],
    pixel_mean: torch.Tensor,
    pixel_std: torch.Tensor,
    size_divisibility: int,
    resize: Tuple[int, ...] = (),
    flip_channels: bool = False,
) -> ImageList:
    """images: uint8 (3, h, w); pixel_mean / pixel_std: (3, 1, 1) on the target device, input channel order.
    ``resize`` = (H, W) or empty. Returns the normalised batch (B, 3, Hp, Wp), zero-padded at the bottom / right
    to the largest size rounded up to ``size_divisibility``, with the (h, w) of each image before padding.

    The one preprocessing of every RGNN-VIS / YOLACT input: training, the detectron2 image call and the online
    video step. The normalisation and a single frame's padding are those of every online model
    (:func:`projects.modeling.online.normalize_image` / :func:`~projects.modeling.online.pad_frame`); the padded
    size is computed from Python ints, so the per-frame step reads nothing back from the device here."""
    out = []
    for x in images:
        if x.dim() != 3 or x.shape[0] != 3:
            raise ValueError(f"expected a (3, h, w) image tensor, got shape {tuple(x.shape)}")
        x = x.to(pixel_mean.device, non_blocking=True).float()
        if resize:
            x = F.interpolate(x[None], size=tuple(resize), mode="bilinear", align_corners=False)[0]
        x = normalize_image(x, pixel_mean, pixel_std)
        if flip_channels:
            x = x.flip(0)
        out.append(x)
    sizes = [(int(x.shape[-2]), int(x.shape[-1])) for x in out]
    d = max(size_divisibility, 1)
    hp, wp = (-(-max(s[i] for s in sizes) // d) * d for i in (0, 1))
    if len(out) == 1:  # a video frame: the online step's padding
        batch = pad_frame(out[0], d)
    else:
        batch = out[0].new_zeros(len(out), 3, hp, wp)
        for i, (x, (h, w)) in enumerate(zip(out, sizes)):
            batch[i, :, :h, :w] = x
    return ImageList(batch, sizes)


def resize_training_instances(instances: Instances, image_size: Tuple[int, int], resize: Tuple[int, ...]) -> Instances:
    """Training targets of an image resized to ``resize`` = (H, W) by :func:`prepare_images` (``MODEL.RGNN.
    TRAIN_RESIZE``, aspect not kept) from ``image_size`` = (h, w):
    boxes scaled per axis, masks (BitMasks) resized bilinearly and thresholded at 0.5. Other fields are kept.
    Empty ``resize``: unchanged."""
    if not resize:
        return instances
    (h, w), (nh, nw) = tuple(image_size), tuple(resize)
    out = Instances((nh, nw))
    for name, value in instances.get_fields().items():
        if name == "gt_boxes":
            value = Boxes(value.tensor * value.tensor.new_tensor([nw / w, nh / h, nw / w, nh / h]))
        elif name == "gt_masks":
            m = value.tensor if isinstance(value, BitMasks) else value
            if m.shape[0]:
                m = F.interpolate(m[:, None].float(), size=(nh, nw), mode="bilinear", align_corners=False)[:, 0]
            else:
                m = m.new_zeros(0, nh, nw)
            value = BitMasks(m >= 0.5)
        out.set(name, value)
    return out


def warn_train_resize(cfg) -> bool:
    """Warn (and return True) when ``MODEL.RGNN.TRAIN_RESIZE`` would undo the loader's random training scale: a
    fixed resize of frames whose size ``INPUT.MIN_SIZE_TRAIN`` varies brings them all back to one scale. With
    ``INPUT.SCALE_CROP`` (the release's augmentation, fixed output size) it only rescales and no warning is given."""
    resize, inp = cfg.MODEL.RGNN.TRAIN_RESIZE, cfg.INPUT
    if not resize or inp.SCALE_CROP.ENABLED:
        return False
    varies = len(set(inp.MIN_SIZE_TRAIN)) > 1 and not (
        inp.MIN_SIZE_TRAIN_SAMPLING == "range" and inp.MIN_SIZE_TRAIN[0] == inp.MIN_SIZE_TRAIN[-1]
    )
    if varies:
        logger.warning(
            f"MODEL.RGNN.TRAIN_RESIZE {list(resize)} resizes every training frame back to one size, which cancels "
            f"the random scale of INPUT.MIN_SIZE_TRAIN {tuple(inp.MIN_SIZE_TRAIN)} "
            f"({inp.MIN_SIZE_TRAIN_SAMPLING}); use INPUT.SCALE_CROP for the release's scale jitter at a fixed size"
        )
    return varies


def is_image_batch(batched_inputs: List[Dict[str, Any]]) -> bool:
    """True for detectron2 image dicts (``image`` a (3, h, w) tensor), False for video dicts."""
    first = batched_inputs[0]["image"] if batched_inputs else None
    return isinstance(first, torch.Tensor) and first.dim() == 3


def training_images(
    batched_inputs: List[Dict[str, Any]], resize: Tuple[int, ...] = ()
) -> Tuple[List[torch.Tensor], List[Any]]:
    """Every frame of a training batch as an independent image with its ``Instances``: detectron2 image dicts
    (``image`` (3, h, w)) or this project's video clips (``image`` / ``instances``: lists of T), flattened
    clip-major. Used by the segmenter's single-image training (stage 1, App. A.1; YOLACT) and by stage 2.
    ``resize`` (``TRAIN_RESIZE``): the targets of images that :func:`prepare_images` resizes to it."""
    if any("instances" not in x for x in batched_inputs):
        raise ValueError("training needs 'instances' in every input dict")
    if is_image_batch(batched_inputs):
        frames, instances = [x["image"] for x in batched_inputs], [x["instances"] for x in batched_inputs]
    else:
        frames = [img for clip in batched_inputs for img in clip["image"]]
        instances = [inst for clip in batched_inputs for inst in clip["instances"]]
    return frames, [resize_training_instances(i, f.shape[-2:], resize) for f, i in zip(frames, instances)]


def segment_images(model: Any, batched_inputs: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Run ``model.backbone`` + ``model.detector.image_inference`` on image dicts. ``model.preprocess`` must map
    the list of images to an ImageList. Output size: the dict's (height, width), default the image's."""
    sizes = [
        (int(x.get("height", x["image"].shape[-2])), int(x.get("width", x["image"].shape[-1]))) for x in batched_inputs
    ]
    images = model.preprocess([x["image"] for x in batched_inputs])
    features = segmenter_features(model.backbone, model.detector, images.tensor)
    dets = model.detector.image_inference(features, images.image_sizes, tuple(images.tensor.shape[-2:]), sizes)
    return [{"instances": d} for d in dets]
