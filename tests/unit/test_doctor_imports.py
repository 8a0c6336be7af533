"""Import checks: a framework's plugin that loads its libraries only once the framework is
imported (tensorflow-io-gcs-filesystem needs libtensorflow_framework.so.2) is no failure."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from gapship.node.base import FAIL, PASS
from gapship.node.imports import check_distributions

PLUGIN = '''import sys
if "torch" not in sys.modules:
    raise ImportError("libtorch_thing.so.1: cannot open shared object file: "
                      "No such file or directory")
'''


def venv_with(tmp_path: Path, modules: dict[str, str]) -> Path:
    venv = tmp_path / "v"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3.*")) / "site-packages"
    for name, source in modules.items():
        (site / name).mkdir()
        (site / name / "__init__.py").write_text(source)
    return venv / "bin" / "python"


def bundled(name: str) -> dict[str, object]:
    return {"bundle_has": True, "bundle_path": f"lib/python3/site-packages/torch/lib/{name}"}


def test_a_plugin_of_a_shipped_framework_imports_after_it(tmp_path: Path) -> None:
    python = venv_with(tmp_path, {"torch": "", "torchplugin": PLUGIN})
    dists = [{"name": "torch", "version": "2.10.0", "imports": ["torch"]},
             {"name": "torch-plugin", "version": "0.1", "imports": ["torchplugin"]}]
    checks = check_distributions(str(python), dists, 60, {"prefix": str(tmp_path)}, {},
                                 bundled)
    plugin = checks[1]
    assert plugin.status == PASS
    assert plugin.detail == "imports once torch is imported (a plugin of it)"


def test_without_the_framework_the_plugin_still_fails(tmp_path: Path) -> None:
    python = venv_with(tmp_path, {"torchplugin": PLUGIN})
    dists = [{"name": "torch-plugin", "version": "0.1", "imports": ["torchplugin"]}]
    (check,) = check_distributions(str(python), dists, 60, {"prefix": str(tmp_path)}, {},
                                   bundled)
    assert check.status == FAIL and check.diagnosis == "missing-shared-object-bundled"


def test_a_plugin_the_framework_loads_itself_is_no_failure(tmp_path: Path) -> None:
    """tensorflow-io-gcs-filesystem: TF registers it; importing it again says so."""
    again = ('import sys\nif "torch" in sys.modules:\n'
             '    raise RuntimeError("File system for gs already registered")\n' + PLUGIN)
    python = venv_with(tmp_path, {"torch": "", "torchplugin": again})
    dists = [{"name": "torch", "version": "2.10.0", "imports": ["torch"]},
             {"name": "torch-plugin", "version": "0.1", "imports": ["torchplugin"]}]
    checks = check_distributions(str(python), dists, 60, {"prefix": str(tmp_path)}, {},
                                 bundled)
    assert checks[1].status == PASS and checks[1].detail.startswith("loaded by torch itself")
