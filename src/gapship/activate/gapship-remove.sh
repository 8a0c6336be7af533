#!/bin/sh
# gapship-remove [--yes]: delete this environment after saying what goes with it: the
# environment itself (its modulefiles are inside it) and its blocks in your login files
# (gapship-profile off). Asks first on a terminal; elsewhere it needs --yes. POSIX sh.
{
set -u
here=$(cd "$(dirname -- "$0")/.." && pwd -P)
me=gapship-remove
die() { printf '%s: %s\n' "$me" "$*" >&2; exit 2; }
[ -f "$here/gapship/manifest.json" ] || die "$here does not look like a gapship environment (gapship/manifest.json is missing); nothing was deleted."
yes=0
case ${1-} in
    -y|--yes) yes=1 ;;
    '') ;;
    *) die "unknown option '$1'. Use: gapship-remove [--yes]" ;;
esac
name=$(cat "$here/gapship/name" 2>/dev/null || basename "$here")
parent=$(dirname "$here")
base=$(basename "$here")
[ ! -d "$parent/.$base.gapship-lock" ] || die "an install into $here is running (lock $parent/.$base.gapship-lock); nothing was deleted. Wait until it ends."

kb=$(du -sk "$here" 2>/dev/null | sed 's/[^0-9].*//')
profiles=$(sh "$here/bin/gapship-profile" status) || die "cannot read your login files; nothing was deleted."
echo "$me will delete:"
echo "  $here   (the environment $name, ${kb:-?} KB)"
[ ! -d "$here/modulefiles" ] || echo "  $here/modulefiles   (its modulefiles, with it)"
if [ -n "$profiles" ]; then
    printf '%s\n' "$profiles" | while IFS= read -r f; do echo "  the lines that activate $name at login, in $f"; done
fi
if [ "$yes" != 1 ]; then
    [ -t 0 ] || die "nothing was deleted: run it again with --yes to delete the above."
    printf 'Delete these? [y/N] '
    read -r answer || answer=
    case $answer in
        y|Y|yes|YES) ;;
        *) echo "Nothing was deleted."; exit 1 ;;
    esac
fi

[ -z "$profiles" ] || sh "$here/bin/gapship-profile" off || die "cannot change your login files; nothing else was deleted."
# out of the way first, so that an interrupted delete never leaves a half environment in place
gone="$parent/.$base.gapship-removing.$$"
mv "$here" "$gone" || die "cannot move $here aside (permission denied?); it was not deleted."
rm -rf "$gone" || die "could not delete all of $gone; remove it with: rm -rf '$gone'"
echo "$me: deleted $here."
exit 0
}
