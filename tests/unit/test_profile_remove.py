"""gapship-profile (and the installer's --profile): one marked block in the login files of the
user's shell, that a real login of that shell activates, that `on` twice leaves once and that
`off` takes away exactly; gapship-remove: says what it deletes, then deletes it all."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import require_tool
from tests.unit.test_installer import bundle_of, debris, install

BASHRC = "# my own settings\nalias ll='ls -l'\nexport EDITOR=vi\n"

# how each shell starts as at login (it reads the file gapship-profile writes), and asks
# where python3 comes from
LOGIN = {
    "sh": ["dash", "-l", "-c", "command -v python3"],
    "bash": ["bash", "-c", '. "$HOME/.bashrc"; command -v python3'],
    "zsh": ["zsh", "-i", "-c", "command -v python3"],
    "tcsh": ["tcsh", "-c", "which python3"],
    "fish": ["fish", "-c", "command -v python3"],
}
FILES = {"sh": [".profile"], "bash": [".bashrc", ".profile"], "zsh": [".zshrc"],
         "tcsh": [".cshrc"], "fish": [".config/fish/conf.d/gapship-tiny.fish"]}


def env_for(home: Path, shell: str = "sh") -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "HOME": str(home), "SHELL": f"/bin/{shell}",
            "TERM": "dumb"}


def profile(prefix: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["dash", str(prefix / "bin" / "gapship-profile"), *args],
                          capture_output=True, text=True, env=env_for(home), check=False)


def dotfiles(home: Path) -> dict[str, str]:
    """The user's files in ``home``, without the environments under ~/envs."""
    return {str(p.relative_to(home)): p.read_text() for p in sorted(home.rglob("*"))
            if p.is_file() and p.relative_to(home).parts[0] != "envs"}


@pytest.fixture()
def installed(tmp_path: Path) -> tuple[Path, Path]:
    home = tmp_path / "home"
    home.mkdir()
    prefix = home / "envs" / "tiny"
    proc = install(bundle_of(tmp_path), prefix, env=env_for(home))
    assert proc.returncode == 0, proc.stderr
    assert f"at login:   '{prefix}/bin/gapship-profile' on" in proc.stderr
    return home, prefix


@pytest.mark.parametrize("shell", list(LOGIN))
def test_on_activates_at_login_once_and_off_takes_it_away_exactly(
        installed: tuple[Path, Path], shell: str) -> None:
    home, prefix = installed
    require_tool(LOGIN[shell][0])
    (home / ".bashrc").write_text(BASHRC)
    before = dotfiles(home)
    for _ in range(2):
        on = profile(prefix, home, "on", "--shell", shell)
        assert on.returncode == 0, on.stderr
    for name in FILES[shell]:
        text = (home / name).read_text()
        assert text.count(str(prefix)) >= 1
        assert text.count(">>> gapship tiny") <= 1, text
    login = subprocess.run(LOGIN[shell], capture_output=True, text=True, env=env_for(home, shell),
                           timeout=60, check=False, stdin=subprocess.DEVNULL)
    assert login.stdout.strip().splitlines()[-1] == f"{prefix}/bin/python3", login.stderr
    status = profile(prefix, home, "status")
    assert sorted(status.stdout.split()) == sorted(str(home / f) for f in FILES[shell])
    off = profile(prefix, home, "off")
    assert off.returncode == 0, off.stderr
    assert dotfiles(home) == before


def test_nothing_is_written_to_login_files_without_the_flag(installed: tuple[Path, Path]) -> None:
    home, _ = installed
    assert dotfiles(home) == {}


def test_installer_profile_flag_activates_the_next_login(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    prefix = home / "envs" / "tiny"
    proc = install(bundle_of(tmp_path), prefix, "--profile", env=env_for(home))
    assert proc.returncode == 0, proc.stderr
    assert f"{home}/.profile activates tiny at login" in proc.stderr
    login = subprocess.run(LOGIN["sh"], capture_output=True, text=True, env=env_for(home),
                           check=False, stdin=subprocess.DEVNULL)
    assert login.stdout.strip() == f"{prefix}/bin/python3"


def test_an_unknown_shell_is_one_line(installed: tuple[Path, Path]) -> None:
    home, prefix = installed
    proc = profile(prefix, home, "on", "--shell", "nushell")
    assert proc.returncode != 0 and len(proc.stderr.strip().splitlines()) == 1
    assert "--shell" in proc.stderr and dotfiles(home) == {}


def test_remove_says_what_it_deletes_then_deletes_it(installed: tuple[Path, Path]) -> None:
    home, prefix = installed
    (home / ".bashrc").write_text(BASHRC)
    assert profile(prefix, home, "on", "--shell", "bash").returncode == 0
    remove = [str(prefix / "bin" / "gapship-remove")]
    # without a terminal and without --yes: only the list
    asked = subprocess.run(["dash", *remove], capture_output=True, text=True, env=env_for(home),
                           check=False, stdin=subprocess.DEVNULL)
    assert asked.returncode != 0 and "--yes" in asked.stderr
    listed = asked.stdout
    assert str(prefix) in listed and f"{prefix}/modulefiles" in listed
    assert f"{home}/.bashrc" in listed and f"{home}/.profile" in listed
    assert (prefix / "bin" / "python3").exists()
    done = subprocess.run(["dash", *remove, "--yes"], capture_output=True, text=True,
                          env=env_for(home), check=False, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert f"deleted {prefix}" in done.stdout
    assert not prefix.exists() and debris(prefix.parent) == []
    assert dotfiles(home) == {".bashrc": BASHRC}
