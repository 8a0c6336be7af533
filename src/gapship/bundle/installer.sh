#!/bin/sh
{
# gapship self-extracting environment installer (sh NAME.run --help says how to use it).
#
# POSIX sh (dash, bash, ksh, mksh, zsh, busybox ash); needs tail, tar, tee, mkfifo, sha256sum,
# df and the payload's decompressor (GAPSHIP_CODEC: zstd, or gzip, which busybox has too).
# The whole header is one compound command, so the shell parses all of it before running any
# of it: a bundle cut anywhere inside the header is a syntax error, never a silent exit 0, and
# the size check is the first thing that runs. The payload is read once, streamed (memory does
# not grow with the bundle): hashed while it is extracted into a hidden directory beside the
# prefix, which is renamed into place only when the checksum matched and the tree is complete,
# under a lock beside the prefix.

# zsh runs this as POSIX sh too (no NOMATCH errors, word splitting as sh)
[ -z "${ZSH_VERSION-}" ] || emulate sh
GAPSHIP_NAME=@NAME@
GAPSHIP_VERSION=@VERSION@
GAPSHIP_PYTHON=@PYTHON@
# the payload is a tar stream compressed with this command (as: NAME -dc)
GAPSHIP_CODEC=@CODEC@
GAPSHIP_HEADER_BYTES=@HEADER_BYTES@
GAPSHIP_PAYLOAD_BYTES=@PAYLOAD_BYTES@
GAPSHIP_PAYLOAD_SHA256=@PAYLOAD_SHA256@
# disk use as du counts it (4 KiB blocks per file and directory) and the inodes it takes
GAPSHIP_INSTALLED_KB=@INSTALLED_KB@
GAPSHIP_FILE_COUNT=@FILE_COUNT@
# a signed bundle ends with the signature (RSA-3072, SHA-256) of its header and payload
GAPSHIP_SIGNATURE_BYTES=@SIGNATURE_BYTES@
# a split bundle: its payload is in parts (in the directory of this file, or --parts DIR), one
# a line: SIZE SHA256 NAME, concatenated in this order; after this header comes the same list
# as text (GAPSHIP_TRAILER_BYTES long). Empty when the payload follows the header.
GAPSHIP_PARTS=@PARTS@
GAPSHIP_TRAILER_BYTES=@TRAILER_BYTES@

set -u
umask 022
unset LD_PRELOAD LD_LIBRARY_PATH
self=$0
me="gapship installer ($GAPSHIP_NAME)"

die() { printf '%s: %s\n' "$me" "$*" >&2; exit 1; }
say() { printf '%s\n' "$*" >&2; }
# single-quoted for sh (and csh), so that a printed command can be pasted; fish escapes ' and \
quote() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }
fish_quote() { printf "'%s'" "$(printf '%s' "$1" | sed -e 's/[\\]/\\\\/g' -e "s/'/\\\\'/g")"; }

# ---- size first: a bundle cut short or appended to is refused before anything else
size=$(wc -c < "$self" 2>/dev/null | tr -d ' ')
if [ -n "$GAPSHIP_PARTS" ]; then
    signed_bytes=$((GAPSHIP_HEADER_BYTES + GAPSHIP_TRAILER_BYTES))
else
    signed_bytes=$((GAPSHIP_HEADER_BYTES + GAPSHIP_PAYLOAD_BYTES))
fi
expected=$((signed_bytes + GAPSHIP_SIGNATURE_BYTES))
[ -n "$size" ] || die "cannot read $self; run it as: sh NAME.run"
if [ "$size" -ne "$expected" ]; then
    die "the bundle is damaged: $size bytes, expected $expected (truncated or appended to). Send $(basename "$self") again."
fi

