"""The NVIDIA driver, the GPUs and the bundled CUDA libraries, through ctypes: no framework.

libcuda.so.1 (the driver): cuInit, versions, each device's name, compute capability and
memory, then a real kernel: an embedded PTX vector add that the driver JIT-compiles, runs
and whose result is checked. libcudart and libcudnn (the bundle's): their versions against
the driver and against what the plan chose (PREFIX/gapship/gpu.json).
"""

import os
import re

from . import layout
from .archs import arch_covers, arch_of_cc
from .base import FAIL, PASS, SKIP, WARN, Check, load_json
from .catalogue import catalogue

try:
    import ctypes
    _CTYPES_ERROR = None
except ImportError as _exc:  # a Python without _ctypes/libffi: the doctor still runs
    ctypes = None
    _CTYPES_ERROR = str(_exc)

GROUP, CUDA_GROUP = "gpu", "cuda"
LIBCUDA = "libcuda.so.1"
ATTR_CC_MAJOR, ATTR_CC_MINOR = 75, 76
JIT_ERROR_LOG_BUFFER, JIT_ERROR_LOG_BUFFER_SIZE = 5, 6
HIDING_VALUES = ("", "-1", "none", "nodevfiles")
_ERRORS = {
    1: ("CUDA_ERROR_INVALID_VALUE", "invalid argument"),
    2: ("CUDA_ERROR_OUT_OF_MEMORY", "out of memory"),
    3: ("CUDA_ERROR_NOT_INITIALIZED", "initialization error"),
    34: ("CUDA_ERROR_STUB_LIBRARY", "CUDA driver is a stub library"),
    46: ("CUDA_ERROR_DEVICES_UNAVAILABLE", "all CUDA-capable devices are busy or unavailable"),
    100: ("CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected"),
    101: ("CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal"),
    209: ("CUDA_ERROR_NO_BINARY_FOR_GPU",
          "no kernel image is available for execution on the device"),
    218: ("CUDA_ERROR_INVALID_PTX", "a PTX JIT compilation failed"),
    222: ("CUDA_ERROR_UNSUPPORTED_PTX_VERSION",
          "the provided PTX was compiled with an unsupported toolchain"),
    304: ("CUDA_ERROR_OPERATING_SYSTEM", "OS call failed or operation not supported on this OS"),
    719: ("CUDA_ERROR_LAUNCH_FAILED", "unspecified launch failure"),
    803: ("CUDA_ERROR_SYSTEM_DRIVER_MISMATCH",
          "system has unsupported display driver / cuda driver combination"),
    999: ("CUDA_ERROR_UNKNOWN", "unknown error"),
}
# A vector add, c[i] = a[i] + b[i], written by hand in PTX. An old ISA and target, so that
# every driver JIT-compiles it for whatever GPU it has; the second pair is for drivers that
# no longer take the first.
PTX_TARGETS = (("6.0", "sm_50"), ("6.3", "sm_75"))
KERNEL = "gapship_vadd"
PTX_TEMPLATE = """.version %(version)s
.target %(target)s
.address_size 64

.visible .entry gapship_vadd(
    .param .u64 param_a,
    .param .u64 param_b,
    .param .u64 param_c,
    .param .u32 param_n
)
{
    .reg .pred %%p<2>;
    .reg .f32 %%f<4>;
    .reg .b32 %%r<6>;
    .reg .b64 %%rd<11>;

    ld.param.u64 %%rd1, [param_a];
    ld.param.u64 %%rd2, [param_b];
    ld.param.u64 %%rd3, [param_c];
    ld.param.u32 %%r2, [param_n];
    mov.u32 %%r3, %%ctaid.x;
    mov.u32 %%r4, %%ntid.x;
    mov.u32 %%r5, %%tid.x;
    mad.lo.s32 %%r1, %%r3, %%r4, %%r5;
    setp.ge.s32 %%p1, %%r1, %%r2;
    @%%p1 bra DONE;
    cvta.to.global.u64 %%rd4, %%rd1;
    cvta.to.global.u64 %%rd5, %%rd2;
    cvta.to.global.u64 %%rd6, %%rd3;
    mul.wide.s32 %%rd7, %%r1, 4;
    add.s64 %%rd8, %%rd4, %%rd7;
    add.s64 %%rd9, %%rd5, %%rd7;
    add.s64 %%rd10, %%rd6, %%rd7;
    ld.global.f32 %%f1, [%%rd8];
    ld.global.f32 %%f2, [%%rd9];
    add.f32 %%f3, %%f1, %%f2;
    st.global.f32 [%%rd10], %%f3;
DONE:
    ret;
}
"""


