#!/bin/sh
# gapship-doctor for an image environment: mount the image, then run the doctor inside it.
here=$(cd "$(dirname -- "$0")/.." && pwd -P)
"$here/bin/gapship-mount" || exit 2
mnt=$(sed -n 's/^mount=//p' "$here/gapship/image.conf")
exec "$mnt/bin/gapship-doctor" "$@"
