// SPDX-License-Identifier: GPL-2.0
/*
 * The system file descriptor: /dev/rkvm must answer like /dev/kvm.
 *
 * Run with RKVM_DEV=/dev/kvm (kvm_intel loaded) the same binary checks that
 * the expectations below are KVM's own; tests about rkvm's capability table
 * skip there.
 */
#include <errno.h>
#include <fcntl.h>
#include <cpuid.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <termios.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "rkvm_util.h"

/*
 * Capabilities rkvm reports as present, with their values. Must match
 * check_extension() in rust/abi/mod.rs: every capability not listed must
 * read 0. ONLINE_CPUS stands for min(online CPUs, 64),
 * HOST_OSXSAVE for 1 when the host kernel uses XSAVE, else 0.
 */
#define ONLINE_CPUS (-1)
#define HOST_OSXSAVE (-2)
static const struct { long cap; int value; } rkvm_caps[] = {
	{ KVM_CAP_USER_MEMORY, 1 },
	{ KVM_CAP_USER_MEMORY2, 1 },
	{ KVM_CAP_DESTROY_MEMORY_REGION_WORKS, 1 },
	{ KVM_CAP_JOIN_MEMORY_REGIONS_WORKS, 1 },
	{ KVM_CAP_NR_VCPUS, ONLINE_CPUS },
	{ KVM_CAP_MAX_VCPUS, 64 },
	{ KVM_CAP_MAX_VCPU_ID, 64 },
	{ KVM_CAP_NR_MEMSLOTS, 32764 },
	{ KVM_CAP_SET_TSS_ADDR, 1 },
	{ KVM_CAP_SET_IDENTITY_MAP_ADDR, 1 },
	{ KVM_CAP_GET_TSC_KHZ, 1 },
	{ KVM_CAP_IMMEDIATE_EXIT, 1 },
	{ KVM_CAP_USER_NMI, 1 },
	{ KVM_CAP_MP_STATE, 1 },
	{ KVM_CAP_EXT_CPUID, 1 },
	{ KVM_CAP_VCPU_EVENTS, 1 },
	{ KVM_CAP_BINARY_STATS_FD, 1 },
	{ KVM_CAP_MMU_SHADOW_CACHE_CONTROL, 1 },
	{ KVM_CAP_SYNC_MMU, 1 },
	{ KVM_CAP_READONLY_MEM, 1 },
	{ KVM_CAP_MCE, 32 },
	{ KVM_CAP_DEBUGREGS, 1 },
	{ KVM_CAP_XSAVE, 1 },
	{ KVM_CAP_XCRS, HOST_OSXSAVE },
	{ KVM_CAP_IOEVENTFD, 1 },
	{ KVM_CAP_IOEVENTFD_ANY_LENGTH, 1 },
	{ KVM_CAP_INTERNAL_ERROR_DATA, 1 },
	{ KVM_CAP_IRQ_ROUTING, 1 },
	{ KVM_CAP_SIGNAL_MSI, 1 },
	{ KVM_CAP_ADJUST_CLOCK, KVM_CLOCK_REALTIME | KVM_CLOCK_HOST_TSC },
	{ KVM_CAP_X86_ROBUST_SINGLESTEP, 1 },
	{ KVM_CAP_DISABLE_QUIRKS, 1 },
	{ KVM_CAP_DISABLE_QUIRKS2, KVM_X86_QUIRK_SLOT_ZAP_ALL | KVM_X86_QUIRK_MISC_ENABLE_NO_MWAIT |
				   KVM_X86_QUIRK_MWAIT_NEVER_UD_FAULTS },
	{ KVM_CAP_SPLIT_IRQCHIP, 1 },
	{ KVM_CAP_X2APIC_API, KVM_X2APIC_API_USE_32BIT_IDS | KVM_X2APIC_API_DISABLE_BROADCAST_QUIRK },
	{ KVM_CAP_IRQFD, 1 },
	{ KVM_CAP_SET_BOOT_CPU_ID, 1 },
	{ KVM_CAP_VCPU_ATTRIBUTES, 1 },
	{ KVM_CAP_MSR_PLATFORM_INFO, 1 },
	{ KVM_CAP_EXIT_ON_EMULATION_FAILURE, 1 },
	{ KVM_CAP_ENABLE_CAP, 1 },
	{ KVM_CAP_ENABLE_CAP_VM, 1 },
	{ KVM_CAP_ENFORCE_PV_FEATURE_CPUID, 1 },
	{ KVM_CAP_COALESCED_MMIO, 2 },
	{ KVM_CAP_COALESCED_PIO, 1 },
	{ KVM_CAP_SYNC_REGS, KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS | KVM_SYNC_X86_EVENTS },
	{ KVM_CAP_X86_USER_SPACE_MSR, 1 },
	{ KVM_CAP_X86_MSR_FILTER, 1 },
	{ KVM_CAP_SET_GUEST_DEBUG, 1 },
	{ KVM_CAP_SET_GUEST_DEBUG2, KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP |
				    KVM_GUESTDBG_USE_SW_BP | KVM_GUESTDBG_USE_HW_BP |
				    KVM_GUESTDBG_INJECT_DB | KVM_GUESTDBG_INJECT_BP |
				    KVM_GUESTDBG_BLOCKIRQ },
};

