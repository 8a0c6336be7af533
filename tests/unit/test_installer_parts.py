"""Split bundles (pack --split): NAME.run with an index of its parts, NAME.part-001 ... beside it.
Real bundles, real shells: every part is verified before anything is written, all bad parts are
named in one line, and the parts stream through the same hashed extraction as a whole bundle."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from gapship import bundle as bundle_module
from gapship.bundle import BundleInfo, parse_size, write_bundle
from gapship.bundle.codec import Sink, choose
from gapship.errors import BundleError
from tests.conftest import SHELLS, shell_argv
from tests.unit.test_installer import debris, install, make_tree
from tests.unit.test_installer_codec import busybox_path

# real bundles under every shell: tens of seconds, so out of the fast loop (CI runs them)
pytestmark = pytest.mark.slow

PART = 64 * 1024


def split_bundle(tmp: Path, *, name: str = "tiny", marker: str = "one", big: int = 300_000,
                 split: int = PART, codec: str = "gzip", out_dir: Path | None = None,
                 sign_key: Path | None = None) -> BundleInfo:
    tree = make_tree(tmp / f"tree-{marker}", name, big, marker)
    size = sum(f.stat().st_size for f in tree.rglob("*") if f.is_file())
    # level 1 on random data: the payload is about as big as the data
    return write_bundle(tree, (out_dir or tmp) / f"{name}.run", name=name, version="1.0",
                        python="3.11.7", installed_bytes=size, codec=choose(codec, (), 1),
                        split=split, sign_key=sign_key)


def run(bundle: Path, *args: str, shell: str = "dash",
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*shell_argv(shell), str(bundle), *args], capture_output=True,
                          text=True, timeout=120, check=False, stdin=subprocess.DEVNULL,
                          env=env)


def damage(part: Path) -> str:
    """Flip one byte in the middle of ``part``; its new sha256."""
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF
    part.write_bytes(bytes(data))
    return hashlib.sha256(bytes(data)).hexdigest()


def test_pack_writes_the_run_and_its_parts_with_their_index(tmp_path: Path) -> None:
    info = split_bundle(tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir() if p.is_file())
    assert len(info.parts) >= 4
    assert names == [*(f"tiny.part-{i:03d}" for i in range(1, len(info.parts) + 1)), "tiny.run"]
    assert all(p.size == PART for p in info.parts[:-1]) and 0 < info.parts[-1].size <= PART
    payload = b"".join(p.path.read_bytes() for p in info.parts)
    assert hashlib.sha256(payload).hexdigest() == info.payload_sha256
    for part in info.parts:
        assert hashlib.sha256(part.path.read_bytes()).hexdigest() == part.sha256
    # the .run is the installer alone: a few KB, not the payload
    assert info.size < 40_000
    text = info.path.read_text()
    for part in info.parts:
        assert f"{part.size} {part.sha256} {part.path.name}" in text


@pytest.mark.parametrize("shell", SHELLS)
def test_a_split_bundle_installs_under_each_shell(tmp_path: Path, shell: str) -> None:
    info = split_bundle(tmp_path)
    prefix = tmp_path / "envs" / "tiny"
    proc = install(info.path, prefix, shell=shell)
    assert proc.returncode == 0, proc.stderr
    assert f"verifying the {len(info.parts)} parts of tiny.run" in proc.stderr
    assert (prefix / "bin" / "python3").read_text().endswith("echo one\n")
    assert len((prefix / "data.bin").read_bytes()) == 300_000
    assert debris(prefix.parent) == []


def test_busybox_only_machine_installs_a_split_bundle(tmp_path: Path) -> None:
    info = split_bundle(tmp_path)
    prefix = tmp_path / "envs" / "tiny"
    proc = run(info.path, "--prefix", str(prefix), shell="busybox", env=busybox_path(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert (prefix / "bin" / "python3").read_text().endswith("echo one\n")


def test_a_zstd_split_bundle_installs(tmp_path: Path) -> None:
    info = split_bundle(tmp_path, codec="zstd")
    prefix = tmp_path / "env"
    proc = install(info.path, prefix)
    assert proc.returncode == 0, proc.stderr
    assert len((prefix / "data.bin").read_bytes()) == 300_000


def test_a_missing_part_is_named_and_nothing_is_installed(tmp_path: Path) -> None:
    info = split_bundle(tmp_path)
    info.parts[2].path.unlink()
    prefix = tmp_path / "envs" / "tiny"
    proc = install(info.path, prefix)
    assert proc.returncode != 0
    line = proc.stderr.strip().splitlines()[-1]
    assert "tiny.part-003 is missing: send it again; nothing was installed" in line
    assert "--parts DIR" in line
    assert not prefix.exists() and not prefix.parent.exists()


def test_a_damaged_part_is_named_with_its_sha256(tmp_path: Path) -> None:
    info = split_bundle(tmp_path)
    got = damage(info.parts[1].path)
    prefix = tmp_path / "env"
    proc = install(info.path, prefix)
    assert proc.returncode != 0
    assert (f"tiny.part-002 is damaged (sha256 {got}, expected {info.parts[1].sha256}): "
            "send it again; nothing was installed.") in proc.stderr
    assert not prefix.exists() and debris(tmp_path) == []


def test_every_bad_part_is_named_in_one_message(tmp_path: Path) -> None:
    info = split_bundle(tmp_path)
    last = info.parts[-1]
    info.parts[0].path.unlink()
    damage(info.parts[2].path)
    last.path.write_bytes(last.path.read_bytes()[:-1])
    proc = install(info.path, tmp_path / "env")
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if "send them again" in ln]
    assert len(lines) == 1, proc.stderr
    assert re.search(r"tiny\.part-001 is missing, tiny\.part-003 is damaged \(sha256 [0-9a-f]{64}, "
                     rf"expected {info.parts[2].sha256}\), {last.path.name} is damaged "
                     rf"\({last.size - 1} bytes, expected {last.size}\): send them again; "
                     "nothing was installed", lines[0]), lines[0]
    assert not (tmp_path / "env").exists()


def test_parts_in_another_directory_with_a_space(tmp_path: Path) -> None:
    info = split_bundle(tmp_path / "build")
    elsewhere = tmp_path / "my incoming parts"
    elsewhere.mkdir()
    for part in info.parts:
        part.path.rename(elsewhere / part.path.name)
    runner = tmp_path / "where the run is"
    runner.mkdir()
    bundle = info.path.rename(runner / "tiny.run")
    prefix = tmp_path / "env"
    refused = install(bundle, prefix)
    assert refused.returncode != 0 and "tiny.part-001 is missing" in refused.stderr
    assert f"looked in {runner}" in refused.stderr
    proc = install(bundle, prefix, "--parts", str(elsewhere))
    assert proc.returncode == 0, proc.stderr
    assert len((prefix / "data.bin").read_bytes()) == 300_000
    checked = run(bundle, f"--parts={elsewhere}", "--check")
    assert checked.returncode == 0 and "every part is complete" in checked.stderr


def test_a_renamed_part_is_missing_under_its_expected_name(tmp_path: Path) -> None:
    info = split_bundle(tmp_path)
    info.parts[1].path.rename(tmp_path / "tiny.part-2")
    proc = install(info.path, tmp_path / "env")
    assert proc.returncode != 0
    assert "tiny.part-002 is missing: send it again" in proc.stderr
    assert not (tmp_path / "env").exists()


def test_a_renamed_run_still_finds_its_parts(tmp_path: Path) -> None:
    info = split_bundle(tmp_path)
    bundle = info.path.rename(tmp_path / "other-name.run")
    proc = install(bundle, tmp_path / "env")
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("cut", [1, 200, 3000])
def test_a_truncated_run_is_refused(tmp_path: Path, cut: int) -> None:
    info = split_bundle(tmp_path)
    info.path.write_bytes(info.path.read_bytes()[:-cut])
    proc = install(info.path, tmp_path / "env")
    assert proc.returncode != 0
    assert not (tmp_path / "env").exists() and debris(tmp_path) == []
    if cut < 200:  # within the index after the header: the size check says so
        assert "damaged" in proc.stderr and "Send tiny.run again" in proc.stderr


def test_a_part_changed_after_its_check_is_caught_while_extracting(tmp_path: Path) -> None:
    """The payload is hashed again while extracting: a part swapped between the check and the
    extraction installs nothing."""
    info = split_bundle(tmp_path)
    victim = info.parts[-1].path
    saved = victim.read_bytes()
    bad = bytearray(saved)
    bad[10] ^= 0xFF
    # a sha256 command that swaps the last part just after the installer checked it
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    real = subprocess.run(["sh", "-c", "command -v sha256sum"], capture_output=True,
                          text=True, check=True).stdout.strip()
    hook = bin_dir / "sha256sum"
    swapped = tmp_path / "swapped"
    hook.write_text(f"#!/bin/sh\n{real} \"$@\"\nrc=$?\n"
                    f"if [ ! -e '{swapped}' ]; then\n"
                    f"n=$(cat '{tmp_path}/count' 2>/dev/null || echo 0)\n"
                    f"n=$((n + 1)); echo $n > '{tmp_path}/count'\n"
                    f"if [ $n -ge {len(info.parts)} ]; then cp '{tmp_path}/bad' '{victim}'; "
                    f"touch '{swapped}'; fi; fi\nexit $rc\n")
    hook.chmod(0o755)
    # an openssl that cannot hash: the installer falls back to (the hooked) sha256sum
    (bin_dir / "openssl").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "openssl").chmod(0o755)
    (tmp_path / "bad").write_bytes(bytes(bad))
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    proc = install(info.path, tmp_path / "env", env=env)
    assert swapped.exists()
    assert proc.returncode != 0
    assert "a part changed after it was verified" in proc.stderr
    assert not (tmp_path / "env").exists() and debris(tmp_path) == []


def test_info_lists_the_parts_and_check_verifies_them(tmp_path: Path) -> None:
    info = split_bundle(tmp_path)
    shown = run(info.path, "--info")
    assert shown.returncode == 0
    assert f"parts: {len(info.parts)} (size sha256 name)" in shown.stdout
    for part in info.parts:
        assert f"  {part.size} {part.sha256} {part.path.name}" in shown.stdout
    checked = run(info.path, "--check")
    assert checked.returncode == 0, checked.stderr
    assert hashlib.sha256(info.path.read_bytes()).hexdigest() in checked.stderr
    damage(info.parts[0].path)
    bad = run(info.path, "--check")
    assert bad.returncode != 0 and "tiny.part-001 is damaged" in bad.stderr


def test_a_signed_split_bundle_covers_its_parts(tmp_path: Path) -> None:
    from gapship.bundle.signing import generate_key_pair
    private, public = generate_key_pair(tmp_path / "keys" / "builder")
    info = split_bundle(tmp_path, sign_key=private)
    env = {**os.environ, "HOME": str(tmp_path / "home")}
    proc = run(info.path, "--prefix", str(tmp_path / "env"), "--trust", str(public), env=env)
    assert proc.returncode == 0, proc.stderr
    assert "signature verified" in proc.stderr
    # the index is signed: a part replaced together with its index entry is refused
    other = split_bundle(tmp_path / "other", marker="two")
    data = info.path.read_bytes()
    forged = data.replace(info.parts[0].sha256.encode(), other.parts[0].sha256.encode())
    info.path.write_bytes(forged)
    other.parts[0].path.replace(info.parts[0].path)
    proc = run(info.path, "--prefix", str(tmp_path / "env2"), "--trust", str(public), env=env)
    assert proc.returncode != 0 and "does not verify" in proc.stderr
    assert not (tmp_path / "env2").exists()


def test_repacking_with_fewer_parts_removes_the_stale_ones_only(tmp_path: Path) -> None:
    many = split_bundle(tmp_path, split=32 * 1024)
    count = len(many.parts)
    keep = [tmp_path / "tiny.part-1000.txt", tmp_path / "tiny.part-abc", tmp_path / "x.part-099"]
    for path in keep:
        path.write_text("mine")
    fewer = split_bundle(tmp_path, marker="two", split=128 * 1024)
    assert len(fewer.parts) < count
    names = {p.name for p in tmp_path.iterdir() if p.is_file()}
    assert names == {"tiny.run", *(p.path.name for p in fewer.parts), *(p.name for p in keep)}
    assert install(fewer.path, tmp_path / "env").returncode == 0
    # a whole bundle under the same name leaves no parts either
    tree = tmp_path / "tree-two"
    write_bundle(tree, tmp_path / "tiny.run", name="tiny", version="1.0", python="3.11.7",
                 installed_bytes=1, codec=choose("gzip", (), 1))
    assert not [p for p in tmp_path.iterdir() if re.fullmatch(r"tiny\.part-\d{3,}", p.name)]


def test_a_pack_that_fails_leaves_no_part_behind(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # larger than the pieces the tar stream is gathered into: its parts are written before the end
    tree = make_tree(tmp_path / "tree", big=3_000_000)
    out = tmp_path / "out"
    out.mkdir()
    # an earlier pack's parts stay as they were when this one fails
    (out / "tiny.part-001").write_text("earlier")
    calls: list[str] = []
    seen: list[str] = []

    real_tarinfo = bundle_module._tarinfo

    def failing(path: Path, arcname: str) -> tarfile.TarInfo:
        calls.append(arcname)
        if arcname == "gapship/manifest.json":  # the last member, after data.bin's parts
            seen.extend(p.name for p in out.iterdir())
            raise OSError(5, "Input/output error")
        return real_tarinfo(path, arcname)

    class Plain:  # no compression: the tar stream reaches the parts as it is written
        def __init__(self, codec: object, out: Sink) -> None:
            self.out = out
            self.count = 0

        def write(self, data: bytes) -> int:
            self.count += len(data)
            return self.out.write(data)

        def tell(self) -> int:
            return self.count

        def close(self) -> None:
            pass

        def abort(self) -> None:
            pass

    monkeypatch.setattr(bundle_module, "_tarinfo", failing)
    monkeypatch.setattr(bundle_module, "compressor", Plain)
    with pytest.raises(BundleError, match="Input/output error; nothing was written there"):
        write_bundle(tree, out / "tiny.run", name="tiny", version="1.0", python="3.11.7",
                     installed_bytes=1, codec=choose("gzip", (), 1), split=PART)
    assert "data.bin" in calls
    assert ".tiny.part-1.gapship-tmp" in seen  # parts were being written when it failed
    assert sorted(p.name for p in out.iterdir()) == ["tiny.part-001"]
    assert (out / "tiny.part-001").read_text() == "earlier"


@pytest.mark.parametrize(("text", "size"), [("1G", 1 << 30), ("500M", 500 << 20),
                                            ("64k", 64 << 10), ("1000", 1000), ("2GiB", 2 << 30)])
def test_split_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["0", "-1G", "1.5G", "G", "1X", "", "one"])
def test_nonsense_split_sizes_are_refused_in_one_line(text: str) -> None:
    with pytest.raises(BundleError) as caught:
        parse_size(text)
    assert "--split" in str(caught.value) and "\n" not in str(caught.value)


def test_pack_refuses_a_nonsense_split_before_any_work(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "gapship", "pack",
                           str(tmp_path / "nothing.toml"), "--split", "1.5G"],
                          capture_output=True, text=True, check=False, cwd=tmp_path)
    assert proc.returncode != 0
    assert "--split '1.5G' is not a part size" in proc.stderr
    assert "Traceback" not in proc.stderr and not list(tmp_path.iterdir())
