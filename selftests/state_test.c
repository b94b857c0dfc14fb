// SPDX-License-Identifier: GPL-2.0
/*
 * vCPU state ioctls unmodified QEMU uses: KVM_GET/SET_DEBUGREGS (and the
 * guest's own MOV DR), KVM_GET/SET_XSAVE and KVM_GET/SET_XCRS, the SYSCALL
 * MSRs (a 64-bit guest doing SYSCALL/SYSRET and SWAPGS), and machine checks
 * (KVM_X86_GET_MCE_CAP_SUPPORTED, KVM_X86_SETUP_MCE, KVM_X86_SET_MCE and the
 * MCG/bank MSRs). Each test checks what the guest sees, what the ioctls
 * read back, and KVM's errno for bad input.
 *
 * Run against /dev/rkvm, and with RKVM_DEV=/dev/kvm against kvm_intel, whose
 * results are the expectations; where rkvm deliberately differs the test
 * says so and branches on rkvm_dev_is_rkvm().
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "rkvm_util.h"

#define STR(x) #x
#define XSTR(x) STR(x)

#define MEM_SIZE	(2UL << 20)
#define CODE_GPA	0x1000
#define RES_GPA		0x4000
#define DATA_GPA	0x5000
#define GDT_GPA		0x6000
#define PML4_GPA	0x18000
#define PDPT_GPA	0x19000
#define PD_GPA		0x1a000
#define PORT		0x10

#define AT(sym, start) #sym " - " #start " + " XSTR(CODE_GPA)
#define GUEST_BEGIN ".pushsection .rodata.guest, \"a\"\n"
#define GUEST_END ".code64\n.popsection\n"

/*
 * Real mode: reports DR0-DR3, DR6, DR7 and DR4 (DR6's alias without
 * CR4.DE), then writes new values to all of them and halts.
 */
#define G_DR0	0x9000
#define G_DR6	0xffff0ff2
#define G_DR7	0x402		/* G0: an execution breakpoint never reached */
asm(GUEST_BEGIN
	".code16\n"
	".global dr16_start, dr16_end\n"
	"dr16_start:\n"
	"	mov %dr0, %eax\n"
	"	out %eax, $" XSTR(PORT) "\n"
	"	mov %dr1, %eax\n"
	"	out %eax, $" XSTR(PORT) "\n"
	"	mov %dr2, %eax\n"
	"	out %eax, $" XSTR(PORT) "\n"
	"	mov %dr3, %eax\n"
	"	out %eax, $" XSTR(PORT) "\n"
	"	mov %dr6, %eax\n"
	"	out %eax, $" XSTR(PORT) "\n"
	"	mov %dr7, %eax\n"
	"	out %eax, $" XSTR(PORT) "\n"
	"	mov %dr4, %eax\n"
	"	out %eax, $" XSTR(PORT) "\n"
	"	mov $" XSTR(G_DR0) ", %eax\n"
	"	mov %eax, %dr0\n"
	"	add $0x1000, %eax\n"
	"	mov %eax, %dr1\n"
	"	add $0x1000, %eax\n"
	"	mov %eax, %dr2\n"
	"	add $0x1000, %eax\n"
	"	mov %eax, %dr3\n"
	"	mov $" XSTR(G_DR6) ", %eax\n"
	"	mov %eax, %dr6\n"
	"	mov $" XSTR(G_DR7) ", %eax\n"
	"	mov %eax, %dr7\n"
	"	hlt\n"
	"dr16_end:\n"
	GUEST_END);
extern const char dr16_start[], dr16_end[];

/* Flat 32-bit protected mode with CR4.OSFXSR: XMM0 out, FCW and XMM1 in. */
#define G_XMM1	0x55667788
asm(GUEST_BEGIN
	".code32\n"
	".global sse32_start, sse32_end\n"
	"sse32_start:\n"
	"	movd %xmm0, %eax\n"
	"	out %eax, $" XSTR(PORT) "\n"
	"	fnstcw " XSTR(RES_GPA) "\n"
	"	mov $" XSTR(G_XMM1) ", %eax\n"
	"	movd %eax, %xmm1\n"
	"	hlt\n"
	"sse32_end:\n"
	GUEST_END);
extern const char sse32_start[], sse32_end[];

/*
 * 64-bit: EFER.SCE, the guest's view of LSTAR and STAR, a CSTAR write,
 * SWAPGS and a load through the new GS base, SYSRET to CPL 3 and SYSCALL
 * back to the handler at LSTAR, which reports RCX, R11, its RFLAGS and CS.
 */
#define G_CSTAR		0xffffffff81234000ULL
#define GS_VALUE	0x6a5b4c3d
asm(GUEST_BEGIN
	".code64\n"
	".global sc64_start, sc64_user, sc64_after_syscall, sc64_handler, sc64_end\n"
	"sc64_start:\n"
	"	mov $0xc0000080, %ecx\n"
	"	rdmsr\n"
	"	or $1, %eax\n"
	"	wrmsr\n"
	"	mov $0xc0000082, %ecx\n"
	"	rdmsr\n"
	"	out %eax, $" XSTR(PORT) "\n"
	"	mov $0xc0000081, %ecx\n"
	"	rdmsr\n"
	"	mov %edx, %eax\n"
	"	out %eax, $" XSTR(PORT) "\n"
	"	mov $0xc0000083, %ecx\n"
	"	movabs $" XSTR(G_CSTAR) ", %rax\n"
	"	mov %rax, %rdx\n"
	"	shr $32, %rdx\n"
	"	wrmsr\n"
	"	swapgs\n"
	"	mov %gs:0, %eax\n"
	"	out %eax, $" XSTR(PORT) "\n"
	"	lea sc64_user(%rip), %rcx\n"
	"	mov $0x202, %r11\n"
	"	sysretq\n"
	"sc64_user:\n"
	"	syscall\n"
	"sc64_after_syscall:\n"
	"	ud2\n"
	"sc64_handler:\n"
	"	mov %rcx, %rax\n"
	"	out %eax, $" XSTR(PORT) "\n"
	"	mov %r11, %rax\n"
	"	out %eax, $" XSTR(PORT) "\n"
	"	pushf\n"
	"	pop %rax\n"
	"	out %eax, $" XSTR(PORT) "\n"
	"	mov %cs, %eax\n"
	"	out %eax, $" XSTR(PORT) "\n"
	"	hlt\n"
	"sc64_end:\n"
	GUEST_END);
extern const char sc64_start[], sc64_user[], sc64_after_syscall[], sc64_handler[], sc64_end[];

/*
 * Real mode with CR4.MCE: OUTs 1 and halts; the #MC handler (IVT vector
 * 18) reports MCG_STATUS and the high half of MC2_STATUS, clears
 * MC2_STATUS and halts.
 */
asm(GUEST_BEGIN
	".code16\n"
	".global mc16_start, mc16_handler, mc16_end\n"
	"mc16_start:\n"
	"	mov $1, %al\n"
	"	out %al, $" XSTR(PORT) "\n"
	"	hlt\n"
	"mc16_handler:\n"
	"	mov $0x17a, %ecx\n"
	"	rdmsr\n"
	"	out %eax, $" XSTR(PORT) "\n"
	"	mov $0x409, %ecx\n"
	"	rdmsr\n"
	"	mov %edx, %eax\n"
	"	out %eax, $" XSTR(PORT) "\n"
	"	xor %eax, %eax\n"
	"	xor %edx, %edx\n"
	"	wrmsr\n"
	"	hlt\n"
	"mc16_end:\n"
	GUEST_END);
extern const char mc16_start[], mc16_handler[], mc16_end[];

/*
 * Flat 32-bit: writes to ioeventfd ports and addresses, and to ones
 * without (which exit), then halts.
 */
#define IOFD_PORT	0x20
#define IOFD_PORT0	0x21
#define IOFD_MMIO	0x300000
asm(GUEST_BEGIN
	".code32\n"
	".global iofd32_start, iofd32_end\n"
	"iofd32_start:\n"
	"	mov $0x1234, %ax\n"
	"	out %ax, $" XSTR(IOFD_PORT) "\n"
	"	mov $0x5678, %ax\n"
	"	out %ax, $" XSTR(IOFD_PORT) "\n"
	"	mov $1, %al\n"
	"	out %al, $" XSTR(IOFD_PORT0) "\n"
	"	movl $7, " XSTR(IOFD_MMIO) "\n"
	"	movw $9, " XSTR(IOFD_MMIO) " + 8\n"
	"	hlt\n"
	"iofd32_end:\n"
	GUEST_END);
extern const char iofd32_start[], iofd32_end[];

/*
 * Flat 32-bit: writes into coalesced zones (an OUT of 4 bytes, MMIO stores
 * of 4 and 2 bytes, an OUT of 1 byte), then an MMIO load from the zone and
 * an OUT to a port outside it (both exit), then HLT.
 */
#define CW_PORT		0x80
#define CW_MMIO		0x310000
asm(GUEST_BEGIN
	".code32\n"
	".global cw32_start, cw32_end\n"
	"cw32_start:\n"
	"	mov $0x11223344, %eax\n"
	"	out %eax, $" XSTR(CW_PORT) "\n"
	"	movl $0xaabbccdd, " XSTR(CW_MMIO) "\n"
	"	movw $0x5566, " XSTR(CW_MMIO) " + 4\n"
	"	mov $0x77, %al\n"
	"	out %al, $" XSTR(CW_PORT) " + 7\n"
	"	movl " XSTR(CW_MMIO) ", %ebx\n"
	"	out %al, $" XSTR(CW_PORT) " + 16\n"
	"	hlt\n"
	"cw32_end:\n"
	GUEST_END);
extern const char cw32_start[], cw32_end[];

/*
 * Real mode, for single-stepping: one instruction the CPU runs, one KVM
 * emulates (CPUID), one port write through user space, one more, HLT.
 */
asm(GUEST_BEGIN
	".code16\n"
	".global step16_start, step16_1, step16_2, step16_3, step16_4, step16_end\n"
	"step16_start:\n"
	"	nop\n"
	"step16_1:\n"
	"	cpuid\n"
	"step16_2:\n"
	"	out %al, $" XSTR(PORT) "\n"
	"step16_3:\n"
	"	inc %ax\n"
	"step16_4:\n"
	"	hlt\n"
	"step16_end:\n"
	GUEST_END);
extern const char step16_start[], step16_1[], step16_2[], step16_3[], step16_4[],
	step16_end[];

/*
 * Real mode, for a debugger's breakpoints: INT3, NOP, a word store to
 * DATA_GPA, MOV EAX <- DR0, HLT. The guest's own #BP handler writes 'B'
 * to PORT.
 */
asm(GUEST_BEGIN
	".code16\n"
	".global bp16_start, bp16_int3, bp16_nop, bp16_mov_dr, bp16_end\n"
	"bp16_start:\n"
	"	xor %ax, %ax\n"
	"	mov %ax, %ds\n"
	"	mov %ax, %ss\n"
	"	mov $0x8000, %sp\n"
	"	movw $" AT(bp16_handler, bp16_start) ", 12\n"
	"	movw $0, 14\n"
	"bp16_int3:\n"
	"	int3\n"
	"bp16_nop:\n"
	"	nop\n"
	"	movw $0x1234, " XSTR(DATA_GPA) "\n"
	"bp16_mov_dr:\n"
	"	mov %dr0, %eax\n"
	"	hlt\n"
	"bp16_handler:\n"
	"	mov $0x42, %al\n"
	"	out %al, $" XSTR(PORT) "\n"
	"	iret\n"
	"bp16_end:\n"
	GUEST_END);
