// SPDX-License-Identifier: GPL-2.0
/*
 * The split irqchip (KVM_CAP_SPLIT_IRQCHIP) and the in-kernel local APIC:
 * enabling the capability, the LAPIC state ioctls (KVM_GET/SET_LAPIC) and
 * the reset state, and guests using their APIC: xAPIC MMIO (self IPIs, ISR,
 * TPR, EOI), x2APIC MSRs, the APIC timer (one-shot waking HLT, periodic),
 * KVM_SIGNAL_MSI waking a halted vCPU, IPIs between vCPUs, EOI exits for
 * level-triggered vectors routed by KVM_SET_GSI_ROUTING, INIT/SIPI
 * starting an application processor, and irqfds (KVM_IRQFD) raising the
 * MSI route of their GSI. Each test checks what the guest
 * reports through port I/O, what the ioctls return and KVM's errno for bad
 * input. With an in-kernel LAPIC, HLT is handled in the kernel: no guest
 * here ever exits with KVM_EXIT_HLT, each ends with a last port report.
 *
 * Most guests run in flat 32-bit protected mode without paging; the
 * one-shot timer guest runs in long mode and reaches the xAPIC page only
 * through an alias in its 4-level page tables (so kvm_intel ept=0 and
 * rkvm's shadow MMU map the APIC page for it).
 *
 * Run against /dev/rkvm, and with RKVM_DEV=/dev/kvm against kvm_intel,
 * whose results are the expectations (checked with ept=1 and ept=0).
 * Where KVM's behaviour is not the obvious one, a comment says so.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "rkvm_util.h"

#define STR(x) #x
#define XSTR(x) STR(x)

#define MEM_SIZE	(2UL << 20)
#define CODE_GPA	0x1000		/* guest code, up to DATA_GPA */
#define DATA_GPA	0x5000		/* the guest's counters */
#define GDT_GPA		0x6000
#define IDT_GPA		0x7000		/* 256 gates of 8 (32-bit) or 16 bytes */
#define AP_GPA		0x8000		/* the AP's real-mode code (SIPI vector 8) */
#define STACK0		0xf000		/* vCPU 0's stack top */
#define STACK1		0xe000		/* vCPU 1's */
#define PML4_GPA	0x18000
#define PDPT_GPA	0x19000
#define PD_GPA		0x1a000
#define PT_GPA		0x1b000
#define PORT		0x10
#define DONE		0xd0e		/* every guest's last report */

#define APIC		0xfee00000
#define APIC_ALIAS	0x200000	/* the long-mode guest's view of it */

/* Counters the handlers increment (guest addresses). */
#define CNT0		0x5000
#define CNT1		0x5004
#define CNT2		0x5008

/* xAPIC register offsets. */
#define A_ID		0x20
#define A_LVR		0x30
#define A_TPR		0x80
#define A_PPR		0xa0
#define A_EOI		0xb0
#define A_LDR		0xd0
#define A_DFR		0xe0
#define A_SVR		0xf0
#define A_ISR		0x100
#define A_TMR		0x180
#define A_IRR		0x200
#define A_ESR		0x280
#define A_ICR		0x300
#define A_ICR2		0x310
#define A_LVTT		0x320
#define A_LVT0		0x350
#define A_TMICT		0x380
#define A_TMCCT		0x390
#define A_TDCR		0x3e0

/* A register as an absolute guest address (an assembler operand). */
#define R(off)		XSTR(APIC) " + " XSTR(off)
#define OUT_EAX		"	out %eax, $" XSTR(PORT) "\n"
#define OUT_IMM(v)	"	mov $" XSTR(v) ", %eax\n" OUT_EAX

#define GUEST_BEGIN ".pushsection .rodata.guest, \"a\"\n"
#define GUEST_END ".code64\n.popsection\n"

/*
 * Flat 32-bit: the xAPIC through MMIO. Enables the APIC (SVR bit 8),
 * reports the LVT timer after writing periodic mode to it, reports its ID, sends itself vector 0x40 through the ICR (shorthand
 * self) and waits for the handler, reports the count and the ISR word
 * after the EOI. Then TPR 0x50 holds back a self IPI of vector 0x41
 * (priority class 4): still pending in the IRR after a while; TPR 0
 * lets it in. The handlers report the ISR word of vectors 0x40-0x5f and
 * the PPR, count, EOI.
 */
asm(GUEST_BEGIN
	".code32\n"
	".global xapic_start, xapic_h40, xapic_h41, xapic_end\n"
	"xapic_start:\n"
	"	movl $0x1ff, " R(A_SVR) "\n"
	"	movl $0x30041, " R(A_LVTT) "\n"	/* masked, periodic */
	"	mov " R(A_LVTT) ", %eax\n"
	OUT_EAX
	"	movl $0x10000, " R(A_LVTT) "\n"
	"	mov " R(A_ID) ", %eax\n"
	OUT_EAX
	"	sti\n"
	"	movl $0x40040, " R(A_ICR) "\n"	/* self, fixed, vector 0x40 */
	"	mov $10000000, %ecx\n"
	"1:	cmpl $0, " XSTR(CNT0) "\n"
	"	jne 2f\n"
	"	dec %ecx\n"
	"	jnz 1b\n"
	"2:	mov " XSTR(CNT0) ", %eax\n"
	OUT_EAX
	"	mov " R(A_ISR) " + 0x20, %eax\n"
	OUT_EAX
	"	movl $0x50, " R(A_TPR) "\n"
	"	mov " R(A_PPR) ", %eax\n"
	OUT_EAX
	"	movl $0x40041, " R(A_ICR) "\n"	/* class 4 <= TPR class 5 */
	"	mov $200000, %ecx\n"
	"3:	dec %ecx\n"
	"	jnz 3b\n"
	"	mov " XSTR(CNT1) ", %eax\n"
	OUT_EAX
	"	mov " R(A_IRR) " + 0x20, %eax\n"
	OUT_EAX
	"	movl $0, " R(A_TPR) "\n"
	"	mov $10000000, %ecx\n"
	"4:	cmpl $0, " XSTR(CNT1) "\n"
	"	jne 5f\n"
	"	dec %ecx\n"
	"	jnz 4b\n"
	"5:	mov " XSTR(CNT1) ", %eax\n"
	OUT_EAX
	"	mov " R(A_IRR) " + 0x20, %eax\n"
	OUT_EAX
	"	mov " R(A_ISR) " + 0x20, %eax\n"
	OUT_EAX
	OUT_IMM(DONE)
	"xapic_h40:\n"
	"	push %eax\n"
	"	mov " R(A_ISR) " + 0x20, %eax\n"
	OUT_EAX
	"	mov " R(A_PPR) ", %eax\n"
	OUT_EAX
	"	incl " XSTR(CNT0) "\n"
	"	movl $0, " R(A_EOI) "\n"
	"	pop %eax\n"
	"	iret\n"
	"xapic_h41:\n"
	"	push %eax\n"
	"	mov " R(A_ISR) " + 0x20, %eax\n"
	OUT_EAX
	"	incl " XSTR(CNT1) "\n"
	"	movl $0, " R(A_EOI) "\n"
	"	pop %eax\n"
	"	iret\n"
	"xapic_end:\n"
	GUEST_END);
extern const char xapic_start[], xapic_h40[], xapic_h41[], xapic_end[];

/*
 * Flat 32-bit: the x2APIC MSRs. RDMSR of the x2APIC ID before x2APIC mode
 * raises #GP (the handler counts and skips the 2-byte RDMSR). Then
 * IA32_APIC_BASE gets EXTD, and the guest reads its ID and version, enables
 * the APIC through the SVR MSR, sends itself vector 0x40 through the
 * SELF IPI MSR; the handler reports the ISR MSR and EOIs through the EOI
 * MSR.
 */
asm(GUEST_BEGIN
	".code32\n"
	".global x2_start, x2_h40, x2_hgp, x2_end\n"
	"x2_start:\n"
	"	mov $0x802, %ecx\n"
	"	rdmsr\n"
	"	mov " XSTR(CNT1) ", %eax\n"
	OUT_EAX
	"	mov $0x1b, %ecx\n"
	"	rdmsr\n"
	OUT_EAX
	"	or $0xc00, %eax\n"		/* EN | EXTD */
	"	wrmsr\n"
	"	rdmsr\n"
	OUT_EAX
	"	mov $0x802, %ecx\n"
	"	rdmsr\n"
	OUT_EAX
	"	mov $0x803, %ecx\n"
	"	rdmsr\n"
	OUT_EAX
	"	mov $0x80f, %ecx\n"
	"	mov $0x1ff, %eax\n"
	"	xor %edx, %edx\n"
	"	wrmsr\n"
	"	sti\n"
	"	mov $0x83f, %ecx\n"
	"	mov $0x40, %eax\n"
	"	wrmsr\n"
	"	mov $10000000, %ecx\n"
	"1:	cmpl $0, " XSTR(CNT0) "\n"
	"	jne 2f\n"
	"	dec %ecx\n"
	"	jnz 1b\n"
	"2:	mov " XSTR(CNT0) ", %eax\n"
	OUT_EAX
	"	mov $0x812, %ecx\n"
	"	rdmsr\n"
	OUT_EAX
	"	mov " XSTR(CNT1) ", %eax\n"
	OUT_EAX
	OUT_IMM(DONE)
	"x2_h40:\n"
	"	push %eax\n"
	"	push %ecx\n"
	"	push %edx\n"
	"	mov $0x812, %ecx\n"		/* ISR, vectors 0x40-0x5f */
	"	rdmsr\n"
	OUT_EAX
	"	incl " XSTR(CNT0) "\n"
	"	mov $0x80b, %ecx\n"
	"	xor %eax, %eax\n"
	"	xor %edx, %edx\n"
	"	wrmsr\n"
	"	pop %edx\n"
	"	pop %ecx\n"
	"	pop %eax\n"
	"	iret\n"
	"x2_hgp:\n"
	"	incl " XSTR(CNT1) "\n"
	"	addl $2, 4(%esp)\n"		/* past the RDMSR */
	"	add $4, %esp\n"			/* the error code */
	"	iret\n"
	"x2_end:\n"
	GUEST_END);
