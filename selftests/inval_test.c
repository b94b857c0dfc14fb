// SPDX-License-Identifier: GPL-2.0
/*
 * Invalidation of the shadow MMU (issue 5): what a paged guest sees after
 * the VMM changes the memory behind a slot (munmap, madvise(MADV_DONTNEED),
 * mremap, mprotect), memory slots created, moved and deleted under running
 * vCPUs, dirty logging, teardown of a VM with many shadow PTEs, and the
 * benchmarks of Documentation/rkvm/mmu.rst's issue 5 list (zap-all stall,
 * memslot delete with live mappings, one gfn behind thousands of sptes).
 *
 * The guest runs in 4-level long mode with 4 KiB pages on tables the host
 * builds, so with EPT off (rkvm, kvm_intel ept=0) every access goes through
 * the shadow MMU. Run with RKVM_DEV=/dev/kvm and kvm_intel loaded with
 * ept=0 for the reference.
 *
 * The guest is a small command interpreter (below): the host writes a
 * command into the vCPU's command block in guest memory, KVM_RUN, and the
 * guest executes it, stores its results in the block and reports with an
 * OUT to PORT_DONE. vCPUs that must run while the host acts (a spinning
 * reader, the RDTSC stall monitor, the slot churners) run commands that
 * loop until a flag in guest memory tells them to stop.
 *
 * Benchmarks print "# inval_bench <what> <params>: ..." lines
 * (scripts/lab/inval_bench.sh puts the two devices side by side); they only
 * fail when an operation fails or the guest sees wrong data.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "rkvm_util.h"

#define STR(x) #x
#define XS(x) STR(x)

/* ---- Slot 0: the guest's own memory ------------------------------------- */

#define BASE_SIZE	(40UL << 20)
#define GDT_GPA		0x1000
#define TSS_GPA		0x1800
#define IDT_GPA		0x2000
#define CMD_GPA		0x3000		/* command block of vCPU i: + i * CMD_SIZE */
#define CMD_SIZE	0x100
#define FLAGS_GPA	0x3800		/* host -> guest flags (stop, give up) */
#define STACK_TOP(i)	(0x8000 + (i) * 0x2000)
#define CODE_GPA	0x10000
#define CODE_END	0x30000
#define CODE32_GPA	0x30000		/* the unpaged guest */
#define CODE32_END	0x31000
#define DATA_GPA	0x40000		/* frames the benchmarks map many times */
#define POOL_GPA	0x100000	/* guest page tables, allocated upwards */

#define F_STOP		(FLAGS_GPA + 0)
#define F_GIVEUP	(FLAGS_GPA + 8)

/* Guest linear addresses: 0-2 MiB identity, test slots identity. */
#define SLOT_GPA(k)	(0x40000000ULL + (k) * 0x10000000ULL)
#define ALIAS_LA	0x200000000ULL	/* many linear pages -> few frames */
#define ZAP_LA		0x400000000ULL	/* one page per 2 MiB: one table each */

/* ---- The command block (qwords) ------------------------------------------ */

#define C_OP		0
#define C_A		8
#define C_B		16
#define C_C		24
#define C_D		32
#define C_E		40
#define C_R0		48
#define C_R1		56
#define C_SEQ		64	/* OP_SPIN: sample request from the host */
#define C_ACK		72	/* ...answered */
#define C_MAX		80	/* ...longest RDTSC gap since the last answer */
#define C_ITERS		88	/* ...and loop iterations */
#define C_STARTED	96	/* OP_WAIT: first read done, looping */

#define OP_READ		1	/* r0 = *(u32 *)a */
#define OP_WRITE	2	/* *(u32 *)a = b */
#define OP_READ_N	3	/* r0 = #{i < b : *(u32 *)(a + i * c) == d + i * e} */
#define OP_WRITE_N	4	/* *(u32 *)(a + i * c) = d + i * e for i < b; r0 = b */
#define OP_WAIT		5	/* read *(u32 *)a until == b, *(u32 *)c != 0, or d rounds */
#define OP_CHURN	6	/* passes over b pages at a (tags c + i) until *d or e */
#define OP_SPIN		7	/* RDTSC gaps, sampled through C_SEQ/C_ACK, until seq -1 */

/* ---- Ports ------------------------------------------------------------------ */

#define PORT_DONE	0x50
#define PORT_YIELD	0x51	/* a pass done: the host thread yields, runs again */
#define PORT_BAD	0x5e	/* unexpected exception: vector, error, CR2, RIP */

/*
 * ---- The guest -----------------------------------------------------------------
 *
 * 64-bit code, position independent (it is copied to CODE_GPA), R15 = the
 * vCPU's command block. Exceptions 0-31 go through 16-byte stubs (pushing a
 * zero where the CPU pushes no error code) to a handler that reports them
 * on PORT_BAD and halts.
 */
asm(".pushsection .rodata.inval_guest, \"a\"\n"
    ".code64\n"
    ".p2align 4\n"
    ".global inval_guest_start, inval_guest_end\n"
    "inval_guest_start:\n"
    "	.long ig_stubs - inval_guest_start\n"
    "	.long ig_main - inval_guest_start\n"
    "	.p2align 4\n"
    "ig_stubs:\n"
    "	.irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,"
	"22,23,24,25,26,27,28,29,30,31\n"
    "	.p2align 4\n"
    "	.if ((0x60227d00 >> \\v) & 1) == 0\n"
    "	push $0\n"
    "	.endif\n"
    "	push $\\v\n"
    "	jmp ig_exc\n"
    "	.endr\n"
    "ig_exc:\n"
    "	pop %rax\n"
    "	out %eax, $" XS(PORT_BAD) "\n"
    "	pop %rax\n"
    "	out %eax, $" XS(PORT_BAD) "\n"
    "	mov %cr2, %rax\n"
    "	out %eax, $" XS(PORT_BAD) "\n"
    "	pop %rax\n"
    "	out %eax, $" XS(PORT_BAD) "\n"
    "1:	hlt\n"
    "	jmp 1b\n"
    /* The interpreter loop. */
    "ig_main:\n"
    "	mov " XS(C_OP) "(%r15), %rax\n"
    "	cmp $" XS(OP_READ) ", %rax\n"
    "	je ig_read\n"
    "	cmp $" XS(OP_WRITE) ", %rax\n"
    "	je ig_write\n"
    "	cmp $" XS(OP_READ_N) ", %rax\n"
    "	je ig_read_n\n"
    "	cmp $" XS(OP_WRITE_N) ", %rax\n"
    "	je ig_write_n\n"
    "	cmp $" XS(OP_WAIT) ", %rax\n"
    "	je ig_wait\n"
    "	cmp $" XS(OP_CHURN) ", %rax\n"
    "	je ig_churn\n"
    "	cmp $" XS(OP_SPIN) ", %rax\n"
    "	je ig_spin\n"
    "	ud2\n"
    "ig_done:\n"
    "	mov " XS(C_OP) "(%r15), %eax\n"
    "	out %eax, $" XS(PORT_DONE) "\n"
    "	jmp ig_main\n"
    "ig_read:\n"
    "	mov " XS(C_A) "(%r15), %rbx\n"
    "	mov (%rbx), %eax\n"
    "	mov %rax, " XS(C_R0) "(%r15)\n"
    "	jmp ig_done\n"
    "ig_write:\n"
    "	mov " XS(C_A) "(%r15), %rbx\n"
    "	mov " XS(C_B) "(%r15), %rax\n"
    "	mov %eax, (%rbx)\n"
    "	jmp ig_done\n"
    "ig_read_n:\n"
    "	mov " XS(C_A) "(%r15), %rbx\n"
    "	mov " XS(C_B) "(%r15), %rcx\n"
    "	mov " XS(C_D) "(%r15), %rdx\n"
    "	xor %esi, %esi\n"
    "	test %rcx, %rcx\n"
    "	jz 2f\n"
    "1:	mov (%rbx), %eax\n"
    "	cmp %edx, %eax\n"
    "	jne 3f\n"
    "	inc %rsi\n"
    "3:	add " XS(C_C) "(%r15), %rbx\n"
    "	add " XS(C_E) "(%r15), %rdx\n"
    "	dec %rcx\n"
    "	jnz 1b\n"
    "2:	mov %rsi, " XS(C_R0) "(%r15)\n"
    "	jmp ig_done\n"
    "ig_write_n:\n"
    "	mov " XS(C_A) "(%r15), %rbx\n"
    "	mov " XS(C_B) "(%r15), %rcx\n"
    "	mov " XS(C_D) "(%r15), %rdx\n"
    "	mov %rcx, " XS(C_R0) "(%r15)\n"
    "	test %rcx, %rcx\n"
    "	jz ig_done\n"
    "1:	mov %edx, (%rbx)\n"
    "	add " XS(C_C) "(%r15), %rbx\n"
    "	add " XS(C_E) "(%r15), %rdx\n"
    "	dec %rcx\n"
    "	jnz 1b\n"
    "	jmp ig_done\n"
    /* r0 = rounds until the value showed (0: gave up), r1 = last value. */
    "ig_wait:\n"
    "	mov " XS(C_A) "(%r15), %rbx\n"
    "	mov " XS(C_B) "(%r15), %rdx\n"
    "	mov " XS(C_C) "(%r15), %rdi\n"
    "	mov " XS(C_D) "(%r15), %rcx\n"
    "	xor %esi, %esi\n"
    "	mov (%rbx), %eax\n"
    "	movq $1, " XS(C_STARTED) "(%r15)\n"
    "1:	inc %rsi\n"
    "	mov (%rbx), %eax\n"
    "	cmp %edx, %eax\n"
    "	je 2f\n"
    "	cmpl $0, (%rdi)\n"
    "	jne 3f\n"
    "	cmp %rcx, %rsi\n"
    "	jb 1b\n"
    "3:	xor %esi, %esi\n"
    "2:	mov %rsi, " XS(C_R0) "(%r15)\n"
    "	mov %rax, " XS(C_R1) "(%r15)\n"
    "	jmp ig_done\n"
    /*
     * Pass p = 1, 2, ...: page i must hold c + i at offset 0 (else a
     * mismatch is counted), p is written at offset 8, C_ITERS counts the
     * pages done. Stops after the pass in which *d became non-zero, or
     * after e passes. r0 = mismatches, r1 = passes.
     */
    "ig_churn:\n"
    "	xor %r8d, %r8d\n"
    "	xor %r9d, %r9d\n"
    "1:	inc %r9\n"
    "	mov " XS(C_A) "(%r15), %rbx\n"
    "	mov " XS(C_B) "(%r15), %rcx\n"
    "	mov " XS(C_C) "(%r15), %rdx\n"
    "2:	mov (%rbx), %eax\n"
    "	cmp %edx, %eax\n"
    "	je 3f\n"
    "	inc %r8\n"
    "3:	mov %r9d, 8(%rbx)\n"
    "	incq " XS(C_ITERS) "(%r15)\n"
    "	add $4096, %rbx\n"
    "	inc %edx\n"
    "	dec %rcx\n"
    "	jnz 2b\n"
    "	mov %r9, " XS(C_R1) "(%r15)\n"
    "	out %al, $" XS(PORT_YIELD) "\n"
    "	mov " XS(C_D) "(%r15), %rdi\n"
    "	cmpl $0, (%rdi)\n"
    "	jne 4f\n"
    "	cmp " XS(C_E) "(%r15), %r9\n"
    "	jb 1b\n"
    "4:	mov %r8, " XS(C_R0) "(%r15)\n"
    "	mov %r9, " XS(C_R1) "(%r15)\n"
    "	jmp ig_done\n"
    /*
     * The stall monitor: the largest difference between two consecutive
     * RDTSC reads. When C_SEQ changes, stores the largest gap and the
     * iteration count since the last answer, then C_ACK = C_SEQ, and
     * starts over; C_SEQ = -1 ends the command.
     */
    "ig_spin:\n"
    "	xor %r8d, %r8d\n"
    "	xor %r9d, %r9d\n"
    "	mov " XS(C_SEQ) "(%r15), %r10\n"
    "	mov %r10, " XS(C_ACK) "(%r15)\n"
    "	rdtsc\n"
    "	shl $32, %rdx\n"
    "	or %rdx, %rax\n"
    "	mov %rax, %rsi\n"
    "1:	rdtsc\n"
    "	shl $32, %rdx\n"
    "	or %rdx, %rax\n"
    "	mov %rax, %rdx\n"
    "	sub %rsi, %rdx\n"
    "	mov %rax, %rsi\n"
    "	cmp %r8, %rdx\n"
    "	jbe 2f\n"
    "	mov %rdx, %r8\n"
    "2:	inc %r9\n"
    "	mov " XS(C_SEQ) "(%r15), %rax\n"
    "	cmp %rax, %r10\n"
    "	je 1b\n"
    "	mov %rax, %r10\n"
    "	mov %r8, " XS(C_MAX) "(%r15)\n"
    "	mov %r9, " XS(C_ITERS) "(%r15)\n"
    "	mov %r10, " XS(C_ACK) "(%r15)\n"
    "	xor %r8d, %r8d\n"
    "	xor %r9d, %r9d\n"
    "	cmp $-1, %rax\n"
    "	jne 1b\n"
    "	jmp ig_done\n"
    "inval_guest_end:\n"
    ".popsection\n");

