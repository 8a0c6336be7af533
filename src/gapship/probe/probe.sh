#!/bin/sh
# gapship probe: describe this machine for gapship, as JSON on stdout.
#
#   sh probe.sh [--redact] [DIR] > target.json
#
# POSIX sh only (dash, bash, ksh, busybox ash); no Python, jq or awk extensions.
# It never asks for input, writes nothing, prints no environment variable values other than
# the module path, and puts a time limit on every command that could hang.
# Every field is null when it cannot be known; nothing is guessed.
#
# Test seam: files are read under $GAPSHIP_PROBE_ROOT (default: /), and commands are found on
# PATH, so a recorded machine is replayed by a fixture root plus a fixture bin/ on PATH. Paths
# it reports are as the machine sees them (the root is cut off).

# zsh runs this as POSIX sh too (no NOMATCH errors, word splitting as sh)
[ -n "${ZSH_VERSION-}" ] && emulate sh
PROBE_VERSION=3
SCHEMA_VERSION=1
# the C locale makes tr ranges and sort orders the same everywhere
LC_ALL=C; export LC_ALL
unset CDPATH
R=${GAPSHIP_PROBE_ROOT:-}
# physical, so that paths found under it can have it cut off again
if [ -n "$R" ]; then R=$(cd "$R" && pwd -P) || exit 2; [ "$R" = / ] && R=; fi
LIMIT=${GAPSHIP_PROBE_TIMEOUT:-5}
REDACT=0
DIR=

while [ $# -gt 0 ]; do
    case $1 in
        --redact) REDACT=1 ;;
        -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
        -*) echo "probe.sh: unknown option $1 (use --redact and an optional DIR)" >&2; exit 2 ;;
        *) DIR=$1 ;;
    esac
    shift
done

