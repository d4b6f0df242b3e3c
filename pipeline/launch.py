"""Run a stage with the process count params give it (issue 22):

    python -m pipeline.launch N -m pipeline.<stage> [stage args...]

``dvc.yaml`` writes ``N`` as ``${runtime.nproc.<stage>}``, so ``dvc exp run -S
runtime.nproc.wsod=4`` trains WSOD on four GPUs (or four CPU processes) without an edit of
``dvc.yaml``, and a changed count reruns the stage (its command changed).

- ``N = 1``: the stage runs in this process, exactly as ``python -m pipeline.<stage>``.
- ``N > 1``: ``torchrun --standalone --nproc_per_node N -m pipeline.<stage> ...``
  (``torch.distributed.run``); each process joins the group with the backend of its device
  (gloo on the CPU, NCCL on CUDA: ``weaksam.utils.device.ddp_backend``), rank 0 writes.
  Only stages that declare ``TORCHRUN = True`` at module level run this way; any other stage
  with ``N > 1`` is an error naming the param, before a process starts. So is a CUDA device
  with fewer visible GPUs than ``N`` (or a named ``cuda:K`` with ``N > 1``): one rank per
  GPU. The device is ``runtime.device``, or the first set key of the stage's module-level
  ``DEVICE_PARAMS`` (for example ``("sam.device", "runtime.device")``).
- ``N = auto``: the visible GPUs when ``runtime.device`` is CUDA, else the CPU cores this
  process may use (``os.sched_getaffinity``). Outputs depend on the process count (the order of
  float additions in the gradient all-reduce, the split of the images), so ``auto`` trades
  byte-identity across machines for speed; the default profile names its counts.

The chosen count reaches the stage as ``WORLD_SIZE`` (torchrun) and ``WEAKSAM_NPROC_PARAM``
(what params asked), and training stages record both in their metrics
(:func:`processes_metrics`).
"""

from __future__ import annotations

import ast
import importlib.util
import os
import runpy
import sys
from pathlib import Path

import yaml

USAGE = "usage: python -m pipeline.launch N|auto -m pipeline.<stage> [stage args...]"


def _module_constant(module: str, name: str) -> object:
    """The literal a ``pipeline.<stage>`` module assigns to ``name`` at module level (read from
    its source, without running it); None when it assigns none or not a literal."""
    try:
        spec = importlib.util.find_spec(module)
    except ModuleNotFoundError:
        spec = None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        raise SystemExit(f"launch: {module}: no such stage module")
    path = Path(spec.origin)
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == name for t in node.targets):
            try:
                return ast.literal_eval(node.value)
            except ValueError:
                return None
    return None


def supports_torchrun(module: str) -> bool:
    """Whether ``module`` (a ``pipeline.<stage>`` name) assigns ``TORCHRUN = True`` at module
    level (read from its source, without running it)."""
    return _module_constant(module, "TORCHRUN") is True


def _device_name(stage_args: list[str], keys: tuple[str, ...] = ("runtime.device",)) -> str:
    """The stage's device in the params file it reads (``--params``, default params.yaml): the
    first of ``keys`` (dotted, e.g. ``sam.device``) set to a non-empty value; ``cpu`` when the
    file or every key is missing (the stage reports those itself)."""
    path = Path(stage_args[stage_args.index("--params") + 1]
                if "--params" in stage_args[:-1] else "params.yaml")
    try:
        params = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return "cpu"
    for key in keys:
        value: object = params
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value:
            return str(value)
    return "cpu"


def cpu_count() -> int:
    """CPU cores this process may run on (a ``taskset`` mask counts, unlike ``os.cpu_count``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def resolve_nproc(value: str, device: str) -> int:
    """The process count of param value ``value`` (a positive integer or ``auto``) for a stage
    on ``device``; ``ValueError`` naming the value otherwise."""
    text = str(value).strip().lower()
    if text == "auto":
        if device.strip().lower().startswith("cuda"):
            import torch

            n = torch.cuda.device_count()
            if n == 0:
                raise ValueError(f"runtime.nproc: auto with device {device!r}, but this machine "
                                 "has no CUDA device")
            return 1 if ":" in device else n
        return cpu_count()
    try:
        n = int(text)
    except ValueError:
        raise ValueError(f"runtime.nproc: {value!r} is not a process count "
                         "(expected a positive integer or auto)") from None
    if n < 1:
        raise ValueError(f"runtime.nproc: {value!r} (expected at least 1)")
    return n


def torchrun_args(nproc: int, module: str, stage_args: list[str]) -> list[str]:
    """The ``torch.distributed.run`` arguments that start ``nproc`` ranks of ``module``."""
    return ["--standalone", f"--nproc_per_node={nproc}", "--module", module, *stage_args]


def processes_metrics() -> dict[str, int | str]:
    """The process count a stage ran with, for its metrics file: ``processes`` (the torchrun
    world, 1 outside torchrun) and ``processes_param`` (what params asked, e.g. ``auto``)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return {"processes": world, "processes_param": os.environ.get("WEAKSAM_NPROC_PARAM",
                                                                  str(world))}


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) < 3 or argv[1] != "-m":
        raise SystemExit(USAGE)
    value, module, stage_args = argv[0], argv[2], argv[3:]
    device = _device_name(stage_args, _module_constant(module, "DEVICE_PARAMS")
                          or ("runtime.device",))
    try:
        nproc = resolve_nproc(value, device)
    except ValueError as e:
        raise SystemExit(f"launch {module}: {e}") from None
    if nproc > 1 and not supports_torchrun(module):
        raise SystemExit(f"launch: {module} does not run under torchrun (no TORCHRUN = True): "
                         f"set its runtime.nproc entry to 1 (asked for {value!r} -> {nproc})")
    if nproc > 1:  # one GPU per rank, checked before any rank starts
        from weaksam.utils.device import data_parallel_devices

        try:
            data_parallel_devices(device, nproc, f"runtime.nproc ({value!r}) of {module}")
        except ValueError as e:
            raise SystemExit(f"launch {module}: {e}") from None
    os.environ["WEAKSAM_NPROC_PARAM"] = str(value)
    if nproc == 1:
        sys.argv = [module, *stage_args]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        return
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # torchrun would set it, with a warning
    from torch.distributed.run import main as torchrun

    torchrun(torchrun_args(nproc, module, stage_args))


if __name__ == "__main__":
    main()
