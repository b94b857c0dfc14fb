#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""The table of make lab-upstream, from the lab's TAP log.

    upstream-table.py TAP_LOG [TAP_LOG...] LIST

scripts/lab/upstream-guest.sh prints one line per test and device:
    # upstream-result DEVICE TEST RC SECONDS
RC 0 is a pass, 4 a skip (KSFT_SKIP), "timeout" a test killed at the
per-test limit, anything else a failure. A test of LIST without a line for a
device (the boot ended before it) is "not run". Several logs may be
given (say, one run per device, UPSTREAM_DEVICES): a later log's verdict
for a (device, test) replaces an earlier one's. Prints an RST simple table,
test | kvm_intel ept=0 | rkvm, the totals per device, and for each failure
and skip on rkvm the message of its (last) assertion failure, else the last line
it printed, which usually names the missing ioctl or capability.
"""

import re
import sys

DEVICES = [("kvm_intel_ept0", "kvm_intel ept=0"), ("rkvm", "rkvm")]
# Anywhere in a line: a test whose last output line has no newline puts
# the result line right after it.
RESULT = re.compile(r"# upstream-result (\S+) (\S+) (\S+) (\d+)")
# Output lines that say nothing about the failure (the lab has no addr2line).
NOISE = re.compile(r"^# \s*$|addr2line|^# Random seed|^# ok \d|^# 1\.\.\d+$|^# # Totals")


def verdict(rc):
    if rc == "0":
        return "pass"
    if rc == "4":
        return "skip"
    return "fail"  # an exit code, or "timeout"


def cell(rc, secs):
    if rc is None:
        return "not run"
    v = verdict(rc)
    if rc == "timeout":
        return f"fail (timeout, {secs} s)"
    if v == "fail":
        return f"fail (rc {rc}, {secs} s)"
    return f"{v} ({secs} s)"


def main():
    taps, listfile = sys.argv[1:-1], sys.argv[-1]
    tests = [l.split()[0] for l in open(listfile) if l.strip() and not l.startswith("#")]
    got = {}
    # (device, test) -> the message of the test's last assertion failure
    # (the line after "pid=N tid=N errno=..."), else its last output line.
    last = {}
    said = asserted = None
    after_pid = False
    lines = []
    for tap in taps:
        with open(tap, errors="replace") as f:
            lines.extend(f)
    for line in lines:
        line = line.rstrip("\r\n")
        m = RESULT.search(line)
        if m:
            got[(m.group(1), m.group(2))] = (m.group(3), m.group(4))
            last[(m.group(1), m.group(2))] = asserted or said
            said = asserted = None
            after_pid = False
        elif line.startswith("# ") and not NOISE.search(line):
            said = line[2:].strip()
            if after_pid:
                asserted, after_pid = said, False
            elif re.match(r"pid=\d+ tid=\d+", said):
                after_pid = True
    rows = []
    totals = {d: {"pass": 0, "skip": 0, "fail": 0, "not run": 0} for d, _ in DEVICES}
    for t in tests:
        row = [t]
        for d, _ in DEVICES:
            rc, secs = got.get((d, t), (None, None))
            row.append(cell(rc, secs))
            totals[d]["not run" if rc is None else verdict(rc)] += 1
        rows.append(row)
    header = ["test"] + [label for _, label in DEVICES]
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    rule = "  ".join("=" * w for w in widths)

    def fmt(r):
        return "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()

    print(rule)
    print(fmt(header))
    print(rule)
    for r in rows:
        print(fmt(r))
    print(rule)
    print()
    for d, label in DEVICES:
        t = totals[d]
        line = f"{label}: {t['pass']} pass, {t['skip']} skip, {t['fail']} fail"
        if t["not run"]:
            line += f", {t['not run']} not run"
        print(line + f" (of {len(tests)})")
    for kind, pick in (("failures", lambda rc: rc not in ("0", "4")),
                       ("skips", lambda rc: rc == "4")):
        these = [t for t in tests if ("rkvm", t) in got and pick(got[("rkvm", t)][0])]
        if not these:
            continue
        print()
        print(f"rkvm {kind}: assertion message, else last output line:")
        for t in these:
            rc = got[("rkvm", t)][0]
            print(f"  {t}: " + ("killed at the time limit" if rc == "timeout"
                                else last.get(("rkvm", t)) or f"exit {rc}"))


if __name__ == "__main__":
    main()