# Path of command $1 on PATH. PATH is searched here, not with `command -v`: a busybox shell
# that prefers its own applets would otherwise answer for commands the machine does not have.
# Only absolute entries count: the answer must not depend on the working directory.
find_cmd() {
    _ifs=$IFS; IFS=:
    for _d in $PATH; do
        case $_d in /*) ;; *) continue ;; esac
        if [ -f "$_d/$1" ] && [ -x "$_d/$1" ]; then IFS=$_ifs; printf '%s\n' "$_d/$1"; return 0; fi
    done
    IFS=$_ifs
    return 1
}
have() { find_cmd "$1" >/dev/null; }

# Run a command with a time limit, with or without timeout(1); its stderr is dropped.
limited() { _limited "$@" 2>/dev/null; }
_limited() {
    if have timeout; then
        timeout "$LIMIT" "$@"
        return
    fi
    "$@" &
    _pid=$!
    ( sleep "$LIMIT"; kill -9 "$_pid" ) >/dev/null 2>&1 &
    _killer=$!
    wait "$_pid"
    _rc=$?
    kill "$_killer" >/dev/null 2>&1
    return $_rc
}
# Run command $1 found on PATH (see find_cmd) with a time limit; status 127 when it is absent.
run() {
    _c=$(find_cmd "$1") || return 127
    shift
    limited "$_c" "$@"
}
# The same with stderr kept, on stdout (musl's ldd prints its version there).
run_all() {
    _c=$(find_cmd "$1") || return 127
    shift
    _limited "$_c" "$@" 2>&1
}
# Physical path of directory $1 as the machine sees it (for a replay: under the root).
phys() {
    case $1 in /*) _p=$R$1 ;; *) _p=$1 ;; esac
    _p=$(cd "$_p" 2>/dev/null && pwd -P) || return 1
    [ -n "$_p" ] || return 1
    _p=${_p#"$R"}
    printf '%s\n' "${_p:-/}"
}

# JSON string of $1, or null when empty. Newlines become spaces.
js() {
    if [ -z "$1" ]; then printf 'null'; return; fi
    printf '"%s"' "$(printf '%s' "$1" | tr '\n\t\r' '   ' | tr -d '\000-\037' | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g')"
}
# JSON number of $1 (digits, optional fraction), or null.
jn() {
    case $1 in
        ''|*[!0-9.]*|.*|*.) printf 'null' ;;
        *) printf '%s' "$1" ;;
    esac
}
# JSON boolean: 1 -> true, 0 -> false, anything else -> null.
jb() {
    case $1 in 1) printf 'true' ;; 0) printf 'false' ;; *) printf 'null' ;; esac
}
rd() { [ -r "$R$1" ] && cat "$R$1" 2>/dev/null; }

# key=value lines (os-release style) -> value of key $2 in file $1
osr() {
    rd "$1" | sed -n "s/^$2=//p" | head -n 1 | sed -e 's/^"//' -e 's/"$//' -e "s/^'//" -e "s/'\$//"
}

# ---------------------------------------------------------------- OS
os_id=; os_ver=; os_pretty=
if [ -r "$R/etc/os-release" ]; then f=/etc/os-release
elif [ -r "$R/usr/lib/os-release" ]; then f=/usr/lib/os-release
else f=; fi
if [ -n "$f" ]; then
    os_id=$(osr "$f" ID); os_ver=$(osr "$f" VERSION_ID); os_pretty=$(osr "$f" PRETTY_NAME)
elif [ -r "$R/etc/redhat-release" ]; then
    os_pretty=$(head -n 1 "$R/etc/redhat-release")
    case $os_pretty in
        CentOS*) os_id=centos ;; Red\ Hat*) os_id=rhel ;; Scientific*) os_id=scientific ;;
        Fedora*) os_id=fedora ;; Rocky*) os_id=rocky ;; AlmaLinux*) os_id=almalinux ;;
    esac
    os_ver=$(printf '%s' "$os_pretty" | sed -n 's/.*release \([0-9][0-9.]*\).*/\1/p')
elif [ -r "$R/etc/lsb-release" ]; then
    os_id=$(osr /etc/lsb-release DISTRIB_ID | tr 'A-Z' 'a-z')
    os_ver=$(osr /etc/lsb-release DISTRIB_RELEASE)
    os_pretty=$(osr /etc/lsb-release DISTRIB_DESCRIPTION)
fi
kernel=$(run uname -r)
arch=$(run uname -m)

# ---------------------------------------------------------------- C library
libc=; libc_ver=
gv=$(run getconf GNU_LIBC_VERSION)
case $gv in
    glibc\ *) libc=glibc; libc_ver=${gv#glibc } ;;
esac
if [ -z "$libc" ]; then
    lv=$(run_all ldd --version | head -n 2)
    case $lv in
        *musl*) libc=musl; libc_ver=$(printf '%s\n' "$lv" | sed -n 's/^Version \([0-9.]*\).*/\1/p') ;;
        *GLIBC*|*"GNU libc"*|*glibc*)
            libc=glibc
            libc_ver=$(printf '%s\n' "$lv" | head -n 1 | sed -n 's/.* \([0-9][0-9]*\.[0-9][0-9]*\)$/\1/p') ;;
    esac
fi
if [ -z "$libc" ]; then
    for m in "$R"/lib/ld-musl-*.so.1; do [ -e "$m" ] && libc=musl; done
fi
glibcxx=; libstdcxx=
for d in /usr/lib/x86_64-linux-gnu /usr/lib64 /lib64 /usr/lib/aarch64-linux-gnu /usr/lib /lib/x86_64-linux-gnu /lib; do
    if [ -r "$R$d/libstdc++.so.6" ]; then libstdcxx=$d/libstdc++.so.6; break; fi