FIXTURE(dev) {
	int fd;
};

FIXTURE_SETUP(dev)
{
	self->fd = open(rkvm_dev_path(), O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, self->fd) TH_LOG("open %s: %s", rkvm_dev_path(), strerror(errno));
}

FIXTURE_TEARDOWN(dev)
{
	close(self->fd);
}

TEST_F(dev, is_misc_char_device)
{
	struct stat st;

	ASSERT_EQ(0, fstat(self->fd, &st));
	ASSERT_TRUE(S_ISCHR(st.st_mode));
	/* Both kvm and rkvm are misc devices (major 10). */
	ASSERT_EQ(10U, major(st.st_rdev));
}

TEST_F(dev, api_version_is_12)
{
	ASSERT_EQ(12, ioctl(self->fd, KVM_GET_API_VERSION, 0));
}

TEST_F(dev, api_version_rejects_argument)
{
	errno = 0;
	ASSERT_EQ(-1, ioctl(self->fd, KVM_GET_API_VERSION, 1));
	ASSERT_EQ(EINVAL, errno);
}

TEST_F(dev, unknown_ioctls_fail_with_einval)
{
	const unsigned long cmds[] = {
		_IO(KVMIO, 0xff),
		_IOW(KVMIO, 0xfe, int),
		_IOR(KVMIO, 0x00, int),	/* API version number, wrong shape */
		_IO('Z', 0x00),
		TCGETS,
	};

	for (unsigned int i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		errno = 0;
		EXPECT_EQ(-1, ioctl(self->fd, cmds[i], 0)) TH_LOG("cmd %#lx", cmds[i]);
		EXPECT_EQ(EINVAL, errno) TH_LOG("cmd %#lx: %s", cmds[i], strerror(errno));
	}
}

TEST_F(dev, check_extension_of_unknown_caps_is_0)
{
	const long caps[] = { -1, 1L << 40, 100000, 0x7fffffff };

	for (unsigned int i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
		EXPECT_EQ(0, ioctl(self->fd, KVM_CHECK_EXTENSION, caps[i])) TH_LOG("cap %ld", caps[i]);
	}
}

TEST_F(dev, check_extension_reports_exactly_rkvm_caps)
{
	if (!rkvm_dev_is_rkvm())
		SKIP(return, "rkvm's capability table does not describe %s", rkvm_dev_path());

	for (long cap = 0; cap < 512; cap++) {
		int want = 0;

		for (unsigned int i = 0; i < sizeof(rkvm_caps) / sizeof(rkvm_caps[0]); i++)
			if (rkvm_caps[i].cap == cap)
				want = rkvm_caps[i].value;
		if (want == ONLINE_CPUS) {
			want = sysconf(_SC_NPROCESSORS_ONLN);
			want = want > 64 ? 64 : want;
		}
		if (want == HOST_OSXSAVE) {
			unsigned int a, b, c, d;

			/* CPUID.1:ECX.OSXSAVE mirrors the kernel's CR4.OSXSAVE. */
			__cpuid(1, a, b, c, d);
			want = !!(c & (1U << 27));
		}
		EXPECT_EQ(want, ioctl(self->fd, KVM_CHECK_EXTENSION, cap)) TH_LOG("cap %ld", cap);
	}
}

