"""Read the dynamic-linking facts of an ELF file with the standard library (struct) only.

The one ELF reader of gapship: the builder (grafting, the glibc check) and the doctor on the
target both use it. It reads what the dynamic loader reads: the program headers, PT_INTERP,
and the PT_DYNAMIC entries (NEEDED, SONAME, RPATH, RUNPATH, FLAGS_1) with the GNU version
needs and definitions they point to. Nothing is executed or mapped: a file is opened, a few
small ranges are read, it is closed. Symbol versions (GLIBC_2.34) are compared here too.
"""

import collections
import os
import re
import struct

ELF_MAGIC = b"\x7fELF"
ET_EXEC, ET_DYN = 2, 3
PT_LOAD, PT_DYNAMIC, PT_INTERP = 1, 2, 3
DT_NULL, DT_NEEDED, DT_STRTAB, DT_STRSZ, DT_SONAME, DT_RPATH, DT_RUNPATH = 0, 1, 5, 10, 14, 15, 29
DT_FLAGS_1 = 0x6ffffffb
DT_VERDEF, DT_VERDEFNUM = 0x6ffffffc, 0x6ffffffd
DT_VERNEED, DT_VERNEEDNUM = 0x6ffffffe, 0x6fffffff
DF_1_NODEFLIB = 0x800
VER_FLG_BASE, VER_FLG_WEAK = 0x1, 0x2
# A corrupt file must not make the doctor loop or allocate without bound.
_MAX_ENTRIES = 100000

MACHINES = {3: "i386", 8: "mips", 20: "ppc", 21: "ppc64", 22: "s390", 40: "arm",
            62: "x86_64", 183: "aarch64", 243: "riscv"}


class ElfError(Exception):
    """The file starts like ELF but cannot be read as ELF (truncated or corrupt)."""


class ElfFile(object):
    """What the dynamic loader needs to know about one ELF file.

    ``version_needs`` maps a library name (as in NEEDED) to [(version, weak)];
    ``version_defs`` is the set of versions this file defines (its base version excluded).
    """

    __slots__ = (
        "dynamic",
        "elf_class",
        "endian",
        "interp",
        "machine",
        "needed",
        "nodeflib",
        "path",
        "rpath",
        "runpath",
        "soname",
        "type",
        "version_defs",
        "version_needs",
    )

    def __init__(self, path, elf_class, endian, machine, elf_type):
        self.path = path
        self.elf_class = elf_class
        self.endian = endian
        self.machine = machine
        self.type = elf_type
        self.interp = None
        self.soname = None
        self.needed = []
        self.rpath = []
        self.runpath = []
        self.nodeflib = False
        self.version_needs = {}
        self.version_defs = set()
        self.dynamic = False

    @property
    def abi(self):
        """(class, byte order, machine): a library of another ABI is skipped by the loader."""
        return (self.elf_class, self.endian, self.machine)

    def describe_abi(self):
        return "%s %d-bit" % (MACHINES.get(self.machine, "machine %d" % self.machine),
                              self.elf_class)


_SKIP_SUFFIXES = (".py", ".pyc", ".pyi", ".txt", ".json", ".h", ".hpp", ".sh", ".md",
                  ".html", ".csv", ".c", ".cpp", ".cu", ".cuh", ".pxd", ".pyx", ".typed")
_S_IFMT, _S_IFREG = 0o170000, 0o100000


def might_be_elf(name, mode):
    """Cheap filter before opening a file: shared objects and executables only."""
    if ".so" in name:
        return True
    return bool(mode & 0o111) and not name.endswith(_SKIP_SUFFIXES)


_might_be_elf = might_be_elf


