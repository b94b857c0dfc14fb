// SPDX-License-Identifier: GPL-2.0
/*
 * VM and vCPU file descriptors: creation, limits, memory slots, registers,
 * mmap, lifetimes and the caller check, with the errno KVM gives.
 *
 * Run against /dev/rkvm, and with RKVM_DEV=/dev/kvm against kvm_intel to
 * show the expectations are KVM's; the few places where rkvm deliberately
 * differs are marked and skip or branch on rkvm_dev_is_rkvm().
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "rkvm_util.h"

#define PAGE 4096UL
#define MB (1UL << 20)

FIXTURE(vm) {
	int dev, vm;
	void *mem;		/* 4 MiB of backing memory */
};

FIXTURE_SETUP(vm)
{
	self->dev = open(rkvm_dev_path(), O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, self->dev) TH_LOG("open %s: %s", rkvm_dev_path(), strerror(errno));
	self->vm = ioctl(self->dev, KVM_CREATE_VM, 0);
	ASSERT_LE(0, self->vm) TH_LOG("KVM_CREATE_VM: %s", strerror(errno));
	self->mem = mmap(NULL, 4 * MB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, self->mem);
}

FIXTURE_TEARDOWN(vm)
{
	munmap(self->mem, 4 * MB);
	close(self->vm);
	close(self->dev);
}

/* KVM_SET_USER_MEMORY_REGION; returns 0 or -errno. */
static int set_region(int vm, __u32 slot, __u32 flags, __u64 gpa, __u64 size, void *uaddr)
{
	struct kvm_userspace_memory_region r = {
		.slot = slot, .flags = flags, .guest_phys_addr = gpa,
		.memory_size = size, .userspace_addr = (__u64)(unsigned long)uaddr,
	};

	return ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r) ? -errno : 0;
}

/* KVM_ENABLE_CAP on the VM: the quirk switches, KVM's errnos. */
TEST_F(vm, enable_cap_disable_quirks)
{
	struct kvm_enable_cap c = {
		.cap = KVM_CAP_DISABLE_QUIRKS2, .args = { KVM_X86_QUIRK_SLOT_ZAP_ALL },
	};
	int q = ioctl(self->dev, KVM_CHECK_EXTENSION, KVM_CAP_DISABLE_QUIRKS2);

	EXPECT_NE(0, q & KVM_X86_QUIRK_SLOT_ZAP_ALL) TH_LOG("quirks %#x", q);
	EXPECT_EQ(0, ioctl(self->vm, KVM_ENABLE_CAP, &c)) TH_LOG("%s", strerror(errno));
	/* A quirk the device does not have (bit 30 on both). */
	c.args[0] = 1ULL << 30;
	errno = 0;
	EXPECT_EQ(-1, ioctl(self->vm, KVM_ENABLE_CAP, &c));
	EXPECT_EQ(EINVAL, errno);
	/* The old form ignores unknown bits. */
	c.cap = KVM_CAP_DISABLE_QUIRKS;
	EXPECT_EQ(0, ioctl(self->vm, KVM_ENABLE_CAP, &c));
	c.flags = 1;
	errno = 0;
	EXPECT_EQ(-1, ioctl(self->vm, KVM_ENABLE_CAP, &c));
	EXPECT_EQ(EINVAL, errno);
	memset(&c, 0, sizeof(c));
	c.cap = 100000;
	errno = 0;
	EXPECT_EQ(-1, ioctl(self->vm, KVM_ENABLE_CAP, &c));
	EXPECT_EQ(EINVAL, errno);
	errno = 0;
	EXPECT_EQ(-1, ioctl(self->vm, KVM_ENABLE_CAP, (void *)8));
	EXPECT_EQ(EFAULT, errno);
}

/*
 * KVM_ENABLE_CAP(KVM_CAP_MAX_VCPU_ID): up to the reported bound, once (the
 * same value again is fine), then vCPU ids at or above it are refused.
 */
