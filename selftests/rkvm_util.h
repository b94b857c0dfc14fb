/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers shared by the rkvm lab selftests: module loading, the kernel log,
 * and where the lab keeps things.
 */
#ifndef RKVM_UTIL_H
#define RKVM_UTIL_H

#include <stdbool.h>
#include <stddef.h>

/* The device under test: $RKVM_DEV, default /dev/rkvm. */
const char *rkvm_dev_path(void);
/* True when the device under test is rkvm (not the kvm_intel reference). */
bool rkvm_dev_is_rkvm(void);
/* Path of rkvm.ko: $RKVM_KO, default /lib/modules/rkvm.ko. */
const char *rkvm_ko_path(void);

/* finit_module() of rkvm.ko; returns 0 or -errno. */
int rkvm_load(void);
/* delete_module("rkvm", flags); returns 0 or -errno. */
int rkvm_unload(int flags);
/* True if /proc/modules lists rkvm. */
bool rkvm_loaded(void);
/* CPUID.1:ECX.VMX of the CPU the caller runs on. */
bool cpu_has_vmx(void);

/*
 * The kernel log from a point on: kmsg_open() positions at the end of
 * /dev/kmsg; kmsg_find() then reads every record logged since and reports
 * whether one contains `needle`. The text of all of them is copied into
 * `seen` (NUL-terminated, truncated to `len`) for failure messages.
 */
int kmsg_open(void);
bool kmsg_find(int fd, const char *needle, char *seen, size_t len);

/* KVM_GET_SUPPORTED_CPUID on the device fd dev, grown until it fits (E2BIG
 * protocol); NULL on failure. The caller frees it. */
struct kvm_cpuid2;
struct kvm_cpuid2 *rkvm_supported_cpuid(int dev);

/* KVM_GET_MSRS or KVM_SET_MSRS (`req`) of `n` entries (at most 16) on the
 * vCPU fd: returns the ioctl's result (entries processed, or -1). */
struct kvm_msr_entry;
int rkvm_msrs(int fd, unsigned long req, struct kvm_msr_entry *e, unsigned int n);
/* KVM_SET_MSRS of one MSR: 1 if it was set, 0 if refused. */
int rkvm_set_msr(int fd, unsigned int index, unsigned long long v);

#endif