usage() {
    b=$(basename "$self")
    cat <<EOF
This installs the gapship environment $GAPSHIP_NAME $GAPSHIP_VERSION (Python $GAPSHIP_PYTHON).

Usage: sh $b [--prefix DIR] [--force] [--profile] [--trust KEY] [--parts PDIR]
       sh $b --check [--trust KEY] [--parts PDIR] | --info | --help

  --prefix DIR   Install into DIR; the default is ~/envs/$GAPSHIP_NAME. A leading ~ is your home.
                 DIR may not hold ':', because PATH could not name it.
  --force        Replace DIR when it is an empty directory or another gapship environment.
                 Anything else in DIR is never touched: the install is refused instead.
                 The old environment stays in place until the new one is complete.
  --profile      Activate the environment at every login, through one marked block in the
                 login files of your shell; DIR/bin/gapship-profile off removes it again.
  --trust KEY    Install only when the bundle is signed, and its signature verifies with
                 the public key in the file KEY (from gapship keygen). Keys in
                 ~/.config/gapship/trusted/ are tried too; a signed bundle that none of
                 them verifies is refused. Unsigned bundles install when no --trust is given.
  --parts PDIR   Where the parts of a split bundle are (NAME.part-001 ...); the default is
                 the directory of $b. Every part is verified before anything is installed.
  --check        Verify the size, checksum and signature of this bundle, print the sha256
                 of the whole file (to compare out of band), and install nothing.
  --info         Print what this bundle holds, and install nothing.
  --help         Print this text.

The bundle is extracted beside DIR while its checksum is computed, and renamed into place only
when the checksum matched and it is complete, so a damaged bundle or an interrupted install
leaves DIR as it was; the next run cleans up what an install that was killed left behind.
Only one install into DIR runs at a time. After installing, activate the environment with:
. DIR/activate (in csh or tcsh: source DIR/activate.csh; in fish: source DIR/activate.fish).
DIR/bin/gapship-remove deletes it.
EOF
}

prefix=
prefix_given=0
parts_dir=
force=0
profile=0
trust=
mode=install
while [ $# -gt 0 ]; do
    case $1 in
        --prefix) [ $# -ge 2 ] || die "--prefix needs a directory, as in: --prefix ~/envs/$GAPSHIP_NAME"
                  prefix=$2; prefix_given=1; shift ;;
        --prefix=*) prefix=${1#--prefix=}; prefix_given=1 ;;
        -f|--force) force=1 ;;
        --profile) profile=1 ;;
        --trust) [ $# -ge 2 ] || die "--trust needs a public key file, as in: --trust builder.pub"
                 trust=$2; shift ;;
        --trust=*) trust=${1#--trust=} ;;
        --parts) [ $# -ge 2 ] || die "--parts needs the directory that holds the parts, as in: --parts ~/incoming"
                 parts_dir=$2; shift ;;
        --parts=*) parts_dir=${1#--parts=} ;;
        --check) mode=check ;;
        --info) mode=info ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown option '$1'; see: sh $(basename "$self") --help" ;;
    esac
    shift
done

if [ "$mode" = info ]; then
    if [ "$GAPSHIP_SIGNATURE_BYTES" -gt 0 ]; then signed="yes (RSA-3072, SHA-256)"; else signed=no; fi
    printf 'name: %s\nversion: %s\npython: %s\npayload: %s bytes (%s), sha256 %s\ninstalled size: %s KB in %s files\nsigned: %s\n' \
        "$GAPSHIP_NAME" "$GAPSHIP_VERSION" "$GAPSHIP_PYTHON" "$GAPSHIP_PAYLOAD_BYTES" \
        "$GAPSHIP_CODEC" "$GAPSHIP_PAYLOAD_SHA256" "$GAPSHIP_INSTALLED_KB" "$GAPSHIP_FILE_COUNT" "$signed"
    if [ -n "$GAPSHIP_PARTS" ]; then
        printf 'parts: %s (size sha256 name)\n' "$(printf '%s' "$GAPSHIP_PARTS" | wc -l | tr -d ' ')"
        printf '%s' "$GAPSHIP_PARTS" | sed 's/^/  /'
    fi
    exit 0
fi

for tool in tail tar df mkdir mv rm sed cat wc ls; do
    command -v "$tool" >/dev/null 2>&1 || die "'$tool' is not installed on this machine; it is needed to install."
done
if [ "$mode" = install ]; then
    for tool in tee mkfifo; do
        command -v "$tool" >/dev/null 2>&1 || die "'$tool' is not installed on this machine; it is needed to install."
    done
    case $GAPSHIP_CODEC in
        zstd) command -v zstd >/dev/null 2>&1 || die "this bundle is zstd-compressed and this machine has no zstd command. Nothing was installed; ask for a bundle packed with: gapship pack --codec gzip" ;;
        gzip) command -v gzip >/dev/null 2>&1 || die "this bundle is gzip-compressed and this machine has no gzip command. Nothing was installed; install gzip (busybox's will do), or ask for a bundle packed with: gapship pack --codec zstd" ;;
        *) die "the bundle is damaged: it names an unknown compression '$GAPSHIP_CODEC'. Send $(basename "$self") again." ;;
    esac
