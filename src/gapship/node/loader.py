"""Find a library the way the dynamic loader (glibc ld.so) does, without loading anything.

Order, as in glibc's _dl_map_object: DT_RPATH of the object and of the objects that loaded
it (only when the object has no DT_RUNPATH), LD_LIBRARY_PATH, DT_RUNPATH, /etc/ld.so.cache,
then the default directories (the last two not for DF_1_NODEFLIB objects). A candidate of
another ELF class or machine is skipped, as ld.so skips it.

The builder resolves with the same Loader inside a ``sysroot`` (a twin's root filesystem):
its ld.so.cache and default directories, absolute search paths and the links between files
are then read under that root, as if it were ``/``.
"""

import glob
import os
import struct

from . import elf as elfmod

LD_SO_CACHE = "/etc/ld.so.cache"
_NEW_MAGIC = b"glibc-ld.so.cache1.1"
_OLD_MAGIC = b"ld.so-1.7.0"
_FLAG_ELF_LIBC6 = 0x0003
# ld.so.cache flags that name the ABI of an entry (glibc's FLAG_*_LIB64 ...)
_CACHE_ARCH = {(64, 62): 0x0300, (64, 183): 0x0a00, (64, 21): 0x0500, (64, 22): 0x0400,
               (32, 3): 0x0000, (32, 40): 0x0000, (64, 243): 0x1000}
_MULTIARCH = {62: "x86_64-linux-gnu", 183: "aarch64-linux-gnu", 3: "i386-linux-gnu",
              21: "powerpc64le-linux-gnu", 22: "s390x-linux-gnu", 40: "arm-linux-gnueabihf",
              243: "riscv64-linux-gnu"}


def default_dirs(elf_class, machine):
    """The directories ld.so searches last (the multiarch ones are in Debian's cache too)."""
    triplet = _MULTIARCH.get(machine)
    dirs = ["/lib64", "/usr/lib64"] if elf_class == 64 else []
    if triplet:
        dirs += ["/lib/" + triplet, "/usr/lib/" + triplet]
    return [*dirs, "/lib", "/usr/lib"]


def read_ld_cache(path=LD_SO_CACHE):
    """[(soname, flags, path)] from ld.so.cache, old and new ("glibc-ld.so.cache1.1") formats.

    Entries restricted to a glibc-hwcaps subdirectory (x86-64-v3 ...) are left out: the
    plain entry for the same library is always there too.
    """
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except (OSError, IOError):
        return []
    start = data.find(_NEW_MAGIC)
    entries = []
    try:
        if start >= 0:
            nlibs, = struct.unpack_from("<I", data, start + 20)
            base = start + 48
            for i in range(nlibs):
                flags, key, value, _, hwcap = struct.unpack_from("<iIIIQ", data, base + i * 24)
                if hwcap:
                    continue
                entries.append((_c_string(data, start + key), flags,
                                _c_string(data, start + value)))
        elif data.startswith(_OLD_MAGIC):
            nlibs, = struct.unpack_from("<I", data, 12)
            strings = 16 + nlibs * 12
            for i in range(nlibs):
                flags, key, value = struct.unpack_from("<iII", data, 16 + i * 12)
                entries.append((_c_string(data, strings + key), flags,
                                _c_string(data, strings + value)))
    except struct.error:
        return entries
    return entries


def _c_string(data, offset):
    end = data.find(b"\0", offset)
    return data[offset:end].decode("utf-8", "replace")


def ld_conf_dirs(sysroot):
    """Library directories named by ``sysroot``'s /etc/ld.so.conf (includes followed), as
    paths inside that root: what ldconfig would have put in a cache the root does not have."""
    dirs = []

    def read(conf, depth):
        try:
            with open(conf, "rb") as fh:
                lines = fh.read().decode("utf-8", "replace").splitlines()
        except (OSError, IOError):
            return
        for line in lines:
            line = line.split("#", 1)[0].strip()
            if line.startswith("include ") and depth < 4:
                pattern = line.split(None, 1)[1]
                for included in sorted(glob.glob(reroot(sysroot, pattern))):
                    read(included, depth + 1)
            elif line.startswith("/"):
                dirs.append(line)

    read(reroot(sysroot, "/etc/ld.so.conf"), 0)
    return dirs