extern const char bp16_start[], bp16_int3[], bp16_nop[], bp16_mov_dr[], bp16_end[];

/*
 * Real mode, kvmclock: registers its pvclock page (guest WRMSR of
 * MSR_KVM_SYSTEM_TIME_NEW) and wall clock, then reports the TSC (low, high
 * half) forever.
 */
#define KC_TIME		DATA_GPA
#define KC_WALL		(DATA_GPA + 0x100)
asm(GUEST_BEGIN
	".code16\n"
	".global kc16_start, kc16_end\n"
	"kc16_start:\n"
	"	mov $0x4b564d01, %ecx\n"
	"	mov $(" XSTR(KC_TIME) " + 1), %eax\n"
	"	xor %edx, %edx\n"
	"	wrmsr\n"
	"	mov $0x4b564d00, %ecx\n"
	"	mov $" XSTR(KC_WALL) ", %eax\n"
	"	wrmsr\n"
	"1:	rdtsc\n"
	"	out %eax, $" XSTR(PORT) "\n"
	"	mov %edx, %eax\n"
	"	out %eax, $" XSTR(PORT) "\n"
	"	jmp 1b\n"
	"kc16_end:\n"
	GUEST_END);
extern const char kc16_start[], kc16_end[];

/* Real mode: writes IA32_MTRR_DEF_TYPE and reports it and IA32_MTRRCAP. */
asm(GUEST_BEGIN
	".code16\n"
	".global mtrr16_start, mtrr16_end\n"
	"mtrr16_start:\n"
	"	mov $0x2ff, %ecx\n"
	"	mov $0xc06, %eax\n"
	"	xor %edx, %edx\n"
	"	wrmsr\n"
	"	xor %eax, %eax\n"
	"	rdmsr\n"
	"	out %eax, $" XSTR(PORT) "\n"
	"	mov $0xfe, %ecx\n"
	"	rdmsr\n"
	"	out %eax, $" XSTR(PORT) "\n"
	"	hlt\n"
	"mtrr16_end:\n"
	GUEST_END);
extern const char mtrr16_start[], mtrr16_end[];

/* Real mode: FS base by WRMSR, read back by RDMSR and used by a load. */
asm(GUEST_BEGIN
	".code16\n"
	".global fsb16_start, fsb16_end\n"
	"fsb16_start:\n"
	"	mov $0xc0000100, %ecx\n"
	"	mov $" XSTR(DATA_GPA) ", %eax\n"
	"	xor %edx, %edx\n"
	"	wrmsr\n"
	"	xor %eax, %eax\n"
	"	rdmsr\n"
	"	out %eax, $" XSTR(PORT) "\n"
	"	mov %fs:4, %eax\n"
	"	out %eax, $" XSTR(PORT) "\n"
	"	hlt\n"
	"fsb16_end:\n"
	GUEST_END);
extern const char fsb16_start[], fsb16_end[];

/* ---- Helpers ----------------------------------------------------------- */

FIXTURE(state) {
	int dev, vm, vcpu;
	char *mem;
	struct kvm_run *run;
	int run_size;
};

/*
 * A small CPUID without XSAVE (and so without leaf 0xD): KVM then lets
 * XCR0 be 1 only and moves x87/SSE state only through KVM_GET/SET_XSAVE,
 * what rkvm does for every guest.
 */
static void set_small_cpuid(struct __test_metadata *_metadata, int vcpu)
{
	struct {
		struct kvm_cpuid2 hdr;
		struct kvm_cpuid_entry2 e[2];
	} c = {
		.hdr.nent = 2,
		.e = {
			{ .function = 0, .eax = 1, .ebx = 0x756e6547, .edx = 0x49656e69,
			  .ecx = 0x6c65746e },
			{ .function = 1, .eax = 0x600,
			  .edx = 1 | 1 << 4 | 1 << 5 | 1 << 8 | 1 << 15 | 1 << 24 | 1 << 25 |
				 1 << 26 },
		},
	};

	ASSERT_EQ(0, ioctl(vcpu, KVM_SET_CPUID2, &c)) TH_LOG("KVM_SET_CPUID2: %s",
							      strerror(errno));
}

FIXTURE_SETUP(state)
{
	struct kvm_userspace_memory_region r = { .slot = 0, .memory_size = MEM_SIZE };

	self->dev = open(rkvm_dev_path(), O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, self->dev) TH_LOG("open %s: %s", rkvm_dev_path(), strerror(errno));
	self->vm = ioctl(self->dev, KVM_CREATE_VM, 0);
	ASSERT_LE(0, self->vm);
	self->mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	ASSERT_NE(MAP_FAILED, self->mem);
	r.userspace_addr = (unsigned long)self->mem;
	ASSERT_EQ(0, ioctl(self->vm, KVM_SET_USER_MEMORY_REGION, &r));
	self->vcpu = ioctl(self->vm, KVM_CREATE_VCPU, 0);
	ASSERT_LE(0, self->vcpu);
	self->run_size = ioctl(self->dev, KVM_GET_VCPU_MMAP_SIZE, 0);
	ASSERT_LT(0, self->run_size);
	self->run = mmap(NULL, self->run_size, PROT_READ | PROT_WRITE, MAP_SHARED,
			 self->vcpu, 0);
	ASSERT_NE(MAP_FAILED, self->run);
}

FIXTURE_TEARDOWN(state)
{
	munmap(self->run, self->run_size);
	munmap(self->mem, MEM_SIZE);
	close(self->vcpu);
	close(self->vm);
	close(self->dev);
}

static void load(struct __test_metadata *_metadata, char *mem, const char *start,
		 const char *end)
{
	ASSERT_GT(RES_GPA - CODE_GPA, end - start);
	memcpy(mem + CODE_GPA, start, end - start);
}

/* RIP = CODE_GPA, other GPRs 0; real mode (CS 0) or flat 32-bit with `cr4`. */
static void enter(struct __test_metadata *_metadata, int vcpu, bool flat32, __u64 cr4)
{
	struct kvm_regs regs = { .rip = CODE_GPA, .rflags = 2 };
	struct kvm_sregs s;

	ASSERT_EQ(0, ioctl(vcpu, KVM_GET_SREGS, &s));
	s.cs.selector = 0;
	s.cs.base = 0;
	if (flat32) {
		struct kvm_segment f = {
			.limit = 0xffffffff, .selector = 0x10, .type = 3, .present = 1,
			.db = 1, .s = 1, .g = 1,
		};

		s.cr0 = 0x11;
		s.ds = s.es = s.fs = s.gs = s.ss = f;
		f.selector = 8;
		f.type = 11;
		s.cs = f;
	}
	s.cr4 = cr4;
	ASSERT_EQ(0, ioctl(vcpu, KVM_SET_SREGS, &s)) TH_LOG("KVM_SET_SREGS: %s", strerror(errno));
	ASSERT_EQ(0, ioctl(vcpu, KVM_SET_REGS, &regs));
}

static const char *exit_str(struct kvm_run *run, char *buf, size_t len)
{
	if (run->exit_reason == KVM_EXIT_INTERNAL_ERROR)
		snprintf(buf, len, "INTERNAL_ERROR %u data0 %#llx", run->internal.suberror,
			 (unsigned long long)run->internal.data[0]);
	else if (run->exit_reason == KVM_EXIT_IO)
		snprintf(buf, len, "IO port %#x size %u", run->io.port, run->io.size);
	else
		snprintf(buf, len, "exit %u", run->exit_reason);
	return buf;
}

static void run_expect(struct __test_metadata *_metadata, int vcpu, struct kvm_run *run,
		       __u32 reason)
{
	char why[96];

	ASSERT_EQ(0, ioctl(vcpu, KVM_RUN, 0)) TH_LOG("KVM_RUN: %s", strerror(errno));
	ASSERT_EQ(reason, run->exit_reason) TH_LOG("got %s", exit_str(run, why, sizeof(why)));
}

/* Runs to an OUT of `size` bytes to PORT; returns the value. */
static __u32 run_out(struct __test_metadata *_metadata, int vcpu, struct kvm_run *run,
		     int size)
{
	__u32 v = 0;

	run_expect(_metadata, vcpu, run, KVM_EXIT_IO);
	EXPECT_TRUE(run->io.direction == KVM_EXIT_IO_OUT && run->io.port == PORT &&
		    run->io.size == size && run->io.count == 1)
		TH_LOG("port %#x size %u", run->io.port, run->io.size);
	memcpy(&v, (char *)run + run->io.data_offset, run->io.size <= 4 ? run->io.size : 4);
	return v;
}

#define RUN_OUT(size) run_out(_metadata, self->vcpu, self->run, size)

static __u64 get_msr(struct __test_metadata *_metadata, int fd, __u32 index)
{
	struct kvm_msr_entry e = { .index = index };

	EXPECT_EQ(1, rkvm_msrs(fd, KVM_GET_MSRS, &e, 1)) TH_LOG("MSR %#x", index);
	return e.data;
}

/* The ioctl fails with `err`. */
#define EXPECT_ERRNO(err, call) do {			\
	errno = 0;					\
	EXPECT_EQ(-1, (call));				\
	EXPECT_EQ(err, errno);				\
} while (0)

/* ---- Debug registers --------------------------------------------------- */

TEST_F(state, debugregs_reset_round_trip_and_bad_input)
{
	struct kvm_debugregs d, bad;

	EXPECT_EQ(1, ioctl(self->dev, KVM_CHECK_EXTENSION, KVM_CAP_DEBUGREGS));
	memset(&d, 0xa5, sizeof(d));
	ASSERT_EQ(0, ioctl(self->vcpu, KVM_GET_DEBUGREGS, &d));
	for (int i = 0; i < 4; i++)
		EXPECT_EQ(0ULL, d.db[i]);
	EXPECT_EQ(0xffff0ff0ULL, d.dr6);
	EXPECT_EQ(0x400ULL, d.dr7);
	EXPECT_EQ(0ULL, d.flags);

	/* Full 64-bit addresses; DR6 and DR7 are stored as given. */
	d.db[0] = 0xffffffff81000000ULL;
	d.db[1] = 0x00007fffdeadb000ULL;
	d.db[2] = 2;
	d.db[3] = 3;
	d.dr6 = 0;
	d.dr7 = 0x400;
	ASSERT_EQ(0, ioctl(self->vcpu, KVM_SET_DEBUGREGS, &d));
	memset(&bad, 0, sizeof(bad));
	ASSERT_EQ(0, ioctl(self->vcpu, KVM_GET_DEBUGREGS, &bad));
	EXPECT_EQ(0, memcmp(d.db, bad.db, sizeof(d.db)));
	EXPECT_EQ(0ULL, bad.dr6);
	EXPECT_EQ(0x400ULL, bad.dr7);

	bad = d;
	bad.flags = 1;
	EXPECT_ERRNO(EINVAL, ioctl(self->vcpu, KVM_SET_DEBUGREGS, &bad));
	bad = d;
	bad.dr6 = 1ULL << 32;
	EXPECT_ERRNO(EINVAL, ioctl(self->vcpu, KVM_SET_DEBUGREGS, &bad));
	bad = d;
	bad.dr7 = 0x400 | 1ULL << 63;
	bad.db[0] = 0;
	EXPECT_ERRNO(EINVAL, ioctl(self->vcpu, KVM_SET_DEBUGREGS, &bad));
	/* Nothing changed. */
	ASSERT_EQ(0, ioctl(self->vcpu, KVM_GET_DEBUGREGS, &bad));
	EXPECT_EQ(d.db[0], bad.db[0]);
	EXPECT_ERRNO(EFAULT, ioctl(self->vcpu, KVM_SET_DEBUGREGS, (void *)8));
}