done
# newest version named $2 (GLIBCXX, CXXABI, GCC) that library file $1 (under the root) defines
newest_symver() {
    tr -c 'A-Za-z0-9_.' '\n' < "$R$1" | sed -n "s/^$2_\\([0-9][0-9.]*[0-9]\\)\$/\\1/p" \
        | sort -u -t. -k1,1n -k2,2n -k3,3n | tail -n 1
}
cxxabi=; gcc_s=
if [ -n "$libstdcxx" ]; then
    glibcxx=$(newest_symver "$libstdcxx" GLIBCXX)
    cxxabi=$(newest_symver "$libstdcxx" CXXABI)
fi
for d in /lib/x86_64-linux-gnu /usr/lib/x86_64-linux-gnu /lib64 /usr/lib64 /lib/aarch64-linux-gnu /usr/lib/aarch64-linux-gnu /lib /usr/lib; do
    if [ -r "$R$d/libgcc_s.so.1" ]; then gcc_s=$(newest_symver "$d/libgcc_s.so.1" GCC); break; fi
done

# ---------------------------------------------------------------- libraries
# Every shared library the dynamic loader finds without help, by file name: its cache
# (`ldconfig -p`, or the cache file itself where ldconfig cannot run) and its default
# directories. gapship checks at pack time that every library the bundle needs is here.
case $arch in
    x86_64) abi=x86-64; triplet=x86_64-linux-gnu ;;
    aarch64) abi=AArch64; triplet=aarch64-linux-gnu ;;
    *) abi=; triplet= ;;
esac
ldconfig=$(find_cmd ldconfig) || ldconfig=
if [ -z "$ldconfig" ] && [ -z "$R" ]; then
    # a user's PATH seldom has /sbin; a replay (under a root) uses only its own bin/
    for l in /sbin/ldconfig /usr/sbin/ldconfig; do [ -x "$l" ] && { ldconfig=$l; break; }; done
fi
lib_source=
cached=
if [ -n "$ldconfig" ] && [ -n "$abi" ] && cached=$(limited "$ldconfig" -p) && [ -n "$cached" ]; then
    lib_source=ldconfig
    cached=$(printf '%s\n' "$cached" | sed -n "s/^[[:space:]]*\([^[:space:]]*\) (.*$abi.*) => .*/\1/p")
elif [ -r "$R/etc/ld.so.cache" ]; then
    lib_source=ld.so.cache
    cached=$(tr -c 'A-Za-z0-9_.+/-' '\n' < "$R/etc/ld.so.cache" | sed -n 's|^.*/||; /^lib.*\.so/p')
fi
in_dirs=$(for d in /lib64 /usr/lib64 ${triplet:+/lib/$triplet /usr/lib/$triplet} /lib /usr/lib; do
    for f in "$R$d"/lib*.so*; do [ -e "$f" ] && printf '%s\n' "${f##*/}"; done
done)
[ -z "$lib_source" ] && [ -n "$in_dirs" ] && lib_source=directories
sonames=$(printf '%s\n%s\n' "$cached" "$in_dirs" | grep '^lib[A-Za-z0-9_.+-]*\.so[A-Za-z0-9_.+-]*$' \
    | sort -u | sed 's/.*/"&"/' | tr '\n' ',' | sed 's/,$//')

# ---------------------------------------------------------------- CPU, memory
cpu_model=$(rd /proc/cpuinfo | sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' | head -n 1)
cores=$(rd /proc/cpuinfo | grep -c '^processor')
[ "$cores" = 0 ] && cores=
flags=" $(rd /proc/cpuinfo | sed -n 's/^flags[[:space:]]*:[[:space:]]*//p' | head -n 1) "
flag_list=
for fl in sse2 ssse3 sse4_1 sse4_2 popcnt avx avx2 fma bmi1 bmi2 f16c movbe avx512f avx512bw avx512cd avx512dq avx512vl avx512_bf16 amx_tile; do
    case $flags in *" $fl "*) flag_list="$flag_list${flag_list:+,}\"$fl\"" ;; esac
