#!/bin/sh
# write-activation.sh TREE PREFIX
# Write the files of an install that name its place (TREE/activate, TREE/gapship/prefix) for an
# environment whose final location is PREFIX. Used by the installer (TREE is the staging
# directory beside PREFIX) and by bin/gapship-rehome (TREE = PREFIX). POSIX sh.
set -eu
tree=$1
prefix=$2
name=$(cat "$tree/gapship/name")

# single-quote for sh, then escape for a sed replacement
sh_quote() { printf '%s' "$1" | sed "s/'/'\\\\''/g"; }
sed_escape() { printf '%s' "$1" | sed 's/[\\&|]/\\&/g'; }

p_sh=$(sed_escape "$(sh_quote "$prefix")")
n_sh=$(sed_escape "$(sh_quote "$name")")
p_disp=$(sed_escape "$prefix" | tr '\n' ' ')

tmp="$tree/activate.gapship-tmp"
sed -e "s|__GAPSHIP_PREFIX__|$p_sh|g" -e "s|__GAPSHIP_NAME__|$n_sh|g" \
    -e "s|__GAPSHIP_PREFIX_DISPLAY__|$p_disp|g" \
    "$tree/gapship/activation/activate.sh.in" > "$tmp"
mv -f "$tmp" "$tree/activate"
printf '%s\n' "$prefix" > "$tree/gapship/prefix.tmp"
mv -f "$tree/gapship/prefix.tmp" "$tree/gapship/prefix"