extern const char inval_guest_start[], inval_guest_end[];

/*
 * The unpaged guest of dirty_log_unpaged: 32-bit protected mode without
 * paging, OP_READ and OP_WRITE only, EBP = the command block (low dwords
 * of its qwords).
 */
asm(".pushsection .rodata.inval_guest, \"a\"\n"
    ".code32\n"
    ".p2align 4\n"
    ".global inval_guest32_start, inval_guest32_end\n"
    "inval_guest32_start:\n"
    "ig32_main:\n"
    "	mov " XS(C_OP) "(%ebp), %eax\n"
    "	cmp $" XS(OP_READ) ", %eax\n"
    "	je ig32_read\n"
    "	cmp $" XS(OP_WRITE) ", %eax\n"
    "	je ig32_write\n"
    "	ud2\n"
    "ig32_done:\n"
    "	mov " XS(C_OP) "(%ebp), %eax\n"
    "	out %eax, $" XS(PORT_DONE) "\n"
    "	jmp ig32_main\n"
    "ig32_read:\n"
    "	mov " XS(C_A) "(%ebp), %ebx\n"
    "	mov (%ebx), %eax\n"
    "	mov %eax, " XS(C_R0) "(%ebp)\n"
    "	jmp ig32_done\n"
    "ig32_write:\n"
    "	mov " XS(C_A) "(%ebp), %ebx\n"
    "	mov " XS(C_B) "(%ebp), %eax\n"
    "	mov %eax, (%ebx)\n"
    "	jmp ig32_done\n"
    "inval_guest32_end:\n"
    ".code64\n"
    ".popsection\n");

extern const char inval_guest32_start[], inval_guest32_end[];

/* ---- Loop sizes, scaled to the 2-CPU Bochs lab ------------------------------ */

/*
 * Measured in the lab (Bochs, guest time, 1 CPU, 2026-11-22): on
 * kvm_intel ept=0 a shadow fault that creates a shadow page table costs
 * ~2.7 ms (zap_stall's build of 2048 tables: 5.5 s), one into an existing
 * table ~0.5 ms (teardown_big's 16384 leaves: 8.2 s); rkvm's cost ~2.5x
 * that. A slot update costs ~100 ms on kvm_intel (SRCU; 0.1 ms on rkvm),
 * with or without vCPUs running. The full suite took 194 s (kvm_intel)
 * and 141 s (rkvm, failing fast) at 16384 leaves, N up to 2048, M up to
 * 8192 and 30 churn rounds; the smp boot runs it on 2 emulated CPUs (~2.5x
 * slower in wall time) beside the vmx and novmx boots, so the sizes below
 * are cut to about a minute of guest time per device.
 */
#define NOTIFY_PAGES	16		/* pages of the notifier tests' slot */
#define WAIT_ROUNDS	(1ULL << 26)	/* OP_WAIT's own bound */
#define WAIT_MS		3000		/* ...and the host's, in guest time */
#define CHURN_PAGES	32		/* per vCPU */
#define CHURN_ITERS	20		/* create, move, delete of the third slot */
#define CHURN_STEP	8		/* pages each vCPU does between two rounds */
#define CHURN_WAIT_MS	5000		/* ...within this (guest time) */
#define DIRTY_PAGES	64
#define TD_FRAMES	32		/* teardown_big: frames behind the aliases */
#define TD_TABLES	16		/* ...guest page tables of 512 PTEs each */

static const unsigned int zap_ns[] = { 64, 256, 1024 };
static const unsigned int live_ms[] = { 1024, 2048, 4096 };
static const unsigned int gfn_ks[] = { 256, 1024, 4096 };

/* ---- Host side ------------------------------------------------------------------ */

#define P_P	0x1ULL
#define P_RW	0x2ULL
#define P_US	0x4ULL
#define P_PS	0x80ULL
#define P_ADDR	0x000ffffffffff000ULL

struct vm {
	int dev;
	int fd;
	char *mem;		/* slot 0 */
	__u64 pool;		/* next free page-table page */
	__u32 entry_stubs, entry_main;
	struct kvm_cpuid2 *cpuid;
};

struct vcpu {
	struct vm *vm;
	int id;
	int fd;
	struct kvm_run *run;
	size_t run_size;
};

/* A slot's host memory. */
struct slotmem {
	__u32 id;
	__u32 flags;
	__u64 gpa;
	size_t size;
	char *hva;
};

static __u64 now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

static volatile __u64 *gq(struct vm *vm, __u64 gpa)
{
	return (volatile __u64 *)(vm->mem + gpa);
}

static volatile __u64 *cmd_block(struct vcpu *v)
{
	return gq(v->vm, CMD_GPA + v->id * CMD_SIZE);
}

static __u64 cmd_get(struct vcpu *v, unsigned int off)
{
	return __atomic_load_n(&cmd_block(v)[off / 8], __ATOMIC_ACQUIRE);
}

static void cmd_put(struct vcpu *v, unsigned int off, __u64 val)
{
	__atomic_store_n(&cmd_block(v)[off / 8], val, __ATOMIC_RELEASE);
}

static void flag_put(struct vm *vm, __u64 gpa, __u64 val)
{
	__atomic_store_n(gq(vm, gpa), val, __ATOMIC_RELEASE);
}

static __u64 pt_alloc(struct __test_metadata *_metadata, struct vm *vm)
{
	__u64 gpa = vm->pool;

	ASSERT_GE(BASE_SIZE, gpa + 0x1000) TH_LOG("guest page-table pool exhausted");
	vm->pool += 0x1000;
	memset(vm->mem + gpa, 0, 0x1000);
	return gpa;
}