extern const char x2_start[], x2_h40[], x2_hgp[], x2_end[];

/*
 * Long mode, 4-level paging; the APIC only at APIC_ALIAS. A one-shot
 * timer (vector 0x41, divide by 1, TMICT 10,000,000: 10 ms), then HLT
 * until the handler ran (IF set only by the STI right before each HLT);
 * reports how many HLTs that took, TMCCT, the count and the LVT timer.
 */
#define AR(off)		XSTR(APIC_ALIAS) " + " XSTR(off)
asm(GUEST_BEGIN
	".code64\n"
	".global t64_start, t64_h41, t64_end\n"
	"t64_start:\n"
	"	movl $0x1ff, " AR(A_SVR) "\n"
	"	movl $0xb, " AR(A_TDCR) "\n"
	"	movl $0x41, " AR(A_LVTT) "\n"
	"	xor %ebx, %ebx\n"
	"	movl $10000000, " AR(A_TMICT) "\n"
	"1:	cli\n"
	"	cmpl $0, " XSTR(CNT0) "\n"
	"	jne 2f\n"
	"	inc %ebx\n"
	"	sti\n"
	"	hlt\n"
	"	jmp 1b\n"
	"2:	mov %ebx, %eax\n"
	OUT_EAX
	"	mov " AR(A_TMCCT) ", %eax\n"
	OUT_EAX
	"	mov " XSTR(CNT0) ", %eax\n"
	OUT_EAX
	"	mov " AR(A_LVTT) ", %eax\n"
	OUT_EAX
	OUT_IMM(DONE)
	"t64_h41:\n"
	"	push %rax\n"
	"	incl " XSTR(CNT0) "\n"
	"	movl $0, " AR(A_EOI) "\n"
	"	pop %rax\n"
	"	iretq\n"
	"t64_end:\n"
	GUEST_END);
extern const char t64_start[], t64_h41[], t64_end[];

/*
 * Flat 32-bit: a periodic timer (vector 0x41, divide by 1, TMICT 2 ms),
 * HLT until five interrupts came, then mask it; reports the count, the
 * LVT timer, TMICT and TMCCT.
 */
#define PERIOD		2000000
asm(GUEST_BEGIN
	".code32\n"
	".global per_start, per_h41, per_end\n"
	"per_start:\n"
	"	movl $0x1ff, " R(A_SVR) "\n"
	"	movl $0xb, " R(A_TDCR) "\n"
	"	movl $0x20041, " R(A_LVTT) "\n"	/* periodic */
	"	movl $" XSTR(PERIOD) ", " R(A_TMICT) "\n"
	"1:	cli\n"
	"	cmpl $5, " XSTR(CNT0) "\n"
	"	jae 2f\n"
	"	sti\n"
	"	hlt\n"
	"	jmp 1b\n"
	"2:	movl $0x30041, " R(A_LVTT) "\n"	/* masked */
	"	mov " XSTR(CNT0) ", %eax\n"
	OUT_EAX
	"	mov " R(A_LVTT) ", %eax\n"
	OUT_EAX
	"	mov " R(A_TMICT) ", %eax\n"
	OUT_EAX
	"	mov " R(A_TMCCT) ", %eax\n"
	OUT_EAX
	OUT_IMM(DONE)
	"per_h41:\n"
	"	incl " XSTR(CNT0) "\n"
	"	movl $0, " R(A_EOI) "\n"
	"	iret\n"
	"per_end:\n"
	GUEST_END);
extern const char per_start[], per_h41[], per_end[];

/*
 * Flat 32-bit: waits with HLT for interrupts from the host. Reports 1
 * (ready), then HLTs until CNT0 is 1, reports it, HLTs until it is 2,
 * reports it. The handler (any vector) reports the ISR word of vectors
 * 0x40-0x5f and the TMR word, then counts and EOIs.
 */
asm(GUEST_BEGIN
	".code32\n"
	".global wait_start, wait_h, wait_end\n"
	"wait_start:\n"
	"	movl $0x1ff, " R(A_SVR) "\n"
	OUT_IMM(1)
	"1:	cli\n"
	"	cmpl $1, " XSTR(CNT0) "\n"
	"	jae 2f\n"
	"	sti\n"
	"	hlt\n"
	"	jmp 1b\n"
	"2:	mov " XSTR(CNT0) ", %eax\n"
	OUT_EAX
	"3:	cli\n"
	"	cmpl $2, " XSTR(CNT0) "\n"
	"	jae 4f\n"
	"	sti\n"
	"	hlt\n"
	"	jmp 3b\n"
	"4:	mov " XSTR(CNT0) ", %eax\n"
	OUT_EAX
	OUT_IMM(DONE)
	"wait_h:\n"
	"	push %eax\n"
	"	mov " R(A_ISR) " + 0x20, %eax\n"
	OUT_EAX
	"	mov " R(A_TMR) " + 0x20, %eax\n"
	OUT_EAX
	"	incl " XSTR(CNT0) "\n"
	"	movl $0, " R(A_EOI) "\n"
	"	pop %eax\n"
	"	iret\n"
	"wait_end:\n"
	GUEST_END);
extern const char wait_start[], wait_h[], wait_end[];

/*
 * Flat 32-bit, two vCPUs. vCPU 1 (ipi1_start): enables its APIC, reports
 * 0xa1 and HLTs until its handler for vector 0x43 ran; then reports the
 * count and its APIC ID. vCPU 0 (ipi0_start): a fixed IPI, physical
 * destination APIC ID 1 (ICR2 then ICR), reports the ICR's delivery
 * status and the ICR, then 0xa0.
 */
asm(GUEST_BEGIN
	".code32\n"
	".global ipi0_start, ipi1_start, ipi1_h43, ipi_end\n"
	"ipi0_start:\n"
	"	movl $0x1ff, " R(A_SVR) "\n"
	"	movl $0x01000000, " R(A_ICR2) "\n"
	"	movl $0x4043, " R(A_ICR) "\n"
	"	mov " R(A_ICR) ", %eax\n"
	"	and $0x1000, %eax\n"
	OUT_EAX
	"	mov " R(A_ICR2) ", %eax\n"
	OUT_EAX
	OUT_IMM(0xa0)
	"ipi1_start:\n"
	"	movl $0x1ff, " R(A_SVR) "\n"
	OUT_IMM(0xa1)
	"1:	cli\n"
	"	cmpl $0, " XSTR(CNT1) "\n"
	"	jne 2f\n"
	"	sti\n"
	"	hlt\n"
	"	jmp 1b\n"
	"2:	mov " XSTR(CNT1) ", %eax\n"
	OUT_EAX
	"	mov " R(A_ID) ", %eax\n"
	OUT_EAX
	OUT_IMM(DONE)
	"ipi1_h43:\n"
	"	push %eax\n"
	"	mov " R(A_ISR) " + 0x20, %eax\n"
	OUT_EAX
	"	incl " XSTR(CNT1) "\n"
	"	movl $0, " R(A_EOI) "\n"
	"	pop %eax\n"
	"	iret\n"
	"ipi_end:\n"
	GUEST_END);
extern const char ipi0_start[], ipi1_start[], ipi1_h43[], ipi_end[];

/*
 * INIT and SIPI. vCPU 0 (flat 32-bit): INIT (assert) then a start-up IPI
 * with vector 8 to APIC ID 1, reports 0xb0. The AP starts in real mode at
 * 0x8000 (ap16_start, loaded at AP_GPA): reports 0xb1 and its CS.
 */
#define SIPI_VEC	(AP_GPA >> 12)
asm(GUEST_BEGIN
	".code32\n"
	".global sipi0_start, sipi0_end\n"
	"sipi0_start:\n"
	"	movl $0x1ff, " R(A_SVR) "\n"
	"	movl $0x01000000, " R(A_ICR2) "\n"
	"	movl $0x4500, " R(A_ICR) "\n"	/* INIT, assert */
	"	movl $0x01000000, " R(A_ICR2) "\n"
	"	movl $(0x4600 + " XSTR(SIPI_VEC) "), " R(A_ICR) "\n"
	OUT_IMM(0xb0)
	"sipi0_end:\n"
	".code16\n"
	".global ap16_start, ap16_end\n"
	"ap16_start:\n"
	"	mov $0xb1, %eax\n"
	"	out %eax, $" XSTR(PORT) "\n"
	"	xor %eax, %eax\n"
	"	mov %cs, %ax\n"
	"	out %eax, $" XSTR(PORT) "\n"
	"	mov $" XSTR(DONE) ", %eax\n"
	"	out %eax, $" XSTR(PORT) "\n"
	"ap16_end:\n"
	GUEST_END);
extern const char sipi0_start[], sipi0_end[], ap16_start[], ap16_end[];

/* ---- Helpers ----------------------------------------------------------- */

struct vcpu {
	int fd;
	struct kvm_run *run;
};

struct vm {
	int dev, fd, run_size;
	char *mem;
	struct vcpu v[2];
	int nr;
};

/* The ioctl fails with `err`. */
#define EXPECT_ERRNO(err, call) do {			\
	errno = 0;					\
	EXPECT_EQ(-1, (call));				\
	EXPECT_EQ(err, errno) TH_LOG("errno %d (%s)", errno, strerror(errno)); \
} while (0)

static int open_dev(struct __test_metadata *_metadata)
{
	int dev = open(rkvm_dev_path(), O_RDWR | O_CLOEXEC);

	EXPECT_LE(0, dev) TH_LOG("open %s: %s", rkvm_dev_path(), strerror(errno));
	return dev;
}

static int enable_split(int vm, __u64 pins)
{
	struct kvm_enable_cap cap = { .cap = KVM_CAP_SPLIT_IRQCHIP, .args = { pins } };

	return ioctl(vm, KVM_ENABLE_CAP, &cap);
}