fi
# sha256: OpenSSL's first, where it hashes right (it uses the CPU's SHA instructions: 8x
# coreutils' sha256sum on a 300 MB payload), then sha256sum, shasum
empty_sha256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
if command -v openssl >/dev/null 2>&1 \
        && [ "$(printf '' | openssl dgst -sha256 2>/dev/null | sed 's/.*= *//')" = "$empty_sha256" ]; then
    sha256() { openssl dgst -sha256 | sed 's/.*= *//'; }
elif command -v sha256sum >/dev/null 2>&1; then sha256() { sha256sum | sed 's/ .*//'; }
elif command -v shasum >/dev/null 2>&1; then sha256() { shasum -a 256 | sed 's/ .*//'; }
else die "no openssl, sha256sum or shasum here: the bundle cannot be verified."; fi

if [ -n "$GAPSHIP_PARTS" ]; then
    # ---- a split bundle: the parts, concatenated in order (streamed, never held in memory)
    [ -n "$parts_dir" ] || parts_dir=$(dirname "$self")
    [ "$GAPSHIP_SIGNATURE_BYTES" = 0 ] || command -v head >/dev/null 2>&1 \
        || die "'head' is not installed on this machine; it is needed to install."
    [ -d "$parts_dir" ] || die "--parts $parts_dir is not a directory; give the directory that holds the parts of $(basename "$self")."
    # as a full path, for the messages
    parts_dir=$(cd "$parts_dir" 2>/dev/null && pwd) || die "cannot enter $parts_dir, where the parts of $(basename "$self") should be."
    payload() {
        printf '%s' "$GAPSHIP_PARTS" | while read -r _size _sum _name; do
            cat "$parts_dir/$_name" || exit 1
        done
    }
    # Every part, its size then its sha256; all that are missing or damaged named in one line.
    check_parts() {
        _n=$(printf '%s' "$GAPSHIP_PARTS" | wc -l | tr -d ' ')
        say "verifying the $_n parts of $(basename "$self") in $parts_dir ..."
        _bad=$(printf '%s' "$GAPSHIP_PARTS" | while read -r _size _sum _name; do
            _p="$parts_dir/$_name"
            if [ ! -e "$_p" ]; then printf '%s is missing\n' "$_name"; continue; fi
            if [ ! -f "$_p" ] || [ ! -r "$_p" ]; then printf '%s cannot be read\n' "$_name"; continue; fi
            _got=$(wc -c < "$_p" | tr -d ' ')
            if [ "$_got" != "$_size" ]; then
                printf '%s is damaged (%s bytes, expected %s)\n' "$_name" "$_got" "$_size"
                continue
            fi
            _got=$(sha256 < "$_p")
            [ "$_got" = "$_sum" ] || printf '%s is damaged (sha256 %s, expected %s)\n' "$_name" "$_got" "$_sum"
        done)
        [ -n "$_bad" ] || return 0
        _count=$(printf '%s\n' "$_bad" | wc -l | tr -d ' ')
        _list=$(printf '%s\n' "$_bad" | sed '$!s/$/,/' | tr '\n' ' ')
        if [ "$_count" = 1 ]; then _them=it; else _them=them; fi
        _where=
        case $_bad in *" is missing"*) _where=" (looked in $parts_dir; --parts DIR names another directory)" ;; esac
        die "${_list% }: send $_them again; nothing was installed$_where."
    }
elif [ "$GAPSHIP_SIGNATURE_BYTES" -gt 0 ]; then
    command -v head >/dev/null 2>&1 || die "'head' is not installed on this machine; it is needed to install."
    payload() { tail -c +"$((GAPSHIP_HEADER_BYTES + 1))" "$self" | head -c "$GAPSHIP_PAYLOAD_BYTES"; }
else
    payload() { tail -c +"$((GAPSHIP_HEADER_BYTES + 1))" "$self"; }
fi

# ---- the prefix, checked before the payload is read
nl='
'
if [ "$prefix_given" = 1 ]; then
    [ -n "$prefix" ] || die "--prefix is empty; give a directory, as in: --prefix ~/envs/$GAPSHIP_NAME"
else
    [ -n "${HOME:-}" ] || die "HOME is not set: give --prefix DIR"
    prefix="$HOME/envs/$GAPSHIP_NAME"
fi
case $prefix in
    '~'|'~/'*) [ -n "${HOME:-}" ] || die "HOME is not set, so ~ means nothing: give the full path."
               prefix="$HOME${prefix#'~'}" ;;
    '~'*) die "--prefix $prefix: only ~ (your home) is expanded here; give the full path." ;;
