// SPDX-License-Identifier: GPL-2.0
/*
 * /init of the lab's QEMU guest (scripts/lab/guest-kernel.sh builds it into
 * the guest kernel's initramfs). It prints the marker the lab test looks
 * for, with the clock source and a few numbers that show the guest really
 * ran, then resets the machine: QEMU runs with -no-reboot and exits.
 * Freestanding (no libc): raw system calls only.
 */
#include <linux/reboot.h>
#include <asm/unistd.h>

static long sys3(long n, long a, long b, long c)
{
	long ret;

	asm volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c)
		     : "rcx", "r11", "memory");
	return ret;
}

static long sys5(long n, long a, long b, long c, long d, long e)
{
	register long r10 asm("r10") = d;
	register long r8 asm("r8") = e;
	long ret;

	asm volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8)
		     : "rcx", "r11", "memory");
	return ret;
}

static unsigned long len(const char *s)
{
	unsigned long n = 0;

	while (s[n])
		n++;
	return n;
}

static void put(const char *s)
{
	sys3(__NR_write, 1, (long)s, len(s));
}

/* Copies file PATH to the console (at most 255 bytes). */
static void cat(const char *path)
{
	char buf[256];
	long fd = sys3(__NR_open, (long)path, 0, 0), n;

	if (fd < 0) {
		put("(cannot open)\n");
		return;
	}
	n = sys3(__NR_read, fd, (long)buf, sizeof(buf) - 1);
	if (n > 0) {
		buf[n] = 0;
		put(buf);
	}
	sys3(__NR_close, fd, 0, 0);
}

void _start(void)
{
	sys3(__NR_mkdir, (long)"/proc", 0555, 0);
	sys5(__NR_mount, (long)"proc", (long)"/proc", (long)"proc", 0, 0);
	sys3(__NR_mkdir, (long)"/sys", 0555, 0);
	sys5(__NR_mount, (long)"sysfs", (long)"/sys", (long)"sysfs", 0, 0);
	put("rkvm-guest: init reached, clocksource ");
	cat("/sys/devices/system/clocksource/clocksource0/current_clocksource");
	put("rkvm-guest: uptime ");
	cat("/proc/uptime");
	put("rkvm-guest: hello from a Linux guest, powering off\n");
	sys5(__NR_reboot, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2,
	     LINUX_REBOOT_CMD_RESTART, 0, 0);
	for (;;)
		;
}