def reroot(sysroot, path):
    """``path`` as seen from inside ``sysroot`` (None: the running system's own /)."""
    if sysroot is None:
        return path
    return os.path.join(sysroot, path.lstrip("/"))


def _sysroot(sysroot):
    """None for the running system's own / (however it is spelled), else the absolute root."""
    if not sysroot:
        return None
    sysroot = os.path.abspath(sysroot)
    return None if sysroot == os.sep else sysroot


def real_path(path, sysroot=None):
    """``path`` with every symbolic link followed; a path under ``sysroot`` has its absolute
    links read inside that root, as if it were ``/``."""
    sysroot = _sysroot(sysroot)
    rel = os.path.relpath(os.path.abspath(path), sysroot) if sysroot else os.pardir
    if rel == os.pardir or rel.startswith(os.pardir + os.sep):
        return os.path.realpath(path)
    parts = [p for p in rel.split(os.sep) if p not in ("", os.curdir)]
    current = sysroot
    for _ in range(64 * (len(parts) + 1)):
        if not parts:
            return current
        part = parts.pop(0)
        candidate = os.path.join(current, part)
        if part == os.pardir:
            current = os.path.dirname(current) if current != sysroot else sysroot
        elif os.path.islink(candidate):
            link = os.readlink(candidate)
            parts = [p for p in link.split("/") if p not in ("", os.curdir)] + parts
            current = sysroot if link.startswith("/") else current
        else:
            current = candidate
    raise OSError("%s: too many levels of symbolic links inside %s" % (path, sysroot))