esac
while :; do case $prefix in ./*) prefix=${prefix#./} ;; *) break ;; esac; done
case $prefix in /*) ;; .) prefix=$(pwd) ;; *) prefix="$(pwd)/$prefix" ;; esac
while :; do case $prefix in */) prefix=${prefix%/} ;; *) break ;; esac; done
[ -n "$prefix" ] || die "the prefix cannot be /; choose a directory such as ~/envs/$GAPSHIP_NAME"
case $prefix in
    *:*) die "$prefix holds ':', which PATH cannot name (it separates entries); choose another --prefix." ;;
    *"$nl"*) die "the prefix holds a line break; choose another --prefix." ;;
esac
parent=$(dirname "$prefix")
base=$(basename "$prefix")

# A gapship environment has gapship/manifest.json; only it or an empty directory is replaced.
is_env() { [ -d "$1" ] && [ ! -L "$1" ] && [ -f "$1/gapship/manifest.json" ]; }
is_empty() {
    [ -d "$1" ] && [ ! -L "$1" ] || return 1
    _entries=$(ls -A "$1" 2>/dev/null) || return 1
    [ -z "$_entries" ]
}
replaceable() { is_env "$1" || is_empty "$1"; }
# the first few names in a directory, for a message
first_entries() {
    _n=$(ls -A "$1" 2>/dev/null | wc -l | tr -d ' ')
    _some=$(ls -A "$1" 2>/dev/null | head -n 3 | sed 's/$/,/' | tr '\n' ' ')
    _some=${_some%, }
    [ "$_n" -le 3 ] && printf '%s' "$_some" || printf '%s, ... (%s entries)' "$_some" "$_n"
}
# Why the prefix may not be written, or nothing when it may.
prefix_problem() {
    if [ -L "$prefix" ]; then
        echo "$prefix is a symbolic link; give the directory it points to, or remove the link."
    elif [ ! -e "$prefix" ]; then
        return 0
    elif [ ! -d "$prefix" ]; then
        echo "$prefix is a file, not a gapship environment; it is left as it is. Choose another --prefix."
    elif replaceable "$prefix"; then
        [ "$force" = 1 ] || echo "$prefix already exists. Use --force to replace it (the old one is kept until the new one is complete), or choose another --prefix."
    else
        echo "$prefix holds files that are not a gapship environment ($(first_entries "$prefix")); they are left as they are. --force replaces only an empty directory or a gapship environment: choose another --prefix."
    fi
}
check_prefix() {
    _problem=$(prefix_problem)
    [ -z "$_problem" ] || die "$_problem"
}
[ "$mode" = check ] || check_prefix
[ -z "$GAPSHIP_PARTS" ] || check_parts

damaged() {
    if [ -n "$GAPSHIP_PARTS" ]; then
        die "the bundle is damaged: $1; a part changed after it was verified. Nothing was installed. Run sh $(basename "$self") --check to name it."
    fi
    die "the bundle is damaged: $1. Nothing was installed. Send $(basename "$self") again."
}
# ---- --check verifies the checksum alone; an install checks it while it extracts (below)
if [ "$mode" = check ] && [ -z "$GAPSHIP_PARTS" ]; then
    say "verifying $(basename "$self") ($GAPSHIP_PAYLOAD_BYTES bytes) ..."
    sum=$(payload | sha256)
    [ "$sum" = "$GAPSHIP_PAYLOAD_SHA256" ] || damaged "its checksum is $sum, expected $GAPSHIP_PAYLOAD_SHA256"
fi

# ---- who built it: the signature, against --trust KEY or the keys in ~/.config/gapship/trusted.
# Checking it is a separate read of the bundle, made only when there is a key to check it
# with, before anything is written (the signature covers the header and the payload).
trusted_dir="${XDG_CONFIG_HOME:-${HOME:-/nonexistent}/.config}/gapship/trusted"
keys=
if [ -n "$trust" ]; then
    [ -r "$trust" ] || die "cannot read the key $trust given to --trust."
    keys=$trust
