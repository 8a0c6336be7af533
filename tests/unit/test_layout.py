"""PREFIX/gapship/ has one owner, gapship/node/layout.py: the shell files spell only the paths it
names, the Python code spells none itself, and the doctor ships it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from gapship import doctor
from gapship.node import layout

SRC = Path(__file__).resolve().parents[2] / "src" / "gapship"
SHELL_FILES = ("bundle/installer.sh", "activate/write-activation.sh", "activate/activate.in",
               "activate/activate.sh.in", "activate/activate.csh.in", "activate/activate.fish.in",
               "activate/ld-library-path.sh", "activate/gapship-rehome.sh",
               "activate/gapship-profile.sh", "activate/gapship-remove.sh",
               "doctor/gapship-doctor.sh", "doctor/gapship-nodes.sh", "bundle/image-install.sh",
               "bundle/image-activate.in", "bundle/image-mount.sh", "bundle/image-umount.sh",
               "bundle/image-doctor.sh")
# a path inside the environment's own directory: `$tree/gapship/name`, "$here/gapship"
# (the user's ~/.config/gapship, where trusted keys live, is not one)
IN_GAPSHIP = re.compile(r"(?<!config/)(?<!config}/)(?<=/)gapship(?:/[\w.-]*\w)*(?![\w-])")
COMMAND = re.compile(r"\bbin/gapship-[\w-]*\w")
# what each shell file must find where layout.py puts it (read, written or run there)
SHELL_USES = {
    "bundle/installer.sh": {layout.MANIFEST, layout.WRITE_ACTIVATION, layout.DOCTOR,
                            layout.REHOME},
    "activate/write-activation.sh": {layout.NAME, layout.VERSION, layout.BASE_PYTHON,
                                     layout.ACTIVATE_CONF, layout.ACTIVATION_DIR,
                                     layout.ACTIVATE_SH, layout.PREFIX_RECORD,
                                     layout.PREFIX_RECORD_TMP, layout.REHOME},
    "activate/activate.in": set(),
    "activate/activate.sh.in": {layout.REHOME},
    "activate/activate.csh.in": set(),
    "activate/activate.fish.in": set(),
    "activate/ld-library-path.sh": set(),
    "activate/gapship-profile.sh": set(),
    "activate/gapship-remove.sh": set(),
    "activate/gapship-rehome.sh": {layout.ACTIVATION_TEMPLATE, layout.PREFIX_RECORD,
                                   layout.WRITE_ACTIVATION},
    "doctor/gapship-doctor.sh": {layout.DIRECTORY},
    "bundle/image-install.sh": {layout.NAME, layout.IMAGE_CONF, layout.WRITE_ACTIVATION,
                                layout.IMAGE_ACTIVATE_TEMPLATE},
    "bundle/image-activate.in": {layout.MOUNT, layout.UMOUNT, layout.ACTIVATE_SH},
    "bundle/image-mount.sh": {layout.IMAGE_CONF, layout.MANIFEST},
    "bundle/image-umount.sh": {layout.IMAGE_CONF},
    "bundle/image-doctor.sh": {layout.MOUNT, layout.IMAGE_CONF},
    "doctor/gapship-nodes.sh": {layout.DIRECTORY, layout.NAME, layout.MANIFEST, layout.DOCTOR,
                                layout.IMAGE_CONF, layout.MOUNT},
}


def layout_paths() -> set[str]:
    return {value for name, value in vars(layout).items()
            if name.isupper() and isinstance(value, str)}


def spelled(shell_file: str) -> set[str]:
    text = (SRC / shell_file).read_text(encoding="utf-8")
    return set(IN_GAPSHIP.findall(text)) | set(COMMAND.findall(text))


@pytest.mark.parametrize("shell_file", SHELL_FILES)
def test_shell_files_spell_only_the_paths_layout_names(shell_file: str) -> None:
    unknown = spelled(shell_file) - layout_paths()
    assert unknown == set(), f"{shell_file} spells paths src/gapship/node/layout.py does not name"


@pytest.mark.parametrize("shell_file", SHELL_FILES)
def test_shell_files_find_what_they_use_where_layout_puts_it(shell_file: str) -> None:
    assert SHELL_USES[shell_file] <= spelled(shell_file)


def test_the_node_directory_holds_the_doctor_the_wrapper_runs() -> None:
    wrapper = (SRC / "doctor" / "gapship-doctor.sh").read_text(encoding="utf-8")
    # the wrapper puts PREFIX/gapship on sys.path and imports the package by its last name
    parent, _, package = layout.NODE.rpartition("/")
    assert parent == layout.DIRECTORY and f"from {package}.main import main" in wrapper


def test_every_layout_path_is_inside_the_prefix_and_distinct() -> None:
    paths = [v for n, v in vars(layout).items() if n.isupper() and isinstance(v, str)]
    assert len(paths) == len(set(paths))
    for path in paths:
        assert not path.startswith("/") and ".." not in path.split("/") and "\\" not in path


def _docstrings(tree: ast.AST) -> set[int]:
    bodies = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    return {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, bodies) and node.body and isinstance(node.body[0], ast.Expr)}


def _is_directory(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value == layout.DIRECTORY


def _spells_a_path_in_gapship(node: ast.AST, docs: set[int]) -> bool:
    """"gapship/x" in a string, os.path.join(p, "gapship", "x") or p / "gapship" / "x"."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
        return re.search(r"(?<![\w.-])(?<!\.config/)gapship/[\w.-]", node.value) is not None
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
            and node.func.attr == "join":
        return any(_is_directory(arg) for arg in node.args[:-1])
    return (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div)
            and isinstance(node.left, ast.BinOp) and _is_directory(node.left.right))


def test_python_code_names_environment_paths_only_through_layout() -> None:
    spellers = []
    for path in sorted(SRC.rglob("*.py")):
        if path == SRC / "node" / "layout.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docs = _docstrings(tree)
        spellers += [f"{path.relative_to(SRC)}:{node.lineno}" for node in ast.walk(tree)
                     if _spells_a_path_in_gapship(node, docs)]
    assert spellers == [], "name paths in PREFIX/gapship/ with gapship.node.layout"


def test_layout_ships_with_the_doctor_and_imports_nothing() -> None:
    # the doctor on Python 3.6 imports it (test_doctor_shipping runs that)
    assert "layout.py" in doctor.NODE_FILES
    tree = ast.parse((SRC / "node" / "layout.py").read_text(encoding="utf-8"))
    assert not any(isinstance(n, (ast.Import, ast.ImportFrom)) for n in ast.walk(tree))
