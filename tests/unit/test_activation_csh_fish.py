"""csh/tcsh and fish activation in the real shells: activate, check, deactivate, check that
every variable came back byte for byte; the CUDA variables and the shadowing guard; a moved
environment; and a csh or fish user who sources the sh file is told, in one line, which file
is theirs."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import require_tool
from tests.unit.test_activation_cuda import FULL_CONF, gpu_env, shown, site_cuda, snap
from tests.unit.test_installer import bundle_of, install

# one line per exported variable (unset or its value), then what nvcc prints: sh reads what
# the shell exports, as every program it starts does
SHOW_SH = ('for v in CUDA_HOME CUDA_PATH LD_LIBRARY_PATH XLA_FLAGS; do '
           'eval "printf \'%s=%s\\n\' $v \\"\\${$v-unset}\\""; done > "$T/$1"; '
           'echo "nvcc=$(nvcc 2>/dev/null)" >> "$T/$1"\n')
_SHOW = 'sh "$T/show.sh" {name}'
# env is the exported environment, as programs get it
_SNAPSHOT = 'env | env LC_ALL=C sort > "$T/{name}"'


def run(shell: str, script: str, tmp: Path, prefix: Path, site: Path | None = None
        ) -> subprocess.CompletedProcess[str]:
    argv = [require_tool("tcsh"), "-f", "-c", script] if shell == "tcsh" else \
        [require_tool("fish"), "--no-config", "-c", script]
    env = {"PATH": "/usr/bin:/bin", "P": str(prefix), "T": str(tmp), "HOME": str(tmp),
           "SITE": str(site or tmp)}
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60,
                          check=False, stdin=subprocess.DEVNULL)


def installed(tmp: Path, name: str = "it's here") -> Path:
    prefix = tmp / name   # by default a quote in the path, which must survive
    proc = install(bundle_of(tmp), prefix)
    assert proc.returncode == 0, proc.stderr
    return prefix


CSH_ROUND_TRIP = f"""
set prompt = '$ '
setenv LD_LIBRARY_PATH '/opt/x:/y z'
setenv PYTHONHOME /somewhere
{_SNAPSHOT.format(name="before")}
echo "prompt=$prompt" >> "$T/before"
source "$P/activate.csh"
test "`python3`" = one || exit 3
if ( $?PYTHONHOME ) exit 4
test "$GAPSHIP_PREFIX" = "$P" || exit 5
echo "$prompt" | grep -q '^(tiny) ' || exit 6
source "$P/activate.csh"
echo "$prompt" | grep -q '^(tiny) [$]' || exit 7
deactivate
{_SNAPSHOT.format(name="after")}
echo "prompt=$prompt" >> "$T/after"
alias deactivate | grep -q . && exit 8
exit 0
"""

FISH_ROUND_TRIP = f"""
set -gx LD_LIBRARY_PATH '/opt/x:/y z'
set -gx PYTHONHOME /somewhere
function fish_prompt; printf '$ '; end
{_SNAPSHOT.format(name="before")}
source "$P/activate.fish"; or exit 2
test (python3) = one; or exit 3
set -q PYTHONHOME; and exit 4
test "$GAPSHIP_PREFIX" = "$P"; or exit 5
test (fish_prompt) = '(tiny) $ '; or exit 6
source "$P/activate.fish"
test (fish_prompt) = '(tiny) $ '; or exit 7
deactivate
{_SNAPSHOT.format(name="after")}
test (fish_prompt) = '$ '; or exit 8
functions -q deactivate; and exit 9
exit 0
"""


@pytest.mark.parametrize("shell", ["tcsh", "fish"])
def test_activate_then_deactivate_restores_the_environment(tmp_path: Path,
                                                           tiny_env_quoted: Path,
                                                           shell: str) -> None:
    prefix = tiny_env_quoted   # a quote in the path must survive
    proc = run(shell, CSH_ROUND_TRIP if shell == "tcsh" else FISH_ROUND_TRIP, tmp_path, prefix)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stderr == ""
    before = snap(tmp_path, "before")
    assert "PYTHONHOME=/somewhere" in before
    assert snap(tmp_path, "after") == before


@pytest.mark.parametrize("shell", ["tcsh", "fish"])
def test_gpu_variables_guard_isolate_and_exact_restore(tmp_path: Path, shell: str) -> None:
    prefix = gpu_env(tmp_path, FULL_CONF)
    site = site_cuda(tmp_path)
    (tmp_path / "show.sh").write_text(SHOW_SH)
    show = _SHOW
    if shell == "tcsh":
        setup = ('setenv LD_LIBRARY_PATH "${SITE}::/y z"\nsetenv XLA_FLAGS --xla_dump_to=/tmp/d\n'
                 'unsetenv CUDA_HOME\n')
        activate = 'source "$P/activate.csh" >& "$T/{name}"'
        isolate = "setenv GAPSHIP_ISOLATE 1\n"
        unisolate = "unsetenv GAPSHIP_ISOLATE\n"
    else:
        setup = ('set -gx LD_LIBRARY_PATH "$SITE::/y z"\nset -gx XLA_FLAGS --xla_dump_to=/tmp/d\n'
                 'set -e CUDA_HOME\n')
        activate = 'source "$P/activate.fish" 2> "$T/{name}"'
        isolate = "set -gx GAPSHIP_ISOLATE 1\n"
        unisolate = "set -e GAPSHIP_ISOLATE\n"
    script = (setup + _SNAPSHOT.format(name="before") + "\n"
              + activate.format(name="warned") + "\n" + show.format(name="during") + "\n"
              + "deactivate\n" + _SNAPSHOT.format(name="after") + "\n"
              + isolate + activate.format(name="isolated") + "\n"
              + show.format(name="during-isolated") + "\ndeactivate\n" + unisolate
              + _SNAPSHOT.format(name="after-isolated") + "\n")
    proc = run(shell, script, tmp_path, prefix, site)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    warned = (tmp_path / "warned").read_text().splitlines()
    assert len(warned) == 1 and str(site) in warned[0], warned
    # the way to isolate, in this shell's own words
    how = "setenv GAPSHIP_ISOLATE 1; source '" if shell == "tcsh" else "GAPSHIP_ISOLATE=1 source '"
    assert how in warned[0] and f"/activate.{'csh' if shell == 'tcsh' else 'fish'}'" in warned[0]
    during = shown(tmp_path, "during")
    assert during["CUDA_HOME"] == during["CUDA_PATH"] == f"{prefix}/cuda"
    assert during["LD_LIBRARY_PATH"] == f"{prefix}/cuda/lib64:{site}::/y z"
    assert during["XLA_FLAGS"] == f"--xla_dump_to=/tmp/d --xla_gpu_cuda_data_dir={prefix}/cuda"
    assert during["nvcc"] == "Cuda compilation tools, release 12.8"
    assert shown(tmp_path, "during-isolated")["LD_LIBRARY_PATH"] == f"{prefix}/cuda/lib64::/y z"
    assert "left" in (tmp_path / "isolated").read_text()
    before = snap(tmp_path, "before")
    assert snap(tmp_path, "after") == before
    assert snap(tmp_path, "after-isolated") == before


@pytest.mark.parametrize("shell", ["tcsh", "fish"])
def test_a_moved_environment_refuses_then_rehome_fixes_it(tmp_path: Path, shell: str) -> None:
    prefix = installed(tmp_path)
    moved = tmp_path / "moved"
    prefix.rename(moved)
    ext = "csh" if shell == "tcsh" else "fish"
    which = "which" if shell == "tcsh" else "command -v"
    stale = run(shell, f'source "$P/activate.{ext}"\n{which} python3', tmp_path, moved)
    assert "gapship-rehome" in stale.stderr and stale.stdout.strip() != f"{moved}/bin/python3"
    rehome = subprocess.run(["dash", str(moved / "bin" / "gapship-rehome")], capture_output=True,
                            text=True, check=False)
    assert rehome.returncode == 0, rehome.stderr
    ok = run(shell, f'source "$P/activate.{ext}"\n{which} python3', tmp_path, moved)
    assert ok.stdout.strip() == f"{moved}/bin/python3", ok.stderr


@pytest.mark.parametrize("shell", ["tcsh", "fish"])
def test_sourcing_the_sh_file_says_which_file_is_theirs(tmp_path: Path, shell: str) -> None:
    prefix = installed(tmp_path, "my env")
    ext = "csh" if shell == "tcsh" else "fish"
    after = 'echo "still here: $?GAPSHIP_PREFIX"' if shell == "tcsh" else \
        'echo "still here:" (set -q GAPSHIP_PREFIX; and echo 1; or echo 0)'
    proc = run(shell, f'source "$P/activate"; {after}', tmp_path, prefix)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert f"source {prefix}/activate.{ext}" in lines[0]
    assert proc.stdout.strip() == "still here: 0"
