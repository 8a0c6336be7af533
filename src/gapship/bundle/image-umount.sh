#!/bin/sh
# gapship-umount: unmount this environment's image from its mount point (on this node).
# Shells that still use it lose it: deactivate them first.
here=$(cd "$(dirname -- "$0")/.." && pwd -P)
mnt=$(sed -n 's/^mount=//p' "$here/gapship/image.conf" 2>/dev/null)
[ -n "$mnt" ] || { echo "gapship-umount: $here/gapship/image.conf names no mount point." >&2; exit 2; }
if ! grep -q " $mnt fuse" /proc/mounts 2>/dev/null; then
    echo "gapship-umount: $mnt is not mounted; nothing to do."
    exit 0
fi
for u in fusermount3 fusermount; do
    if command -v "$u" >/dev/null 2>&1; then
        if err=$("$u" -u "$mnt" 2>&1); then
            rmdir "$mnt" 2>/dev/null
            echo "gapship-umount: unmounted $mnt"
            exit 0
        fi
        case $err in
            *busy*) echo "gapship-umount: $mnt is busy: a shell or job still uses it (deactivate it, or fuser -m $mnt)." >&2; exit 1 ;;
        esac
    fi
done
umount "$mnt" 2>/dev/null && { rmdir "$mnt" 2>/dev/null; echo "gapship-umount: unmounted $mnt"; exit 0; }
echo "gapship-umount: cannot unmount $mnt: ${err:-no fusermount3 or fusermount on PATH}" >&2
exit 1
