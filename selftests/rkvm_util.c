// SPDX-License-Identifier: GPL-2.0
#include <cpuid.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <linux/kvm.h>

#include "rkvm_util.h"

const char *rkvm_dev_path(void)
{
	const char *p = getenv("RKVM_DEV");

	return p && *p ? p : "/dev/rkvm";
}

bool rkvm_dev_is_rkvm(void)
{
	return strcmp(rkvm_dev_path(), "/dev/rkvm") == 0;
}

const char *rkvm_ko_path(void)
{
	const char *p = getenv("RKVM_KO");

	return p && *p ? p : "/lib/modules/rkvm.ko";
}

int rkvm_load(void)
{
	int fd = open(rkvm_ko_path(), O_RDONLY | O_CLOEXEC);
	int ret;

	if (fd < 0)
		return -errno;
	ret = syscall(SYS_finit_module, fd, "", 0) ? -errno : 0;
	close(fd);
	return ret;
}

int rkvm_unload(int flags)
{
	return syscall(SYS_delete_module, "rkvm", flags) ? -errno : 0;
}

bool rkvm_loaded(void)
{
	char line[256];
	bool found = false;
	FILE *f = fopen("/proc/modules", "r");

	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f))
		found = strncmp(line, "rkvm ", 5) == 0;
	fclose(f);
	return found;
}

bool cpu_has_vmx(void)
{
	unsigned int a, b, c, d;

	__cpuid(1, a, b, c, d);
	return c & (1u << 5);
}

int kmsg_open(void)
{
	int fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);

	if (fd >= 0 && lseek(fd, 0, SEEK_END) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

bool kmsg_find(int fd, const char *needle, char *seen, size_t len)
{
	char rec[2048];
	size_t used = 0;
	bool found = false;
	ssize_t n;

	if (len)
		seen[0] = '\0';
	for (;;) {
		n = read(fd, rec, sizeof(rec) - 1);
		if (n < 0 && errno == EPIPE)
			continue;	/* records were overwritten: keep going */
		if (n <= 0)
			break;
		rec[n] = '\0';
		/* A record is "prio,seq,time,flags;text\n": keep the text. */
		char *text = strchr(rec, ';');

		text = text ? text + 1 : rec;
		if (strstr(text, needle))
			found = true;
		if (used + 1 < len) {
			size_t k = strlen(text);

			if (k > len - used - 1)
				k = len - used - 1;
			memcpy(seen + used, text, k);
			used += k;
			seen[used] = '\0';
		}
	}
	return found;
}

struct kvm_cpuid2 *rkvm_supported_cpuid(int dev)
{
	struct kvm_cpuid2 *c = NULL;
	int n;

	for (n = 64; n <= 1024; n *= 2) {
		free(c);
		c = calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));
		if (!c)
			return NULL;
		c->nent = n;
		if (ioctl(dev, KVM_GET_SUPPORTED_CPUID, c) == 0)
			return c;
		if (errno != E2BIG)
			break;
	}
	free(c);
	return NULL;
}

int rkvm_msrs(int fd, unsigned long req, struct kvm_msr_entry *e, unsigned int n)
{
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e[16];
	} m = { .hdr.nmsrs = n };
	int r;

	if (n > 16)
		return -1;
	memcpy(m.e, e, n * sizeof(*e));
	r = ioctl(fd, req, &m);
	memcpy(e, m.e, n * sizeof(*e));
	return r;
}

int rkvm_set_msr(int fd, unsigned int index, unsigned long long v)
{
	struct kvm_msr_entry e = { .index = index, .data = v };

	return rkvm_msrs(fd, KVM_SET_MSRS, &e, 1);
}
