#!/bin/sh
# The C toolchain of gapship's CPython builds (gapship.providers.build): linked as cc, c++,
# ar and ranlib, it runs zig's, targeting $ZIG_TARGET (x86_64-linux-gnu.<glibc>).
# -fno-sanitize=undefined: zig cc traps on undefined behaviour otherwise, which old C code has;
# -Wno-error=date-time: zig makes __DATE__/__TIME__ (CPython's build info) an error;
# the other -Wno-error: clang 16+ refuses what older C sources (libffi 3.4, CPython 3.6) do.
case ${0##*/} in
cc | gcc) exec "$ZIG" cc -target "$ZIG_TARGET" -fno-sanitize=undefined \
    -Wno-error=date-time -Wno-error=implicit-function-declaration -Wno-error=int-conversion \
    -Wno-error=incompatible-function-pointer-types "$@" ;;
c++) exec "$ZIG" c++ -target "$ZIG_TARGET" -fno-sanitize=undefined "$@" ;;
ar) exec "$ZIG" ar "$@" ;;
ranlib) exec "$ZIG" ranlib "$@" ;;
# Debian's multiarch helper would add the builder's /usr/include to CPython's setup.py
dpkg-architecture) exit 1 ;;
*) echo "zig_tool.sh: unknown tool ${0##*/}" >&2; exit 2 ;;
esac