TEST_F(state, debugregs_reach_the_guest_and_back)
{
	struct kvm_debugregs d = {
		.db = { 0x111000, 0x122000, 0x133000, 0x144000 },
		.dr6 = 0xffff0ff1,	/* B0 */
		.dr7 = 0x401,		/* L0: breakpoint enabled, never reached */
	};

	ASSERT_EQ(0, ioctl(self->vcpu, KVM_SET_DEBUGREGS, &d));
	load(_metadata, self->mem, dr16_start, dr16_end);
	enter(_metadata, self->vcpu, false, 0);
	for (int i = 0; i < 4; i++) {
		EXPECT_EQ(d.db[i], RUN_OUT(4)) TH_LOG("DR%d", i);
	}
	EXPECT_EQ(0xffff0ff1U, RUN_OUT(4)) TH_LOG("DR6");
	EXPECT_EQ(0x401U, RUN_OUT(4)) TH_LOG("DR7");
	EXPECT_EQ(0xffff0ff1U, RUN_OUT(4)) TH_LOG("DR4 is DR6");
	run_expect(_metadata, self->vcpu, self->run, KVM_EXIT_HLT);

	memset(&d, 0, sizeof(d));
	ASSERT_EQ(0, ioctl(self->vcpu, KVM_GET_DEBUGREGS, &d));
	for (int i = 0; i < 4; i++) {
		EXPECT_EQ((__u64)G_DR0 + 0x1000 * i, d.db[i]) TH_LOG("DR%d", i);
	}
	EXPECT_EQ((__u64)G_DR6, d.dr6);
	EXPECT_EQ((__u64)G_DR7, d.dr7);
}

/* ---- XSAVE and XCRs ---------------------------------------------------- */

#define XS_MXCSR	24
#define XS_XMM(n)	(160 + 16 * (n))
#define XS_BV		512
#define XS_COMP		520

static __u32 xs32(const struct kvm_xsave *x, int off)
{
	__u32 v;

	memcpy(&v, (const char *)x->region + off, 4);
	return v;
}

static __u64 xs64(const struct kvm_xsave *x, int off)
{
	__u64 v;

	memcpy(&v, (const char *)x->region + off, 8);
	return v;
}

static void xs_put(struct kvm_xsave *x, int off, const void *v, size_t n)
{
	memcpy((char *)x->region + off, v, n);
}

TEST_F(state, xsave_round_trip_guest_and_bad_input)
{
	static struct kvm_xsave x, bad;
	__u32 xmm0 = 0x11223344, xmm2 = 0x99aabbcc, v;
	__u64 bv = 3, q;
	struct kvm_fpu fpu;
	__u16 fcw = 0x27f;

	EXPECT_EQ(1, ioctl(self->dev, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE));
	set_small_cpuid(_metadata, self->vcpu);
	ASSERT_EQ(0, ioctl(self->vcpu, KVM_GET_XSAVE, &x));
	EXPECT_EQ(0x37fU, xs32(&x, 0) & 0xffff);
	EXPECT_EQ(0x1f80U, xs32(&x, XS_MXCSR));
	EXPECT_EQ(0ULL, xs64(&x, XS_BV) & ~3ULL);
	EXPECT_EQ(0ULL, xs64(&x, XS_COMP));

	xs_put(&x, 0, &fcw, 2);
	xs_put(&x, XS_XMM(0), &xmm0, 4);
	xs_put(&x, XS_BV, &bv, 8);
	ASSERT_EQ(0, ioctl(self->vcpu, KVM_SET_XSAVE, &x)) TH_LOG("%s", strerror(errno));
	/* The same state through KVM_GET_FPU. */
	ASSERT_EQ(0, ioctl(self->vcpu, KVM_GET_FPU, &fpu));
	EXPECT_EQ(0x27f, fpu.fcw);
	memcpy(&v, fpu.xmm[0], 4);
	EXPECT_EQ(xmm0, v);

	/* The guest sees it, and what it leaves comes back. */
	load(_metadata, self->mem, sse32_start, sse32_end);
	enter(_metadata, self->vcpu, true, 0x200);	/* OSFXSR */
	EXPECT_EQ(xmm0, RUN_OUT(4));
	run_expect(_metadata, self->vcpu, self->run, KVM_EXIT_HLT);
	EXPECT_EQ(0x27f, *(__u16 *)(self->mem + RES_GPA));
	memset(&x, 0, sizeof(x));
	ASSERT_EQ(0, ioctl(self->vcpu, KVM_GET_XSAVE, &x));
	EXPECT_EQ((__u32)G_XMM1, xs32(&x, XS_XMM(1)));
	EXPECT_EQ(xmm0, xs32(&x, XS_XMM(0)));
	EXPECT_EQ(0x27fU, xs32(&x, 0) & 0xffff);
	EXPECT_EQ(2ULL, xs64(&x, XS_BV) & 2);
	EXPECT_EQ(0ULL, xs64(&x, XS_BV) & ~3ULL);

	/* KVM_SET_FPU lands in the same state. */
	ASSERT_EQ(0, ioctl(self->vcpu, KVM_GET_FPU, &fpu));
	memcpy(fpu.xmm[2], &xmm2, 4);
	ASSERT_EQ(0, ioctl(self->vcpu, KVM_SET_FPU, &fpu));
	ASSERT_EQ(0, ioctl(self->vcpu, KVM_GET_XSAVE, &x));
	EXPECT_EQ(xmm2, xs32(&x, XS_XMM(2)));
	EXPECT_EQ((__u32)G_XMM1, xs32(&x, XS_XMM(1)));

	/* Bad images: EINVAL, and nothing changes. */
	bad = x;
	q = 3 | 1ULL << 63;
	xs_put(&bad, XS_BV, &q, 8);
	EXPECT_ERRNO(EINVAL, ioctl(self->vcpu, KVM_SET_XSAVE, &bad));
	bad = x;
	q = 3 | 1ULL << 8;		/* a supervisor component (PT) */
	xs_put(&bad, XS_BV, &q, 8);
	EXPECT_ERRNO(EINVAL, ioctl(self->vcpu, KVM_SET_XSAVE, &bad));
	bad = x;
	q = 3 | 1ULL << 63;
	xs_put(&bad, XS_COMP, &q, 8);
	EXPECT_ERRNO(EINVAL, ioctl(self->vcpu, KVM_SET_XSAVE, &bad));
	bad = x;
	((char *)bad.region)[540] = 1;	/* reserved header byte */
	EXPECT_ERRNO(EINVAL, ioctl(self->vcpu, KVM_SET_XSAVE, &bad));
	bad = x;
	v = 0xffff0000;
	xs_put(&bad, XS_MXCSR, &v, 4);
	EXPECT_ERRNO(EINVAL, ioctl(self->vcpu, KVM_SET_XSAVE, &bad));
	if (rkvm_dev_is_rkvm()) {
		/* AVX state: the guest has no XSAVE. KVM 7.3 takes any component
		 * the host's FPU supports here, whatever the guest CPUID. */
		bad = x;
		q = 7;
		xs_put(&bad, XS_BV, &q, 8);
		EXPECT_ERRNO(EINVAL, ioctl(self->vcpu, KVM_SET_XSAVE, &bad));
	}
	memset(&bad, 0, sizeof(bad));
	ASSERT_EQ(0, ioctl(self->vcpu, KVM_GET_XSAVE, &bad));
	EXPECT_EQ((__u32)G_XMM1, xs32(&bad, XS_XMM(1)));
	EXPECT_EQ(xmm2, xs32(&bad, XS_XMM(2)));

	/* A component left out of XSTATE_BV goes back to its initial state. */
	bad = x;
	q = 1;
	xs_put(&bad, XS_BV, &q, 8);
	ASSERT_EQ(0, ioctl(self->vcpu, KVM_SET_XSAVE, &bad));
	ASSERT_EQ(0, ioctl(self->vcpu, KVM_GET_XSAVE, &bad));
	EXPECT_EQ(0U, xs32(&bad, XS_XMM(1)));
	EXPECT_EQ(0x27fU, xs32(&bad, 0) & 0xffff);
	EXPECT_ERRNO(EFAULT, ioctl(self->vcpu, KVM_SET_XSAVE, (void *)8));
}

TEST_F(state, xcrs_follow_kvm_set_xcr)
{
	struct kvm_xcrs x, bad;
	int cap = ioctl(self->dev, KVM_CHECK_EXTENSION, KVM_CAP_XCRS);

	if (!cap)
		SKIP(return, "no host XSAVE, no KVM_CAP_XCRS");
	set_small_cpuid(_metadata, self->vcpu);
	memset(&x, 0xa5, sizeof(x));
	ASSERT_EQ(0, ioctl(self->vcpu, KVM_GET_XCRS, &x));
	EXPECT_EQ(1U, x.nr_xcrs);
	EXPECT_EQ(0U, x.flags);
	EXPECT_EQ(0U, x.xcrs[0].xcr);
	EXPECT_EQ(1ULL, x.xcrs[0].value);

	memset(&x, 0, sizeof(x));
	x.nr_xcrs = 1;
	x.xcrs[0].value = 1;
	EXPECT_EQ(0, ioctl(self->vcpu, KVM_SET_XCRS, &x));
	/* Another XCR than XCR0 is ignored. */
	x.xcrs[0].xcr = 1;
	x.xcrs[0].value = 0;
	EXPECT_EQ(0, ioctl(self->vcpu, KVM_SET_XCRS, &x));

	bad = x;
	bad.xcrs[0].xcr = 0;
	bad.xcrs[0].value = 0;		/* x87 always on */
	EXPECT_ERRNO(EINVAL, ioctl(self->vcpu, KVM_SET_XCRS, &bad));
	bad.xcrs[0].value = 3;		/* SSE: the guest has no XSAVE */
	EXPECT_ERRNO(EINVAL, ioctl(self->vcpu, KVM_SET_XCRS, &bad));
	bad.xcrs[0].value = 1 | 1ULL << 63;
	EXPECT_ERRNO(EINVAL, ioctl(self->vcpu, KVM_SET_XCRS, &bad));
	bad.xcrs[0].value = 1;
	bad.flags = 1;
	EXPECT_ERRNO(EINVAL, ioctl(self->vcpu, KVM_SET_XCRS, &bad));
	bad.flags = 0;
	bad.nr_xcrs = KVM_MAX_XCRS + 1;
	EXPECT_ERRNO(EINVAL, ioctl(self->vcpu, KVM_SET_XCRS, &bad));

	ASSERT_EQ(0, ioctl(self->vcpu, KVM_GET_XCRS, &x));
	EXPECT_EQ(1ULL, x.xcrs[0].value);
}

/* ---- SYSCALL MSRs ------------------------------------------------------ */

#define MSR_STAR		0xc0000081
#define MSR_LSTAR		0xc0000082
#define MSR_CSTAR		0xc0000083
#define MSR_SFMASK		0xc0000084
#define MSR_KERNEL_GS_BASE	0xc0000102

