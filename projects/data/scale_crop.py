"""Random scale, then centre-pad / random-crop to a fixed size: the RGNN-VIS release's training augmentation.

RGNN-VIS App. C.2: "we first uniformly sample height and width ... and then randomly crop with zero-padding to get
an image of size [480 x 864]. We make sure to remove any objects that have disappeared due to the cropping. Last,
we randomly flip the image horizontally. ... we use the same augmentation for all images in a given sequence."
What the authors' release (github joakimjohnander/RGNNVIS) does, and how it is ported (``INPUT.SCALE_CROP``):

* Set-up (``runfiles/w49/rgnnvis_resnet50.py`` L83-93): ``YTVIS(imsize=None)`` keeps frames at their size and
  ``ScaleCropAugment(get_scale_factors=0.475 + 0.525 * rand(1).expand(2), imsize=(480, 864))`` then
  ``HorizontalFlipAugment()``, both called once on the whole (L, 3, H, W) clip (``rgnnvis/datasets/ytvis.py``
  L316): one scale, one crop and one flip per clip. Here: :class:`RandomScaleCrop` before detectron2's
  ``RandomFlip``; the video mapper draws the transforms on a clip's first frame and applies them to all of its
  frames (:class:`~projects.data.video_mapper.VideoDatasetMapper`).
* Scale (``rgnnvis/datasets/dataset_transforms.py`` ``ScaleCropAugment``, L20-29): one factor s ~ U(0.475, 1.0)
  for both axes (aspect kept), ``F.interpolate(scale_factor=s)``: bilinear without antialiasing for the image,
  nearest for the masks, output floor(H s) x floor(W s); boxes scaled by s (not re-derived from the masks,
  ``resample_boxes=False``). The release trains on 720 x 1280 videos only (``ytvis.py`` ``_filter_videos``
  L97-101); here a frame of another size is first brought to fit in ``REFERENCE_SIZE`` (720, 1280), i.e. the
  factor is s * min(720 / H, 1280 / W), which is s for 720p (``REFERENCE_SIZE ()``: s of the frame itself).
  The resize is torch's ``interpolate`` on the uint8 frame converted to float (rounded back to uint8),
  not detectron2's PIL path, which antialiases when shrinking.
* Pad (L31-41): each side shorter than the output is padded to it, centred (left / top get the ceil of half the
  missing pixels); the release pads its *normalised* tensor with 0, i.e. with the mean colour: here the frame is
  padded with ``MODEL.PIXEL_MEAN`` (rounded to uint8; 0.5 / 255 at most off after normalisation), masks with 0.
* Crop (L43-57): a uniform random integer offset in [0, padded size - output size] per axis, the output
  ``SIZE`` (480, 864); boxes translated, then clamped to the frame (L66-69, as detectron2's
  ``transform_instance_annotations``).
* Disappeared objects (L59-80): an object whose box centre (after the transform) lies outside the output frame
  is removed in that frame (box -1, its pixels set to background, ``active`` 0 / 2): here its annotation is
  dropped from that frame's ``Instances`` (:func:`box_centre_inside`, applied by the mapper), so its pixels are
  background and the object is "lost" there. Kept objects keep their clamped box even when their mask is cut. One
  difference: detectron2's ``filter_empty_instances`` (the mapper) also drops an object whose mask has no pixel
  left in the output although its box centre is inside, which the release keeps as active with an empty mask.
* Flip (``HorizontalFlipAugment``, L83-94): p = 0.5 for the whole clip, after the crop: ``INPUT.RANDOM_FLIP``.

The release's model then sees every training frame at exactly 480 x 864 (``rgnnvis/models/rgnn.py`` L1911-1913
asserts it in training and resizes only at test), so ``MODEL.RGNN.TRAIN_RESIZE`` stays ``[]`` with this
augmentation. ``ScaleCropAugment`` also sets the class label of every object that is not yet visible in some frame
of the clip (it enters the clip late, or its centre is cropped out of the first frames) to background (L80), which
only the release's track-classification loss reads: that is a loss target, not part of this augmentation, ported
as ``MODEL.RGNN.LOSS.LATE_OBJECT_CLASS "background"`` (``vis_rgnn/clip_targets.py``).
"""

from __future__ import annotations

import math
from typing import Any, Dict, Sequence, Tuple

import numpy as np
from detectron2.data import transforms as T
from detectron2.structures import BoxMode

__all__ = ["RandomScaleCrop", "TorchResizeTransform", "ColorPadTransform", "box_centre_inside", "build_scale_crop"]


class TorchResizeTransform(T.ResizeTransform):
    """detectron2's ``ResizeTransform`` with torch's ``interpolate`` also for uint8 arrays (bilinear,
    ``align_corners=False``, no antialiasing; masks nearest): uint8 / bool inputs are resized as float32 and
    converted back (rounded, clipped to 0..255)."""

    def apply_image(self, img: np.ndarray, interp=None) -> np.ndarray:
        if img.dtype == np.uint8 or img.dtype == bool:
            out = super().apply_image(img.astype(np.float32), interp)
            if img.dtype == bool:
                return out >= 0.5
            return np.clip(np.rint(out), 0, 255).astype(np.uint8)
        return super().apply_image(img, interp)