TEST_F(vm, enable_cap_max_vcpu_id)
{
	struct kvm_enable_cap c = { .cap = KVM_CAP_MAX_VCPU_ID };
	int max = ioctl(self->vm, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPU_ID);
	int fd;

	ASSERT_LT(2, max);
	c.args[0] = max + 1;
	errno = 0;
	EXPECT_EQ(-1, ioctl(self->vm, KVM_ENABLE_CAP, &c));
	EXPECT_EQ(EINVAL, errno);
	c.args[0] = 2;
	EXPECT_EQ(0, ioctl(self->vm, KVM_ENABLE_CAP, &c)) TH_LOG("%s", strerror(errno));
	EXPECT_EQ(0, ioctl(self->vm, KVM_ENABLE_CAP, &c)) TH_LOG("the same again");
	c.args[0] = 3;
	errno = 0;
	EXPECT_EQ(-1, ioctl(self->vm, KVM_ENABLE_CAP, &c));
	EXPECT_EQ(EINVAL, errno);
	errno = 0;
	EXPECT_EQ(-1, ioctl(self->vm, KVM_CREATE_VCPU, 2));
	EXPECT_EQ(EINVAL, errno);
	errno = 0;
	EXPECT_EQ(-1, ioctl(self->vm, KVM_CREATE_VCPU, 1UL << 32));
	EXPECT_EQ(EINVAL, errno);
	fd = ioctl(self->vm, KVM_CREATE_VCPU, 1);
	EXPECT_LE(0, fd) TH_LOG("%s", strerror(errno));
	if (fd >= 0)
		close(fd);
}

/* An ioctl number the VM fd does not know: ENOTTY, as KVM. */
TEST_F(vm, unknown_vm_ioctl_is_enotty)
{
	errno = 0;
	EXPECT_EQ(-1, ioctl(self->vm, _IO(KVMIO, 0xfe), 0));
	EXPECT_EQ(ENOTTY, errno);
}

TEST_F(vm, create_vm_rejects_unknown_type)
{
	errno = 0;
	EXPECT_EQ(-1, ioctl(self->dev, KVM_CREATE_VM, 0xff));
	EXPECT_EQ(EINVAL, errno);
}

TEST_F(vm, vm_fd_is_close_on_exec)
{
	EXPECT_EQ(FD_CLOEXEC, fcntl(self->vm, F_GETFD) & FD_CLOEXEC);
}

TEST_F(vm, vcpu_mmap_size)
{
	int size = ioctl(self->dev, KVM_GET_VCPU_MMAP_SIZE, 0);

	/* kvm_run, the PIO page and the coalesced-MMIO ring. */
	EXPECT_EQ(3 * (int)PAGE, size);
	errno = 0;
	EXPECT_EQ(-1, ioctl(self->dev, KVM_GET_VCPU_MMAP_SIZE, 1));
	EXPECT_EQ(EINVAL, errno);
}

TEST_F(vm, vcpu_ids_are_bounded_by_max_vcpu_id)
{
	int max_id = ioctl(self->vm, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPU_ID);
	int fd;

	ASSERT_LT(0, max_id);
	errno = 0;
	EXPECT_EQ(-1, ioctl(self->vm, KVM_CREATE_VCPU, max_id));
	EXPECT_EQ(EINVAL, errno);
	errno = 0;
	EXPECT_EQ(-1, ioctl(self->vm, KVM_CREATE_VCPU, -1L));
	EXPECT_EQ(EINVAL, errno);
	fd = ioctl(self->vm, KVM_CREATE_VCPU, max_id - 1);
	EXPECT_LE(0, fd) TH_LOG("id %d: %s", max_id - 1, strerror(errno));
	close(fd);
}

TEST_F(vm, duplicate_vcpu_id_is_eexist_even_after_close)
{
	int fd = ioctl(self->vm, KVM_CREATE_VCPU, 1);

	ASSERT_LE(0, fd);
	errno = 0;
	EXPECT_EQ(-1, ioctl(self->vm, KVM_CREATE_VCPU, 1));
	EXPECT_EQ(EEXIST, errno);
	close(fd);
	errno = 0;
	EXPECT_EQ(-1, ioctl(self->vm, KVM_CREATE_VCPU, 1));
	EXPECT_EQ(EEXIST, errno);
	fd = ioctl(self->vm, KVM_CREATE_VCPU, 0);
	EXPECT_LE(0, fd);
	close(fd);
}

