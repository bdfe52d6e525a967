"""The wheel is complete: every module of agent/ and the shipped models are inside.

pyproject.toml lists its packages by hand (models/ is mapped to agent.models,
which packages.find cannot do), and a subpackage missing from that list is
silently left out of the wheel: an editable install still works, so nothing
else in the suite notices, while ``pip install vin-agent`` then fails at the
first ``import agent.vision``.  Until this test existed the wheel lacked
agent.vision, agent.publish and agent.sources.
"""

from __future__ import annotations

import shutil
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO, run_pip

#: What a wheel build reads from the repository (pyproject names README and
#: the licence); copied so the build leaves no build/ or egg-info in the tree.
BUILD_INPUTS = ("pyproject.toml", "README.md", "LICENSE", "agent", "models")


def _expected_files() -> set[str]:
    """Wheel paths of every module of agent/ and of the shipped models."""
    expected = {
        p.relative_to(REPO).as_posix()
        for p in (REPO / "agent").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    expected.add("agent/py.typed")
    models = REPO / "models"
    for p in [*models.glob("*.tflite"), models / "manifest.json", models / "__init__.py"]:
        expected.add(f"agent/models/{p.name}")
    return expected


def test_every_subpackage_is_listed_in_pyproject() -> None:
    """Fast guard (no build): each package under agent/ is named in [tool.setuptools]."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    listed = set(config["tool"]["setuptools"]["packages"])
    on_disk = {
        ".".join(p.parent.relative_to(REPO).parts)
        for p in (REPO / "agent").rglob("__init__.py")
        if "__pycache__" not in p.parts
    }
    assert on_disk | {"agent.models"} == listed, (
        f"pyproject.toml [tool.setuptools] packages misses {sorted(on_disk - listed)} "
        f"or names packages that do not exist: {sorted(listed - on_disk - {'agent.models'})}"
    )


@pytest.mark.integration
@pytest.mark.slow
def test_wheel_contains_every_module_and_the_models(tmp_path: Path) -> None:
    """Build the real wheel (pip, isolated build env from PyPI) and list what it ships."""
    src = tmp_path / "src"
    src.mkdir()
    for name in BUILD_INPUTS:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, src / name)
    out = tmp_path / "wheel"
    run_pip(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-input", "-w", str(out), str(src)],
        "building the vin-agent wheel",
    )
    [wheel] = out.glob("vin_agent-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        assert "vin-agent = agent.cli:main" in zf.read(entry_points).decode()
        for model in ("detector.tflite", "recognizer.tflite"):
            assert zf.read(f"agent/models/{model}") == (REPO / "models" / model).read_bytes()

    missing = _expected_files() - names
    assert not missing, f"{wheel.name} lacks {sorted(missing)}"
    stray = {n for n in names if not n.startswith(("agent/", "vin_agent-"))}
    assert not stray, f"{wheel.name} ships files outside agent/: {sorted(stray)}"
