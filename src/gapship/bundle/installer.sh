#!/bin/sh
# gapship self-extracting environment installer.
#
#   sh NAME.run [--prefix DIR] [--force]      install (default prefix: ~/envs/NAME)
#   sh NAME.run --check                       verify the bundle, install nothing
#   sh NAME.run --info                        what this bundle holds
#
# POSIX sh (dash, bash, ksh, busybox ash); needs tail, gzip, tar, sha256sum and df.
# The payload is verified before anything is written, streamed (memory does not grow with the
# bundle), extracted beside the prefix and renamed into place only when complete.
# zsh runs this as POSIX sh too (no NOMATCH errors, word splitting as sh)
[ -n "${ZSH_VERSION-}" ] && emulate sh
GAPSHIP_NAME=@NAME@
GAPSHIP_VERSION=@VERSION@
GAPSHIP_PYTHON=@PYTHON@
GAPSHIP_HEADER_BYTES=@HEADER_BYTES@
GAPSHIP_PAYLOAD_BYTES=@PAYLOAD_BYTES@
GAPSHIP_PAYLOAD_SHA256=@PAYLOAD_SHA256@
GAPSHIP_INSTALLED_KB=@INSTALLED_KB@
GAPSHIP_FILE_COUNT=@FILE_COUNT@

set -u
umask 022
unset LD_PRELOAD LD_LIBRARY_PATH
self=$0
me="gapship installer ($GAPSHIP_NAME)"

die() { printf '%s: %s\n' "$me" "$*" >&2; exit 1; }
say() { printf '%s\n' "$*" >&2; }

prefix=
force=0
mode=install
while [ $# -gt 0 ]; do
    case $1 in
        --prefix) [ $# -ge 2 ] || die "--prefix needs a directory"; prefix=$2; shift ;;
        --prefix=*) prefix=${1#--prefix=} ;;
        -f|--force) force=1 ;;
        --check) mode=check ;;
        --info) mode=info ;;
        -h|--help) sed -n '2,9p' "$self" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option '$1' (see: sh $self --help)" ;;
    esac
    shift
done

if [ "$mode" = info ]; then
    printf 'name: %s\nversion: %s\npython: %s\npayload: %s bytes, sha256 %s\ninstalled size: %s KB in %s files\n' \
        "$GAPSHIP_NAME" "$GAPSHIP_VERSION" "$GAPSHIP_PYTHON" "$GAPSHIP_PAYLOAD_BYTES" \
        "$GAPSHIP_PAYLOAD_SHA256" "$GAPSHIP_INSTALLED_KB" "$GAPSHIP_FILE_COUNT"
    exit 0
fi

for tool in tail gzip tar df mkdir mv rm sed cat wc; do
    command -v "$tool" >/dev/null 2>&1 || die "'$tool' is not installed on this machine; it is needed to install."
done
if command -v sha256sum >/dev/null 2>&1; then sha256() { sha256sum | sed 's/ .*//'; }
elif command -v shasum >/dev/null 2>&1; then sha256() { shasum -a 256 | sed 's/ .*//'; }
elif command -v openssl >/dev/null 2>&1; then sha256() { openssl dgst -sha256 | sed 's/.*= *//'; }
else die "no sha256sum, shasum or openssl here: the bundle cannot be verified."; fi

payload() { tail -c +"$((GAPSHIP_HEADER_BYTES + 1))" "$self"; }

# ---- verify: size, then checksum. Nothing is written before both pass.
[ -r "$self" ] || die "cannot read $self; run it as: sh NAME.run"
size=$(wc -c < "$self" | tr -d ' ')
expected=$((GAPSHIP_HEADER_BYTES + GAPSHIP_PAYLOAD_BYTES))
if [ "$size" -ne "$expected" ]; then
    die "the bundle is damaged: $size bytes, expected $expected (truncated or appended to). Send $(basename "$self") again."
fi
say "verifying $(basename "$self") ($GAPSHIP_PAYLOAD_BYTES bytes) ..."
sum=$(payload | sha256)
if [ "$sum" != "$GAPSHIP_PAYLOAD_SHA256" ]; then
    die "the bundle is damaged: its checksum is $sum, expected $GAPSHIP_PAYLOAD_SHA256. Nothing was installed. Send $(basename "$self") again."
fi
if [ "$mode" = check ]; then
    say "$(basename "$self"): checksum ok."
    exit 0
