#!/bin/sh
# Builds one of the libraries CPython's standard library needs, for an old glibc, with
# zig cc (gapship.providers.build):
#
#   sh build_libraries.sh NAME
#
# runs in the unpacked source of library NAME, with:
#   CC AR RANLIB  zig wrappers that target x86_64-linux-gnu.<glibc>
#   DEPS          the private prefix the libraries install into (static, -fPIC)
#   JOBS          make's -j
# The libraries are static archives built with -fPIC, so each extension module carries
# the code it needs and the install holds no shared library of them.
set -eu

step=$1
: "${JOBS:=2}"
CFLAGS="-O2 -fPIC"
export CFLAGS
# only the libraries built here: the builder's own .pc files and headers stay out
PKG_CONFIG_LIBDIR="$DEPS/lib/pkgconfig"
PKG_CONFIG_PATH="$DEPS/lib/pkgconfig"
export PKG_CONFIG_LIBDIR PKG_CONFIG_PATH

autotools() {  # a static, position-independent autoconf build into $DEPS
    ./configure --prefix="$DEPS" --libdir="$DEPS/lib" --disable-shared --enable-static \
        --with-pic "$@"
    make -j"$JOBS"
    make install
}

case $step in
zlib)
    ./configure --static --prefix="$DEPS" --libdir="$DEPS/lib"
    make -j"$JOBS" libz.a
    make install
    ;;
bzip2)
    make -j"$JOBS" libbz2.a CC="$CC" AR="$AR" RANLIB="$RANLIB" \
        CFLAGS="$CFLAGS -D_FILE_OFFSET_BITS=64"
    mkdir -p "$DEPS/include" "$DEPS/lib"
    cp bzlib.h "$DEPS/include/"
    cp libbz2.a "$DEPS/lib/"
    ;;
xz)
    autotools --disable-xz --disable-xzdec --disable-lzmadec --disable-lzmainfo \
        --disable-lzma-links --disable-scripts --disable-doc --disable-nls
    ;;
libffi)
    autotools --disable-docs --disable-multi-os-directory --disable-exec-static-tramp
    ;;
openssl)
    # the system's CA store: Debian's /etc/ssl (RHEL links /etc/pki/tls/certs/ca-bundle.crt
    # there too); SSL_CERT_FILE / SSL_CERT_DIR override it
    ./Configure linux-x86_64 no-shared no-tests no-afalgeng no-engine \
        --prefix="$DEPS" --libdir=lib --openssldir=/etc/ssl CC="$CC" AR="$AR" \
        RANLIB="$RANLIB" CFLAGS="$CFLAGS"
    make -j"$JOBS" build_libs
    make install_dev
    ;;
sqlite)
    autotools --disable-tcl --disable-readline --enable-threadsafe \
        CFLAGS="$CFLAGS -DSQLITE_ENABLE_FTS5 -DSQLITE_ENABLE_JSON1 -DSQLITE_ENABLE_RTREE"
    ;;
ncurses)
    ./configure --prefix="$DEPS" --libdir="$DEPS/lib" --without-shared --with-normal \
        --without-debug --without-ada --without-manpages --without-progs --without-tests \
        --without-cxx-binding --enable-widec --enable-pc-files \
        --with-pkg-config-libdir="$DEPS/lib/pkgconfig" --disable-stripping \
        --with-default-terminfo-dir=/usr/share/terminfo \
        --with-terminfo-dirs=/etc/terminfo:/lib/terminfo:/usr/share/terminfo:/usr/lib/terminfo
    make -j"$JOBS" libs
    make install.libs
    ;;
readline)
    autotools --with-curses --disable-install-examples
    ;;
*)
    echo "build_libraries.sh: no library $step" >&2
    exit 2
    ;;
esac
