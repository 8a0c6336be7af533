"""The payload's codec (zstd, or parallel multi-member gzip) and the installer's one read
(hash while extracting): real bundles, real shells, a busybox-only machine."""

from __future__ import annotations

import gzip
import os
import re
import subprocess
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard

from gapship.bundle import write_bundle
from gapship.bundle.codec import Compressor, ParallelGzip, Sink, ZstdStream, choose
from gapship.errors import BundleError
from tests.conftest import SHELLS, require_tool, shell_argv
from tests.unit.test_installer import bundle_of, debris, install, make_tree
from tests.unit.test_installer_faults import tmpfs_install, understate_size

# real bundles under every shell: tens of seconds, so out of the fast loop (CI runs them)
pytestmark = pytest.mark.slow


def busybox_path(tmp: Path) -> dict[str, str]:
    """PATH with busybox's applets only: gzip, no zstd (sh too: write-activation.sh runs
    under it)."""
    busybox = require_tool("busybox")
    bin_dir = tmp / "busybox-bin"
    bin_dir.mkdir(exist_ok=True)
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    for applet in applets:
        link = bin_dir / applet
        if not link.exists():
            link.symlink_to(busybox)
    assert not (bin_dir / "zstd").exists()
    return {"PATH": str(bin_dir), "HOME": str(tmp)}


def payload_of(bundle: Path) -> bytes:
    data = bundle.read_bytes()
    found = re.search(rb"GAPSHIP_HEADER_BYTES=(\d+)", data)
    assert found is not None
    return data[int(found.group(1)):]


def gzip_members(payload: bytes) -> int:
    count = 0
    while payload:
        member = zlib.decompressobj(31)
        member.decompress(payload)
        assert member.eof
        payload = member.unused_data
        count += 1
    return count


def corrupt_middle(bundle: Path) -> None:
    data = bytearray(bundle.read_bytes())
    header = len(data) - len(payload_of(bundle))
    middle = header + (len(data) - header) // 2
    for i in range(middle, middle + 16):
        data[i] ^= 0x5A
    bundle.write_bytes(bytes(data))


@pytest.mark.parametrize("shell", SHELLS)
def test_a_zstd_bundle_installs_under_each_shell(tmp_path: Path, shell: str) -> None:
    require_tool("zstd")
    bundle = bundle_of(tmp_path, codec="zstd", big=300_000)
    assert payload_of(bundle)[:4] == b"\x28\xb5\x2f\xfd"   # a zstd frame
    prefix = tmp_path / "envs" / "tiny"
    proc = install(bundle, prefix, shell=shell)
    assert proc.returncode == 0, proc.stderr
    assert (prefix / "bin" / "python3").read_text().endswith("echo one\n")
    assert (prefix / "data.bin").stat().st_size == 300_000
    assert "extracting: done" in proc.stderr and "checksum ok" in proc.stderr
    assert debris(prefix.parent) == []


def test_a_multi_member_gzip_bundle_installs_with_busybox_alone(tmp_path: Path) -> None:
    # 20 MB of noise: five 4 MiB pieces, five gzip members
    bundle = bundle_of(tmp_path, codec="gzip", big=20_000_000)
    assert gzip_members(payload_of(bundle)) == 5
    prefix = tmp_path / "envs" / "tiny"
    env = busybox_path(tmp_path)
    proc = install(bundle, prefix, shell="busybox", env=env)
    assert proc.returncode == 0, proc.stderr
    assert (prefix / "data.bin").read_bytes() == (tmp_path / "tree-one" / "data.bin").read_bytes()
    assert debris(prefix.parent) == []
    # no per-file lines when stderr is not a terminal: a start line and a done line
    assert not re.search(r"extracting: \d+%", proc.stderr)


