#!/bin/sh
# gapship-mount: mount this environment's image (PREFIX/image.sqsh) with squashfuse at the
# mount point chosen at install (PREFIX/gapship/image.conf), unless it is mounted there.
# Quiet when it is mounted; exit 1 with what to do instead when it cannot be (no FUSE).
here=$(cd "$(dirname -- "$0")/.." && pwd -P)
image=$here/image.sqsh
mnt=$(sed -n 's/^mount=//p' "$here/gapship/image.conf" 2>/dev/null)
[ -n "$mnt" ] || { echo "gapship-mount: $here/gapship/image.conf names no mount point: install the bundle again (sh NAME.run --prefix $here --force)." >&2; exit 2; }
[ -f "$mnt/gapship/manifest.json" ] && exit 0
[ -f "$image" ] || { echo "gapship-mount: $image is missing: install the bundle again (sh NAME.run --prefix $here --force)." >&2; exit 2; }

no_fuse() {
    echo "gapship-mount: cannot mount $image here: $1." >&2
    echo "  with apptainer (or singularity): apptainer exec --bind $image:$mnt:image-src=/ CONTAINER.sif sh -c '. $here/activate && python ...'" >&2
    echo "  or ask the administrators for FUSE (squashfuse, /dev/fuse), or pack the environment as a directory (without --format squashfs) and install that" >&2
    exit 1
}
fuse=
for t in squashfuse_ll squashfuse; do
    command -v "$t" >/dev/null 2>&1 && { fuse=$t; break; }
done
[ -n "$fuse" ] || no_fuse "squashfuse is not installed (neither squashfuse_ll nor squashfuse is on PATH)"
[ -e /dev/fuse ] || no_fuse "this node has no /dev/fuse (FUSE is not allowed)"
# a mount whose squashfuse died answers "Transport endpoint is not connected": let it go first
if ! ls "$mnt" >/dev/null 2>&1 && [ -e "$mnt" ] || grep -q " $mnt fuse" /proc/mounts 2>/dev/null; then
    for u in fusermount3 fusermount; do
        command -v "$u" >/dev/null 2>&1 && "$u" -u -z "$mnt" 2>/dev/null && break
    done
fi
mkdir -p "$mnt" || no_fuse "cannot create the mount point $mnt"
if ! err=$("$fuse" "$image" "$mnt" 2>&1); then
    rmdir "$mnt" 2>/dev/null
    no_fuse "$fuse failed: $(printf '%s' "$err" | tail -n 1)"
fi
[ -f "$mnt/gapship/manifest.json" ] || { echo "gapship-mount: $image mounted at $mnt holds no gapship environment: install the bundle again." >&2; exit 2; }
