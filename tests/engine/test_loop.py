"""The epoch loop: epochs in order, hooks in order after each, stop after a hook."""

from __future__ import annotations

from weaksam.engine.loop import run_epochs


def test_hooks_run_in_order_and_stop_ends_the_loop():
    calls: list[tuple[str, int]] = []

    def train(epoch: int) -> dict[str, float]:
        calls.append(("train", epoch))
        return {"loss": float(epoch)}

    timing = run_epochs(range(2, 6), train,
                        [lambda e, m: calls.append(("a", int(m["loss"]))), None,
                         lambda e, m: calls.append(("b", e))],
                        stop=lambda e: e >= 3)
    assert calls == [("train", 2), ("a", 2), ("b", 2), ("train", 3), ("a", 3), ("b", 3)]
    assert timing.epochs_run == 2 and timing.seconds >= 0 and timing.cpu_seconds >= 0


def test_nothing_left_to_run_runs_nothing():
    assert run_epochs(range(3, 3), lambda e: {}, []).epochs_run == 0