class Loader(object):
    """Resolves NEEDED names for ELF files, caching every file it reads (by real path).

    ``sysroot``: resolve inside that root filesystem instead of this system's ``/`` (paths
    that come back are under it; $ORIGIN is where the file lies, never re-rooted).
    """

    def __init__(self, ld_library_path=None, cache_path=None, default_dirs_fn=None,
                 sysroot=None):
        if ld_library_path is None:
            ld_library_path = os.environ.get("LD_LIBRARY_PATH", "")
        self.sysroot = _sysroot(sysroot)
        # ld.so splits on ':' and ';'; an empty entry means the current directory
        self.ld_library_path = [self._inside(p or ".") for p in
                                ld_library_path.replace(";", ":").split(":")] \
            if ld_library_path else []
        self.cache_path = cache_path or reroot(self.sysroot, LD_SO_CACHE)
        self._cache = None
        self._files = {}
        self._default_dirs = default_dirs_fn or default_dirs
        self._conf_dirs = None

    def _inside(self, path):
        return reroot(self.sysroot, path) if path.startswith("/") else path

    def real_path(self, path):
        """``path`` with its links followed (inside the sysroot)."""
        return real_path(path, self.sysroot)

    def read(self, path):
        """ElfFile, None (not ELF) or an ElfError instance, read once per real path."""
        try:
            real = self.real_path(path)
        except (OSError, IOError):
            return None
        if real not in self._files:
            try:
                self._files[real] = elfmod.read_elf(real)
            except elfmod.ElfError as exc:
                self._files[real] = exc
            except (OSError, IOError):
                self._files[real] = None
        return self._files[real]

    def remember(self, path, result):
        """Take ``result`` (what ``read`` would return) as ``path``'s, read elsewhere (the
        builder's one pass over a staged tree)."""
        try:
            real = self.real_path(path)
        except (OSError, IOError):
            return
        self._files[real] = result

    def cache_lookup(self, soname, elf_class, machine):
        if self._cache is None:
            self._cache = {}
            for name, flags, path in read_ld_cache(self.cache_path):
                self._cache.setdefault(name, []).append((flags, self._inside(path)))
        arch = _CACHE_ARCH.get((elf_class, machine))
        for flags, path in self._cache.get(soname, []):
            if flags & 0xff != _FLAG_ELF_LIBC6:
                continue
            if arch is not None and flags & 0xff00 != arch:
                continue
            yield path

    def _candidate(self, path, abi):
        try:
            if not os.path.isfile(path if self.sysroot is None else self.real_path(path)):
                return None
        except (OSError, IOError):
            return None
        found = self.read(path)
        if isinstance(found, elfmod.ElfFile) and found.abi == abi:
            return found
        return None

    def find(self, name, obj, loaders=(), origin=None):
        """(path, how) where ld.so would find ``name`` for ``obj``; (None, None) if nowhere.

        ``loaders`` are the objects that loaded ``obj`` (nearest first), whose DT_RPATH
        also counts while ``obj`` has no DT_RUNPATH. ``origin`` is the directory $ORIGIN
        stands for in ``obj``'s own paths, when ``obj`` was read from a copy of the file.
        """
        abi = obj.abi
        if "/" in name:
            path = self._inside(name)
            return (path, "path") if self._candidate(path, abi) else (None, None)
        searches = []
        if not _real_entries(obj.runpath):
            for owner in (obj, *tuple(loaders)):
                if not _real_entries(owner.runpath):
                    searches.append(("RPATH of " + os.path.basename(owner.path),
                                     self._expand(owner.rpath, owner,
                                                  origin if owner is obj else None)))
        searches.append(("LD_LIBRARY_PATH", self.ld_library_path))
        searches.append(("RUNPATH", self._expand(obj.runpath, obj, origin)))
        for how, dirs in searches:
            for directory in dirs:
                path = os.path.join(directory, name)
                if self._candidate(path, abi):
                    return path, how
        if obj.nodeflib:
            return None, None
        for path in self.cache_lookup(name, obj.elf_class, obj.machine):
            if self._candidate(path, abi):
                return path, "ld.so.cache"
        for directory in self._system_dirs(obj):
            path = os.path.join(directory, name)
            if self._candidate(path, abi):
                return path, "default directory"
        return None, None

    def each_elf(self, queue):
        """(path, ElfFile) for each path taken off ``queue``, once each; the caller may append
        to ``queue`` meanwhile. Files that are not ELF, or damaged, are passed over."""
        done = set()
        while queue:
            path = queue.pop()
            if path in done:
                continue
            done.add(path)
            obj = self.read(path)
            if isinstance(obj, elfmod.ElfFile):
                yield path, obj

    def closure(self, paths, skip=None):
        """Real paths of the libraries the ELF files ``paths`` need, recursively, where this
        loader finds them (each file's $ORIGIN is the directory it is given in). Names
        ``skip(name)`` is true for, and libraries found nowhere, are left out."""
        found = {}
        queue = list(paths)
        for path, obj in self.each_elf(queue):
            for name in obj.needed:
                if skip is not None and skip(name):
                    continue
                where, _ = self.find(name, obj, origin=os.path.dirname(os.path.abspath(path)))
                if where is not None:
                    real = self.real_path(where)
                    found.setdefault(real, None)
                    queue.append(real)
        return list(found)

    def _system_dirs(self, obj):
        dirs = list(self._default_dirs(obj.elf_class, obj.machine))
        # a root without a cache: the directories ldconfig would have cached come first
        if self.sysroot is not None and not os.path.isfile(self.cache_path):
            if self._conf_dirs is None:
                self._conf_dirs = ld_conf_dirs(self.sysroot)
            dirs = self._conf_dirs + dirs
        return [self._inside(d) for d in dirs]

    def _expand(self, paths, obj, origin):
        # absolute entries name the sysroot's directories; $ORIGIN is where the file lies
        return expand([self._inside(p) for p in _real_entries(paths)], obj, origin)


def _real_entries(paths):
    return [p for p in paths if p]


def expand(paths, obj, origin=None):
    """DT_RPATH/DT_RUNPATH entries with $ORIGIN, $LIB and $PLATFORM expanded for ``obj``
    (``origin``: the directory $ORIGIN stands for, when not ``obj``'s own)."""
    if origin is None:
        origin = os.path.dirname(os.path.realpath(obj.path) if obj.interp
                                 else os.path.abspath(obj.path))
    lib = "lib64" if obj.elf_class == 64 else "lib"
    platform = elfmod.MACHINES.get(obj.machine, "")
    out = []
    for entry in _real_entries(paths):
        for token, value in (("ORIGIN", origin), ("LIB", lib), ("PLATFORM", platform)):
            entry = entry.replace("${%s}" % token, value).replace("$" + token, value)
        out.append(entry)
    return out
