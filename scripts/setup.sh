#!/bin/sh
# Set up gapship on a fresh Debian/Ubuntu machine, then run its demo or its test suite.
#
#   sh scripts/setup.sh demo    install gapship in .venv, pack a small environment for this
#                               machine and install it in an offline replica
#   sh scripts/setup.sh test    install gapship and everything the tests need, run them all
#
# Installs with apt (as root, or through sudo) only what is missing.
set -eu
cd "$(dirname "$0")/.."
what=${1:-demo}

SUDO=
[ "$(id -u)" = 0 ] || SUDO=sudo
pkgs="python3 python3-venv bubblewrap ca-certificates"
[ "$what" = test ] && pkgs="$pkgs debootstrap debian-archive-keyring dash bash ksh zsh mksh busybox-static tcsh fish lmod gcc libc6-dev binutils openssl slurmctld slurmd slurm-client munge squashfs-tools squashfuse fuse3 strace make perl tcl xz-utils"
missing=
for p in $pkgs; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "==> installing:$missing"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $missing
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "==> creating .venv with $($PY --version)"
    $PY -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
if [ "$what" = test ]; then
    .venv/bin/python -m pip install -q -e '.[test]'
else
    .venv/bin/python -m pip install -q -e .
fi

case $what in
    demo)
        exec .venv/bin/gapship demo ;;
    test)
        .venv/bin/ruff check src tests benchmarks
        .venv/bin/mypy
        .venv/bin/lint-imports
        rc=0
        .venv/bin/pytest -ra tests || rc=$?
        # pytest exits 5 when no test ran: that is a failure too.
        [ "$rc" = 5 ] && echo "no test ran" >&2 && exit 1
        exit "$rc" ;;
    *)
        echo "usage: sh scripts/setup.sh demo|test" >&2; exit 2 ;;
esac
