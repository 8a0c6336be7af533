"""Precompile a tree's bytecode as ``python -m compileall -q -j 0 -d DDIR ROOT`` does, with a
content-addressed cache: a source compiled once by this interpreter is never compiled again.

Run by the interpreter that compiles (the staged one, any Python 3.6+), so stdlib only and
3.6 syntax. Each .py file is found as compileall's own walk finds it and compiled by
compileall's own ``compile_file``; what that writes is kept in the cache as
``KEY.DIGEST.pyc``: KEY the sha256 of (interpreter identity, the name the code objects carry,
the source's bytes), DIGEST the sha256 of the .pyc itself, checked at every use. A cached
.pyc is the same bytes a fresh compile writes: for timestamp .pyc files only the header's
source mtime and size differ. An entry whose header already fits the source (the stage gives
every source one mtime) is hard-linked into the tree, as uv links its cache; any other is
copied with the header set from the source as py_compile sets it. Nothing edits a .pyc in
place (a tree's file is replaced, never rewritten), so a link never changes the cache.

Usage: bytecode_worker.py CACHE_DIR ROOT DDIR IDENTITY; prints one JSON line of counts.
"""

import compileall
import contextlib
import hashlib
import importlib.util
import json
import os
import struct
import sys
from typing import Dict, Iterator, List, Optional, Set, Tuple

_TIMESTAMP_HEADER = sys.version_info >= (3, 7)


def walk(root: str, maxlevels: int) -> Iterator[str]:
    """The files compileall's walk yields: sorted, no __pycache__, no linked directories."""
    try:
        names = sorted(os.listdir(root))
    except OSError:
        return
    for name in names:
        if name == "__pycache__":
            continue
        full = os.path.join(root, name)
        if not os.path.isdir(full):
            yield full
        elif maxlevels > 0 and not os.path.islink(full):
            for sub in walk(full, maxlevels - 1):
                yield sub


def _entry(cache: str, key: str) -> str:
    """The stem of KEY's entries: STEM.DIGEST.pyc, and STEM.fail for a source that fails."""
    return os.path.join(cache, key[:2], key)


_INDEX: Dict[str, Dict[str, List[str]]] = {}  # shard -> KEY -> its entries' names


def _entries(cache: str, key: str) -> List[str]:
    """The cached .pyc files of KEY (one listing per shard directory and process)."""
    shard = os.path.join(cache, key[:2])
    index = _INDEX.get(shard)
    if index is None:
        index = {}
        try:
            names = os.listdir(shard)
        except OSError:
            names = []
        for name in names:
            parts = name.split(".")
            if len(parts) == 3 and parts[2] == "pyc" and len(parts[1]) == 64:
                index.setdefault(parts[0], []).append(name)
        _INDEX[shard] = index
    return [os.path.join(shard, name) for name in index.get(key, [])]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()


_MADE: Set[str] = set()  # directories known to exist (one mkdir per directory)


def _makedirs(directory: str) -> None:
    """Create ``directory`` (and its parents) once per process."""
    if directory not in _MADE:
        os.makedirs(directory, exist_ok=True)
        _MADE.add(directory)


