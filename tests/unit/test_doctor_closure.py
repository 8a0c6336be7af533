"""The static library closure on small prefixes built with gcc: found, missing, too old."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

from gapship.node.base import FAIL, PASS, WARN
from gapship.node.closure import check_closure
from gapship.node.environment import check_ld_library_path
from gapship.node.loader import Loader
from tests.unit.doctor_fakes.build import MAP_V1, PKGDEP_V1, SITE, fake_prefix, shared

DEP = f"{SITE}/pkg.libs/libpkgdep.so.1"


def test_a_complete_prefix_passes(tmp_path: Path) -> None:
    prefix = fake_prefix(tmp_path / "env")
    checks, scan = check_closure(str(prefix), loader=Loader(""))
    assert [(c.status, c.name) for c in checks] == [(PASS, "library closure")]
    assert scan.files == 4
    assert checks[0].detail.startswith("4 ELF files: every needed library")


def test_a_deleted_library_names_its_package_and_says_reinstall(tmp_path: Path) -> None:
    prefix = fake_prefix(tmp_path / "env")
    (prefix / DEP).unlink()
    checks, _ = check_closure(str(prefix), loader=Loader(""))
    (check,) = checks
    assert check.status == FAIL and check.name == "libpkgdep.so.1 not found"
    assert check.detail == f"needed by pkg: {SITE}/pkg/_ext.so"
    assert check.diagnosis == "missing-shared-object-deleted"
    assert f"should be at {DEP} (pkg installed it)" in check.remedy
    assert f"sh NAME.run --prefix {prefix} --force" in check.remedy


def test_a_library_the_bundle_has_elsewhere_is_a_warning(tmp_path: Path) -> None:
    prefix = fake_prefix(tmp_path / "env")
    (prefix / "lib" / "elsewhere").mkdir()
    shutil.move(str(prefix / DEP), prefix / "lib" / "elsewhere" / "libpkgdep.so.1")
    (prefix / SITE / "pkg-1.0.dist-info" / "RECORD").write_text("pkg/_ext.so,,\n")
    checks, _ = check_closure(str(prefix), loader=Loader(""))
    (check,) = checks
    assert check.status == WARN and check.diagnosis == "missing-shared-object-bundled"
    assert "is in the bundle (lib/elsewhere/libpkgdep.so.1)" in check.remedy


def test_a_library_nowhere_at_all(tmp_path: Path) -> None:
    prefix = fake_prefix(tmp_path / "env")
    (prefix / DEP).unlink()
    (prefix / SITE / "pkg-1.0.dist-info" / "RECORD").write_text("pkg/_ext.so,,\n")
    (check,) = check_closure(str(prefix), loader=Loader(""))[0]
    assert check.status == FAIL and check.diagnosis == "missing-shared-object"
    assert "libpkgdep.so.1 is needed by pkg but is neither in the bundle nor on this node" \
        in check.remedy


def test_an_older_library_lacks_the_symbol_version(tmp_path: Path) -> None:
    prefix = fake_prefix(tmp_path / "env")
    shared(prefix / DEP, PKGDEP_V1, versions=MAP_V1, soname="libpkgdep.so.1")
    (check,) = check_closure(str(prefix), loader=Loader(""))[0]
    assert check.status == FAIL
    assert check.name == "PKGDEP_2.0 not in this node's libpkgdep.so.1"
    assert check.detail.startswith("needed by pkg: ") and "newest PKGDEP_1.0" in check.detail
    assert "older than the one pkg was built against" in check.remedy


def fake_old_glibc(dest: Path) -> Path:
    """A libc.so.6 whose newest version is GLIBC_2.31, like Debian 11's."""
    versions = ("GLIBC_2.2.5 { global: old_one; local: *; };\n"
                "GLIBC_2.31 { global: newer_one; } GLIBC_2.2.5;\n")
    shared(dest / "libc.so.6", "int old_one(void) { return 1; }\n"
           "int newer_one(void) { return 2; }\n", "-nostdlib", versions=versions,
           soname="libc.so.6")
    return dest


