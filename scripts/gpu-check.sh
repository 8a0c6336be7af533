#!/bin/sh
# The GPU check: prove on a GPU machine that a gapship bundle works there, offline, non-root.
#
#   sh scripts/gpu-check.sh build [TARGET]
#       here: pack gpucheck/gpucheck.run (Python, the doctor and NVIDIA's CUDA runtime wheel)
#       for TARGET (a probe's target.json; default: this machine), beside this script and
#       gpu_check.py; print what to run there
#   sh gpu-check.sh check BUNDLE
#       there: install BUNDLE as a non-root user (root drops to nobody, in a namespace
#       without network); run gapship-doctor --json (the driver through ctypes, a PTX vector
#       add) and gpu_check.py (work through the shipped libcudart after activation); say
#       whether the driver was found and both kernels gave the right result. Exit 0 only
#       when all of that holds.
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
    cp "$script" "$out/gpu-check.sh"
    cp "$(dirname "$script")/gpu_check.py" "$out/gpu_check.py"
    cat <<EOF

Bundle: $out/gpucheck.run
On the GPU machine (as a user without root; no network needed):
  scp $out/gpucheck.run $out/gpu-check.sh $out/gpu_check.py gpu-host:
  ssh gpu-host 'sh gpu-check.sh check gpucheck.run'
(it drops from root to nobody, without network, when run as root)
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
    helper=$(cd "$(dirname "$0")" && pwd -P)/gpu_check.py
    runtime=1
    if [ -r "$helper" ]; then
        cp "$helper" "$home/gpu_check.py"
        [ "$(id -u)" = 0 ] && chown 65534:65534 "$home/gpu_check.py"
        echo "==> gpu_check.py: work through the shipped CUDA runtime, after activation"
        as_user sh -c ". '$prefix/activate' && python '$home/gpu_check.py'" && runtime=0
    else
        echo "==> gpu_check.py is not beside this script: the runtime check did not run"
    fi
    "$prefix/bin/python3" -I - "$report" "$runtime" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
runtime_ok = sys.argv[2] == "0"
rows = report["checks"]
driver = [c for c in rows if c["group"] == "gpu" and c["name"].startswith("NVIDIA driver")]
kernels = [c for c in rows if c["name"].startswith("vector add on GPU")]
found = bool(driver) and driver[0]["status"] == "pass"
ran = bool(kernels) and all(c["status"] == "pass" for c in kernels)
print("driver found:   %s (%s)" % ("yes" if found else "NO", driver[0]["name"] + ": "
      + driver[0]["detail"] if driver else "no driver row"))
for c in kernels:
    print("PTX kernel:     %s %s: %s" % (c["status"], c["name"], c["detail"]))
print("runtime work:   %s" % ("right" if runtime_ok else "FAILED (see above)"))
print("GPU facts:      %s" % json.dumps(report.get("gpu")))
ok = found and ran and runtime_ok
print("verdict:        %s" % ("GPU path proven" if ok else "GPU path NOT proven"))
sys.exit(0 if ok else 1)
PY
}

case $what in
    build) shift; build "$@" ;;
    check) shift; [ $# -ge 1 ] || { echo "usage: $0 check BUNDLE" >&2; exit 2; }; check "$1" ;;
    *) echo "usage: $0 build [TARGET] | check BUNDLE" >&2; exit 2 ;;
esac
