"""Small ELF trees built with gcc for the doctor's tests: real files, real loader semantics."""

from __future__ import annotations

import atexit
import functools
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.conftest import require_tool

HERE = Path(__file__).resolve().parent
SITE = "lib/python3.11/site-packages"


def cc(out: Path, source: str, *flags: str) -> Path:
    """Compile C ``source`` into ``out`` (a shared library when -shared is in ``flags``)."""
    gcc = require_tool("gcc")
    out.parent.mkdir(parents=True, exist_ok=True)
    src = out.with_name(out.name + ".c")
    src.write_text(source)
    subprocess.run([gcc, "-o", str(out), str(src), *flags], check=True, capture_output=True,
                   text=True)
    src.unlink()
    return out


def shared(out: Path, source: str, *flags: str, soname: str | None = None,
           versions: str | None = None) -> Path:
    """A shared library; ``versions`` is a linker version script."""
    extra = ["-shared", "-fPIC", f"-Wl,-soname,{soname or out.name}"]
    if versions is None:
        return cc(out, source, *extra, *flags)
    out.parent.mkdir(parents=True, exist_ok=True)
    script = out.with_name(out.name + ".map")
    script.write_text(versions)
    try:
        return cc(out, source, *extra, f"-Wl,--version-script,{script}", *flags)
    finally:
        script.unlink()


def fake_cuda(dest: Path) -> Path:
    """libcuda.so.1, libcudart.so.12 and libcudnn.so.9 doubles (doctor_fakes/fake_cuda.c)."""
    source = (HERE / "fake_cuda.c").read_text()
    lib = shared(dest / "libcuda.so.1", source, "-Wall")
    for name in ("libcudart.so.12", "libcudnn.so.9"):
        (dest / name).write_bytes(lib.read_bytes())
    return dest


PKGDEP_V2 = "int pkgdep_one(void) { return 1; }\nint pkgdep_two(void) { return 2; }\n"
PKGDEP_V1 = "int pkgdep_one(void) { return 1; }\n"
MAP_V2 = ("PKGDEP_1.0 { global: pkgdep_one; local: *; };\n"
          "PKGDEP_2.0 { global: pkgdep_two; } PKGDEP_1.0;\n")
MAP_V1 = "PKGDEP_1.0 { global: pkgdep_one; local: *; };\n"


def fake_prefix(root: Path, ext_source: str | None = None,
                ext_flags: tuple[str, ...] = ()) -> Path:
    """An installed-prefix look-alike.

    bin/python3 (RUNPATH $ORIGIN/../lib) needs lib/libpyfake.so.1; the distribution ``pkg``
    has pkg/_ext.so, which needs pkg.libs/libpkgdep.so.1 (RUNPATH $ORIGIN/../pkg.libs) and
    its symbol version PKGDEP_2.0; RECORD and gapship/environment.json say who owns what.
    The plain one is compiled once per process and copied (its paths are all relative).
    """
    if ext_source is None and not ext_flags:
        shutil.copytree(_plain_prefix(), root, symlinks=True)
        return root
    return _build_prefix(root, ext_source, ext_flags)


@functools.cache
def _plain_prefix() -> Path:
    where = Path(tempfile.mkdtemp(prefix="gapship-fake-prefix-"))
    atexit.register(shutil.rmtree, where, ignore_errors=True)
    return _build_prefix(where / "env", None, ())


def _build_prefix(root: Path, ext_source: str | None, ext_flags: tuple[str, ...]) -> Path:
    lib = shared(root / "lib" / "libpyfake.so.1", "int pyfake(void) { return 0; }\n")
    cc(root / "bin" / "python3", "int pyfake(void);\nint main(void) { return pyfake(); }\n",
       f"-L{lib.parent}", "-l:libpyfake.so.1", "-Wl,--enable-new-dtags",
       "-Wl,-rpath,$ORIGIN/../lib")
    site = root / SITE
    dep = shared(site / "pkg.libs" / "libpkgdep.so.1", PKGDEP_V2, versions=MAP_V2)
    source = ext_source or "int pkgdep_two(void);\nint ext(void) { return pkgdep_two(); }\n"
    shared(site / "pkg" / "_ext.so", source, f"-L{dep.parent}", "-l:libpkgdep.so.1",
           "-Wl,--enable-new-dtags", "-Wl,-rpath,$ORIGIN/../pkg.libs", *ext_flags)
    info = site / "pkg-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: pkg\nVersion: 1.0\n\n")
    (info / "RECORD").write_text("pkg/_ext.so,,\npkg.libs/libpkgdep.so.1,,\n"
                                 "pkg-1.0.dist-info/METADATA,,\npkg-1.0.dist-info/RECORD,,\n")
    meta = root / "gapship"
    meta.mkdir()
    (meta / "environment.json").write_text(json.dumps({
        "site_packages": SITE,
        "distributions": [{"name": "pkg", "version": "1.0", "imports": ["pkg"]}]}))
    return root
