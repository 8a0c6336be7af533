"""The compat data: every file loads into frozen types, and malformed rows are caught."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from gapship.compat import CompatDataError, _Reader, _torch, load
from gapship.versions import driver_text


def test_every_file_loads_and_every_row_names_a_listed_source() -> None:
    data = load()
    assert data.torch[0].version == max((t.version for t in data.torch),
                                        key=lambda v: tuple(map(int, v.split("."))))
    assert {t.cuda for t in data.toolkits} >= {"9.0", "11.8", "12.8", "13.0"}
    for row in (*data.torch, *data.tensorflow, *data.jax, *data.cpu_needs):
        assert row.fact.source in data.sources
    # the facts the planner leans on, as the reference states them
    assert driver_text(data.toolkit("12.4").min_driver) == "525.60.13"  # type: ignore[union-attr]
    assert driver_text(data.toolkit("11.8").min_driver) == "450.80.02"  # type: ignore[union-attr]
    assert data.max_cuda_for_driver((384, 183)).cuda == "9.0"  # type: ignore[union-attr]
    assert data.min_sass("12.0") == (5, 0) and data.min_sass("13.0") == (7, 5)
    assert data.gpu_model_cc("Tesla K80") == (3, 7)
    assert data.gpu_model_cc("NVIDIA A10") == (8, 6) and data.gpu_model_cc("A100-SXM4") == (8, 0)


def _torch_doc() -> dict[str, object]:
    text = resources.files("gapship.compat").joinpath("data").joinpath("torch.json").read_text()
    doc: dict[str, object] = json.loads(text)
    return doc


@pytest.mark.parametrize(("change", "fragment"), [
    (lambda d: d["releases"][0].update(python="3.10+"), "is not a version specifier"),
    (lambda d: d["releases"][0]["variants"][0].update(archs=["8.0"]), "archs must be a list"),
    (lambda d: d["releases"][0]["variants"][0].update(tag="cu999"), "does not match CUDA"),
    (lambda d: d["releases"][0].update(source="nowhere"), "is not listed under `sources`"),
    (lambda d: d["releases"].append(d["releases"][0]), "duplicate rows"),
    (lambda d: d.update(schema_version=2), "schema_version is not 1"),
])
def test_malformed_rows_are_refused_naming_file_and_row(change: object, fragment: str) -> None:
    doc = _torch_doc()
    change(doc)  # type: ignore[operator]
    with pytest.raises(CompatDataError) as info:
        _torch(_Reader("torch.json", json.dumps(doc)))
    assert "compat data torch.json" in info.value.message and fragment in info.value.message


def test_the_os_and_manylinux_tables() -> None:
    data = load()
    assert data.glibc_of_os("ubuntu", "20.04").glibc == (2, 31)  # type: ignore[union-attr]
    assert data.glibc_of_os("debian", "11.3").glibc == (2, 31)  # type: ignore[union-attr]
    assert data.glibc_of_os("centos", "5") is None
    assert {(m.tag, m.glibc) for m in data.legacy_manylinux} == {
        ("manylinux1", (2, 5)), ("manylinux2010", (2, 12)), ("manylinux2014", (2, 17))}