done
all_of() { for x in "$@"; do case $flags in *" $x "*) ;; *) return 1 ;; esac; done; }
level=
if [ "$flags" != "  " ]; then
    case $arch in
        x86_64)
            level=1
            all_of cx16 lahf_lm popcnt sse4_1 sse4_2 ssse3 && level=2
            [ $level = 2 ] && all_of avx avx2 bmi1 bmi2 f16c fma abm movbe xsave && level=3
            [ $level = 3 ] && all_of avx512f avx512bw avx512cd avx512dq avx512vl && level=4 ;;
    esac
fi
mem_kb=$(rd /proc/meminfo | sed -n 's/^MemTotal:[[:space:]]*\([0-9]*\).*/\1/p')

# ---------------------------------------------------------------- storage
home=${HOME:-}
# free KiB in directory $1 (a physical path as phys prints it)
free_kb() { run df -Pk "$R$1" | tail -n 1 | (read -r _ _ _ avail _ && echo "$avail"); }
# filesystem type of the mount holding directory $1, from /proc/mounts (longest mount point wins)
fstype() {
    rd /proc/mounts | while read -r _dev _mnt _t _opts _rest; do
        [ "$_mnt" = / ] && _mnt=
        case $1/ in
            "$_mnt"/*) echo "${#_mnt} $_t" ;;
        esac
    done | sort -n | tail -n 1 | sed 's/^[0-9]* //'
}
home_free=; home_fs=; dir_free=; dir_fs=; dir_abs=
if [ -n "$home" ] && home_abs=$(phys "$home"); then
    home_free=$(free_kb "$home_abs"); home_fs=$(fstype "$home_abs")
fi
if [ -n "$DIR" ] && dir_abs=$(phys "$DIR"); then
    dir_free=$(free_kb "$dir_abs"); dir_fs=$(fstype "$dir_abs")
fi
tmp_noexec=
if [ -r "$R/proc/mounts" ]; then
    tmp_noexec=0
    tmp_opts=$(rd /proc/mounts | while read -r _d _m _t _o _r; do [ "$_m" = /tmp ] && echo "$_o"; done | tail -n 1)
    case ",$tmp_opts," in *,noexec,*) tmp_noexec=1 ;; esac
fi

# ---------------------------------------------------------------- shells, Pythons
bin_sh=
if [ -L "$R/bin/sh" ]; then bin_sh=$(readlink "$R/bin/sh"); bin_sh=${bin_sh##*/}
elif [ -e "$R/bin/sh" ]; then bin_sh=sh; fi
login_shell=${SHELL:-}
login_shell=${login_shell##*/}
pythons=; seen=" "
py_cands=
for n in python3 python python3.6 python3.7 python3.8 python3.9 python3.10 python3.11 python3.12 python3.13 python3.14; do
    p=$(find_cmd "$n") && py_cands="$py_cands $p"
done
for p in "$R"/usr/bin/python3* "$R"/usr/local/bin/python3* "$R"/opt/*/bin/python3; do py_cands="$py_cands $p"; done
for p in $py_cands; do
    shown=${p#"$R"}
    case $shown in *-config|*[!0-9.a-z/_-]*) continue ;; esac
    [ -f "$p" ] && [ -x "$p" ] || continue
    case $seen in *" $shown "*) continue ;; esac
    seen="$seen$shown "
    v=$(limited "$p" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')
    case $v in [0-9]*.[0-9]*.[0-9]*) ;; *) continue ;; esac
    pythons="$pythons${pythons:+,}{\"path\":$(js "$shown"),\"version\":$(js "$v")}"
done

# ---------------------------------------------------------------- NVIDIA
drv=
if [ -r "$R/proc/driver/nvidia/version" ]; then
    # "Kernel Module  550.54.15  Tue ..." or "Open Kernel Module for x86_64  550.54.15  Release ..."
    drv=$(sed -n 's/.*Kernel Module.*[[:space:]]\([0-9][0-9]*\.[0-9][0-9.]*[0-9]\)[[:space:]].*/\1/p' \
        "$R/proc/driver/nvidia/version" | head -n 1)
fi
trim() { printf '%s' "$1" | sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//'; }
gpus=
if have nvidia-smi; then
    # drivers before 510 know no compute_cap field: they print an error and fail; then the
    # capability stays unknown ("?" -> null) rather than guessed from the name
    if ! smi=$(run nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version --format=csv,noheader,nounits); then
        smi=
        old=$(run nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader,nounits) \
            && smi=$(printf '%s\n' "$old" | sed 's/,/, ?,/')
    fi
    gpus=$(printf '%s\n' "$smi" | while IFS=, read -r g_name g_cc g_mem g_drv; do
        [ -n "$g_drv" ] || continue
        g_name=$(trim "$g_name"); g_cc=$(trim "$g_cc"); g_mem=$(trim "$g_mem")
        case $g_cc in [0-9]*.[0-9]*) ;; *) g_cc= ;; esac
        printf '{"name":%s,"compute_capability":%s,"memory_mib":%s},' "$(js "$g_name")" "$(js "$g_cc")" "$(jn "$g_mem")"
    done)
    gpus=${gpus%,}
    if [ -z "$drv" ]; then drv=$(printf '%s\n' "$smi" | head -n 1 | sed -n 's/.*, *\([0-9][0-9.]*\) *$/\1/p'); fi
