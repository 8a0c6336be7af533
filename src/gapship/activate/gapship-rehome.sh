#!/bin/sh
# gapship-rehome: after this environment was moved (mv, rsync, copied to another node),
# rewrite the few files that name its place. Everything else is prefix-independent.
set -eu
here=$(cd "$(dirname -- "$0")/.." && pwd -P)
if [ ! -f "$here/gapship/activation/activate.sh.in" ]; then
    echo "gapship-rehome: $here does not look like a gapship environment (gapship/ is missing)." >&2
    exit 2
fi
old=$(cat "$here/gapship/prefix" 2>/dev/null || echo "?")
sh "$here/gapship/libexec/write-activation.sh" "$here" "$here"
if [ "$old" = "$here" ]; then
    echo "gapship-rehome: $here was already at home; activation files rewritten."
else
    echo "gapship-rehome: moved from $old to $here; activation files rewritten."
fi
echo "Activate with:  . $here/activate"
