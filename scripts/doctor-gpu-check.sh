#!/bin/sh
# Prove gapship-doctor's GPU path (driver through ctypes, PTX vector add) on a GPU machine.
# (scripts/gpu-check.sh runs the shipped CUDA runtime itself; this one runs the doctor.)
#
#   sh scripts/doctor-gpu-check.sh build [TARGET]
#       here: pack gpucheck.run (Python, the doctor and NVIDIA's CUDA runtime wheel) for
#       TARGET (a probe's target.json; default: this machine); print what to run there
#   sh doctor-gpu-check.sh check BUNDLE
#       there: install BUNDLE as a non-root user (root drops to nobody, in a namespace
#       without network), run gapship-doctor --json, and say whether the driver was found
#       and the PTX vector add ran and was right. Exit 0 only when both hold.
set -eu
what=${1:-build}

build() {
    script=$(cd "$(dirname "$0")" && pwd -P)/$(basename "$0")
    root=$(cd "$(dirname "$0")/.." && pwd -P)
    target=${1:-local}
    out=${GPUCHECK_OUT:-$root/gpucheck}
    mkdir -p "$out"
    printf 'name = "gpucheck"\npackages = ["nvidia-cuda-runtime-cu12"]\n' > "$out/env.toml"
    "$root/.venv/bin/gapship" pack "$out/env.toml" --target "$target" -o "$out/gpucheck.run"
    cp "$script" "$out/doctor-gpu-check.sh"
    cat <<EOF

Bundle: $out/gpucheck.run
On the GPU machine (as a user without root; no network needed):
  scp $out/gpucheck.run $out/doctor-gpu-check.sh gpu-host:
  ssh gpu-host 'sh gpucheck.run --prefix ~/envs/gpucheck && ~/envs/gpucheck/bin/gapship-doctor --json'
or, to install, run and judge it in one step (drops from root to nobody when run as root):
  ssh gpu-host 'sh doctor-gpu-check.sh check gpucheck.run'
EOF
}

# Run "$@" as a user without root: ourselves when not root, else nobody (through setpriv,
# in a new network namespace: no network) or, without setpriv, through su.
as_user() {
    if [ "$(id -u)" != 0 ]; then
        "$@"
    elif command -v setpriv >/dev/null 2>&1; then
        unshare --net setpriv --reuid=65534 --regid=65534 --clear-groups env HOME="$home" "$@"
    else
        su -s /bin/sh nobody -c "HOME='$home' $*"
    fi
}

check() {
    bundle=$(cd "$(dirname "$1")" && pwd -P)/$(basename "$1")
    home=${GPUCHECK_HOME:-}
    if [ -z "$home" ]; then
        if [ "$(id -u)" = 0 ]; then home=$(mktemp -d /tmp/gpucheck-home.XXXXXX); else home=$HOME; fi
    fi
    if [ "$(id -u)" = 0 ]; then
        # nobody must read the bundle: a copy in its home
        cp "$bundle" "$home/gpucheck.run"
        bundle=$home/gpucheck.run
        chown -R 65534:65534 "$home"
    fi
    prefix=$home/envs/gpucheck
    report=$home/gpucheck-doctor.json
    echo "==> installing $bundle into $prefix as $( [ "$(id -u)" = 0 ] && echo nobody || id -un)"
    as_user sh "$bundle" --prefix "$prefix" --force
    echo "==> $prefix/bin/gapship-doctor --json"
    rc=0
    as_user "$prefix/bin/gapship-doctor" --json --report "$report" || rc=$?
    echo "==> doctor exit status $rc (0 all passed, 1 a check failed, 2 the doctor broke)"
    "$prefix/bin/python3" -I - "$report" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
rows = report["checks"]
driver = [c for c in rows if c["group"] == "gpu" and c["name"].startswith("NVIDIA driver")]
kernels = [c for c in rows if c["name"].startswith("vector add on GPU")]
found = bool(driver) and driver[0]["status"] == "pass"
ran = bool(kernels) and all(c["status"] == "pass" for c in kernels)
print("driver found:   %s (%s)" % ("yes" if found else "NO", driver[0]["name"] + ": "
      + driver[0]["detail"] if driver else "no driver row"))
for c in kernels:
    print("PTX kernel:     %s %s: %s" % (c["status"], c["name"], c["detail"]))
print("GPU facts:      %s" % json.dumps(report.get("gpu")))
print("verdict:        %s" % ("GPU path proven" if found and ran else "GPU path NOT proven"))
sys.exit(0 if found and ran else 1)
PY
}

case $what in
    build) shift; build "$@" ;;
    check) shift; [ $# -ge 1 ] || { echo "usage: $0 check BUNDLE" >&2; exit 2; }; check "$1" ;;
    *) echo "usage: $0 build [TARGET] | check BUNDLE" >&2; exit 2 ;;
esac
