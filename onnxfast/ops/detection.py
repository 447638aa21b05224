"""Detection operators: NonMaxSuppression."""

from __future__ import annotations

import numpy as np

from .. import errors
from ..registry import op
from ._common import invalid


def _scalar(x, default, cast):
    if x is None:
        return default
    a = np.asarray(x).reshape(-1)
    return cast(a[0]) if a.size else default


@op("NonMaxSuppression", since=10)
def nms_10(node):
    center = int(node.attr("center_point_box", 0))
    if center not in (0, 1):
        invalid(node, f"center_point_box must be 0 or 1, got {center}", errors.InvalidModel)

    def run(boxes, scores, max_output_boxes_per_class=None, iou_threshold=None, score_threshold=None):
        if boxes.ndim != 3 or boxes.shape[2] != 4:
            invalid(node, f"boxes must have shape (batch, num_boxes, 4), got {boxes.shape}")
        if scores.ndim != 3 or scores.shape[0] != boxes.shape[0] or scores.shape[2] != boxes.shape[1]:
            invalid(node, f"scores of shape {scores.shape} do not match boxes of shape {boxes.shape}")
        max_out = _scalar(max_output_boxes_per_class, 0, int)
        iou_t = _scalar(iou_threshold, 0.0, float)
        score_t = _scalar(score_threshold, None, float)
        nb, nc, _ = scores.shape
        if max_out <= 0 or boxes.shape[1] == 0:
            return np.zeros((0, 3), dtype=np.int64)
        b = boxes.astype(np.float64)
        if center:
            xc, yc, w, h = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
            y1, y2, x1, x2 = yc - h / 2, yc + h / 2, xc - w / 2, xc + w / 2
        else:
            y1 = np.minimum(b[..., 0], b[..., 2])
            y2 = np.maximum(b[..., 0], b[..., 2])
            x1 = np.minimum(b[..., 1], b[..., 3])
            x2 = np.maximum(b[..., 1], b[..., 3])
        area = (y2 - y1) * (x2 - x1)
        sc = scores.astype(np.float64)
        out = []
        for bi in range(nb):
            for ci in range(nc):
                s = sc[bi, ci]
                cand = np.nonzero(s > score_t)[0] if score_t is not None else np.arange(s.shape[0])
                if cand.size == 0:
                    continue
                order = cand[np.argsort(-s[cand], kind="stable")]
                by1, by2, bx1, bx2, ba = y1[bi], y2[bi], x1[bi], x2[bi], area[bi]
                kept: list[int] = []
                alive = np.ones(order.shape[0], dtype=bool)
                for pos in range(order.shape[0]):
                    if not alive[pos]:
                        continue
                    i = int(order[pos])
                    kept.append(i)
                    if len(kept) >= max_out:
                        break
                    rest = order[pos + 1:]
                    ih = np.clip(np.minimum(by2[i], by2[rest]) - np.maximum(by1[i], by1[rest]), 0, None)
                    iw = np.clip(np.minimum(bx2[i], bx2[rest]) - np.maximum(bx1[i], bx1[rest]), 0, None)
                    inter = ih * iw
                    union = ba[i] + ba[rest] - inter
                    valid = (ba[i] > 0) & (ba[rest] > 0) & (union > 0)
                    with np.errstate(invalid="ignore", divide="ignore"):
                        iou = np.where(valid, inter / np.where(union > 0, union, 1), 0.0)
                    alive[pos + 1:] &= ~(iou > iou_t)
                out.extend((bi, ci, k) for k in kept)
        if not out:
            return np.zeros((0, 3), dtype=np.int64)
        return np.asarray(out, dtype=np.int64)

    return run
