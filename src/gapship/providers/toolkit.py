"""A local CUDA toolkit and cuDNN (legacy stacks such as CUDA 9 + cuDNN 7): their versions.

Read before the plan, which needs them to choose the framework build; the stage copies the
toolkit afterwards (``gapship.stage.cuda``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from gapship.errors import SpecError

_CUDNN_HEADERS = ("cudnn_version.h", "cudnn.h")


@dataclass(frozen=True)
class ToolkitVersions:
    """CUDA and cuDNN versions as the toolkit states them ("9.0.176", "7.6.5")."""

    cuda: str
    cudnn: str | None



def read_toolkit_versions(cuda_dir: Path, cudnn_dir: Path | None) -> ToolkitVersions:
    """The CUDA version of a toolkit directory and the cuDNN version of its header.

    cuDNN is looked up in ``cudnn_dir`` when given, else inside the toolkit (where people
    often copy it). Raises SpecError when a directory is not what the spec says it is.
    """
    if not cuda_dir.is_dir():
        raise SpecError(f"the CUDA toolkit {cuda_dir} is not a directory.",
                        "Set cuda.path to a toolkit such as /usr/local/cuda-9.0.")
    cuda = _toolkit_cuda_version(cuda_dir)
    if cuda is None:
        raise SpecError(f"{cuda_dir} is not a CUDA toolkit: it has no version.json, "
                        "version.txt or include/cuda_runtime_api.h.",
                        "Set cuda.path to the toolkit's top directory (the one holding "
                        "bin/, lib64/ and include/).")
    if cudnn_dir is not None:
        if not cudnn_dir.is_dir():
            raise SpecError(f"the cuDNN directory {cudnn_dir} is not a directory.",
                            "Set cudnn.path to the directory holding include/ and lib64/.")
        cudnn = cudnn_header_version([cudnn_dir / "include", cudnn_dir])
        if cudnn is None:
            raise SpecError(f"{cudnn_dir} has no include/cudnn_version.h or include/cudnn.h "
                            "that states CUDNN_MAJOR.",
                            "Set cudnn.path to the unpacked cuDNN (the directory holding "
                            "include/ and lib64/).")
    else:
        cudnn = cudnn_header_version([cuda_dir / "include"])
    return ToolkitVersions(cuda=cuda, cudnn=cudnn)


def _toolkit_cuda_version(cuda_dir: Path) -> str | None:
    vjson = cuda_dir / "version.json"
    if vjson.is_file():
        try:
            return str(json.loads(vjson.read_text(encoding="utf-8"))["cuda"]["version"])
        except (ValueError, KeyError, TypeError):
            raise SpecError(f"{vjson} does not state the CUDA version (cuda.version).",
                            "Check that the toolkit is complete.") from None
    vtxt = cuda_dir / "version.txt"
    if vtxt.is_file():
        found = re.search(r"CUDA Version\s+(\d+(?:\.\d+)+)", vtxt.read_text(errors="replace"))
        if found:
            return found.group(1)
    # toolkits copied without their version file still carry the runtime's header
    header = cuda_dir / "include" / "cuda_runtime_api.h"
    if header.is_file():
        found = re.search(r"#define\s+CUDART_VERSION\s+(\d+)", header.read_text(errors="replace"))
        if found:
            number = int(found.group(1))
            return f"{number // 1000}.{number % 1000 // 10}"
    return None


def cudnn_header_version(include_dirs: list[Path]) -> str | None:
    """MAJOR.MINOR.PATCHLEVEL from cudnn_version.h (cuDNN 8+) or cudnn.h (up to 7)."""
    for directory in include_dirs:
        for name in _CUDNN_HEADERS:
            header = directory / name
            if not header.is_file():
                continue
            text = header.read_text(errors="replace")
            parts = [re.search(rf"#define\s+CUDNN_{p}\s+(\d+)", text)
                     for p in ("MAJOR", "MINOR", "PATCHLEVEL")]
            if parts[0] is not None:
                return ".".join(m.group(1) for m in parts if m is not None)
    return None
