"""Every stage of dvc.yaml depends on the project code it runs (issue 21, item 1).

Each stage (``foreach`` / ``matrix`` expanded by DVC itself) runs ``python -m pipeline.X``. That
module is followed through its imports statically with :mod:`ast`: ``import a.b``,
``from a.b import c`` (``c`` may be a submodule), relative imports, imports inside functions,
and the ``__init__.py`` of every package on the way. Each project file reached (under
``pipeline/`` or ``weaksam/``) must be covered by a dep of the stage: the file itself or a folder
above it. Otherwise an edit of that file leaves the stage's outputs stale and ``dvc repro``
reruns nothing.

The ``data`` stage also depends on the data it reads: params ``data.inputs`` (the generator's
source for the synthetic profile, the data root for the VOC / COCO profiles).
"""

from __future__ import annotations

import ast
import re
import shutil
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from weaksam.profiles import deep_merge, resolve_profile

ROOT = Path(__file__).resolve().parents[2]
PROJECT_PACKAGES = ("pipeline", "weaksam")
_MODULE_RE = re.compile(r"\bpython3?\s+-m\s+([\w.]+)")
_LAUNCHED_RE = re.compile(r"^\S+\s+-m\s+([\w.]+)")  # pipeline.launch N -m <module>


# --- the import walker -------------------------------------------------------------------------

def module_path(root: Path, module: str, packages: Iterable[str]) -> Path | None:
    """The file of dotted ``module`` under ``root`` (a package: its ``__init__.py``), or None
    when the module is not a file of the project's ``packages`` (stdlib, third party, or a name
    imported from a module that is not itself a module)."""
    parts = module.split(".")
    if parts[0] not in packages:
        return None
    base = root.joinpath(*parts)
    for path in (base / "__init__.py", base.with_suffix(".py")):
        if path.is_file():
            return path
    return None


def _from_base(module: str, is_package: bool, node: ast.ImportFrom, path: Path) -> str:
    """Absolute dotted name of the ``from X import ...`` source ``X`` (relative levels resolved
    against ``module``, a package when ``is_package``)."""
    if node.level == 0:
        return node.module or ""
    parts = module.split(".")
    package = parts if is_package else parts[:-1]
    up = node.level - 1
    if up > len(package) - 1:
        raise ValueError(f"{path}:{node.lineno}: relative import beyond the top package")
    base = package[: len(package) - up]
    return ".".join(base + ([node.module] if node.module else []))


def imported_names(module: str, path: Path) -> set[str]:
    """Dotted names ``module`` (file ``path``) may import, anywhere in the file: each ``import``
    target, each ``from`` source and, since ``from a import b`` may import a submodule ``a.b``,
    each ``from`` source joined with each imported name."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _from_base(module, is_package, node, path)
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names if a.name != "*")
    return names


def project_imports(root: Path, module: str,
                    packages: Iterable[str] = PROJECT_PACKAGES) -> set[str]:
    """Project files (POSIX paths relative to ``root``) that ``python -m module`` imports,
    transitively: the module itself, the ``__init__.py`` of each package above every imported
    module (Python imports those first), and everything they import."""
    packages = tuple(packages)
    seen: set[str] = set()
    files: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if not name or name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        path = module_path(root, name, packages)
        if path is None:
            continue
        files.add(path.relative_to(root).as_posix())
        todo += sorted(imported_names(name, path))
    return files


def covers(dep: str, file: str) -> bool:
    """A dep covers a file when it is the file or a folder above it (by path parts, so
    ``weaksam/util`` does not cover ``weaksam/utils/boxes.py``)."""
    d, f = PurePosixPath(dep), PurePosixPath(file)
    return d == f or d in f.parents


def command_modules(cmd: str) -> list[str]:
    """The modules of a stage command ``python -m pipeline.X ...`` (possibly folded over lines
    or after other shell words): X, and for ``python -m pipeline.launch N -m pipeline.Y ...``
    (issue 22) both the launcher and Y."""
    flat = " ".join(cmd.split())
    m = _MODULE_RE.search(flat)
    if m is None:
        raise ValueError(f"stage command does not run `python -m <module>`: {cmd!r}")
    modules = [m.group(1)]
    if modules[0] == "pipeline.launch":
        inner = _LAUNCHED_RE.match(flat[m.end():].strip())
        if inner is None:
            raise ValueError(f"pipeline.launch without `N -m <module>`: {cmd!r}")
        modules.append(inner.group(1))
    return modules


# --- the stages --------------------------------------------------------------------------------

def resolved_stages(root: Path) -> list[tuple[str, str, list[str]]]:
    """(name, command, dep paths as written after interpolation) of every stage of
    ``root/dvc.yaml``, foreach / matrix items expanded, resolved by DVC against the params."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        out = []
        for stage in repo.index.stages:
            if not stage.path.endswith("dvc.yaml"):
                continue  # .dvc files (imports) have no command
            cmd = stage.cmd if isinstance(stage.cmd, str) else " ".join(stage.cmd)
            out.append((stage.name, cmd, [str(d.def_path) for d in stage.deps]))
    return out


@pytest.fixture(scope="module")
def stages() -> list[tuple[str, str, list[str]]]:
    return resolved_stages(ROOT)


def test_every_stage_depends_on_the_code_it_imports(stages) -> None:
    missing: list[tuple[str, str]] = []
    for name, cmd, deps in stages:
        files = set().union(*(project_imports(ROOT, m) for m in command_modules(cmd)))
        for file in sorted(files):
            if not any(covers(d, file) for d in deps):
                missing.append((name, file))
    names = sorted({s for s, _ in missing})
    lines = "\n".join(f"  {s}: {f}" for s, f in missing)
    assert not missing, (f"{len(names)} stages import {len(missing)} project files they do not "
                         f"depend on (add them to the stage's deps in dvc.yaml):\n{lines}")


