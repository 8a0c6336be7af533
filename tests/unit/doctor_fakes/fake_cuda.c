/* Test doubles for the NVIDIA driver (libcuda.so.1), the CUDA runtime and cuDNN.
 *
 * Built by the doctor's tests with gcc; behaviour is chosen at call time through
 * environment variables, so that one build serves every scenario:
 *   FAKE_CU_INIT_RC        cuInit's return code (0, 100 = NO_DEVICE, 999 = UNKNOWN)
 *   FAKE_CU_DRIVER         cuDriverGetVersion's value (default 12040)
 *   FAKE_CU_DEVICES        number of devices (default 1)
 *   FAKE_CU_CC             compute capability as major*10+minor (default 80)
 *   FAKE_CU_MODULE_RC      cuModuleLoadDataEx's return code (default 0)
 *   FAKE_CU_WRONG_SUM      when set, the "kernel" adds one to every sum
 *   FAKE_CUDART_VERSION    cudaRuntimeGetVersion's value (default 12080)
 *   FAKE_CUDNN_VERSION     cudnnGetVersion's value (default 91002)
 * The "device" is host memory: cuLaunchKernel runs the vector add on the CPU with the
 * kernel parameters it was given, so the caller's argument marshalling is really tested.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int env_int(const char *name, int fallback) {
    const char *v = getenv(name);
    return v && *v ? atoi(v) : fallback;
}

static const char *last_ptx = 0;

int cuInit(unsigned int flags) { (void)flags; return env_int("FAKE_CU_INIT_RC", 0); }
int cuDriverGetVersion(int *v) { *v = env_int("FAKE_CU_DRIVER", 12040); return 0; }
int cuDeviceGetCount(int *n) { *n = env_int("FAKE_CU_DEVICES", 1); return 0; }
int cuDeviceGet(int *dev, int ordinal) {
    if (ordinal >= env_int("FAKE_CU_DEVICES", 1)) return 101;
    *dev = ordinal; return 0;
}
int cuDeviceGetName(char *name, int len, int dev) {
    (void)dev; strncpy(name, "Fake GPU 80GB", (size_t)len); return 0;
}
int cuDeviceGetAttribute(int *value, int attribute, int dev) {
    (void)dev;
    int cc = env_int("FAKE_CU_CC", 80);
    if (attribute == 75) { *value = cc / 10; return 0; }
    if (attribute == 76) { *value = cc % 10; return 0; }
    return 1;
}
int cuDeviceTotalMem_v2(size_t *bytes, int dev) { (void)dev; *bytes = (size_t)80 << 30; return 0; }
int cuGetErrorName(int code, const char **out) {
    switch (code) {
    case 100: *out = "CUDA_ERROR_NO_DEVICE"; return 0;
    case 999: *out = "CUDA_ERROR_UNKNOWN"; return 0;
    case 222: *out = "CUDA_ERROR_UNSUPPORTED_PTX_VERSION"; return 0;
    default: return 1;
    }
}
int cuGetErrorString(int code, const char **out) {
    switch (code) {
    case 100: *out = "no CUDA-capable device is detected"; return 0;
    case 999: *out = "unknown error"; return 0;
    case 222: *out = "the provided PTX was compiled with an unsupported toolchain."; return 0;
    default: return 1;
    }
}
int cuDevicePrimaryCtxRetain(void **ctx, int dev) { (void)dev; *ctx = (void *)0x1; return 0; }
int cuDevicePrimaryCtxRelease_v2(int dev) { (void)dev; return 0; }
int cuCtxSetCurrent(void *ctx) { return ctx ? 0 : 1; }
int cuCtxSynchronize(void) { return 0; }
int cuModuleLoadDataEx(void **module, const void *image, unsigned int n, int *options,
                       void **values) {
    int rc = env_int("FAKE_CU_MODULE_RC", 0);
    if (rc) {
        for (unsigned int i = 0; i < n; i++)
            if (options[i] == 5) strcpy((char *)values[i], "ptxas fatal: fake JIT refusal");
        return rc;
    }
    last_ptx = (const char *)image;
    *module = (void *)0x2;
    return strstr(last_ptx, ".entry gapship_vadd(") ? 0 : 218;
}
int cuModuleUnload(void *module) { (void)module; return 0; }
int cuModuleGetFunction(void **fn, void *module, const char *name) {
    (void)module;
    if (strcmp(name, "gapship_vadd") != 0) return 500;
    *fn = (void *)0x3; return 0;
}
int cuMemAlloc_v2(uint64_t *ptr, size_t bytes) {
    *ptr = (uint64_t)(uintptr_t)malloc(bytes); return *ptr ? 0 : 2;
}
int cuMemFree_v2(uint64_t ptr) { free((void *)(uintptr_t)ptr); return 0; }
int cuMemcpyHtoD_v2(uint64_t dst, const void *src, size_t bytes) {
    memcpy((void *)(uintptr_t)dst, src, bytes); return 0;
}
int cuMemcpyDtoH_v2(void *dst, uint64_t src, size_t bytes) {
    memcpy(dst, (void *)(uintptr_t)src, bytes); return 0;
}
int cuLaunchKernel(void *fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                   unsigned bz, unsigned shared, void *stream, void **params, void **extra) {
    (void)gy; (void)gz; (void)by; (void)bz; (void)shared; (void)stream; (void)extra;
    if (fn != (void *)0x3 || !params) return 1;
    float *a = (float *)(uintptr_t)*(uint64_t *)params[0];
    float *b = (float *)(uintptr_t)*(uint64_t *)params[1];
    float *c = (float *)(uintptr_t)*(uint64_t *)params[2];
    uint32_t n = *(uint32_t *)params[3];
    float bump = getenv("FAKE_CU_WRONG_SUM") ? 1.0f : 0.0f;
    for (unsigned long i = 0; i < (unsigned long)gx * bx && i < n; i++) c[i] = a[i] + b[i] + bump;
    return 0;
}

/* libcudart.so.12 */
int cudaRuntimeGetVersion(int *v) { *v = env_int("FAKE_CUDART_VERSION", 12080); return 0; }
/* libcudnn.so.9 */
size_t cudnnGetVersion(void) { return (size_t)env_int("FAKE_CUDNN_VERSION", 91002); }
