"""The environment around the prefix: where it is, LD_LIBRARY_PATH, and how to reach a GPU node."""

import os
import sys

from . import layout
from .base import FAIL, PASS, WARN, Check, listing

GROUP = "environment"
# scheduler command -> how to run the doctor on a GPU node with it
SCHEDULERS = (
    ("srun", "srun -N 1 --gres=gpu:1 {doctor}"),
    ("yhrun", "yhrun -N 1 --gres=gpu:1 {doctor}"),
    ("bsub", "bsub -gpu num=1 -I {doctor}"),
    ("qsub", "qsub -I -l select=1:ngpus=1, then run {doctor} in that shell"),
)


def gpu_node_command(prefix, path=None):
    """The command that runs the doctor on a GPU node through the scheduler found on PATH."""
    doctor = os.path.join(prefix, "bin", "gapship-doctor")
    dirs = (os.environ.get("PATH", "") if path is None else path).split(os.pathsep)
    for command, template in SCHEDULERS:
        if any(os.access(os.path.join(d, command), os.X_OK) for d in dirs if d):
            return template.format(doctor=doctor)
    return "log in to a GPU node and run %s" % doctor


def check_interpreter(prefix):
    checks = [Check("interpreter", "python %d.%d.%d" % sys.version_info[:3], PASS,
                    sys.executable)]
    if os.path.realpath(sys.prefix) != os.path.realpath(prefix):
        checks.append(Check("interpreter", "sys.prefix", FAIL,
                            "sys.prefix is %s, not %s" % (sys.prefix, prefix),
                            "PYTHONHOME or a site file points elsewhere: unset PYTHONHOME."))
    return checks


def check_location(prefix):
    recorded = None
    try:
        with open(os.path.join(prefix, layout.PREFIX_RECORD)) as fh:
            recorded = fh.read().strip()
    except (OSError, IOError):
        pass
    if recorded is not None and os.path.realpath(recorded) != os.path.realpath(prefix):
        return [Check(GROUP, "location", WARN, "installed at %s, now at %s" % (recorded, prefix),
                      "Run %s/bin/gapship-rehome so that activate points here." % prefix)]
    return [Check(GROUP, "location", PASS, prefix)]


def check_ld_library_path(prefix, sonames, ld_library_path=None):
    """LD_LIBRARY_PATH entries outside the prefix that hold libraries the bundle also has.

    ld.so searches LD_LIBRARY_PATH before DT_RUNPATH, so such a library replaces the
    bundle's own (another CUDA, cuDNN or libstdc++ than the one the packages were built for).
    """
    value = os.environ.get("LD_LIBRARY_PATH", "") if ld_library_path is None \
        else ld_library_path
    real_prefix = os.path.realpath(prefix)
    checks = []
    for entry in [e for e in value.split(":") if e]:
        real = os.path.realpath(entry)
        if real == real_prefix or real.startswith(real_prefix + os.sep):
            continue
        try:
            names = set(os.listdir(entry))
        except OSError:
            continue
        shadowed = sorted(names & set(sonames))
        if shadowed:
            checks.append(Check(
                GROUP, "LD_LIBRARY_PATH entry %s" % entry, WARN,
                "has %s, which the bundle also ships: the dynamic loader takes these first"
                % listing(shadowed, 5),
                "Remove %s from LD_LIBRARY_PATH (or module purge / unset LD_LIBRARY_PATH) "
                "before activating, unless you mean to replace the bundle's libraries."
                % entry, facts={"entry": entry, "libraries": shadowed}))
    if not checks:
        checks.append(Check(GROUP, "LD_LIBRARY_PATH", PASS,
                            "hides none of the bundle's libraries" if value else "not set"))
    return checks
