"""The self-extracting installer, run by real shells on real bundles (small synthetic trees)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from gapship import activate
from gapship.bundle import write_bundle
from gapship.bundle.codec import choose
from gapship.files import write_json
from gapship.node import layout
from gapship.stage.manifest import build_manifest
from tests.conftest import SHELLS, shell_argv


def make_tree(root: Path, name: str = "tiny", big: int = 0, marker: str = "one",
              small_files: int = 0, on_check: str = "") -> Path:
    """A tiny environment: bin/python3 is a sh script that prints ``marker``; ``on_check``
    is sh run when the installer tries it (`python3 -c pass`), to inject a fault there."""
    (root / "bin").mkdir(parents=True)
    py = root / "bin" / "python3"
    hook = f'if [ "${{1-}}" = -c ]; then {on_check}\nfi\n' if on_check else ""
    py.write_text(f"#!/bin/sh\n{hook}echo {marker}\n")
    py.chmod(0o755)
    (root / "gapship").mkdir()
    (root / "gapship" / "name").write_text(name + "\n")
    if big:
        (root / "data.bin").write_bytes(os.urandom(big))
    if small_files:
        (root / "many").mkdir()
        for i in range(small_files):
            (root / "many" / f"f{i}").write_text("x")
    activate.install_target_files(root)
    write_json(root / layout.MANIFEST, build_manifest(root))
    return root


def bundle_of(tmp: Path, name: str = "tiny", big: int = 0, marker: str = "one",
              small_files: int = 0, on_check: str = "", codec: str = "gzip") -> Path:
    tree = make_tree(tmp / f"tree-{marker}", name, big, marker, small_files, on_check)
    size = sum(f.stat().st_size for f in tree.rglob("*") if f.is_file())
    return write_bundle(tree, tmp / f"{name}-{marker}.run", name=name, version="1.0",
                        python="3.11.7", installed_bytes=size,
                        codec=choose(codec, (), 1)).path


def install(bundle: Path, prefix: Path | str, *extra: str, shell: str = "dash",
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*shell_argv(shell), str(bundle), "--prefix", str(prefix), *extra],
                          capture_output=True, text=True, timeout=120, check=False,
                          stdin=subprocess.DEVNULL, env=env)


def debris(parent: Path) -> list[str]:
    """Hidden files an install left beside its prefix."""
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("shell", SHELLS)
def test_installs_under_each_shell(tmp_path: Path, shell: str) -> None:
    bundle = bundle_of(tmp_path)
    prefix = tmp_path / "envs" / "tiny"
    proc = install(bundle, prefix, shell=shell)
    assert proc.returncode == 0, proc.stderr
    assert (prefix / "bin" / "python3").read_text().endswith("echo one\n")
    assert (prefix / "gapship" / "prefix").read_text() == f"{prefix}\n"
    activate_sh = prefix / "gapship" / "activation" / "activate.sh"
    assert f"_gapship_prefix='{prefix}'" in activate_sh.read_text()
    assert not [p for p in prefix.parent.iterdir() if p.name.startswith(".")]
    assert f"activate:   . '{prefix}/activate'" in proc.stderr
    assert f"module use '{prefix}/modulefiles'; module load tiny" in proc.stderr


def test_one_changed_byte_is_fatal_and_nothing_is_written(tmp_path: Path) -> None:
    bundle = bundle_of(tmp_path, big=200_000)
    data = bytearray(bundle.read_bytes())
    data[-1000] ^= 0xFF
    bundle.write_bytes(bytes(data))
    prefix = tmp_path / "envs" / "tiny"
    proc = install(bundle, prefix)
    assert proc.returncode != 0
    assert "damaged" in proc.stderr and "again" in proc.stderr
    assert not prefix.exists() and not prefix.parent.exists()


def test_truncated_bundle_is_fatal(tmp_path: Path) -> None:
    bundle = bundle_of(tmp_path, big=100_000)
    bundle.write_bytes(bundle.read_bytes()[:-10])
    proc = install(bundle, tmp_path / "p")
    assert proc.returncode != 0 and "damaged" in proc.stderr and not (tmp_path / "p").exists()


def test_existing_prefix_needs_force_and_force_replaces(tmp_path: Path) -> None:
    prefix = tmp_path / "env"
    assert install(bundle_of(tmp_path, marker="one"), prefix).returncode == 0
    second = bundle_of(tmp_path, marker="two")
    refused = install(second, prefix)
    assert refused.returncode != 0 and "--force" in refused.stderr
    assert (prefix / "bin" / "python3").read_text().endswith("echo one\n")
    assert install(second, prefix, "--force").returncode == 0
    assert (prefix / "bin" / "python3").read_text().endswith("echo two\n")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


@pytest.mark.slow
def test_interrupted_forced_install_keeps_the_old_environment(tmp_path: Path) -> None:
    prefix = tmp_path / "env"
    assert install(bundle_of(tmp_path, marker="one"), prefix).returncode == 0
    big = bundle_of(tmp_path, marker="two", big=300_000_000)
    proc = subprocess.Popen(["dash", str(big), "--prefix", str(prefix), "--force"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 60
    while not any(p.name.startswith(".env.gapship-install") for p in tmp_path.iterdir()):
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)
    assert proc.returncode != 0
    assert (prefix / "bin" / "python3").read_text().endswith("echo one\n")
    time.sleep(0.5)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".env")] == []


def test_check_and_info_write_nothing(tmp_path: Path) -> None:
    bundle = bundle_of(tmp_path)
    check = subprocess.run(["dash", str(bundle), "--check"], capture_output=True, text=True,
                           check=False)
    assert check.returncode == 0 and "checksum ok" in check.stderr
    info = subprocess.run(["dash", str(bundle), "--info"], capture_output=True, text=True,
                          check=False)
    assert "name: tiny" in info.stdout and "python: 3.11.7" in info.stdout


def test_unknown_option_is_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(["dash", str(bundle_of(tmp_path)), "--bogus"], capture_output=True,
                          text=True, check=False)
    assert proc.returncode != 0 and len(proc.stderr.strip().splitlines()) == 1


# ---- activation in real shells

_SNAPSHOT = "env | LC_ALL=C sort > {out}; echo \"PS1=${{PS1-unset}}\" >> {out}"


@pytest.mark.parametrize("shell", SHELLS)
def test_activate_then_deactivate_restores_the_environment(tmp_path: Path,
                                                           tiny_env_quoted: Path,
                                                           shell: str) -> None:
    prefix = tiny_env_quoted   # a quote in the path must survive
    script = f"""
