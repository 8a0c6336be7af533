"""Framework checks (only for the frameworks the environment ships): each runs fwprobe.py in
its own process with a timeout; a failure's stderr goes through the catalogue."""

import json
import os

from .base import FAIL, PASS, SKIP, Check, listing, python_env, run
from .catalogue import explain
from .fwprobe import MARK

GROUP = "frameworks"
HERE = os.path.dirname(os.path.abspath(__file__))
PROBE = os.path.join(HERE, "fwprobe.py")
# The builder's framework table (gapship/compat/data), shipped beside this file at pack time.
TABLE_FILE = "frameworks.json"
TABLE = os.path.join(HERE, TABLE_FILE)


def framework_of_distribution(path=TABLE):
    """Distribution name -> framework family, from the framework table at ``path``."""
    with open(path, encoding="utf-8") as fh:
        table = json.load(fh)
    return {dist: row["family"] for row in table["frameworks"] for dist in row["installed_as"]}


def shipped_frameworks(distributions, families=None):
    """The frameworks among the environment's distributions, sorted. ``families`` maps a
    distribution to its framework (default: the shipped table)."""
    if families is None:
        families = framework_of_distribution()
    found = set()
    for dist in distributions:
        name = str(dist.get("name", "")).lower().replace("_", "-")
        if name in families:
            found.add(families[name])
    return sorted(found)


def check_frameworks(python, frameworks, gpu_usable, timeout, context, expected):
    if not frameworks:
        return []
    if not gpu_usable:
        return [Check(GROUP, listing(frameworks, 3), SKIP,
                      "no usable GPU on this node: the framework GPU checks did not run")]
    return [_check_one(python, name, timeout, context, expected) for name in frameworks]


def _check_one(python, name, timeout, context, expected):
    ran = run([python, "-I", PROBE, name], timeout, python_env())
    ctx = dict(context, package=name)
    result = None
    for line in ran.stdout.splitlines():
        if line.startswith(MARK):
            result = json.loads(line[len(MARK):])
    if ran.timed_out:
        return Check(GROUP, name, FAIL, "the %s check did not finish in %ds" % (name, timeout),
                     "A slow filesystem or a hang: try again with --timeout 900.")
    if result is None:
        detail, remedy, diagnosis = explain(ran.stderr or ran.error or "no output", ctx,
                                            "Run the framework by hand to see the error.")
        return Check(GROUP, name, FAIL, detail, remedy, diagnosis)
    return _judge(name, result, ran.stderr, ctx, expected)


def _judge(name, result, stderr, ctx, expected):
    label = "%s %s" % (name, result.get("version", ""))
    if result.get("cpu_only"):
        wanted = expected.get("framework") == name and expected.get("cuda")
        return Check(GROUP, label, FAIL if wanted else PASS, "a CPU-only build",
                     "The plan chose CUDA %s but a CPU-only %s is installed: pack again."
                     % (expected.get("cuda"), name) if wanted else "", facts=result)
    problems = []
    if name == "torch" and not result.get("available"):
        problems.append("torch.cuda.is_available() is False")
    if name in ("tensorflow", "jax") and not result.get("gpus"):
        problems.append("%s lists no GPU%s" % (name, ": " + result["error"]
                                                if result.get("error") else ""))
    if "matmul_ok" in result and not result["matmul_ok"]:
        problems.append("the matmul on the GPU differs from the CPU result")
    if "conv_ok" in result and not result["conv_ok"]:
        problems.append("the cuDNN convolution differs from the CPU result")
    if name == "tensorflow" and result.get("placed_on") and "GPU" not in result["placed_on"]:
        problems.append("the matmul ran on %s, not on the GPU" % result["placed_on"])
    if not problems:
        parts = ["matmul on the GPU correct"]
        if result.get("conv_ok"):
            parts.append("cuDNN %s convolution correct" % result.get("cudnn"))
        return Check(GROUP, label, PASS, "; ".join(parts), facts=result)
    text = "\n".join([stderr, *problems, result.get("error") or ""])
    _, remedy, diagnosis = explain(text, ctx, "Run the framework by hand: its warnings say "
                                              "why it does not use the GPU.")
    return Check(GROUP, label, FAIL, "; ".join(problems), remedy, diagnosis, facts=result)