TEST_F(state, syscall_msrs_are_listed_and_round_trip)
{
	static const __u32 want[] = {
		MSR_STAR, MSR_LSTAR, MSR_CSTAR, MSR_SFMASK, MSR_KERNEL_GS_BASE,
	};
	struct { struct kvm_msr_list hdr; __u32 idx[1024]; } list = { .hdr.nmsrs = 1024 };
	struct kvm_msr_entry e[5] = {
		{ .index = MSR_STAR, .data = 0x0023001000000000ULL | 0x12345678 },
		{ .index = MSR_LSTAR, .data = 0xffffffff81000000ULL },
		{ .index = MSR_CSTAR, .data = 0x00007fff00001000ULL },
		{ .index = MSR_SFMASK, .data = 0x47700 },
		{ .index = MSR_KERNEL_GS_BASE, .data = 0xffff888000000000ULL },
	};

	ASSERT_EQ(0, ioctl(self->dev, KVM_GET_MSR_INDEX_LIST, &list));
	for (unsigned int w = 0; w < 5; w++) {
		unsigned int i;

		for (i = 0; i < list.hdr.nmsrs && list.idx[i] != want[w]; i++)
			;
		EXPECT_GT(list.hdr.nmsrs, i) TH_LOG("MSR %#x not listed", want[w]);
	}
	/* Reset values are 0. */
	for (unsigned int w = 0; w < 5; w++) {
		EXPECT_EQ(0ULL, get_msr(_metadata, self->vcpu, want[w])) TH_LOG("%#x", want[w]);
	}
	ASSERT_EQ(5, rkvm_msrs(self->vcpu, KVM_SET_MSRS, e, 5));
	for (unsigned int w = 0; w < 5; w++) {
		EXPECT_EQ(e[w].data, get_msr(_metadata, self->vcpu, e[w].index))
			TH_LOG("%#x", e[w].index);
	}
	/* Non-canonical addresses are refused. */
	EXPECT_EQ(0, rkvm_set_msr(self->vcpu, MSR_LSTAR, 0x0000800000000000ULL));
	EXPECT_EQ(0, rkvm_set_msr(self->vcpu, MSR_CSTAR, 0x8000000000000000ULL));
	EXPECT_EQ(0, rkvm_set_msr(self->vcpu, MSR_KERNEL_GS_BASE, 0x0001000000000000ULL));
	EXPECT_EQ(e[1].data, get_msr(_metadata, self->vcpu, MSR_LSTAR));
}

TEST_F(state, syscall_sysret_and_swapgs_in_a_64bit_guest)
{
	static const __u64 gdt[] = {
		0,
		0x00af9b000000ffffULL,	/* 0x08: kernel code, 64-bit */
		0x00cf93000000ffffULL,	/* 0x10: kernel data */
		0x00cff3000000ffffULL,	/* 0x18: user data (SYSRET SS) */
		0x00affb000000ffffULL,	/* 0x20: user code, 64-bit (SYSRET CS) */
	};
	__u64 *pml4 = (__u64 *)(self->mem + PML4_GPA);
	__u64 *pdpt = (__u64 *)(self->mem + PDPT_GPA);
	__u64 *pd = (__u64 *)(self->mem + PD_GPA);
	__u64 lstar = CODE_GPA + (sc64_handler - sc64_start);
	__u64 star = 0x10ULL << 48 | 0x08ULL << 32;
	__u32 gs_value = GS_VALUE;
	struct {
		struct kvm_cpuid2 hdr;
		struct kvm_cpuid_entry2 e[256];
	} cpuid = { .hdr.nent = 256 };
	struct kvm_msr_entry e[4] = {
		{ .index = MSR_STAR, .data = star },
		{ .index = MSR_LSTAR, .data = lstar },
		{ .index = MSR_SFMASK, .data = 0x200 },		/* IF */
		{ .index = MSR_KERNEL_GS_BASE, .data = DATA_GPA },
	};
	struct kvm_regs regs = { .rip = CODE_GPA, .rflags = 2, .rsp = 0xf000 };
	struct kvm_sregs s;

	ASSERT_EQ(0, ioctl(self->dev, KVM_GET_SUPPORTED_CPUID, &cpuid));
	ASSERT_EQ(0, ioctl(self->vcpu, KVM_SET_CPUID2, &cpuid));
	memset(pml4, 0, 3 * 4096);
	pml4[0] = PDPT_GPA | 7;
	pdpt[0] = PD_GPA | 7;
	pd[0] = 0x87;			/* 2 MiB at 0: P, RW, US, PS */
	memcpy(self->mem + GDT_GPA, gdt, sizeof(gdt));
	memcpy(self->mem + DATA_GPA, &gs_value, 4);
	load(_metadata, self->mem, sc64_start, sc64_end);

	ASSERT_EQ(0, ioctl(self->vcpu, KVM_GET_SREGS, &s));
	s.cr0 = 0x80010011;
	s.cr4 = 0x20;
	s.efer = 0x500;
	s.cr3 = PML4_GPA;
	s.gdt.base = GDT_GPA;
	s.gdt.limit = sizeof(gdt) - 1;
	s.cs = (struct kvm_segment){ .selector = 8, .limit = 0xffffffff, .type = 11,
				     .present = 1, .s = 1, .l = 1, .g = 1 };
	s.ds = (struct kvm_segment){ .selector = 0x10, .limit = 0xffffffff, .type = 3,
				     .present = 1, .s = 1, .db = 1, .g = 1 };
	s.es = s.ss = s.fs = s.gs = s.ds;
	ASSERT_EQ(0, ioctl(self->vcpu, KVM_SET_SREGS, &s)) TH_LOG("%s", strerror(errno));
	ASSERT_EQ(0, ioctl(self->vcpu, KVM_SET_REGS, &regs));
	ASSERT_EQ(4, rkvm_msrs(self->vcpu, KVM_SET_MSRS, e, 4));

	/* The guest reads what KVM_SET_MSRS wrote. */
	EXPECT_EQ((__u32)lstar, RUN_OUT(4)) TH_LOG("LSTAR");
	EXPECT_EQ((__u32)(star >> 32), RUN_OUT(4)) TH_LOG("STAR[63:32]");
	/* SWAPGS took KERNEL_GS_BASE as the GS base. */
	EXPECT_EQ((__u32)GS_VALUE, RUN_OUT(4)) TH_LOG("load through GS");
	/* SYSRET to CPL 3, SYSCALL back through LSTAR. */
	EXPECT_EQ((__u32)(CODE_GPA + (sc64_after_syscall - sc64_start)), RUN_OUT(4))
		TH_LOG("RCX");
	EXPECT_EQ(0x202U, RUN_OUT(4)) TH_LOG("R11: RFLAGS at SYSCALL");
	EXPECT_EQ(0U, RUN_OUT(4) & 0x200) TH_LOG("FMASK cleared IF");
	EXPECT_EQ(0x8U, RUN_OUT(4)) TH_LOG("CS from STAR");
	run_expect(_metadata, self->vcpu, self->run, KVM_EXIT_HLT);

	/* The guest's CSTAR write, and SWAPGS's exchange, reach the host. */
	EXPECT_EQ(G_CSTAR, get_msr(_metadata, self->vcpu, MSR_CSTAR));
	EXPECT_EQ(0ULL, get_msr(_metadata, self->vcpu, MSR_KERNEL_GS_BASE));
	ASSERT_EQ(0, ioctl(self->vcpu, KVM_GET_SREGS, &s));
	EXPECT_EQ((__u64)DATA_GPA, s.gs.base);
	EXPECT_EQ(1ULL, s.efer & 1) TH_LOG("EFER.SCE");
}

/* ---- Machine checks ---------------------------------------------------- */

#define MCG_CTL_P	(1ULL << 8)
#define MCG_SER_P	(1ULL << 24)
#define MSR_MCG_CAP	0x179
#define MSR_MCG_STATUS	0x17a
#define MSR_MCG_CTL	0x17b
#define MSR_MC_CTL(i)	(0x400 + 4 * (i))
#define MCI_VAL		(1ULL << 63)
#define MCI_UC		(1ULL << 61)
#define MCI_PCC		(1ULL << 57)

TEST_F(state, mce_setup_and_msrs)
{
	__u64 sup = 0, cap;
	struct kvm_msr_entry e;

	EXPECT_LE(10, ioctl(self->dev, KVM_CHECK_EXTENSION, KVM_CAP_MCE));
	ASSERT_EQ(0, ioctl(self->dev, KVM_X86_GET_MCE_CAP_SUPPORTED, &sup));
	EXPECT_EQ(MCG_CTL_P | MCG_SER_P, sup & (MCG_CTL_P | MCG_SER_P));

	cap = 0;
	EXPECT_ERRNO(EINVAL, ioctl(self->vcpu, KVM_X86_SETUP_MCE, &cap));
	cap = 33;
	EXPECT_ERRNO(EINVAL, ioctl(self->vcpu, KVM_X86_SETUP_MCE, &cap));
	cap = 10 | 1ULL << 9;		/* MCG_EXT_P: never supported */
	EXPECT_ERRNO(EINVAL, ioctl(self->vcpu, KVM_X86_SETUP_MCE, &cap));
	cap = 10 | 1ULL << 40;
	EXPECT_ERRNO(EINVAL, ioctl(self->vcpu, KVM_X86_SETUP_MCE, &cap));
	EXPECT_ERRNO(EFAULT, ioctl(self->vcpu, KVM_X86_SETUP_MCE, (void *)8));
	cap = 10 | MCG_CTL_P | MCG_SER_P;
	ASSERT_EQ(0, ioctl(self->vcpu, KVM_X86_SETUP_MCE, &cap));

	EXPECT_EQ(cap, get_msr(_metadata, self->vcpu, MSR_MCG_CAP));
	EXPECT_EQ(~0ULL, get_msr(_metadata, self->vcpu, MSR_MCG_CTL));
	EXPECT_EQ(0ULL, get_msr(_metadata, self->vcpu, MSR_MCG_STATUS));
	for (int i = 0; i < 10; i++) {
		EXPECT_EQ(~0ULL, get_msr(_metadata, self->vcpu, MSR_MC_CTL(i))) TH_LOG("bank %d", i);
	}
	e = (struct kvm_msr_entry){ .index = MSR_MC_CTL(10) };
	EXPECT_EQ(0, rkvm_msrs(self->vcpu, KVM_GET_MSRS, &e, 1)) TH_LOG("bank 10 exists");
	/* MCG_CAP is read-only; MCi_CTL takes 0 or all ones; MCG_CTL too. */
	EXPECT_EQ(0, rkvm_set_msr(self->vcpu, MSR_MCG_CAP, 4));
	EXPECT_EQ(0, rkvm_set_msr(self->vcpu, MSR_MC_CTL(3), 0x1234));
	EXPECT_EQ(0, rkvm_set_msr(self->vcpu, MSR_MCG_CTL, 5));
	EXPECT_EQ(1, rkvm_set_msr(self->vcpu, MSR_MC_CTL(3), 0));
	EXPECT_EQ(1, rkvm_set_msr(self->vcpu, MSR_MC_CTL(3) + 1, MCI_VAL | 7));
	EXPECT_EQ(1, rkvm_set_msr(self->vcpu, MSR_MC_CTL(3) + 2, 0x1000));
	EXPECT_EQ(1, rkvm_set_msr(self->vcpu, MSR_MCG_STATUS, 5));
	EXPECT_EQ(0ULL, get_msr(_metadata, self->vcpu, MSR_MC_CTL(3)));
	EXPECT_EQ(MCI_VAL | 7, get_msr(_metadata, self->vcpu, MSR_MC_CTL(3) + 1));
	EXPECT_EQ(0x1000ULL, get_msr(_metadata, self->vcpu, MSR_MC_CTL(3) + 2));
	EXPECT_EQ(5ULL, get_msr(_metadata, self->vcpu, MSR_MCG_STATUS));
}

