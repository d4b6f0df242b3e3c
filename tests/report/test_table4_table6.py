"""Tables 4 and 6 builders: paper values, this run's metrics, n/a when not run."""

from __future__ import annotations

import json

from weaksam.report import TABLES, table4, table6


def _write(d, name, obj):
    (d / name).write_text(json.dumps(obj))


def test_table4_reads_recall_and_ap(tmp_path):
    _write(tmp_path, "recall_weaksam.json", {"num_images": 3, "num_per_image": 21.25,
                                             "recall@0.5": 96.5, "recall@0.75": 70.0,
                                             "recall@0.9": 30.0})
    _write(tmp_path, "wsod_mist_weaksam.json", {"ap50": 41.26})
    md = table4.build(tmp_path)
    assert "| +Cross (this run) | 21.2 [1] | 96.5 [1] | 70.0 [1] | 30.0 [1] | 41.3 [2] |" in md
    assert "| +Cross (paper) | 213 | 95.6 | 75.0 | 42.1 | 67.4 | paper |" in md
    # nothing else was run: those rows are n/a
    assert "| Dense (this run) | n/a: not run | n/a: not run" in md
    assert "recall_prompts@weaksam" in md and TABLES["table4"] is table4.build


def test_table6_reads_times(tmp_path):
    _write(tmp_path, "proposals_time_weaksam.json",
           {"seconds_per_image": 0.125, "total_seconds": 75.0, "num_images": 600})
    _write(tmp_path, "recall_weaksam.json", {"num_per_image": 20.0})
    md = table6.build(tmp_path)
    assert "| Ours (WeakSAM) (this run) | 20.0 [1] | 75.0 s [2] | 0.125 [2] | n/a: not run" in md
    assert "| SS (paper) | 2001 | 11.6 hrs | n/a: not run | 16 hrs |" in md
    assert "| SS (this run) | n/a: not run |" in md and TABLES["table6"] is table6.build
