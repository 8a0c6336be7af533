"""One framework's GPU smoke test, run by the doctor in its own process (a crash or a hang
stays there): ``python -I fwprobe.py torch|tensorflow|jax``. Prints one result line."""

import json
import sys

MARK = "GAPSHIP-RESULT "
TOLERANCE = 1e-3


def probe_torch():
    import torch

    out = {"version": torch.__version__, "cuda": torch.version.cuda}
    if not torch.version.cuda:
        out["cpu_only"] = True
        return out
    out["available"] = torch.cuda.is_available()
    if not out["available"]:
        return out
    # TF32 would make the GPU result differ from the CPU one by more than the tolerance
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    out["devices"] = torch.cuda.device_count()
    out["device"] = torch.cuda.get_device_name(0)
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(512, 512, generator=gen)
    b = torch.randn(512, 512, generator=gen)
    got = (a.cuda() @ b.cuda()).cpu()
    out["matmul_ok"] = bool(torch.allclose(got, a @ b, rtol=TOLERANCE, atol=TOLERANCE))
    out["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() \
        else None
    if out["cudnn"]:
        x = torch.randn(2, 3, 32, 32, generator=gen)
        w = torch.randn(8, 3, 3, 3, generator=gen)
        conv = torch.nn.functional.conv2d
        gpu = conv(x.cuda(), w.cuda()).cpu()
        out["conv_ok"] = bool(torch.allclose(gpu, conv(x, w), rtol=TOLERANCE, atol=TOLERANCE))
    return out


def probe_tensorflow():
    import tensorflow as tf

    out = {"version": tf.__version__, "built_with_cuda": bool(tf.test.is_built_with_cuda())}
    build = getattr(tf.sysconfig, "get_build_info", dict)()
    out["cuda"] = build.get("cuda_version")
    out["cudnn"] = build.get("cudnn_version")
    gpus = tf.config.list_physical_devices("GPU")
    out["gpus"] = len(gpus)
    if gpus:
        import numpy as np  # after tensorflow: a missing framework is named first

        tf.config.experimental.enable_tensor_float_32_execution(False)
        rng = np.random.RandomState(0)
        a = rng.rand(256, 256).astype("float32")
        b = rng.rand(256, 256).astype("float32")
        with tf.device("/GPU:0"):
            c = tf.matmul(a, b)
        out["placed_on"] = c.device
        out["matmul_ok"] = bool(np.allclose(c.numpy(), a @ b, rtol=TOLERANCE, atol=TOLERANCE))
    return out


def probe_jax():
    import jax
    import jax.numpy as jnp
    import numpy as np

    out = {"version": jax.__version__}
    try:
        devices = jax.devices("gpu")
    except RuntimeError as exc:
        out["error"] = str(exc)
        devices = []
    out["gpus"] = len(devices)
    if devices:
        rng = np.random.RandomState(0)
        a = rng.rand(256, 256).astype("float32")
        b = rng.rand(256, 256).astype("float32")
        matmul = jax.jit(lambda x, y: jnp.matmul(x, y, precision="highest"))
        c = matmul(jax.device_put(a, devices[0]), jax.device_put(b, devices[0]))
        c.block_until_ready()
        placed = getattr(c, "devices", None)
        out["placed_on"] = str(sorted(placed(), key=str)[0]) if placed else str(devices[0])
        out["matmul_ok"] = bool(np.allclose(np.asarray(c), a @ b, rtol=TOLERANCE,
                                            atol=TOLERANCE))
    return out


PROBES = {"torch": probe_torch, "tensorflow": probe_tensorflow, "jax": probe_jax}


def main(argv):
    result = PROBES[argv[0]]()
    sys.stdout.write(MARK + json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