@pytest.mark.parametrize("openssl", ["right", "wrong"])
def test_the_payload_is_hashed_by_openssl_only_where_it_hashes_right(tmp_path: Path,
                                                                    openssl: str) -> None:
    """OpenSSL hashes ~8x faster than coreutils' sha256sum, so the installer takes it first;
    one that hashes wrong (a broken build) is passed over, and the bundle still installs."""
    real = require_tool("openssl")
    bundle = bundle_of(tmp_path, codec="gzip", big=300_000)
    bin_dir = tmp_path / "hook-bin"
    bin_dir.mkdir()
    calls = tmp_path / "openssl-calls"
    wrapper = bin_dir / "openssl"
    if openssl == "right":  # the real one, counted
        wrapper.write_text(f'#!/bin/sh\necho x >> "{calls}"\nexec "{real}" "$@"\n')
    else:  # a hash of the right form, of nothing it was given
        wrapper.write_text(f'#!/bin/sh\necho x >> "{calls}"\ncat > /dev/null\n'
                           f'echo "SHA2-256(stdin)= {64 * "0"}"\n')
    wrapper.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    prefix = tmp_path / "envs" / "tiny"
    proc = install(bundle, prefix, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "checksum ok" in proc.stderr
    # the right one: the check, then the payload as it is extracted; the wrong one: the check
    assert len(calls.read_text().split()) == (1 if openssl == "wrong" else 2)


def test_a_zstd_bundle_without_zstd_is_refused_in_one_line(tmp_path: Path) -> None:
    bundle = bundle_of(tmp_path, codec="zstd")
    prefix = tmp_path / "envs" / "tiny"
    proc = install(bundle, prefix, shell="busybox", env=busybox_path(tmp_path))
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "zstd-compressed" in lines[0] and "no zstd" in lines[0]
    assert "--codec gzip" in lines[0]
    assert not prefix.parent.exists()
    # --check needs no decompressor: it verifies the checksum alone
    check = subprocess.run([*shell_argv("busybox"), str(bundle), "--check"], text=True,
                           capture_output=True, env=busybox_path(tmp_path), check=False)
    assert check.returncode == 0 and "checksum ok" in check.stderr, check.stderr


@pytest.mark.parametrize("codec", ["zstd", "gzip"])
@pytest.mark.parametrize("shell", SHELLS)
def test_a_payload_damaged_in_the_middle_installs_nothing(tmp_path: Path, codec: str,
                                                          shell: str) -> None:
    if codec == "zstd":
        require_tool("zstd")
    prefix = tmp_path / "envs" / "tiny"
    assert install(bundle_of(tmp_path, marker="one"), prefix, shell=shell).returncode == 0
    bundle = bundle_of(tmp_path, codec=codec, marker="two", big=2_000_000)
    corrupt_middle(bundle)
    proc = install(bundle, prefix, "--force", shell=shell)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert "damaged" in last and "Nothing was installed" in last and "again" in last, proc.stderr
    assert "extraction failed" not in proc.stderr and "space" not in proc.stderr
    # the old environment as it was, and nothing hidden left beside it
    assert (prefix / "bin" / "python3").read_text().endswith("echo one\n")
    assert debris(prefix.parent) == []


@pytest.mark.parametrize("codec", ["zstd", "gzip"])
def test_a_damaged_payload_on_a_new_prefix_leaves_no_directory(tmp_path: Path,
                                                               codec: str) -> None:
    if codec == "zstd":
        require_tool("zstd")
    bundle = bundle_of(tmp_path, codec=codec, big=2_000_000)
    corrupt_middle(bundle)
    prefix = tmp_path / "a" / "b" / "tiny"
    proc = install(bundle, prefix)
    assert proc.returncode != 0 and "damaged" in proc.stderr
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("codec", ["zstd", "gzip"])
def test_a_damaged_payload_on_a_full_disk_says_damaged(tmp_path: Path, codec: str) -> None:
    if codec == "zstd":
        require_tool("zstd")
    # the disk fills up before the damage is reached: the checksum is still what failed
    bundle = bundle_of(tmp_path, codec=codec, big=3_000_000)
    understate_size(bundle)
    data = bytearray(bundle.read_bytes())
    data[-2000] ^= 0xFF
    bundle.write_bytes(bytes(data))
    rc, left, err = tmpfs_install(tmp_path, bundle, "size=2m")
    assert rc != 0 and left == []
    last = err.strip().splitlines()[-1]
    assert "damaged" in last and "space" not in last, err


@pytest.mark.parametrize("codec", ["zstd", "gzip"])
def test_equal_trees_give_equal_bundles(tmp_path: Path, codec: str) -> None:
    tree = make_tree(tmp_path / "tree", big=9_000_000)
    a, b = (write_bundle(tree, tmp_path / f"{n}.run", name="tiny", version="1.0",
                         python="3.11.7", installed_bytes=1, codec=choose(codec, (), None))
            for n in ("a", "b"))
    assert a.codec == codec and a.level == {"zstd": 3, "gzip": 4}[codec]
    assert a.path.read_bytes() == b.path.read_bytes()


def compressed(data: bytes, make: Callable[[Sink], Compressor]) -> bytes:
    out = bytearray()

    class Into:
        def write(self, chunk: bytes) -> int:
            out.extend(chunk)
            return len(chunk)

    stream = make(Into())
    for i in range(0, len(data), 10_000):   # writes that do not line up with the pieces
        stream.write(data[i:i + 10_000])
    stream.close()
    return bytes(out)


NOISE_AND_TEXT = os.urandom(300_000) + bytes(700_000) + b"gapship " * 2_000_000


def test_parallel_gzip_does_not_depend_on_the_number_of_threads() -> None:
    data = NOISE_AND_TEXT
    one, three = (compressed(data, lambda out, n=n: ParallelGzip(out, 6, workers=n,
                                                                 piece=64 << 10))
                  for n in (1, 3))
    assert one == three
    assert gzip.decompress(one) == data
    assert gzip_members(one) == -(-len(data) // (64 << 10))


def test_zstd_does_not_depend_on_the_number_of_threads() -> None:
    data = NOISE_AND_TEXT
    one, three = (compressed(data, lambda out, n=n: ZstdStream(out, 3, workers=n))
                  for n in (1, 3))
    assert one == three
    assert zstandard.ZstdDecompressor().decompressobj().decompress(one) == data


def test_auto_takes_zstd_only_where_the_target_has_it() -> None:
    assert choose("auto", (("gzip", True), ("zstd", True)), None).name == "zstd"
    assert choose("auto", (("gzip", True), ("zstd", False)), None).name == "gzip"
    # a target.json from an older probe records no tools: gzip, which every target has
    old = choose("auto", (), None)
    assert (old.name, old.level) == ("gzip", 4) and "did not record" in old.reason
    assert choose("gzip", (("zstd", True),), 9).level == 9
    with pytest.raises(BundleError, match="no zstd"):
        choose("zstd", (("zstd", False),), None)
    with pytest.raises(BundleError, match="1-9"):
        choose("gzip", (), 12)
    assert choose("zstd", (), 12).level == 12
