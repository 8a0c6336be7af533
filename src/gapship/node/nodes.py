"""``gapship-nodes doctor``: one table from the doctor's --json reports of every node.

``bin/gapship-nodes`` (POSIX sh) runs the doctor once per node through ``srun --label``; each
task prints a block of lines that srun prefixes with its task number::

    0: @gapship-node node17 1
    0: { ...the doctor's --json report... }
    0: @stderr
    0: ...what the doctor wrote to stderr...
    0: @end

This module reads that output, and prints the checks whose status differs between nodes and,
for each node, what fails. Exit status: the worst node's (0 < 1 < 2); a node that gave no
report (the task never ran, or its output was cut) counts as 2.

Standard library only, Python 3.6+: shipped as PREFIX/gapship/node/nodes.py.
"""

import argparse
import json
import re
import sys

from .base import FAIL, PASS, SKIP, WARN

LABEL = re.compile(r"^\s*(\d+): ?(.*)$")
NODE_SCHEMA_VERSION = 1


class NodeResult(object):
    __slots__ = ("exit_status", "node", "report", "stderr", "task")

    def __init__(self, task, node, exit_status, report, stderr):
        self.task = task
        self.node = node
        self.exit_status = exit_status
        self.report = report
        self.stderr = stderr

    def checks(self):
        if not self.report:
            return {}
        return dict(((c.get("group", ""), c.get("name", "")), c)
                    for c in self.report.get("checks", []))

    def failures(self):
        """One line per failing check, or why there is no report."""
        if self.exit_status is None:
            return ["no report (the task did not finish: see srun's messages above)"]
        if self.report is None:
            why = self.stderr.strip().splitlines()
            return ["the doctor could not run (exit %d)%s"
                    % (self.exit_status, ": " + why[0] if why else "")]
        out = []
        for c in self.report.get("checks", []):
            if c.get("status") == FAIL:
                line = "%s %s" % (c.get("group", ""), c.get("name", ""))
                if c.get("detail"):
                    line += ": " + c["detail"]
                out.append(line)
        if not out and self.exit_status:
            out.append("the doctor broke (exit %d)" % self.exit_status)
        return out

    def as_dict(self):
        return {"task": self.task, "node": self.node, "exit_status": self.exit_status,
                "failures": self.failures(), "report": self.report,
                "stderr": self.stderr}


def parse(text):
    """srun --label output -> {task: NodeResult} (a task without @end has no exit status)."""
    lines = {}
    for raw in text.splitlines():
        m = LABEL.match(raw)
        if m:
            lines.setdefault(int(m.group(1)), []).append(m.group(2))
    results = {}
    for task, block in sorted(lines.items()):
        node, status, body, err, part, done = "task %d" % task, None, [], [], None, False
        for line in block:
            if line.startswith("@gapship-node "):
                fields = line.split()
                node = fields[1] if len(fields) > 1 else node
                if len(fields) > 2 and fields[2].isdigit():
                    status = int(fields[2])
                part = body
            elif line == "@stderr":
                part = err
            elif line == "@end":
                done = True
                part = None
            elif part is not None:
                part.append(line)
        report = None
        try:
            report = json.loads("\n".join(body)) if body else None
        except ValueError:
            err = body + err
        if not isinstance(report, dict):
            report = None
        results[task] = NodeResult(task, node, status if done else None, report,
                                   "\n".join(err))
    return results


def differing(results):
    """Checks whose status is not the same on every node that reported: (key, {status: nodes})."""
    reported = [r for r in results if r.report is not None]
    keys = []
    for r in reported:
        for key in r.checks():
            if key not in keys:
                keys.append(key)
    out = []
    for key in keys:
        by_status = {}
        for r in reported:
            c = r.checks().get(key)
            status = c.get("status") if c else "absent"
            by_status.setdefault(status, []).append(r.node)
        if len(by_status) > 1:
            out.append((key, by_status))
    return out


def worst(results, expected):
    statuses = [2 if r.exit_status is None or r.report is None
                else min(max(r.exit_status, 0), 2) for r in results]
    if len(results) < expected:
        statuses.append(2)
    return max(statuses) if statuses else 2


ORDER = (FAIL, WARN, "absent", SKIP, PASS)


def render(results, expected, job, out):
    status = worst(results, expected)
    ok = sum(1 for r in results if r.exit_status == 0 and r.report is not None)
    out.write("gapship-nodes doctor: %d of %d node(s) reported (job %s): %d pass, %d fail\n"
              % (len(results), expected, job, ok, len(results) - ok))
    diff = differing(results)
    if diff:
        out.write("\nchecks that differ between nodes:\n")
        for (group, name), by_status in diff:
            parts = ["%s on %s" % (s, ",".join(by_status[s]))
                     for s in sorted(by_status, key=lambda s: ORDER.index(s)
                                     if s in ORDER else len(ORDER))]
            out.write("  %s %s: %s\n" % (group, name, "; ".join(parts)))
    elif len(results) > 1:
        out.write("\nevery check has the same status on every node\n")
    out.write("\n")
    for r in results:
        fails = r.failures()
        if not fails:
            counts = (r.report or {}).get("counts", {})
            out.write("%s: ok (%d passed, %d warnings)\n"
                      % (r.node, counts.get(PASS, 0), counts.get(WARN, 0)))
        for line in fails:
            out.write("%s: %s\n" % (r.node, line))
    if len(results) < expected:
        out.write("%d node(s) gave no report: srun could not start the doctor there "
                  "(see its messages above)\n" % (expected - len(results)))
    if status:
        prefix = next((r.report.get("prefix") for r in results if r.report), None) or "PREFIX"
        out.write("\nnext: on a failing node, run the doctor alone for the fixes: "
                  "srun -N1 -w NODE %s/bin/gapship-doctor\n" % prefix)
    return status


def main(argv=None):
    parser = argparse.ArgumentParser(prog="gapship-nodes doctor")
    parser.add_argument("output", help="srun --label output of every node's doctor")
    parser.add_argument("--nodes", type=int, required=True, help="nodes in the allocation")
    parser.add_argument("--job", default="?")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with open(args.output) as fh:
        results = list(parse(fh.read()).values())
    if args.json:
        status = worst(results, args.nodes)
        diff = [{"group": g, "name": n, "statuses": s} for (g, n), s in differing(results)]
        json.dump({"schema_version": NODE_SCHEMA_VERSION, "job": args.job,
                   "nodes_expected": args.nodes, "exit_status": status, "differ": diff,
                   "nodes": [r.as_dict() for r in results]}, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return status
    return render(results, args.nodes, args.job, sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