TEST_F(state, set_mce_logs_raises_and_shuts_down)
{
	__u64 cap = 10 | MCG_CTL_P;
	__u64 h = CODE_GPA + (mc16_handler - mc16_start);
	__u32 ivt18 = (__u32)h;		/* segment 0 : offset */
	struct kvm_x86_mce m = { .bank = 10, .status = MCI_VAL };

	ASSERT_EQ(0, ioctl(self->vcpu, KVM_X86_SETUP_MCE, &cap));
	EXPECT_ERRNO(EINVAL, ioctl(self->vcpu, KVM_X86_SET_MCE, &m));
	m.bank = 1;
	m.status = 5;			/* no VAL */
	EXPECT_ERRNO(EINVAL, ioctl(self->vcpu, KVM_X86_SET_MCE, &m));

	/* A corrected error is only logged. */
	m = (struct kvm_x86_mce){ .bank = 1, .status = MCI_VAL | 5, .addr = 0xabc000,
				  .misc = 0x86 };
	ASSERT_EQ(0, ioctl(self->vcpu, KVM_X86_SET_MCE, &m));
	EXPECT_EQ(MCI_VAL | 5, get_msr(_metadata, self->vcpu, MSR_MC_CTL(1) + 1));
	EXPECT_EQ(0xabc000ULL, get_msr(_metadata, self->vcpu, MSR_MC_CTL(1) + 2));
	EXPECT_EQ(0x86ULL, get_msr(_metadata, self->vcpu, MSR_MC_CTL(1) + 3));

	/* An uncorrected one is delivered as #MC to a guest with CR4.MCE. */
	memcpy(self->mem + 18 * 4, &ivt18, 4);
	load(_metadata, self->mem, mc16_start, mc16_end);
	enter(_metadata, self->vcpu, false, 0x40);
	EXPECT_EQ(1U, RUN_OUT(1));
	m = (struct kvm_x86_mce){ .bank = 2, .status = MCI_VAL | MCI_UC | MCI_PCC | 9,
				  .mcg_status = 7 };
	ASSERT_EQ(0, ioctl(self->vcpu, KVM_X86_SET_MCE, &m));
	EXPECT_EQ(7U, RUN_OUT(4)) TH_LOG("MCG_STATUS in the handler");
	EXPECT_EQ((__u32)(m.status >> 32), RUN_OUT(4)) TH_LOG("MC2_STATUS in the handler");
	run_expect(_metadata, self->vcpu, self->run, KVM_EXIT_HLT);
	EXPECT_EQ(0ULL, get_msr(_metadata, self->vcpu, MSR_MC_CTL(2) + 1))
		TH_LOG("the guest cleared MC2_STATUS");

	/* With MCIP still set, another one shuts the guest down. */
	m.bank = 3;
	ASSERT_EQ(0, ioctl(self->vcpu, KVM_X86_SET_MCE, &m));
	run_expect(_metadata, self->vcpu, self->run, KVM_EXIT_SHUTDOWN);
}

/* ---- ioeventfd --------------------------------------------------------- */

static __u64 efd_count(int fd)
{
	__u64 v = 0;

	if (read(fd, &v, sizeof(v)) != sizeof(v))
		return 0;
	return v;
}

TEST_F(state, ioeventfd_signals_instead_of_exiting)
{
	int pio = eventfd(0, EFD_NONBLOCK), pio0 = eventfd(0, EFD_NONBLOCK);
	int mmio = eventfd(0, EFD_NONBLOCK);
	struct kvm_ioeventfd dm = {
		.datamatch = 0x1234, .addr = IOFD_PORT, .len = 2, .fd = pio,
		.flags = KVM_IOEVENTFD_FLAG_PIO | KVM_IOEVENTFD_FLAG_DATAMATCH,
	};
	struct kvm_ioeventfd any = {
		.addr = IOFD_PORT0, .len = 0, .fd = pio0, .flags = KVM_IOEVENTFD_FLAG_PIO,
	};
	struct kvm_ioeventfd mm = { .addr = IOFD_MMIO, .len = 4, .fd = mmio };
	struct kvm_ioeventfd bad;
	struct kvm_regs regs;

	ASSERT_LE(0, pio);
	ASSERT_LE(0, pio0);
	ASSERT_LE(0, mmio);
	EXPECT_EQ(1, ioctl(self->dev, KVM_CHECK_EXTENSION, KVM_CAP_IOEVENTFD));
	EXPECT_EQ(1, ioctl(self->dev, KVM_CHECK_EXTENSION, KVM_CAP_IOEVENTFD_ANY_LENGTH));
	ASSERT_EQ(0, ioctl(self->vm, KVM_IOEVENTFD, &dm)) TH_LOG("%s", strerror(errno));
	ASSERT_EQ(0, ioctl(self->vm, KVM_IOEVENTFD, &any)) TH_LOG("%s", strerror(errno));
	ASSERT_EQ(0, ioctl(self->vm, KVM_IOEVENTFD, &mm)) TH_LOG("%s", strerror(errno));

	/* Bad requests. */
	bad = dm;
	bad.len = 3;
	EXPECT_ERRNO(EINVAL, ioctl(self->vm, KVM_IOEVENTFD, &bad));
	bad = dm;
	bad.flags |= 1 << 5;	/* bit 4 is KVM's (unused) fast-MMIO flag */
	EXPECT_ERRNO(EINVAL, ioctl(self->vm, KVM_IOEVENTFD, &bad));
	bad = dm;
	bad.len = 0;
	EXPECT_ERRNO(EINVAL, ioctl(self->vm, KVM_IOEVENTFD, &bad));
	bad = mm;
	bad.addr = ~0ULL;
	EXPECT_ERRNO(EINVAL, ioctl(self->vm, KVM_IOEVENTFD, &bad));
	bad = dm;
	bad.addr = 0x30;
	bad.fd = -1;
	EXPECT_ERRNO(EBADF, ioctl(self->vm, KVM_IOEVENTFD, &bad));
	bad.fd = self->vm;		/* not an eventfd */
	EXPECT_ERRNO(EINVAL, ioctl(self->vm, KVM_IOEVENTFD, &bad));
	bad = dm;
	bad.flags = KVM_IOEVENTFD_FLAG_PIO;	/* a wildcard over the datamatch */
	EXPECT_ERRNO(EEXIST, ioctl(self->vm, KVM_IOEVENTFD, &bad));
	bad = dm;
	bad.datamatch = 0x4321;			/* another value: no collision */
	bad.fd = mmio;
	EXPECT_EQ(0, ioctl(self->vm, KVM_IOEVENTFD, &bad));
	bad.flags |= KVM_IOEVENTFD_FLAG_DEASSIGN;
	EXPECT_EQ(0, ioctl(self->vm, KVM_IOEVENTFD, &bad));
	EXPECT_ERRNO(ENOENT, ioctl(self->vm, KVM_IOEVENTFD, &bad));
	bad = dm;
	bad.flags |= KVM_IOEVENTFD_FLAG_DEASSIGN;
	bad.fd = pio0;				/* registered with another eventfd */
	EXPECT_ERRNO(ENOENT, ioctl(self->vm, KVM_IOEVENTFD, &bad));
	EXPECT_ERRNO(EFAULT, ioctl(self->vm, KVM_IOEVENTFD, (void *)8));

	/* Matching writes signal; the others exit as before. */
	load(_metadata, self->mem, iofd32_start, iofd32_end);
	enter(_metadata, self->vcpu, true, 0);
	run_expect(_metadata, self->vcpu, self->run, KVM_EXIT_IO);
	EXPECT_EQ(IOFD_PORT, self->run->io.port);
	EXPECT_EQ(0x5678, *(__u16 *)((char *)self->run + self->run->io.data_offset));
	run_expect(_metadata, self->vcpu, self->run, KVM_EXIT_MMIO);
	EXPECT_EQ((__u64)IOFD_MMIO + 8, self->run->mmio.phys_addr);
	EXPECT_EQ(2U, self->run->mmio.len);
	run_expect(_metadata, self->vcpu, self->run, KVM_EXIT_HLT);
	EXPECT_EQ(1ULL, efd_count(pio));
	EXPECT_EQ(1ULL, efd_count(pio0));
	EXPECT_EQ(1ULL, efd_count(mmio));

	/* Deassigned: the first OUT exits again. */
	dm.flags |= KVM_IOEVENTFD_FLAG_DEASSIGN;
	ASSERT_EQ(0, ioctl(self->vm, KVM_IOEVENTFD, &dm));
	ASSERT_EQ(0, ioctl(self->vcpu, KVM_GET_REGS, &regs));
	regs.rip = CODE_GPA;
	ASSERT_EQ(0, ioctl(self->vcpu, KVM_SET_REGS, &regs));
	run_expect(_metadata, self->vcpu, self->run, KVM_EXIT_IO);
	EXPECT_EQ(0x1234, *(__u16 *)((char *)self->run + self->run->io.data_offset));
	EXPECT_EQ(0ULL, efd_count(pio));
	close(pio);
	close(pio0);
	close(mmio);
}

/* ---- KVM_GET_CLOCK / KVM_SET_CLOCK and kvmclock ----------------------- */

static __u64 get_clock(struct __test_metadata *_metadata, int vm)
{
	struct kvm_clock_data c = { 0 };

	EXPECT_EQ(0, ioctl(vm, KVM_GET_CLOCK, &c)) TH_LOG("KVM_GET_CLOCK: %s", strerror(errno));
	return c.clock;
}

TEST_F(state, clock_get_set_and_bad_input)
{
	struct kvm_clock_data c = { .clock = 5000000000000ULL };
	__u64 a, b;
	int adjust = ioctl(self->dev, KVM_CHECK_EXTENSION, KVM_CAP_ADJUST_CLOCK);

	/* QEMU requires the cap; REALTIME and HOST_TSC go with KVM_GET_CLOCK. */
	EXPECT_TRUE(adjust & KVM_CLOCK_REALTIME) TH_LOG("ADJUST_CLOCK %#x", adjust);
	a = get_clock(_metadata, self->vm);
	b = get_clock(_metadata, self->vm);
	EXPECT_LE(a, b);
	EXPECT_GT(60000000000ULL, a) TH_LOG("a new VM's clock starts near 0: %llu",
					   (unsigned long long)a);
	ASSERT_EQ(0, ioctl(self->vm, KVM_SET_CLOCK, &c));
	a = get_clock(_metadata, self->vm);
	EXPECT_LE(5000000000000ULL, a);
	EXPECT_GT(5000000000000ULL + 10000000000ULL, a) TH_LOG("%llu", (unsigned long long)a);
	/* KVM_CLOCK_REALTIME: the time since `realtime` is added. */
	memset(&c, 0, sizeof(c));
	ASSERT_EQ(0, ioctl(self->vm, KVM_GET_CLOCK, &c));
	if (c.flags & KVM_CLOCK_REALTIME) {
		c.realtime -= 100000000000ULL;	/* 100 s ago */
		ASSERT_EQ(0, ioctl(self->vm, KVM_SET_CLOCK, &c));
		b = get_clock(_metadata, self->vm);
		EXPECT_LE(c.clock + 100000000000ULL, b);
	}
	c.flags = 1 << 9;
	EXPECT_ERRNO(EINVAL, ioctl(self->vm, KVM_SET_CLOCK, &c));
	EXPECT_ERRNO(EFAULT, ioctl(self->vm, KVM_SET_CLOCK, (void *)8));
	EXPECT_ERRNO(EFAULT, ioctl(self->vm, KVM_GET_CLOCK, (void *)8));
}

