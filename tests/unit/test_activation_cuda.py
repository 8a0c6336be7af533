"""Activation of an environment with a GPU stack, in real shells: CUDA_HOME, LD_LIBRARY_PATH,
XLA_FLAGS, the shadowing guard and --isolate, and a deactivate that restores every byte."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import SHELLS, require, shell_argv
from tests.unit.test_installer import make_tree

# the shell's own bookkeeping (ksh93 exports _AST_FEATURES and A__z on its own)
_SHELL_OWN = ("_=", "SHLVL=", "OLDPWD=", "PWD=", "_AST_FEATURES=", "A__z=")
_SNAPSHOT = 'env | LC_ALL=C sort > "$T/{name}"; echo "PS1=${{PS1-unset}}" >> "$T/{name}"'
_SHOW = ('for v in CUDA_HOME CUDA_PATH LD_LIBRARY_PATH XLA_FLAGS; do '
         'eval "printf \'%s=%s\\n\' $v \\"\\${{$v-unset}}\\""; done > "$T/{name}"; '
         'echo "nvcc=$(nvcc 2>/dev/null)" >> "$T/{name}"')
# argument passing to `.`: dash ignores it, the others pass it on
_DOT_ARGS = [s for s in SHELLS if s != "dash"]


def gpu_env(tmp: Path, conf: str, name: str = "it's here") -> Path:
    """An installed environment with a CUDA view and this activate.conf (quote in the path)."""
    prefix = make_tree(tmp / name, name="gpu")
    (prefix / "cuda" / "lib64").mkdir(parents=True)
    (prefix / "cuda" / "bin").mkdir()
    nvcc = prefix / "cuda" / "bin" / "nvcc"
    nvcc.write_text("#!/bin/sh\necho 'Cuda compilation tools, release 12.8'\n")
    nvcc.chmod(0o755)
    (prefix / "gapship" / "activate.conf").write_text(conf)
    (prefix / "gapship" / "version").write_text("1.0\n")
    proc = subprocess.run(["dash", str(prefix / "gapship/libexec/write-activation.sh"),
                           str(prefix), str(prefix)], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    return prefix


def site_cuda(tmp: Path) -> Path:
    """A site module's CUDA directory, as `module load cuda` puts on LD_LIBRARY_PATH."""
    site = tmp / "site cuda" / "lib64"
    site.mkdir(parents=True)
    (site / "libcudart.so.11.0").write_bytes(b"\x7fELF")
    return site


FULL_CONF = ("# comment\ncuda_home=cuda\npath=cuda/bin\nld_library_path=cuda/lib64\n"
             "xla_cuda_data_dir=cuda\n")


def run(shell: str, script: str, tmp: Path, prefix: Path, site: Path
        ) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "P": str(prefix), "T": str(tmp), "HOME": str(tmp),
           "SITE": str(site)}
    return subprocess.run([*shell_argv(shell), "-c", script], capture_output=True, text=True,
                          env=env, timeout=60, check=False)


def snap(tmp: Path, name: str) -> list[str]:
    return [ln for ln in (tmp / name).read_text().splitlines() if not ln.startswith(_SHELL_OWN)]


def shown(tmp: Path, name: str) -> dict[str, str]:
    lines = (tmp / name).read_text().splitlines()
    return dict(ln.split("=", 1) for ln in lines)


@pytest.mark.parametrize("shell", SHELLS)
def test_guard_warns_isolate_removes_and_deactivate_restores(tmp_path: Path, shell: str
                                                            ) -> None:
    prefix = gpu_env(tmp_path, FULL_CONF)
    site = site_cuda(tmp_path)
    script = f"""
PS1='$ '
LD_LIBRARY_PATH="$SITE::/y z"; export LD_LIBRARY_PATH
XLA_FLAGS=--xla_dump_to=/tmp/d; export XLA_FLAGS
{_SNAPSHOT.format(name="before")}
. "$P/activate" 2> "$T/warned"
{_SHOW.format(name="during")}
deactivate
{_SNAPSHOT.format(name="after")}
GAPSHIP_ISOLATE=1 . "$P/activate" 2> "$T/isolated"
{_SHOW.format(name="during-isolated")}
deactivate
{_SNAPSHOT.format(name="after-isolated")}
"""
    proc = run(shell, script, tmp_path, prefix, site)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    warned = (tmp_path / "warned").read_text().splitlines()
    assert len(warned) == 1 and str(site) in warned[0] and "GAPSHIP_ISOLATE=1" in warned[0]
    during = shown(tmp_path, "during")
    assert during["CUDA_HOME"] == during["CUDA_PATH"] == f"{prefix}/cuda"
    assert during["LD_LIBRARY_PATH"] == f"{prefix}/cuda/lib64:{site}::/y z"
    assert during["XLA_FLAGS"] == f"--xla_dump_to=/tmp/d --xla_gpu_cuda_data_dir={prefix}/cuda"
    assert during["nvcc"] == "Cuda compilation tools, release 12.8"
    isolated = shown(tmp_path, "during-isolated")
    assert isolated["LD_LIBRARY_PATH"] == f"{prefix}/cuda/lib64::/y z"
    assert len((tmp_path / "isolated").read_text().splitlines()) == 1
    before = snap(tmp_path, "before")
    assert snap(tmp_path, "after") == before
    assert snap(tmp_path, "after-isolated") == before


