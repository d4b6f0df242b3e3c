"""The ``weaksam`` command (console script of ``pyproject.toml``), run from the repository:

    weaksam tables [NAME]     the report index (paper direction reproduced or not, per table)
                              computed afresh from metrics/, or one table's markdown
    weaksam profile NAME      deep-merge configs/NAME.yaml into params.yaml (--list: names)
    weaksam doctor            check pins, devices, data paths, weights and the DVC remote of
                              the active params.yaml; exit status 1 when a check fails
    weaksam dryrun PROFILE..  the whole DAG of each paper profile on generated data in its real
                              layout, random weights in the official formats, a few iterations
                              per training, on the CPU (weaksam.dryrun.run); per-stage seconds
                              and peak memory in dryrun/PROFILE/stages.json
    weaksam seeds --seeds 1 2 the training-seed sweep (docs/seeds.md): queue and run one DVC
                              experiment per train_seed, then aggregate the baseline and the
                              experiments into reports/seeds.md (--no-run: aggregate only);
                              every run is saved in reports/seeds/runs/seed-<s>.json, and the
                              saved runs of the same code are aggregated, not rerun

The repository is the nearest folder at or above the working directory holding ``dvc.yaml``
and ``params.yaml`` (or ``--root``). This is an application entry point: unlike the library it
reads ``params.yaml`` itself.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from weaksam.errors import InputError

if TYPE_CHECKING:
    from weaksam.report.intervals import Evidence


def find_root(start: str | Path | None = None) -> Path:
    """The nearest folder at or above ``start`` (default: the working directory) that holds
    ``dvc.yaml`` and ``params.yaml``; InputError when there is none."""
    here = Path(start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / "dvc.yaml").is_file() and (d / "params.yaml").is_file():
            return d
    raise InputError(here, "not inside a WeakSAM workspace (no dvc.yaml and params.yaml here "
                           "or above; use --root)")


def _read_params(path: Path) -> dict[str, Any]:
    try:
        params = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise InputError(path, f"cannot read params ({e})") from e
    if not isinstance(params, dict):
        raise InputError(path, "expected a mapping at the top level")
    return params


def cmd_tables(args: argparse.Namespace, root: Path) -> int:
    """Print the report index (or one table) built from ``root/metrics`` now."""
    from weaksam.report import TABLES
    from weaksam.report.index import build_index

    metrics = root / (args.metrics or "metrics")
    if args.name:
        if args.name not in TABLES:
            raise InputError(None, f"no table {args.name!r} (have: {', '.join(TABLES)})")
        print(TABLES[args.name](metrics), end="")
        return 0
    params = _read_params(root / args.params)
    tables = {name: build(metrics) for name, build in TABLES.items()}
    print(build_index(tables, metrics, profile=params.get("profile")), end="")
    return 0


def cmd_profile(args: argparse.Namespace, root: Path) -> int:
    """Apply ``configs/NAME.yaml`` to the params file (or list the profiles)."""
    from weaksam.profiles import apply_profile, list_profiles

    configs = root / "configs"
    if args.list or not args.name:
        print("\n".join(list_profiles(configs)))
        return 0
    params = root / args.params
    apply_profile(args.name, params, configs)
    print(f"{params}: profile {args.name} merged in (git checkout {args.params} to undo)")
    return 0


def cmd_doctor(args: argparse.Namespace, root: Path) -> int:
    """Run every check; exit status 1 if one fails."""
    from weaksam.doctor import FAIL, run_doctor

    params = _read_params(root / args.params)
    findings = run_doctor(params, root, remote=not args.no_remote)
    for f in findings:
        print(f)
    failed = sum(f.level == FAIL for f in findings)
    print(f"{len(findings)} checks, {failed} failed (profile: {params.get('profile', '?')})")
    return 1 if failed else 0


def cmd_dryrun(args: argparse.Namespace, root: Path) -> int:
    """Dry-run each profile named (module docstring of :mod:`weaksam.dryrun.run`)."""
    import tempfile

    from weaksam.dryrun.run import dryrun, format_report

    out = root / args.out
    images = tuple(args.images) if args.images else None
    failed = []
    with tempfile.TemporaryDirectory(prefix="weaksam-dryrun-") as tmp:
        workdir = Path(args.workdir) if args.workdir else Path(tmp)
        for profile in args.profiles:
            try:
                report = dryrun(profile, root, out, workdir, resolution=args.resolution,
                                sam_model=args.sam_model, images=images, keep=args.keep,
                                stages=args.stages or (), resume=args.resume)
            except InputError as e:
                print(f"weaksam dryrun: {e}", file=sys.stderr)
                failed.append(profile)
                continue
            print(format_report(report), end="", flush=True)
    if failed:
        print(f"weaksam dryrun: failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def _report_evidence(params: dict[str, Any], root: Path) -> Evidence:
    """The report stage's bootstrap settings (``evidence_from`` of pipeline/report.py: its
    resamples and seed, the evaluation settings of ``params``), so that the default verdicts
    are the report's."""
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    try:
        from pipeline.report import evidence_from
    except ImportError as e:
        raise InputError(root / "pipeline" / "report.py",
                         f"cannot import the report stage's settings ({e})") from e
    return evidence_from(params, root)


