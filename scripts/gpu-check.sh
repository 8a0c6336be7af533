#!/bin/sh
# gpu-check.sh BUNDLE: on a machine with an NVIDIA GPU, install BUNDLE (a gapship .run with
# the CUDA runtime wheel) as a non-root user with no network, activate it, and run work on the
# GPU with the shipped runtime (scripts/gpu_check.py). Prints what it did; exits non-zero
# with the reason when any step fails.
set -eu
bundle=$(cd "$(dirname -- "$1")" && pwd -P)/$(basename -- "$1")
here=$(cd "$(dirname -- "$0")" && pwd -P)
work=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")
trap 'rm -rf "$work"' EXIT
cp "$bundle" "$here/gpu_check.py" "$work/"
chmod 755 "$work"
chmod 644 "$work/gpu_check.py" "$work/$(basename -- "$bundle")"
step='sh "$W/$B" --prefix "$W/env" > "$W/install.log" 2>&1 || { cat "$W/install.log"; exit 1; }
echo "gpu-check: installed into $W/env"; . "$W/env/activate"; nvidia-smi -L 2>/dev/null || true
python "$W/gpu_check.py"'
export W="$work" B="$(basename -- "$bundle")"
if [ "$(id -u)" = 0 ]; then
    chown 65534 "$work"
    # no network (a new network namespace), then uid/gid 65534 (nobody)
    exec_as="unshare --net setpriv --reuid=65534 --regid=65534 --clear-groups"
    echo "gpu-check: installing as uid 65534 with no network"
    # shellcheck disable=SC2086
    $exec_as env -i PATH=/usr/bin:/bin HOME="$work" W="$work" B="$B" sh -c "$step"
else
    echo "gpu-check: installing as $(id -un) (not root: the network is left as it is)"
    env -i PATH=/usr/bin:/bin HOME="$work" W="$work" B="$B" sh -c "$step"
fi
