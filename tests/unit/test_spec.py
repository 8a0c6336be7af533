from __future__ import annotations

from pathlib import Path

import pytest

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