def test_a_library_needing_a_newer_glibc(tmp_path: Path) -> None:
    """arc4random is GLIBC_2.36 on the builder; against a glibc 2.31 it is named and fixed."""
    ext = ("#include <stdlib.h>\nint pkgdep_two(void);\n"
           "unsigned ext(void) { return arc4random() + pkgdep_two(); }\n")
    prefix = fake_prefix(tmp_path / "env", ext_source=ext)
    old = fake_old_glibc(tmp_path / "oldlibc")
    checks, _ = check_closure(str(prefix), loader=Loader(str(old)))
    by_name = {c.name: c for c in checks}
    check = by_name["GLIBC_2.36 not in this node's libc.so.6"]
    assert check.status == FAIL and check.diagnosis == "glibc-too-old"
    assert check.detail.startswith(f"needed by pkg: {SITE}/pkg/_ext.so; libc.so.6 here is ")
    assert check.detail.endswith("(glibc 2.36), newest GLIBC_2.31")
    assert "needs GLIBC_2.36 from" in check.remedy and "pack again with --target" in check.remedy
    # against the builder's own glibc the same prefix is fine
    assert check_closure(str(prefix), loader=Loader(""))[0][0].status == PASS


def test_driver_libraries_are_left_to_the_gpu_checks(tmp_path: Path) -> None:
    stub = shared(tmp_path / "stub" / "libcuda.so.1", "int cuInit(unsigned f) { return 0; }\n")
    ext = "int cuInit(unsigned);\nint pkgdep_two(void);\nint ext(void) { return cuInit(0); }\n"
    prefix = fake_prefix(tmp_path / "env", ext_source=ext,
                         ext_flags=(f"-L{stub.parent}", "-l:libcuda.so.1"))
    (check,) = check_closure(str(prefix), loader=Loader(""))[0]
    assert check.status == PASS
    assert "1 file need the NVIDIA driver's libcuda.so.1 (see gpu)" in check.detail


def test_files_of_another_abi_are_skipped_and_damaged_ones_failed(tmp_path: Path) -> None:
    prefix = fake_prefix(tmp_path / "env")
    data = bytearray((prefix / DEP).read_bytes())
    data[18:20] = struct.pack("<H", 183)  # an aarch64 library shipped by mistake
    (prefix / SITE / "pkg" / "libarm.so").write_bytes(bytes(data))
    (prefix / SITE / "pkg" / "libbroken.so").write_bytes(bytes(data[:200]))
    checks, scan = check_closure(str(prefix), loader=Loader(""))
    assert scan.skipped_abi == 1
    (check,) = checks
    assert check.status == FAIL and check.name == f"{SITE}/pkg/libbroken.so"
    assert check.detail.startswith("cannot be read as ELF")


def test_ld_library_path_that_hides_a_bundled_library(tmp_path: Path) -> None:
    prefix = fake_prefix(tmp_path / "env")
    other = tmp_path / "other-cuda" / "lib64"
    other.mkdir(parents=True)
    shutil.copy(prefix / DEP, other / "libpkgdep.so.1")
    checks, scan = check_closure(str(prefix), loader=Loader(str(other)))
    assert checks[0].status == PASS
    assert scan.outside["libpkgdep.so.1"] == (str(other / "libpkgdep.so.1"), "LD_LIBRARY_PATH")
    inside = str(prefix / "lib")
    (warn,) = check_ld_library_path(str(prefix), scan.sonames, f"{inside}:{other}")
    assert warn.status == WARN and warn.name == f"LD_LIBRARY_PATH entry {other}"
    assert "libpkgdep.so.1, which the bundle also ships" in warn.detail
    (ok,) = check_ld_library_path(str(prefix), scan.sonames, inside)
    assert ok.status == PASS


def test_a_dlopen_plugin_missing_a_site_library_is_only_a_warning(tmp_path: Path) -> None:
    """NVSHMEM's InfiniBand transport needs libmlx5: nothing loads it unless the node has it."""
    prefix = fake_prefix(tmp_path / "env")
    plugin_dir = prefix / SITE / "nvidia" / "nvshmem" / "lib"
    plugin_dir.mkdir(parents=True)
    absent = shared(tmp_path / "absent" / "libmlx5.so.1", "int mlx(void) { return 1; }\n",
                    soname="libmlx5.so.1")
    shared(plugin_dir / "nvshmem_transport_ibgda.so.3",
           "int mlx(void);\nint transport(void) { return mlx(); }\n", str(absent),
           soname="nvshmem_transport_ibgda.so.3")
    checks, scan = check_closure(str(prefix), loader=Loader(""))
    assert [(c.status, c.name) for c in checks] == [
        (PASS, "library closure"), (WARN, "optional plugins")]
    assert "1 plugin of the environment cannot load on this node: they need libmlx5.so.1" in \
        checks[1].detail
    assert checks[1].facts["plugins"] == [f"{SITE}/nvidia/nvshmem/lib/nvshmem_transport_ibgda.so.3"]
    assert not scan.missing and "libmlx5.so.1" in scan.plugins_missing


