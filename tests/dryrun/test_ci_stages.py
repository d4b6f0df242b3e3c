"""CI's dry run (``make dryrun``) runs one instance of every stage of ``paper_voc07`` but the
report: the Makefile's ``DRYRUN_CI_STAGES`` must name real stages of that profile's DAG and
leave no stage kind out (a new stage joins the list, or CI never runs it with the paper's
models)."""

from __future__ import annotations

import re
from pathlib import Path

from weaksam.dryrun.cost import load_config, stage_names

ROOT = Path(__file__).resolve().parents[2]
#: stages CI's dry run leaves out, with the reason
LEFT_OUT = {"report": "needs every stage; make dryrun-all runs it"}


def ci_stages(makefile: Path = ROOT / "Makefile") -> list[str]:
    """The names of ``DRYRUN_CI_STAGES`` in ``makefile`` (continuation lines joined)."""
    text = makefile.read_text().replace("\\\n", " ")
    m = re.search(r"^DRYRUN_CI_STAGES\s*:?=(.*)$", text, re.MULTILINE)
    assert m, f"{makefile}: no DRYRUN_CI_STAGES"
    return m.group(1).split()


def test_ci_stages_are_stages_of_paper_voc07() -> None:
    cfg = load_config("paper_voc07", ROOT / "configs", ROOT / "params.yaml")
    names = {name for name, _, _ in stage_names(ROOT / "dvc.yaml", cfg)}
    unknown = [s for s in ci_stages() if s not in names]
    assert not unknown, f"DRYRUN_CI_STAGES names stages paper_voc07 does not have: {unknown}"


def test_ci_stages_cover_every_stage_kind() -> None:
    cfg = load_config("paper_voc07", ROOT / "configs", ROOT / "params.yaml")
    bases = {base for _, base, _ in stage_names(ROOT / "dvc.yaml", cfg)}
    listed = {s.split("@")[0] for s in ci_stages()}
    missing = sorted(bases - listed - set(LEFT_OUT))
    assert not missing, f"stages CI's dry run never runs (add one instance to " \
                        f"DRYRUN_CI_STAGES in the Makefile): {missing}"
    assert not listed & set(LEFT_OUT)


def test_the_make_target_passes_the_list(tmp_path: Path) -> None:
    text = (ROOT / "Makefile").read_text()
    target = re.search(r"^dryrun:.*?(?=^\S)", text, re.MULTILINE | re.DOTALL)
    assert target and "--stages $(DRYRUN_CI_STAGES)" in target.group(0)
    # the parser joins continuation lines: a list cut short would fail here
    fake = tmp_path / "Makefile"
    fake.write_text("DRYRUN_CI_STAGES := data \\\n\tproposals\nother: x\n")
    assert ci_stages(fake) == ["data", "proposals"]
