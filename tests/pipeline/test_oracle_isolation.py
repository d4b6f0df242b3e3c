"""The hidden trainval boxes feed only reference and evaluation stages, never a stage of the
method (issue 24 item 3).

Every stage of dvc.yaml is classified: a stage of the method (what WeakSAM runs from image-level
labels) or a reference / evaluation / data / report stage. Then, on the DAG as DVC resolves it:

- only the oracle stages themselves and ``report`` depend on an output of the oracle stages
  (``oracle_pgt``, ``retrain_oracle``), so nothing of the method can be downstream of them;
- no stage of the method imports the oracle code (``weaksam/pgt/oracle.py``,
  ``pipeline/oracle_pgt.py``, ``pipeline/retrain_oracle.py``);
- the stage scripts of the method read the annotation files' boxes (``anns_of``, ``gt_boxes``,
  ``to_json``, ``annotations``, evaluation calls) only where listed below, each for evaluation or
  analysis after its outputs are written; anything else reads a split through ``WeakView``
  (image-level labels only). A new reader fails this test until it is reviewed and listed.
"""

from __future__ import annotations

import ast
from pathlib import Path, PurePosixPath

import pytest

from tests.pipeline.test_code_deps import ROOT, command_modules, covers, project_imports

METHOD = {"proposals_ss", "clues_train", "clues", "prompts", "sam_pretrain", "proposals",
          "backbone_pretrain", "wsod", "wsod_table4", "pgt", "retrain_features",
          "retrain_prelim", "retrain", "pseudo_masks", "wsis"}
ORACLE = {"oracle_pgt", "retrain_oracle"}
NOT_METHOD = {"data", "recall_ss", "recall_prompts", "pgt_figure", "retrain_figures", "figures",
              "wsis_gt", "wsis_figure", "report"} | ORACLE
ORACLE_READERS = ORACLE | {"report"}
ORACLE_CODE = {"weaksam/pgt/oracle.py", "pipeline/oracle_pgt.py", "pipeline/retrain_oracle.py"}

GT_ACCESSORS = {"anns_of", "gt_boxes", "to_json", "annotations"}
GT_CALLS = {"group_gt", "pgt_quality", "evaluate_voc", "coco_ap", "match_pgt", "oracle_pgt"}
# pipeline module -> why it reads annotation boxes (never before its method outputs exist)
ALLOWED_READERS = {
    "pipeline/clues.py": "pointing accuracy on trainval masks, after the clues are written",
    "pipeline/pgt.py": "PGT quality metrics, after the PGT is written",
    "pipeline/pseudo_masks.py": "pseudo-mask quality and its figure, after the masks are written",
    "pipeline/retrain.py": "test-split evaluation after training",
    "pipeline/wsod.py": "test-split evaluation after training",
    "pipeline/wsis.py": "test-split evaluation; trainval masks only for wsis_gt (--model "
                        "mask_rcnn_gt, the reference)",
}


def base(name: str) -> str:
    return name.split("@")[0]


def dag(root: Path) -> list[tuple[str, str, list[str], list[str]]]:
    """(name, command, deps, outs) of every stage of ``root/dvc.yaml``, items expanded."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return [(s.name, s.cmd if isinstance(s.cmd, str) else " ".join(s.cmd),
                 [str(d.def_path) for d in s.deps], [str(o.def_path) for o in s.outs])
                for s in repo.index.stages if s.path.endswith("dvc.yaml")]


def _overlaps(a: str, b: str) -> bool:
    return covers(a, b) or covers(b, a)


def oracle_dependents(stages) -> set[str]:
    """Stages (not oracle ones, not ``report``) with a dep on or inside an oracle output."""
    outs = [o for n, _, _, os in stages if base(n) in ORACLE for o in os]
    return {n for n, _, deps, _ in stages if base(n) not in ORACLE_READERS
            and any(_overlaps(d, o) for d in deps for o in outs)}


def gt_readers(path: Path) -> list[tuple[int, str]]:
    """(line, accessor) of every ground-truth read in a module (module docstring)."""
    hits = []
    for n in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(n, ast.Attribute) and n.attr in GT_ACCESSORS:
            hits.append((n.lineno, n.attr))
        elif (isinstance(n, ast.Subscript) and isinstance(n.slice, ast.Constant)
              and n.slice.value == "annotations"):
            hits.append((n.lineno, '["annotations"]'))
        elif isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in GT_CALLS:
            hits.append((n.lineno, n.func.id))
    return sorted(hits)


@pytest.fixture(scope="module")
def stages():
    return dag(ROOT)


def test_every_stage_is_classified(stages) -> None:
    names = {base(n) for n, *_ in stages}
    assert not METHOD & NOT_METHOD
    assert names - METHOD - NOT_METHOD == set(), "classify the new stages in this test"
    assert ORACLE <= names


def test_only_reference_stages_read_the_oracle_outputs(stages) -> None:
    assert oracle_dependents(stages) == set()


def test_no_method_stage_imports_the_oracle_code(stages) -> None:
    bad = {(n, f) for n, cmd, _, _ in stages if base(n) in METHOD
           for m in command_modules(cmd) for f in project_imports(ROOT, m) if f in ORACLE_CODE}
    assert bad == set()


def test_method_stage_scripts_read_boxes_only_where_listed(stages) -> None:
    found: dict[str, list[tuple[int, str]]] = {}
    for n, cmd, _, _ in stages:
        if base(n) not in METHOD:
            continue
        for m in command_modules(cmd):
            for f in project_imports(ROOT, m):
                if PurePosixPath(f).parts[0] == "pipeline" and (hits := gt_readers(ROOT / f)):
                    found[f] = hits
    unlisted = {f: h for f, h in found.items() if f not in ALLOWED_READERS}
    assert not unlisted, f"method stage scripts reading annotation boxes: {unlisted}"


# --- the checks on hand-made cases (so they can fail) ------------------------------------------

def test_oracle_dependents_finds_a_method_stage_on_oracle_outputs() -> None:
    stages = [("oracle_pgt", "", ["pgt/x/trainval.json"], ["oracle/pgt_gt", "oracle/pgt_tp"]),
              ("retrain_oracle@frcnn_gt", "", ["oracle/pgt_gt"], ["oracle/frcnn_gt"]),
              ("report", "", ["oracle/frcnn_gt/detections_test.json"], []),
              ("retrain@a", "", ["oracle/pgt_tp/trainval.json"], []),
              ("pseudo_masks", "", ["oracle"], []),
              ("wsod@b", "", ["data/annotations"], [])]
    assert oracle_dependents(stages) == {"retrain@a", "pseudo_masks"}


def test_gt_readers_finds_each_form(tmp_path: Path) -> None:
    p = tmp_path / "m.py"
    p.write_text("from weaksam.data.weak import WeakView\n"
                 "v = WeakView(index)\n"
                 "a = index.anns_of(1)\n"
                 "b = data['annotations']\n"
                 "c = pgt_quality(p, g)\n"
                 "d = index.to_json()\n")
    assert gt_readers(p) == [(3, "anns_of"), (4, '["annotations"]'), (5, "pgt_quality"),
                             (6, "to_json")]
