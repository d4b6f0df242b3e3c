"""The non-finite loss check."""

from __future__ import annotations

import math

import pytest

from weaksam.engine.guard import check_finite
from weaksam.errors import TrainingError


def test_finite_loss_passes():
    check_finite(1.5, stage="wsis", epoch=0, step=0)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_loss_raises_naming_stage_step_and_losses(value):
    with pytest.raises(TrainingError) as err:
        check_finite(value, stage="retrain", epoch=2, step=7,
                     losses={"loss_classifier": value, "loss_box_reg": 0.5},
                     checkpoint="checkpoints/retrain_x/last.pt")
    msg = str(err.value)
    assert msg.startswith(f"retrain: non-finite loss {value} at epoch 2, step 7")
    assert "'loss_classifier'" in msg and "'loss_box_reg': 0.5" in msg
    assert msg.endswith("last good checkpoint kept at checkpoints/retrain_x/last.pt")