TEST_F(vm, caps_on_vm_fd_match_system_fd)
{
	const long caps[] = { KVM_CAP_USER_MEMORY, KVM_CAP_NR_MEMSLOTS, KVM_CAP_MAX_VCPUS,
			      KVM_CAP_MAX_VCPU_ID, KVM_CAP_USER_MEMORY2, 100000 };

	for (unsigned int i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
		EXPECT_EQ(ioctl(self->dev, KVM_CHECK_EXTENSION, caps[i]),
			  ioctl(self->vm, KVM_CHECK_EXTENSION, caps[i])) TH_LOG("cap %ld", caps[i]);
	}
	EXPECT_LT(0, ioctl(self->vm, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY));
	EXPECT_LT(0, ioctl(self->vm, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY2));
}

TEST_F(vm, memory_region_create_overlap_move_delete)
{
	char *m = self->mem;

	ASSERT_EQ(0, set_region(self->vm, 0, 0, 0, MB, m));
	/* Same request again: nothing changes. */
	EXPECT_EQ(0, set_region(self->vm, 0, 0, 0, MB, m));
	/* Overlapping another slot, at its start, middle or end. */
	EXPECT_EQ(-EEXIST, set_region(self->vm, 1, 0, 0, MB, m + MB));
	EXPECT_EQ(-EEXIST, set_region(self->vm, 1, 0, MB - PAGE, MB, m + MB));
	/* Adjacent is fine. */
	EXPECT_EQ(0, set_region(self->vm, 1, 0, MB, MB, m + MB));
	/* Moving slot 1 onto slot 0: EEXIST; elsewhere: fine. */
	EXPECT_EQ(-EEXIST, set_region(self->vm, 1, 0, PAGE, MB, m + MB));
	EXPECT_EQ(0, set_region(self->vm, 1, 0, 16 * MB, MB, m + MB));
	/* Changing size or backing of an existing slot: EINVAL. */
	EXPECT_EQ(-EINVAL, set_region(self->vm, 1, 0, 16 * MB, 2 * MB, m + MB));
	EXPECT_EQ(-EINVAL, set_region(self->vm, 1, 0, 16 * MB, MB, m + 2 * MB));
	/* Delete, then deleting again: EINVAL. */
	EXPECT_EQ(0, set_region(self->vm, 1, 0, 0, 0, NULL));
	EXPECT_EQ(-EINVAL, set_region(self->vm, 1, 0, 0, 0, NULL));
	/* The range is free again. */
	EXPECT_EQ(0, set_region(self->vm, 2, 0, 16 * MB, MB, m + MB));
}

TEST_F(vm, memory_region_bad_input)
{
	char *m = self->mem;
	int nslots = ioctl(self->vm, KVM_CHECK_EXTENSION, KVM_CAP_NR_MEMSLOTS);

	ASSERT_LT(0, nslots);
	EXPECT_EQ(-EINVAL, set_region(self->vm, 0, 0, 0x800, MB, m));
	EXPECT_EQ(-EINVAL, set_region(self->vm, 0, 0, 0, MB + 1, m));
	EXPECT_EQ(-EINVAL, set_region(self->vm, 0, 0, 0, MB, m + 16));
	EXPECT_EQ(-EINVAL, set_region(self->vm, 0, 0, 0, MB, (void *)0xffff888000000000UL));
	EXPECT_EQ(-EINVAL, set_region(self->vm, 0, 0, -PAGE, 2 * PAGE, m));
	EXPECT_EQ(-EINVAL, set_region(self->vm, nslots, 0, 0, MB, m));
	EXPECT_EQ(0, set_region(self->vm, nslots - 1, 0, 0, MB, m));
	/* Flags no KVM version defines. */
	EXPECT_EQ(-EINVAL, set_region(self->vm, 3, 1u << 31, 4 * MB, MB, m + MB));
	/* V1 of the ioctl takes no KVM_MEM_GUEST_MEMFD. */
	EXPECT_EQ(-EINVAL, set_region(self->vm, 3, KVM_MEM_GUEST_MEMFD, 4 * MB, MB, m + MB));
	/* A bad user pointer to the request itself. */
	errno = 0;
	EXPECT_EQ(-1, ioctl(self->vm, KVM_SET_USER_MEMORY_REGION, (void *)8));
	EXPECT_EQ(EFAULT, errno);
}

