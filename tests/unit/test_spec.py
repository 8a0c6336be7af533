from __future__ import annotations

from pathlib import Path

import pytest

from gapship.compat import load as load_compat
from gapship.errors import SpecError
from gapship.spec import DEFAULT_SPEC_TOML, parse_spec
from tests.conftest import gapship


def test_default_spec_parses() -> None:
    spec = parse_spec(DEFAULT_SPEC_TOML)
    assert spec.name == "demo"
    assert spec.packages == ("numpy", "requests", "rich")
    assert spec.python is None


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('packages = ["numpy"]', "key `name` is missing"),
        ('name = "a b"', "key `name`"),
        ('name = "x"\npython = "2.7"', "key `python`"),
        ('name = "x"\npython = 3.11', "key `python`"),
        ('name = "x"\npackages = "numpy"', "key `packages` must be a list"),
        ('name = "x"\npackages = ["numpy>>1"]', "'numpy>>1' is not a valid requirement"),
        ('name = "x"\npakages = ["numpy"]', "unknown key `pakages`"),
        ('name = "x', "not valid TOML"),
    ],
)
def test_invalid_specs_name_the_key(text: str, fragment: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(text)
    assert fragment in str(info.value)


def test_cli_reports_bad_spec_in_one_line_without_traceback(tmp_path: Path) -> None:
    spec = tmp_path / "env.toml"
    spec.write_text('name = "x"\npython = "two"\n')
    proc = gapship("pack", str(spec), "--target", "local", "-o", str(tmp_path / "x.run"))
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "key `python`" in proc.stderr
    assert not (tmp_path / "x.run").exists()


def test_gpu_intent_parses() -> None:
    spec = parse_spec('name = "t"\nframework = "tensorflow-gpu==1.11.0"\n'
                      'cuda = { path = "/usr/local/cuda-9.0", nvcc = true }\ncudnn = "7"\n'
                      'indexes = ["https://download.pytorch.org/whl/cu118"]\n'
                      'exclude = ["nvidia-cufft*"]\n'
                      'compute = { driver = "470.182.03", compute_capability = ["3.7"] }\n'
                      'python = { version = "3.6", source = "twin" }\n')
    assert spec.framework_family == "tensorflow"
    assert spec.cuda.path == "/usr/local/cuda-9.0" and spec.cuda.nvcc and spec.cudnn.version == "7"
    assert spec.compute.compute_capabilities == ("3.7",)
    assert spec.python == "3.6" and spec.python_spec.source == "twin"
    assert parse_spec('name = "t"\nframework = "none"').framework is None


@pytest.mark.parametrize(("text", "fragment"), [
    ('framework = "pytorch"', "key `framework` = 'pytorch'"),
    ('cuda = "twelve"', "key `cuda.version` = 'twelve'"),
    ('cuda = { path = "/x", nvcc = "yes" }', "key `cuda.nvcc` must be true or false"),
    ('cudnn = { where = "/x" }', "unknown key `cudnn.where`"),
    ('indexes = ["download.pytorch.org"]', "is not an http(s) or file URL"),
    ('compute = { driver = "new" }', "key `compute.driver` = 'new'"),
    ('compute = { compute_capability = ["sm_90"] }', "compute.compute_capability"),
    ('python = { source = "conda" }', "key `python.source` = 'conda'"),
    ('python = { version = "3.5" }', "supports Python 3.6 and newer"),
])
def test_invalid_gpu_intent_names_the_key(text: str, fragment: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec('name = "x"\n' + text)
    assert fragment in str(info.value)


@pytest.mark.parametrize("name", ["torch", "tensorflow", "tensorflow-gpu", "tensorflow-cpu",
                                  "jax"])
def test_every_framework_name_of_the_compat_data_is_accepted(name: str) -> None:
    spec = parse_spec(f'name = "t"\nframework = "{name}"')
    framework = load_compat().framework_named(name)
    assert framework is not None and spec.framework_family == framework.family


def test_an_unknown_framework_names_the_known_families() -> None:
    with pytest.raises(SpecError) as info:
        parse_spec('name = "t"\nframework = "mxnet"')
    assert "give torch, tensorflow, jax or none" in info.value.message


def test_a_gpu_build_in_packages_becomes_the_framework_and_cpu_builds_stay_packages() -> None:
    spec = parse_spec('name = "t"\npackages = ["numpy", "tensorflow-gpu==1.11.0"]')
    assert spec.framework == "tensorflow-gpu==1.11.0" and spec.framework_in_packages
    assert spec.packages == ("numpy",) and spec.framework_family == "tensorflow"
    for cpu in ("tensorflow-cpu", "jax", "tensorflow==1.11.0", "jax[cpu]"):
        plain = parse_spec(f'name = "t"\npackages = ["{cpu}"]')
        assert plain.framework is None and plain.packages == (cpu,)


def test_the_framework_key_wins_over_packages() -> None:
    spec = parse_spec('name = "t"\nframework = "jax[cuda12]"\npackages = ["torch"]')
    assert spec.framework == "jax[cuda12]" and spec.packages == ("torch",)
    assert not spec.framework_in_packages
    plain = parse_spec('name = "t"\nframework = "none"\npackages = ["torch"]')
    assert plain.framework is None and plain.packages == ("torch",)


def test_two_frameworks_in_packages_are_refused_in_one_line() -> None:
    with pytest.raises(SpecError) as info:
        parse_spec('name = "t"\npackages = ["torch", "jax[cuda12]"]')
    assert "key `packages` names the GPU builds of 2 frameworks (torch, jax[cuda12])" in \
        info.value.message
    assert "set `framework`" in info.value.message and "\n" not in info.value.message
