#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Boot rkvm lab ISOs in Bochs and judge the runs.

Each run boots one ISO on one emulated CPU model. The guest's kernel console
goes to COM1 (console.log); the lab init writes the test results, TAP from
kselftest binaries framed by "rkvm-lab:" lines, to COM2 (tap.log). A run
fails on: timeout, a suite that is missing, unfinished or inconsistent, a
failed test, or any kernel splat (oops, BUG, WARN, lockdep, KASAN, kmemleak,
panic) in the console log other than the known Bochs artifacts listed below.

Runs given together execute concurrently (Bochs is single-threaded).
Results go to stdout, and as "PASS|FAIL|SKIP <name>" lines to --results.
"""

import argparse
import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import threading
import time

# Warnings Linux 7.3 prints under Bochs whatever the module does (documented
# in Documentation/rkvm/lab.rst). Matched on the WARNING line; the report that
# follows it, up to its "end trace" line, is skipped.
KNOWN_ARTIFACTS = [
    re.compile(r"WARNING: arch/x86/kernel/cpu/topology_common\.c:95 at parse_legacy"),
]

# Lockdep, KASAN, UBSAN, kmemleak, RCU and the scheduler report through
# "WARNING:", "BUG:" or "INFO:" headers or the specific lines below; banners
# such as "RCU lockdep checking is enabled" are not reports.
SPLAT = re.compile(
    r"(WARNING:|BUG:|INFO: |kernel BUG at|Oops|general protection fault|"
    r"Kernel panic|KASAN:|UBSAN:|possible circular locking|"
    r"possible recursive locking|inconsistent lock state|"
    r"turning off the locking correctness validator|"
    r"unreferenced object|Call Trace:|RIP: |refcount_t:|list_add corruption|"
    r"list_del corruption|soft lockup|hard LOCKUP|rcu_.*detected stall|"
    r"blocked for more than|panicked at|stack-protector|double fault)"
)
END_TRACE = re.compile(r"---\[ end trace")
TEST_LINE = re.compile(r"^(ok|not ok) (\d+) (.*?)(?: # (SKIP|TODO)\b ?(.*))?$")
PLAN_LINE = re.compile(r"^1\.\.(\d+)")
SUITE_BEGIN = re.compile(r"^rkvm-lab: suite (\S+) begin")
SUITE_END = re.compile(r"^rkvm-lab: suite (\S+) end rc=(-?\d+)")
DONE = "rkvm-lab: done"

BOCHSRC = """\
memory: guest={mem}, host={mem}
cpu: model={model}, count={cpus}, ips=100000000, reset_on_triple_fault=0
romimage: file=/usr/share/bochs/BIOS-bochs-latest
vgaromimage: file=/usr/share/vgabios/vgabios.bin
ata0-master: type=cdrom, path={iso}, status=inserted
boot: cdrom
com1: enabled=1, mode=file, dev={console}
com2: enabled=1, mode=file, dev={tap}
clock: sync=none, time0=946684800
display_library: term
plugin_ctrl: speaker=false
sound: waveoutdrv=dummy, waveindrv=dummy, midioutdrv=dummy
log: {bochslog}
panic: action=fatal
error: action=report
info: action=ignore
debug: action=ignore
"""


class Run:
    """One Bochs boot and its verdict."""

    def __init__(self, spec, outdir, timeout, mem):
        name, iso, model, cpus = spec.split(":")
        self.name, self.iso, self.model, self.cpus = name, iso, model, int(cpus)
        self.dir = os.path.abspath(os.path.join(outdir, name))
        os.makedirs(self.dir, exist_ok=True)
        self.console = os.path.join(self.dir, "console.log")
        self.tap = os.path.join(self.dir, "tap.log")
        self.timeout = timeout
        self.mem = mem
        self.results = []  # (status, name, detail)
        self.problems = []
        self.seconds = 0.0

    def boot(self, follow):
        for f in (self.console, self.tap):
            open(f, "w").close()
        rc = os.path.join(self.dir, "bochsrc")
        with open(rc, "w") as f:
            f.write(BOCHSRC.format(mem=self.mem, model=self.model, cpus=self.cpus,
                                   iso=os.path.abspath(self.iso), console=self.console,
                                   tap=self.tap,
                                   bochslog=os.path.join(self.dir, "bochs.log")))
        dbg = os.path.join(self.dir, "debugger.rc")
        with open(dbg, "w") as f:
            f.write("c\n")
        # Bochs' term display needs a terminal: give it a pty and drain it.
        master, slave = pty.openpty()
        # A 0x0 window makes the curses display overflow a buffer: be 80x25.
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 25, 80, 0, 0))
        env = dict(os.environ, TERM="vt100")
        start = time.monotonic()
        proc = subprocess.Popen(["bochs", "-q", "-f", rc, "-rc", dbg],
                                stdin=slave, stdout=slave, stderr=slave,
                                cwd=self.dir, env=env, start_new_session=True)
        os.close(slave)
        screen = threading.Thread(target=drain, args=(master, os.path.join(self.dir, "screen.log")),
                                  daemon=True)
        screen.start()
        tailers = []
        if follow:
            for path in (self.console, self.tap):
                t = threading.Thread(target=tail, args=(path, proc), daemon=True)
                t.start()
                tailers.append(t)
        verdict = None
        done_at = None
        while verdict is None:
            time.sleep(0.5)
            elapsed = time.monotonic() - start
            tap = read(self.tap)
            if done_at is None and DONE in tap:
                done_at = elapsed
            if done_at is not None and (proc.poll() is not None or elapsed - done_at > 5):
                verdict = "done"
            elif "end Kernel panic" in read(self.console):
                verdict = "kernel panic"
            elif proc.poll() is not None:
                verdict = f"bochs exited early (status {proc.returncode})"
            elif elapsed > self.timeout:
                verdict = f"timeout after {self.timeout} s"
        self.seconds = (done_at if done_at is not None else time.monotonic() - start)
        kill(proc)
        os.close(master)
        for t in tailers:
            t.join(timeout=2)
        if verdict != "done":
            self.problems.append(verdict)

    def judge(self):
        self.parse_tap(read(self.tap))
        for line in find_splats(read(self.console)):
            self.problems.append(f"kernel splat: {line}")

    def parse_tap(self, text):
        suite = None
        plan = None
        count = 0
        saw_suite = False
        for raw in text.splitlines():
            line = raw.rstrip("\r")
            m = SUITE_BEGIN.match(line)
            if m:
                if suite:
                    self.problems.append(f"suite {suite} did not finish")
                suite, plan, count, saw_suite = m.group(1), None, 0, True
                continue
            m = SUITE_END.match(line)
            if m and suite == m.group(1):
                rc = int(m.group(2))
                if plan is None:
                    self.problems.append(f"suite {suite} printed no TAP plan")
                elif count != plan:
                    self.problems.append(f"suite {suite}: {count} results for a plan of {plan}")
                # kselftest: 0 = all passed, 4 = all skipped.
                if rc not in (0, 4) and not any(r[0] == "FAIL" and r[1].startswith(suite + ":")
                                               for r in self.results):
                    self.problems.append(f"suite {suite} exited with {rc}")
                suite = None
                continue
            if suite is None:
                continue
            m = PLAN_LINE.match(line)
            if m and plan is None:
                plan = int(m.group(1))
                continue
            m = TEST_LINE.match(line)
            if m:
                count += 1
                name = f"{suite}:{m.group(3).strip()}"
                if m.group(1) == "not ok":
                    self.results.append(("FAIL", name, ""))
                elif m.group(4) == "SKIP":
                    self.results.append(("SKIP", name, (m.group(5) or "").strip()))
                else:
                    self.results.append(("PASS", name, ""))
        if suite:
            self.problems.append(f"suite {suite} did not finish")
        if not saw_suite:
            self.problems.append("no test suite reported (missing TAP results)")


# Lines that open a kernel report; other SPLAT lines (RIP, Call Trace, ...)
# within REPORT_SPAN lines of an opening belong to that report.
REPORT_HEAD = re.compile(
    r"(WARNING:|BUG:|INFO: |kernel BUG at|Oops|general protection fault|"
    r"Kernel panic|unreferenced object|panicked at|UBSAN:|KASAN:)"
)
REPORT_SPAN = 80


def find_splats(text):
    """One line per kernel report (its first line), minus the known Bochs
    artifacts' reports."""
    found = []
    skipping = False
    last_head = None
    for n, raw in enumerate(text.splitlines()):
        line = raw.rstrip("\r")
        if skipping:
            if END_TRACE.search(line):
                skipping = False
            continue
        if any(p.search(line) for p in KNOWN_ARTIFACTS):
            skipping = True
            continue
        if not SPLAT.search(line):
            continue
        in_report = last_head is not None and n - last_head <= REPORT_SPAN
        if REPORT_HEAD.search(line) or not in_report:
            found.append(line.strip())
            last_head = n
    return found


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def drain(fd, path):
    """Read the emulator's terminal so it never blocks; keep the start of it
    (Bochs' own start-up messages and errors) for diagnosis."""
    kept = 0
    with open(path, "wb") as out:
        while True:
            try:
                r, _, _ = select.select([fd], [], [], 1)
                if not r:
                    continue
                data = os.read(fd, 65536)
            except OSError:
                return
            if not data:
                return
            if kept < 1 << 20:
                out.write(data)
                out.flush()
                kept += len(data)