else
    for k in "$trusted_dir"/*.pub "$trusted_dir"/*.pem; do
        [ ! -r "$k" ] || keys="$keys${keys:+$nl}$k"
    done
fi
if [ "$GAPSHIP_SIGNATURE_BYTES" = 0 ]; then
    [ -z "$trust" ] || die "$(basename "$self") is not signed, and --trust asks for a signature. Nothing was installed; ask its builder for a bundle made with gapship pack --sign."
elif [ -z "$keys" ]; then
    say "note: $(basename "$self") is signed, but there is no key to check who signed it (give --trust KEY, or put KEY in $trusted_dir)."
else
    command -v openssl >/dev/null 2>&1 || die "openssl is not installed here, so the signature cannot be checked. Nothing was installed."
    sigdir=$(mktemp -d "${TMPDIR:-/tmp}/gapship-signature.XXXXXX" 2>/dev/null) \
        || { sigdir="${HOME:-.}/.gapship-signature.$$"; mkdir "$sigdir" || die "cannot create $sigdir for the signature."; }
    tail -c "$GAPSHIP_SIGNATURE_BYTES" "$self" > "$sigdir/signature" || { rm -rf "$sigdir"; die "cannot write $sigdir/signature."; }
    signer=
    # one key a line: split on line breaks only, no globbing
    set -f
    saved_ifs=$IFS
    IFS=$nl
    for k in $keys; do
        if head -c "$signed_bytes" "$self" | openssl dgst -sha256 -verify "$k" -signature "$sigdir/signature" >/dev/null 2>&1; then
            signer=$k
            break
        fi
    done
    IFS=$saved_ifs
    set +f
    rm -rf "$sigdir"
    # (a split bundle's parts were checked against its header already: the header is what failed)
    if [ -z "$signer" ] && [ "$mode" = install ] && [ -z "$GAPSHIP_PARTS" ] \
        && [ "$(payload | sha256)" != "$GAPSHIP_PAYLOAD_SHA256" ]; then
        damaged "its payload does not have the checksum its header records ($GAPSHIP_PAYLOAD_SHA256)"
    fi
    [ -n "$signer" ] || die "the signature of $(basename "$self") does not verify with $(printf '%s' "$keys" | tr '\n' ' '): it was changed after signing, or someone else signed it. Nothing was installed."
    say "signature verified with $signer."
fi
if [ "$mode" = check ]; then
    if [ -n "$GAPSHIP_PARTS" ]; then say "$(basename "$self"): every part is complete, checksums ok."
    else say "$(basename "$self"): checksum ok."; fi
    say "sha256 of the whole file: $(sha256 < "$self")"
    exit 0
fi

# the topmost directory this install creates: removed again (when still empty) if it fails
made=
_d=$parent
while [ ! -e "$_d" ] && [ ! -L "$_d" ]; do made=$_d; _d=$(dirname "$_d"); done
mkdir -p "$parent" 2>/dev/null || die "cannot create $parent (permission denied or read-only); choose a --prefix under your home or scratch."
[ -w "$parent" ] || die "$parent is not writable; choose a --prefix under your home or scratch."

# ---- who we are, and whether a process that left a lock or debris still runs
this_host=$(uname -n 2>/dev/null || echo unknown)
# the start time of a process (clock ticks after boot), which tells a reused pid apart
start_of() {
    _stat=$(cat "/proc/$1/stat" 2>/dev/null) || { echo -; return 0; }
    set -- ${_stat##*") "}
    if [ $# -ge 20 ]; then shift 19; echo "$1"; else echo -; fi
}
# the pid namespace: a container on the same host numbers its processes apart
my_pidns=$(ls -l /proc/self/ns/pid 2>/dev/null | sed -n 's/.*pid:\[\([0-9]*\)\].*/\1/p')
my_record="$$ $(start_of $$) $this_host ${my_pidns:--}"
# 0 when the process of an owner record "PID START HOST [PIDNS]" may still run; 1 only when
# provably gone: same host, same pid namespace, and no such process (or another one now)
alive() {
    set -- $1
    [ $# -ge 3 ] || return 1
    [ "$3" = "$this_host" ] || return 0
    if [ $# -ge 4 ] && [ "$4" != - ] && [ -n "$my_pidns" ] && [ "$4" != "$my_pidns" ]; then
        return 0
    fi
    if [ -d /proc/self ]; then
        [ -d "/proc/$1" ] || return 1
        [ "$2" = - ] || [ "$(start_of "$1")" = "$2" ]
        return
    fi
    kill -0 "$1" 2>/dev/null || ps -p "$1" >/dev/null 2>&1
}
describe() {
    set -- $1
    if [ $# -ge 4 ] && [ "$4" != - ] && [ -n "$my_pidns" ] && [ "$4" != "$my_pidns" ]; then
        echo "pid ${1:-?} on ${3:-an unknown host}, in another container"
    else
        echo "pid ${1:-?} on ${3:-an unknown host}"
    fi
}

# ---- one install into a prefix at a time: a lock directory beside it
lock="$parent/.$base.gapship-lock"
locked=0
work=
moved_old=0
cleanup() {
    if [ "$moved_old" = 1 ] && [ ! -e "$prefix" ] && [ ! -L "$prefix" ]; then
        mv "$work/old" "$prefix" && moved_old=0
    fi
    if [ "$moved_old" = 0 ] && [ -n "$work" ]; then rm -rf "$work"; fi
    if [ "$locked" = 1 ]; then rm -rf "$lock"; locked=0; fi
    # the directories made for the prefix, when nothing was installed into them
    _d=$parent
    while [ -n "$made" ] && rmdir "$_d" 2>/dev/null && [ "$_d" != "$made" ]; do
        _d=$(dirname "$_d")
    done
}
trap 'cleanup; exit 130' INT TERM HUP
trap cleanup EXIT

take_lock() {
    _waited=0
    while :; do
        if mkdir "$lock" 2>/dev/null; then
            locked=1
            printf '%s\n' "$my_record" > "$lock/owner.tmp" && mv -f "$lock/owner.tmp" "$lock/owner" \
                || die "cannot write $lock/owner (disk full or not writable)."
            return 0
        fi
        [ -d "$lock" ] || die "cannot create the lock $lock (permission denied or disk full)."
        _holder=$(cat "$lock/owner" 2>/dev/null)
        if [ -z "$_holder" ]; then
            # a holder writes its record just after mkdir; give it a moment
            if [ "$_waited" -lt 3 ]; then _waited=$((_waited + 1)); sleep 1; continue; fi
            die "$lock has no owner record; if no install into $prefix is running, remove it (rm -r $(quote "$lock")) and run again."
        fi
        if alive "$_holder"; then
            die "another install into $prefix is running ($(describe "$_holder"), lock $lock). Wait until it ends; if it is not running, remove the lock (rm -r $(quote "$lock")) and run again."
        fi
        # Stale: move it aside under our own name, then make sure it was the one judged dead.
        _stale="$lock.stale.$$"
        rm -rf "$_stale"
        mv "$lock" "$_stale" 2>/dev/null || continue
        if [ "$(cat "$_stale/owner" 2>/dev/null)" != "$_holder" ]; then
            mv "$_stale" "$lock" 2>/dev/null
            die "another install into $prefix started at the same moment; run again when it has ended."
        fi
        rm -rf "$_stale"
        say "removed the lock $lock: the install that held it was killed ($(describe "$_holder") is not running)."
    done
}
take_lock

# ---- what a killed install of this prefix left behind: restore or remove what is provably dead
# Only files named .BASE.gapship-* beside this prefix are looked at; anything that is not a
# gapship environment is never deleted.
gone() { say "removed $1: $2"; rm -rf "$1"; }
# an environment an install had moved aside: back into place, or removed when it was replaced
hidden_old() {
    _old=$1 _who=$2
    if [ ! -e "$prefix" ] && [ ! -L "$prefix" ]; then
        mv "$_old" "$prefix" && say "restored $prefix from $_old, where an install that was killed ($_who) had moved it."
    elif replaceable "$_old"; then
        gone "$_old" "the previous environment, already replaced by an install that was killed ($_who)."
    else
        say "left $_old as it is: an install that was killed ($_who) had moved it there; it is not a gapship environment."
        return 1
    fi
}
for d in "$parent/.$base.gapship-"*; do
    [ -e "$d" ] || [ -L "$d" ] || continue
    rest=${d#"$parent/.$base.gapship-"}
    case $rest in
        lock) continue ;;
        lock.stale.*) gone "$d" "a lock left by an install that was killed." ;;
        install.*)
            who=$(cat "$d/owner" 2>/dev/null)
            if [ -n "$who" ] && alive "$who"; then
                say "left $d as it is: its install ($(describe "$who")) is still running."
                continue
            fi
            who="$(describe "$who") is not running"
            if [ -e "$d/old" ] || [ -L "$d/old" ]; then
                hidden_old "$d/old" "$who" || { rm -rf "$d/tree"; continue; }
            fi
            gone "$d" "left by an install that was killed ($who)." ;;
        new.*|old.*|status.*)
            # an older installer's debris: NAME.gapship-KIND.PID
            pid=${rest#*.}
            pid=${pid%%.*}
            case $pid in ''|*[!0-9]*) continue ;; esac
            if [ "$pid" != "$$" ] && alive "$pid - $this_host"; then
                say "left $d as it is: pid $pid is still running."
                continue
            fi
            case $rest in
                old.*) hidden_old "$d" "pid $pid is not running" ;;
                *) gone "$d" "left by an install that was killed (pid $pid is not running)." ;;
            esac ;;
    esac