/*
 * Maps linear `la` to `gpa` with a 4 KiB page (present, writable,
 * supervisor, accessed and dirty clear), allocating the tables on the way.
 */
static void map_page(struct __test_metadata *_metadata, struct vm *vm, __u64 la, __u64 gpa)
{
	__u64 table = POOL_GPA;	/* the PML4 is the pool's first page */
	int level;

	for (level = 4; level > 1; level--) {
		unsigned int idx = (la >> (12 + 9 * (level - 1))) & 511;
		volatile __u64 *e = gq(vm, table + idx * 8);

		if (!(*e & P_P)) {
			__u64 t = pt_alloc(_metadata, vm);

			*e = t | P_P | P_RW | P_US;
		}
		table = *e & P_ADDR;
	}
	*gq(vm, table + ((la >> 12) & 511) * 8) = gpa | P_P | P_RW;
}

static const __u64 gdt[] = {
	0,
	0x00af9b000000ffffULL,	/* 0x08: 64-bit code */
	0x00cf93000000ffffULL,	/* 0x10: data */
	0x00cf9b000000ffffULL,	/* 0x18: 32-bit code */
};

/* The VM: slot 0 with the guest program, descriptors and base tables. */
static void vm_create(struct __test_metadata *_metadata, struct vm *vm)
{
	struct kvm_userspace_memory_region r = { .slot = 0, .memory_size = BASE_SIZE };
	size_t code = inval_guest_end - inval_guest_start;
	__u32 ent[2];
	__u64 gpa;
	int v;

	memset(vm, 0, sizeof(*vm));
	vm->dev = open(rkvm_dev_path(), O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, vm->dev) TH_LOG("open %s: %s", rkvm_dev_path(), strerror(errno));
	vm->fd = ioctl(vm->dev, KVM_CREATE_VM, 0);
	ASSERT_LE(0, vm->fd) TH_LOG("KVM_CREATE_VM: %s", strerror(errno));
	vm->cpuid = rkvm_supported_cpuid(vm->dev);
	ASSERT_NE(NULL, vm->cpuid) TH_LOG("KVM_GET_SUPPORTED_CPUID: %s", strerror(errno));
	vm->mem = mmap(NULL, BASE_SIZE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	ASSERT_NE(MAP_FAILED, vm->mem);
	r.userspace_addr = (__u64)(unsigned long)vm->mem;
	ASSERT_EQ(0, ioctl(vm->fd, KVM_SET_USER_MEMORY_REGION, &r))
		TH_LOG("KVM_SET_USER_MEMORY_REGION slot 0: %s", strerror(errno));

	ASSERT_GE((size_t)(CODE_END - CODE_GPA), code);
	memcpy(vm->mem + CODE_GPA, inval_guest_start, code);
	code = inval_guest32_end - inval_guest32_start;
	ASSERT_GE((size_t)(CODE32_END - CODE32_GPA), code);
	memcpy(vm->mem + CODE32_GPA, inval_guest32_start, code);
	memcpy(ent, inval_guest_start, sizeof(ent));
	vm->entry_stubs = ent[0];
	vm->entry_main = ent[1];

	memcpy(vm->mem + GDT_GPA, gdt, sizeof(gdt));
	memset(vm->mem + TSS_GPA, 0, 0x68);
	*(volatile __u32 *)(vm->mem + TSS_GPA + 0x64) = 0x68 << 16;
	for (v = 0; v < 32; v++) {
		__u64 off = CODE_GPA + vm->entry_stubs + 16 * v;

		*gq(vm, IDT_GPA + v * 16) = (off & 0xffff) | (0x08ULL << 16) | (0x8fULL << 40) |
					    ((off >> 16 & 0xffff) << 48);
		*gq(vm, IDT_GPA + v * 16 + 8) = off >> 32;
	}

	vm->pool = POOL_GPA;
	pt_alloc(_metadata, vm);	/* the PML4 */
	for (gpa = 0; gpa < 0x100000; gpa += 0x1000)
		map_page(_metadata, vm, gpa, gpa);
}

static void vm_destroy(struct vm *vm)
{
	if (vm->fd > 0)
		close(vm->fd);
	if (vm->dev > 0)
		close(vm->dev);
	if (vm->mem && vm->mem != MAP_FAILED)
		munmap(vm->mem, BASE_SIZE);
	free(vm->cpuid);
	memset(vm, 0, sizeof(*vm));
}

static void segment(struct kvm_segment *s, __u16 sel, __u8 type, bool l)
{
	*s = (struct kvm_segment){
		.base = 0, .limit = 0xffffffff, .selector = sel, .type = type,
		.present = 1, .dpl = 0, .db = !l, .s = 1, .l = l, .g = 1,
	};
}

/* vCPU `id` in long mode at the interpreter, R15 = its command block. */
static void vcpu_create(struct __test_metadata *_metadata, struct vm *vm, int id,
			struct vcpu *v)
{
	int size = ioctl(vm->dev, KVM_GET_VCPU_MMAP_SIZE, 0);
	struct kvm_regs regs = {
		.rip = CODE_GPA + vm->entry_main, .rsp = STACK_TOP(id), .rflags = 0x202,
		.r15 = CMD_GPA + id * CMD_SIZE,
	};
	struct kvm_sregs sregs;

	memset(v, 0, sizeof(*v));
	v->vm = vm;
	v->id = id;
	ASSERT_LT(0, size) TH_LOG("KVM_GET_VCPU_MMAP_SIZE: %s", strerror(errno));
	v->fd = ioctl(vm->fd, KVM_CREATE_VCPU, id);
	ASSERT_LE(0, v->fd) TH_LOG("KVM_CREATE_VCPU %d: %s", id, strerror(errno));
	v->run_size = size;
	v->run = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
	ASSERT_NE(MAP_FAILED, v->run) TH_LOG("mmap vcpu: %s", strerror(errno));

	ASSERT_EQ(0, ioctl(v->fd, KVM_SET_CPUID2, vm->cpuid))
		TH_LOG("KVM_SET_CPUID2: %s", strerror(errno));
	ASSERT_EQ(0, ioctl(v->fd, KVM_GET_SREGS, &sregs));
	segment(&sregs.cs, 0x08, 11, true);
	segment(&sregs.ds, 0x10, 3, false);
	sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
	sregs.tr = (struct kvm_segment){
		.base = TSS_GPA, .limit = 0x67, .selector = 0x20, .type = 11, .present = 1,
	};
	sregs.gdt.base = GDT_GPA;
	sregs.gdt.limit = sizeof(gdt) - 1;
	sregs.idt.base = IDT_GPA;
	sregs.idt.limit = 32 * 16 - 1;
	sregs.cr0 = 0x80010033;		/* PG | WP | NE | ET | MP | PE */
	sregs.cr3 = POOL_GPA;
	sregs.cr4 = 0x20;		/* PAE */
	sregs.efer = 0x500;		/* LME | LMA */
	ASSERT_EQ(0, ioctl(v->fd, KVM_SET_SREGS, &sregs))
		TH_LOG("KVM_SET_SREGS: %s", strerror(errno));
	ASSERT_EQ(0, ioctl(v->fd, KVM_SET_REGS, &regs))
		TH_LOG("KVM_SET_REGS: %s", strerror(errno));
	memset((void *)cmd_block(v), 0, CMD_SIZE);
}

/* The vCPU to 32-bit protected mode without paging, at the unpaged guest. */
static void vcpu_unpaged(struct __test_metadata *_metadata, struct vcpu *v)
{
	struct kvm_regs regs = {
		.rip = CODE32_GPA, .rsp = STACK_TOP(v->id), .rflags = 0x202,
		.rbp = CMD_GPA + v->id * CMD_SIZE,
	};
	struct kvm_sregs sregs;

	ASSERT_EQ(0, ioctl(v->fd, KVM_GET_SREGS, &sregs));
	segment(&sregs.cs, 0x18, 11, false);
	sregs.cr0 = 0x31;		/* NE | ET | PE */
	sregs.cr3 = 0;
	sregs.cr4 = 0;
	sregs.efer = 0;
	ASSERT_EQ(0, ioctl(v->fd, KVM_SET_SREGS, &sregs))
		TH_LOG("KVM_SET_SREGS: %s", strerror(errno));
	ASSERT_EQ(0, ioctl(v->fd, KVM_SET_REGS, &regs))
		TH_LOG("KVM_SET_REGS: %s", strerror(errno));
}

static void vcpu_destroy(struct vcpu *v)
{
	if (v->run && v->run != MAP_FAILED)
		munmap(v->run, v->run_size);
	if (v->fd > 0)
		close(v->fd);
	memset(v, 0, sizeof(*v));
}

static const char *exit_str(const struct kvm_run *run, char *buf, size_t len)
{
	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		snprintf(buf, len, "IO %s port %#x size %u",
			 run->io.direction == KVM_EXIT_IO_OUT ? "out" : "in",
			 run->io.port, run->io.size);
		break;
	case KVM_EXIT_MMIO:
		snprintf(buf, len, "MMIO %s gpa %#llx len %u",
			 run->mmio.is_write ? "write" : "read",
			 (unsigned long long)run->mmio.phys_addr, run->mmio.len);
		break;
	case KVM_EXIT_SHUTDOWN:
		snprintf(buf, len, "SHUTDOWN (triple fault)");
		break;
	case KVM_EXIT_INTERNAL_ERROR:
		snprintf(buf, len, "INTERNAL_ERROR suberror %u", run->internal.suberror);
		break;
	default:
		snprintf(buf, len, "exit_reason %u", run->exit_reason);
		break;
	}
	return buf;
}

