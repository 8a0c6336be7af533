#!/bin/sh
# gapship --format squashfs: the installer's last step for an image bundle, run instead of
# write-activation.sh on the verified, extracted tree (PREFIX/image.sqsh and small files), before
# it is renamed into place:  sh image-install.sh TREE PREFIX
# The environment lives inside the image, mounted at a per-user mount point on each node;
# activation is written for that mount point, and PREFIX/activate mounts the image first.
set -eu
tree=$1
prefix=$2
name=$(cat "$tree/gapship/name")
key=$(printf '%s' "$prefix" | cksum | cut -d' ' -f1)
mnt=${GAPSHIP_MOUNT:-/tmp/gapship-$(id -u)/$name-$key}
case $mnt in
    /*) ;;
    *) echo "gapship: GAPSHIP_MOUNT must be an absolute path: $mnt" >&2; exit 2 ;;
esac
case $mnt in
    *[\\\"\$\`\'\ :]*) echo "gapship: the mount point $mnt holds a character activation cannot name; set GAPSHIP_MOUNT=/tmp/DIR" >&2; exit 2 ;;
esac
case $prefix in
    *[\\\"\$\`\|\&]*) echo "gapship: an image environment's prefix cannot hold any of \\ \" \$ \` | &: $prefix" >&2; exit 2 ;;
esac
printf 'mount=%s\n' "$mnt" > "$tree/gapship/image.conf"
# the environment's own activation, for the place where its tree is once mounted
sh "$tree/gapship/libexec/write-activation.sh" "$tree" "$mnt"
# csh, fish and modules would not mount the image first: sh activation only
rm -f "$tree/activate.csh" "$tree/activate.fish"
rm -rf "$tree/modulefiles"
sed -e "s|__GAPSHIP_PREFIX__|$prefix|g" -e "s|__GAPSHIP_MOUNT__|$mnt|g" \
    "$tree/gapship/activation/image-activate.in" > "$tree/activate.gapship-tmp"
mv -f "$tree/activate.gapship-tmp" "$tree/activate"