/* A VM with MEM_SIZE of memory at 0, the split irqchip if `split`. */
static void vm_create(struct __test_metadata *_metadata, struct vm *vm, bool split)
{
	struct kvm_userspace_memory_region r = { .slot = 0, .memory_size = MEM_SIZE };

	memset(vm, 0, sizeof(*vm));
	vm->dev = open_dev(_metadata);
	ASSERT_LE(0, vm->dev);
	vm->fd = ioctl(vm->dev, KVM_CREATE_VM, 0);
	ASSERT_LE(0, vm->fd) TH_LOG("KVM_CREATE_VM: %s", strerror(errno));
	if (split)
		ASSERT_EQ(0, enable_split(vm->fd, 24)) TH_LOG("split irqchip: %s",
							      strerror(errno));
	vm->mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	ASSERT_NE(MAP_FAILED, vm->mem);
	r.userspace_addr = (unsigned long)vm->mem;
	ASSERT_EQ(0, ioctl(vm->fd, KVM_SET_USER_MEMORY_REGION, &r));
	vm->run_size = ioctl(vm->dev, KVM_GET_VCPU_MMAP_SIZE, 0);
	ASSERT_LT(0, vm->run_size);
}

static struct vcpu *vcpu_add(struct __test_metadata *_metadata, struct vm *vm)
{
	struct vcpu *v = &vm->v[vm->nr];

	v->fd = ioctl(vm->fd, KVM_CREATE_VCPU, vm->nr);
	EXPECT_LE(0, v->fd) TH_LOG("KVM_CREATE_VCPU %d: %s", vm->nr, strerror(errno));
	if (v->fd < 0)
		return NULL;
	v->run = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
	EXPECT_NE(MAP_FAILED, v->run);
	if (v->run == MAP_FAILED)
		return NULL;
	vm->nr++;
	return v;
}

static void vm_destroy(struct vm *vm)
{
	for (int i = 0; i < vm->nr; i++) {
		munmap(vm->v[i].run, vm->run_size);
		close(vm->v[i].fd);
	}
	munmap(vm->mem, MEM_SIZE);
	close(vm->fd);
	close(vm->dev);
}

static void load_at(struct __test_metadata *_metadata, struct vm *vm, __u64 gpa,
		    const char *start, const char *end)
{
	ASSERT_GT(DATA_GPA - CODE_GPA, end - start);
	memcpy(vm->mem + gpa, start, end - start);
}

/* Guest address of `sym` in the blob `start` loaded at CODE_GPA. */
static __u32 gaddr(const char *start, const char *sym)
{
	return CODE_GPA + (sym - start);
}

/* A 32-bit interrupt gate (DPL 0) for `vector` to `handler`, selector 8. */
static void idt32(struct vm *vm, int vector, __u32 handler)
{
	__u32 g[2] = { 8 << 16 | (handler & 0xffff), (handler & 0xffff0000) | 0x8e00 };

	memcpy(vm->mem + IDT_GPA + 8 * vector, g, sizeof(g));
}

static void idt64(struct vm *vm, int vector, __u64 handler)
{
	__u32 g[4] = { 8 << 16 | (handler & 0xffff), (handler & 0xffff0000) | 0x8e00,
		       handler >> 32, 0 };

	memcpy(vm->mem + IDT_GPA + 16 * vector, g, sizeof(g));
}

/* Flat 32-bit protected mode (GDT and IDT in guest memory), no paging. */
static void enter32(struct __test_metadata *_metadata, struct vm *vm, struct vcpu *v,
		    __u32 rip, __u32 rsp)
{
	static const __u64 gdt[] = {
		0,
		0x00cf9b000000ffffULL,	/* 0x08: code */
		0x00cf93000000ffffULL,	/* 0x10: data */
	};
	struct kvm_regs regs = { .rip = rip, .rsp = rsp, .rflags = 2 };
	struct kvm_segment f = {
		.limit = 0xffffffff, .selector = 0x10, .type = 3, .present = 1,
		.db = 1, .s = 1, .g = 1,
	};
	struct kvm_sregs s;

	memcpy(vm->mem + GDT_GPA, gdt, sizeof(gdt));
	ASSERT_EQ(0, ioctl(v->fd, KVM_GET_SREGS, &s));
	s.cr0 = 0x11;
	s.cr4 = 0;
	s.gdt.base = GDT_GPA;
	s.gdt.limit = sizeof(gdt) - 1;
	s.idt.base = IDT_GPA;
	s.idt.limit = 256 * 8 - 1;
	s.ds = s.es = s.fs = s.gs = s.ss = f;
	f.selector = 8;
	f.type = 11;
	s.cs = f;
	ASSERT_EQ(0, ioctl(v->fd, KVM_SET_SREGS, &s)) TH_LOG("KVM_SET_SREGS: %s", strerror(errno));
	ASSERT_EQ(0, ioctl(v->fd, KVM_SET_REGS, &regs));
}

/*
 * Long mode with 4-level paging: the first 2 MiB identity-mapped by one
 * large page, and one 4 KiB page at APIC_ALIAS mapping the xAPIC (UC).
 */
static void enter64(struct __test_metadata *_metadata, struct vm *vm, struct vcpu *v,
		    __u64 rip, __u64 rsp)
{
	static const __u64 gdt[] = {
		0,
		0x00af9b000000ffffULL,	/* 0x08: code, 64-bit */
		0x00cf93000000ffffULL,	/* 0x10: data */
	};
	__u64 *pml4 = (__u64 *)(vm->mem + PML4_GPA);
	__u64 *pdpt = (__u64 *)(vm->mem + PDPT_GPA);
	__u64 *pd = (__u64 *)(vm->mem + PD_GPA);
	__u64 *pt = (__u64 *)(vm->mem + PT_GPA);
	struct kvm_regs regs = { .rip = rip, .rsp = rsp, .rflags = 2 };
	struct kvm_sregs s;

	memset(pml4, 0, 4 * 4096);
	pml4[0] = PDPT_GPA | 3;
	pdpt[0] = PD_GPA | 3;
	pd[0] = 0x83;				/* 2 MiB at 0: P, RW, PS */
	pd[APIC_ALIAS >> 21] = PT_GPA | 3;
	pt[0] = APIC | 0x1b;			/* P, RW, PWT, PCD */
	memcpy(vm->mem + GDT_GPA, gdt, sizeof(gdt));

	ASSERT_EQ(0, ioctl(v->fd, KVM_GET_SREGS, &s));
	s.cr0 = 0x80010011;
	s.cr4 = 0x20;
	s.efer = 0x500;
	s.cr3 = PML4_GPA;
	s.gdt.base = GDT_GPA;
	s.gdt.limit = sizeof(gdt) - 1;
	s.idt.base = IDT_GPA;
	s.idt.limit = 256 * 16 - 1;
	s.cs = (struct kvm_segment){ .selector = 8, .limit = 0xffffffff, .type = 11,
				     .present = 1, .s = 1, .l = 1, .g = 1 };
	s.ds = (struct kvm_segment){ .selector = 0x10, .limit = 0xffffffff, .type = 3,
				     .present = 1, .s = 1, .db = 1, .g = 1 };
	s.es = s.ss = s.fs = s.gs = s.ds;
	ASSERT_EQ(0, ioctl(v->fd, KVM_SET_SREGS, &s)) TH_LOG("KVM_SET_SREGS: %s", strerror(errno));
	ASSERT_EQ(0, ioctl(v->fd, KVM_SET_REGS, &regs));
}

static const char *exit_str(struct kvm_run *run, char *buf, size_t len)
{
	if (run->exit_reason == KVM_EXIT_INTERNAL_ERROR)
		snprintf(buf, len, "INTERNAL_ERROR %u data0 %#llx", run->internal.suberror,
			 (unsigned long long)run->internal.data[0]);
	else if (run->exit_reason == KVM_EXIT_IO)
		snprintf(buf, len, "IO port %#x size %u", run->io.port, run->io.size);
	else if (run->exit_reason == KVM_EXIT_MMIO)
		snprintf(buf, len, "MMIO %#llx len %u%s",
			 (unsigned long long)run->mmio.phys_addr, run->mmio.len,
			 run->mmio.is_write ? " write" : "");
	else
		snprintf(buf, len, "exit %u", run->exit_reason);
	return buf;
}

/* The port report of an exit just taken; fails unless it is one. */
static __u32 report(struct __test_metadata *_metadata, struct kvm_run *run)
{
	char why[96];
	__u32 v = 0;

	EXPECT_EQ((__u32)KVM_EXIT_IO, run->exit_reason) TH_LOG("got %s", exit_str(run, why, sizeof(why)));
	if (run->exit_reason != KVM_EXIT_IO)
		return ~0U;
	EXPECT_TRUE(run->io.direction == KVM_EXIT_IO_OUT && run->io.port == PORT &&
		    run->io.size == 4 && run->io.count == 1)
		TH_LOG("port %#x size %u", run->io.port, run->io.size);
	memcpy(&v, (char *)run + run->io.data_offset, 4);
	return v;
}

/* Runs to the guest's next 4-byte report on PORT and returns it. */
static __u32 run_out(struct __test_metadata *_metadata, struct vcpu *v)
{
	int r = ioctl(v->fd, KVM_RUN, 0);

	EXPECT_EQ(0, r) TH_LOG("KVM_RUN: %s", strerror(errno));
	if (r)
		return ~0U;
	return report(_metadata, v->run);
}

#define OUT(v) run_out(_metadata, v)

static __u32 lapic_reg(const struct kvm_lapic_state *s, int off)
{
	__u32 v;

	memcpy(&v, s->regs + off, 4);
	return v;
}

/* KVM_RUN in a thread, so the test can act while the vCPU is halted. */
struct runner {
	struct vcpu *v;
	pthread_t tid;
	int ret, err, eagain;
	bool timed_out;
	bool retry_eagain;	/* run again after EAGAIN (the AP waiting for INIT/SIPI) */
};

static void *runner_fn(void *arg)
{
	struct runner *r = arg;

	for (;;) {
		r->ret = ioctl(r->v->fd, KVM_RUN, 0);
		r->err = errno;
		if (r->ret == 0 || r->err != EAGAIN || !r->retry_eagain || r->eagain >= 100)
			break;
		r->eagain++;
	}
	return NULL;
}

