"""Import checks: a framework's plugin that loads its libraries only once the framework is
imported (tensorflow-io-gcs-filesystem needs libtensorflow_framework.so.2) is no failure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gapship.node.base import FAIL, PASS
from gapship.node.catalogue import error_line
from gapship.node.imports import INTERFERING, check_distributions
from gapship.node.layout import SITE_HOOK

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


FIXTURES = Path(__file__).parent.parent / "fixtures" / "doctor"
# what `import tensorflow` printed on nodes without the library (TensorFlow 1.x's own banner)
TF1_FAILURES = [
    ("tf-1.11-libcublas-9.0.txt",
     "ImportError: libcublas.so.9.0: cannot open shared object file: No such file or directory",
     "cuda-library-missing-toolkit"),
    ("tf-1.14-libcudnn-7.txt",
     "ImportError: libcudnn.so.7: cannot open shared object file: No such file or directory",
     "cuda-library-missing-toolkit"),
    ("tf-1.11-glibc-2.17.txt",
     "ImportError: /lib64/libc.so.6: version `GLIBC_2.17' not found (required by /home/u/envs/tf/"
     "lib/python3.6/site-packages/tensorflow/python/_pywrap_tensorflow_internal.so)",
     "glibc-too-old"),
]


def failing_with(text_file: Path) -> str:
    """A module that fails to import as the recorded TensorFlow did: its text on stderr."""
    return (f"import sys\nsys.stderr.write(open({str(text_file)!r}).read())\n"
            "raise SystemExit(1)\n")


@pytest.mark.parametrize(("recorded", "line", "diagnosis"), TF1_FAILURES)
def test_a_failed_tensorflow_import_names_the_error_not_the_banner(
        tmp_path: Path, recorded: str, line: str, diagnosis: str) -> None:
    """Issue 12.7c: the detail read "above this error message when asking for help."; 12.7b:
    on a CUDA 9.0 toolkit stack the remedy points at the toolkit, never at cu12 wheels."""
    python = venv_with(tmp_path, {"tensorflow": failing_with(FIXTURES / recorded)})
    dists = [{"name": "tensorflow-gpu", "version": "1.11.0", "imports": ["tensorflow"]}]
    context = {"prefix": str(tmp_path), "cuda": "9.0", "cuda_source": "toolkit"}
    (check,) = check_distributions(str(python), dists, 60, context, {}, lambda name: {})
    assert check.status == FAIL
    assert check.detail == line
    assert check.diagnosis == diagnosis
    assert "-cu12" not in check.remedy
    if diagnosis.startswith("cuda-library"):
        assert 'cuda = { path = "/usr/local/cuda-9.0" }' in check.remedy


@pytest.mark.parametrize(("text", "line"), [
    ("Traceback (most recent call last):\n  File \"<string>\", line 1\nModuleNotFoundError: "
     "No module named 'yaml'\n", "ModuleNotFoundError: No module named 'yaml'"),
    ("Illegal instruction (core dumped)\n", "Illegal instruction (core dumped)"),
    ("numpy.core._exceptions._UFuncNoLoopError: no loop\n", "numpy.core._exceptions."
     "_UFuncNoLoopError: no loop"),
    ("", "no message"),
    # numpy 2's ImportError: an empty first line, a page of advice, the loader's words inside
    ("Traceback (most recent call last):\nImportError: \n\nIMPORTANT: PLEASE READ THIS FOR "
     "ADVICE ON HOW TO SOLVE THIS ISSUE!\n\nOriginal error was: libgfortran-040039e1.so.5.0.0:"
     " cannot open shared object file: No such file or directory\n\nNote: this error has many "
     "possible causes\n", "Original error was: libgfortran-040039e1.so.5.0.0: cannot open "
     "shared object file: No such file or directory"),
])
def test_the_error_line_of_plain_texts(text: str, line: str) -> None:
    assert error_line(text) == line


MANY = [{"name": f"dist{i}", "version": "1.0", "imports": [f"mod{i}"]} for i in range(30)]


def clean_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, _ in INTERFERING:
        monkeypatch.delenv(name, raising=False)


def test_a_skipped_site_hook_is_one_finding_that_says_why(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 12.7d: a twin bundle packed from an activated virtualenv wrote its .pth hook
    where the builder's site.py said; on the node nothing imports. One finding, not 30."""
    clean_shell(monkeypatch)
    monkeypatch.setenv("VIRTUAL_ENV", "/home/u/.venv")
    python = venv_with(tmp_path, {})
    prefix = python.parent.parent
    site = prefix / "lib" / "python3" / "site-packages"
    for dist in MANY:
        (site / dist["imports"][0]).mkdir(parents=True)
        (site / dist["imports"][0] / "__init__.py").write_text("")
    # a directory of the hook's kind that this interpreter does not read: Debian's python3
    # reads PREFIX/lib/python3/dist-packages, other builds do not
    reads = set(json.loads(subprocess.run(
        [str(python), "-c", "import json, site; print(json.dumps(site.getsitepackages()))"],
        capture_output=True, text=True, check=True).stdout))
    hook_dir = next(d for d in (prefix / "lib" / "python3" / "dist-packages",
                                prefix / "local" / "lib" / "python3" / "dist-packages")
                    if str(d) not in reads)
    hook_dir.mkdir(parents=True)
    (hook_dir / SITE_HOOK).write_text("import site; site.addsitedir('lib/python3/site-packages')")
    context = {"prefix": str(prefix), "site_packages": "lib/python3/site-packages"}
    checks = check_distributions(str(python), MANY, 60, context, {})
    (check,) = checks
    assert check.status == FAIL and check.name == "site-packages on sys.path"
    assert check.detail.startswith("lib/python3/site-packages is not on sys.path, so none of "
                                   "the 30 modules can be imported (mod0, mod1, mod2 and 27 "
                                   "more)")
    assert f"the .pth hook that adds it, {hook_dir / SITE_HOOK}, is in a directory this " \
           "interpreter does not read" in check.detail
    assert "VIRTUAL_ENV=/home/u/.venv (another virtual environment is active" in check.detail
    assert "Pack again from a shell with no virtualenv" in check.remedy
    assert "Unset VIRTUAL_ENV" in check.remedy


def test_an_interpreter_whose_prefix_is_elsewhere_is_named(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clean_shell(monkeypatch)
    python = venv_with(tmp_path, {"mod0": "", "mod1": ""})
    prefix = python.parent.parent
    (prefix / "pyvenv.cfg").unlink()  # the interpreter now belongs to the base Python
    site = next((prefix / "lib").glob("python3.*")) / "site-packages"
    context = {"prefix": str(prefix), "site_packages": str(site.relative_to(prefix))}
    (check,) = check_distributions(str(python), MANY[:2], 60, context, {})
    assert check.name == "site-packages on sys.path"
    assert f"the interpreter's sys.prefix is {sys.base_prefix}" in check.detail
    assert not any(name in check.detail for name, _ in INTERFERING)


def test_modules_that_are_really_missing_stay_separate_failures(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clean_shell(monkeypatch)
    python = venv_with(tmp_path, {})
    prefix = python.parent.parent
    site = next((prefix / "lib").glob("python3.*")) / "site-packages"
    context = {"prefix": str(prefix), "site_packages": str(site.relative_to(prefix))}
    checks = check_distributions(str(python), MANY[:2], 60, context, {})
    assert [c.detail for c in checks] == ["ModuleNotFoundError: No module named 'mod0'",
                                          "ModuleNotFoundError: No module named 'mod1'"]
