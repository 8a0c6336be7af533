"""Which GPUs a build's code runs on: CUDA architecture names against compute capabilities.

The one definition of coverage: the planner (which framework build fits the target's GPUs)
and the doctor (does this node's GPU have code in the installed build) both use it, so pack
and node judge alike. Standard library only, Python 3.6+.
"""

import re

# sm_XY: SASS for X.Y; compute_XY: PTX; an "a" suffix (sm_90a) is for that exact GPU only,
# an "f" suffix (sm_100f) for its family; "+PTX" (torch's spelling) adds PTX of that arch
_ARCH = re.compile(r"(sm|compute)_(\d+)([af]?)")
SASS, PTX, EXACT = "sass", "ptx", "exact"


def parse_arch(arch):
    """(compute capability, kind) of an architecture name: "sm_86" -> ((8, 6), "sass"),
    "compute_90" or "sm_90+PTX" -> ((9, 0), "ptx"), "sm_90a" -> ((9, 0), "exact");
    None for a name that is no architecture."""
    arch = arch.strip().lower()
    found = _ARCH.match(arch)
    if not found:
        return None
    number = int(found.group(2))
    if found.group(3) == "a":
        kind = EXACT
    elif found.group(1) == "compute" or "+ptx" in arch:
        kind = PTX
    else:
        kind = SASS
    return (number // 10, number % 10), kind


def cc_of_arch(arch):
    """"sm_86" -> (8, 6); "sm_100" -> (10, 0); "sm_90a" -> (9, 0). ValueError for a name
    that is no architecture."""
    parsed = parse_arch(arch)
    if parsed is None:
        raise ValueError(arch)
    return parsed[0]


def arch_of_cc(cc):
    """(8, 6) -> "sm_86"."""
    return "sm_%d%d" % (cc[0], cc[1])


def arch_covers(archs, cc, ptx=False):
    """True when a build with code for ``archs`` runs on a GPU of compute capability ``cc``.

    SASS for X.Y runs on X.Z with Z >= Y; PTX of X.Y is JIT-compiled for any GPU >= X.Y;
    an "a" arch (sm_90a) runs on that exact GPU only. ``ptx``: the build also carries PTX of
    its newest architecture (as torch's and TensorFlow's builds do).
    """
    cc = tuple(cc)
    portable = []
    for have, kind in filter(None, (parse_arch(a) for a in archs)):
        if kind == EXACT:
            if have == cc:
                return True
            continue
        portable.append(have)
        if kind == PTX and have <= cc:
            return True
        if have[0] == cc[0] and have[1] <= cc[1]:
            return True
    return bool(ptx and portable) and max(portable) <= cc