/*
 * Runs the vCPU until its guest reports the command done. 0, or -errno of
 * a failed KVM_RUN, or -EPROTO for anything else the guest did; `why`
 * says what. No harness asserts: vCPU threads use it.
 */
static int vcpu_continue(struct vcpu *v, char *why, size_t len)
{
	struct kvm_run *run = v->run;
	__u32 bad[4];
	char ex[96];
	int i, e;

again:
	if (ioctl(v->fd, KVM_RUN, 0)) {
		e = errno;
		snprintf(why, len, "KVM_RUN: %s (exit_reason %u)", strerror(e), run->exit_reason);
		return -e;
	}
	if (run->exit_reason == KVM_EXIT_IO && run->io.direction == KVM_EXIT_IO_OUT &&
	    run->io.port == PORT_YIELD) {
		sched_yield();
		goto again;
	}
	if (run->exit_reason == KVM_EXIT_IO && run->io.direction == KVM_EXIT_IO_OUT &&
	    run->io.port == PORT_DONE)
		return 0;
	if (run->exit_reason == KVM_EXIT_IO && run->io.port == PORT_BAD) {
		for (i = 0; i < 4; i++) {
			memcpy(&bad[i], (char *)run + run->io.data_offset, 4);
			if (i < 3 && (ioctl(v->fd, KVM_RUN, 0) || run->exit_reason != KVM_EXIT_IO))
				break;
		}
		snprintf(why, len, "guest exception: vector %u error %#x cr2 %#x rip %#x",
			 bad[0], bad[1], bad[2], bad[3]);
		return -EPROTO;
	}
	snprintf(why, len, "unexpected exit: %s", exit_str(run, ex, sizeof(ex)));
	return -EPROTO;
}

static int vcpu_cmd(struct vcpu *v, __u64 op, __u64 a, __u64 b, __u64 c, __u64 d, __u64 e,
		    char *why, size_t len)
{
	cmd_put(v, C_A, a);
	cmd_put(v, C_B, b);
	cmd_put(v, C_C, c);
	cmd_put(v, C_D, d);
	cmd_put(v, C_E, e);
	cmd_put(v, C_R0, 0);
	cmd_put(v, C_R1, 0);
	cmd_put(v, C_STARTED, 0);
	cmd_put(v, C_OP, op);
	return vcpu_continue(v, why, len);
}

/* A command from the test's own thread: it must complete. Returns r0. */
static __u64 cmd(struct __test_metadata *_metadata, struct vcpu *v, __u64 op, __u64 a,
		 __u64 b, __u64 c, __u64 d, __u64 e)
{
	char why[192] = "";

	ASSERT_EQ(0, vcpu_cmd(v, op, a, b, c, d, e, why, sizeof(why)))
		TH_LOG("vCPU %d, op %llu at %#llx: %s", v->id, (unsigned long long)op,
		       (unsigned long long)a, why);
	return cmd_get(v, C_R0);
}

#define READ(v, la)		cmd(_metadata, v, OP_READ, la, 0, 0, 0, 0)
#define WRITE(v, la, val)	cmd(_metadata, v, OP_WRITE, la, val, 0, 0, 0)
#define READ_N(v, la, n, stride, val, inc) \
	cmd(_metadata, v, OP_READ_N, la, n, stride, val, inc)
#define WRITE_N(v, la, n, stride, val, inc) \
	cmd(_metadata, v, OP_WRITE_N, la, n, stride, val, inc)

/*
 * A command on a thread of its own. With `restored` set, the host opens a
 * window in which the memory behind a slot is gone (munmap, then mmap):
 * a KVM_RUN that faults there fails with EFAULT, and the VMM's answer is
 * to run again once the memory is back, which is what the thread does;
 * an EFAULT from a KVM_RUN entered after the memory was back fails.
 */
struct runner {
	struct vcpu *v;
	__u64 op, a, b, c, d, e;
	volatile int *restored;
	unsigned int efaults;
	int ret;
	volatile int done;
	char why[192];
};