TEST_F(vm, memory_region_readonly_and_dirty_log_flags)
{
	EXPECT_EQ(0, set_region(self->vm, 0, KVM_MEM_READONLY, 0, MB, self->mem));
	/* READONLY cannot be toggled on an existing slot. */
	EXPECT_EQ(-EINVAL, set_region(self->vm, 0, 0, 0, MB, self->mem));
	EXPECT_EQ(0, set_region(self->vm, 1, KVM_MEM_LOG_DIRTY_PAGES, MB, MB,
				   (char *)self->mem + MB));
}

TEST_F(vm, memory_region2_works_like_v1)
{
	struct kvm_userspace_memory_region2 r = {
		.slot = 5, .guest_phys_addr = 8 * MB, .memory_size = MB,
		.userspace_addr = (__u64)(unsigned long)self->mem,
	};

	ASSERT_EQ(0, ioctl(self->vm, KVM_SET_USER_MEMORY_REGION2, &r));
	errno = 0;
	EXPECT_EQ(-EEXIST, set_region(self->vm, 6, 0, 8 * MB, MB, (char *)self->mem + MB));
	r.memory_size = 0;
	EXPECT_EQ(0, ioctl(self->vm, KVM_SET_USER_MEMORY_REGION2, &r));
}

TEST_F(vm, reset_registers)
{
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	int vcpu = ioctl(self->vm, KVM_CREATE_VCPU, 0);

	ASSERT_LE(0, vcpu);
	ASSERT_EQ(0, ioctl(vcpu, KVM_GET_REGS, &regs));
	EXPECT_EQ(0xfff0ULL, regs.rip);
	EXPECT_EQ(0x2ULL, regs.rflags);
	ASSERT_EQ(0, ioctl(vcpu, KVM_GET_SREGS, &sregs));
	EXPECT_EQ(0xf000, sregs.cs.selector);
	EXPECT_EQ(0xffff0000ULL, sregs.cs.base);
	EXPECT_EQ(0x60000010ULL, sregs.cr0);
	EXPECT_EQ(0ULL, sregs.efer);
	close(vcpu);
}

TEST_F(vm, set_regs_round_trip_forces_rflags_bit_1)
{
	struct kvm_regs regs = { .rax = 0x1122334455667788ULL, .r15 = 15, .rip = 0x7c00,
				 .rflags = 0x200 }, out;
	int vcpu = ioctl(self->vm, KVM_CREATE_VCPU, 0);

	ASSERT_LE(0, vcpu);
	ASSERT_EQ(0, ioctl(vcpu, KVM_SET_REGS, &regs));
	ASSERT_EQ(0, ioctl(vcpu, KVM_GET_REGS, &out));
	regs.rflags |= 2;
	EXPECT_EQ(0, memcmp(&regs, &out, sizeof(regs)));
	close(vcpu);
}

TEST_F(vm, set_sregs_rejects_invalid_control_registers)
{
	struct kvm_sregs good, bad;
	int vcpu = ioctl(self->vm, KVM_CREATE_VCPU, 0);

	ASSERT_LE(0, vcpu);
	ASSERT_EQ(0, ioctl(vcpu, KVM_GET_SREGS, &good));
	ASSERT_EQ(0, ioctl(vcpu, KVM_SET_SREGS, &good));

	bad = good; bad.cr0 = 0x80000000;		/* PG without PE */
	errno = 0;
	EXPECT_EQ(-1, ioctl(vcpu, KVM_SET_SREGS, &bad));
	EXPECT_EQ(EINVAL, errno);
	bad = good; bad.cr0 = 0x20000001;		/* NW without CD */
	errno = 0;
	EXPECT_EQ(-1, ioctl(vcpu, KVM_SET_SREGS, &bad));
	EXPECT_EQ(EINVAL, errno);
	bad = good; bad.efer = 0x400;			/* LMA outside long mode */
	errno = 0;
	EXPECT_EQ(-1, ioctl(vcpu, KVM_SET_SREGS, &bad));
	EXPECT_EQ(EINVAL, errno);
	bad = good; bad.cr4 = 1UL << 13;		/* VMXE without guest CPUID */
	errno = 0;
	EXPECT_EQ(-1, ioctl(vcpu, KVM_SET_SREGS, &bad));
	EXPECT_EQ(EINVAL, errno);
	/* Long mode without guest CPUID (LM): EINVAL, as on kvm_intel. */
	bad = good; bad.cr0 = 0x80000011; bad.cr4 = 0x20; bad.efer = 0x500; bad.cs.l = 1;
	errno = 0;
	EXPECT_EQ(-1, ioctl(vcpu, KVM_SET_SREGS, &bad));
	EXPECT_EQ(EINVAL, errno);
	close(vcpu);
}