done
# restored or not, the prefix must be fit to write now
check_prefix

# ---- free space, in blocks and inodes, after the cleanup above
avail=$(df -Pk "$parent" 2>/dev/null | tail -n 1 | (read -r _ _ _ a _ && echo "$a"))
need=$((GAPSHIP_INSTALLED_KB + GAPSHIP_INSTALLED_KB / 20 + 1024))
case $avail in
    ''|*[!0-9]*) say "note: free space on $parent is unknown; going on." ;;
    *) [ "$avail" -ge "$need" ] || die "not enough space on $parent: $avail KB free, $need KB needed ($GAPSHIP_FILE_COUNT files). Free some space or choose another --prefix." ;;
esac
# filesystems without an inode limit report 0 inodes in all
ifree=$(df -Pi "$parent" 2>/dev/null | tail -n 1 | (read -r _ total _ f _ && [ "$total" != 0 ] && echo "$f"))
ineed=$((GAPSHIP_FILE_COUNT + GAPSHIP_FILE_COUNT / 20 + 64))
case $ifree in
    ''|*[!0-9]*) ;;
    *) [ "$ifree" -ge "$ineed" ] || die "not enough inodes on $parent: room for $ifree more files, $ineed needed. Delete some files or choose another --prefix." ;;
esac

# ---- extract beside the prefix: everything of this install lives in one work directory
work=$(mktemp -d "$parent/.$base.gapship-install.XXXXXX" 2>/dev/null) || {
    work="$parent/.$base.gapship-install.$$"
    mkdir "$work" 2>/dev/null || { work=; die "cannot create a directory in $parent (disk full or not writable)."; }
}
printf '%s\n' "$my_record" > "$work/owner" && mkdir "$work/tree" \
    || die "cannot write in $work: not enough space on $parent (ENOSPC) or not writable."

