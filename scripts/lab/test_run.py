# SPDX-License-Identifier: GPL-2.0
"""Unit tests of the lab runner's judgement (scripts/lab/run.py): the splat
scan and the TAP parser decide whether a lab run passes, so they are tested
on the host with real and synthetic logs."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402

ARTIFACT = """\
[    0.000000] WARNING: arch/x86/kernel/cpu/topology_common.c:95 at parse_legacy+0x261/0x340, CPU#0: swapper/0
[    0.000000] Modules linked in:
[    0.000000] RIP: 0010:parse_legacy+0x261/0x340
[    0.000000] Call Trace:
[    0.000000]  <TASK>
[    0.000000] ---[ end trace 0000000000000000 ]---
"""

BANNERS = """\
[    1.641350] rcu: 	RCU lockdep checking is enabled.
[   10.883205] Lock dependency validator: Copyright (c) 2006 Red Hat, Inc., Ingo Molnar
[   11.000000] kasan: KernelAddressSanitizer initialized (generic)
[  110.141171] kmemleak: Kernel memory leak detector initialized (mem pool available: 15028)
[  122.076876] rkvm: cannot load: VMX not supported by the CPU (CPUID.1:ECX.VMX is 0)
"""


class SplatScan(unittest.TestCase):
    def test_known_artifact_and_banners_pass(self):
        self.assertEqual(run.find_splats(ARTIFACT + BANNERS), [])

    def test_reports_are_found(self):
        reports = [
            "[   12.5] WARNING: rust/vmx/probe.rs:10 at rkvm_init+0x1/0x2, CPU#0: insmod/77",
            "[   12.5] BUG: KASAN: slab-use-after-free in rkvm_release+0x10/0x20",
            "[   12.5] WARNING: possible circular locking dependency detected",
            "[   12.5] BUG: sleeping function called from invalid context at mm/slub.c:4100",
            "[   12.5] unreferenced object 0xffff888004c1e000 (size 4096):",
            "[   12.5] Oops: general protection fault, probably for non-canonical address",
            "[   12.5] rust_kernel: panicked at rust/vmx/caps.rs:1:1:",
            "[   12.5] Kernel panic - not syncing: Fatal exception",
            "[   12.5] INFO: task insmod:77 blocked for more than 120 seconds.",
        ]
        for line in reports:
            with self.subTest(line=line):
                self.assertEqual(run.find_splats(BANNERS + line + "\n"), [line.strip()])

    def test_report_after_an_artifact_is_found(self):
        line = "[    5.0] WARNING: mm/slub.c:1 at foo+0x1/0x2, CPU#1: swapper/1"
        self.assertEqual(run.find_splats(ARTIFACT + line + "\n"), [line])

    def test_one_report_counts_once(self):
        report = """\
[   94.36] WARNING: rust/rkvm.rs:45 at init_module+0x11/0x1000 [rkvm], CPU#1: insmod/99
[   94.37] Modules linked in: rkvm(O+)
[   94.38] RIP: 0010:init_module+0x11/0x1000 [rkvm]
[   94.39] Call Trace:
[   94.40]  <TASK>
[   94.41] RIP: 0033:0x43dd09
[   94.42] ---[ end trace 0000000000000000 ]---
"""
        self.assertEqual(run.find_splats(report), [report.splitlines()[0]])
        # Two reports: two entries.
        self.assertEqual(len(run.find_splats(report + report)), 2)

    def test_stray_trace_without_header_is_found(self):
        line = "[    7.0] Call Trace:"
        self.assertEqual(run.find_splats(BANNERS + line + "\n"), [line])

    def test_same_warning_at_another_line_is_not_excused(self):
        other = ARTIFACT.replace("topology_common.c:95", "topology_common.c:96")
        self.assertIn(other.splitlines()[0], run.find_splats(other))


def judged(tap):
    r = run.Run("x:iso:model:1", "/tmp/rkvm-test-run", 1, 64)
    r.parse_tap(tap)
    return r


SUITE_OK = """\
rkvm-lab: suite s begin
TAP version 13
1..3
ok 1 global.a
ok 2 global.b # SKIP no widget
# a comment
ok 3 global.c
rkvm-lab: suite s end rc=0
"""


class TapParse(unittest.TestCase):
    def test_passing_suite(self):
        r = judged(SUITE_OK)
        self.assertEqual(r.problems, [])
        self.assertEqual([s for s, _, _ in r.results], ["PASS", "SKIP", "PASS"])
        self.assertEqual(r.results[1], ("SKIP", "s:global.b", "no widget"))

    def test_failed_test(self):
        r = judged(SUITE_OK.replace("ok 3 global.c", "not ok 3 global.c").replace("rc=0", "rc=1"))
        self.assertEqual(r.problems, [])
        self.assertEqual(r.results[2], ("FAIL", "s:global.c", ""))

    def test_missing_results(self):
        self.assertEqual(judged("").problems, ["no test suite reported (missing TAP results)"])

    def test_unfinished_suite(self):
        r = judged(SUITE_OK.replace("rkvm-lab: suite s end rc=0\n", ""))
        self.assertIn("suite s did not finish", r.problems)

    def test_short_suite(self):
        r = judged(SUITE_OK.replace("ok 3 global.c\n", ""))
        self.assertIn("suite s: 2 results for a plan of 3", r.problems)

    def test_no_plan(self):
        r = judged(SUITE_OK.replace("1..3\n", ""))
        self.assertIn("suite s printed no TAP plan", r.problems)

    def test_crash_without_failed_test(self):
        r = judged(SUITE_OK.replace("rc=0", "rc=139"))
        self.assertIn("suite s exited with 139", r.problems)

    def test_carriage_returns_from_the_serial_port(self):
        r = judged(SUITE_OK.replace("\n", "\r\n"))
        self.assertEqual(r.problems, [])
        self.assertEqual(len(r.results), 3)


if __name__ == "__main__":
    unittest.main()
