"""Who built a bundle: `gapship keygen`, a signed bundle, and the installer checking it with the
real openssl CLI (--trust KEY, or ~/.config/gapship/trusted/), also when only the header, which
the payload's sha256 does not cover, was changed."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from gapship.bundle import write_bundle
from gapship.bundle.codec import choose
from gapship.bundle.signing import SIGNATURE_BYTES
from tests.conftest import gapship, require_tool, shell_argv
from tests.unit.test_installer import make_tree


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    where = tmp_path_factory.mktemp("keys")
    made = {}
    for name in ("builder", "stranger"):
        proc = gapship("keygen", str(where / name))
        assert proc.returncode == 0, proc.stderr
        made[name] = where / f"{name}.key"
        made[f"{name}.pub"] = where / f"{name}.pub"
    return made


def signed_bundle(tmp: Path, key: Path | None) -> Path:
    tree = make_tree(tmp / "tree")
    return write_bundle(tree, tmp / "tiny.run", name="tiny", version="1.0", python="3.11.7",
                        installed_bytes=1, codec=choose("gzip", (), 1), sign_key=key).path


def run(bundle: Path, *args: str, home: Path, shell: str = "dash"
        ) -> subprocess.CompletedProcess[str]:
    require_tool("openssl")
    return subprocess.run([*shell_argv(shell), str(bundle), *args], capture_output=True,
                          text=True, env={"PATH": "/usr/bin:/bin", "HOME": str(home)},
                          check=False, stdin=subprocess.DEVNULL)


def test_keygen_writes_a_private_key_only_its_owner_reads(keys: dict[str, Path]) -> None:
    assert keys["builder"].stat().st_mode & 0o777 == 0o600
    assert keys["builder.pub"].read_text().startswith("-----BEGIN PUBLIC KEY-----")
    again = gapship("keygen", str(keys["builder"].with_suffix("")))
    assert again.returncode != 0 and "already exists" in again.stderr


@pytest.mark.parametrize("shell", ["dash", "busybox"])
def test_a_signed_bundle_installs_with_its_key_and_check_prints_the_file_sha256(
        tmp_path: Path, keys: dict[str, Path], shell: str) -> None:
    bundle = signed_bundle(tmp_path, keys["builder"])
    check = run(bundle, "--check", "--trust", str(keys["builder.pub"]), home=tmp_path,
                shell=shell)
    assert check.returncode == 0, check.stderr
    assert f"signature verified with {keys['builder.pub']}" in check.stderr
    whole = hashlib.sha256(bundle.read_bytes()).hexdigest()
    assert f"sha256 of the whole file: {whole}" in check.stderr
    proc = run(bundle, "--prefix", str(tmp_path / "env"), "--trust", str(keys["builder.pub"]),
               home=tmp_path, shell=shell)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "env" / "bin" / "python3").exists()


def test_pack_reports_the_same_file_sha256(tmp_path: Path, keys: dict[str, Path]) -> None:
    tree = make_tree(tmp_path / "tree")
    info = write_bundle(tree, tmp_path / "tiny.run", name="tiny", version="1.0",
                        python="3.11.7", installed_bytes=1, codec=choose("gzip", (), 1),
                        sign_key=keys["builder"])
    assert info.signed and info.file_sha256 == hashlib.sha256(info.path.read_bytes()).hexdigest()
    # the signature is what openssl 1.0.2 checks: PKCS#1 v1.5, SHA-256, over header and payload
    data = info.path.read_bytes()
    (tmp_path / "sig").write_bytes(data[-SIGNATURE_BYTES:])
    (tmp_path / "signed").write_bytes(data[:-SIGNATURE_BYTES])
    verify = subprocess.run([require_tool("openssl"), "dgst", "-sha256", "-verify",
                             str(keys["builder.pub"]), "-signature", str(tmp_path / "sig"),
                             str(tmp_path / "signed")], capture_output=True, text=True,
                            check=False)
    assert verify.returncode == 0 and "Verified OK" in verify.stdout


@pytest.mark.parametrize("change", ["header", "payload"])
def test_a_bundle_changed_after_signing_is_refused(tmp_path: Path, keys: dict[str, Path],
                                                    change: str) -> None:
    bundle = signed_bundle(tmp_path, keys["builder"])
    data = bytearray(bundle.read_bytes())
    if change == "header":
        # same length, same payload: the payload's sha256 still matches
        at = data.index(b"# gapship self-extracting") + 2
        data[at] = ord("G")
    else:
        data[-SIGNATURE_BYTES - 100] ^= 0xFF
    bundle.write_bytes(bytes(data))
    prefix = tmp_path / "env"
    proc = run(bundle, "--prefix", str(prefix), "--trust", str(keys["builder.pub"]),
               home=tmp_path)
    assert proc.returncode != 0 and not prefix.exists()
    assert ("does not verify" if change == "header" else "damaged") in proc.stderr


def test_another_signer_is_refused_also_from_the_trusted_dir(tmp_path: Path,
                                                             keys: dict[str, Path]) -> None:
    bundle = signed_bundle(tmp_path, keys["stranger"])
    trusted = tmp_path / ".config" / "gapship" / "trusted"
    trusted.mkdir(parents=True)
    (trusted / "builder.pub").write_bytes(keys["builder.pub"].read_bytes())
    proc = run(bundle, "--prefix", str(tmp_path / "env"), home=tmp_path)
    assert proc.returncode != 0 and "does not verify" in proc.stderr
    assert not (tmp_path / "env").exists()
    os.replace(trusted / "builder.pub", trusted / "stranger.pub")
    (trusted / "stranger.pub").write_bytes(keys["stranger.pub"].read_bytes())
    ok = run(bundle, "--prefix", str(tmp_path / "env"), home=tmp_path)
    assert ok.returncode == 0 and "signature verified with" in ok.stderr


def test_unsigned_bundles_install_unless_trust_asks_for_a_signature(
        tmp_path: Path, keys: dict[str, Path]) -> None:
    bundle = signed_bundle(tmp_path, None)
    info = run(bundle, "--info", home=tmp_path)
    assert "signed: no" in info.stdout
    refused = run(bundle, "--prefix", str(tmp_path / "env"), "--trust",
                  str(keys["builder.pub"]), home=tmp_path)
    assert refused.returncode != 0 and "not signed" in refused.stderr
    assert run(bundle, "--prefix", str(tmp_path / "env"), home=tmp_path).returncode == 0
