"""The installed environment's own files: every name in PREFIX/gapship/ and every schema version.

One owner for the contract between the builder, which writes these files (stage, plan,
activate, doctor), and what reads them on the target: the doctor (``from . import layout``),
the installer and the activation scripts. The shell files cannot import this module, so
tests/unit/test_layout.py checks that every ``gapship/...`` path they spell is named here.

Paths are relative to PREFIX, with ``/`` separators. Standard library only, Python 3.6+:
shipped as PREFIX/gapship/node/layout.py.
"""

DIRECTORY = "gapship"

# Records written at pack time (JSON: their version is the key named beside it)
MANIFEST = "gapship/manifest.json"  # every file and symlink: path, size, sha256, mode
MANIFEST_VERSION = 1  # "manifest_version"
LOCK = "gapship/lock.json"  # the lock this environment was staged from
LOCK_VERSION = 1  # "lock_version"
CPU_NEEDS = "gapship/cpu_needs.json"  # the instruction sets the shipped packages need
CPU_NEEDS_VERSION = 1  # "schema_version"
GPU = "gapship/gpu.json"  # the GPU stack the plan chose, for the doctor
GPU_VERSION = 1  # "schema_version"
ENVIRONMENT = "gapship/environment.json"  # name, version, Python, site-packages, distributions
TARGET = "gapship/target.json"  # the probe's record of the target (the probe's schema)

# Plain text, one line, written at pack time
NAME = "gapship/name"
VERSION = "gapship/version"
BASE_PYTHON = "gapship/base-python"  # --python target only: the target's interpreter
ACTIVATE_CONF = "gapship/activate.conf"  # key=value lines: what activation sets for the GPUs

# Written on the target by write-activation.sh (at install, and by gapship-rehome)
PREFIX_RECORD = "gapship/prefix"  # where the environment was installed, one line
PREFIX_RECORD_TMP = "gapship/prefix.tmp"  # written first, then renamed over PREFIX_RECORD

# The machinery shipped verbatim
ACTIVATION_DIR = "gapship/activation"  # the templates, and the sh activation written there
ACTIVATE_SH = "gapship/activation/activate.sh"  # written at install; PREFIX/activate sends sh here
ACTIVATE_DISPATCH_TEMPLATE = "gapship/activation/activate.in"  # PREFIX/activate: any shell
ACTIVATION_TEMPLATE = "gapship/activation/activate.sh.in"
ACTIVATION_TEMPLATE_CSH = "gapship/activation/activate.csh.in"
ACTIVATION_TEMPLATE_FISH = "gapship/activation/activate.fish.in"
LD_LIBRARY_PATH_HELPER = "gapship/libexec/ld-library-path.sh"  # the shadowing guard, every shell
WRITE_ACTIVATION = "gapship/libexec/write-activation.sh"
NODE = "gapship/node"  # this package: the doctor's checks, run as `node.main`

# Beside gapship/
SITE_HOOK = "gapship-site.pth"  # in the interpreter's own site dir when that is not
#                                 lib/python3.X/site-packages (Debian's dist-packages): adds it
PYVENV_CFG = "pyvenv.cfg"  # --python target only: ties the target's interpreter to PREFIX
DOCTOR = "bin/gapship-doctor"
NODES = "bin/gapship-nodes"  # the doctor and staging on every node of a Slurm allocation

# --format squashfs: PREFIX holds the image and these small files; the tree is inside the image
IMAGE = "image.sqsh"
IMAGE_CONF = "gapship/image.conf"  # mount=DIR: where activation mounts the image (at install)
IMAGE_INSTALL = "gapship/libexec/image-install.sh"  # run by the installer instead of
#                                                     write-activation.sh
IMAGE_ACTIVATE_TEMPLATE = "gapship/activation/image-activate.in"
MOUNT = "bin/gapship-mount"  # mounts the image with squashfuse unless it is mounted
UMOUNT = "bin/gapship-umount"
REHOME = "bin/gapship-rehome"
PROFILE = "bin/gapship-profile"
REMOVE = "bin/gapship-remove"
