#!/bin/sh
# One step of building CPython for an old glibc with zig cc (gapship.providers.build):
#
#   sh build_cpython.sh configure|make|install
#
# runs in the unpacked CPython source, with:
#   CC AR RANLIB  zig wrappers that target x86_64-linux-gnu.<glibc>
#   DEPS          the prefix of the static libraries (build_libraries.sh)
#   DEST          where CPython installs (DESTDIR; its prefix is /install, as in
#                 python-build-standalone's archives)
#   JOBS          make's -j
set -eu

step=$1
shift
: "${JOBS:=2}"
# only the libraries built for it: the builder's own .pc files stay out
PKG_CONFIG_LIBDIR="$DEPS/lib/pkgconfig"
PKG_CONFIG_PATH="$DEPS/lib/pkgconfig"
export PKG_CONFIG_LIBDIR PKG_CONFIG_PATH

case $step in
configure)
    # _PYTHON_HOST_PLATFORM makes setup.py (3.6-3.11) leave the builder's /usr/include
    # and /usr/lib out; 3.12+ take only what configure finds through pkg-config and flags
    # OPT: configure's own, without -g (a release interpreter, not five times its size)
    OPT="-DNDEBUG -fwrapv -O3 -Wall" \
    CPPFLAGS="-I$DEPS/include -I$DEPS/include/ncursesw" LDFLAGS="-L$DEPS/lib" \
    LIBFFI_INCLUDEDIR="$DEPS/include" \
        ./configure --prefix=/install --without-ensurepip --with-openssl="$DEPS" \
        --with-system-ffi --enable-ipv6 --with-dbmliborder= "$@"
    ;;
make)
    _PYTHON_HOST_PLATFORM=linux-x86_64 make -j"$JOBS"
    ;;
install)
    _PYTHON_HOST_PLATFORM=linux-x86_64 make install DESTDIR="$DEST"
    ;;
*)
    echo "build_cpython.sh: no step $step" >&2
    exit 2
    ;;
esac
