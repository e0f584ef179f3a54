"""What each stage declares in dvc.yaml against what its code does: imports, params, CLI."""

import ast
import hashlib
import os
import subprocess
import sys

import pytest
import yaml
from conftest import ROOT

DVC_YAML = yaml.safe_load((ROOT / "dvc.yaml").read_text())
STAGES = list(DVC_YAML["stages"])


def project_imports(module: str, seen=None) -> set[str]:
    """Every `stages.*` module that importing `module` executes, itself included."""
    seen = set() if seen is None else seen
    seen.add(module)
    tree = ast.parse((ROOT / (module.replace(".", "/") + ".py")).read_text())
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        for name in names:
            if name.startswith("stages.") and name not in seen:
                project_imports(name, seen)
    return seen


@pytest.mark.parametrize("stage", STAGES)
def test_deps_list_every_project_module_the_stage_imports(stage):
    declared = {dep for dep in DVC_YAML["stages"][stage]["do"]["deps"] if dep.startswith("stages/")}
    imported = {name.replace(".", "/") + ".py" for name in project_imports(f"stages.{stage}")}
    # `python -m stages x` imports the package (the CPU pins) first, then the runner (stages/__main__.py)
    imported |= {name.replace(".", "/") + ".py" for name in project_imports("stages.__main__")}
    imported.add("stages/__init__.py")
    assert declared == imported


@pytest.mark.parametrize("stage", STAGES)
def test_stage_runs_as_a_module_per_dataset(stage):
    assert DVC_YAML["stages"][stage]["foreach"] == "${datasets}"
    assert DVC_YAML["stages"][stage]["do"]["cmd"] == f'python -m stages {stage} "${{key}}"'


def test_stage_without_dataset_argument_prints_usage():
    result = subprocess.run([sys.executable, "-m", "stages.split"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode != 0
    assert result.stderr.strip() == "usage: python -m stages.split <dataset>"


RULE = "must be letters, digits, '_' or '-'"


@pytest.mark.parametrize("stage", STAGES)
def test_a_name_in_pieces_is_answered_with_the_name_rule(stage):
    """`my moons` through DVC's unquoted ${key}: two arguments. Every stage names the rule, not usage."""
    result = subprocess.run(
        [sys.executable, "-m", f"stages.{stage}", "my", "moons"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 1
    assert result.stderr == f"error: dataset name 'my moons' {RULE}\n"


@pytest.mark.parametrize("name", ["moons/x", "", "-h", "moons.csv", "mo\u00f6ns"])
def test_a_bad_name_on_the_command_line_is_answered_with_the_name_rule(name):
    result = subprocess.run(
        [sys.executable, "-m", "stages.split", name], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 1
    assert result.stderr == f"error: dataset name {name!r} {RULE}\n"


# Names as DVC's shell receives them in `cmd`, where ${key} is substituted as written: inside its
# double quotes a name arrives in one piece, its $ and \ still expanded and its own " ending the
# quotes. The stage refuses each as params.yaml writes it.
MANGLED = ["my moons", '"moons"', "'moons'", "moons'x", "a$HOME", "$UNSET", "moons*", "*", "~", "moons;"]
MANGLED += ["a\\b"]


@pytest.mark.parametrize("name", MANGLED)
def test_a_name_the_shell_mangles_is_named_as_params_yaml_has_it(tmp_path, name):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["datasets"][name] = params["datasets"]["moons"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "moons.txt").write_text("a file for * to match")
    command = DVC_YAML["stages"]["split"]["do"]["cmd"].replace("${key}", name)
    result = subprocess.run(
        ["bash", "--noprofile", "--norc", "-c", command],  # as DVC runs cmd (dvc/stage/run.py)
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 1
    assert result.stderr == f"error: params.yaml: dataset name {name!r} {RULE}\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["moons.txt", "params.yaml"]  # no work


def test_unknown_dataset_is_a_one_line_error():
    result = subprocess.run(
        [sys.executable, "-m", "stages.split", "nope"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert (
        result.stderr.strip()
        == "error: params.yaml: no dataset 'nope' under datasets (defined: moons, spiral)"
    )


def test_the_committed_lock_hashes_the_current_code():
    """dvc.lock names the code each output came from: a stage edited without `dvc repro` leaves it stale."""
    lock = yaml.safe_load((ROOT / "dvc.lock").read_text())
    for stage, entry in lock["stages"].items():
        for dep in entry["deps"]:
            if dep["path"].startswith("stages/"):
                md5 = hashlib.md5((ROOT / dep["path"]).read_bytes()).hexdigest()
                assert dep["md5"] == md5, f"{stage}: {dep['path']} changed since dvc.lock; run dvc repro"


def runtime_imports(module: str) -> set[str]:
    """The `stages.*` modules that `module` imports when it runs (not those under TYPE_CHECKING)."""
    tree = ast.parse((ROOT / (module.replace(".", "/") + ".py")).read_text())
    skipped = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING"
        for inner in ast.walk(node)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("stages."):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("stages.")}
    return found


def test_no_import_circle():
    """No module of stages/ imports, through any others, one that imports it back."""
    graph = {
        f"stages.{path.stem}": runtime_imports(f"stages.{path.stem}")
        for path in (ROOT / "stages").glob("*.py")
    }
    for start, imported in graph.items():
        seen, todo = set(), list(imported)
        while todo:
            module = todo.pop()
            assert module != start, f"{start} imports itself back"
            if module not in seen:
                seen.add(module)
                todo.extend(graph.get(module, ()))