@pytest.mark.parametrize("shell", _DOT_ARGS)
def test_isolate_option_to_dot(tmp_path: Path, shell: str) -> None:
    prefix = gpu_env(tmp_path, FULL_CONF)
    site = site_cuda(tmp_path)
    script = f"""
LD_LIBRARY_PATH="$SITE"; export LD_LIBRARY_PATH
{_SNAPSHOT.format(name="before")}
. "$P/activate" --isolate 2> "$T/isolated"
{_SHOW.format(name="during")}
deactivate
{_SNAPSHOT.format(name="after")}
"""
    proc = run(shell, script, tmp_path, prefix, site)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert shown(tmp_path, "during")["LD_LIBRARY_PATH"] == f"{prefix}/cuda/lib64"
    assert "left" in (tmp_path / "isolated").read_text()
    assert snap(tmp_path, "after") == snap(tmp_path, "before")


@pytest.mark.parametrize("shell", SHELLS)
def test_unset_and_empty_come_back_as_they_were(tmp_path: Path, shell: str) -> None:
    prefix = gpu_env(tmp_path, FULL_CONF)
    site = site_cuda(tmp_path)
    script = f"""
unset LD_LIBRARY_PATH XLA_FLAGS CUDA_HOME
CUDA_PATH=; export CUDA_PATH
{_SNAPSHOT.format(name="before")}
set | grep -c '^LD_LIBRARY_PATH=' > "$T/set-before" || true
. "$P/activate"
{_SHOW.format(name="during")}
deactivate
{_SNAPSHOT.format(name="after")}
set | grep -c '^LD_LIBRARY_PATH=' > "$T/set-after" || true
"""
    proc = run(shell, script, tmp_path, prefix, site)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stderr == ""
    during = shown(tmp_path, "during")
    assert during["LD_LIBRARY_PATH"] == f"{prefix}/cuda/lib64"
    assert during["XLA_FLAGS"] == f"--xla_gpu_cuda_data_dir={prefix}/cuda"
    before = snap(tmp_path, "before")
    assert "CUDA_PATH=" in before and not any(ln.startswith("LD_LIBRARY") for ln in before)
    assert snap(tmp_path, "after") == before
    assert (tmp_path / "set-after").read_text() == (tmp_path / "set-before").read_text()


def test_without_ld_dirs_ld_library_path_is_left_alone(tmp_path: Path) -> None:
    prefix = gpu_env(tmp_path, "cuda_home=cuda\n")
    site = site_cuda(tmp_path)
    script = f"""
LD_LIBRARY_PATH="$SITE:"; export LD_LIBRARY_PATH
. "$P/activate" 2> "$T/warned"
{_SHOW.format(name="during")}
"""
    proc = run("dash", script, tmp_path, prefix, site)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    during = shown(tmp_path, "during")
    assert during["LD_LIBRARY_PATH"] == f"{site}:"
    assert during["XLA_FLAGS"] == "unset" and during["nvcc"] == ""
    assert "GAPSHIP_ISOLATE" in (tmp_path / "warned").read_text()


def test_environment_without_gpu_ignores_ld_library_path(tmp_path: Path) -> None:
    prefix = make_tree(tmp_path / "cpu", name="cpu")
    subprocess.run(["dash", str(prefix / "gapship/libexec/write-activation.sh"), str(prefix),
                    str(prefix)], check=True)
    site = site_cuda(tmp_path)
    proc = run("dash", f'LD_LIBRARY_PATH="$SITE"; export LD_LIBRARY_PATH\n. "$P/activate"\n'
               f'{_SHOW.format(name="during")}', tmp_path, prefix, site)
    assert proc.returncode == 0 and proc.stderr == ""
    assert shown(tmp_path, "during")["CUDA_HOME"] == "unset"
    activate_sh = prefix / "gapship" / "activation" / "activate.sh"
    assert "LD_LIBRARY_PATH" not in activate_sh.read_text().split("_gapship_each()")[1]\
        .split("\n")[1]