PS1='$ '
LD_LIBRARY_PATH='/opt/x:/y z'; export LD_LIBRARY_PATH
PYTHONHOME=/somewhere; export PYTHONHOME
{_SNAPSHOT.format(out='"$T/before"')}
. "$P/activate"
[ "$(python3)" = one ] || {{ echo "python3 is not the environment's"; exit 3; }}
[ -z "${{PYTHONHOME+x}}" ] || exit 4
[ "$GAPSHIP_PREFIX" = "$P" ] || exit 5
case $PS1 in "(tiny) "*) ;; *) exit 6 ;; esac
. "$P/activate"
deactivate
{_SNAPSHOT.format(out='"$T/after"')}
"""
    env = {"PATH": "/usr/bin:/bin", "P": str(prefix), "T": str(tmp_path), "HOME": str(tmp_path)}
    proc = subprocess.run([*shell_argv(shell), "-c", script], capture_output=True, text=True,
                          env=env, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # the shell's own bookkeeping (ksh93 exports _AST_FEATURES and A__z on its own)
    ignore = ("_=", "SHLVL=", "OLDPWD=", "PWD=", "_AST_FEATURES=", "A__z=")
    def snap(name: str) -> list[str]:
        return [ln for ln in (tmp_path / name).read_text().splitlines()
                if not ln.startswith(ignore)]
    assert snap("before") == snap("after")


def test_moved_environment_refuses_then_rehome_fixes_it(tmp_path: Path) -> None:
    prefix = tmp_path / "a" / "env"
    assert install(bundle_of(tmp_path), prefix).returncode == 0
    moved = tmp_path / "b"
    moved.mkdir()
    (prefix).rename(moved / "env")
    new = moved / "env"
    env = {"PATH": "/usr/bin:/bin"}
    stale = subprocess.run(["dash", "-c", f'. "{new}/activate"'], capture_output=True,
                           text=True, env=env, check=False)
    assert stale.returncode != 0 and "gapship-rehome" in stale.stderr
    rehome = subprocess.run(["dash", str(new / "bin" / "gapship-rehome")], capture_output=True,
                            text=True, env=env, check=False)
    assert rehome.returncode == 0, rehome.stderr
    ok = subprocess.run(["dash", "-c", f'. "{new}/activate" && command -v python3'],
                        capture_output=True, text=True, env=env, check=False)
    assert ok.stdout.strip() == f"{new}/bin/python3"


# ---- odd input: a bundle cut short, odd prefixes, help (defect 7)

def header_cut_points(bundle: Path, every_line: bool) -> list[int]:
    """Where to cut a bundle inside its header: after each line (or every fifth) and inside
    some lines. The shebang line alone is an empty script, which every shell runs as exit 0."""
    data = bundle.read_bytes()
    found = re.search(rb"GAPSHIP_HEADER_BYTES=(\d+)", data)
    assert found is not None
    header = data[:int(found.group(1))]
    assert header.endswith(b"\n}\n")
    ends = [i + 1 for i, byte in enumerate(header) if byte == ord("\n")][1:]
    if not every_line:
        ends = ends[::5]
    return sorted({*ends, *(e - 7 for e in ends if e > 20), len(header) - 1, len(header)})


@pytest.mark.parametrize("shell", SHELLS)
def test_a_bundle_cut_inside_its_header_never_exits_0(tmp_path: Path, shell: str) -> None:
    bundle = bundle_of(tmp_path)
    data = bundle.read_bytes()
    cut = tmp_path / "cut.run"
    argv = shell_argv(shell)
    exited_0 = []
    for point in header_cut_points(bundle, every_line=shell in ("dash", "busybox")):
        cut.write_bytes(data[:point])
        proc = subprocess.run([*argv, str(cut), "--prefix", str(tmp_path / "env")],
                              capture_output=True, timeout=30, check=False,
                              stdin=subprocess.DEVNULL, env={"PATH": "/usr/bin:/bin"})
        if proc.returncode == 0:
            exited_0.append(point)
    assert exited_0 == []
    assert not (tmp_path / "env").exists()


def test_tilde_prefix_means_home_and_a_relative_one_the_current_dir(tmp_path: Path) -> None:
    bundle = bundle_of(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home)}
    proc = subprocess.run(["dash", str(bundle), "--prefix=~/envs/x"], capture_output=True,
                          text=True, cwd=tmp_path, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    assert (home / "envs" / "x" / "gapship" / "manifest.json").is_file()
    assert not (tmp_path / "~").exists()
    # a relative prefix is named from the current directory, without ./
    rel = subprocess.run(["dash", str(bundle), "--prefix", "./envs/y"], capture_output=True,
                         text=True, cwd=tmp_path, env=env, check=False)
    assert rel.returncode == 0, rel.stderr
    assert f"into {tmp_path}/envs/y." in rel.stderr


@pytest.mark.parametrize("prefix", ["", "a:b"])
def test_empty_prefix_or_one_with_a_colon_is_refused(tmp_path: Path, prefix: str) -> None:
    bundle = bundle_of(tmp_path)
    home = tmp_path / "home"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home)}
    target = str(tmp_path / prefix) if prefix else prefix
    for argv in (["--prefix", target], [f"--prefix={target}"]):
        proc = subprocess.run(["dash", str(bundle), *argv], capture_output=True, text=True,
                              cwd=tmp_path, env=env, check=False)
        assert proc.returncode != 0
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "--prefix" in proc.stderr
    assert not home.exists() and not (tmp_path / "a:b").exists()


def test_help_is_whole_sentences(tmp_path: Path) -> None:
    proc = subprocess.run(["dash", str(bundle_of(tmp_path)), "--help"], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0
    options: dict[str, str] = {}
    current = ""
    for line in proc.stdout.splitlines():
        if line.startswith("  --"):
            current, _, text = line.strip().partition("  ")
            options[current] = text.strip()
        elif current and line.startswith("    ") and line.strip():
            options[current] += " " + line.strip()
        else:
            current = ""
    assert set(options) >= {"--prefix DIR", "--force", "--check", "--info", "--help"}
    for option, text in options.items():
        assert text[:1].isupper() and text.endswith("."), (option, text)
    assert "~/envs/tiny" in proc.stdout


def test_the_printed_activate_line_can_be_pasted(tmp_path: Path) -> None:
    prefix = tmp_path / "my envs" / "it's"
    proc = install(bundle_of(tmp_path), prefix)
    assert proc.returncode == 0, proc.stderr
    line = next(ln for ln in proc.stderr.splitlines() if "activate:" in ln)
    pasted = line.split("activate:", 1)[1].strip()
    run = subprocess.run(["dash", "-c", f"{pasted} && command -v python3"], capture_output=True,
                         text=True, env={"PATH": "/usr/bin:/bin"}, check=False)
    assert run.stdout.strip() == f"{prefix}/bin/python3", run.stderr


@pytest.mark.parametrize("shell", SHELLS)
def test_activate_works_under_set_eu(tiny_env: Path, shell: str) -> None:
    prefix = tiny_env
    script = 'set -eu\n. "$P/activate"\ncommand -v python3\ndeactivate\necho deactivated\n'
    proc = subprocess.run([*shell_argv(shell), "-c", script], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "P": str(prefix)}, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [f"{prefix}/bin/python3", "deactivated"]
