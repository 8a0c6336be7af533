"""The plan's records: decisions, locked files, the GPU plan and the lock itself."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from gapship import versions
from gapship.errors import SpecError
from gapship.node import layout
from gapship.providers import PythonLocator


@dataclass(frozen=True)
class Decision:
    """One choice the plan made: what, the value, and why."""

    what: str
    value: str
    why: str
    fact: str = ""


@dataclass(frozen=True)
class LockedFile:
    """One wheel that ships: exactly this file, checked by sha256."""

    name: str
    version: str
    filename: str
    url: str
    sha256: str
    size: int
    installed_size: int | None = None


@dataclass(frozen=True)
class GpuPlan:
    """The GPU stack the plan chose; written to PREFIX/gapship/gpu.json for the doctor.

    ``cuda_source`` is "wheels" (NVIDIA's pip wheels) or "toolkit" (a local directory at
    ``toolkit_path``, cuDNN from ``cudnn_path`` when it is elsewhere). ``archs`` are the
    framework build's GPU architectures ("sm_80", "compute_90" for PTX), when known.
    """

    framework: str | None
    framework_version: str | None
    cuda: str | None
    cudnn: str | None
    cuda_source: str | None
    min_driver: str | None
    archs: tuple[str, ...] | None = None
    toolkit_path: str | None = None
    cudnn_path: str | None = None
    nvcc: bool = False
    ld_library_path: tuple[str, ...] = ()
    xla_cuda_data_dir: bool = False

    def doctor_json(self) -> dict[str, Any]:
        """The facts the doctor compares the node with (layout.GPU)."""
        major_minor = [*versions.release(versions.minor(self.cuda or "0.0")), 0]
        return {"schema_version": layout.GPU_VERSION, "framework": self.framework,
                "cuda": self.cuda, "cudnn": self.cudnn, "cuda_source": self.cuda_source,
                "min_driver": self.min_driver,
                "min_driver_cuda": major_minor[0] * 1000 + major_minor[1] * 10
                if self.cuda else None,
                "archs": list(self.archs) if self.archs is not None else None}


@dataclass(frozen=True)
class Lock:
    """What was planned is exactly what ships: every file, the interpreter, the platform.

    ``interpreter`` says where the interpreter was found (a rootfs, an archive and its sha256,
    a path), so that `gapship pack LOCK` takes the same one; None in locks written before it
    was recorded (the --python options then say where).
    """

    name: str
    env_version: str
    python_version: str
    python_source: str
    platform_tag: str
    requirements: tuple[str, ...]
    files: tuple[LockedFile, ...]
    decisions: tuple[Decision, ...] = field(default_factory=tuple)
    gpu: GpuPlan | None = None
    warnings: tuple[str, ...] = ()
    indexes: tuple[str, ...] = ()
    interpreter: PythonLocator | None = None
    lock_version: int = layout.LOCK_VERSION

    @property
    def python_minor(self) -> str:
        return versions.minor(self.python_version)

    @property
    def download_size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def installed_size(self) -> int:
        """Unpacked size of the packages (interpreter not counted); 0 when unknown."""
        return sum(f.installed_size or 0 for f in self.files)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    def shipped(self) -> Lock:
        """The lock as the environment keeps it (layout.LOCK): no path of the builder."""
        return replace(self, interpreter=self.interpreter.without_paths()
                       if self.interpreter else None)

    @classmethod
    def from_json(cls, text: str, source: str = "gapship.lock") -> Lock:
        try:
            data: dict[str, Any] = json.loads(text)
            if data.get("lock_version") != layout.LOCK_VERSION:
                raise SpecError(f"{source}: lock_version {data.get('lock_version')!r} is not "
                                f"{layout.LOCK_VERSION}.", "Plan again with this gapship.")
            return cls(
                name=data["name"],
                env_version=data["env_version"],
                python_version=data["python_version"],
                python_source=data["python_source"],
                platform_tag=data["platform_tag"],
                requirements=tuple(data["requirements"]),
                files=tuple(LockedFile(**f) for f in data["files"]),
                decisions=tuple(Decision(**d) for d in data.get("decisions", [])),
                gpu=_gpu_from_json(data.get("gpu")),
                warnings=tuple(data.get("warnings", ())),
                indexes=tuple(data.get("indexes", ())),
                interpreter=PythonLocator(**data["interpreter"]) if data.get("interpreter")
                else None,
            )
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise SpecError(f"{source}: not a gapship lock ({exc}).",
                            "Write one with `gapship plan ... -o gapship.lock`.") from None


def _gpu_from_json(data: dict[str, Any] | None) -> GpuPlan | None:
    if data is None:
        return None
    return GpuPlan(**{**data, "archs": tuple(data["archs"]) if data.get("archs") is not None
                      else None, "ld_library_path": tuple(data.get("ld_library_path", ()))})