def test_libraries_found_through_an_inherited_rpath_find_their_own_needs_there(
        tmp_path: Path) -> None:
    """numpy 1.26: _multiarray_umath's DT_RPATH finds libopenblas, which needs libgfortran,
    which needs libquadmath; none of the three has a path of its own."""
    prefix = fake_prefix(tmp_path / "env")
    libs = prefix / SITE / "num.libs"
    quad = shared(libs / "libquad.so.0", "int quad(void) { return 1; }\n")
    fort = shared(libs / "libfort.so.5", "int quad(void);\nint fort(void) { return quad(); }\n",
                  str(quad))
    blas = shared(libs / "libblas.so", "int fort(void);\nint blas(void) { return fort(); }\n",
                  str(fort))
    shared(prefix / SITE / "num" / "_core.cpython-311-x86_64-linux-gnu.so",
           "int blas(void);\nint core(void) { return blas(); }\n", str(blas),
           "-Wl,--disable-new-dtags", "-Wl,-rpath,$ORIGIN/../num.libs")
    checks, scan = check_closure(str(prefix), loader=Loader(""))
    assert not scan.missing and [c.status for c in checks] == [PASS]


def test_tensorflow1_contrib_ops_missing_tensorrt_or_nccl_only_warn(tmp_path: Path) -> None:
    """Issue 12.7e: tensorflow-gpu 1.x ships contrib ops that need libnvinfer (TensorRT) or
    libnccl; only tf.contrib.tensorrt / tf.contrib.nccl load them, so they are a warning."""
    prefix = fake_prefix(tmp_path / "env")
    absent = tmp_path / "absent"
    contrib = prefix / SITE / "tensorflow" / "contrib"
    for lib, op in (("libnvinfer.so.4", "tensorrt/_wrap_conversion.so"),
                    ("libnccl.so.2", "nccl/python/ops/_nccl_ops.so")):
        needed = shared(absent / lib, "int dep(void) { return 1; }\n", soname=lib)
        shared(contrib / op, "int dep(void);\nint op(void) { return dep(); }\n", str(needed))
    checks, scan = check_closure(str(prefix), loader=Loader(""))
    assert [(c.status, c.name) for c in checks] == [
        (PASS, "library closure"), (WARN, "optional plugins")]
    assert "they need libnccl.so.2, libnvinfer.so.4" in checks[1].detail
    assert "TensorRT or NCCL through TensorFlow 1.x's tf.contrib" in checks[1].remedy
    assert not scan.missing
    # a contrib library that lacks anything else is still a failure
    other = shared(absent / "libfoo.so.1", "int foo(void) { return 1; }\n", soname="libfoo.so.1")
    shared(contrib / "foo" / "_foo_ops.so", "int foo(void);\nint f(void) { return foo(); }\n",
           str(other))
    checks, scan = check_closure(str(prefix), loader=Loader(""))
    assert (FAIL, "libfoo.so.1 not found") in [(c.status, c.name) for c in checks]


def test_a_cuda_library_missing_from_a_toolkit_stack_points_at_the_toolkit(
        tmp_path: Path) -> None:
    """Issue 12.7b: for a CUDA 9 stack the doctor suggested nvidia-cublas-cu12."""
    prefix = fake_prefix(tmp_path / "env")
    needed = shared(tmp_path / "absent" / "libcublas.so.9.0", "int cublas(void) { return 1; }\n",
                    soname="libcublas.so.9.0")
    shared(prefix / SITE / "tensorflow" / "python" / "_pywrap_tensorflow_internal.so",
           "int cublas(void);\nint tf(void) { return cublas(); }\n", str(needed))
    (prefix / SITE / "pkg-1.0.dist-info" / "RECORD").write_text("pkg/_ext.so,,\n")
    context = {"cuda": "9.0", "cuda_source": "toolkit"}
    checks, _ = check_closure(str(prefix), loader=Loader(""), context=context)
    (check,) = [c for c in checks if c.name == "libcublas.so.9.0 not found"]
    assert check.status == FAIL and check.diagnosis == "cuda-library-missing-toolkit"
    assert 'cuda = { path = "/usr/local/cuda-9.0" }' in check.remedy
    assert "nvidia-cublas" not in check.remedy
    wheels = {"cuda": "12.4", "cuda_source": "wheels"}
    checks, _ = check_closure(str(prefix), loader=Loader(""), context=wheels)
    (check,) = [c for c in checks if c.name == "libcublas.so.9.0 not found"]
    assert check.diagnosis == "cuda-library-other-version"
    assert "built for CUDA 9.0" in check.remedy and "CUDA is 12.4" in check.remedy
