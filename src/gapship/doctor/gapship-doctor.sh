#!/bin/sh
# gapship-doctor: prove this environment works on this node, or say why not.
# The interpreter is checked here in sh first, so that even a python3 that cannot start
# (GLIBC_x.y not found, missing libpython, wrong architecture) gets a clear cause.
here=$(cd "$(dirname -- "$0")/.." && pwd -P)
py="$here/bin/python3"
if [ ! -e "$py" ]; then
    echo "gapship-doctor: FAIL interpreter: $py is missing. Reinstall the bundle (sh NAME.run --prefix $here --force)." >&2
    exit 2
fi
if ! err=$("$py" -I -c 'import sys' 2>&1); then
    echo "gapship-doctor: FAIL interpreter: $py cannot start: $err" >&2
    case $err in
        *GLIBC_*) echo "  cause: the interpreter was built for a newer glibc than this node has; pack again with --target from this node's probe." >&2 ;;
        *"cannot open shared object file"*) echo "  cause: a library the interpreter needs is missing from $here/lib; the install is incomplete, install the bundle again." >&2 ;;
        *"Permission denied"*) echo "  cause: $py cannot be executed: its execute bit is gone or its filesystem is mounted noexec (check: findmnt -T $py)." >&2 ;;
        *"Exec format error"*|*"cannot execute binary file"*) echo "  cause: the interpreter is for another CPU architecture than $(uname -m)." >&2 ;;
    esac
    exit 2
fi
# -I leaves the script's directory off sys.path: put PREFIX/gapship there for the package.
exec "$py" -I -c 'import sys; sys.path.insert(0, sys.argv[1]); from node.main import main; sys.exit(main(sys.argv[2:]))' "$here/gapship" --prefix "$here" "$@"