static void on_usr1(int sig)
{
	(void)sig;
}

static void runner_start(struct __test_metadata *_metadata, struct runner *r, struct vcpu *v,
			 bool retry_eagain)
{
	struct sigaction sa = { .sa_handler = on_usr1 };	/* no SA_RESTART */

	ASSERT_EQ(0, sigaction(SIGUSR1, &sa, NULL));
	memset(r, 0, sizeof(*r));
	r->v = v;
	r->retry_eagain = retry_eagain;
	ASSERT_EQ(0, pthread_create(&r->tid, NULL, runner_fn, r));
}

/*
 * Waits up to `secs` for the thread's KVM_RUN; after that, SIGUSR1 takes it
 * out of KVM_RUN (EINTR) and the test fails. Returns the report.
 */
static __u32 runner_join(struct __test_metadata *_metadata, struct runner *r, int secs)
{
	struct timespec dl;
	int e;

	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += secs;
	e = pthread_timedjoin_np(r->tid, NULL, &dl);
	if (e == ETIMEDOUT) {
		r->timed_out = true;
		for (int i = 0; i < 100 && e; i++) {
			pthread_kill(r->tid, SIGUSR1);
			clock_gettime(CLOCK_REALTIME, &dl);
			dl.tv_nsec += 100000000;
			if (dl.tv_nsec >= 1000000000) {
				dl.tv_sec++;
				dl.tv_nsec -= 1000000000;
			}
			e = pthread_timedjoin_np(r->tid, NULL, &dl);
		}
		EXPECT_FALSE(r->timed_out)
			TH_LOG("the vCPU thread's KVM_RUN did not return in %d s", secs);
		return ~0U;
	}
	EXPECT_EQ(0, e);
	EXPECT_EQ(0, r->ret) TH_LOG("KVM_RUN: %s", strerror(r->err));
	if (r->ret)
		return ~0U;
	return report(_metadata, r->v->run);
}


/* Where a vCPU is, for the failure message of a guest that never reported. */
static void dump_vcpu(struct __test_metadata *_metadata, struct vm *vm, struct vcpu *v)
{
	static struct kvm_lapic_state s;
	struct kvm_regs regs = { 0 };
	struct kvm_mp_state mp = { 0 };

	ioctl(v->fd, KVM_GET_REGS, &regs);
	ioctl(v->fd, KVM_GET_MP_STATE, &mp);
	TH_LOG("rip %#llx rflags %#llx mp_state %u counters %u %u", (unsigned long long)regs.rip,
	       (unsigned long long)regs.rflags, mp.mp_state, *(__u32 *)(vm->mem + CNT0),
	       *(__u32 *)(vm->mem + CNT1));
	if (ioctl(v->fd, KVM_GET_LAPIC, &s) == 0)
		TH_LOG("SVR %#x TPR %#x PPR %#x LVTT %#x TMICT %u TMCCT %u TDCR %#x "
		       "IRR2 %#x ISR2 %#x", lapic_reg(&s, A_SVR), lapic_reg(&s, A_TPR),
		       lapic_reg(&s, A_PPR), lapic_reg(&s, A_LVTT), lapic_reg(&s, A_TMICT),
		       lapic_reg(&s, A_TMCCT), lapic_reg(&s, A_TDCR), lapic_reg(&s, A_IRR + 0x20),
		       lapic_reg(&s, A_ISR + 0x20));
}

/*
 * Runs to the next report from a thread, waiting at most `secs` (a guest
 * that waits for an interrupt that never comes would otherwise hang the
 * test until the harness kills it).
 */
static __u32 run_out_wait(struct __test_metadata *_metadata, struct vm *vm, struct vcpu *v,
			  int secs)
{
	struct runner r;
	__u32 val;

	runner_start(_metadata, &r, v, false);
	val = runner_join(_metadata, &r, secs);
	if (r.timed_out)
		dump_vcpu(_metadata, vm, v);
	return val;
}

static void lapic_set_reg(struct kvm_lapic_state *s, int off, __u32 v)
{
	memcpy(s->regs + off, &v, 4);
}

static __u64 get_msr(struct __test_metadata *_metadata, int fd, __u32 index)
{
	struct kvm_msr_entry e = { .index = index };

	EXPECT_EQ(1, rkvm_msrs(fd, KVM_GET_MSRS, &e, 1)) TH_LOG("MSR %#x", index);
	return e.data;
}

static __u32 mp_state(struct __test_metadata *_metadata, struct vcpu *v)
{
	struct kvm_mp_state mp = { .mp_state = 0xdead };

	EXPECT_EQ(0, ioctl(v->fd, KVM_GET_MP_STATE, &mp)) TH_LOG("%s", strerror(errno));
	return mp.mp_state;
}

static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

/* ---- The capability and the state ioctls ----------------------------- */

TEST(split_irqchip_enable_cap)
{
	struct kvm_enable_cap cap = { .cap = KVM_CAP_SPLIT_IRQCHIP, .args = { 24 } };
	int dev = open_dev(_metadata), vm, vcpu, x2api;

	ASSERT_LE(0, dev);
	EXPECT_LT(0, ioctl(dev, KVM_CHECK_EXTENSION, KVM_CAP_SPLIT_IRQCHIP));
	vm = ioctl(dev, KVM_CREATE_VM, 0);
	ASSERT_LE(0, vm);
	EXPECT_LT(0, ioctl(vm, KVM_CHECK_EXTENSION, KVM_CAP_SPLIT_IRQCHIP));
	/* Flags are checked first (for every capability). */
	cap.flags = 1;
	EXPECT_ERRNO(EINVAL, ioctl(vm, KVM_ENABLE_CAP, &cap));
	cap.flags = 0;
	/* KVM takes up to KVM_MAX_IRQ_ROUTES (4096) reserved pins. */
	EXPECT_ERRNO(EINVAL, enable_split(vm, 4097));
	EXPECT_ERRNO(EINVAL, enable_split(vm, 1ULL << 32));
	EXPECT_EQ(0, enable_split(vm, 24));
	EXPECT_ERRNO(EEXIST, enable_split(vm, 24));
	/* The pin count is checked before the existing irqchip. */
	EXPECT_ERRNO(EINVAL, enable_split(vm, 4097));
	cap.flags = 1;
	EXPECT_ERRNO(EINVAL, ioctl(vm, KVM_ENABLE_CAP, &cap));
	EXPECT_ERRNO(EFAULT, ioctl(vm, KVM_ENABLE_CAP, (void *)8));
	/*
	 * KVM_CAP_X2APIC_API takes the flags it reports: at least 32-bit ids
	 * and no broadcast quirk (KVM 7.3 adds two for directed EOI, which
	 * rkvm does not have), and no other.
	 */
	x2api = ioctl(dev, KVM_CHECK_EXTENSION, KVM_CAP_X2APIC_API);
	EXPECT_EQ(3, x2api & 3) TH_LOG("KVM_CAP_X2APIC_API %d", x2api);
	cap.flags = 0;
	cap.cap = KVM_CAP_X2APIC_API;
	cap.args[0] = 1 << 4;
	EXPECT_ERRNO(EINVAL, ioctl(vm, KVM_ENABLE_CAP, &cap));
	cap.args[0] = KVM_X2APIC_API_USE_32BIT_IDS | KVM_X2APIC_API_DISABLE_BROADCAST_QUIRK;
	EXPECT_EQ(0, ioctl(vm, KVM_ENABLE_CAP, &cap)) TH_LOG("%s", strerror(errno));
	cap.cap = KVM_CAP_SPLIT_IRQCHIP;
	cap.args[0] = 24;
	close(vm);

	/* 49 pins (more than an I/O APIC's 24) and 0 are both accepted. */
	vm = ioctl(dev, KVM_CREATE_VM, 0);
	ASSERT_LE(0, vm);
	EXPECT_EQ(0, enable_split(vm, 49)) TH_LOG("%s", strerror(errno));
	close(vm);
	vm = ioctl(dev, KVM_CREATE_VM, 0);
	ASSERT_LE(0, vm);
	EXPECT_EQ(0, enable_split(vm, 0)) TH_LOG("%s", strerror(errno));
	close(vm);
	vm = ioctl(dev, KVM_CREATE_VM, 0);
	ASSERT_LE(0, vm);
	EXPECT_EQ(0, enable_split(vm, 4096)) TH_LOG("%s", strerror(errno));
	close(vm);

	/* Too late once a vCPU exists: EEXIST (KVM), not EINVAL. */
	vm = ioctl(dev, KVM_CREATE_VM, 0);
	ASSERT_LE(0, vm);
	vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	ASSERT_LE(0, vcpu);
	EXPECT_ERRNO(EEXIST, enable_split(vm, 24));
	EXPECT_ERRNO(EINVAL, enable_split(vm, 4097));
	close(vcpu);
	close(vm);
	close(dev);
}

TEST(lapic_ioctls_need_irqchip)
{
	static struct kvm_lapic_state s;
	struct kvm_mp_state mp = { .mp_state = KVM_MP_STATE_HALTED };
	struct vm vm;
	struct vcpu *v0, *v1;

	vm_create(_metadata, &vm, false);
	v0 = vcpu_add(_metadata, &vm);
	v1 = vcpu_add(_metadata, &vm);
	ASSERT_TRUE(v0 && v1);
	EXPECT_ERRNO(EINVAL, ioctl(v0->fd, KVM_GET_LAPIC, &s));
	EXPECT_ERRNO(EINVAL, ioctl(v0->fd, KVM_SET_LAPIC, &s));
	/* Refused before the argument is read. */
	EXPECT_ERRNO(EINVAL, ioctl(v0->fd, KVM_GET_LAPIC, (void *)8));
	EXPECT_ERRNO(EINVAL, ioctl(v0->fd, KVM_SET_LAPIC, (void *)8));
	/* Without an in-kernel APIC every vCPU starts RUNNABLE, and the
	 * states only an APIC can leave are refused. */
	EXPECT_EQ((__u32)KVM_MP_STATE_RUNNABLE, mp_state(_metadata, v0));
	EXPECT_EQ((__u32)KVM_MP_STATE_RUNNABLE, mp_state(_metadata, v1));
	EXPECT_ERRNO(EINVAL, ioctl(v1->fd, KVM_SET_MP_STATE, &mp));
	mp.mp_state = KVM_MP_STATE_UNINITIALIZED;
	EXPECT_ERRNO(EINVAL, ioctl(v1->fd, KVM_SET_MP_STATE, &mp));
	mp.mp_state = KVM_MP_STATE_INIT_RECEIVED;
	EXPECT_ERRNO(EINVAL, ioctl(v1->fd, KVM_SET_MP_STATE, &mp));
	/* The APIC base MSR is there all the same. */
	EXPECT_EQ(0xfee00900ULL, get_msr(_metadata, v0->fd, 0x1b));
	EXPECT_EQ(0xfee00800ULL, get_msr(_metadata, v1->fd, 0x1b));
	vm_destroy(&vm);
}