# ---- one read of the payload: tee hands it to sha256 (through a fifo, in the background) and
# to the decompressor and tar, which extract into the hidden work directory. Every line the
# pipeline reports goes to stdout, tagged: nothing is written to the disk being filled.
fifo="$work/payload.fifo"
mkfifo "$fifo" 2>/dev/null || die "cannot create a fifo in $work: not enough space on $parent (ENOSPC) or not writable."
marker="@gapship-tar-exit@"
# On a terminal, tar -v names each file as it lands: counted for a progress line. Elsewhere
# tar is quiet, and only its error lines pass here. Prints "rc N", "err LINE", "full LINE":
# tar's exit status, its last error and its last "disk full" error.
if [ -t 2 ]; then verbose=v; else verbose=; fi
progress() {
    n=0 rc=1 err= full=
    step=$((GAPSHIP_FILE_COUNT / 100 + 1))
    while IFS= read -r line; do
        case $line in
            "$marker "*) rc=${line#"$marker "} ;;
            *"No space left"*|*"Disk quota"*|*"quota exceeded"*) full=$line ;;
            tar:*) err=$line ;;
            *) if [ -z "$verbose" ]; then err=$line; continue; fi
               n=$((n + 1))
               [ $((n % step)) != 0 ] || printf '\r  extracting: %d%% (%d/%d files)' \
                   $((n * 100 / GAPSHIP_FILE_COUNT)) "$n" "$GAPSHIP_FILE_COUNT" >&2 ;;
        esac
    done
    [ -z "$verbose" ] || printf '\r' >&2
    printf 'rc %s\nerr %s\nfull %s\n' "$rc" "$err" "$full"
}
say "installing $GAPSHIP_NAME into $prefix (extracting and verifying $GAPSHIP_PAYLOAD_BYTES bytes, $GAPSHIP_CODEC) ..."
# After tar, cat reads what is left, so that the whole payload is hashed even when tar stopped
# early (disk full): the sum then tells a damaged bundle from a full disk.
result=$( {
    sha256 < "$fifo" | sed 's/^/sum /' &
    payload | tee "$fifo" | { "$GAPSHIP_CODEC" -dc 2>/dev/null; echo "unpack $?" >&3; } \
        | (cd "$work/tree" && tar "-x${verbose}f" - 2>&1; echo "$marker $?"; cat > /dev/null) \
        | progress
    wait
} 3>&1 )
field() { printf '%s\n' "$result" | sed -n "s/^$1 //p" | tail -n 1; }
sum=$(field sum)
unpack=$(field unpack)
rc=$(field rc)
err=$(field err)
full=$(field full)
if [ "$sum" != "$GAPSHIP_PAYLOAD_SHA256" ]; then
    # a sum cut short by a decompressor that failed on an intact payload: read it again
    if [ "$rc" = 0 ] && [ "$unpack" = 0 ] || [ "$(payload | sha256)" != "$GAPSHIP_PAYLOAD_SHA256" ]; then
        rm -rf "$work/tree"
        damaged "its payload does not have the checksum its header records ($GAPSHIP_PAYLOAD_SHA256)"
    fi
    err="$GAPSHIP_CODEC -dc exit ${unpack:-unknown}"
