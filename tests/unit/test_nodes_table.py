"""gapship.node.nodes: srun --label output of several nodes' doctors -> one table and the worst
exit status (a real single-node Slurm runs it end to end in test_slurm_nodes)."""

from __future__ import annotations

import io
import json

from gapship.node import nodes


def _report(uvm: str, driver: str = "pass", prefix: str = "/home/u/envs/t") -> str:
    checks = [{"group": "imports", "name": "torch", "status": "pass", "detail": "2.4.1"},
              {"group": "gpu", "name": "driver", "status": driver,
               "detail": "driver 470 < 525 needed" if driver == "fail" else "550"},
              {"group": "gpu", "name": "nvidia_uvm", "status": uvm,
               "detail": "nvidia_uvm not loaded" if uvm == "fail" else ""}]
    fails = sum(c["status"] == "fail" for c in checks)
    return json.dumps({"schema_version": 1, "prefix": prefix, "exit_status": int(fails > 0),
                       "counts": {"pass": 3 - fails, "warn": 0, "fail": fails, "skip": 0},
                       "checks": checks}, indent=1)


def _block(task: int, node: str, rc: int, report: str, stderr: str = "",
           end: bool = True) -> str:
    lines = [f"@gapship-node {node} {rc}", *report.splitlines(), "@stderr",
             *stderr.splitlines()] + (["@end"] if end else [])
    return "".join(f"{task:>2}: {line}\n" for line in lines)


def test_the_table_names_what_differs_and_what_fails_on_each_node() -> None:
    text = (_block(0, "node1", 0, _report("pass")) + _block(1, "node17", 1, _report("fail"))
            + _block(2, "node3", 1, _report("pass", driver="fail")))
    results = list(nodes.parse(text).values())
    out = io.StringIO()
    assert nodes.render(results, 3, "42", out) == 1
    table = out.getvalue()
    assert "3 of 3 node(s) reported (job 42): 1 pass, 2 fail" in table
    assert "  gpu nvidia_uvm: fail on node17; pass on node1,node3" in table
    assert "  gpu driver: fail on node3; pass on node1,node17" in table
    assert "imports torch" not in table.split("checks that differ")[1].split("\n\n")[0]
    assert "node17: gpu nvidia_uvm: nvidia_uvm not loaded" in table
    assert "node3: gpu driver: driver 470 < 525 needed" in table
    assert "node1: ok (3 passed, 0 warnings)" in table
    assert "srun -N1 -w NODE /home/u/envs/t/bin/gapship-doctor" in table


def test_a_node_whose_doctor_broke_or_never_reported_makes_the_status_2() -> None:
    text = (_block(0, "node1", 0, _report("pass"))
            + _block(1, "node2", 2, "", "gapship-doctor: FAIL interpreter: GLIBC_2.34 not found")
            + _block(2, "node3", 0, _report("pass"), end=False))
    results = list(nodes.parse(text).values())
    out = io.StringIO()
    assert nodes.render(results, 4, "7", out) == 2
    table = out.getvalue()
    assert "node2: the doctor could not run (exit 2): gapship-doctor: FAIL interpreter" in table
    assert "node3: no report (the task did not finish" in table
    assert "1 node(s) gave no report" in table


def test_srun_lines_without_a_label_are_ignored() -> None:
    text = "srun: error: node9: task 1: Exited with exit code 1\n" + _block(
        0, "node1", 0, _report("pass"))
    results = list(nodes.parse(text).values())
    assert [r.node for r in results] == ["node1"] and nodes.worst(results, 1) == 0
