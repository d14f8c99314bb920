"""environment.yml (classrooms) and binder/ (repo2docker) agree with pyproject.toml."""

import re
import sys
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]


def _norm(req: str) -> tuple[str, str]:
    from packaging.requirements import Requirement

    r = Requirement(req)
    return r.name.lower(), str(r.specifier)


def _pyproject():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = dict(_norm(d) for d in data["dependencies"])
    course = dict(_norm(d) for d in data["optional-dependencies"]["course"])
    return deps, course


def _pip_section(path: Path) -> list[str]:
    env = yaml.safe_load(path.read_text())
    pips = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pips) == 1, f"{path} needs exactly one pip section"
    return pips[0]


@pytest.mark.parametrize("path", ["environment.yml", "binder/environment.yml"])
def test_env_file_matches_pyproject(path):
    deps, course = _pyproject()
    env = yaml.safe_load((ROOT / path).read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    assert any(re.match(r"python(=|>=)3\.1\d", d) for d in conda), "pin a Python 3.10+ from conda-forge"
    assert "conda-forge" in env["channels"]
    reqs = {}
    for line in _pip_section(ROOT / path):
        if line.startswith("-"):
            continue
        name, spec = _norm(line)
        reqs[name] = spec
    for name, spec in {**deps, **course}.items():
        assert name in reqs, f"{path} lacks {name} (pyproject: {spec})"
        assert reqs[name] == spec, f"{path}: {name}{reqs[name]} differs from pyproject's {name}{spec}"
    extra = set(reqs) - set(deps) - set(course)
    assert not extra, f"{path} lists packages pyproject does not: {sorted(extra)}"


def test_binder_uses_cpu_torch_and_installs_package():
    pip = _pip_section(ROOT / "binder/environment.yml")
    assert any("download.pytorch.org/whl/cpu" in line for line in pip)
    post = (ROOT / "binder/postBuild").read_text()
    assert post.startswith("#!") and "\nset -e\n" in post
    assert re.search(r"pip install .*-e \.", post)
    assert (ROOT / "binder/postBuild").stat().st_mode & 0o111, "postBuild must be executable"


def test_root_env_installs_package():
    assert "-e ." in _pip_section(ROOT / "environment.yml")


def test_ci_script_installs_as_readme_says():
    ci = (ROOT / ".ci/run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert 'pip install -e ".[course]"' in readme
    assert 'pip install -e ".[dev]" && pytest' in readme
    assert 'pip install -q -e ".[dev]"' in ci and "\npytest\n" in ci
    assert "torch==" in ci, "CI installs the CPU torch build first"