def ptx_source(version, target):
    return PTX_TEMPLATE % {"version": version, "target": target}


class CudaError(Exception):
    """A driver call that did not return CUDA_SUCCESS."""

    def __init__(self, call, code, name, text):
        Exception.__init__(self, "%s: %s: %s" % (call, name, text))
        self.call = call
        self.code = code
        self.name = name


class Driver(object):
    """Calls into libcuda by name; every call is checked."""

    def __init__(self, lib):
        self.lib = lib

    def has(self, name):
        return getattr(self.lib, name, None) is not None

    def check(self, name, *args):
        fn = getattr(self.lib, name, None)
        if fn is None:
            raise CudaError(name, -1, "MISSING", "the driver has no %s (too old)" % name)
        fn.restype = ctypes.c_int
        code = fn(*args)
        if code != 0:
            raise CudaError(name, code, *self.describe(code))

    def describe(self, code):
        name, text = _ERRORS.get(code, ("CUDA error %d" % code, "unknown CUDA error"))
        for call, slot in (("cuGetErrorName", 0), ("cuGetErrorString", 1)):
            fn = getattr(self.lib, call, None)
            if fn is None:
                continue
            out = ctypes.c_char_p()
            fn.restype = ctypes.c_int
            if fn(ctypes.c_int(code), ctypes.byref(out)) == 0 and out.value:
                if slot == 0:
                    name = out.value.decode("utf-8", "replace")
                else:
                    text = out.value.decode("utf-8", "replace")
        return name, text


def load_driver(name=LIBCUDA):
    """(Driver, None) or (None, the loader's error text)."""
    if ctypes is None:
        return None, "ctypes cannot be imported: %s" % _CTYPES_ERROR
    try:
        return Driver(ctypes.CDLL(name)), None
    except OSError as exc:
        return None, str(exc)


def driver_release(path="/proc/driver/nvidia/version"):
    """The kernel driver's version (550.54.15) or None."""
    try:
        with open(path) as fh:
            found = re.search(r"Module(?: for \S+)?\s+(\d+\.\d+(?:\.\d+)?)", fh.read())
        return found.group(1) if found else None
    except (OSError, IOError):
        return None


def nvidia_uvm_loaded(proc_modules="/proc/modules"):
    """True/False from /proc/modules; None when it cannot be read."""
    try:
        with open(proc_modules) as fh:
            return any(line.split(" ", 1)[0] == "nvidia_uvm" for line in fh)
    except (OSError, IOError):
        return None


def version_tuple(text):
    return tuple(int(p) for p in re.findall(r"\d+", str(text or "")))