#define MSR_KVM_SYSTEM_TIME_NEW	0x4b564d01
#define MSR_KVM_WALL_CLOCK_NEW	0x4b564d00
#define MSR_IA32_TSC		0x10

/* The guest time for guest TSC `tsc` from the pvclock page at `p`. */
static __u64 pvclock_ns(const unsigned char *p, __u64 tsc)
{
	__u64 ts, sys, d;
	__u32 mul;
	signed char shift;

	memcpy(&ts, p + 8, 8);
	memcpy(&sys, p + 16, 8);
	memcpy(&mul, p + 24, 4);
	shift = (signed char)p[28];
	d = tsc - ts;
	d = shift >= 0 ? d << shift : d >> -shift;
	return sys + (__u64)(((unsigned __int128)d * mul) >> 32);
}

/* One guest TSC report; the guest time it maps to must lie between the
 * VM clock read before the run and after it. */
static void check_guest_time(struct __test_metadata *_metadata, FIXTURE_DATA(state) *self,
			     const char *when)
{
	const __u64 slack = 50000000;	/* 50 ms of scale error */
	__u64 before, after, tsc, ns;
	__u32 version;

	before = get_clock(_metadata, self->vm);
	tsc = RUN_OUT(4);
	tsc |= (__u64)RUN_OUT(4) << 32;
	after = get_clock(_metadata, self->vm);
	memcpy(&version, self->mem + KC_TIME, 4);
	EXPECT_TRUE(version && !(version & 1)) TH_LOG("%s: version %u", when, version);
	ns = pvclock_ns((unsigned char *)self->mem + KC_TIME, tsc);
	EXPECT_LE(before - slack, ns) TH_LOG("%s: guest %llu ns, clock before %llu", when,
					    (unsigned long long)ns, (unsigned long long)before);
	EXPECT_GE(after + slack, ns) TH_LOG("%s: guest %llu ns, clock after %llu", when,
					   (unsigned long long)ns, (unsigned long long)after);
}

TEST_F(state, kvmclock_reaches_the_guest)
{
	struct kvm_cpuid2 *sup = rkvm_supported_cpuid(self->dev);
	struct kvm_clock_data c = { .clock = 1000000000000ULL };
	struct timespec now;
	__u32 sec, nsec, i, feat = 0;
	__u64 clock;
	double boot;

	ASSERT_NE(NULL, sup);
	for (i = 0; i < sup->nent; i++)
		if (sup->entries[i].function == 0x40000001)
			feat = sup->entries[i].eax;
	free(sup);
	EXPECT_TRUE(!!(feat & (1 << 3))) TH_LOG("KVM_FEATURE_CLOCKSOURCE2 not offered: %#x", feat);
	ASSERT_EQ(0, ioctl(self->vm, KVM_SET_CLOCK, &c));
	load(_metadata, self->mem, kc16_start, kc16_end);
	enter(_metadata, self->vcpu, false, 0);
	check_guest_time(_metadata, self, "first");
	EXPECT_EQ((__u64)(KC_TIME | 1), get_msr(_metadata, self->vcpu, MSR_KVM_SYSTEM_TIME_NEW));
	EXPECT_EQ((__u64)KC_WALL, get_msr(_metadata, self->vcpu, MSR_KVM_WALL_CLOCK_NEW));
	/* The wall clock: the host's time at which the VM clock read 0. */
	clock = get_clock(_metadata, self->vm);
	clock_gettime(CLOCK_REALTIME, &now);
	memcpy(&sec, self->mem + KC_WALL + 4, 4);
	memcpy(&nsec, self->mem + KC_WALL + 8, 4);
	boot = now.tv_sec + now.tv_nsec / 1e9 - clock / 1e9;
	EXPECT_GT(2.0, boot > sec + nsec / 1e9 ? boot - (sec + nsec / 1e9) : sec + nsec / 1e9 - boot)
		TH_LOG("wall clock %u.%09u, expected %.3f", sec, nsec, boot);
	/* A new TSC and a new clock are both followed. */
	ASSERT_EQ(1, rkvm_set_msr(self->vcpu, MSR_IA32_TSC, 1ULL << 40));
	check_guest_time(_metadata, self, "after a TSC write");
	c.clock = 7000000000000ULL;
	ASSERT_EQ(0, ioctl(self->vm, KVM_SET_CLOCK, &c));
	check_guest_time(_metadata, self, "after KVM_SET_CLOCK");
}

/* ---- Single-stepping ---------------------------------------------------- */

/*
 * KVM_RUN while single-stepping. Under Bochs, kvm_intel also stops again
 * at the address it last stopped at (the trap flag set at VM entry traps
 * before the first instruction): such a repeat, at most one in a row, is
 * run through. *last is the address of the previous stop.
 */
static void step_run(struct __test_metadata *_metadata, FIXTURE_DATA(state) *self,
		     __u64 *last)
{
	int repeats = 0;

	for (;;) {
		ASSERT_EQ(0, ioctl(self->vcpu, KVM_RUN, 0)) TH_LOG("KVM_RUN: %s", strerror(errno));
		if (self->run->exit_reason != KVM_EXIT_DEBUG ||
		    self->run->debug.arch.pc != *last || repeats++)
			break;
	}
	if (self->run->exit_reason == KVM_EXIT_DEBUG)
		*last = self->run->debug.arch.pc;
}

static void expect_step(struct __test_metadata *_metadata, FIXTURE_DATA(state) *self,
			__u64 *last, const char *at, const char *name)
{
	char why[96];

	step_run(_metadata, self, last);
	ASSERT_EQ((__u32)KVM_EXIT_DEBUG, self->run->exit_reason)
		TH_LOG("%s: got %s", name, exit_str(self->run, why, sizeof(why)));
	EXPECT_EQ((__u64)(CODE_GPA + (at - step16_start)), self->run->debug.arch.pc) TH_LOG("%s", name);
	EXPECT_EQ(1U, self->run->debug.arch.exception);
	EXPECT_TRUE(!!(self->run->debug.arch.dr6 & (1 << 14))) TH_LOG("DR6 %#llx",
		(unsigned long long)self->run->debug.arch.dr6);
}

TEST_F(state, single_step_stops_after_every_instruction)
{
	struct kvm_guest_debug dbg = {
		.control = KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP,
	};
	struct kvm_regs regs;
	__u64 last = CODE_GPA;

	EXPECT_EQ(1, ioctl(self->dev, KVM_CHECK_EXTENSION, KVM_CAP_X86_ROBUST_SINGLESTEP));
	load(_metadata, self->mem, step16_start, step16_end);
	enter(_metadata, self->vcpu, false, 0);
	ASSERT_EQ(0, ioctl(self->vcpu, KVM_SET_GUEST_DEBUG, &dbg))
		TH_LOG("KVM_SET_GUEST_DEBUG: %s", strerror(errno));
	expect_step(_metadata, self, &last, step16_1, "after NOP");
	expect_step(_metadata, self, &last, step16_2, "after CPUID (emulated)");
	step_run(_metadata, self, &last);
	EXPECT_EQ((__u32)KVM_EXIT_IO, self->run->exit_reason);
	expect_step(_metadata, self, &last, step16_3, "after OUT (user space)");
	expect_step(_metadata, self, &last, step16_4, "after INC");
	step_run(_metadata, self, &last);
	EXPECT_EQ((__u32)KVM_EXIT_HLT, self->run->exit_reason);
	/* RFLAGS.TF is the debugger's, not the guest's. */
	ASSERT_EQ(0, ioctl(self->vcpu, KVM_GET_REGS, &regs));
	EXPECT_EQ(0ULL, regs.rflags & (1 << 8));
	/* Off again: from the start straight to the port write. */
	dbg.control = 0;
	ASSERT_EQ(0, ioctl(self->vcpu, KVM_SET_GUEST_DEBUG, &dbg));
	regs.rip = CODE_GPA;
	ASSERT_EQ(0, ioctl(self->vcpu, KVM_SET_REGS, &regs));
	run_expect(_metadata, self->vcpu, self->run, KVM_EXIT_IO);
	/* Flags KVM does not know are ignored, as KVM does. */
	dbg.control = KVM_GUESTDBG_ENABLE | 0x80000000;
	EXPECT_EQ(0, ioctl(self->vcpu, KVM_SET_GUEST_DEBUG, &dbg));
	EXPECT_ERRNO(EFAULT, ioctl(self->vcpu, KVM_SET_GUEST_DEBUG, (void *)8));
}

/* The next exit is KVM_EXIT_DEBUG for `exception` at guest address `at`. */
static void expect_debug(struct __test_metadata *_metadata, FIXTURE_DATA(state) *self,
			 __u32 exception, const char *at, const char *name)
{
	char why[96];

	ASSERT_EQ(0, ioctl(self->vcpu, KVM_RUN, 0)) TH_LOG("KVM_RUN: %s", strerror(errno));
	ASSERT_EQ((__u32)KVM_EXIT_DEBUG, self->run->exit_reason)
		TH_LOG("%s: got %s", name, exit_str(self->run, why, sizeof(why)));
	EXPECT_EQ(exception, self->run->debug.arch.exception) TH_LOG("%s", name);
	EXPECT_EQ((__u64)(CODE_GPA + (at - bp16_start)), self->run->debug.arch.pc) TH_LOG("%s", name);
}

/*
 * A debugger's breakpoints (KVM_SET_GUEST_DEBUG): INT3 exits with RIP at
 * it; INJECT_BP hands the #BP to the guest (EBUSY while one is queued);
 * DR0-DR3 and DR7 of USE_HW_BP are the debugger's, not the guest's, for
 * instruction breakpoints (fault), data breakpoints (trap) and general
 * detect (MOV DR exits, RIP at it), each with KVM's DR6.
 */