/* The entry of (function, index) in a CPUID table, or NULL. */
static const struct kvm_cpuid_entry2 *cpuid_find(const struct kvm_cpuid_entry2 *e, unsigned int n,
						 __u32 function, __u32 index)
{
	for (unsigned int i = 0; i < n; i++)
		if (e[i].function == function && e[i].index == index)
			return &e[i];
	return NULL;
}

/*
 * KVM_GET_SUPPORTED_CPUID: E2BIG for a buffer that is too small; otherwise
 * a table with leaves 0 and 1, no duplicate entries, which a vCPU accepts
 * with KVM_SET_CPUID2. rkvm's offers no long mode and no XSAVE yet.
 */
TEST_F(dev, supported_cpuid)
{
	static struct {
		struct kvm_cpuid2 hdr;
		struct kvm_cpuid_entry2 e[256];
	} c;
	const struct kvm_cpuid_entry2 *leaf;
	unsigned int n, i, j;
	int vm, vcpu;

	c.hdr.nent = 1;
	errno = 0;
	EXPECT_EQ(-1, ioctl(self->fd, KVM_GET_SUPPORTED_CPUID, &c));
	EXPECT_EQ(E2BIG, errno);
	c.hdr.nent = 256;
	ASSERT_EQ(0, ioctl(self->fd, KVM_GET_SUPPORTED_CPUID, &c)) TH_LOG("%s", strerror(errno));
	n = c.hdr.nent;
	ASSERT_LE(2U, n);
	ASSERT_GE(256U, n);
	leaf = cpuid_find(c.e, n, 0, 0);
	ASSERT_NE(NULL, leaf);
	EXPECT_LE(1U, leaf->eax);
	leaf = cpuid_find(c.e, n, 1, 0);
	ASSERT_NE(NULL, leaf);
	EXPECT_NE(0U, leaf->edx & 1) TH_LOG("FPU");
	/* The machine-check MSRs work: a VMM like QEMU sets MCE up when offered. */
	EXPECT_EQ(1U << 7 | 1U << 14, leaf->edx & (1U << 7 | 1U << 14))
		TH_LOG("MCE/MCA not offered: edx %#x", leaf->edx);
	for (i = 0; i < n; i++)
		for (j = i + 1; j < n; j++)
			EXPECT_FALSE(c.e[i].function == c.e[j].function &&
				     c.e[i].index == c.e[j].index)
				TH_LOG("duplicate leaf %#x.%u", c.e[i].function, c.e[i].index);
	if (rkvm_dev_is_rkvm()) {
		EXPECT_EQ(0U, leaf->ecx & (1U << 26)) TH_LOG("XSAVE offered");
		leaf = cpuid_find(c.e, n, 0x80000001, 0);
		ASSERT_NE(NULL, leaf);
		/* Long mode runs (4-level shadows) with 1 GiB pages and
		 * SYSCALL (the lab CPU has them; SYSCALL's MSRs are switched
		 * around the VMX window). */
		EXPECT_NE(0U, leaf->edx & (1U << 29)) TH_LOG("long mode not offered");
		EXPECT_NE(0U, leaf->edx & (1U << 26)) TH_LOG("1 GiB pages not offered");
		EXPECT_NE(0U, leaf->edx & (1U << 11)) TH_LOG("SYSCALL not offered");
	}

	vm = ioctl(self->fd, KVM_CREATE_VM, 0);
	ASSERT_LE(0, vm);
	vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	ASSERT_LE(0, vcpu);
	EXPECT_EQ(0, ioctl(vcpu, KVM_SET_CPUID2, &c)) TH_LOG("%s", strerror(errno));
	close(vcpu);
	close(vm);
}

TEST_HARNESS_MAIN
