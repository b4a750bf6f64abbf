"""The built wheel, installed into a fresh venv outside the checkout, runs from any folder with
its shipped presets and study spaces."""
from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
# what the wheel is built from (a copy: the build writes build/ and *.egg-info beside its sources)
SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "remdinet", "experiments",
           "studies")


def run(*cmd, cwd: Path) -> str:
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """``bin/`` of a venv holding only the wheel; its dependencies come from this venv's
    site-packages through a .pth file (nothing downloaded, and not the checkout's editable
    remdinet: a .pth line adds a folder, its own .pth files are not run)."""
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, src / name)
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
        "-w", base / "dist", ".", cwd=src)
    (wheel,) = (base / "dist").glob("remdinet-*.whl")
    venv = base / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=base)
    python = venv / "bin" / "python"
    purelib = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))",
                       cwd=base).strip())
    (purelib / "project_deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "-q", wheel,
        cwd=base)
    return venv / "bin"


def test_wheel_serves_version_presets_and_config_from_any_folder(installed, tmp_path):
    cli = installed / "remdi-exp"
    assert run(cli, "--version", cwd=tmp_path).strip() == "remdinet 0.1.0"
    where = run(installed / "python", "-c", "import remdinet; print(remdinet.__file__)",
                cwd=tmp_path)
    assert str(installed.parent) in where  # the wheel's copy, not the checkout
    listing = run(cli, "presets", cwd=tmp_path)
    assert "quick" in listing and "color_clamps" in listing and "shipped" in listing
    shown = run(cli, "config", "show", "--preset", "quick", cwd=tmp_path)
    assert "[training]" in shown and "num_epochs = 24" in shown


def test_wheel_trains_the_tiny_preset_from_any_folder(installed, tmp_path):
    out = run(installed / "remdi-exp", "--threads", "1", "--quiet", "train", "--preset", "tiny",
              cwd=tmp_path)
    assert out.startswith("run ") and "final_psnr" in out
    assert (tmp_path / "mlruns" / "mlflow.db").is_file()
    assert list((tmp_path / "outputs" / "train").glob("*/checkpoints/best_model.pth"))