TEST_F(state, breakpoints_for_a_debugger)
{
	struct kvm_guest_debug dbg = {
		.control = KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_SW_BP,
	};
	struct kvm_debugregs dr;
	struct kvm_regs regs;

	EXPECT_EQ(1, ioctl(self->dev, KVM_CHECK_EXTENSION, KVM_CAP_SET_GUEST_DEBUG));
	load(_metadata, self->mem, bp16_start, bp16_end);
	enter(_metadata, self->vcpu, false, 0);
	ASSERT_EQ(0, ioctl(self->vcpu, KVM_SET_GUEST_DEBUG, &dbg)) TH_LOG("%s", strerror(errno));
	expect_debug(_metadata, self, 3, bp16_int3, "INT3");

	/* The guest's own handler takes it, after the INT3. */
	dbg.control = KVM_GUESTDBG_INJECT_BP;
	ASSERT_EQ(0, ioctl(self->vcpu, KVM_SET_GUEST_DEBUG, &dbg)) TH_LOG("%s", strerror(errno));
	dbg.control = KVM_GUESTDBG_INJECT_DB;
	EXPECT_ERRNO(EBUSY, ioctl(self->vcpu, KVM_SET_GUEST_DEBUG, &dbg));
	EXPECT_EQ((__u32)'B', run_out(_metadata, self->vcpu, self->run, 1));

	/* An instruction breakpoint in DR0 (G0): before the NOP, B0. */
	dbg.control = KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_HW_BP;
	dbg.arch.debugreg[0] = CODE_GPA + (bp16_nop - bp16_start);
	dbg.arch.debugreg[7] = 0x402;
	ASSERT_EQ(0, ioctl(self->vcpu, KVM_SET_GUEST_DEBUG, &dbg)) TH_LOG("%s", strerror(errno));
	expect_debug(_metadata, self, 1, bp16_nop, "DR0 execute");
	EXPECT_EQ(0xffff0ff1ULL, self->run->debug.arch.dr6);
	EXPECT_EQ(0x402ULL, self->run->debug.arch.dr7);
	/* The guest's debug registers are its own. */
	ASSERT_EQ(0, ioctl(self->vcpu, KVM_GET_DEBUGREGS, &dr));
	EXPECT_EQ(0ULL, dr.db[0]);
	EXPECT_EQ(0x400ULL, dr.dr7);

	/* A write breakpoint on DATA_GPA in DR1 (G1, RW1 = 01): after it. */
	dbg.arch.debugreg[0] = 0;
	dbg.arch.debugreg[1] = DATA_GPA;
	dbg.arch.debugreg[7] = 0x400 | 1 << 3 | 1 << 20;
	ASSERT_EQ(0, ioctl(self->vcpu, KVM_SET_GUEST_DEBUG, &dbg));
	expect_debug(_metadata, self, 1, bp16_mov_dr, "DR1 write");
	EXPECT_EQ(0xffff0ff2ULL, self->run->debug.arch.dr6);
	EXPECT_EQ(0x1234U, (__u32)*(__u16 *)(self->mem + DATA_GPA));

	/* General detect: the MOV from DR0 exits before it runs, BD. */
	dbg.arch.debugreg[1] = 0;
	dbg.arch.debugreg[7] = 0x400 | 1 << 13;
	ASSERT_EQ(0, ioctl(self->vcpu, KVM_SET_GUEST_DEBUG, &dbg));
	expect_debug(_metadata, self, 1, bp16_mov_dr, "DR7.GD");
	EXPECT_EQ(0xffff2ff0ULL, self->run->debug.arch.dr6);

	/* Off: the MOV reads the guest's DR0 (0), then HLT. */
	dbg.control = 0;
	ASSERT_EQ(0, ioctl(self->vcpu, KVM_SET_GUEST_DEBUG, &dbg));
	run_expect(_metadata, self->vcpu, self->run, KVM_EXIT_HLT);
	ASSERT_EQ(0, ioctl(self->vcpu, KVM_GET_REGS, &regs));
	EXPECT_EQ(0ULL, regs.rax & 0xffffffff);
}

/* ---- MTRRs --------------------------------------------------------------- */

/* What QEMU writes at every reset (28 MTRRs, 0), KVM's MTRRCAP, validity. */
TEST_F(state, mtrr_msrs_as_qemu_uses_them)
{
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e[28];
	} m = { .hdr.nmsrs = 28 };
	unsigned int i, n = 0;

	m.e[n++].index = 0x2ff;
	m.e[n++].index = 0x250;
	m.e[n++].index = 0x258;
	m.e[n++].index = 0x259;
	for (i = 0x268; i <= 0x26f; i++)
		m.e[n++].index = i;
	for (i = 0x200; i < 0x210; i++)
		m.e[n++].index = i;
	ASSERT_EQ(28U, n);
	EXPECT_EQ(28, ioctl(self->vcpu, KVM_SET_MSRS, &m));
	EXPECT_EQ(0x508ULL, get_msr(_metadata, self->vcpu, 0xfe));
	EXPECT_EQ(0, rkvm_set_msr(self->vcpu, 0x2ff, 0x2)) TH_LOG("type 2 is reserved");
	EXPECT_EQ(0, rkvm_set_msr(self->vcpu, 0x210, 0)) TH_LOG("not an MTRR");
	EXPECT_EQ(1, rkvm_set_msr(self->vcpu, 0x200, 0x80000006));
	EXPECT_EQ(0x80000006ULL, get_msr(_metadata, self->vcpu, 0x200));
	/* The guest's own RDMSR/WRMSR. */
	load(_metadata, self->mem, mtrr16_start, mtrr16_end);
	enter(_metadata, self->vcpu, false, 0);
	EXPECT_EQ(0xc06U, RUN_OUT(4));
	EXPECT_EQ(0x508U, RUN_OUT(4));
	run_expect(_metadata, self->vcpu, self->run, KVM_EXIT_HLT);
	EXPECT_EQ(0xc06ULL, get_msr(_metadata, self->vcpu, 0x2ff));
}

/* ---- FS/GS base MSRs (Linux's startup_64 writes GS_BASE first thing) ---- */

TEST_F(state, fs_gs_base_and_ucode_rev_msrs)
{
	struct kvm_sregs sr;
	__u32 v = 0x5a5a1234;

	/* IA32_BIOS_SIGN_ID (0x8b), which Linux writes then reads at boot:
	 * KVM's reset value, host-settable. */
	EXPECT_EQ(1ULL << 32, get_msr(_metadata, self->vcpu, 0x8b));
	EXPECT_EQ(1, rkvm_set_msr(self->vcpu, 0x8b, 0x42ULL << 32));
	EXPECT_EQ(0x42ULL << 32, get_msr(_metadata, self->vcpu, 0x8b));
	/* Host side: the MSRs are the sregs' segment bases. */
	EXPECT_EQ(1, rkvm_set_msr(self->vcpu, 0xc0000101, 0xffff888000001000ULL));
	ASSERT_EQ(0, ioctl(self->vcpu, KVM_GET_SREGS, &sr));
	EXPECT_EQ(0xffff888000001000ULL, sr.gs.base);
	EXPECT_EQ(0, rkvm_set_msr(self->vcpu, 0xc0000100, 0x0000800000000000ULL))
		TH_LOG("non-canonical");
	/* Guest side: WRMSR, RDMSR, and a load through the new base. */
	memcpy(self->mem + DATA_GPA + 4, &v, 4);
	load(_metadata, self->mem, fsb16_start, fsb16_end);
	enter(_metadata, self->vcpu, false, 0);
	EXPECT_EQ((__u32)DATA_GPA, RUN_OUT(4));
	EXPECT_EQ(v, RUN_OUT(4));
	run_expect(_metadata, self->vcpu, self->run, KVM_EXIT_HLT);
	EXPECT_EQ((__u64)DATA_GPA, get_msr(_metadata, self->vcpu, 0xc0000100));
	ASSERT_EQ(0, ioctl(self->vcpu, KVM_GET_SREGS, &sr));
	EXPECT_EQ((__u64)DATA_GPA, sr.fs.base);
}

/*
 * Host-side MSR rules as KVM has them: HWCR (0xc0010015, on every vendor)
 * keeps bits 18 and 24, drops 3, 6 and 8 and refuses the rest; the first
 * vCPU's TSC starts at 0; a host TSC_ADJUST write is stored only when the
 * guest CPUID has TSC_ADJUST (leaf 7 EBX bit 1), and never moves the TSC.
 */
TEST_F(state, hwcr_tsc_and_tsc_adjust_msrs)
{
	struct {
		struct kvm_cpuid2 hdr;
		struct kvm_cpuid_entry2 e[2];
	} c = {
		.hdr.nent = 2,
		.e = {
			{ .function = 0, .eax = 7 },
			{ .function = 7, .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX, .ebx = 1 << 1 },
		},
	};
	__u64 tsc;

	EXPECT_EQ(0ULL, get_msr(_metadata, self->vcpu, 0xc0010015));
	EXPECT_EQ(1, rkvm_set_msr(self->vcpu, 0xc0010015, 1ULL << 18 | 1ULL << 24 | 1ULL << 3));
	EXPECT_EQ(1ULL << 18 | 1ULL << 24, get_msr(_metadata, self->vcpu, 0xc0010015));
	EXPECT_EQ(0, rkvm_set_msr(self->vcpu, 0xc0010015, 1ULL << 1));
	EXPECT_EQ(0, rkvm_set_msr(self->vcpu, 0xc0010015, 1ULL << 35)) TH_LOG("no GP_ON_USER_CPUID");
	EXPECT_EQ(1ULL << 18 | 1ULL << 24, get_msr(_metadata, self->vcpu, 0xc0010015));

	/* Well below the host's TSC (the lab's runs at a few GHz). */
	tsc = get_msr(_metadata, self->vcpu, 0x10);
	EXPECT_GT(1ULL << 36, tsc) TH_LOG("guest TSC %#llx", (unsigned long long)tsc);

	EXPECT_EQ(0ULL, get_msr(_metadata, self->vcpu, 0x3b));
	EXPECT_EQ(1, rkvm_set_msr(self->vcpu, 0x3b, 5));
	EXPECT_EQ(0ULL, get_msr(_metadata, self->vcpu, 0x3b)) TH_LOG("no TSC_ADJUST in CPUID");
	ASSERT_EQ(0, ioctl(self->vcpu, KVM_SET_CPUID2, &c)) TH_LOG("%s", strerror(errno));
	EXPECT_EQ(1, rkvm_set_msr(self->vcpu, 0x3b, 1ULL << 40));
	EXPECT_EQ(1ULL << 40, get_msr(_metadata, self->vcpu, 0x3b));
	EXPECT_GT(1ULL << 37, get_msr(_metadata, self->vcpu, 0x10)) TH_LOG("the TSC did not move");
}

/*
 * MSR_PLATFORM_INFO (0xce): listed, CPUID faulting (bit 31) at reset, any
 * value from the host; KVM_CAP_MSR_PLATFORM_INFO takes any argument.
 */
TEST_F(state, platform_info_msr)
{
	struct { struct kvm_msr_list hdr; __u32 idx[1024]; } list = { .hdr.nmsrs = 1024 };
	struct kvm_enable_cap cap = { .cap = KVM_CAP_MSR_PLATFORM_INFO, .args = { 0 } };
	unsigned int i;

	EXPECT_EQ(1, ioctl(self->dev, KVM_CHECK_EXTENSION, KVM_CAP_MSR_PLATFORM_INFO));
	ASSERT_EQ(0, ioctl(self->dev, KVM_GET_MSR_INDEX_LIST, &list));
	for (i = 0; i < list.hdr.nmsrs && list.idx[i] != 0xce; i++)
		;
	EXPECT_GT(list.hdr.nmsrs, i) TH_LOG("MSR_PLATFORM_INFO not listed");
	EXPECT_EQ(1ULL << 31, get_msr(_metadata, self->vcpu, 0xce));
	EXPECT_EQ(1, rkvm_set_msr(self->vcpu, 0xce, 0xffffffffffff00ffULL));
	EXPECT_EQ(0xffffffffffff00ffULL, get_msr(_metadata, self->vcpu, 0xce));
	EXPECT_EQ(0, ioctl(self->vm, KVM_ENABLE_CAP, &cap)) TH_LOG("%s", strerror(errno));
	cap.args[0] = 7;
	EXPECT_EQ(0, ioctl(self->vm, KVM_ENABLE_CAP, &cap)) TH_LOG("%s", strerror(errno));
}

/*
 * The vCPU's TSC offset as a device attribute (KVM_VCPU_TSC_CTRL,
 * KVM_VCPU_TSC_OFFSET): the guest TSC (here read by KVM_GET_MSRS) is the
 * host's plus the offset; vCPUs created later start with it. ENXIO for any
 * other group or attribute, EFAULT for bad pointers.
 */