fi
uvm=
if [ -r "$R/proc/modules" ]; then
    uvm=0; grep -q '^nvidia_uvm ' "$R/proc/modules" && uvm=1
fi
toolkits=
for d in "$R"/usr/local/cuda "$R"/usr/local/cuda-* "$R"/opt/cuda*; do
    [ -d "$d" ] || continue
    v=
    if [ -r "$d/version.json" ]; then
        v=$(tr -d '\n' < "$d/version.json" | sed -n 's/.*"cuda"[^}]*"version"[[:space:]]*:[[:space:]]*"\([0-9.]*\)".*/\1/p')
    fi
    if [ -z "$v" ] && [ -r "$d/version.txt" ]; then
        v=$(sed -n 's/^CUDA Version \([0-9.]*\).*/\1/p' "$d/version.txt" | head -n 1)
    fi
    if [ -z "$v" ] && [ -z "$R" ] && [ -x "$d/bin/nvcc" ]; then
        v=$(limited "$d/bin/nvcc" --version | sed -n 's/.*release \([0-9][0-9.]*\).*/\1/p' | head -n 1)
    fi
    toolkits="$toolkits${toolkits:+,}{\"path\":$(js "${d#"$R"}"),\"version\":$(js "$v")}"
done
nvcc=
if have nvcc; then nvcc=$(run nvcc --version | sed -n 's/.*release \([0-9][0-9.]*\).*/\1/p' | head -n 1); fi
cudnn=
for h in "$R"/usr/include/cudnn_version.h "$R"/usr/include/cudnn.h "$R"/usr/local/cuda*/include/cudnn_version.h "$R"/usr/local/cuda*/include/cudnn.h; do
    [ -r "$h" ] || continue
    maj=$(sed -n 's/^#define CUDNN_MAJOR[[:space:]]*\([0-9]*\).*/\1/p' "$h")
    [ -n "$maj" ] || continue
    min=$(sed -n 's/^#define CUDNN_MINOR[[:space:]]*\([0-9]*\).*/\1/p' "$h")
    pat=$(sed -n 's/^#define CUDNN_PATCHLEVEL[[:space:]]*\([0-9]*\).*/\1/p' "$h")
    cudnn="$cudnn${cudnn:+,}{\"path\":$(js "${h#"$R"}"),\"version\":$(js "$maj.$min.$pat")}"
done

# ---------------------------------------------------------------- site
modsys=
if [ -n "${LMOD_CMD:-}" ] || [ -n "${LMOD_VERSION:-}" ]; then modsys=lmod
elif [ -n "${MODULESHOME:-}" ]; then modsys=tcl; fi
sched=
for s in srun sbcast sbatch qsub bsub; do
    have "$s" && sched="$sched${sched:+,}\"$s\""
done
container=
for c in apptainer singularity; do have "$c" && { container=$c; break; }; done
userns=
if [ -r "$R/proc/sys/user/max_user_namespaces" ]; then
    userns=1; [ "$(rd /proc/sys/user/max_user_namespaces)" = 0 ] && userns=0
    [ -r "$R/proc/sys/kernel/unprivileged_userns_clone" ] && [ "$(rd /proc/sys/kernel/unprivileged_userns_clone)" = 0 ] && userns=0
fi
tools=
for t in tar gzip xz zstd sha256sum df; do
    if have "$t"; then tools="$tools${tools:+,}\"$t\":true"; else tools="$tools${tools:+,}\"$t\":false"; fi
done
# what a SquashFS image (gapship pack --format squashfs) needs: squashfuse and FUSE for a user,
# or the kernel's squashfs for a container runtime
image=
for t in squashfuse squashfuse_ll fusermount fusermount3; do
    if have "$t"; then image="$image${image:+,}\"$t\":true"; else image="$image${image:+,}\"$t\":false"; fi
done
dev_fuse=0; [ -r "$R/dev/fuse" ] && [ -w "$R/dev/fuse" ] && dev_fuse=1
kernel_squashfs=
if [ -r "$R/proc/filesystems" ]; then
    kernel_squashfs=0; grep -q 'squashfs$' "$R/proc/filesystems" && kernel_squashfs=1
fi
image="$image,\"dev_fuse\":$(jb "$dev_fuse"),\"kernel_squashfs\":$(jb "$kernel_squashfs")"

hostname=; user=
if [ "$REDACT" = 0 ]; then
    hostname=$(run uname -n)
    user=$(run id -un)
fi
now=$(run date -u +%Y-%m-%dT%H:%M:%SZ)

cat <<EOF
{
  "schema_version": $SCHEMA_VERSION,
  "probe_version": $PROBE_VERSION,
  "collected_at": $(js "$now"),
  "redacted": $(jb "$REDACT"),
  "host": {"hostname": $(js "$hostname"), "user": $(js "$user")},
  "os": {"id": $(js "$os_id"), "version_id": $(js "$os_ver"), "pretty_name": $(js "$os_pretty"), "kernel": $(js "$kernel"), "arch": $(js "$arch")},
  "libc": {"family": $(js "$libc"), "version": $(js "$libc_ver"), "glibcxx": $(js "$glibcxx"), "cxxabi": $(js "$cxxabi"), "gcc": $(js "$gcc_s"), "libstdcxx": $(js "$libstdcxx")},
  "libraries": {"source": $(js "$lib_source"), "sonames": [$sonames]},
  "cpu": {"model": $(js "$cpu_model"), "cores": $(jn "$cores"), "flags": [$flag_list], "x86_64_level": $(jn "$level")},
  "memory_kb": $(jn "$mem_kb"),
  "storage": {"home": $(js "$home"), "home_free_kb": $(jn "$home_free"), "home_fstype": $(js "$home_fs"), "dir": $(js "$dir_abs"), "dir_free_kb": $(jn "$dir_free"), "dir_fstype": $(js "$dir_fs"), "tmp_noexec": $(jb "$tmp_noexec")},
  "shells": {"bin_sh": $(js "$bin_sh"), "login_shell": $(js "$login_shell")},
  "pythons": [$pythons],
  "nvidia": {"driver_version": $(js "$drv"), "gpus": [$gpus], "uvm_loaded": $(jb "$uvm"), "cuda_toolkits": [$toolkits], "nvcc_version": $(js "$nvcc"), "cudnn_headers": [$cudnn]},
  "site": {"module_system": $(js "$modsys"), "modulepath": $(js "${MODULEPATH:-}"), "schedulers": [$sched], "container_runtime": $(js "$container"), "userns": $(jb "$userns"), "tools": {$tools}, "image": {$image}}
}
EOF
