"""projects.utils.track_drawing (the demo's drawing): labels never overlap on a crowded frame and sit inside or
beside their mask; a track keeps its colour across frames whatever else is present, in the demo too."""

import numpy as np
import pytest
import torch
from detectron2.data.catalog import Metadata
from detectron2.structures import Instances

from projects.utils.track_drawing import draw_tracks, label_variants, layout_labels, track_color


def _disc(h, w, cx, cy, r):
    ys, xs = np.mgrid[:h, :w]
    return (xs - cx) ** 2 + (ys - cy) ** 2 <= r * r


def _crowded(n=40, h=120, w=160, seed=0):
    rng = np.random.default_rng(seed)
    return np.stack([_disc(h, w, *rng.integers([10, 10], [w - 10, h - 10]), rng.integers(4, 18)) for _ in range(n)])


def _bbox(mask):
    ys, xs = np.where(mask)
    return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1


def _gap(a, b):
    """Pixels between two (x0, y0, x1, y1) boxes along x and along y (0 when they touch or overlap)."""
    return max(a[0] - b[2], b[0] - a[2], 0), max(a[1] - b[3], b[1] - a[3], 0)


def test_labels_do_not_overlap_on_a_crowded_frame():
    masks = _crowded()
    n, h, w = masks.shape
    scores = np.linspace(0.99, 0.3, n)
    texts = [label_variants(100 + i, "a_long_class_name", s) for i, s in enumerate(scores)]
    placed = layout_labels(masks, texts, scores)
    boxes = [p[0] for p in placed if p is not None]
    assert len(boxes) >= 10  # a crowded frame still labels many of its tracks
    for i, a in enumerate(boxes):
        assert 0 <= a[0] < a[2] <= w and 0 <= a[1] < a[3] <= h  # inside the frame
        for b in boxes[i + 1 :]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (a, b)  # disjoint
    for i, p in enumerate(placed):
        if p is not None:  # inside or beside its own mask
            assert max(_gap(p[0], _bbox(masks[i]))) <= 1, (i, p)
            assert p[1] in texts[i]
    # crowding shrinks or shortens labels; the best-scored track gets the full label
    assert placed[0][1] == texts[0][0]
    assert any(p is not None and (p[1] != texts[i][0] or p[2] < placed[0][2]) for i, p in enumerate(placed))
    image = draw_tracks(
        np.zeros((h, w, 3), np.uint8), masks, list(range(100, 100 + n)), ["a_long_class_name"] * n, scores
    )
    assert image.shape == (h, w, 3) and image.dtype == np.uint8


def test_separate_objects_get_full_labels_inside_their_mask():
    h, w = 200, 300
    masks = np.stack([_disc(h, w, 60, 60, 40), _disc(h, w, 220, 60, 40), _disc(h, w, 150, 150, 40)])
    texts = [label_variants(i, "disc", 0.9) for i in range(3)]
    placed = layout_labels(masks, texts, [0.9, 0.8, 0.7])
    for i, p in enumerate(placed):
        assert p is not None and p[1] == f"#{i} disc 0.90"
        x0, y0, x1, y1 = p[0]
        assert masks[i][(y0 + y1) // 2, (x0 + x1) // 2]  # centred inside the mask
    assert layout_labels(np.zeros((1, h, w), bool), [["#1"]]) == [None]  # an empty mask has no label


def _blend(color_rgb, alpha=0.5):
    return np.round(np.asarray(color_rgb)[::-1] * 255.0 * alpha).astype(int)  # over a black frame


def _plain_pixels(masks, i, placed):
    """Pixels of mask i away from its outline and from every label."""
    inner = masks[i].copy()
    for _ in range(2):  # erode by 2 px (the outline is 1 px, anti-aliased)
        inner[1:-1, 1:-1] &= inner[:-2, 1:-1] & inner[2:, 1:-1] & inner[1:-1, :-2] & inner[1:-1, 2:]
    for p in placed:
        if p is not None:
            x0, y0, x1, y1 = p[0]
            inner[y0:y1, x0:x1] = False
    return inner


def test_a_track_keeps_its_colour_across_frames():
    h, w = 100, 160
    frame = np.zeros((h, w, 3), np.uint8)
    # frame 1: tracks 3 and 5; frame 2: tracks 9, 5, 3 in another order, at other places, other scores
    m1 = np.stack([_disc(h, w, 40, 50, 25), _disc(h, w, 110, 50, 25)])
    m2 = np.stack([_disc(h, w, 30, 30, 20), _disc(h, w, 80, 70, 22), _disc(h, w, 130, 40, 20)])
    f1 = draw_tracks(frame, m1, [3, 5], ["a", "b"], [0.9, 0.4])
    f2 = draw_tracks(frame, m2, [9, 5, 3], ["c", "b", "a"], [0.2, 0.95, 0.5])
    p1 = layout_labels(m1, [label_variants(3, "a", 0.9), label_variants(5, "b", 0.4)], [0.9, 0.4])
    p2 = layout_labels(
        m2, [label_variants(9, "c", 0.2), label_variants(5, "b", 0.95), label_variants(3, "a", 0.5)], [0.2, 0.95, 0.5]
    )
    for tid, (i1, i2) in {3: (0, 2), 5: (1, 1)}.items():
        c1 = f1[_plain_pixels(m1, i1, p1)].astype(int)
        c2 = f2[_plain_pixels(m2, i2, p2)].astype(int)
        assert len(c1) > 50 and len(c2) > 50
        assert (c1 == _blend(track_color(tid))).all() and (c2 == _blend(track_color(tid))).all()
    assert not np.array_equal(track_color(3), track_color(5))


def test_track_colour_is_one_function_of_the_id():
    ids = range(50)
    colors = np.stack([track_color(i) for i in ids])
    assert len({tuple(c) for c in colors}) == len(colors)  # neighbouring ids never share a colour
    assert (np.ptp(colors, axis=1) > 0.05).all()  # no black / white / grey tracks (invisible on many videos)
    for i in (0, 7, 123456):
        assert np.array_equal(track_color(i), track_color(np.int64(i)))
        assert np.array_equal(track_color(i), track_color(torch.tensor(i)))


def test_the_demo_draws_with_the_track_colours():
    pytest.importorskip("imageio_ffmpeg")
    from demo.demo import draw_frame

    h, w = 100, 160
    masks = np.stack([_disc(h, w, 40, 50, 25), _disc(h, w, 110, 50, 25)])
    inst = Instances((h, w))
    inst.pred_masks = torch.from_numpy(masks)
    inst.track_ids = torch.tensor([17, 4])
    inst.pred_classes = torch.tensor([0, 1])
    inst.scores = torch.tensor([0.9, 0.2])
    image, drawn = draw_frame(np.zeros((h, w, 3), np.uint8), inst, Metadata(thing_classes=["x", "y"]), 0.3)
    assert drawn == 1  # track 4 is under the confidence threshold
    placed = layout_labels(masks[:1], [label_variants(17, "x", 0.9)], [0.9])
    assert (image[_plain_pixels(masks, 0, placed)].astype(int) == _blend(track_color(17))).all()
    assert not image[_plain_pixels(masks, 1, [])].any()  # not drawn
