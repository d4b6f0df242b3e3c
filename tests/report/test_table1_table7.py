"""Tables 1 and 7 (WSOD rows): paper numbers, this run's from metrics files, n/a when absent."""

from __future__ import annotations

import json

from weaksam.report import table1, table7


def test_tables_read_wsod_metrics_and_mark_missing_runs(tmp_path):
    (tmp_path / "wsod_mist_weaksam.json").write_text(json.dumps({"ap50": 61.234, "corloc": 70.0}))
    t1 = table1.build(tmp_path)
    assert "| WeakSAM (MIST) [WeakSAM] | 67.4 | 66.9 | 22.9 | 35.2 | 24.6 | paper |" in t1
    assert "| WeakSAM (MIST) [WeakSAM], this run | 61.2 [1] | n/a: not run" in t1
    assert "| OICR [SS], this run | n/a: not run |" in t1
    assert "`wsod@mist-weaksam`, `" in t1
    t7 = table7.build(tmp_path)
    assert "| MIST (Ren et al., 2020) [SS] | 68.8 | paper |" in t7
    assert "| WeakSAM (MIST) [WeakSAM], this run | 70.0 [1] | this run |" in t7
    assert "| OICR [SS], this run | n/a: not run | n/a: not run |" in t7
