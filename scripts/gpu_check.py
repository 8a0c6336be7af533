"""Run work on the GPU with the CUDA runtime an installed gapship environment ships.

Run with the environment's Python after activation (stdlib only, Python 3.6+):
    . PREFIX/activate && python scripts/gpu_check.py
It loads $CUDA_HOME/lib64/libcudart.so.*, copies an array to the GPU, runs a kernel (PTX,
compiled by the shipped ptxas when the view has one, else by the driver's JIT), copies it
back and checks every element. Prints one line per step; exits 1 with the reason on failure.
"""

import ctypes
import glob
import os
import subprocess
import sys
import tempfile

N = 1 << 20
PTX = b"""
.version 7.0
.target sm_50
.address_size 64
.visible .entry add_one(.param .u64 data, .param .u32 n)
{
    .reg .pred %p;
    .reg .f32 %f<3>;
    .reg .b32 %r<5>;
    .reg .b64 %rd<4>;
    ld.param.u64 %rd1, [data];
    ld.param.u32 %r1, [n];
    mov.u32 %r2, %ctaid.x;
    mov.u32 %r3, %ntid.x;
    mov.u32 %r4, %tid.x;
    mad.lo.s32 %r2, %r2, %r3, %r4;
    setp.ge.u32 %p, %r2, %r1;
    @%p bra DONE;
    cvta.to.global.u64 %rd1, %rd1;
    mul.wide.u32 %rd2, %r2, 4;
    add.s64 %rd3, %rd1, %rd2;
    ld.global.f32 %f1, [%rd3];
    add.f32 %f2, %f1, 0f3F800000;
    st.global.f32 [%rd3], %f2;
DONE:
    ret;
}
"""


def fail(message):
    print("gpu-check: FAIL: " + message)
    sys.exit(1)


def check(what, status):
    if status != 0:
        fail(f"{what} returned error {status}")


def main():
    home = os.environ.get("CUDA_HOME")
    if not home:
        fail("CUDA_HOME is not set: activate the environment first")
    found = sorted(glob.glob(os.path.join(home, "lib64", "libcudart.so.*")))
    if not found:
        fail(f"no libcudart.so.* in {home}/lib64")
    cudart = ctypes.CDLL(found[0])
    version = ctypes.c_int()
    check("cudaRuntimeGetVersion", cudart.cudaRuntimeGetVersion(ctypes.byref(version)))
    print(f"gpu-check: runtime {version.value} from {os.path.realpath(found[0])}")
    try:
        driver = ctypes.CDLL("libcuda.so.1")
    except OSError as exc:
        fail(f"no NVIDIA driver on this node (libcuda.so.1: {exc})")
    driver_version = ctypes.c_int()
    check("cudaDriverGetVersion", cudart.cudaDriverGetVersion(ctypes.byref(driver_version)))
    count = ctypes.c_int()
    check("cudaGetDeviceCount", cudart.cudaGetDeviceCount(ctypes.byref(count)))
    print(f"gpu-check: driver supports CUDA {driver_version.value}, {count.value} device(s)")
    check("cuInit", driver.cuInit(0))
    check("cudaSetDevice", cudart.cudaSetDevice(0))
    check("cudaFree(0)", cudart.cudaFree(None))  # makes the primary context current

    major, minor, dev = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
    check("cuDeviceGet", driver.cuDeviceGet(ctypes.byref(dev), 0))
    check("cuDeviceGetAttribute", driver.cuDeviceGetAttribute(ctypes.byref(major), 75, dev))
    check("cuDeviceGetAttribute", driver.cuDeviceGetAttribute(ctypes.byref(minor), 76, dev))
    image, how = PTX + b"\0", "PTX, JIT by the driver"
    ptxas = os.path.join(home, "bin", "ptxas")
    if os.access(ptxas, os.X_OK):
        with tempfile.TemporaryDirectory() as tmp:
            src, out = os.path.join(tmp, "k.ptx"), os.path.join(tmp, "k.cubin")
            with open(src, "wb") as fh:
                fh.write(PTX)
            arch = f"sm_{major.value}{minor.value}"
            subprocess.check_call([ptxas, "-arch=" + arch, src, "-o", out])
            with open(out, "rb") as fh:
                image, how = fh.read(), "cubin from the shipped ptxas for " + arch
    module, kernel = ctypes.c_void_p(), ctypes.c_void_p()
    check("cuModuleLoadData", driver.cuModuleLoadData(ctypes.byref(module), image))
    check("cuModuleGetFunction",
          driver.cuModuleGetFunction(ctypes.byref(kernel), module, b"add_one"))
    print(f"gpu-check: kernel loaded ({how}) on compute capability {major.value}.{minor.value}")

    host = (ctypes.c_float * N)(*range(N))
    dev_ptr = ctypes.c_void_p()
    check("cudaMalloc", cudart.cudaMalloc(ctypes.byref(dev_ptr), ctypes.c_size_t(N * 4)))
    check("cudaMemcpy H2D", cudart.cudaMemcpy(dev_ptr, host, ctypes.c_size_t(N * 4), 1))
    n = ctypes.c_uint(N)
    params = (ctypes.c_void_p * 2)(ctypes.addressof(dev_ptr), ctypes.addressof(n))
    check("cuLaunchKernel", driver.cuLaunchKernel(kernel, (N + 255) // 256, 1, 1, 256, 1, 1,
                                                  0, None, params, None))
    check("cudaDeviceSynchronize", cudart.cudaDeviceSynchronize())
    back = (ctypes.c_float * N)()
    check("cudaMemcpy D2H", cudart.cudaMemcpy(back, dev_ptr, ctypes.c_size_t(N * 4), 2))
    cudart.cudaFree(dev_ptr)
    wrong = [i for i in range(N) if back[i] != i + 1.0]
    if wrong:
        fail(f"{len(wrong)} of {N} elements are wrong (first at {wrong[0]})")
    print(f"gpu-check: OK: {N} elements computed on the GPU and checked")


if __name__ == "__main__":
    main()
