#!/bin/sh
{
# gapship delta: updates an installed environment from one version to the next
# (sh NAME-OLD-to-NEW.run --help says how to use it).
#
# POSIX sh. After this header come the apply program (stdlib Python 3.6+, run with the
# environment's own bin/python3, read from stdin: nothing is written for it) and a gzip tar of
# what changed. The program checks that the environment is exactly the old version, builds the
# new one beside it and renames it into place only when complete and verified.

[ -z "${ZSH_VERSION-}" ] || emulate sh
GAPSHIP_NAME=@NAME@
GAPSHIP_OLD_VERSION=@OLD_VERSION@
GAPSHIP_NEW_VERSION=@NEW_VERSION@
GAPSHIP_HEADER_BYTES=@HEADER_BYTES@
GAPSHIP_APPLY_BYTES=@APPLY_BYTES@
GAPSHIP_APPLY_SHA256=@APPLY_SHA256@
GAPSHIP_PAYLOAD_BYTES=@PAYLOAD_BYTES@
GAPSHIP_PAYLOAD_SHA256=@PAYLOAD_SHA256@
GAPSHIP_CHANGED=@CHANGED@
GAPSHIP_REMOVED=@REMOVED@

set -u
umask 022
unset LD_PRELOAD LD_LIBRARY_PATH
self=$0
me="gapship delta ($GAPSHIP_NAME $GAPSHIP_OLD_VERSION to $GAPSHIP_NEW_VERSION)"
die() { printf '%s: %s\n' "$me" "$*" >&2; exit 1; }

size=$(wc -c < "$self" 2>/dev/null | tr -d ' ')
expected=$((GAPSHIP_HEADER_BYTES + GAPSHIP_APPLY_BYTES + GAPSHIP_PAYLOAD_BYTES))
[ -n "$size" ] || die "cannot read $self; run it as: sh NAME.run"
[ "$size" -eq "$expected" ] || die "the delta is damaged: $size bytes, expected $expected (truncated or appended to). Send $(basename "$self") again."

usage() {
    cat <<EOF
This updates the gapship environment $GAPSHIP_NAME from $GAPSHIP_OLD_VERSION to $GAPSHIP_NEW_VERSION
($GAPSHIP_CHANGED files added or changed, $GAPSHIP_REMOVED removed).

Usage: sh $(basename "$self") [--prefix DIR] | --info | --help

  --prefix DIR   The installed $GAPSHIP_NAME $GAPSHIP_OLD_VERSION to update; the default is
                 ~/envs/$GAPSHIP_NAME. It must be exactly that version, as installed (or moved
                 and then rehomed with DIR/bin/gapship-rehome); anything else is refused.

The new version is built beside DIR (hard links of the unchanged files where the filesystem
allows, copies otherwise), verified, and renamed into place; DIR stays as it was until then.
EOF
}

prefix=
mode=apply
while [ $# -gt 0 ]; do
    case $1 in
        --prefix) [ $# -ge 2 ] || die "--prefix needs a directory, as in: --prefix ~/envs/$GAPSHIP_NAME"
                  prefix=$2; shift ;;
        --prefix=*) prefix=${1#--prefix=} ;;
        --info) mode=info ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown option '$1'; see: sh $(basename "$self") --help" ;;
    esac
    shift
done
if [ "$mode" = info ]; then
    printf 'name: %s\nfrom: %s\nto: %s\nchanged files: %s\nremoved: %s\npayload: %s bytes (gzip), sha256 %s\n' \
        "$GAPSHIP_NAME" "$GAPSHIP_OLD_VERSION" "$GAPSHIP_NEW_VERSION" "$GAPSHIP_CHANGED" \
        "$GAPSHIP_REMOVED" "$GAPSHIP_PAYLOAD_BYTES" "$GAPSHIP_PAYLOAD_SHA256"
    exit 0
fi

[ -n "$prefix" ] || { [ -n "${HOME:-}" ] || die "HOME is not set: give --prefix DIR"; prefix="$HOME/envs/$GAPSHIP_NAME"; }
case $prefix in
    '~'|'~/'*) [ -n "${HOME:-}" ] || die "HOME is not set, so ~ means nothing: give the full path."
               prefix="$HOME${prefix#'~'}" ;;
esac
case $prefix in /*) ;; *) prefix="$(pwd)/$prefix" ;; esac
while :; do case $prefix in */) prefix=${prefix%/} ;; *) break ;; esac; done
case $self in /*) ;; *) self="$(pwd)/$self" ;; esac

[ -f "$prefix/gapship/manifest.json" ] && [ ! -L "$prefix" ] \
    || die "$prefix is not a gapship environment; a delta updates an installed $GAPSHIP_NAME $GAPSHIP_OLD_VERSION (give --prefix DIR)."
py="$prefix/bin/python3"
[ -x "$py" ] || die "$py is missing, so the delta cannot run here; install the full bundle of $GAPSHIP_NAME $GAPSHIP_NEW_VERSION instead."

# sha256: OpenSSL's first, where it hashes right (it uses the CPU's SHA instructions: 8x
# coreutils' sha256sum on a 300 MB payload), then sha256sum, shasum
empty_sha256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
if command -v openssl >/dev/null 2>&1 \
        && [ "$(printf '' | openssl dgst -sha256 2>/dev/null | sed 's/.*= *//')" = "$empty_sha256" ]; then
    sha256() { openssl dgst -sha256 | sed 's/.*= *//'; }
elif command -v sha256sum >/dev/null 2>&1; then sha256() { sha256sum | sed 's/ .*//'; }
elif command -v shasum >/dev/null 2>&1; then sha256() { shasum -a 256 | sed 's/ .*//'; }
else die "no openssl, sha256sum or shasum here: the delta cannot be verified."; fi
apply_program() { tail -c +"$((GAPSHIP_HEADER_BYTES + 1))" "$self" | head -c "$GAPSHIP_APPLY_BYTES"; }
[ "$(apply_program | sha256)" = "$GAPSHIP_APPLY_SHA256" ] \
    || die "the delta is damaged: its program does not have the checksum its header records. Nothing was changed. Send $(basename "$self") again."

apply_program | (unset PYTHONHOME PYTHONPATH; "$py" -I - --bundle "$self" \
    --offset "$((GAPSHIP_HEADER_BYTES + GAPSHIP_APPLY_BYTES))" \
    --payload-bytes "$GAPSHIP_PAYLOAD_BYTES" --sha256 "$GAPSHIP_PAYLOAD_SHA256" \
    --prefix "$prefix" --me "$me")
exit $?
}