class ColorPadTransform(T.PadTransform):
    """``PadTransform`` whose image ``pad_value`` may be one value per channel (the frame's mean colour)."""

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        value = np.asarray(self.pad_value)
        if value.ndim == 0 or img.ndim != 3:
            return super().apply_image(img)
        if value.shape != (img.shape[2],):
            raise ValueError(f"pad value {value.tolist()} does not match an image of {img.shape[2]} channels")
        h, w = img.shape[:2]
        out = np.empty((self.y0 + h + self.y1, self.x0 + w + self.x1, img.shape[2]), dtype=img.dtype)
        out[...] = value.astype(img.dtype)
        out[self.y0 : self.y0 + h, self.x0 : self.x0 + w] = img
        return out


class RandomScaleCrop(T.Augmentation):
    """Scale by s ~ U(``scale_range``) (relative to the frame fitted into ``reference_size``; ``()``: to the frame
    itself), centre-pad each side shorter than ``output_size`` = (H, W) with ``pad_value`` (one value or one per
    channel), then crop (H, W) at a uniform random offset. The release's ``ScaleCropAugment`` (module doc)."""

    def __init__(
        self,
        scale_range: Tuple[float, float],
        output_size: Tuple[int, int],
        reference_size: Sequence[int] = (),
        pad_value: Any = 0,
    ):
        super().__init__()
        lo, hi = (float(x) for x in scale_range)
        if not 0 < lo <= hi:
            raise ValueError(f"INPUT.SCALE_CROP.SCALE_RANGE must be 0 < low <= high, got {tuple(scale_range)}")
        if len(output_size) != 2 or min(output_size) < 1:
            raise ValueError(f"INPUT.SCALE_CROP.SIZE must be (height, width) >= 1, got {tuple(output_size)}")
        if len(reference_size) not in (0, 2) or (reference_size and min(reference_size) < 1):
            raise ValueError(f"INPUT.SCALE_CROP.REFERENCE_SIZE must be () or (height, width), got {reference_size}")
        self.scale_range = (lo, hi)
        self.output_size = (int(output_size[0]), int(output_size[1]))
        self.reference_size = tuple(int(x) for x in reference_size)
        self.pad_value = pad_value

    def get_transform(self, image: np.ndarray) -> T.Transform:
        h, w = image.shape[:2]
        base = min(self.reference_size[0] / h, self.reference_size[1] / w) if self.reference_size else 1.0
        factor = base * float(self._rand_range(*self.scale_range))
        new_h, new_w = max(1, math.floor(h * factor)), max(1, math.floor(w * factor))
        out_h, out_w = self.output_size
        transforms = [TorchResizeTransform(h, w, new_h, new_w)]
        pad_h, pad_w = max(0, out_h - new_h), max(0, out_w - new_w)
        if pad_h or pad_w:
            top, left = math.ceil(pad_h / 2), math.ceil(pad_w / 2)
            transforms.append(
                ColorPadTransform(left, top, pad_w - left, pad_h - top, new_w, new_h, self.pad_value, seg_pad_value=0)
            )
        padded_h, padded_w = new_h + pad_h, new_w + pad_w
        y0 = int(np.random.randint(padded_h - out_h + 1))
        x0 = int(np.random.randint(padded_w - out_w + 1))
        if (padded_h, padded_w) != (out_h, out_w):
            transforms.append(T.CropTransform(x0, y0, out_w, out_h, padded_w, padded_h))
        return T.TransformList(transforms)


def box_centre_inside(annotation: Dict[str, Any], transforms: T.Transform, image_shape: Tuple[int, int]) -> bool:
    """Whether the centre of ``annotation``'s box, mapped by ``transforms``, lies in the output frame
    (0 <= x <= W, 0 <= y <= H): the release's test of an object that the crop has not removed (module doc)."""
    x0, y0, x1, y1 = BoxMode.convert(list(annotation["bbox"]), annotation["bbox_mode"], BoxMode.XYXY_ABS)
    ((cx, cy),) = transforms.apply_coords(np.array([[(x0 + x1) / 2, (y0 + y1) / 2]], dtype=np.float64))
    return bool(0 <= cx <= image_shape[1] and 0 <= cy <= image_shape[0])


def build_scale_crop(cfg) -> RandomScaleCrop:
    """``INPUT.SCALE_CROP`` of ``cfg``; the pad colour is ``MODEL.PIXEL_MEAN`` (``INPUT.FORMAT`` order)."""
    sc = cfg.INPUT.SCALE_CROP
    mean = [float(m) for m in cfg.MODEL.PIXEL_MEAN]
    pad = np.clip(np.rint(mean), 0, 255).astype(np.uint8) if len(mean) == 3 else 0
    return RandomScaleCrop(sc.SCALE_RANGE, sc.SIZE, sc.REFERENCE_SIZE, pad)