def cmd_seeds(args: argparse.Namespace, root: Path) -> int:
    """Run the seed sweep (unless ``--no-run``) and write its aggregate (weaksam.seeds)."""
    from weaksam import seeds as sw
    from weaksam.utils.atomic import atomic_path

    def progress(message: str) -> None:
        print(f"weaksam seeds: {message}", file=sys.stderr, flush=True)

    timing = None
    if args.run and args.baseline:
        raise InputError(None, "--baseline reads the experiments of an earlier commit: use it "
                               "with --no-run (a sweep queues on HEAD)")
    runs_dir = root / args.runs_dir
    if args.run:
        timing = sw.run_sweep(root, args.seeds, jobs=args.jobs, progress=progress,
                              runs_dir=runs_dir)
    rev = ("--rev", args.baseline) if args.baseline else ()
    live, notes = sw.parse_runs(sw.dvc(root, "exp", "show", "--json", *rev), required=False)
    for path in sw.save_runs(root, live, runs_dir, progress):
        progress(f"saved {path.relative_to(root)} (commit it: experiments are local)")
    runs, more = sw.combine(live, sw.load_saved(runs_dir),
                            sw.code_identity(root, args.baseline or "HEAD"))
    notes += more
    progress(f"aggregating seeds {', '.join(map(str, runs))}")
    per_seed = {s: sw.evaluate_run(run) for s, run in runs.items()}
    params = _read_params(root / args.params)
    if args.point_only:
        evidence, how = None, "point values of the workspace's metrics, no bootstrap"
    else:
        evidence = _report_evidence(params, root)
        how = (f"paired bootstrap over the split's images of the workspace's files, "
               f"{evidence.n_resamples} resamples, seed {evidence.seed}, as the report stage")
    defaults = sw.default_verdicts(root / "metrics", evidence)
    if evidence is not None and not evidence.paths():
        how = ("point values: the workspace has none of the per-image files the bootstrap "
               "resamples (run make repro or dvc checkout first)")
        progress(f"warning: default verdicts from {how}")
    tables = sw.aggregate(per_seed, defaults)
    text = sw.render(tables, runs, sweep=sw.sweep_text(args.seeds, args.jobs, timing),
                     notes=notes, how_defaults=how)
    out = root / args.out
    with atomic_path(out) as tmp:
        tmp.write_text(text)
    print(f"{out}: {text.rstrip().splitlines()[-1].strip('*')}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="weaksam", description=__doc__.splitlines()[0])
    p.add_argument("--root", help="repository root (default: found from the working directory)")
    p.add_argument("--params", default="params.yaml", help="params file, relative to the root")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("tables", help="print the report index, or one table")
    t.add_argument("name", nargs="?", help="a table name such as table1")
    t.add_argument("--metrics", help="metrics folder, relative to the root (default metrics)")
    t.set_defaults(func=cmd_tables)
    pr = sub.add_parser("profile", help="apply configs/NAME.yaml to params.yaml")
    pr.add_argument("name", nargs="?", help="profile name (configs/NAME.yaml)")
    pr.add_argument("--list", action="store_true", help="list the profiles")
    pr.set_defaults(func=cmd_profile)
    d = sub.add_parser("doctor", help="check the environment for the active profile")
    d.add_argument("--no-remote", action="store_true", help="skip the DVC remote check")
    d.set_defaults(func=cmd_doctor)
    dr = sub.add_parser("dryrun", help="dry-run paper profiles on generated data (CPU)")
    dr.add_argument("profiles", nargs="+", help="profile names (configs/NAME.yaml)")
    dr.add_argument("--resolution", choices=("full", "reduced"), default="full",
                    help="full: real image sizes and the profile's scales; reduced: small "
                         "images, one small scale per list (CI)")
    dr.add_argument("--sam-model", choices=("vit_h", "vit_l", "vit_b"),
                    help="SAM in place of the profile's (default: the profile's)")
    dr.add_argument("--images", type=int, nargs=2, metavar=("TRAIN", "TEST"),
                    help="images per split of the generated tree")
    dr.add_argument("--out", default="dryrun", help="report folder, relative to the root")
    dr.add_argument("--workdir", help="scratch folder (default: a temporary one)")
    dr.add_argument("--keep", action="store_true", help="keep each scratch workspace")
    dr.add_argument("--resume", action="store_true",
                    help="continue the scratch workspace a failed run left in --workdir, with "
                         "the current code (stages already run keep their figures)")
    dr.add_argument("--stages", nargs="+", help="only these stages and what they depend on "
                                                "(default: the whole DAG)")
    dr.set_defaults(func=cmd_dryrun)
    se = sub.add_parser("seeds", help="training-seed sweep as DVC experiments, aggregated "
                                      "into reports/seeds.md")
    se.add_argument("--seeds", type=int, nargs="+", default=[1, 2],
                    help="train_seed values to run as experiments (the baseline commit is "
                         "the seed of params.yaml; default: 1 2)")
    se.add_argument("--run", action=argparse.BooleanOptionalAction, default=True,
                    help="queue and run the seeds not run yet (--no-run: aggregate only)")
    se.add_argument("--jobs", type=int, default=1, help="dvc queue workers (default 1)")
    se.add_argument("--runs-dir", default="reports/seeds/runs",
                    help="saved runs (seed-<s>.json, git-tracked), relative to the root: "
                         "written from dvc exp show, and those of the baseline's code "
                         "aggregated and not rerun (default reports/seeds/runs)")
    se.add_argument("--out", default="reports/seeds.md",
                    help="markdown, relative to the root (default reports/seeds.md)")
    se.add_argument("--baseline", metavar="REV",
                    help="aggregate the experiments of this commit (dvc exp show --rev; "
                         "default HEAD), e.g. after committing on top of the swept one")
    se.add_argument("--point-only", action="store_true",
                    help="judge the default run on point values, without the bootstrap")
    se.set_defaults(func=cmd_seeds)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``weaksam`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        root = Path(args.root).resolve() if args.root else find_root()
        return args.func(args, root)
    except InputError as e:
        print(f"weaksam {args.command}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
