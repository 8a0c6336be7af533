#!/bin/sh
# gapship-mount: mount this environment's image (PREFIX/image.sqsh) with squashfuse at the
# mount point chosen at install (PREFIX/gapship/image.conf), unless it is mounted there.
# Quiet when it is mounted; exit 1 with what to do instead when it cannot be (no FUSE).
here=$(cd "$(dirname -- "$0")/.." && pwd -P)
image=$here/image.sqsh
mnt=$(sed -n 's/^mount=//p' "$here/gapship/image.conf" 2>/dev/null)
[ -n "$mnt" ] || { echo "gapship-mount: $here/gapship/image.conf names no mount point: install the bundle again (sh NAME.run --prefix $here --force)." >&2; exit 2; }
# mounted and served: a dead squashfuse's mount may still answer stat from the kernel's cache,
# but not a directory listing ("Transport endpoint is not connected")
mounted() { [ -f "$mnt/gapship/manifest.json" ] && ls "$mnt" >/dev/null 2>&1; }
mounted && exit 0
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
mkdir -p "$(dirname -- "$mnt")" || no_fuse "cannot create the directory of the mount point $mnt"
# the ranks of a job on one node activate at once: one mounts, the others wait for it
lock=$mnt.gapship-lock
i=0
while ! mkdir "$lock" 2>/dev/null; do
    mounted && exit 0
    i=$((i + 1))
    [ $i -le 30 ] || { echo "gapship-mount: $lock has been held for 30 s; going on without it (remove it if no mount is running)." >&2; break; }
    sleep 1
done
trap 'rmdir "$lock" 2>/dev/null' EXIT
trap 'exit 130' INT TERM
mounted && exit 0
# a mount whose squashfuse died answers "Transport endpoint is not connected": let it go first
if grep -q " $mnt fuse" /proc/mounts 2>/dev/null; then
    for u in fusermount3 fusermount; do
        command -v "$u" >/dev/null 2>&1 && "$u" -u -z "$mnt" 2>/dev/null && break
    done
fi
[ -d "$mnt" ] || mkdir "$mnt" || no_fuse "cannot create the mount point $mnt"
if ! err=$("$fuse" "$image" "$mnt" 2>&1); then
    rmdir "$mnt" 2>/dev/null
    no_fuse "$fuse failed: $(printf '%s' "$err" | tail -n 1)"
fi
[ -f "$mnt/gapship/manifest.json" ] || { echo "gapship-mount: $image mounted at $mnt holds no gapship environment: install the bundle again." >&2; exit 2; }