fi
if [ "$unpack" != 0 ] || [ "$rc" != 0 ] || [ ! -f "$work/tree/gapship/manifest.json" ]; then
    rm -rf "$work/tree"
    [ -z "$full" ] || die "not enough space on $parent: the disk filled up while extracting (ENOSPC: ${full#tar: }). Nothing was installed; free some space or choose another --prefix."
    [ "$rc" != 0 ] || [ "$unpack" = 0 ] || err="$GAPSHIP_CODEC -dc exit ${unpack:-unknown}"
    die "extraction failed (${err:-tar exit ${rc:-unknown}}). Check free space and permissions under $parent; nothing was installed."
fi
rm -f "$fifo"
say "  extracting: done ($GAPSHIP_FILE_COUNT files, checksum ok)"
activation="$work/tree/gapship/libexec/write-activation.sh"
# --format squashfs: the image's own step writes the activation that mounts it
[ ! -f "$work/tree/gapship/libexec/image-install.sh" ] || activation="$work/tree/gapship/libexec/image-install.sh"
sh "$activation" "$work/tree" "$prefix" \
    || die "writing the activation files failed (see above); nothing was installed."

# A filesystem mounted noexec extracts fine but cannot run anything: find out now.
py="$work/tree/bin/python3"
if [ -e "$py" ] || [ -L "$py" ]; then
    (unset PYTHONHOME PYTHONPATH; "$py" -c pass) </dev/null >/dev/null 2>&1
    prc=$?
    case $prc in
        0) ;;
        126) die "$parent is probably on a filesystem mounted noexec: the new bin/python3 cannot be executed there. Nothing was installed; choose a --prefix on another filesystem (your home or scratch)." ;;
        *) say "note: bin/python3 -c pass exited $prc here; after activating, gapship-doctor says why." ;;
    esac
fi

# ---- rename into place, under the lock; the prefix is checked again just before
check_prefix
if [ -e "$prefix" ]; then
    mv "$prefix" "$work/old" || die "cannot move the old $prefix aside."
    moved_old=1
fi
[ ! -e "$prefix" ] || die "$prefix appeared while it was being replaced; nothing was changed."
mv "$work/tree" "$prefix" || die "cannot rename $work/tree to $prefix."
moved_old=0
if [ -e "$work/old" ] && ! replaceable "$work/old"; then
    # it changed after the last check: never delete what is not an environment
    kept="$parent/$base.kept-by-gapship.$$"
    mv "$work/old" "$kept" && say "note: $prefix changed while it was being replaced; what was there is kept in $kept."
fi
cleanup
trap - INT TERM HUP EXIT

say ""
say "Installed $GAPSHIP_NAME $GAPSHIP_VERSION (Python $GAPSHIP_PYTHON) into $prefix."
say "  activate:   . $(quote "$prefix/activate")"
[ ! -f "$prefix/activate.csh" ] || say "  csh, tcsh:  source $(quote "$prefix/activate.csh")"
[ ! -f "$prefix/activate.fish" ] || say "  fish:       source $(fish_quote "$prefix/activate.fish")"
if [ -d "$prefix/modulefiles" ]; then
    say "  or:         module use $(quote "$prefix/modulefiles"); module load $GAPSHIP_NAME"
fi
say "  check it:   $(quote "$prefix/bin/gapship-doctor")"
say "  moved it?   run NEW_PLACE/bin/gapship-rehome"
if [ "$profile" = 1 ]; then
    sh "$prefix/bin/gapship-profile" on >&2 \
        || say "note: the login files were not changed; run $(quote "$prefix/bin/gapship-profile") on"
else
    say "  at login:   $(quote "$prefix/bin/gapship-profile") on"
fi
exit 0
}