static void *runner_thread(void *arg)
{
	struct runner *r = arg;
	__u64 end;

	r->ret = vcpu_cmd(r->v, r->op, r->a, r->b, r->c, r->d, r->e, r->why, sizeof(r->why));
	if (r->ret == -EFAULT && r->restored) {
		end = now_ns() + 10000000000ULL;
		while (!__atomic_load_n(r->restored, __ATOMIC_ACQUIRE) && now_ns() < end)
			usleep(100);
		r->efaults++;
		if (__atomic_load_n(r->restored, __ATOMIC_ACQUIRE))
			r->ret = vcpu_continue(r->v, r->why, sizeof(r->why));
	}
	__atomic_store_n(&r->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

/* Waits (guest time, in the lab) until *p != 0 or `ms` passed. */
static bool wait_nonzero(volatile __u64 *p, unsigned int ms)
{
	__u64 end = now_ns() + ms * 1000000ULL;

	while (!__atomic_load_n(p, __ATOMIC_ACQUIRE)) {
		if (now_ns() > end)
			return false;
		usleep(200);
	}
	return true;
}

static bool wait_done(struct runner *r, unsigned int ms)
{
	__u64 end = now_ns() + ms * 1000000ULL;

	while (!__atomic_load_n(&r->done, __ATOMIC_ACQUIRE)) {
		if (now_ns() > end)
			return false;
		usleep(200);
	}
	return true;
}

/*
 * One VM statistic by name (KVM_GET_STATS_FD: header, descriptors of
 * sizeof(kvm_stats_desc) + name_size bytes, data), or -1.
 */
static long long vm_stat(struct vm *vm, const char *name)
{
	struct kvm_stats_header h;
	long long ret = -1;
	char *descs = NULL;
	size_t dsize;
	__u64 val;
	int fd = ioctl(vm->fd, KVM_GET_STATS_FD, 0);

	if (fd < 0)
		return -1;
	if (pread(fd, &h, sizeof(h), 0) != sizeof(h))
		goto out;
	dsize = sizeof(struct kvm_stats_desc) + h.name_size;
	descs = malloc(dsize * h.num_desc);
	if (!descs || pread(fd, descs, dsize * h.num_desc, h.desc_offset) !=
		      (ssize_t)(dsize * h.num_desc))
		goto out;
	for (__u32 i = 0; i < h.num_desc; i++) {
		struct kvm_stats_desc *d = (void *)(descs + i * dsize);

		if (strncmp(d->name, name, h.name_size))
			continue;
		if (pread(fd, &val, sizeof(val), h.data_offset + d->offset) == sizeof(val))
			ret = val;
		break;
	}
out:
	free(descs);
	close(fd);
	return ret;
}

/* Anonymous memory for a slot, and the slot. */
static int slot_set(struct vm *vm, const struct slotmem *s, __u64 gpa, __u64 size)
{
	struct kvm_userspace_memory_region r = {
		.slot = s->id, .flags = s->flags, .guest_phys_addr = gpa,
		.memory_size = size, .userspace_addr = (__u64)(unsigned long)s->hva,
	};

	return ioctl(vm->fd, KVM_SET_USER_MEMORY_REGION, &r) ? -errno : 0;
}

static void slot_create(struct __test_metadata *_metadata, struct vm *vm, struct slotmem *s,
			__u32 id, __u64 gpa, size_t pages, __u32 flags)
{
	s->id = id;
	s->flags = flags;
	s->gpa = gpa;
	s->size = pages * 0x1000;
	s->hva = mmap(NULL, s->size, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	ASSERT_NE(MAP_FAILED, s->hva);
	ASSERT_EQ(0, slot_set(vm, s, gpa, s->size))
		TH_LOG("slot %u at %#llx, %zu pages: %s", id, (unsigned long long)gpa, pages,
		       strerror(errno));
}

static void put32(void *p, __u32 v)
{
	*(volatile __u32 *)p = v;
}

static __u32 get32(const void *p)
{
	return *(const volatile __u32 *)p;
}

/* Identity-maps a slot's pages into the guest. */
static void map_slot(struct __test_metadata *_metadata, struct vm *vm, const struct slotmem *s)
{
	for (__u64 off = 0; off < s->size; off += 0x1000)
		map_page(_metadata, vm, s->gpa + off, s->gpa + off);
}

FIXTURE(inval) {
	struct vm vm;
	struct vcpu vcpu[2];
};

FIXTURE_SETUP(inval)
{
	vm_create(_metadata, &self->vm);
	vcpu_create(_metadata, &self->vm, 0, &self->vcpu[0]);
}

FIXTURE_TEARDOWN(inval)
{
	vcpu_destroy(&self->vcpu[1]);
	vcpu_destroy(&self->vcpu[0]);
	vm_destroy(&self->vm);
}

/* ---- a. The mmu_notifier: changes of the VMM's memory -------------------- */

enum change { CH_MUNMAP, CH_DONTNEED, CH_MREMAP };

static const char *const change_name[] = { "munmap+mmap", "MADV_DONTNEED", "mremap" };

#define TAGV		0x7a900000u	/* + page: before the change */
#define CANARY		0xca9a0000u	/* + page: written after it */

/*
 * Replaces the memory behind `s` (same host address afterwards), then
 * writes CANARY + i into page i through the new mapping.
 */
static void change_backing(struct __test_metadata *_metadata, struct slotmem *s, enum change c)
{
	void *p;

	switch (c) {
	case CH_MUNMAP:
		ASSERT_EQ(0, munmap(s->hva, s->size));
		p = mmap(s->hva, s->size, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
		ASSERT_EQ((void *)s->hva, p) TH_LOG("mmap MAP_FIXED: %s", strerror(errno));
		break;
	case CH_DONTNEED:
		ASSERT_EQ(0, madvise(s->hva, s->size, MADV_DONTNEED));
		break;
	case CH_MREMAP:
		p = mmap(NULL, s->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			 -1, 0);
		ASSERT_NE(MAP_FAILED, p);
		memset(p, 0x5a, s->size);
		p = mremap(p, s->size, s->size, MREMAP_MAYMOVE | MREMAP_FIXED, s->hva);
		ASSERT_EQ((void *)s->hva, p) TH_LOG("mremap: %s", strerror(errno));
		break;
	}
	for (size_t i = 0; i < s->size / 0x1000; i++)
		put32(s->hva + i * 0x1000, CANARY + i);
}

/*
 * The vCPU reads every page of a slot (shadow mappings established),
 * exits; the host replaces the memory and writes canaries; the guest must
 * read the canaries, and a guest write must land in the new memory.
 */
static void notifier_stopped(struct __test_metadata *_metadata, FIXTURE_DATA(inval) *self,
			     enum change c)
{
	struct vcpu *v = &self->vcpu[0];
	struct slotmem s;
	__u64 la;
	__u32 got;

	slot_create(_metadata, &self->vm, &s, 1, SLOT_GPA(0), NOTIFY_PAGES, 0);
	map_slot(_metadata, &self->vm, &s);
	la = s.gpa;
	for (size_t i = 0; i < NOTIFY_PAGES; i++)
		put32(s.hva + i * 0x1000, TAGV + i);
	ASSERT_EQ((__u64)NOTIFY_PAGES, READ_N(v, la, NOTIFY_PAGES, 0x1000, TAGV, 1))
		TH_LOG("the guest's first reads");
	ASSERT_EQ(TAGV, (__u32)READ(v, la));

	change_backing(_metadata, &s, c);
	got = READ(v, la);
	EXPECT_EQ(CANARY, got) TH_LOG("after %s the guest reads %#x at page 0%s",
				      change_name[c], got,
				      got == TAGV ? ": the old page, a stale mapping" : "");
	EXPECT_EQ((__u64)NOTIFY_PAGES, READ_N(v, la, NOTIFY_PAGES, 0x1000, CANARY, 1))
		TH_LOG("pages showing their canary after %s", change_name[c]);
	/* A guest write reaches the new memory. */
	WRITE(v, la + 0x1000 + 16, 0x600d0001);
	EXPECT_EQ(0x600d0001u, get32(s.hva + 0x1000 + 16))
		TH_LOG("a guest write after %s did not reach the new memory", change_name[c]);
	munmap(s.hva, s.size);
}

/*
 * The same while the vCPU runs on another thread: it reads a page in a
 * loop until it shows the canary. The host gives up after WAIT_MS (the
 * guest also stops after WAIT_ROUNDS reads), so a stale mapping fails
 * the test instead of hanging it.
 */
static void notifier_running(struct __test_metadata *_metadata, FIXTURE_DATA(inval) *self,
			     enum change c)
{
	struct vcpu *v = &self->vcpu[0];
	struct runner r = { .v = v, .op = OP_WAIT };
	volatile int restored = 0;
	struct slotmem s;
	pthread_t tid;
	bool started, done;

	slot_create(_metadata, &self->vm, &s, 1, SLOT_GPA(0), NOTIFY_PAGES, 0);
	map_slot(_metadata, &self->vm, &s);
	for (size_t i = 0; i < NOTIFY_PAGES; i++)
		put32(s.hva + i * 0x1000, TAGV + i);
	flag_put(&self->vm, F_GIVEUP, 0);
	r.a = s.gpa + 3 * 0x1000;
	r.b = CANARY + 3;
	r.c = F_GIVEUP;
	r.d = WAIT_ROUNDS;
	if (c == CH_MUNMAP)
		r.restored = &restored;
	ASSERT_EQ(0, pthread_create(&tid, NULL, runner_thread, &r));
	started = wait_nonzero(&cmd_block(v)[C_STARTED / 8], WAIT_MS);
	if (started)
		change_backing(_metadata, &s, c);
	__atomic_store_n(&restored, 1, __ATOMIC_RELEASE);
	done = wait_done(&r, WAIT_MS);
	flag_put(&self->vm, F_GIVEUP, 1);
	pthread_join(tid, NULL);

	ASSERT_TRUE(started) TH_LOG("the guest never started reading: %s", r.why);
	ASSERT_EQ(0, r.ret) TH_LOG("%s", r.why);
	EXPECT_TRUE(done) TH_LOG("the guest did not see the canary within %d ms", WAIT_MS);
	EXPECT_NE(0ULL, cmd_get(v, C_R0))
		TH_LOG("after %s the running guest kept reading %#llx, not the canary %#x%s",
		       change_name[c], (unsigned long long)cmd_get(v, C_R1), CANARY + 3,
		       cmd_get(v, C_R1) == TAGV + 3 ? " (the old page: a stale mapping)" : "");
	EXPECT_EQ((__u64)(CANARY + 3), cmd_get(v, C_R1));
	if (r.efaults)
		ksft_print_msg("%s: the vCPU faulted in the unmapped window (KVM_RUN EFAULT),"
			       " ran again after the mmap\n", change_name[c]);
	munmap(s.hva, s.size);
}

TEST_F_TIMEOUT(inval, notifier_munmap, 120) { notifier_stopped(_metadata, self, CH_MUNMAP); }
TEST_F_TIMEOUT(inval, notifier_dontneed, 120) { notifier_stopped(_metadata, self, CH_DONTNEED); }
TEST_F_TIMEOUT(inval, notifier_mremap, 120) { notifier_stopped(_metadata, self, CH_MREMAP); }
TEST_F_TIMEOUT(inval, notifier_munmap_running, 120)
{
	notifier_running(_metadata, self, CH_MUNMAP);
}
TEST_F_TIMEOUT(inval, notifier_dontneed_running, 120)
{
	notifier_running(_metadata, self, CH_DONTNEED);
}
TEST_F_TIMEOUT(inval, notifier_mremap_running, 120)
{
	notifier_running(_metadata, self, CH_MREMAP);
}

/*
 * mprotect(PROT_READ) of memory the guest wrote (a writable shadow
 * mapping exists): guest reads still work, a guest write must fail
 * KVM_RUN with EFAULT as kvm_intel's does (KVM 7.3 returns -EFAULT from
 * its fault handler, exit_reason KVM_EXIT_UNKNOWN, no
 * KVM_EXIT_MEMORY_FAULT; seen in the lab) and change nothing. Back to PROT_READ|PROT_WRITE: the retried write lands, and a
 * canary the host writes is what the guest reads.
 */
TEST_F_TIMEOUT(inval, notifier_mprotect, 120)
{
	struct vcpu *v = &self->vcpu[0];
	struct slotmem s;
	char why[192] = "";
	int ret;

	slot_create(_metadata, &self->vm, &s, 1, SLOT_GPA(0), NOTIFY_PAGES, 0);
	map_slot(_metadata, &self->vm, &s);
	memset(s.hva, 0, s.size);
	WRITE(v, s.gpa, 0x11110000);
	ASSERT_EQ(0x11110000u, get32(s.hva));
	ASSERT_EQ(0x11110000u, (__u32)READ(v, s.gpa + 0));

	ASSERT_EQ(0, mprotect(s.hva, s.size, PROT_READ));
	EXPECT_EQ(0x11110000u, (__u32)READ(v, s.gpa)) TH_LOG("a read of the PROT_READ memory");
	ret = vcpu_cmd(v, OP_WRITE, s.gpa + 4, 0x22220000, 0, 0, 0, why, sizeof(why));
	EXPECT_EQ(-EFAULT, ret)
		TH_LOG("a guest write to PROT_READ memory: %s", ret ? why : "it succeeded");
	EXPECT_EQ((__u32)KVM_EXIT_UNKNOWN, v->run->exit_reason)
		TH_LOG("kvm_intel leaves KVM_EXIT_UNKNOWN with that EFAULT");
	EXPECT_EQ(0u, get32(s.hva + 4)) TH_LOG("the write reached PROT_READ memory");

	ASSERT_EQ(0, mprotect(s.hva, s.size, PROT_READ | PROT_WRITE));
	put32(s.hva + 8, CANARY);
	if (ret == -EFAULT) {
		/* The guest retries its write. */
		ASSERT_EQ(0, vcpu_continue(v, why, sizeof(why))) TH_LOG("%s", why);
	}
	EXPECT_EQ(0x22220000u, get32(s.hva + 4));
	EXPECT_EQ(CANARY, (__u32)READ(v, s.gpa + 8));
	WRITE(v, s.gpa + 12, 0x33330000);
	EXPECT_EQ(0x33330000u, get32(s.hva + 12));
	munmap(s.hva, s.size);
}

/* ---- b. Slot churn beside two faulting vCPUs --------------------------------- */

/*
 * vCPUs 0 and 1 pass over their own slots (checking tags, writing the
 * pass number) while this thread creates, moves and deletes a third slot
 * CHURN_ITERS times, paced by the vCPUs' progress (below); each delete
 * and move zaps every shadow page, so the vCPUs keep faulting. The vCPUs
 * exit after each pass (a port write their threads answer with
 * sched_yield()), so a vCPU thread sharing a CPU with the churning thread
 * lets it run now and then.
 */
TEST_F_TIMEOUT(inval, slot_churn, 600)
{
	struct slotmem s[3];
	struct runner r[2];
	pthread_t tid[2];
	unsigned int i, k, iters = 0, stuck = 0;
	__u64 t0, during[2], seen[2] = { 0, 0 };
	int err = 0;

	vcpu_create(_metadata, &self->vm, 1, &self->vcpu[1]);
	for (k = 0; k < 2; k++) {
		slot_create(_metadata, &self->vm, &s[k], 1 + k, SLOT_GPA(k), CHURN_PAGES, 0);
		map_slot(_metadata, &self->vm, &s[k]);
		for (i = 0; i < CHURN_PAGES; i++)
			put32(s[k].hva + i * 0x1000, TAGV + k * 0x1000 + i);
	}
	/* The third slot, created and deleted below; not mapped by the guest. */
	s[2] = (struct slotmem){ .id = 3, .size = 16 * 0x1000 };
	s[2].hva = mmap(NULL, s[2].size, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, s[2].hva);

	flag_put(&self->vm, F_STOP, 0);
	for (k = 0; k < 2; k++) {
		r[k] = (struct runner){
			.v = &self->vcpu[k], .op = OP_CHURN, .a = s[k].gpa, .b = CHURN_PAGES,
			.c = TAGV + k * 0x1000, .d = F_STOP, .e = 1ULL << 40,
		};
		ASSERT_EQ(0, pthread_create(&tid[k], NULL, runner_thread, &r[k]));
	}
	t0 = now_ns();
	/*
	 * Each round waits until both vCPUs got CHURN_STEP pages further
	 * since the last one (at most CHURN_WAIT_MS): every slot update lands
	 * while they are mid-pass and faulting, whatever the speed of the
	 * device's slot updates (~100 ms on kvm_intel in the lab, ~1 ms on
	 * rkvm, where back-to-back updates kept both vCPUs from finishing a
	 * single pass in 3000 rounds: each update zaps every shadow page).
	 */
	for (i = 0; i < CHURN_ITERS && !err && !r[0].done && !r[1].done; i++) {
		__u64 end = now_ns() + CHURN_WAIT_MS * 1000000ULL;

		for (k = 0; k < 2; k++) {
			while (cmd_get(&self->vcpu[k], C_ITERS) < seen[k] + CHURN_STEP &&
			       now_ns() < end)
				usleep(100);
			if (cmd_get(&self->vcpu[k], C_ITERS) < seen[k] + CHURN_STEP)
				stuck++;
			seen[k] = cmd_get(&self->vcpu[k], C_ITERS);
		}
		err = slot_set(&self->vm, &s[2], SLOT_GPA(2), s[2].size);
		if (!err)
			err = slot_set(&self->vm, &s[2], SLOT_GPA(3), s[2].size);
		if (!err)
			err = slot_set(&self->vm, &s[2], SLOT_GPA(3), 0);
		if (!err)
			iters++;
	}
	t0 = now_ns() - t0;
	during[0] = cmd_get(&self->vcpu[0], C_R1);
	during[1] = cmd_get(&self->vcpu[1], C_R1);
	flag_put(&self->vm, F_STOP, 1);
	for (k = 0; k < 2; k++)
		pthread_join(tid[k], NULL);

	EXPECT_EQ(0, err) TH_LOG("slot 3 create/move/delete, iteration %u: %s", i,
				 strerror(-err));
	EXPECT_EQ((unsigned int)CHURN_ITERS, iters);
	EXPECT_EQ(0u, stuck) TH_LOG("rounds in which a vCPU made no progress for %d ms",
				     CHURN_WAIT_MS);
	for (k = 0; k < 2; k++) {
		__u64 passes = cmd_get(&self->vcpu[k], C_R1);

		ASSERT_EQ(0, r[k].ret) TH_LOG("vCPU %u: %s", k, r[k].why);
		EXPECT_EQ(0ULL, cmd_get(&self->vcpu[k], C_R0)) TH_LOG("vCPU %u: tags misread", k);
		EXPECT_LE(1ULL, during[k])
			TH_LOG("vCPU %u: passes while the slots changed (%u rounds)", k, iters);
		for (i = 0; i < CHURN_PAGES; i++)
			EXPECT_EQ((__u32)passes, get32(s[k].hva + i * 0x1000 + 8))
				TH_LOG("vCPU %u page %u", k, i);
		ksft_print_msg("slot_churn: vCPU %u made %llu passes over %u pages during %u slot"
			       " create/move/delete rounds (%llu ms)\n", k,
			       (unsigned long long)during[k], CHURN_PAGES, iters,
			       (unsigned long long)(t0 / 1000000));
		munmap(s[k].hva, s[k].size);
	}
	munmap(s[2].hva, s[2].size);
}

/* ---- c. Dirty logging ------------------------------------------------------- */

static void get_dirty(struct __test_metadata *_metadata, struct vm *vm, __u32 slot,
		      __u64 *bitmap)
{
	struct kvm_dirty_log log = { .slot = slot, .dirty_bitmap = bitmap };

	memset(bitmap, 0, DIRTY_PAGES / 8);
	ASSERT_EQ(0, ioctl(vm->fd, KVM_GET_DIRTY_LOG, &log))
		TH_LOG("KVM_GET_DIRTY_LOG: %s", strerror(errno));
}

static __u64 page_set(const unsigned int *pages, unsigned int n)
{
	__u64 m = 0;

	while (n--)
		m |= 1ULL << pages[n];
	return m;
}

/*
 * Paged: the guest page tables are in slot 0, so the A/D bits KVM sets in
 * them dirty slot 0, not the logged one; the guest PTEs start clean (D=0),
 * so a read maps a page read-only on both devices, and the host tags
 * every page beforehand.
 * Unpaged: KVM's direct map makes a read fault writable (and logs the
 * page) when the host page is writable already, so the pages the guest
 * only reads are ones nobody wrote (they read as zero and stay clean).
 */
static void dirty_log_case(struct __test_metadata *_metadata, FIXTURE_DATA(inval) *self,
			   bool paged)
{
	static const unsigned int w1[] = { 0, 1, 5, 17, 33, 63 };
	static const unsigned int r1[] = { 2, 3, 40, 62 };
	/* Round 2 rewrites 1 and 5, and only reads 17 (written in round 1). */
	static const unsigned int w2[] = { 1, 5, 20, 50 };
	static const unsigned int r2[] = { 3, 17, 41 };
	struct vcpu *v = &self->vcpu[0];
	__u64 bitmap[DIRTY_PAGES / 64];
	struct slotmem s = { .id = 1, .flags = KVM_MEM_LOG_DIRTY_PAGES, .gpa = SLOT_GPA(0),
			     .size = DIRTY_PAGES * 0x1000 };
	unsigned int i;
	int ret;

	s.hva = mmap(NULL, s.size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, s.hva);
	for (i = 0; paged && i < DIRTY_PAGES; i++)
		put32(s.hva + i * 0x1000, TAGV + i);
	ret = slot_set(&self->vm, &s, s.gpa, s.size);
	if (ret == -EINVAL) {
		munmap(s.hva, s.size);
		SKIP(return, "%s refuses KVM_MEM_LOG_DIRTY_PAGES (EINVAL): no dirty logging",
		     rkvm_dev_path());
	}
	ASSERT_EQ(0, ret) TH_LOG("a dirty-logged slot: %s", strerror(-ret));
	if (paged)
		map_slot(_metadata, &self->vm, &s);
	else
		vcpu_unpaged(_metadata, v);

	get_dirty(_metadata, &self->vm, 1, bitmap);
	EXPECT_EQ(0ULL, bitmap[0]) TH_LOG("dirty before the guest ran");

	for (unsigned int round = 1; round <= 2; round++) {
		const unsigned int *w = round == 1 ? w1 : w2, *rd = round == 1 ? r1 : r2;
		unsigned int nw = round == 1 ? 6 : 4, nr = round == 1 ? 4 : 3;
		__u64 want = page_set(w, nw);

		for (i = 0; i < nw; i++)
			WRITE(v, s.gpa + w[i] * 0x1000 + 8, round * 0x1000 + w[i]);
		for (i = 0; i < nr; i++) {
			__u32 tag = paged ? TAGV + rd[i] : 0;

			EXPECT_EQ(tag, (__u32)READ(v, s.gpa + rd[i] * 0x1000))
				TH_LOG("round %u read of page %u", round, rd[i]);
		}
		for (i = 0; i < nw; i++)
			EXPECT_EQ(round * 0x1000 + w[i], get32(s.hva + w[i] * 0x1000 + 8));
		get_dirty(_metadata, &self->vm, 1, bitmap);
		EXPECT_EQ(want, bitmap[0])
			TH_LOG("round %u: dirty %#llx, written %#llx (read-only pages %#llx)",
			       round, (unsigned long long)bitmap[0], (unsigned long long)want,
			       (unsigned long long)page_set(rd, nr));
		get_dirty(_metadata, &self->vm, 1, bitmap);
		EXPECT_EQ(0ULL, bitmap[0]) TH_LOG("round %u: the second KVM_GET_DIRTY_LOG", round);
	}
	munmap(s.hva, s.size);
}

TEST_F_TIMEOUT(inval, dirty_log, 120) { dirty_log_case(_metadata, self, true); }
TEST_F_TIMEOUT(inval, dirty_log_unpaged, 120) { dirty_log_case(_metadata, self, false); }

/* ---- d. Teardown of a VM with many shadow PTEs ------------------------------- */

/*
 * TD_TABLES guest page tables, every entry mapping one of TD_FRAMES
 * frames (so TD_TABLES * 512 leaves, TD_TABLES * 512 / TD_FRAMES per gfn,
 * below KVM's rmap recycling threshold of 1000), every page read by the
 * guest; then every fd closed, timed.
 */
TEST_F_TIMEOUT(inval, teardown_big, 600)
{
	struct vcpu *v = &self->vcpu[0];
	unsigned int n = TD_TABLES * 512, j;
	struct slotmem s;
	long long leaves;
	__u64 t0, t1, t2;

	ASSERT_EQ(0, ioctl(self->vm.fd, KVM_SET_NR_MMU_PAGES, TD_TABLES * 2 + 256))
		TH_LOG("KVM_SET_NR_MMU_PAGES: %s", strerror(errno));
	slot_create(_metadata, &self->vm, &s, 1, SLOT_GPA(0), TD_FRAMES, 0);
	for (j = 0; j < TD_FRAMES; j++)
		put32(s.hva + j * 0x1000, TAGV);
	for (j = 0; j < n; j++)
		map_page(_metadata, &self->vm, ALIAS_LA + j * 0x1000ULL,
			 s.gpa + (j % TD_FRAMES) * 0x1000ULL);
	t0 = now_ns();
	ASSERT_EQ((__u64)n, READ_N(v, ALIAS_LA, n, 0x1000, TAGV, 0));
	t1 = now_ns();
	leaves = vm_stat(&self->vm, "pages_4k");
	vcpu_destroy(v);
	close(self->vm.fd);
	close(self->vm.dev);
	self->vm.fd = self->vm.dev = -1;
	t2 = now_ns();
	ksft_print_msg("inval_bench teardown sptes=%u: close %llu us, build %llu us,"
		       " pages_4k %lld leaves\n", n, (unsigned long long)(t2 - t1) / 1000,
		       (unsigned long long)(t1 - t0) / 1000, leaves);
	munmap(s.hva, s.size);
}

/* ---- e. Zap-all stall ---------------------------------------------------------- */

/* Asks the spinning vCPU for a sample: its longest RDTSC gap since the last. */
static bool spin_sample(struct vcpu *v, __u64 seq, __u64 *max, __u64 *iters)
{
	__u64 end = now_ns() + 20000000000ULL;

	cmd_put(v, C_SEQ, seq);
	while (cmd_get(v, C_ACK) != seq) {
		if (now_ns() > end)
			return false;
		usleep(100);
	}
	if (max)
		*max = cmd_get(v, C_MAX);
	if (iters)
		*iters = cmd_get(v, C_ITERS);
	return true;
}

/*
 * For each N: vCPU 0 builds N shadow page tables (one guest table per
 * 2 MiB of ZAP_LA, each with one page touched); vCPU 1 spins on RDTSC on
 * another thread; the host deletes an unrelated slot (KVM and rkvm zap
 * every shadow page by generation) and times the ioctl; vCPU 1 reports its
 * longest gap around it. Then the same N rebuilt and the slot re-added.
 */
/* KVM_CAP_DISABLE_QUIRKS2 of KVM_X86_QUIRK_SLOT_ZAP_ALL: a slot deletion
 * then zaps only the slot's shadow pages (on KVM and on rkvm). */
static void disable_slot_zap_all(struct __test_metadata *_metadata, struct vm *vm)
{
	struct kvm_enable_cap c = {
		.cap = KVM_CAP_DISABLE_QUIRKS2, .args = { KVM_X86_QUIRK_SLOT_ZAP_ALL },
	};

	ASSERT_NE(0, ioctl(vm->dev, KVM_CHECK_EXTENSION, KVM_CAP_DISABLE_QUIRKS2) &
		     KVM_X86_QUIRK_SLOT_ZAP_ALL);
	ASSERT_EQ(0, ioctl(vm->fd, KVM_ENABLE_CAP, &c)) TH_LOG("KVM_ENABLE_CAP: %s",
							     strerror(errno));
}

static void zap_stall_case(struct __test_metadata *_metadata, FIXTURE_DATA(inval) *self,
			   bool per_slot)
{
	const char *cap = getenv("INVAL_ZAP_MAX");	/* a quicker run: N <= this */

	for (unsigned int z = 0; z < sizeof(zap_ns) / sizeof(zap_ns[0]); z++) {
		unsigned int n = zap_ns[z], i;

		if (cap && n > strtoul(cap, NULL, 0))
			break;
		struct runner r;
		struct slotmem dummy;
		pthread_t tid;
		__u64 idle = 0, st_del = 0, st_add = 0, t_del, t_add, t_build, it = 0;
		long long zapped;
		bool ok;
		int e1, e2;

		if (z) {
			vcpu_destroy(&self->vcpu[0]);
			vm_destroy(&self->vm);
			vm_create(_metadata, &self->vm);
			vcpu_create(_metadata, &self->vm, 0, &self->vcpu[0]);
		}
		if (per_slot)
			disable_slot_zap_all(_metadata, &self->vm);
		vcpu_create(_metadata, &self->vm, 1, &self->vcpu[1]);
		ASSERT_EQ(0, ioctl(self->vm.fd, KVM_SET_NR_MMU_PAGES, n + n / 256 + 256))
			TH_LOG("KVM_SET_NR_MMU_PAGES: %s", strerror(errno));
		slot_create(_metadata, &self->vm, &dummy, 5, SLOT_GPA(4), 16, 0);
		put32(self->vm.mem + DATA_GPA, TAGV);
		for (i = 0; i < n; i++)
			map_page(_metadata, &self->vm, ZAP_LA + i * 0x200000ULL, DATA_GPA);

		t_build = now_ns();
		ASSERT_EQ((__u64)n, READ_N(&self->vcpu[0], ZAP_LA, n, 0x200000, TAGV, 0));
		t_build = now_ns() - t_build;

		r = (struct runner){ .v = &self->vcpu[1], .op = OP_SPIN };
		cmd_put(&self->vcpu[1], C_SEQ, 1);
		cmd_put(&self->vcpu[1], C_ACK, 0);
		ASSERT_EQ(0, pthread_create(&tid, NULL, runner_thread, &r));
		ok = spin_sample(&self->vcpu[1], 1, NULL, NULL);
		/* A quiet 20 ms for the baseline: exits for host interrupts. */
		ok = ok && spin_sample(&self->vcpu[1], 2, NULL, NULL);
		usleep(20000);
		ok = ok && spin_sample(&self->vcpu[1], 3, &idle, &it);

		zapped = vm_stat(&self->vm, "mmu_shadow_zapped");
		t_del = now_ns();
		e1 = slot_set(&self->vm, &dummy, dummy.gpa, 0);
		t_del = now_ns() - t_del;
		zapped = vm_stat(&self->vm, "mmu_shadow_zapped") - zapped;
		ok = ok && spin_sample(&self->vcpu[1], 4, &st_del, NULL);

		/* Rebuild (vCPU 1 keeps spinning), then re-add the slot. */
		EXPECT_EQ((__u64)n, READ_N(&self->vcpu[0], ZAP_LA, n, 0x200000, TAGV, 0));
		ok = ok && spin_sample(&self->vcpu[1], 5, NULL, NULL);
		t_add = now_ns();
		e2 = slot_set(&self->vm, &dummy, dummy.gpa, dummy.size);
		t_add = now_ns() - t_add;
		ok = ok && spin_sample(&self->vcpu[1], 6, &st_add, NULL);

		cmd_put(&self->vcpu[1], C_SEQ, ~0ULL);
		if (!wait_done(&r, 20000))
			ok = false;
		else
			pthread_join(tid, NULL);
		ASSERT_TRUE(ok) TH_LOG("N=%u: the spinning vCPU stopped answering: %s", n, r.why);
		ASSERT_EQ(0, r.ret) TH_LOG("N=%u: spinning vCPU: %s", n, r.why);
		ASSERT_EQ(0, e1) TH_LOG("N=%u: delete: %s", n, strerror(-e1));
		ASSERT_EQ(0, e2) TH_LOG("N=%u: re-add: %s", n, strerror(-e2));
		/* The deleted slot holds no guest table: a per-slot zap keeps all. */
		if (per_slot) {
			EXPECT_EQ(0, zapped) TH_LOG("N=%u: %lld pages zapped", n, zapped);
		} else {
			EXPECT_LE((long long)n, zapped) TH_LOG("N=%u: zap-all zapped %lld", n, zapped);
		}
		ksft_print_msg("inval_bench %s N=%u: delete %llu us, delete_stall %llu cycles,"
			       " readd %llu us, readd_stall %llu cycles, idle_stall %llu cycles,"
			       " idle_spins %llu per20ms, build %llu us, zapped %lld pages\n",
			       per_slot ? "zap_stall_slot" : "zap_stall", n,
			       (unsigned long long)t_del / 1000, (unsigned long long)st_del,
			       (unsigned long long)t_add / 1000, (unsigned long long)st_add,
			       (unsigned long long)idle, (unsigned long long)it,
			       (unsigned long long)t_build / 1000, zapped);
		vcpu_destroy(&self->vcpu[1]);
		munmap(dummy.hva, dummy.size);
	}
}

TEST_F_TIMEOUT(inval, zap_stall, 900) { zap_stall_case(_metadata, self, false); }

/* The same with KVM_X86_QUIRK_SLOT_ZAP_ALL disabled: only the slot's pages go. */
TEST_F_TIMEOUT(inval, zap_stall_slot, 900) { zap_stall_case(_metadata, self, true); }

/*
 * A guest page table in a slot of its own, with the per-slot zap: after
 * the slot is deleted and created again at the same address with another
 * table, the guest must walk the new table (a shadow page left from the
 * old one would still map the old frame), and only the slot's pages went.
 */
TEST_F_TIMEOUT(inval, slot_zap_takes_the_slots_tables, 120)
{
	struct vcpu *v = &self->vcpu[0];
	const __u64 la = ZAP_LA + 0x40000000ULL;
	__u64 table = POOL_GPA, *pde;
	struct slotmem s, s2;
	long long zapped;
	int level;

	disable_slot_zap_all(_metadata, &self->vm);
	put32(self->vm.mem + DATA_GPA, TAGV);
	put32(self->vm.mem + DATA_GPA + 0x1000, TAGV + 0x100);
	/* Other tables the guest uses, which must survive. */
	for (unsigned int i = 0; i < 8; i++)
		map_page(_metadata, &self->vm, ZAP_LA + i * 0x200000ULL, DATA_GPA);
	ASSERT_EQ(8ULL, READ_N(v, ZAP_LA, 8, 0x200000, TAGV, 0));
	/* la's page table is the first page of slot 1. */
	map_page(_metadata, &self->vm, la, DATA_GPA);
	for (level = 4; level > 2; level--)
		table = *gq(&self->vm, table + ((la >> (12 + 9 * (level - 1))) & 511) * 8) & P_ADDR;
	pde = (__u64 *)gq(&self->vm, table + ((la >> 21) & 511) * 8);
	slot_create(_metadata, &self->vm, &s, 1, SLOT_GPA(0), 1, 0);
	((__u64 *)s.hva)[(la >> 12) & 511] = DATA_GPA | P_P | P_RW;
	*pde = s.gpa | P_P | P_RW | P_US;
	ASSERT_EQ(1ULL, READ_N(v, la, 1, 0x1000, TAGV, 0));

	zapped = vm_stat(&self->vm, "mmu_shadow_zapped");
	ASSERT_EQ(0, slot_set(&self->vm, &s, s.gpa, 0));
	zapped = vm_stat(&self->vm, "mmu_shadow_zapped") - zapped;
	EXPECT_LE(1, zapped) TH_LOG("the slot's page table was not zapped");
	EXPECT_GT(8, zapped) TH_LOG("%lld pages zapped: more than the slot's", zapped);

	/* The same address, new memory: la now maps the second frame. */
	slot_create(_metadata, &self->vm, &s2, 1, SLOT_GPA(0), 1, 0);
	((__u64 *)s2.hva)[(la >> 12) & 511] = (DATA_GPA + 0x1000) | P_P | P_RW;
	EXPECT_EQ(1ULL, READ_N(v, la, 1, 0x1000, TAGV + 0x100, 0))
		TH_LOG("the guest still walks the deleted slot's table");
	EXPECT_EQ(8ULL, READ_N(v, ZAP_LA, 8, 0x200000, TAGV, 0));
	munmap(s.hva, s.size);
	munmap(s2.hva, s2.size);
}

/* ---- f. Memslot delete with live mappings ------------------------------------- */

/*
 * M pages of a slot written by the guest, then the slot deleted (timed).
 * Afterwards a guest read there must be MMIO: no mapping survives.
 */
TEST_F_TIMEOUT(inval, memslot_delete_live, 900)
{
	for (unsigned int z = 0; z < sizeof(live_ms) / sizeof(live_ms[0]); z++) {
		unsigned int m = live_ms[z];
		struct vcpu *v;
		struct slotmem s;
		struct kvm_run *run;
		char why[192] = "";
		__u64 t_del, t_build;
		int e;

		if (z) {
			vcpu_destroy(&self->vcpu[0]);
			vm_destroy(&self->vm);
			vm_create(_metadata, &self->vm);
			vcpu_create(_metadata, &self->vm, 0, &self->vcpu[0]);
		}
		v = &self->vcpu[0];
		run = v->run;
		ASSERT_EQ(0, ioctl(self->vm.fd, KVM_SET_NR_MMU_PAGES, m / 512 + 256));
		slot_create(_metadata, &self->vm, &s, 1, SLOT_GPA(0), m, 0);
		map_slot(_metadata, &self->vm, &s);
		t_build = now_ns();
		ASSERT_EQ((__u64)m, WRITE_N(v, s.gpa, m, 0x1000, TAGV, 1));
		t_build = now_ns() - t_build;
		ASSERT_EQ(TAGV + m - 1, get32(s.hva + (m - 1) * 0x1000ULL));

		t_del = now_ns();
		e = slot_set(&self->vm, &s, s.gpa, 0);
		t_del = now_ns() - t_del;
		ASSERT_EQ(0, e) TH_LOG("M=%u: delete: %s", m, strerror(-e));
		ksft_print_msg("inval_bench memslot_delete_live M=%u: delete %llu us, build %llu us\n",
			       m, (unsigned long long)t_del / 1000,
			       (unsigned long long)t_build / 1000);

		/* The guest reads the last page: an MMIO read now. */
		e = vcpu_cmd(v, OP_READ, s.gpa + (m - 1) * 0x1000ULL, 0, 0, 0, 0, why, sizeof(why));
		ASSERT_EQ(-EPROTO, e) TH_LOG("M=%u: read after delete: %s", m,
					     e ? why : "done without an MMIO exit");
		ASSERT_EQ((__u32)KVM_EXIT_MMIO, run->exit_reason) TH_LOG("M=%u: %s", m, why);
		EXPECT_EQ(s.gpa + (m - 1) * 0x1000ULL, run->mmio.phys_addr);
		EXPECT_EQ(0u, run->mmio.is_write);
		ASSERT_EQ(4u, run->mmio.len);
		put32(run->mmio.data, 0x3a3a3a3a);
		ASSERT_EQ(0, vcpu_continue(v, why, sizeof(why))) TH_LOG("%s", why);
		EXPECT_EQ(0x3a3a3a3aULL, cmd_get(v, C_R0));
		munmap(s.hva, s.size);
	}
}

/* ---- g. One gfn behind many sptes ----------------------------------------------- */

/*
 * K linear pages (K / 512 guest page tables, every entry) map one frame,
 * every one read by the guest; then MADV_DONTNEED of that one host page
 * (timed): the notifier must drop every spte of the gfn. The guest must
 * then read the canary the host wrote through all K of them. (KVM zaps a
 * gfn's rmap when it grows past 1000 entries, so its chain stays shorter
 * for K = 4096.)
 */
TEST_F_TIMEOUT(inval, gfn_sptes, 900)
{
	for (unsigned int z = 0; z < sizeof(gfn_ks) / sizeof(gfn_ks[0]); z++) {
		unsigned int k = gfn_ks[z], j;
		struct vcpu *v;
		struct slotmem s;
		__u64 t_madv, t_build, seen, stale;

		if (z) {
			vcpu_destroy(&self->vcpu[0]);
			vm_destroy(&self->vm);
			vm_create(_metadata, &self->vm);
			vcpu_create(_metadata, &self->vm, 0, &self->vcpu[0]);
		}
		v = &self->vcpu[0];
		ASSERT_EQ(0, ioctl(self->vm.fd, KVM_SET_NR_MMU_PAGES, k / 512 + 256));
		slot_create(_metadata, &self->vm, &s, 1, SLOT_GPA(0), 1, 0);
		put32(s.hva, TAGV);
		for (j = 0; j < k; j++)
			map_page(_metadata, &self->vm, ALIAS_LA + j * 0x1000ULL, s.gpa);
		t_build = now_ns();
		ASSERT_EQ((__u64)k, READ_N(v, ALIAS_LA, k, 0x1000, TAGV, 0));
		t_build = now_ns() - t_build;

		t_madv = now_ns();
		ASSERT_EQ(0, madvise(s.hva, 0x1000, MADV_DONTNEED));
		t_madv = now_ns() - t_madv;
		put32(s.hva, CANARY);
		ksft_print_msg("inval_bench gfn_sptes K=%u: madvise %llu us, build %llu us\n", k,
			       (unsigned long long)t_madv / 1000,
			       (unsigned long long)t_build / 1000);
		seen = READ_N(v, ALIAS_LA, k, 0x1000, CANARY, 0);
		stale = READ_N(v, ALIAS_LA, k, 0x1000, TAGV, 0);
		EXPECT_EQ((__u64)k, seen)
			TH_LOG("K=%u: %llu of the aliases show the canary after MADV_DONTNEED, "
			       "%llu the old page (stale mappings)", k, (unsigned long long)seen,
			       (unsigned long long)stale);
		munmap(s.hva, s.size);
	}
}

TEST_HARNESS_MAIN