def test_rehome_points_the_gpu_variables_at_the_new_place(tmp_path: Path) -> None:
    prefix = gpu_env(tmp_path, FULL_CONF, name="a")
    moved = tmp_path / "b"
    prefix.rename(moved)
    proc = subprocess.run(["dash", str(moved / "bin" / "gapship-rehome")], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    out = run("dash", f'. "$P/activate"\n{_SHOW.format(name="during")}', tmp_path, moved,
              site_cuda(tmp_path))
    assert out.returncode == 0, out.stderr
    during = shown(tmp_path, "during")
    assert during["CUDA_HOME"] == f"{moved}/cuda"
    assert during["LD_LIBRARY_PATH"] == f"{moved}/cuda/lib64"


def test_a_colon_in_the_prefix_is_refused_in_one_line(tmp_path: Path) -> None:
    prefix = make_tree(tmp_path / "a:b", name="gpu")
    (prefix / "cuda" / "lib64").mkdir(parents=True)
    (prefix / "gapship" / "activate.conf").write_text("cuda_home=cuda\n")
    proc = subprocess.run(["dash", str(prefix / "gapship/libexec/write-activation.sh"),
                           str(prefix), str(prefix)], capture_output=True, text=True,
                          check=False)
    assert proc.returncode != 0
    assert len(proc.stderr.strip().splitlines()) == 1 and "--prefix" in proc.stderr


# ---- modulefiles, loaded and unloaded by Lmod (the .lua, and the Tcl one through tcl2lua)

LMOD_INIT = Path("/usr/share/lmod/lmod/init/bash")
_MODULE_VARS = "PATH CUDA_HOME CUDA_PATH LD_LIBRARY_PATH XLA_FLAGS PYTHONHOME GAPSHIP_PREFIX"


@pytest.mark.parametrize("flavour", ["lua", "tcl"])
def test_module_load_sets_and_unload_takes_away(tmp_path: Path, flavour: str) -> None:
    require(LMOD_INIT.is_file(), "Lmod is not installed (apt-get install lmod)")
    # Lmod's tcl2lua cannot open a modulefile whose path holds a space; Lmod itself can
    prefix = gpu_env(tmp_path, FULL_CONF, name="it's here" if flavour == "lua" else "env")
    if flavour == "tcl":
        (prefix / "modulefiles" / "gpu" / "1.0.lua").unlink()
    show = ('for v in ' + _MODULE_VARS + '; do eval "printf \'%s=%s\\n\' $v \\"\\${$v-unset}\\""; '
            'done > "$T/$1"')
    script = f"""
show() {{ {show}; }}
. {LMOD_INIT}
CUDA_HOME=/site/cuda; LD_LIBRARY_PATH="$SITE"; XLA_FLAGS=--x=1; PYTHONHOME=/ph
export CUDA_HOME LD_LIBRARY_PATH XLA_FLAGS PYTHONHOME
show before
module use "$P/modulefiles"
module load gpu || exit 3
show during
module unload gpu
show after
"""
    proc = run("bash", script, tmp_path, prefix, site_cuda(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    before, during, after = (shown(tmp_path, n) for n in ("before", "during", "after"))
    assert during["PATH"].split(":")[:2] == [f"{prefix}/bin", f"{prefix}/cuda/bin"]
    assert during["CUDA_HOME"] == during["CUDA_PATH"] == f"{prefix}/cuda"
    assert during["LD_LIBRARY_PATH"] == f"{prefix}/cuda/lib64:{tmp_path}/site cuda/lib64"
    assert during["XLA_FLAGS"] == f"--x=1 --xla_gpu_cuda_data_dir={prefix}/cuda"
    assert during["PYTHONHOME"] == "unset" and during["GAPSHIP_PREFIX"] == str(prefix)
    for var in ("PATH", "LD_LIBRARY_PATH", "XLA_FLAGS", "CUDA_PATH", "GAPSHIP_PREFIX"):
        assert after[var] == before[var], var
    # Lmod's pushenv gives back a site module's value; Tcl's setenv can only unset it
    assert after["CUDA_HOME"] == ("/site/cuda" if flavour == "lua" else "unset")
    assert after["PYTHONHOME"] == ("/ph" if flavour == "lua" else "unset")