TEST(lapic_reset_state)
{
	static struct kvm_lapic_state s;
	struct kvm_mp_state mp = { .mp_state = KVM_MP_STATE_RUNNABLE };
	struct vm vm;

	vm_create(_metadata, &vm, true);
	ASSERT_NE(NULL, vcpu_add(_metadata, &vm));
	ASSERT_NE(NULL, vcpu_add(_metadata, &vm));
	for (int id = 0; id < 2; id++) {
		int fd = vm.v[id].fd;

		memset(&s, 0xa5, sizeof(s));
		ASSERT_EQ(0, ioctl(fd, KVM_GET_LAPIC, &s)) TH_LOG("%s", strerror(errno));
		EXPECT_EQ((__u32)id << 24, lapic_reg(&s, A_ID));
		/* Version 0x14, 6 LVT entries (no CMCI); no directed EOI
		 * while the guest CPUID has no x2APIC. */
		EXPECT_EQ(0x50014U, lapic_reg(&s, A_LVR)) TH_LOG("LVR %#x", lapic_reg(&s, A_LVR));
		EXPECT_EQ(0xffU, lapic_reg(&s, A_SVR));
		EXPECT_EQ(0xffffffffU, lapic_reg(&s, A_DFR));
		EXPECT_EQ(0U, lapic_reg(&s, A_LDR));
		EXPECT_EQ(0U, lapic_reg(&s, A_TPR));
		EXPECT_EQ(0U, lapic_reg(&s, A_PPR));
		EXPECT_EQ(0U, lapic_reg(&s, A_ESR));
		EXPECT_EQ(0U, lapic_reg(&s, A_ICR));
		EXPECT_EQ(0U, lapic_reg(&s, A_ICR2));
		EXPECT_EQ(0U, lapic_reg(&s, A_TMICT));
		EXPECT_EQ(0U, lapic_reg(&s, A_TMCCT));
		EXPECT_EQ(0U, lapic_reg(&s, A_TDCR));
		for (int i = 0; i < 8; i++) {
			EXPECT_EQ(0U, lapic_reg(&s, A_ISR + 0x10 * i));
			EXPECT_EQ(0U, lapic_reg(&s, A_TMR + 0x10 * i));
			EXPECT_EQ(0U, lapic_reg(&s, A_IRR + 0x10 * i));
		}
		/*
		 * Every LVT masked, except LINT0 of the BSP: KVM's
		 * KVM_X86_QUIRK_LINT0_REENABLED (on by default) leaves it
		 * unmasked in ExtINT mode (0x700).
		 */
		for (int off = 0x320; off <= 0x370; off += 0x10) {
			__u32 want = id == 0 && off == A_LVT0 ? 0x700 : 0x10000;

			EXPECT_EQ(want, lapic_reg(&s, off)) TH_LOG("vCPU %d LVT %#x: %#x", id, off,
								     lapic_reg(&s, off));
		}
	}
	EXPECT_EQ((__u32)KVM_MP_STATE_RUNNABLE, mp_state(_metadata, &vm.v[0]));
	EXPECT_EQ((__u32)KVM_MP_STATE_UNINITIALIZED, mp_state(_metadata, &vm.v[1]));
	EXPECT_EQ(0xfee00900ULL, get_msr(_metadata, vm.v[0].fd, 0x1b));
	EXPECT_EQ(0xfee00800ULL, get_msr(_metadata, vm.v[1].fd, 0x1b));
	ASSERT_EQ(0, ioctl(vm.v[1].fd, KVM_SET_MP_STATE, &mp));
	EXPECT_EQ((__u32)KVM_MP_STATE_RUNNABLE, mp_state(_metadata, &vm.v[1]));
	mp.mp_state = KVM_MP_STATE_INIT_RECEIVED;
	ASSERT_EQ(0, ioctl(vm.v[1].fd, KVM_SET_MP_STATE, &mp));
	EXPECT_EQ((__u32)KVM_MP_STATE_INIT_RECEIVED, mp_state(_metadata, &vm.v[1]));
	mp.mp_state = 99;
	EXPECT_ERRNO(EINVAL, ioctl(vm.v[1].fd, KVM_SET_MP_STATE, &mp));
	EXPECT_ERRNO(EFAULT, ioctl(vm.v[1].fd, KVM_SET_MP_STATE, (void *)8));
	EXPECT_ERRNO(EFAULT, ioctl(vm.v[1].fd, KVM_GET_MP_STATE, (void *)8));
	vm_destroy(&vm);
}

TEST(set_lapic_round_trip)
{
	static struct kvm_lapic_state s, g;
	struct vm vm;
	struct vcpu *v;

	vm_create(_metadata, &vm, true);
	v = vcpu_add(_metadata, &vm);
	ASSERT_NE(NULL, v);
	ASSERT_EQ(0, ioctl(v->fd, KVM_GET_LAPIC, &s));
	lapic_set_reg(&s, A_TPR, 0x80);
	lapic_set_reg(&s, A_PPR, 0x10);		/* recomputed from TPR and ISR */
	lapic_set_reg(&s, A_SVR, 0x1ff);
	lapic_set_reg(&s, A_LVTT, 0x20061);	/* periodic, vector 0x61 (TMICT 0) */
	lapic_set_reg(&s, A_TDCR, 0x3);		/* divide by 16 */
	lapic_set_reg(&s, A_IRR + 0x30, 1 << 2);	/* vector 0x62 pending */
	ASSERT_EQ(0, ioctl(v->fd, KVM_SET_LAPIC, &s)) TH_LOG("%s", strerror(errno));
	memset(&g, 0, sizeof(g));
	ASSERT_EQ(0, ioctl(v->fd, KVM_GET_LAPIC, &g));
	EXPECT_EQ(0x80U, lapic_reg(&g, A_TPR));
	EXPECT_EQ(0x80U, lapic_reg(&g, A_PPR));
	EXPECT_EQ(0x1ffU, lapic_reg(&g, A_SVR));
	EXPECT_EQ(0x20061U, lapic_reg(&g, A_LVTT));
	EXPECT_EQ(0x3U, lapic_reg(&g, A_TDCR));
	EXPECT_EQ(4U, lapic_reg(&g, A_IRR + 0x30));
	EXPECT_EQ(0U, lapic_reg(&g, A_ISR + 0x30));
	EXPECT_EQ(0U, lapic_reg(&g, A_ID));

	/* TPR 0xa0: PPR follows. */
	lapic_set_reg(&s, A_TPR, 0xa0);
	ASSERT_EQ(0, ioctl(v->fd, KVM_SET_LAPIC, &s));
	ASSERT_EQ(0, ioctl(v->fd, KVM_GET_LAPIC, &g));
	EXPECT_EQ(0xa0U, lapic_reg(&g, A_TPR));
	EXPECT_EQ(0xa0U, lapic_reg(&g, A_PPR));

	EXPECT_ERRNO(EFAULT, ioctl(v->fd, KVM_SET_LAPIC, (void *)8));
	EXPECT_ERRNO(EFAULT, ioctl(v->fd, KVM_GET_LAPIC, (void *)8));
	/* Nothing changed by the failed calls. */
	ASSERT_EQ(0, ioctl(v->fd, KVM_GET_LAPIC, &g));
	EXPECT_EQ(0xa0U, lapic_reg(&g, A_TPR));
	vm_destroy(&vm);
}

/* ---- Guests using the APIC --------------------------------------------- */

TEST(xapic_self_ipi)
{
	struct vm vm;
	struct vcpu *v;

	vm_create(_metadata, &vm, true);
	v = vcpu_add(_metadata, &vm);
	ASSERT_NE(NULL, v);
	load_at(_metadata, &vm, CODE_GPA, xapic_start, xapic_end);
	idt32(&vm, 0x40, gaddr(xapic_start, xapic_h40));
	idt32(&vm, 0x41, gaddr(xapic_start, xapic_h41));
	enter32(_metadata, &vm, v, CODE_GPA, STACK0);

	/*
	 * KVM takes the timer mode bits of the LVT timer only after
	 * KVM_SET_CPUID2 (periodic; TSC deadline too if the CPUID has it):
	 * without, a guest's write of periodic mode reads back one-shot.
	 */
	EXPECT_EQ(0x10041U, OUT(v)) TH_LOG("LVT timer without KVM_SET_CPUID2");
	EXPECT_EQ(0U, OUT(v)) TH_LOG("APIC ID");
	EXPECT_EQ(1U, OUT(v)) TH_LOG("ISR bit of vector 0x40 in its handler");
	EXPECT_EQ(0x40U, OUT(v)) TH_LOG("PPR in the handler");
	EXPECT_EQ(1U, OUT(v)) TH_LOG("vector 0x40 handled once");
	EXPECT_EQ(0U, OUT(v)) TH_LOG("ISR after the EOI");
	EXPECT_EQ(0x50U, OUT(v)) TH_LOG("PPR = TPR 0x50");
	EXPECT_EQ(0U, OUT(v)) TH_LOG("vector 0x41 held back by TPR 0x50");
	EXPECT_EQ(2U, OUT(v)) TH_LOG("vector 0x41 pending in the IRR");
	EXPECT_EQ(2U, OUT(v)) TH_LOG("ISR bit of vector 0x41 in its handler, after TPR 0");
	EXPECT_EQ(1U, OUT(v)) TH_LOG("vector 0x41 handled once");
	EXPECT_EQ(0U, OUT(v)) TH_LOG("IRR clear");
	EXPECT_EQ(0U, OUT(v)) TH_LOG("ISR clear");
	EXPECT_EQ((__u32)DONE, OUT(v));
	vm_destroy(&vm);
}