def _write_atomic(path: str, data: bytes, mode: int = 0o666) -> None:
    """Write ``path`` whole or not at all (the file mode as py_compile gives a .pyc)."""
    _makedirs(os.path.dirname(path))
    tmp = "%s.%d.tmp" % (path, os.getpid())
    flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY
    try:
        fd = os.open(tmp, flags, mode)
    except FileExistsError:  # left by a run that was killed
        os.unlink(tmp)
        fd = os.open(tmp, flags, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise


def _load(path: str) -> Optional[bytes]:
    """The cached .pyc when the entry is whole (its sha256 is the one its name holds) and of
    this interpreter; None otherwise (a damaged entry is removed)."""
    try:
        with open(path, "rb") as fh:
            pyc = fh.read()
    except OSError:
        return None
    if len(pyc) <= 16 or hashlib.sha256(pyc).hexdigest() != path.rsplit(".", 2)[-2] \
            or pyc[:4] != importlib.util.MAGIC_NUMBER:
        with contextlib.suppress(OSError):
            os.unlink(path)
        return None
    return pyc


def _keep(cfile: str, stem: str) -> None:
    """Keep the .pyc just compiled at ``cfile`` as an entry of ``stem``: a hard link to it
    where the filesystem allows (else a copy), under its final name only when whole."""
    with open(cfile, "rb") as fh:
        pyc = fh.read()
    entry = "%s.%s.pyc" % (stem, hashlib.sha256(pyc).hexdigest())
    tmp = "%s.%d.tmp" % (entry, os.getpid())
    try:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.link(cfile, tmp)
        os.replace(tmp, entry)
    except OSError:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        _write_atomic(entry, pyc)


def _link(entry: str, cfile: str, mode: int) -> bool:
    """Hard-link ``entry`` as ``cfile`` when its mode is the one py_compile would give it;
    False where it cannot be (another mode, another filesystem, too many links)."""
    try:
        if os.stat(entry).st_mode & 0o7777 != mode:
            return False
        _makedirs(os.path.dirname(cfile))
        os.link(entry, cfile)
    except OSError:
        return False
    return True


def _with_source_stats(pyc: bytes, st: os.stat_result) -> bytes:
    """The .pyc with the header's source mtime and size taken from the source's ``st``
    (timestamp .pyc files only; hash-based ones hold the source's hash, the same for the
    same bytes)."""
    stats = struct.pack("<LL", int(st.st_mtime) & 0xFFFFFFFF, st.st_size & 0xFFFFFFFF)
    if not _TIMESTAMP_HEADER:
        return pyc[:4] + stats + pyc[12:]
    flags = struct.unpack("<L", pyc[4:8])[0]
    if flags != 0:
        return pyc
    return pyc[:8] + stats + pyc[16:]


def _up_to_date(source: str, cfile: str) -> bool:
    """compileall's own test for a .pyc it leaves alone (one shipped by a wheel)."""
    try:
        mtime = int(os.stat(source).st_mtime) & 0xFFFFFFFF
        with open(cfile, "rb") as fh:
            head = fh.read(12)
    except OSError:
        return False
    if _TIMESTAMP_HEADER:
        return head == struct.pack("<4sLL", importlib.util.MAGIC_NUMBER, 0, mtime)
    return head[:8] == struct.pack("<4sL", importlib.util.MAGIC_NUMBER, mtime)


def _compile(source: str, ddir: str, cfile: str, entry: str) -> str:
    """Compile ``source`` as compileall does and keep the result under ``entry`` (if any)."""
    ok = compileall.compile_file(source, ddir=ddir, quiet=2)
    if not entry:  # a .pyc a wheel shipped, out of date: not for the cache
        pass
    elif ok and os.path.isfile(cfile):
        _makedirs(os.path.dirname(entry))
        _keep(cfile, entry)
    elif not ok:
        _write_atomic(entry + ".fail", b"")
    return "compiled" if ok else "failed"


def process(job: Tuple[str, str, str, str]) -> str:
    """One source: its .pyc from the cache, else compiled (and kept); what happened."""
    cache, ident, source, ddir = job
    cfile = importlib.util.cache_from_source(source)
    if os.path.exists(cfile):  # shipped by a wheel: compileall's own judgement
        return "skipped" if _up_to_date(source, cfile) else _compile(source, ddir, cfile, "")
    with open(source, "rb") as fh:
        content = hashlib.sha256(fh.read()).hexdigest()
    dfile = os.path.join(ddir, os.path.basename(source))
    key = hashlib.sha256("\0".join([ident, dfile, content]).encode()).hexdigest()
    stem = _entry(cache, key)
    st = os.stat(source)
    # py_compile's mode: the source's, writable by its owner (less the umask, as it creates)
    mode = (st.st_mode | 0o200) & 0o666
    other: Optional[bytes] = None
    for entry in _entries(cache, key):
        pyc = _load(entry)
        if pyc is None:
            continue
        fitted = _with_source_stats(pyc, st)
        if fitted == pyc and _link(entry, cfile, mode & ~_UMASK):
            return "cached"
        other = fitted
    if other is not None:  # an entry for another mtime: a copy with this source's header
        _write_atomic(cfile, other, mode)
        return "cached"
    if os.path.exists(stem + ".fail"):
        return "failed"
    return _compile(source, ddir, cfile, stem)


def main(argv: List[str]) -> int:
    cache, root, ddir, identity = argv[1:5]
    maxlevels = 10 if sys.version_info < (3, 9) else sys.getrecursionlimit()
    ident = "\0".join([identity, sys.version, importlib.util.MAGIC_NUMBER.hex(),
                       str(sys.flags.optimize), str("SOURCE_DATE_EPOCH" in os.environ)])
    jobs = []  # type: List[Tuple[str, str, str, str]]
    for source in walk(root, maxlevels):
        if not source.endswith(".py") or not os.path.isfile(source):
            continue
        rel = os.path.relpath(os.path.dirname(source), root)
        jobs.append((cache, ident, source, ddir if rel == "." else os.path.join(ddir, rel)))
    if len(jobs) > 64 and (os.cpu_count() or 1) > 1:
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor() as pool:
            results = list(pool.map(process, jobs, chunksize=16))
    else:
        results = [process(job) for job in jobs]
    counts = {"files": len(jobs), "cached": 0, "compiled": 0, "failed": 0, "skipped": 0}
    for result in results:
        counts[result] += 1
    sys.stdout.write(json.dumps(counts) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
