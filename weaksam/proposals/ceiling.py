"""How good can point-prompted SAM proposals get? The ideal-prompt ceiling (paper Sec. 3.1).

WeakSAM's recall (Table 4) mixes two things: whether some prompt lands on an object, and whether
SAM turns a prompt on the object into its box. This module measures the second alone: every
ground-truth object is prompted with ONE ideal point, its innermost pixel (the maximum of the
distance transform of its mask: the point farthest from its boundary), and with its tight box.
The share of objects whose prompt yields a box at IoU >= t bounds what any one-point-per-object
prompting can reach with this SAM (the box prompt is the reference the paper's SAM nearly
saturates). Boxes are read exactly as the proposals stage reads them (``select_masks``,
``boxes_from_lowres``).

Shapes: ``mask (H, W)`` bool; ``masks (N, H, W)`` bool; ``boxes (N, 4)`` xyxy pixels
(x2/y2 exclusive); returned IoUs ``(N,)`` float64 in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.ndimage import distance_transform_edt
from torchvision.ops import box_iou

from weaksam.proposals.sam import SamPromptProposer, boxes_from_lowres, select_masks


def innermost_point(mask: np.ndarray) -> tuple[float, float]:
    """``(x, y)`` pixel centre of the mask pixel farthest from the background (first in raster
    order on ties). An empty mask raises ``ValueError``."""
    if not mask.any():
        raise ValueError("innermost_point of an empty mask")
    dist = distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]  # the frame counts as outside
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return float(x), float(y)


@dataclass
class CeilingIoUs:
    """Per-object box IoU of the best proposal from an ideal prompt, ``(N,)`` each."""

    kept: np.ndarray  # innermost point, the masks the proposals stage keeps (mask_indices)
    all3: np.ndarray  # innermost point, best of SAM's three masks
    box: np.ndarray  # tight box prompt, SAM's single mask


def _best_iou(pred: torch.Tensor, valid: torch.Tensor, gt: np.ndarray) -> float:
    """Highest IoU of the valid boxes ``pred (K, 4)`` with ``gt (4,)`` (0 if none is valid)."""
    if not bool(valid.any()):
        return 0.0
    g = torch.as_tensor(gt, dtype=torch.float64)[None]
    return float(box_iou(pred[valid].double(), g).max())


@torch.no_grad()
def ideal_prompt_ious(proposer: SamPromptProposer, image: np.ndarray,
                      points: np.ndarray, boxes: np.ndarray) -> CeilingIoUs:
    """Prompt SAM once per object of ``image`` (``(H, W, 3)`` uint8) with ``points (N, 2)``
    (xy, e.g. :func:`innermost_point`) and with ``boxes (N, 4)``; compare to ``boxes``."""
    n = len(boxes)
    out = CeilingIoUs(np.zeros(n), np.zeros(n), np.zeros(n))
    if n == 0:
        return out
    pred = proposer.predictor
    pred.set_image(image)
    sam, cfg, frame = proposer.sam, proposer.config, proposer.frame
    thr = sam.mask_threshold
    for i in range(n):
        _, iou, low = pred.predict(point_coords=points[i : i + 1].astype(np.float32),
                                   point_labels=np.array([1]), multimask_output=True)
        low_t, iou_t = torch.from_numpy(low)[None], torch.from_numpy(iou)[None]
        b3, v3 = boxes_from_lowres(low_t, pred.input_size, pred.original_size, frame, thr)
        low_k, _ = select_masks(low_t, iou_t, cfg, thr)
        bk, vk = boxes_from_lowres(low_k, pred.input_size, pred.original_size, frame, thr)
        _, _, low_b = pred.predict(box=boxes[i].astype(np.float32), multimask_output=False)
        bb, vb = boxes_from_lowres(torch.from_numpy(low_b)[None], pred.input_size,
                                   pred.original_size, frame, thr)
        out.all3[i] = _best_iou(b3[0], v3[0], boxes[i])
        out.kept[i] = _best_iou(bk[0], vk[0], boxes[i])
        out.box[i] = _best_iou(bb[0], vb[0], boxes[i])
    return out