TEST(x2apic_msrs)
{
	struct kvm_cpuid2 *cpuid;
	__u32 x2 = 0;
	struct vm vm;
	struct vcpu *v;

	vm_create(_metadata, &vm, true);
	v = vcpu_add(_metadata, &vm);
	ASSERT_NE(NULL, v);
	cpuid = rkvm_supported_cpuid(vm.dev);
	ASSERT_NE(NULL, cpuid);
	for (__u32 i = 0; i < cpuid->nent; i++)
		if (cpuid->entries[i].function == 1)
			x2 = cpuid->entries[i].ecx & (1 << 21);
	EXPECT_NE(0U, x2) TH_LOG("KVM_GET_SUPPORTED_CPUID offers no x2APIC");
	ASSERT_EQ(0, ioctl(v->fd, KVM_SET_CPUID2, cpuid)) TH_LOG("%s", strerror(errno));
	free(cpuid);

	load_at(_metadata, &vm, CODE_GPA, x2_start, x2_end);
	idt32(&vm, 0x40, gaddr(x2_start, x2_h40));
	idt32(&vm, 13, gaddr(x2_start, x2_hgp));
	enter32(_metadata, &vm, v, CODE_GPA, STACK0);

	EXPECT_EQ(1U, OUT(v)) TH_LOG("#GP from RDMSR 0x802 in xAPIC mode");
	EXPECT_EQ(0xfee00900U, OUT(v)) TH_LOG("IA32_APIC_BASE");
	EXPECT_EQ(0xfee00d00U, OUT(v)) TH_LOG("IA32_APIC_BASE with EXTD");
	EXPECT_EQ(0U, OUT(v)) TH_LOG("x2APIC ID");
	/* Split irqchip and x2APIC in the guest CPUID: KVM advertises
	 * directed EOI (bit 24). */
	EXPECT_EQ(0x1050014U, OUT(v)) TH_LOG("x2APIC version");
	EXPECT_EQ(1U, OUT(v)) TH_LOG("ISR bit of vector 0x40 in its handler");
	EXPECT_EQ(1U, OUT(v)) TH_LOG("handled once");
	EXPECT_EQ(0U, OUT(v)) TH_LOG("ISR after the EOI");
	EXPECT_EQ(1U, OUT(v)) TH_LOG("no other #GP");
	EXPECT_EQ((__u32)DONE, OUT(v));
	EXPECT_EQ(0xfee00d00ULL, get_msr(_metadata, v->fd, 0x1b));
	vm_destroy(&vm);
}

TEST(timer_one_shot_wakes_hlt)
{
	static struct kvm_lapic_state s;
	struct kvm_cpuid2 *cpuid;
	struct vm vm;
	struct vcpu *v;
	__u32 hlts;

	vm_create(_metadata, &vm, true);
	v = vcpu_add(_metadata, &vm);
	ASSERT_NE(NULL, v);
	/* Long mode needs LM in the guest CPUID. */
	cpuid = rkvm_supported_cpuid(vm.dev);
	ASSERT_NE(NULL, cpuid);
	ASSERT_EQ(0, ioctl(v->fd, KVM_SET_CPUID2, cpuid)) TH_LOG("%s", strerror(errno));
	free(cpuid);
	load_at(_metadata, &vm, CODE_GPA, t64_start, t64_end);
	idt64(&vm, 0x41, gaddr(t64_start, t64_h41));
	enter64(_metadata, &vm, v, CODE_GPA, STACK0);

	/* No KVM_EXIT_HLT: the first exit is the report after the wake-up. */
	hlts = run_out_wait(_metadata, &vm, v, 10);
	EXPECT_LE(1U, hlts) TH_LOG("HLTs before the timer interrupt: %u", hlts);
	EXPECT_GE(3U, hlts) TH_LOG("HLTs before the timer interrupt: %u", hlts);
	EXPECT_EQ(0U, OUT(v)) TH_LOG("TMCCT after expiry");
	EXPECT_EQ(1U, OUT(v)) TH_LOG("handled once");
	EXPECT_EQ(0x41U, OUT(v)) TH_LOG("LVT timer");
	EXPECT_EQ((__u32)DONE, OUT(v));
	ASSERT_EQ(0, ioctl(v->fd, KVM_GET_LAPIC, &s));
	EXPECT_EQ(0x1ffU, lapic_reg(&s, A_SVR));
	EXPECT_EQ(0xbU, lapic_reg(&s, A_TDCR));
	EXPECT_EQ(10000000U, lapic_reg(&s, A_TMICT));
	EXPECT_EQ(0U, lapic_reg(&s, A_TMCCT));
	EXPECT_EQ(0U, lapic_reg(&s, A_ISR + 0x20));
	vm_destroy(&vm);
}

TEST(timer_periodic)
{
	struct kvm_cpuid2 *cpuid;
	struct vm vm;
	struct vcpu *v;
	double t0, dt;
	__u32 cur;

	vm_create(_metadata, &vm, true);
	v = vcpu_add(_metadata, &vm);
	ASSERT_NE(NULL, v);
	/* The periodic mode needs a guest CPUID (see xapic_self_ipi). */
	cpuid = rkvm_supported_cpuid(vm.dev);
	ASSERT_NE(NULL, cpuid);
	ASSERT_EQ(0, ioctl(v->fd, KVM_SET_CPUID2, cpuid)) TH_LOG("%s", strerror(errno));
	free(cpuid);
	load_at(_metadata, &vm, CODE_GPA, per_start, per_end);
	idt32(&vm, 0x41, gaddr(per_start, per_h41));
	enter32(_metadata, &vm, v, CODE_GPA, STACK0);

	t0 = now_s();
	EXPECT_EQ(5U, run_out_wait(_metadata, &vm, v, 10)) TH_LOG("interrupts");
	dt = now_s() - t0;
	/* Five periods of 2 ms at least (the APIC bus runs at 1 GHz). */
	EXPECT_LE(0.009, dt) TH_LOG("five periodic interrupts in %.4f s", dt);
	EXPECT_EQ(0x30041U, OUT(v)) TH_LOG("LVT timer, masked");
	EXPECT_EQ((__u32)PERIOD, OUT(v)) TH_LOG("TMICT");
	/* Masked, the timer goes on counting (0 only just at a period's end). */
	cur = OUT(v);
	EXPECT_GE((__u32)PERIOD, cur) TH_LOG("TMCCT %u", cur);
	EXPECT_EQ((__u32)DONE, OUT(v));
	vm_destroy(&vm);
}

TEST(signal_msi_wakes_hlt)
{
	struct kvm_msi msi = { .address_lo = APIC, .data = 0x42 };
	struct runner r;
	struct vm vm;
	struct vcpu *v;

	vm_create(_metadata, &vm, true);
	v = vcpu_add(_metadata, &vm);
	ASSERT_NE(NULL, v);
	load_at(_metadata, &vm, CODE_GPA, wait_start, wait_end);
	idt32(&vm, 0x42, gaddr(wait_start, wait_h));
	enter32(_metadata, &vm, v, CODE_GPA, STACK0);
	EXPECT_EQ(1U, OUT(v)) TH_LOG("ready");

	/* Bad requests first: nothing is delivered. */
	msi.flags = 2;
	EXPECT_ERRNO(EINVAL, ioctl(vm.fd, KVM_SIGNAL_MSI, &msi));
	msi.flags = 0;
	EXPECT_ERRNO(EFAULT, ioctl(vm.fd, KVM_SIGNAL_MSI, (void *)8));
	/* To an APIC ID no vCPU has: accepted, delivered to none (0). */
	msi.address_lo = APIC | 7 << 12;
	EXPECT_EQ(0, ioctl(vm.fd, KVM_SIGNAL_MSI, &msi)) TH_LOG("%s", strerror(errno));
	msi.address_lo = APIC;

	/* The vCPU halts in KVM_RUN; the MSI (1: one vCPU) wakes it. */
	runner_start(_metadata, &r, v, false);
	usleep(300000);
	EXPECT_EQ(1, ioctl(vm.fd, KVM_SIGNAL_MSI, &msi)) TH_LOG("%s", strerror(errno));
	EXPECT_EQ(4U, runner_join(_metadata, &r, 20)) TH_LOG("ISR bit of vector 0x42");
	EXPECT_EQ(0U, OUT(v)) TH_LOG("TMR: edge");
	EXPECT_EQ(1U, OUT(v)) TH_LOG("handled once");

	/* KVM_MSI_VALID_DEVID is accepted (and the device ID unused) on x86. */
	runner_start(_metadata, &r, v, false);
	usleep(300000);
	msi.flags = KVM_MSI_VALID_DEVID;
	msi.devid = 0x1234;
	EXPECT_EQ(1, ioctl(vm.fd, KVM_SIGNAL_MSI, &msi)) TH_LOG("%s", strerror(errno));
	EXPECT_EQ(4U, runner_join(_metadata, &r, 20)) TH_LOG("ISR bit of vector 0x42");
	EXPECT_EQ(0U, OUT(v)) TH_LOG("TMR: edge");
	EXPECT_EQ(2U, OUT(v)) TH_LOG("handled twice");
	EXPECT_EQ((__u32)DONE, OUT(v));
	vm_destroy(&vm);
}