def tail(path, proc):
    """Copy a growing log to stdout while the emulator runs."""
    with open(path, errors="replace") as f:
        while True:
            chunk = f.read()
            if chunk:
                sys.stdout.write(chunk.replace("\r", ""))
                sys.stdout.flush()
            elif proc.poll() is not None:
                return
            else:
                time.sleep(0.2)


def kill(proc):
    """Bochs under the term display ignores SIGTERM: SIGKILL its group."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", action="append", required=True,
                    help="NAME:ISO:CPU_MODEL:NCPUS (repeat to run several at once)")
    ap.add_argument("--outdir", required=True)
    ap.add_argument("--timeout", type=int, default=1200, help="seconds per boot")
    ap.add_argument("--mem", type=int, default=512, help="guest MiB")
    ap.add_argument("--results", help="append PASS/FAIL/SKIP lines here")
    ap.add_argument("--follow", action="store_true",
                    help="stream the guest's console and test output (one run only)")
    args = ap.parse_args()

    runs = [Run(s, args.outdir, args.timeout, args.mem) for s in args.run]
    threads = [threading.Thread(target=r.boot, args=(args.follow,)) for r in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    lines = []
    ok = True
    for r in runs:
        r.judge()
        print(f"== lab run {r.name}: {r.model} x{r.cpus}, {r.seconds:.0f} s to the end "
              f"marker; logs in {r.dir}")
        for status, name, detail in r.results:
            print(f"  {status} {r.name}/{name}" + (f" ({detail})" if detail else ""))
            lines.append(f"{status} lab/{r.name}/{name}")
        for p in r.problems:
            print(f"  FAIL {r.name}: {p}")
            lines.append(f"FAIL lab/{r.name}: {p}")
        if r.problems or any(s == "FAIL" for s, _, _ in r.results):
            ok = False
            print(f"  -- last console lines of {r.name}:")
            for l in read(r.console).splitlines()[-15:]:
                print("     " + l.rstrip("\r"))
    if args.results:
        with open(args.results, "a") as f:
            f.write("".join(l + "\n" for l in lines))
    passed = sum(l.startswith("PASS") for l in lines)
    failed = sum(l.startswith("FAIL") for l in lines)
    skipped = sum(l.startswith("SKIP") for l in lines)
    print(f"lab: {passed} passed, {failed} failed, {skipped} skipped")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