/* A kvm_cpuid2 with room for n entries. */
struct cpuid_buf {
	struct kvm_cpuid2 hdr;
	struct kvm_cpuid_entry2 e[300];
};

TEST_F(vm, cpuid2_sizes_and_round_trip)
{
	static struct cpuid_buf in, out;
	int vcpu = ioctl(self->vm, KVM_CREATE_VCPU, 0);

	ASSERT_LE(0, vcpu);
	/* More than KVM_MAX_CPUID_ENTRIES (256): E2BIG. */
	in.hdr.nent = 257;
	errno = 0;
	EXPECT_EQ(-1, ioctl(vcpu, KVM_SET_CPUID2, &in));
	EXPECT_EQ(E2BIG, errno);
	/* Nothing set yet: GET returns zero entries. */
	out.hdr.nent = 300;
	ASSERT_EQ(0, ioctl(vcpu, KVM_GET_CPUID2, &out));
	EXPECT_EQ(0U, out.hdr.nent);

	memset(&in, 0, sizeof(in));
	in.hdr.nent = 3;
	in.e[0] = (struct kvm_cpuid_entry2){ .function = 0, .eax = 0xd };
	in.e[1] = (struct kvm_cpuid_entry2){ .function = 0x80000000, .eax = 0x80000008 };
	in.e[2] = (struct kvm_cpuid_entry2){ .function = 0x80000008, .eax = 0x3028 };
	ASSERT_EQ(0, ioctl(vcpu, KVM_SET_CPUID2, &in));
	/* Too small a buffer: E2BIG, nent untouched. */
	out.hdr.nent = 2;
	errno = 0;
	EXPECT_EQ(-1, ioctl(vcpu, KVM_GET_CPUID2, &out));
	EXPECT_EQ(E2BIG, errno);
	EXPECT_EQ(2U, out.hdr.nent);
	out.hdr.nent = 300;
	ASSERT_EQ(0, ioctl(vcpu, KVM_GET_CPUID2, &out));
	ASSERT_EQ(3U, out.hdr.nent);
	EXPECT_EQ(0, memcmp(in.e, out.e, 3 * sizeof(in.e[0])));
	/* A linear-address width other than 48 or 57 bits: EINVAL. */
	in.e[2].eax = 0x3128;
	errno = 0;
	EXPECT_EQ(-1, ioctl(vcpu, KVM_SET_CPUID2, &in));
	EXPECT_EQ(EINVAL, errno);
	/* Bad pointer to the entries. */
	errno = 0;
	EXPECT_EQ(-1, ioctl(vcpu, KVM_SET_CPUID2, (void *)8));
	EXPECT_EQ(EFAULT, errno);
	close(vcpu);
}

TEST_F(vm, tss_and_identity_map_addresses)
{
	__u64 ident = 0xfeffc000;
	int vcpu;

	/* The TSS needs three pages below 4 GiB. */
	EXPECT_EQ(0, ioctl(self->vm, KVM_SET_TSS_ADDR, 0xfeffd000UL));
	EXPECT_EQ(0, ioctl(self->vm, KVM_SET_TSS_ADDR, 0xfffbd000UL));
	EXPECT_EQ(0, ioctl(self->vm, KVM_SET_TSS_ADDR, 0xffffd000UL));
	errno = 0;
	EXPECT_EQ(-1, ioctl(self->vm, KVM_SET_TSS_ADDR, 0xffffe000UL));
	EXPECT_EQ(EINVAL, errno);
	errno = 0;
	EXPECT_EQ(-1, ioctl(self->vm, KVM_SET_TSS_ADDR, 1UL << 32));
	EXPECT_EQ(EINVAL, errno);
	/* The identity map only before the first vCPU. */
	EXPECT_EQ(0, ioctl(self->vm, KVM_SET_IDENTITY_MAP_ADDR, &ident));
	errno = 0;
	EXPECT_EQ(-1, ioctl(self->vm, KVM_SET_IDENTITY_MAP_ADDR, (void *)8));
	EXPECT_EQ(EFAULT, errno);
	vcpu = ioctl(self->vm, KVM_CREATE_VCPU, 0);
	ASSERT_LE(0, vcpu);
	errno = 0;
	EXPECT_EQ(-1, ioctl(self->vm, KVM_SET_IDENTITY_MAP_ADDR, &ident));
	EXPECT_EQ(EINVAL, errno);
	close(vcpu);
}

