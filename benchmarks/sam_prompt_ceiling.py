"""Diagnostic: the ideal-prompt ceiling of WeakSAM proposals with this workspace's SAM.

Every ground-truth object of the split is prompted once with its innermost point and once with
its tight box (weaksam/proposals/ceiling.py). Prints, overall, for objects below / above the
median box side and per class, the share (%) whose prompt gives a box at IoU >= 0.5:

    kept   the masks the proposals stage keeps (params ``proposals.mask_indices``)
    all3   the best of SAM's three masks
    box    a box prompt (single mask)

and writes ``benchmarks/results/sam_prompt_ceiling.json``. No one-point-per-object prompting
(Table 4's sources) can beat ``kept`` on average; Selective Search's recall@0.5
(``metrics/recall_ss.json``) is printed beside it.

    python benchmarks/sam_prompt_ceiling.py [--images 400] [--split trainval] [--checkpoint P]

Objects without a segmentation are prompted at their box centre instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_utils
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.common import load_params  # noqa: E402
from pipeline.proposals import prompting_config  # noqa: E402
from weaksam.data.index import load_index, read_image  # noqa: E402
from weaksam.proposals.ceiling import ideal_prompt_ious, innermost_point  # noqa: E402
from weaksam.proposals.sam import SamPromptProposer  # noqa: E402
from weaksam.sam.checkpoint import load_sam  # noqa: E402

THR = 0.5


def share(x: np.ndarray) -> float:
    """Percentage of IoUs at or above THR (nan for no objects)."""
    return float(100 * (x >= THR).mean()) if len(x) else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--images", type=int, default=400)
    ap.add_argument("--split", default="trainval")
    ap.add_argument("--checkpoint", default=None, help="SAM checkpoint (default: params)")
    ap.add_argument("--out", default="benchmarks/results/sam_prompt_ceiling.json")
    args = ap.parse_args()
    params = load_params(args.params)
    torch.set_num_threads(int(params["runtime"]["threads"]) or torch.get_num_threads())
    ckpt = args.checkpoint or params["sam"]["checkpoint"]
    prop = SamPromptProposer(load_sam(params["sam"]["model"], ckpt),
                             prompting_config(params["proposals"]))
    index = load_index(Path("data/annotations") / f"{args.split}.json")
    names = dict(zip(index.category_ids, index.category_names, strict=True))
    rows: list[tuple[int, float, float, float, float]] = []  # cat, side, kept, all3, box
    t0 = time.perf_counter()
    for iid in tqdm(index.image_ids[: args.images], desc="ceiling", disable=None):
        anns = index.anns_of(iid)
        if not anns:
            continue
        boxes, cats, _ = index.gt_boxes(iid)
        pts = []
        for a, b in zip(anns, boxes, strict=True):
            seg = a.get("segmentation")
            mask = mask_utils.decode(seg).astype(bool) if isinstance(seg, dict) else None
            if mask is not None and mask.any():
                pts.append(innermost_point(mask))
            else:
                pts.append(((b[0] + b[2]) / 2, (b[1] + b[3]) / 2))
        r = ideal_prompt_ious(prop, read_image(index.image_path(iid)), np.array(pts), boxes)
        side = np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
        rows += list(zip(cats.tolist(), side, r.kept, r.all3, r.box, strict=True))
    arr = np.array(rows, dtype=np.float64).reshape(-1, 5)
    med = float(np.median(arr[:, 1])) if len(arr) else 0.0
    groups = {"all": arr, f"small (side < {med:.0f} px)": arr[arr[:, 1] < med],
              f"large (side >= {med:.0f} px)": arr[arr[:, 1] >= med]}
    groups |= {names[c]: arr[arr[:, 0] == c] for c in index.category_ids}
    result = {name: {"objects": len(g), "kept": share(g[:, 2]), "all3": share(g[:, 3]),
                     "box": share(g[:, 4])} for name, g in groups.items()}
    ss = Path("metrics/recall_ss.json")
    ss_recall = json.loads(ss.read_text()).get("recall@0.5") if ss.is_file() else None
    print(f"SAM {params['sam']['model']} ({ckpt}), {args.split}, {len(arr)} objects, "
          f"{time.perf_counter() - t0:.0f} s; share (%) with a box at IoU >= {THR}")
    print(f"{'group':<24} {'objects':>7} {'kept':>6} {'all3':>6} {'box':>6}")
    for name, v in result.items():
        print(f"{name:<24} {v['objects']:>7} {v['kept']:>6.1f} {v['all3']:>6.1f} {v['box']:>6.1f}")
    if ss_recall is not None:
        print(f"Selective Search recall@{THR} (metrics/recall_ss.json): {ss_recall:.1f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"checkpoint": str(ckpt), "split": args.split, "iou": THR,
                               "groups": result, "ss_recall": ss_recall}, indent=1) + "\n")


if __name__ == "__main__":
    main()