def iter_elf_paths(root, every_file=False):
    """Paths of the regular files (not links) under ``root`` that start with the ELF magic,
    sorted by directory. Only shared objects and executables are opened, unless
    ``every_file``."""
    for top, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(top, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if st.st_mode & _S_IFMT != _S_IFREG:
                continue
            if not every_file and not _might_be_elf(name, st.st_mode):
                continue
            if read_header(path) is not None:
                yield path


_VERSION = re.compile(r"^(.*)_(\d+(?:\.\d+)*)$")


def version_key(version):
    """A symbol version's family and numbers: "GLIBC_2.34" -> ("GLIBC", (2, 34)),
    "GLIBCXX_3.4.30" -> ("GLIBCXX", (3, 4, 30)), "GLIBC_PRIVATE" -> ("GLIBC", ())."""
    found = _VERSION.match(version)
    if not found:
        return (version.rsplit("_", 1)[0], ())
    return (found.group(1), tuple(int(p) for p in found.group(2).split(".")))


def needs_newer(version, have):
    """Whether the symbol version ``version`` ("GLIBC_2.34", or its numbers (2, 34)) is newer
    than ``have``, the newest of its family a system provides ((2, 31)). A version without
    numbers, or an unknown ``have`` (None), is never newer."""
    numbers = version_key(version)[1] if isinstance(version, str) else tuple(version)
    return bool(numbers) and have is not None and numbers > tuple(have)


def newest_version(versions, family):
    """The newest version of ``family`` ("GLIBC") among ``versions``, by number, or None."""
    best = None
    for version in versions:
        name, numbers = version_key(version)
        if name == family and numbers and (best is None or needs_newer(numbers, best[0])):
            best = (numbers, version)
    return best[1] if best else None


# the symbol-version families checked against a target: glibc's and libstdc++'s
GLIBC, GLIBCXX = "GLIBC", "GLIBCXX"
# a family whose newest need (version numbers) is newer than a system has, and who needs it
Misfit = collections.namedtuple("Misfit", "family newest files")


class VersionNeeds(object):
    """The GLIBC_ and GLIBCXX_ versions some files need from system libraries, and who:
    ``glibc`` and ``glibcxx`` map version numbers ((2, 34)) to the names of those files."""

    __slots__ = ("glibc", "glibcxx")

    def __init__(self, glibc, glibcxx):
        self.glibc = glibc
        self.glibcxx = glibcxx

    def newest_glibc(self):
        return max(self.glibc) if self.glibc else None

    def newest_glibcxx(self):
        return max(self.glibcxx) if self.glibcxx else None

    def misfits(self, glibc, glibcxx):
        """[Misfit] of the families needed newer than a system's ``glibc`` and ``glibcxx``
        version numbers ((2, 31), (3, 4, 28); None: unknown, never a misfit), glibc first."""
        found = []
        for family, by_version, have in ((GLIBC, self.glibc, glibc),
                                         (GLIBCXX, self.glibcxx, glibcxx)):
            too_new = dict((v, p) for v, p in by_version.items() if needs_newer(v, have))
            if too_new:
                found.append(Misfit(family, max(too_new),
                                    [f for paths in too_new.values() for f in paths]))
        return found


def version_needs(files, is_system):
    """The VersionNeeds of ``files`` ({path: the name to report it by}) on the libraries
    ``is_system(name)`` says a system provides (a wheel's own libstdc++ copy does not count).
    Files that are not ELF, or damaged, are left out."""
    read = []
    for path, name in files.items():
        try:
            read.append((name, read_elf(path)))
        except ElfError:
            continue
    return version_needs_of(read, is_system)


def version_needs_of(elfs, is_system):
    """``version_needs`` of files already read: [(the name to report it by, ElfFile, or
    None / an ElfError for a file that is not ELF or damaged: left out)]."""
    found = {GLIBC: {}, GLIBCXX: {}}
    for name, elf in elfs:
        if not isinstance(elf, ElfFile):
            continue
        for lib, versions in elf.version_needs.items():
            if not is_system(lib):
                continue
            for version, _weak in versions:
                family, numbers = version_key(version)
                if numbers and family in found:
                    found[family].setdefault(numbers, []).append(name)
    return VersionNeeds(found[GLIBC], found[GLIBCXX])


def read_header(path):
    """The ELF file's (class, byte order, machine) or None when it is not ELF."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(20)
    except (OSError, IOError):
        return None
    return header_of(head)


def header_of(head):
    """(class, byte order, machine) from a file's first 20 bytes; None when not ELF."""
    if len(head) < 20 or head[:4] != ELF_MAGIC:
        return None
    endian = {1: "<", 2: ">"}.get(bytearray(head)[5])
    elf_class = {1: 32, 2: 64}.get(bytearray(head)[4])
    if endian is None or elf_class is None:
        return None
    return (elf_class, endian, struct.unpack(endian + "H", head[18:20])[0])


class _Reader(object):
    def __init__(self, fh, endian, elf_class):
        self.fh = fh
        self.endian = endian
        self.wide = elf_class == 64

    def unpack(self, fmt, offset):
        fmt = self.endian + fmt
        return struct.unpack(fmt, self.read(offset, struct.calcsize(fmt)))

    def read(self, offset, size):
        self.fh.seek(offset)
        data = self.fh.read(size)
        if len(data) != size:
            raise ElfError("truncated at offset %d" % offset)
        return data


def read_elf(path):
    """The ElfFile for ``path``; None when it is not ELF; ElfError when it is corrupt."""
    header = read_header(path)
    if header is None:
        return None
    with open(path, "rb") as fh:
        return parse_elf(fh, path)


def parse_elf(fh, path):
    """The ElfFile of the open binary file ``fh`` (seekable; read from its start, a few small
    ranges) reported as ``path``; None when it is not ELF; ElfError when it is corrupt.
    A caller that reads the whole file anyway (to hash it) parses it here on the same
    handle, so each file is opened once."""
    fh.seek(0)
    header = header_of(fh.read(20))
    if header is None:
        return None
    elf_class, endian, machine = header
    try:
        return _parse(_Reader(fh, endian, elf_class), path, elf_class, endian, machine)
    except (struct.error, ValueError, OverflowError) as exc:
        raise ElfError(str(exc)) from exc


def _parse(rd, path, elf_class, endian, machine):
    if rd.wide:
        e_type, _, _, _, e_phoff, _, _, _, e_phentsize, e_phnum = rd.unpack("HHIQQQIHHH", 16)
        ph_fmt = "IIQQQQ"  # p_type p_flags p_offset p_vaddr p_paddr p_filesz
    else:
        e_type, _, _, _, e_phoff, _, _, _, e_phentsize, e_phnum = rd.unpack("HHIIIIIHHH", 16)
        ph_fmt = "IIIII"  # p_type p_offset p_vaddr p_paddr p_filesz
    elf = ElfFile(path, elf_class, endian, machine, e_type)
    if e_type not in (ET_EXEC, ET_DYN) or e_phnum == 0:
        return elf
    loads, dynamic, interp = [], None, None
    for i in range(min(e_phnum, _MAX_ENTRIES)):
        fields = rd.unpack(ph_fmt, e_phoff + i * e_phentsize)
        if rd.wide:
            p_type, _, p_offset, p_vaddr, _, p_filesz = fields
        else:
            p_type, p_offset, p_vaddr, _, p_filesz = fields
        if p_type == PT_LOAD:
            loads.append((p_vaddr, p_offset, p_filesz))
        elif p_type == PT_DYNAMIC:
            dynamic = (p_offset, p_filesz)
        elif p_type == PT_INTERP:
            interp = (p_offset, p_filesz)
    if interp is not None:
        elf.interp = rd.read(interp[0], interp[1]).split(b"\0", 1)[0].decode(
            "utf-8", "replace")
    if dynamic is None:
        return elf
    elf.dynamic = True
    tags = _dynamic_entries(rd, dynamic)
    strtab_addr = _first(tags, DT_STRTAB)
    strsz = _first(tags, DT_STRSZ)
    if strtab_addr is None or strsz is None:
        raise ElfError("dynamic section without a string table")
    strtab = rd.read(_to_offset(loads, strtab_addr), strsz)

    def text(offset):
        if offset >= len(strtab):
            raise ElfError("string offset %d past the string table" % offset)
        end = strtab.find(b"\0", offset)
        return strtab[offset:end if end >= 0 else len(strtab)].decode("utf-8", "replace")

    for tag, value in tags:
        if tag == DT_NEEDED:
            elf.needed.append(text(value))
        elif tag == DT_SONAME:
            elf.soname = text(value)
        elif tag == DT_RPATH:
            elf.rpath.extend(text(value).split(":"))
        elif tag == DT_RUNPATH:
            elf.runpath.extend(text(value).split(":"))
        elif tag == DT_FLAGS_1:
            elf.nodeflib = bool(value & DF_1_NODEFLIB)
    verneed = _first(tags, DT_VERNEED)
    if verneed is not None:
        count = _first(tags, DT_VERNEEDNUM) or _MAX_ENTRIES
        _read_verneed(rd, _to_offset(loads, verneed), count, text, elf.version_needs)
    verdef = _first(tags, DT_VERDEF)
    if verdef is not None:
        count = _first(tags, DT_VERDEFNUM) or _MAX_ENTRIES
        _read_verdef(rd, _to_offset(loads, verdef), count, text, elf.version_defs)
    return elf


def _dynamic_entries(rd, dynamic):
    offset, size = dynamic
    fmt, step = ("qQ", 16) if rd.wide else ("iI", 8)
    raw = rd.read(offset, size - size % step)
    tags = []
    for pos in range(0, len(raw), step):
        tag, value = struct.unpack_from(rd.endian + fmt, raw, pos)
        if tag == DT_NULL:
            break
        tags.append((tag, value))
    return tags


def _first(tags, wanted):
    for tag, value in tags:
        if tag == wanted:
            return value
    return None


def _to_offset(loads, addr):
    """File offset of a virtual address, through the PT_LOAD segment that maps it."""
    for vaddr, offset, filesz in loads:
        if vaddr <= addr < vaddr + filesz:
            return addr - vaddr + offset
    if not loads:  # no segments: some tools leave file offsets in the dynamic section
        return addr
    raise ElfError("address 0x%x is outside every loaded segment" % addr)


def _read_verneed(rd, offset, count, text, needs):
    for _ in range(min(count, _MAX_ENTRIES)):
        _, vn_cnt, vn_file, vn_aux, vn_next = rd.unpack("HHIII", offset)
        versions = needs.setdefault(text(vn_file), [])
        aux = offset + vn_aux
        for _ in range(vn_cnt):
            _, vna_flags, _, vna_name, vna_next = rd.unpack("IHHII", aux)
            versions.append((text(vna_name), bool(vna_flags & VER_FLG_WEAK)))
            if not vna_next:
                break
            aux += vna_next
        if not vn_next:
            break
        offset += vn_next


def _read_verdef(rd, offset, count, text, defs):
    for _ in range(min(count, _MAX_ENTRIES)):
        _, vd_flags, _, vd_cnt, _, vd_aux, vd_next = rd.unpack("HHHHIII", offset)
        if vd_cnt and not vd_flags & VER_FLG_BASE:
            defs.add(text(rd.unpack("II", offset + vd_aux)[0]))
        if not vd_next:
            break
        offset += vd_next