def test_stages_found(stages) -> None:
    names = {s for s, _, _ in stages}
    # foreach and matrix items are expanded, one stage each
    assert {"data", "wsod@oicr-ss", "retrain@frcnn_mist_weaksam_adaptive_drop"} <= names
    assert len(stages) > 30


# --- the walker on a hand-built package (so the guard can fail) -------------------------------

def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def test_project_imports_follows_every_import_form(tmp_path: Path) -> None:
    _write(tmp_path, {
        "app/__init__.py": "",
        "app/main.py": "import os\nfrom app.sub import b\nfrom app.d import thing\n"
                       "def f():\n    import app.c\n",
        "app/sub/__init__.py": "from .helpers import h\n",
        "app/sub/helpers.py": "h = 1\n",
        "app/sub/b.py": "from ..e import x\nfrom . import sibling\n",
        "app/sub/sibling.py": "",
        "app/c.py": "",
        "app/d.py": "thing = 1\n",
        "app/e.py": "import lib.deep.mod\nx = 1\n",
        "app/unused.py": "",
        "lib/__init__.py": "",
        "lib/deep/__init__.py": "",
        "lib/deep/mod.py": "",
        "lib/other.py": "",
        "outside/mod.py": "",
    })
    assert project_imports(tmp_path, "app.main", ("app", "lib")) == {
        "app/__init__.py", "app/main.py", "app/sub/__init__.py", "app/sub/helpers.py",
        "app/sub/b.py", "app/sub/sibling.py", "app/c.py", "app/d.py", "app/e.py",
        "lib/__init__.py", "lib/deep/__init__.py", "lib/deep/mod.py",
    }
    # files of packages outside the project are not followed
    assert project_imports(tmp_path, "app.e", ("app",)) == {"app/__init__.py", "app/e.py"}


def test_relative_import_beyond_top_package_is_an_error(tmp_path: Path) -> None:
    _write(tmp_path, {"app/__init__.py": "", "app/m.py": "from ... import x\n"})
    with pytest.raises(ValueError, match="beyond the top package"):
        project_imports(tmp_path, "app.m", ("app",))


def test_covers_by_path_parts() -> None:
    assert covers("weaksam/utils/boxes.py", "weaksam/utils/boxes.py")
    assert covers("weaksam/utils", "weaksam/utils/boxes.py")
    assert covers("weaksam", "weaksam/utils/boxes.py")
    assert not covers("weaksam/util", "weaksam/utils/boxes.py")
    assert not covers("weaksam/utils/boxes.py", "weaksam/utils")


def test_command_module_of_folded_commands() -> None:
    assert command_modules("python -m pipeline.data") == ["pipeline.data"]
    assert command_modules("python -m pipeline.retrain --detector frcnn\n--variant drop") \
        == ["pipeline.retrain"]
    assert command_modules("python -m pipeline.launch 2 -m pipeline.wsod\n--method oicr") \
        == ["pipeline.launch", "pipeline.wsod"]
    with pytest.raises(ValueError, match="python -m"):
        command_modules("bash run.sh")
    with pytest.raises(ValueError, match="N -m"):
        command_modules("python -m pipeline.launch pipeline.wsod")


# --- data deps of the real-data profiles -------------------------------------------------------

PROFILES = ["default", *sorted(p.stem for p in (ROOT / "configs").glob("*.yaml"))]


def profile_params(name: str) -> dict[str, Any]:
    """params.yaml with profile ``name`` merged in (``default``: params.yaml itself)."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    if name == "default":
        return params
    return deep_merge(params, resolve_profile(name, ROOT / "configs"))


def data_read_paths(data: dict[str, Any]) -> list[str]:
    """Paths the data stage reads for params section ``data`` (pipeline/data.py): the VOC year
    folder, or the COCO annotation files and image folders."""
    if data["source"] == "voc":
        return [data["voc_root"]]
    if data["source"] == "coco":
        return [data[f"coco_{s}_{k}"] for s in ("trainval", "test") for k in ("json", "image_root")]
    return []


@pytest.mark.parametrize("profile", PROFILES)
def test_data_inputs_is_what_the_data_stage_reads(profile: str) -> None:
    data = profile_params(profile)["data"]
    inputs = data["inputs"]
    assert isinstance(inputs, str) and inputs, f"{profile}: data.inputs must be a path"
    if data["source"] == "synthetic":
        # the generator is the data: its source is what the stage "reads"
        assert inputs == "weaksam/data/synthetic.py"
        assert inputs in project_imports(ROOT, "pipeline.data")
        return
    read = data_read_paths(data)
    assert read and all(read), f"{profile}: source {data['source']} names no data paths"
    for path in read:
        assert covers(inputs, path), f"{profile}: data.inputs {inputs} is not above {path}"


@pytest.mark.parametrize("profile", ["default", "paper_voc07", "paper_coco"])
def test_data_stage_depends_on_data_inputs(profile: str, tmp_path: Path) -> None:
    """dvc.yaml resolved by DVC with the profile's params: the data stage depends on the
    profile's data (and every stage still resolves)."""
    from dvc.repo import Repo

    Repo.init(str(tmp_path), no_scm=True).close()
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    params = profile_params(profile)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    deps = {name: d for name, _, d in resolved_stages(tmp_path)}
    assert params["data"]["inputs"] in deps["data"]