TEST(ipi_between_vcpus)
{
	struct kvm_mp_state mp = { .mp_state = KVM_MP_STATE_RUNNABLE };
	struct runner r;
	struct vm vm;
	struct vcpu *v0, *v1;

	vm_create(_metadata, &vm, true);
	v0 = vcpu_add(_metadata, &vm);
	v1 = vcpu_add(_metadata, &vm);
	ASSERT_TRUE(v0 && v1);
	ASSERT_EQ(0, ioctl(v1->fd, KVM_SET_MP_STATE, &mp));
	load_at(_metadata, &vm, CODE_GPA, ipi0_start, ipi_end);
	idt32(&vm, 0x43, gaddr(ipi0_start, ipi1_h43));
	enter32(_metadata, &vm, v0, CODE_GPA, STACK0);
	enter32(_metadata, &vm, v1, gaddr(ipi0_start, ipi1_start), STACK1);

	EXPECT_EQ(0xa1U, OUT(v1)) TH_LOG("vCPU 1 ready");
	runner_start(_metadata, &r, v1, false);
	usleep(300000);
	EXPECT_EQ(0U, OUT(v0)) TH_LOG("ICR delivery status: idle");
	EXPECT_EQ(0x01000000U, OUT(v0)) TH_LOG("ICR2");
	EXPECT_EQ(0xa0U, OUT(v0));
	EXPECT_EQ(8U, runner_join(_metadata, &r, 20)) TH_LOG("vCPU 1: ISR bit of vector 0x43");
	EXPECT_EQ(1U, OUT(v1)) TH_LOG("vCPU 1 handled it once");
	EXPECT_EQ(0x01000000U, OUT(v1)) TH_LOG("vCPU 1's APIC ID");
	EXPECT_EQ((__u32)DONE, OUT(v1));
	EXPECT_EQ(0U, *(__u32 *)(vm.mem + CNT0));
	vm_destroy(&vm);
}

TEST(level_eoi_exit)
{
	struct {
		struct kvm_irq_routing hdr;
		struct kvm_irq_routing_entry e[2];
	} rt = { .hdr.nr = 2 };
	struct kvm_msi msi = { .address_lo = APIC, .data = 0x8044 };	/* level */
	struct vm vm;
	struct vcpu *v;
	char why[96];

	vm_create(_metadata, &vm, true);
	v = vcpu_add(_metadata, &vm);
	ASSERT_NE(NULL, v);
	/*
	 * KVM exits with KVM_EXIT_IOAPIC_EOI on the EOI of a vector that a
	 * level-triggered MSI route of a GSI below the reserved pin count (24)
	 * targets at this vCPU; whether the delivered interrupt itself was
	 * level-triggered does not matter. GSI 5 has vector 0x44; GSI 30
	 * (not a reserved pin) has vector 0x45: no exit for it.
	 */
	rt.e[0] = (struct kvm_irq_routing_entry){
		.gsi = 5, .type = KVM_IRQ_ROUTING_MSI,
		.u.msi = { .address_lo = APIC, .data = 0x8044 },
	};
	rt.e[1] = (struct kvm_irq_routing_entry){
		.gsi = 30, .type = KVM_IRQ_ROUTING_MSI,
		.u.msi = { .address_lo = APIC, .data = 0x8045 },
	};
	ASSERT_EQ(0, ioctl(vm.fd, KVM_SET_GSI_ROUTING, &rt)) TH_LOG("%s", strerror(errno));
	load_at(_metadata, &vm, CODE_GPA, wait_start, wait_end);
	idt32(&vm, 0x44, gaddr(wait_start, wait_h));
	idt32(&vm, 0x45, gaddr(wait_start, wait_h));
	enter32(_metadata, &vm, v, CODE_GPA, STACK0);
	EXPECT_EQ(1U, OUT(v)) TH_LOG("ready");

	EXPECT_EQ(1, ioctl(vm.fd, KVM_SIGNAL_MSI, &msi)) TH_LOG("%s", strerror(errno));
	EXPECT_EQ(0x10U, OUT(v)) TH_LOG("ISR bit of vector 0x44");
	EXPECT_EQ(0x10U, OUT(v)) TH_LOG("TMR bit of vector 0x44: level");
	ASSERT_EQ(0, ioctl(v->fd, KVM_RUN, 0));
	ASSERT_EQ((__u32)KVM_EXIT_IOAPIC_EOI, v->run->exit_reason)
		TH_LOG("got %s", exit_str(v->run, why, sizeof(why)));
	EXPECT_EQ(0x44, v->run->eoi.vector);
	/* The guest goes on where it was. */
	EXPECT_EQ(1U, OUT(v)) TH_LOG("handled once");

	msi.data = 0x8045;
	EXPECT_EQ(1, ioctl(vm.fd, KVM_SIGNAL_MSI, &msi)) TH_LOG("%s", strerror(errno));
	EXPECT_EQ(0x20U, OUT(v)) TH_LOG("ISR bit of vector 0x45");
	/* The TMR bit of 0x44 stays: TMR bits change only when an interrupt is accepted. */
	EXPECT_EQ(0x30U, OUT(v)) TH_LOG("TMR bits of vectors 0x44 and 0x45");
	EXPECT_EQ(2U, OUT(v)) TH_LOG("no EOI exit for GSI 30's vector");
	EXPECT_EQ((__u32)DONE, OUT(v));
	vm_destroy(&vm);
}

TEST(init_sipi_starts_ap)
{
	struct runner r;
	struct vm vm;
	struct vcpu *v0, *v1;
	struct kvm_sregs sregs;

	vm_create(_metadata, &vm, true);
	/* Real mode without unrestricted guest (kvm_intel ept=0) needs it. */
	ASSERT_EQ(0, ioctl(vm.fd, KVM_SET_TSS_ADDR, 0xfffbd000UL));
	v0 = vcpu_add(_metadata, &vm);
	v1 = vcpu_add(_metadata, &vm);
	ASSERT_TRUE(v0 && v1);
	load_at(_metadata, &vm, CODE_GPA, sipi0_start, sipi0_end);
	load_at(_metadata, &vm, AP_GPA, ap16_start, ap16_end);
	enter32(_metadata, &vm, v0, CODE_GPA, STACK0);
	EXPECT_EQ((__u32)KVM_MP_STATE_UNINITIALIZED, mp_state(_metadata, v1));

	/* The AP waits in KVM_RUN (EAGAIN after the INIT: run again). */
	runner_start(_metadata, &r, v1, true);
	usleep(300000);
	EXPECT_EQ(0xb0U, OUT(v0));
	EXPECT_EQ(0xb1U, runner_join(_metadata, &r, 20)) TH_LOG("the AP's first report");
	TH_LOG("KVM_RUN of the AP returned EAGAIN %d times", r.eagain);
	EXPECT_EQ((__u32)(SIPI_VEC << 8), OUT(v1)) TH_LOG("the AP's CS");
	EXPECT_EQ((__u32)DONE, OUT(v1));
	EXPECT_EQ((__u32)KVM_MP_STATE_RUNNABLE, mp_state(_metadata, v1));
	/* (Where RIP is at this exit depends on whether KVM emulated the OUT.) */
	ASSERT_EQ(0, ioctl(v1->fd, KVM_GET_SREGS, &sregs));
	EXPECT_EQ(SIPI_VEC << 8, sregs.cs.selector);
	EXPECT_EQ((__u64)AP_GPA, sregs.cs.base);
	EXPECT_EQ(0ULL, sregs.cr0 & 1) TH_LOG("real mode");
	vm_destroy(&vm);
}

/*
 * KVM_SET_BOOT_CPU_ID: the boot CPU gets the BSP bit, LINT0 in ExtINT mode
 * and starts RUNNABLE; vCPU 0 then is an AP. EBUSY once a vCPU exists,
 * EINVAL above the vCPU id bound, and KVM_CAP_MAX_VCPU_ID may not go below
 * the boot CPU's id.
 */
TEST(boot_cpu_id)
{
	static struct kvm_lapic_state s;
	struct kvm_enable_cap cap = { .cap = KVM_CAP_MAX_VCPU_ID };
	int max_id, dev, fd;
	struct vm vm;

	vm_create(_metadata, &vm, true);
	EXPECT_EQ(1, ioctl(vm.dev, KVM_CHECK_EXTENSION, KVM_CAP_SET_BOOT_CPU_ID));
	max_id = ioctl(vm.fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPU_ID);
	ASSERT_LT(1, max_id);
	EXPECT_ERRNO(EINVAL, ioctl(vm.fd, KVM_SET_BOOT_CPU_ID, (unsigned long)max_id + 1));
	EXPECT_ERRNO(EINVAL, ioctl(vm.fd, KVM_SET_BOOT_CPU_ID, 1UL << 32));
	ASSERT_EQ(0, ioctl(vm.fd, KVM_SET_BOOT_CPU_ID, 1UL)) TH_LOG("%s", strerror(errno));
	ASSERT_NE(NULL, vcpu_add(_metadata, &vm));
	ASSERT_NE(NULL, vcpu_add(_metadata, &vm));
	EXPECT_ERRNO(EBUSY, ioctl(vm.fd, KVM_SET_BOOT_CPU_ID, 0UL));
	EXPECT_EQ(0xfee00800ULL, get_msr(_metadata, vm.v[0].fd, 0x1b));
	EXPECT_EQ(0xfee00900ULL, get_msr(_metadata, vm.v[1].fd, 0x1b));
	EXPECT_EQ((__u32)KVM_MP_STATE_UNINITIALIZED, mp_state(_metadata, &vm.v[0]));
	EXPECT_EQ((__u32)KVM_MP_STATE_RUNNABLE, mp_state(_metadata, &vm.v[1]));
	ASSERT_EQ(0, ioctl(vm.v[0].fd, KVM_GET_LAPIC, &s));
	EXPECT_EQ(0x10000U, lapic_reg(&s, A_LVT0)) TH_LOG("vCPU 0 is an AP");
	ASSERT_EQ(0, ioctl(vm.v[1].fd, KVM_GET_LAPIC, &s));
	EXPECT_EQ(0x700U, lapic_reg(&s, A_LVT0)) TH_LOG("vCPU 1 is the BSP");
	vm_destroy(&vm);

	dev = open_dev(_metadata);
	ASSERT_LE(0, dev);
	fd = ioctl(dev, KVM_CREATE_VM, 0);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, ioctl(fd, KVM_SET_BOOT_CPU_ID, 5UL));
	cap.args[0] = 4;
	EXPECT_ERRNO(EINVAL, ioctl(fd, KVM_ENABLE_CAP, &cap));
	cap.args[0] = 5;
	EXPECT_EQ(0, ioctl(fd, KVM_ENABLE_CAP, &cap)) TH_LOG("%s", strerror(errno));
	/* The bound itself is accepted (KVM checks with `>`). */
	EXPECT_EQ(0, ioctl(fd, KVM_SET_BOOT_CPU_ID, 5UL)) TH_LOG("%s", strerror(errno));
	EXPECT_ERRNO(EINVAL, ioctl(fd, KVM_SET_BOOT_CPU_ID, 6UL));
	close(fd);
	close(dev);
}