TEST_F(state, tsc_offset_attribute)
{
	__u64 off = 1ULL << 50, got = 0, t0, t1, tsc;
	struct kvm_device_attr a = { .group = KVM_VCPU_TSC_CTRL, .attr = KVM_VCPU_TSC_OFFSET,
				     .addr = (unsigned long)&off };
	int v1;

	EXPECT_EQ(1, ioctl(self->dev, KVM_CHECK_EXTENSION, KVM_CAP_VCPU_ATTRIBUTES));
	EXPECT_EQ(0, ioctl(self->vcpu, KVM_HAS_DEVICE_ATTR, &a)) TH_LOG("%s", strerror(errno));
	ASSERT_EQ(0, ioctl(self->vcpu, KVM_SET_DEVICE_ATTR, &a)) TH_LOG("%s", strerror(errno));
	a.addr = (unsigned long)&got;
	ASSERT_EQ(0, ioctl(self->vcpu, KVM_GET_DEVICE_ATTR, &a)) TH_LOG("%s", strerror(errno));
	EXPECT_EQ(off, got);
	t0 = __builtin_ia32_rdtsc();
	tsc = get_msr(_metadata, self->vcpu, 0x10);
	t1 = __builtin_ia32_rdtsc();
	EXPECT_LE(t0 + off, tsc);
	EXPECT_GE(t1 + off, tsc);
	/*
	 * A vCPU created now starts with that offset (KVM: exactly, or, with a
	 * TSC it deems unstable, moved by the time elapsed: well under 2^32).
	 */
	v1 = ioctl(self->vm, KVM_CREATE_VCPU, 1);
	ASSERT_LE(0, v1);
	got = 0;
	ASSERT_EQ(0, ioctl(v1, KVM_GET_DEVICE_ATTR, &a)) TH_LOG("%s", strerror(errno));
	EXPECT_GT(1LL << 32, llabs((long long)(got - off)))
		TH_LOG("offset %#llx, vCPU 1's %#llx", (unsigned long long)off,
		       (unsigned long long)got);
	close(v1);

	a.group = 1;
	EXPECT_ERRNO(ENXIO, ioctl(self->vcpu, KVM_HAS_DEVICE_ATTR, &a));
	EXPECT_ERRNO(ENXIO, ioctl(self->vcpu, KVM_SET_DEVICE_ATTR, &a));
	a.group = KVM_VCPU_TSC_CTRL;
	a.attr = 1;
	EXPECT_ERRNO(ENXIO, ioctl(self->vcpu, KVM_HAS_DEVICE_ATTR, &a));
	EXPECT_ERRNO(ENXIO, ioctl(self->vcpu, KVM_GET_DEVICE_ATTR, &a));
	a.attr = KVM_VCPU_TSC_OFFSET;
	a.addr = 8;
	EXPECT_ERRNO(EFAULT, ioctl(self->vcpu, KVM_GET_DEVICE_ATTR, &a));
	EXPECT_ERRNO(EFAULT, ioctl(self->vcpu, KVM_SET_DEVICE_ATTR, &a));
	EXPECT_ERRNO(EFAULT, ioctl(self->vcpu, KVM_HAS_DEVICE_ATTR, (void *)8));
	/* The failed calls changed nothing. */
	a.addr = (unsigned long)&got;
	got = 0;
	ASSERT_EQ(0, ioctl(self->vcpu, KVM_GET_DEVICE_ATTR, &a));
	EXPECT_EQ(off, got);
}

/* ---- Coalesced MMIO ----------------------------------------------------- */

/* The value of coalesced entry `i` (its first `len` bytes). */
static __u64 cw_data(const struct kvm_coalesced_mmio *e)
{
	__u64 v = 0;

	memcpy(&v, e->data, e->len < 8 ? e->len : 8);
	return v;
}

/* Restarts the cw32 guest at its first instruction, the ring's indices
 * set to `first` and `last`. */
static void cw_restart(struct __test_metadata *_metadata, int vcpu,
		       struct kvm_coalesced_mmio_ring *ring, __u32 first, __u32 last)
{
	struct kvm_regs regs;

	ASSERT_EQ(0, ioctl(vcpu, KVM_GET_REGS, &regs));
	regs.rip = CODE_GPA;
	ASSERT_EQ(0, ioctl(vcpu, KVM_SET_REGS, &regs));
	ring->first = first;
	ring->last = last;
}

/*
 * KVM_REGISTER_COALESCED_MMIO: writes into a zone (MMIO or, with pio = 1,
 * ports) go to the ring at page 2 of the vCPU mmap instead of exiting;
 * loads and writes elsewhere exit; a full ring (one entry always free)
 * makes writes exit again; unregistering removes the zones containing
 * the range.
 */
TEST_F(state, coalesced_mmio_and_pio)
{
	struct kvm_coalesced_mmio_zone mz = { .addr = CW_MMIO, .size = 8 };
	struct kvm_coalesced_mmio_zone pz = { .addr = CW_PORT, .size = 8, .pio = 1 };
	struct kvm_coalesced_mmio_zone bad = { .addr = CW_MMIO, .size = 8, .pio = 2 };
	struct kvm_coalesced_mmio_ring *ring;
	struct kvm_coalesced_mmio *e;
	__u32 val = 0x01020304;

	ASSERT_EQ(2, ioctl(self->dev, KVM_CHECK_EXTENSION, KVM_CAP_COALESCED_MMIO));
	EXPECT_EQ(1, ioctl(self->dev, KVM_CHECK_EXTENSION, KVM_CAP_COALESCED_PIO));
	ASSERT_LE(3 * 4096, self->run_size);
	ring = (struct kvm_coalesced_mmio_ring *)((char *)self->run + 2 * 4096);
	e = ring->coalesced_mmio;
	EXPECT_ERRNO(EINVAL, ioctl(self->vm, KVM_REGISTER_COALESCED_MMIO, &bad));
	EXPECT_ERRNO(EINVAL, ioctl(self->vm, KVM_UNREGISTER_COALESCED_MMIO, &bad));
	EXPECT_ERRNO(EFAULT, ioctl(self->vm, KVM_REGISTER_COALESCED_MMIO, (void *)8));
	ASSERT_EQ(0, ioctl(self->vm, KVM_REGISTER_COALESCED_MMIO, &mz)) TH_LOG("%s", strerror(errno));
	ASSERT_EQ(0, ioctl(self->vm, KVM_REGISTER_COALESCED_MMIO, &pz)) TH_LOG("%s", strerror(errno));

	load(_metadata, self->mem, cw32_start, cw32_end);
	enter(_metadata, self->vcpu, true, 0);
	EXPECT_EQ(0U, ring->first);
	EXPECT_EQ(0U, ring->last);
	/* Four writes coalesced; the load exits. */
	run_expect(_metadata, self->vcpu, self->run, KVM_EXIT_MMIO);
	EXPECT_EQ((__u64)CW_MMIO, self->run->mmio.phys_addr);
	EXPECT_EQ(0, self->run->mmio.is_write);
	EXPECT_EQ(0U, ring->first);
	ASSERT_EQ(4U, ring->last);
	EXPECT_TRUE(e[0].phys_addr == CW_PORT && e[0].len == 4 && e[0].pio == 1 &&
		    cw_data(&e[0]) == 0x11223344);
	EXPECT_TRUE(e[1].phys_addr == CW_MMIO && e[1].len == 4 && e[1].pio == 0 &&
		    cw_data(&e[1]) == 0xaabbccdd);
	EXPECT_TRUE(e[2].phys_addr == CW_MMIO + 4 && e[2].len == 2 && e[2].pio == 0 &&
		    cw_data(&e[2]) == 0x5566);
	EXPECT_TRUE(e[3].phys_addr == CW_PORT + 7 && e[3].len == 1 && e[3].pio == 1 &&
		    cw_data(&e[3]) == 0x77);
	memcpy(self->run->mmio.data, &val, 4);
	/* A port outside the zone exits. */
	run_expect(_metadata, self->vcpu, self->run, KVM_EXIT_IO);
	EXPECT_EQ(CW_PORT + 16, self->run->io.port);
	run_expect(_metadata, self->vcpu, self->run, KVM_EXIT_HLT);
	EXPECT_EQ(4U, ring->last);

	/* A full ring: the first write exits; once drained, the rest go in
	 * (wrapping at 170 entries). */
	cw_restart(_metadata, self->vcpu, ring, 3, 2);
	run_expect(_metadata, self->vcpu, self->run, KVM_EXIT_IO);
	EXPECT_EQ(CW_PORT, self->run->io.port);
	EXPECT_EQ(2U, ring->last);
	ring->first = ring->last = 168;
	run_expect(_metadata, self->vcpu, self->run, KVM_EXIT_MMIO);
	EXPECT_EQ(0, self->run->mmio.is_write);
	EXPECT_EQ(1U, ring->last) TH_LOG("three entries from 168, wrapped");
	EXPECT_EQ(0x5566ULL, cw_data(&e[169]));
	EXPECT_EQ(0x77ULL, cw_data(&e[0]));
	/* To the end (a restart with the load pending would complete it). */
	run_expect(_metadata, self->vcpu, self->run, KVM_EXIT_IO);
	run_expect(_metadata, self->vcpu, self->run, KVM_EXIT_HLT);
	/* Indices out of range are not trusted: the write exits. */
	cw_restart(_metadata, self->vcpu, ring, 0, 1000);
	run_expect(_metadata, self->vcpu, self->run, KVM_EXIT_IO);
	EXPECT_EQ(CW_PORT, self->run->io.port);
	EXPECT_EQ(1000U, ring->last);

	/* Unregistering a range inside the MMIO zone removes it (and one
	 * nothing contains is no error): MMIO stores exit again. */
	EXPECT_EQ(0, ioctl(self->vm, KVM_UNREGISTER_COALESCED_MMIO,
			   &(struct kvm_coalesced_mmio_zone){ .addr = 0x123000, .size = 4 }));
	mz.size = 4;
	ASSERT_EQ(0, ioctl(self->vm, KVM_UNREGISTER_COALESCED_MMIO, &mz));
	cw_restart(_metadata, self->vcpu, ring, 0, 0);
	run_expect(_metadata, self->vcpu, self->run, KVM_EXIT_MMIO);
	EXPECT_EQ((__u64)CW_MMIO, self->run->mmio.phys_addr);
	EXPECT_EQ(1, self->run->mmio.is_write);
	EXPECT_EQ(1U, ring->last) TH_LOG("the OUT still coalesced");
}

/* ---- Without an in-kernel irqchip --------------------------------------- */

TEST_F(state, msi_and_gsi_routing_need_an_irqchip)
{
	struct kvm_msi msi = { .address_lo = 0xfee00000, .data = 0x30 };
	struct kvm_irq_routing routing = { .nr = 0 };

	/* QEMU requires these caps; KVM reports them with or without one. */
	EXPECT_EQ(1, ioctl(self->dev, KVM_CHECK_EXTENSION, KVM_CAP_SIGNAL_MSI));
	EXPECT_LT(0, ioctl(self->dev, KVM_CHECK_EXTENSION, KVM_CAP_IRQ_ROUTING));
	EXPECT_EQ(1, ioctl(self->dev, KVM_CHECK_EXTENSION, KVM_CAP_INTERNAL_ERROR_DATA));
	EXPECT_ERRNO(EINVAL, ioctl(self->vm, KVM_SIGNAL_MSI, &msi));
	EXPECT_ERRNO(EFAULT, ioctl(self->vm, KVM_SIGNAL_MSI, (void *)8));
	EXPECT_ERRNO(EINVAL, ioctl(self->vm, KVM_SET_GSI_ROUTING, &routing));
	EXPECT_ERRNO(EFAULT, ioctl(self->vm, KVM_SET_GSI_ROUTING, (void *)8));
}

TEST_HARNESS_MAIN