/* The shadow MMU's page budget: at least 64 pages (KVM's minimum). */
TEST_F(vm, set_nr_mmu_pages)
{
	ASSERT_EQ(1, ioctl(self->vm, KVM_CHECK_EXTENSION, KVM_CAP_MMU_SHADOW_CACHE_CONTROL));
	errno = 0;
	EXPECT_EQ(-1, ioctl(self->vm, KVM_SET_NR_MMU_PAGES, 63UL));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(0, ioctl(self->vm, KVM_SET_NR_MMU_PAGES, 64UL));
	EXPECT_EQ(0, ioctl(self->vm, KVM_SET_NR_MMU_PAGES, 4096UL));
	/* And with a slot in place (the default budget follows the slots). */
	EXPECT_EQ(0, set_region(self->vm, 0, 0, 0, 4 * MB, self->mem));
	EXPECT_EQ(0, ioctl(self->vm, KVM_SET_NR_MMU_PAGES, 64UL));
}

TEST_F(vm, tsc_khz_on_vm_and_vcpu)
{
	int vcpu = ioctl(self->vm, KVM_CREATE_VCPU, 0);
	int khz = ioctl(self->vm, KVM_GET_TSC_KHZ, 0);

	ASSERT_LE(0, vcpu);
	EXPECT_LT(0, khz);
	EXPECT_EQ(khz, ioctl(vcpu, KVM_GET_TSC_KHZ, 0));
	close(vcpu);
}

TEST_F(vm, vcpu_mmap_maps_run_pio_and_ring_pages)
{
	int vcpu = ioctl(self->vm, KVM_CREATE_VCPU, 0);
	int size = ioctl(self->dev, KVM_GET_VCPU_MMAP_SIZE, 0);
	struct kvm_run *run;

	ASSERT_LE(0, vcpu);
	run = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	ASSERT_NE(MAP_FAILED, run) TH_LOG("mmap: %s", strerror(errno));
	EXPECT_EQ(0U, run->exit_reason);
	/* kvm_run, the PIO page and the coalesced ring, as KVM on x86. */
	EXPECT_EQ(3 * PAGE, (unsigned long)size);
	/* Every page is backed and writable. */
	((volatile char *)run)[PAGE] = 1;
	((volatile char *)run)[3 * PAGE - 1] = 1;
	munmap(run, size);
	if (rkvm_dev_is_rkvm()) {
		/* rkvm refuses mappings past its pages (KVM faults on use). */
		errno = 0;
		EXPECT_EQ(MAP_FAILED, mmap(NULL, PAGE, PROT_READ, MAP_SHARED, vcpu, 3 * PAGE));
		EXPECT_EQ(EINVAL, errno);
	}
	close(vcpu);
}

TEST_F(vm, vcpu_fd_outlives_vm_fd)
{
	struct kvm_regs regs;
	int vcpu = ioctl(self->vm, KVM_CREATE_VCPU, 0);

	ASSERT_LE(0, vcpu);
	close(self->vm);
	close(self->dev);
	EXPECT_EQ(0, ioctl(vcpu, KVM_GET_REGS, &regs));
	EXPECT_EQ(0xfff0ULL, regs.rip);
	close(vcpu);
	/* Teardown closes them again: harmless. */
	self->vm = self->dev = -1;
}

TEST_F(vm, other_process_gets_eio)
{
	int vcpu = ioctl(self->vm, KVM_CREATE_VCPU, 0);
	pid_t pid;
	int status;

	ASSERT_LE(0, vcpu);
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		struct kvm_regs regs;
		int ok = 1;

		/* VM and vCPU ioctls belong to the creator's address space. */
		ok &= ioctl(self->vm, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY) == -1 && errno == EIO;
		ok &= ioctl(vcpu, KVM_GET_REGS, &regs) == -1 && errno == EIO;
		/* The system fd has no owner. */
		ok &= ioctl(self->dev, KVM_GET_API_VERSION, 0) == 12;
		_exit(ok ? 0 : 1);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	close(vcpu);
}

TEST_HARNESS_MAIN
