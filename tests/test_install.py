"""`pip install .` into a fresh virtual environment outside the checkout, then the command line from another folder:
the profiles come from the installed package and the artifacts go to ./artifacts of the working directory."""

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _run(cmd, cwd, env):
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=True).stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(python, console script, environment) of a venv holding a real (non-editable) install of the package; its
    dependencies are this environment's, seen through a .pth file (whose directory's own .pth files, among
    them the checkout's editable install, are not processed)."""
    tmp = tmp_path_factory.mktemp("install")
    source = tmp / "source"  # a copy: building in place would leave build/ in the checkout
    source.mkdir()
    shutil.copy(ROOT / "pyproject.toml", source / "pyproject.toml")
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "UN_ARTIFACTS",
                                                            "PYTHONHOME", "PIP_REQUIRE_VIRTUALENV")}
    env.update(PYTHONNOUSERSITE="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=env, timeout=300)
    python = venv / "bin" / "python"
    purelib = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp, env).strip()
    Path(purelib, "checkout-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([str(python), "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-build-isolation",
          "--ignore-installed", str(source)], tmp, env)  # --ignore-installed: never touch the checkout's venv
    return python, venv / "bin" / "universal-neurons", env


def test_the_installed_package_runs_from_any_folder(installed, tmp_path):
    python, script, env = installed
    where = _run([str(python), "-c", "import universal_neurons; print(universal_neurons.__file__)"], tmp_path, env)
    assert Path(where).resolve().is_relative_to(python.parent.parent.resolve()), where  # not the checkout's
    members = _run([str(python), "-m", "universal_neurons", "info", "--profile", "smoke"], tmp_path, env).split()
    assert members == [str(tmp_path / "artifacts" / "smoke" / "zoo" / f"seed-{k}") for k in range(3)]
    text = _run([str(python), "-m", "universal_neurons", "config", "--profile", "smoke", "--set",
                 "book.threshold=0.4"], tmp_path, env)
    cfg = yaml.safe_load(text)
    assert cfg["train"]["seeds"] == [0, 1, 2] and cfg["book"]["threshold"] == 0.4 and cfg["model"]["d_model"] == 64
    assert "# run folder: artifacts/smoke+" in text
    assert "smoke" in _run([str(python), "-m", "universal_neurons", "config", "--list"], tmp_path, env)
    usage = _run([str(script), "--help"], tmp_path, env)
    assert "universality" in usage and "where" in usage
    assert not (tmp_path / "artifacts").exists()  # info and config compute nothing