/* ---- KVM_IRQFD ------------------------------------------------------- */

static int irqfd(int vm, int fd, __u32 gsi, __u32 flags)
{
	struct kvm_irqfd a = { .fd = fd, .gsi = gsi, .flags = flags, .resamplefd = -1 };

	return ioctl(vm, KVM_IRQFD, &a);
}

/* Routes GSI `gsi` to an MSI (fixed, edge, physical APIC ID 0, `vector`). */
static int route_msi(int vm, __u32 gsi, __u8 vector)
{
	struct {
		struct kvm_irq_routing hdr;
		struct kvm_irq_routing_entry e;
	} rt = {
		.hdr.nr = 1,
		.e = { .gsi = gsi, .type = KVM_IRQ_ROUTING_MSI,
		       .u.msi = { .address_lo = APIC, .data = vector } },
	};

	return ioctl(vm, KVM_SET_GSI_ROUTING, &rt);
}

/* The eventfd's counter, without waiting: -1 if it is 0 (EAGAIN). */
static long long efd_read(int efd)
{
	__u64 v;

	if (read(efd, &v, sizeof(v)) != sizeof(v))
		return errno == EAGAIN ? -1 : -2;
	return v;
}

static void efd_write(struct __test_metadata *_metadata, int efd)
{
	__u64 one = 1;

	ASSERT_EQ((ssize_t)sizeof(one), write(efd, &one, sizeof(one)));
}

TEST(irqfd_errors)
{
	struct {
		struct kvm_irq_routing hdr;
		struct kvm_irq_routing_entry e[2];
	} rt = { .hdr.nr = 2 };
	int dev = open_dev(_metadata), plain, vm, vm2, efd, efd2;

	ASSERT_LE(0, dev);
	EXPECT_EQ(1, ioctl(dev, KVM_CHECK_EXTENSION, KVM_CAP_IRQFD));
	efd = eventfd(0, EFD_NONBLOCK);
	efd2 = eventfd(0, EFD_NONBLOCK);
	ASSERT_LE(0, efd);
	ASSERT_LE(0, efd2);

	/* No irqchip: assigning is EINVAL; deassigning needs only an eventfd. */
	plain = ioctl(dev, KVM_CREATE_VM, 0);
	ASSERT_LE(0, plain);
	EXPECT_ERRNO(EINVAL, irqfd(plain, efd, 30, 0));
	EXPECT_EQ(0, irqfd(plain, efd, 30, KVM_IRQFD_FLAG_DEASSIGN)) TH_LOG("%s", strerror(errno));

	vm = ioctl(dev, KVM_CREATE_VM, 0);
	vm2 = ioctl(dev, KVM_CREATE_VM, 0);
	ASSERT_LE(0, vm);
	ASSERT_LE(0, vm2);
	ASSERT_EQ(0, enable_split(vm, 24));
	ASSERT_EQ(0, enable_split(vm2, 24));
	/* Unknown flags, resampling (needs the full in-kernel irqchip). */
	EXPECT_ERRNO(EINVAL, irqfd(vm, efd, 30, 4));
	EXPECT_ERRNO(EINVAL, irqfd(vm, efd, 30, KVM_IRQFD_FLAG_RESAMPLE));
	/* Not a file, not an eventfd, not readable. */
	EXPECT_ERRNO(EBADF, irqfd(vm, -1, 30, 0));
	EXPECT_ERRNO(EBADF, irqfd(vm, 10000, 30, 0));
	EXPECT_ERRNO(EINVAL, irqfd(vm, vm2, 30, 0));
	EXPECT_ERRNO(EBADF, irqfd(vm, -1, 30, KVM_IRQFD_FLAG_DEASSIGN));
	EXPECT_ERRNO(EINVAL, irqfd(vm, vm2, 30, KVM_IRQFD_FLAG_DEASSIGN));
	EXPECT_ERRNO(EFAULT, ioctl(vm, KVM_IRQFD, (void *)8));

	/* An eventfd feeds one irqfd: another GSI or VM is EBUSY. */
	EXPECT_EQ(0, irqfd(vm, efd, 30, 0)) TH_LOG("%s", strerror(errno));
	EXPECT_ERRNO(EBUSY, irqfd(vm, efd, 31, 0));
	EXPECT_ERRNO(EBUSY, irqfd(vm, efd, 30, 0));
	EXPECT_ERRNO(EBUSY, irqfd(vm2, efd, 30, 0));
	EXPECT_EQ(0, irqfd(vm, efd2, 31, 0)) TH_LOG("%s", strerror(errno));
	/* Deassigning what was never assigned is no error, and keeps the
	 * irqfd: the eventfd is still taken. */
	EXPECT_EQ(0, irqfd(vm, efd, 31, KVM_IRQFD_FLAG_DEASSIGN));
	EXPECT_EQ(0, irqfd(vm2, efd, 30, KVM_IRQFD_FLAG_DEASSIGN));
	EXPECT_ERRNO(EBUSY, irqfd(vm2, efd, 30, 0));
	/* After the deassignment the eventfd is free for the other VM. */
	EXPECT_EQ(0, irqfd(vm, efd, 30, KVM_IRQFD_FLAG_DEASSIGN));
	EXPECT_EQ(0, irqfd(vm2, efd, 30, 0)) TH_LOG("%s", strerror(errno));

	/* One MSI route per GSI. */
	rt.e[0] = (struct kvm_irq_routing_entry){ .gsi = 30, .type = KVM_IRQ_ROUTING_MSI,
						   .u.msi = { .address_lo = APIC, .data = 0x40 } };
	rt.e[1] = rt.e[0];
	EXPECT_ERRNO(EINVAL, ioctl(vm, KVM_SET_GSI_ROUTING, &rt));
	rt.e[1].gsi = 31;
	EXPECT_EQ(0, ioctl(vm, KVM_SET_GSI_ROUTING, &rt)) TH_LOG("%s", strerror(errno));

	/* Closing an assigned eventfd detaches its irqfd (then, closing the
	 * VMs frees the rest; kmemleak checks the lab run). */
	close(efd);
	close(efd2);
	efd = eventfd(0, EFD_NONBLOCK);
	ASSERT_LE(0, efd);
	EXPECT_EQ(0, irqfd(vm, efd, 31, 0)) TH_LOG("%s", strerror(errno));
	close(vm);
	close(vm2);
	close(plain);
	/* The VM's irqfd is gone with it: the eventfd is free. */
	vm = ioctl(dev, KVM_CREATE_VM, 0);
	ASSERT_LE(0, vm);
	ASSERT_EQ(0, enable_split(vm, 24));
	EXPECT_EQ(0, irqfd(vm, efd, 31, 0)) TH_LOG("%s", strerror(errno));
	close(vm);
	close(efd);
	close(dev);
}

TEST(irqfd_raises_msi_route)
{
	struct runner r;
	struct vm vm;
	struct vcpu *v;
	int efd;

	vm_create(_metadata, &vm, true);
	v = vcpu_add(_metadata, &vm);
	ASSERT_NE(NULL, v);
	efd = eventfd(0, EFD_NONBLOCK);
	ASSERT_LE(0, efd);
	load_at(_metadata, &vm, CODE_GPA, wait_start, wait_end);
	idt32(&vm, 0x42, gaddr(wait_start, wait_h));
	idt32(&vm, 0x43, gaddr(wait_start, wait_h));
	enter32(_metadata, &vm, v, CODE_GPA, STACK0);
	EXPECT_EQ(1U, OUT(v)) TH_LOG("ready");

	/* GSI 30 is vector 0x42; a signal wakes the halted vCPU. */
	ASSERT_EQ(0, route_msi(vm.fd, 30, 0x42)) TH_LOG("%s", strerror(errno));
	ASSERT_EQ(0, irqfd(vm.fd, efd, 30, 0)) TH_LOG("%s", strerror(errno));
	runner_start(_metadata, &r, v, false);
	usleep(300000);
	efd_write(_metadata, efd);
	EXPECT_EQ(4U, runner_join(_metadata, &r, 20)) TH_LOG("ISR bit of vector 0x42");
	EXPECT_EQ(0U, OUT(v)) TH_LOG("TMR: edge");
	EXPECT_EQ(1U, OUT(v)) TH_LOG("handled once");
	/* The irqfd consumed the signal. */
	EXPECT_EQ(-1, efd_read(efd));

	/* Deassigned, the eventfd is just an eventfd again. */
	EXPECT_EQ(0, irqfd(vm.fd, efd, 30, KVM_IRQFD_FLAG_DEASSIGN));
	efd_write(_metadata, efd);
	EXPECT_EQ(1, efd_read(efd)) TH_LOG("the counter, not consumed");

	/* The route is the one when the signal comes (0x43 now); a signal
	 * made before the assignment is delivered when it is assigned. */
	ASSERT_EQ(0, route_msi(vm.fd, 30, 0x43)) TH_LOG("%s", strerror(errno));
	efd_write(_metadata, efd);
	ASSERT_EQ(0, irqfd(vm.fd, efd, 30, 0)) TH_LOG("%s", strerror(errno));
	EXPECT_EQ(8U, run_out_wait(_metadata, &vm, v, 20)) TH_LOG("ISR bit of vector 0x43");
	EXPECT_EQ(0U, OUT(v)) TH_LOG("TMR: edge");
	EXPECT_EQ(2U, OUT(v)) TH_LOG("handled twice");
	EXPECT_EQ((__u32)DONE, OUT(v));
	close(efd);
	vm_destroy(&vm);
}

TEST_HARNESS_MAIN