fi

# ---- where
[ -n "$prefix" ] || { [ -n "${HOME:-}" ] || die "HOME is not set: give --prefix DIR"; prefix="$HOME/envs/$GAPSHIP_NAME"; }
case $prefix in /*) ;; *) prefix="$(pwd)/$prefix" ;; esac
while :; do case $prefix in */) prefix=${prefix%/} ;; *) break ;; esac; done
[ -n "$prefix" ] || die "the prefix cannot be /"
parent=$(dirname "$prefix")
base=$(basename "$prefix")
if [ -e "$prefix" ] && [ "$force" != 1 ]; then
    die "$prefix already exists. Use --force to replace it (the old one is kept until the new one is complete), or choose another --prefix."
fi
mkdir -p "$parent" 2>/dev/null || die "cannot create $parent (permission denied or read-only)."
[ -w "$parent" ] || die "$parent is not writable; choose a --prefix under your home or scratch."

avail=$(df -Pk "$parent" | tail -n 1 | (read -r _ _ _ a _ && echo "$a"))
need=$((GAPSHIP_INSTALLED_KB + GAPSHIP_INSTALLED_KB / 20 + 1024))
case $avail in
    ''|*[!0-9]*) say "note: free space on $parent is unknown; going on." ;;
    *) [ "$avail" -ge "$need" ] || die "not enough space on $parent: $avail KB free, $need KB needed. Free some space or choose another --prefix." ;;
esac

# ---- extract beside the prefix, then rename into place
new="$parent/.$base.gapship-new.$$"
old="$parent/.$base.gapship-old.$$"
status="$parent/.$base.gapship-status.$$"
moved_old=0
cleanup() {
    rm -rf "$new" "$status" "$status.err"
    if [ "$moved_old" = 1 ] && [ ! -e "$prefix" ]; then mv "$old" "$prefix"; fi
}
trap 'cleanup; exit 130' INT TERM HUP
trap cleanup EXIT
mkdir "$new" || die "cannot create $new"

# tar -v names each file as it lands: count them for progress.
progress() {
    n=0
    if [ -t 2 ]; then step=$((GAPSHIP_FILE_COUNT / 100 + 1)); cr='\r'; else step=$((GAPSHIP_FILE_COUNT / 4 + 1)); cr='\n'; fi
    while read -r _line; do
        n=$((n + 1))
        if [ $((n % step)) = 0 ]; then
            printf "$cr  extracting: %d%% (%d/%d files)" $((n * 100 / GAPSHIP_FILE_COUNT)) "$n" "$GAPSHIP_FILE_COUNT" >&2
        fi
    done
    printf "$cr  extracting: done (%d files)\n" "$GAPSHIP_FILE_COUNT" >&2
}
say "installing $GAPSHIP_NAME into $prefix ..."
payload | gzip -dc | (cd "$new" && tar -xvf - 2>"$status.err"; echo $? > "$status") | progress
rc=$(cat "$status" 2>/dev/null || echo 1)
if [ "$rc" != 0 ] || [ ! -f "$new/gapship/manifest.json" ]; then
    err=$(tail -n 2 "$status.err" 2>/dev/null)
    rm -f "$status.err"
    die "extraction failed (tar: ${err:-exit $rc}). Check free space and permissions under $parent; nothing was installed."
fi
rm -f "$status.err"
sh "$new/gapship/libexec/write-activation.sh" "$new" "$prefix" || die "writing the activation files failed."

if [ -e "$prefix" ]; then
    mv "$prefix" "$old" || die "cannot move the old $prefix aside."
    moved_old=1
fi
mv "$new" "$prefix" || die "cannot rename $new to $prefix."
if [ "$moved_old" = 1 ]; then
    moved_old=0
    rm -rf "$old"
fi
trap - INT TERM HUP EXIT
rm -f "$status"

say ""
say "Installed $GAPSHIP_NAME $GAPSHIP_VERSION (Python $GAPSHIP_PYTHON) into $prefix."
say "  activate:   . $prefix/activate"
if [ -d "$prefix/modulefiles" ]; then
    say "  or:         module use $prefix/modulefiles; module load $GAPSHIP_NAME"
fi
say "  check it:   $prefix/bin/gapship-doctor"
say "  moved it?   run NEW_PLACE/bin/gapship-rehome"
exit 0