def cuda_version_text(number):
    """12080 -> "12.8"."""
    return "%d.%d" % (number // 1000, number % 1000 // 10)


def gpu_facts(prefix):
    """PREFIX/gapship/gpu.json (what the plan chose), or {}."""
    return load_json(os.path.join(prefix, layout.GPU), {}) or {}


def expects_gpu(facts, sonames):
    """Whether this environment ships a GPU stack (so a node without one matters)."""
    if facts.get("cuda") or facts.get("cuda_source"):
        return True
    return any(name.startswith(("libcudart.so", "libcudnn.so", "libcublas.so"))
               for name in sonames)


UNKNOWN_REMEDY = ("Not a known failure: keep the report (gapship-doctor --report FILE) and the "
                  "output of nvidia-smi for the administrators.")


def _diagnosed(group, name, status, error_text, context, detail=None, facts=None):
    found = catalogue().diagnose(error_text, context)
    return Check(group, name, status, detail or error_text,
                 found.remedy if found else UNKNOWN_REMEDY, found.id if found else None,
                 facts=facts)


def check_gpu(context, expected, libcuda=LIBCUDA, proc_modules="/proc/modules",
              driver_version_file="/proc/driver/nvidia/version", env=None):
    """(checks, facts): the driver and every visible GPU, a PTX kernel run on each.

    ``facts`` has "usable" (a GPU answered), "driver_cuda" (12040) and "devices".
    """
    env = os.environ if env is None else env
    facts = {"usable": False, "driver": None, "driver_cuda": None, "devices": []}
    drv, error = load_driver(libcuda)
    if drv is None:
        needed = expects_gpu(expected, context.get("sonames", ()))
        check = _diagnosed(GROUP, "NVIDIA driver", WARN if needed else PASS,
                           "no NVIDIA driver on this node (%s)" % error, context,
                           detail="no NVIDIA driver on this node (%s not found)" % libcuda)
        if not needed:
            check.detail += "; this environment ships no GPU libraries"
            check.remedy, check.diagnosis = "", None
        return [check], facts
    visible = env.get("CUDA_VISIBLE_DEVICES")
    ctx = dict(context, nvidia_uvm=nvidia_uvm_loaded(proc_modules),
               cuda_visible_devices=visible,
               cuda_visible_devices_hidden=visible is not None
               and visible.strip().lower() in HIDING_VALUES)
    facts["driver"] = driver_release(driver_version_file)
    checks = []
    try:
        drv.check("cuInit", ctypes.c_uint(0))
        version = ctypes.c_int()
        drv.check("cuDriverGetVersion", ctypes.byref(version))
        facts["driver_cuda"] = version.value
        checks += _driver_checks(facts, expected, ctx)
        count = ctypes.c_int()
        drv.check("cuDeviceGetCount", ctypes.byref(count))
    except CudaError as exc:
        soft = exc.code in (100,) or ctx["cuda_visible_devices_hidden"]
        checks.append(_diagnosed(GROUP, "NVIDIA driver", WARN if soft else FAIL, str(exc), ctx,
                                 facts={"driver": facts["driver"], "error": exc.name}))
        return checks, facts
    # the driver loads nvidia_uvm on demand (nvidia-modprobe) while CUDA starts: look again
    ctx["nvidia_uvm"] = nvidia_uvm_loaded(proc_modules)
    checks.append(_uvm_check(ctx))
    if visible is not None:
        checks.append(Check(GROUP, "CUDA_VISIBLE_DEVICES", PASS, repr(visible)))
    if count.value == 0:
        checks.append(_diagnosed(GROUP, "GPUs", WARN, "no CUDA-capable device is detected",
                                 ctx))
        return checks, facts
    for index in range(count.value):
        checks += _device_checks(drv, index, expected, ctx, facts)
    facts["usable"] = any(d.get("kernel_ok") for d in facts["devices"])
    return checks, facts


def _driver_checks(facts, expected, ctx):
    driver_cuda = facts["driver_cuda"]
    label = "NVIDIA driver %s(CUDA %s)" % (facts["driver"] + " " if facts["driver"] else "",
                                          cuda_version_text(driver_cuda))
    checks = [Check(GROUP, label, PASS,
                    facts={"driver": facts["driver"], "driver_cuda": driver_cuda})]
    min_driver = expected.get("min_driver")
    if min_driver and facts["driver"] and \
            version_tuple(facts["driver"]) < version_tuple(min_driver):
        text = "driver supports CUDA %s but the bundled CUDA runtime is %s" % (
            cuda_version_text(driver_cuda), expected.get("cuda") or "?")
        checks.append(_diagnosed(
            GROUP, "driver >= %s" % min_driver, FAIL, text,
            dict(ctx, driver_cuda=cuda_version_text(driver_cuda),
                 runtime_cuda=expected.get("cuda"), min_driver=min_driver),
            detail="driver %s is older than %s, which CUDA %s needs" % (
                facts["driver"], min_driver, expected.get("cuda") or "?")))
    return checks


def _uvm_check(ctx):
    if ctx["nvidia_uvm"] is False:
        return _diagnosed(GROUP, "nvidia_uvm", WARN, "CUDA_ERROR_UNKNOWN", ctx,
                          detail="the nvidia_uvm kernel module is not loaded: CUDA programs "
                                 "fail with CUDA_ERROR_UNKNOWN until it is")
    return Check(GROUP, "nvidia_uvm", PASS,
                 "loaded" if ctx["nvidia_uvm"] else "cannot read /proc/modules")


def _device_checks(drv, index, expected, ctx, facts):
    device = {"index": index}
    facts["devices"].append(device)
    try:
        handle = ctypes.c_int()
        drv.check("cuDeviceGet", ctypes.byref(handle), ctypes.c_int(index))
        name = ctypes.create_string_buffer(256)
        drv.check("cuDeviceGetName", name, ctypes.c_int(256), handle)
        major, minor, memory = ctypes.c_int(), ctypes.c_int(), ctypes.c_size_t()
        drv.check("cuDeviceGetAttribute", ctypes.byref(major), ctypes.c_int(ATTR_CC_MAJOR),
                  handle)
        drv.check("cuDeviceGetAttribute", ctypes.byref(minor), ctypes.c_int(ATTR_CC_MINOR),
                  handle)
        drv.check("cuDeviceTotalMem_v2", ctypes.byref(memory), handle)
    except CudaError as exc:
        return [_diagnosed(GROUP, "GPU %d" % index, FAIL, str(exc), ctx)]
    device.update(name=name.value.decode("utf-8", "replace"), memory=memory.value,
                  capability="%d.%d" % (major.value, minor.value))
    arch = arch_of_cc((major.value, minor.value))
    label = "GPU %d: %s, %s, %.1f GiB" % (index, device["name"], arch, memory.value / 2.0 ** 30)
    checks = [Check(GROUP, label, PASS, facts=dict(device))]
    archs = expected.get("archs")
    if archs and not arch_covers(archs, (major.value, minor.value)):
        text = "GPU %d is %s but the build has code only for %s" % (index, arch,
                                                                   " ".join(archs))
        checks.append(_diagnosed(GROUP, "GPU %d architecture" % index, FAIL, text,
                                 dict(ctx, capability=arch)))
    checks.append(_kernel_check(drv, handle, index, device, ctx))
    return checks


def _kernel_check(drv, handle, index, device, ctx):
    name = "vector add on GPU %d (PTX JIT)" % index
    try:
        count, target = run_vector_add(drv, handle)
    except CudaError as exc:
        return _diagnosed(GROUP, name, FAIL, str(exc), ctx)
    except KernelMismatch as exc:
        return Check(GROUP, name, FAIL, str(exc),
                     "The GPU computes wrong results: tell the administrators which node "
                     "and GPU (nvidia-smi -q shows ECC errors) and use another node.")
    device["kernel_ok"] = True
    return Check(GROUP, name, PASS, "%d sums correct (PTX for %s)" % (count, target))


class KernelMismatch(Exception):
    """The kernel ran but its result is wrong."""


def _load_module(drv):
    """Load the PTX, trying each target; (module, target)."""
    last = None
    for version, target in PTX_TARGETS:
        module = ctypes.c_void_p()
        log = ctypes.create_string_buffer(4096)
        options = (ctypes.c_int * 2)(JIT_ERROR_LOG_BUFFER, JIT_ERROR_LOG_BUFFER_SIZE)
        values = (ctypes.c_void_p * 2)(ctypes.cast(log, ctypes.c_void_p).value, 4096)
        source = ctypes.create_string_buffer(ptx_source(version, target).encode("ascii"))
        try:
            drv.check("cuModuleLoadDataEx", ctypes.byref(module), source, ctypes.c_uint(2),
                      options, values)
            return module, target
        except CudaError as exc:
            if log.value:
                exc.args = ("%s (JIT log: %s)" % (exc, log.value.decode("utf-8", "replace")
                                                  .strip()),)
            last = exc
            if exc.code not in (218, 222, 209):
                break
    raise last


def run_vector_add(drv, handle, n=4096):
    """Run the PTX kernel on one device; (n, PTX target). Raises CudaError/KernelMismatch."""
    context = ctypes.c_void_p()
    drv.check("cuDevicePrimaryCtxRetain", ctypes.byref(context), handle)
    buffers, module = [], None
    try:
        drv.check("cuCtxSetCurrent", context)
        module, target = _load_module(drv)
        function = ctypes.c_void_p()
        drv.check("cuModuleGetFunction", ctypes.byref(function), module,
                  KERNEL.encode("ascii"))
        size = ctypes.c_size_t(4 * n)
        a = (ctypes.c_float * n)(*[float(i) for i in range(n)])
        b = (ctypes.c_float * n)(*[2.0 * i + 0.5 for i in range(n)])
        c = (ctypes.c_float * n)()
        for _ in range(3):
            buffers.append(ctypes.c_uint64())
            drv.check("cuMemAlloc_v2", ctypes.byref(buffers[-1]), size)
        drv.check("cuMemcpyHtoD_v2", buffers[0], a, size)
        drv.check("cuMemcpyHtoD_v2", buffers[1], b, size)
        count = ctypes.c_uint32(n)
        params = (ctypes.c_void_p * 4)(*[ctypes.addressof(x) for x in [*buffers, count]])
        threads = 256
        drv.check("cuLaunchKernel", function, ctypes.c_uint((n + threads - 1) // threads),
                  ctypes.c_uint(1), ctypes.c_uint(1), ctypes.c_uint(threads), ctypes.c_uint(1),
                  ctypes.c_uint(1), ctypes.c_uint(0), ctypes.c_void_p(), params,
                  ctypes.c_void_p())
        drv.check("cuCtxSynchronize")
        drv.check("cuMemcpyDtoH_v2", c, buffers[2], size)
        wrong = [i for i in range(n) if c[i] != a[i] + b[i]]
        if wrong:
            i = wrong[0]
            raise KernelMismatch("%d of %d sums wrong (c[%d] = %r, expected %r)"
                                 % (len(wrong), n, i, c[i], a[i] + b[i]))
        return n, target
    finally:
        for buf in buffers:
            if buf.value:
                drv.lib.cuMemFree_v2(buf)
        if module is not None:
            drv.lib.cuModuleUnload(module)
        release = "cuDevicePrimaryCtxRelease_v2" if drv.has("cuDevicePrimaryCtxRelease_v2") \
            else "cuDevicePrimaryCtxRelease"
        getattr(drv.lib, release)(handle)


def _newest_soname(sonames, stem):
    """The path of the newest ``stem``.N library the bundle has (libcudart.so.13 > .12)."""
    best = None
    for name, path in sonames.items():
        found = re.match(re.escape(stem) + r"\.(\d+)$", name)
        if found and (best is None or int(found.group(1)) > best[0]):
            best = (int(found.group(1)), path)
    return best[1] if best else None


def _call_version(path, function, restype, argument=False):
    """Load ``path`` and return ``function``'s version number, or raise OSError/ValueError."""
    lib = ctypes.CDLL(path)
    fn = getattr(lib, function)
    if argument:
        out = ctypes.c_int()
        fn.restype = ctypes.c_int
        code = fn(ctypes.byref(out))
        if code != 0:
            raise ValueError("%s returned error %d" % (function, code))
        return out.value
    fn.restype = restype
    return fn()


def cudnn_version_text(number):
    """cudnnGetVersion's number: 91002 -> 9.10.2 (cuDNN 9), 8907 -> 8.9.7 (cuDNN <= 8)."""
    if number >= 90000:
        return "%d.%d.%d" % (number // 10000, number % 10000 // 100, number % 100)
    return "%d.%d.%d" % (number // 1000, number % 1000 // 100, number % 100)


def check_cuda_libraries(sonames, expected, driver_cuda, context, rel):
    """The bundle's CUDA runtime and cuDNN: loadable, and of the versions that fit."""
    checks = []
    cudart = _newest_soname(sonames, "libcudart.so")
    cudnn = _newest_soname(sonames, "libcudnn.so")
    if cudart is None and cudnn is None:
        if expected.get("cuda"):
            return [Check(CUDA_GROUP, "CUDA runtime", FAIL,
                          "the plan chose CUDA %s but the environment has no libcudart"
                          % expected["cuda"], "The install is incomplete: install the "
                          "bundle again with --force.")]
        return [Check(CUDA_GROUP, "CUDA libraries", PASS, "none in this environment")]
    if ctypes is None:
        return [Check(CUDA_GROUP, "CUDA libraries", FAIL, "ctypes cannot be imported: %s"
                      % _CTYPES_ERROR, "The interpreter is incomplete: install it again.")]
    if cudart is not None:
        checks += _runtime_checks(cudart, expected, driver_cuda, context, rel)
    if cudnn is not None:
        checks.append(_cudnn_check(cudnn, expected, context, rel))
    return checks


def _runtime_checks(path, expected, driver_cuda, context, rel):
    try:
        runtime = _call_version(path, "cudaRuntimeGetVersion", None, argument=True)
    except (OSError, AttributeError, ValueError) as exc:
        return [_diagnosed(CUDA_GROUP, "CUDA runtime", FAIL, str(exc), context,
                           detail="%s cannot be loaded: %s" % (rel(path), exc))]
    text = cuda_version_text(runtime)
    checks = [Check(CUDA_GROUP, "CUDA runtime %s" % text, PASS, rel(path),
                    facts={"runtime": runtime, "path": rel(path)})]
    planned = expected.get("cuda")
    if planned and version_tuple(planned)[:2] != version_tuple(text)[:2]:
        checks.append(Check(CUDA_GROUP, "CUDA runtime is the planned one", WARN,
                            "the plan chose CUDA %s, the bundle's libcudart is %s"
                            % (planned, text), "Pack again; the lock and the bundle differ."))
    if driver_cuda:
        driver = cuda_version_text(driver_cuda)
        ctx = dict(context, driver_cuda=driver, runtime_cuda=text,
                   min_driver=expected.get("min_driver"))
        error = "driver supports CUDA %s but the bundled CUDA runtime is %s" % (driver, text)
        if runtime // 1000 > driver_cuda // 1000 or \
                (runtime > driver_cuda and runtime // 1000 < 11):
            checks.append(_diagnosed(CUDA_GROUP, "driver runs CUDA %s" % text, FAIL, error, ctx))
        elif runtime > driver_cuda:
            checks.append(Check(
                CUDA_GROUP, "driver runs CUDA %s" % text, WARN,
                "%s: it runs through CUDA minor-version compatibility, but code shipped only as "
                "PTX newer than CUDA %s cannot be JIT-compiled" % (error, driver),
                "If kernels fail with 'unsupported toolchain', pack again with --target from "
                "this node's probe, or ask for a newer driver."))
        else:
            checks.append(Check(CUDA_GROUP, "driver runs CUDA %s" % text, PASS,
                                "the driver supports CUDA %s" % driver))
    return checks


def _cudnn_check(path, expected, context, rel):
    try:
        number = _call_version(path, "cudnnGetVersion", ctypes.c_size_t)
    except (OSError, AttributeError) as exc:
        return _diagnosed(CUDA_GROUP, "cuDNN", FAIL, str(exc), context,
                          detail="%s cannot be loaded: %s" % (rel(path), exc))
    found = cudnn_version_text(number)
    planned = expected.get("cudnn")
    if planned:
        want = version_tuple(planned)
        have = version_tuple(found)
        if have[:1] != want[:1] or have[:2] < want[:2]:
            return _diagnosed(CUDA_GROUP, "cuDNN %s" % found, FAIL,
                              "cuDNN %s is loaded but %s was expected" % (found, planned),
                              context, facts={"cudnn": found, "path": rel(path)})
    return Check(CUDA_GROUP, "cuDNN %s" % found, PASS, rel(path),
                 facts={"cudnn": found, "path": rel(path)})


def skipped(reason):
    return [Check(GROUP, "GPU checks", SKIP, reason)]
