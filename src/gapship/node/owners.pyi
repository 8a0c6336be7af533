# Types of owners.py for the builder's mypy; owners.py itself runs unannotated on Python 3.6+.
import os

_Path = str | os.PathLike[str]

INTERPRETER: str
ENVIRONMENT: str


class Owners:
    prefix: str
    sites: list[str]
    by_path: dict[str, str]
    by_name: dict[str, list[tuple[str, str]]]
    def __init__(self, prefix: _Path, site_packages: str | None = ...) -> None: ...
    def owner(self, path: _Path) -> str: ...
    def rel(self, path: _Path) -> str: ...
    def expected(self, soname: str) -> list[tuple[str, str]]: ...
