"""Apply a delta bundle (NAME-OLD-to-NEW.run) to an installed environment. Standard library
only, Python 3.6+: the delta's sh header pipes this file to PREFIX/bin/python3 (``python3 -``).

It checks that PREFIX is exactly the environment the delta was made from (its version, and the
sha256 of every file the delta changes or removes), that it was not moved without
gapship-rehome, then builds the new version beside it in a hidden work directory (hard links of
the unchanged files where the filesystem allows, copies otherwise; the changed files from the
delta), verifies it against the new manifest, writes its activation and renames it into place
as the full installer does: the old environment stays until the new one is complete. Every
refusal is one line on stderr and exit status 1; nothing is changed then.
"""

import argparse
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile

# the environment's own paths (layout's names) come with the delta: delta.json "paths"
DELTA = "delta.json"
DELTA_VERSION = 1


# the payload's sha256 was checked: its links and modes are the environment's own (3.12+)
TRUSTED = {"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}


class Refused(Exception):
    pass


def say(text):
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class Region(object):
    """The payload: ``size`` bytes of ``path`` from ``offset``, read as a file."""

    def __init__(self, path, offset, size):
        self.fh = open(path, "rb")  # noqa: SIM115 (closed by close())
        self.fh.seek(offset)
        self.left = size

    def read(self, n=-1):
        if n < 0 or n > self.left:
            n = self.left
        data = self.fh.read(n)
        self.left -= len(data)
        return data

    def close(self):
        self.fh.close()


def payload_sha256(path, offset, size):
    region = Region(path, offset, size)
    digest = hashlib.sha256()
    count = 0
    for chunk in iter(lambda: region.read(1 << 20), b""):
        digest.update(chunk)
        count += len(chunk)
    region.close()
    return digest.hexdigest() if count == size else None


# ---- who holds the lock: "PID START HOST PIDNS", as the installer writes it
def start_of(pid):
    try:
        with open("/proc/%d/stat" % pid) as fh:
            fields = fh.read().rsplit(") ", 1)[1].split()
        return fields[19]
    except (OSError, IndexError):
        return "-"


def zombie(pid):
    """A killed process whose parent has not collected it yet (an orphan waits for init)."""
    try:
        with open("/proc/%d/stat" % pid) as fh:
            return fh.read().rsplit(") ", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return False


def pid_namespace():
    try:
        return os.readlink("/proc/self/ns/pid").split("[")[1].rstrip("]")
    except (OSError, IndexError):
        return "-"


def my_record():
    return "%d %s %s %s" % (os.getpid(), start_of(os.getpid()), socket.gethostname(),
                            pid_namespace())


def alive(record):
    """False only when the owner is provably gone (this host, this pid namespace)."""
    fields = record.split()
    if len(fields) < 3:
        return False
    if fields[2] != socket.gethostname():
        return True
    if len(fields) >= 4 and fields[3] not in ("-", pid_namespace()):
        return True
    if not os.path.isdir("/proc/%s" % fields[0]) or zombie(int(fields[0])):
        return False
    return fields[1] == "-" or start_of(int(fields[0])) == fields[1]


def read_text(path):
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return ""


def take_lock(lock, prefix):
    for _ in range(2):
        try:
            os.mkdir(lock)
        except FileExistsError as exc:
            holder = read_text(os.path.join(lock, "owner")).strip()
            if holder and not alive(holder):
                say("removed the lock %s: the install that held it was killed." % lock)
                shutil.rmtree(lock, ignore_errors=True)
                continue
            raise Refused("another install into %s is running (lock %s). Wait until it ends; "
                          "if it is not running, remove the lock (rm -r '%s') and run again."
                          % (prefix, lock, lock)) from exc
        with open(os.path.join(lock, "owner.tmp"), "w") as fh:
            fh.write(my_record() + "\n")
        os.rename(os.path.join(lock, "owner.tmp"), os.path.join(lock, "owner"))
        return
    raise Refused("cannot take the lock %s; remove it (rm -r '%s') and run again." % (lock, lock))


def clean_debris(parent, base, prefix):
    """Work directories of installs that were killed: the environment they had moved aside
    back into place, the rest removed."""
    mark = ".%s.gapship-install." % base
    for entry in sorted(os.listdir(parent)):
        if not entry.startswith(mark):
            continue
        work = os.path.join(parent, entry)
        owner = read_text(os.path.join(work, "owner")).strip()
        if owner and alive(owner):
            continue
        old = os.path.join(work, "old")
        if os.path.isdir(old) and not os.path.lexists(prefix):
            os.rename(old, prefix)
            say("restored %s from %s, where an install that was killed had moved it."
                % (prefix, old))
        shutil.rmtree(work, ignore_errors=True)
        say("removed %s: left by an install that was killed." % work)


# ---- the checks
def check_base(prefix, delta, old_files):
    name, old, new = delta["name"], delta["old_version"], delta["new_version"]
    paths = delta["paths"]
    have = read_text(os.path.join(prefix, paths["version"])).strip() or "an unknown version"
    if have == new:
        raise Refused("%s already holds %s %s; this delta updates %s to %s. Nothing was changed."
                      % (prefix, name, new, old, new))
    if have != old:
        raise Refused("this delta updates %s %s to %s, and %s holds %s %s: it applies only to %s. "
                      "Nothing was changed; install the full bundle of %s instead."
                      % (name, old, new, prefix, name, have, old, new))
    recorded = read_text(os.path.join(prefix, paths["prefix_record"])).strip()
    real = os.path.realpath(prefix)
    if recorded and recorded != real and os.path.realpath(recorded) != real:
        raise Refused("%s was installed at %s and moved here without gapship-rehome. Nothing was "
                      "changed; run %s/bin/gapship-rehome first, then apply the delta again."
                      % (prefix, recorded, prefix))
    changed = []
    for rel, want in sorted(delta["touched"].items()):
        path = os.path.join(prefix, rel)
        entry = old_files.get(rel)
        if entry is None:
            continue
        if "target" in entry:
            ok = os.path.islink(path) and os.readlink(path) == entry["target"]
        else:
            ok = (os.path.isfile(path) and not os.path.islink(path)
                  and os.path.getsize(path) == entry["size"] and sha256_of(path) == want)
        if not ok:
            changed.append(rel)
    if changed:
        shown = ", ".join(changed[:3]) + (" and %d more" % (len(changed) - 3)
                                          if len(changed) > 3 else "")
        raise Refused("%s is not the %s %s this delta was made from: %s changed since it was "
                      "installed. Nothing was changed; install the full bundle of %s %s instead."
                      % (prefix, name, old, shown, name, new))


def safe_members(tar):
    for member in tar:
        name = member.name
        if name.startswith("/") or ".." in name.split("/"):
            raise Refused("the delta is damaged: it names %s. Nothing was changed." % name)
        yield member


def build(prefix, tree, tar, delta, manifest):
    """The new version in ``tree``: the delta's files, then links or copies of the rest."""
    for member in safe_members(tar):
        if not member.name.startswith("tree/"):
            continue
        member.name = member.name[len("tree/"):]
        tar.extract(member, tree, **TRUSTED)
    linked = copied = 0
    can_link = True
    for entry in manifest["files"]:
        rel = entry["path"]
        dest = os.path.join(tree, rel)
        if os.path.lexists(dest):
            continue
        parent = os.path.dirname(dest)
        if not os.path.isdir(parent):
            os.makedirs(parent)
        src = os.path.join(prefix, rel)
        if can_link:
            try:
                os.link(src, dest)
                linked += 1
                continue
            except OSError:
                can_link = False
        shutil.copy2(src, dest)
        copied += 1
    for entry in manifest["symlinks"]:
        dest = os.path.join(tree, entry["path"])
        if os.path.lexists(dest):
            continue
        parent = os.path.dirname(dest)
        if not os.path.isdir(parent):
            os.makedirs(parent)
        os.symlink(entry["target"], dest)
    for rel in delta["dirs"]:
        path = os.path.join(tree, rel)
        if not os.path.isdir(path):
            os.makedirs(path)
    return linked, copied


def verify(tree, delta, manifest):
    changed = set(delta["changed"])
    for entry in manifest["files"]:
        path = os.path.join(tree, entry["path"])
        if os.path.islink(path) or not os.path.isfile(path) \
                or os.path.getsize(path) != entry["size"]:
            raise Refused("the new tree does not match its manifest at %s. Nothing was changed."
                          % entry["path"])
        if entry["path"] in changed and sha256_of(path) != entry["sha256"]:
            raise Refused("the delta is damaged: %s does not have its sha256. Nothing was changed."
                          % entry["path"])
    for entry in manifest["symlinks"]:
        path = os.path.join(tree, entry["path"])
        if not os.path.islink(path) or os.readlink(path) != entry["target"]:
            raise Refused("the new tree does not match its manifest at %s. Nothing was changed."
                          % entry["path"])


def apply(args):
    prefix = args.prefix
    parent, base = os.path.dirname(prefix), os.path.basename(prefix)
    say("verifying %s (%d bytes) ..." % (os.path.basename(args.bundle), args.payload_bytes))
    if payload_sha256(args.bundle, args.offset, args.payload_bytes) != args.sha256:
        raise Refused("the delta is damaged: its payload does not have the checksum its header "
                      "records. Nothing was changed. Send %s again."
                      % os.path.basename(args.bundle))
    region = Region(args.bundle, args.offset, args.payload_bytes)
    tar = tarfile.open(fileobj=region, mode="r|gz")  # noqa: SIM115 (closed below)
    try:
        return apply_from(args, prefix, parent, base, tar)
    finally:
        tar.close()
        region.close()


def apply_from(args, prefix, parent, base, tar):
    first = tar.next()
    if first is None or first.name != DELTA:
        raise Refused("the delta is damaged: it does not start with %s." % DELTA)
    delta = json.loads(tar.extractfile(first).read().decode("utf-8"))
    if delta.get("delta_version") != DELTA_VERSION:
        raise Refused("this delta was made by a newer gapship (delta_version %s); install the "
                      "full bundle instead." % delta.get("delta_version"))
    paths = delta["paths"]
    manifest_path = os.path.join(prefix, paths["manifest"])
    if os.path.islink(prefix) or not os.path.isfile(manifest_path):
        raise Refused("%s is not a gapship environment; a delta updates an installed one." % prefix)
    with open(manifest_path) as fh:
        old_manifest = json.load(fh)
    old_files = {e["path"]: e for e in old_manifest["files"]}
    old_files.update((e["path"], e) for e in old_manifest["symlinks"])
    check_base(prefix, delta, old_files)
    lock = os.path.join(parent, ".%s.gapship-lock" % base)
    take_lock(lock, prefix)
    work = None
    moved_old = False
    try:
        clean_debris(parent, base, prefix)
        if not os.path.isfile(manifest_path):
            raise Refused("%s is not a gapship environment any more." % prefix)
        check_base(prefix, delta, old_files)
        work = tempfile.mkdtemp(prefix=".%s.gapship-install." % base, dir=parent)
        with open(os.path.join(work, "owner"), "w") as fh:
            fh.write(my_record() + "\n")
        tree = os.path.join(work, "tree")
        os.mkdir(tree)
        say("updating %s %s to %s in %s ..." % (delta["name"], delta["old_version"],
                                                delta["new_version"], prefix))
        manifest = delta["manifest"]
        linked, copied = build(prefix, tree, tar, delta, manifest)
        verify(tree, delta, manifest)
        say("  %d files from the delta, %d unchanged files %s, %d removed; verified"
            % (len(delta["changed"]), linked + copied,
               "hard-linked" if not copied else "copied" if not linked else "linked or copied",
               len(delta["removed"])))
        rc = subprocess.call(["sh", os.path.join(tree, paths["write_activation"]), tree, prefix])
        if rc != 0:
            raise Refused("writing the activation files failed (see above); nothing was changed.")
        os.rename(prefix, os.path.join(work, "old"))
        moved_old = True
        os.rename(tree, prefix)
        moved_old = False
    finally:
        if moved_old and not os.path.lexists(prefix):
            os.rename(os.path.join(work, "old"), prefix)
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(lock, ignore_errors=True)
    say("")
    say("Updated %s from %s to %s in %s." % (delta["name"], delta["old_version"],
                                             delta["new_version"], prefix))
    say("  check it:   '%s/bin/gapship-doctor'" % prefix)
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="gapship delta")
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--offset", type=int, required=True)
    parser.add_argument("--payload-bytes", type=int, required=True)
    parser.add_argument("--sha256", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--me", default="gapship delta")
    args = parser.parse_args(argv)
    try:
        return apply(args)
    except Refused as exc:
        say("%s: %s" % (args.me, exc))
        return 1
    except OSError as exc:
        say("%s: %s (%s). The environment is as it was." % (args.me, exc.strerror or exc,
                                                           exc.filename or ""))
        return 1


if __name__ == "__main__":
    sys.exit(main())
