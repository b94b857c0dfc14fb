// SPDX-License-Identifier: GPL-2.0
/*
 * Guest paging on the device under test, in the three paged modes: 32-bit
 * two-level paging (with CR4.PSE 4 MiB pages), PAE (2 MiB pages) and 4-level
 * long mode (2 MiB pages, and 1 GiB pages when KVM_GET_SUPPORTED_CPUID
 * offers them). With EPT off (rkvm, kvm_intel ept=0) all of it runs on a
 * shadow MMU; with EPT on it is the reference behaviour.
 *
 * Each mode has its own copy of one guest program (below, assembled three
 * times from the same source: 32-bit code for the two 32-bit modes, 64-bit
 * code for long mode). The guest edits its own page tables and reports what
 * it saw with OUT: values read through the mappings, the vector, CR2 and
 * error code its exception handler recorded, counters of loops that checked
 * themselves. The host then checks guest memory (A/D bits, values written
 * through the mappings) and registers.
 *
 * The vCPU is put straight into the paged mode with KVM_SET_SREGS, after
 * KVM_SET_CPUID2 with everything KVM_GET_SUPPORTED_CPUID offers (EFER.LME
 * and EFER.NXE need the LM and NX bits).
 *
 * Run against /dev/rkvm, and with RKVM_DEV=/dev/kvm against kvm_intel.
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
#include <unistd.h>

#include "kselftest_harness.h"
#include "rkvm_util.h"

#define STR(x) #x
#define XS(x) STR(x)

/* ---- Guest physical memory (one slot at gpa 0) ------------------------- */

#define MEM_SIZE	(8UL << 20)
#define GDT_GPA		0x1000
#define TSS_GPA		0x1800
#define IDT_GPA		0x2000
#define VARS_GPA	0x3000		/* handler state and host/guest flags */
#define RES_GPA		0x4000		/* results the guest stores (16 KiB) */
#define STACK0_TOP	0xa000		/* vCPU 0 */
#define TSS_STACK_TOP	0xb000		/* ring 0 stack for faults from ring 3 */
#define USER_STACK_TOP	0xc000
#define STACK1_TOP	0x10000		/* vCPU 1 */
#define CODE_GPA	0x10000		/* the guest program, up to TOP_GPA */
#define TOP_GPA		0x30000		/* CR3: PD (32-bit), PDPT (PAE), PML4 */
#define L3_GPA		0x31000		/* long mode: the PDPT */
#define PD_GPA		0x32000		/* PAE and long mode: the PD */
#define PT_ID0_GPA	0x33000		/* identity map of 0-4 MiB, 4 KiB pages */
#define PT_ID1_GPA	0x34000
#define PT_WIN_GPA	0x35000		/* the table the guest edits: WIN_LA */
#define PT_COST_GPA	0x36000		/* COST_LA: fresh pages of mmu_cost */
#define FRAMES_GPA	0x80000		/* 128 data frames, each tagged */
#define FRAMES_END	0x100000
#define SPACES_GPA	0x100000	/* 64 address spaces of 4 pages each */
#define SPACE_FRAMES	0x200000	/* one frame per address space */
#define COST_FRAMES	0x300000	/* 256 frames of mmu_cost */
#define BIG_GPA		0x400000	/* 4 MiB behind the large pages */

/* Data frames (FRAMES_GPA + n * 4 KiB). */
#define F_MAP0		0x80000
#define F_MAP1		0x81000
#define F_CODE		0x82000		/* a function for the NX check */
#define F_A		0x84000		/* fork_like_pt_writes: the pair... */
#define F_B		0x85000
#define F_C		0x86000		/* ...the copy-on-write original... */
#define F_COPY0		0x87000		/* ...and its two copies */
#define F_WP		0x8a000		/* cr0_wp_toggle */
#define F_T0		0x8c000		/* two_vcpus: four frames */

/* ---- Guest linear addresses -------------------------------------------- */

#define WIN_LA		0x01000000	/* PT_WIN, edited by the guest */
#define DONE_LA		0x01c00000	/* never mapped: ring 3 reads it when done */
#define COST_LA		0x01400000	/* PT_COST */
#define SPACE_LA	0x00c00000	/* mapped differently in each space */
#define BIG_LA		0x00800000	/* 4 MiB of large pages -> BIG_GPA */
#define GIG_LA		0x40000000	/* long mode: a 1 GiB page -> gpa 0 */

/* Pages of the window used by each test, and their PTE index. */
#define WIN_COW		(WIN_LA + 20 * 0x1000)
#define WIN_WP		(WIN_LA + 30 * 0x1000)
#define WIN_TWO		(WIN_LA + 40 * 0x1000)

/* ---- Selectors ------------------------------------------------------- */

#define KCS32		0x08
#define KDS		0x10
#define KCS64		0x18
#define UCS32		0x20
#define UDS		0x28
#define UCS64		0x30
#define TSS_SEL		0x38

/* ---- The variables page (VARS_GPA) ------------------------------------- */

#define V_RESUME	0x3000		/* where a fault resumes (0: unexpected) */
#define V_RESUME_SP	0x3008		/* and with which stack pointer */
#define V_FIXUP		0x3010		/* #PF fix-up routine, then retry */
#define V_VEC		0x3018		/* last exception: vector, error code, */
#define V_ERR		0x301c
#define V_CR2		0x3020		/* CR2, */
#define V_RIP		0x3028		/* RIP, */
#define V_EAX		0x3030		/* and EAX at the time */
#define V_COUNT		0x3034		/* exceptions taken */
#define V_FLAGS		0x3038		/* FLAG_* from the host */
#define V_COWN		0x303c		/* next copy-on-write copy */
#define V_COWBAD	0x3040		/* copy-on-write faults not as expected */
#define V_COWBASE	0x3044
#define V_SEQ		0x3080		/* two_vcpus: round published by vCPU 0 */
#define V_ACK		0x30c0		/* round finished by vCPU 1 */

#define FLAG_NX		1
#define FLAG_GIG	2

/* ---- Ports ------------------------------------------------------------- */

#define PORT_VAL	0x40		/* a value for the host to check */
#define PORT_FAULT	0x41		/* vector, CR2, error code, EAX */
#define PORT_YIELD	0x42		/* spinning: let the other vCPU run */
#define PORT_BAD	0x4e		/* unexpected exception: vec, err, cr2, rip */
#define PORT_FAIL	0x4f		/* an access that had to fault did not */

/* ---- Loop sizes (moderate: the lab runs under Bochs) ------------------- */

#define FORK_N		1000
#define COW_N		100
#define NSPACES		64
#define SPACE_ROUNDS	4
#define WP_N		200
#define TWO_N		200
#define SPIN		256
#define COST_PAGES	256
#define COST_WRITES	1000
#define LARGE_N		64

/* Host-written contents. */
#define TAG(gpa)	(0x7a900000u | ((gpa) >> 12))	/* dword 0 of each frame */
#define SPACE_TAG(i)	(0x5ace0000u | (i))
#define COST_TAG(i)	(0xc0570000u | (i))
#define COW_ORIG	0xc0c0c0c0u
#define MAP1_8		0x88888888u
#define MAP1_20		0x20202020u
#define NX_RET		0x600dc0deu

/*
 * ---- The guest program --------------------------------------------------
 *
 * One source for the three modes. `m` is pg32, pae or lm; M3() picks a
 * piece of text per mode and W() per code width (pg32 and pae run 32-bit
 * code). Data is handled with 32-bit registers in every mode: in long mode
 * every address used is below 2 GiB, so 32-bit addressing reaches it.
 */
#define M3(m, a, b, c)		M3_##m(a, b, c)
#define M3_pg32(a, b, c)	a
#define M3_pae(a, b, c)		b
#define M3_lm(a, b, c)		c
#define W(m, a, b)		M3(m, a, a, b)

#define RAX(m)		W(m, "%eax", "%rax")
#define RBX(m)		W(m, "%ebx", "%rbx")
#define RSI(m)		W(m, "%esi", "%rsi")
#define RDI(m)		W(m, "%edi", "%rdi")
#define RSP(m)		W(m, "%esp", "%rsp")
#define PTESZ(m)	M3(m, "4", "8", "8")
#define PTE_SHIFT(m)	M3(m, "2", "3", "3")
/* Address of PTE `idx` of the table at `pt`, as an expression. */
#define PTE(m, pt, idx)	XS(pt) " + " #idx " * " PTESZ(m)

#define GUEST_BEGIN ".pushsection .rodata.guest, \"a\"\n"
#define GUEST_END ".code64\n.popsection\n"

/* Symbols of mode m's copy, and the guest address of one of its labels. */
#define L(m, name)	"mmu_" #m "_" #name
#define GA(m, sym)	sym " - " L(m, start) " + " XS(CODE_GPA)

/*
 * Writes EAX into the PTE at EBX: one 4-byte store for 4-byte entries and
 * for PAE (whose high half stays as it is: zero unless NX was set), one
 * 8-byte store in long mode.
 */
#define SETPTE(m)	M3(m, "	mov %eax, (%ebx)\n", "	mov %eax, (%ebx)\n", \
			   "	mov %rax, (%ebx)\n")
#define LOAD_CR3(m)	"	mov " RAX(m) ", %cr3\n"
#define RELOAD_CR3(m)	"	mov %cr3, " RAX(m) "\n" LOAD_CR3(m)

#define OUTV(src) \
	"	mov " src ", %eax\n" \
	"	out %eax, $" XS(PORT_VAL) "\n"

/* The next access must fault (from ring 3: any access, see ENTER_USER). */
#define EXPECT_FAULT(m, lbl) \
	"	movl $" GA(m, lbl) ", " XS(V_RESUME) "\n" \
	"	mov " RSP(m) ", " XS(V_RESUME_SP) "\n"

/* The access before did not fault: report check n, stop. */
#define FAIL(n) \
	"	mov $" #n ", %eax\n" \
	"	out %eax, $" XS(PORT_FAIL) "\n" \
	"	hlt\n"

/* What the handler recorded: vector, CR2, error code, EAX. */
#define REPORT \
	"	movl $0, " XS(V_RESUME) "\n" \
	"	mov " XS(V_VEC) ", %eax\n" \
	"	out %eax, $" XS(PORT_FAULT) "\n" \
	"	mov " XS(V_CR2) ", %eax\n" \
	"	out %eax, $" XS(PORT_FAULT) "\n" \
	"	mov " XS(V_ERR) ", %eax\n" \
	"	out %eax, $" XS(PORT_FAULT) "\n" \
	"	mov " XS(V_EAX) ", %eax\n" \
	"	out %eax, $" XS(PORT_FAULT) "\n"

/*
 * IRET to `stub` at CPL 3 (with the address to access in ESI). The stub
 * makes its access, then reads DONE_LA: if the access did not fault, that
 * read does (error code 4, CR2 DONE_LA) and brings the guest back to ring 0
 * with what it read still in EAX.
 */
#define ENTER_USER(m, stub) W(m, \
	"	mov $" XS(UDS) " + 3, %eax\n" \
	"	mov %eax, %ds\n" \
	"	mov %eax, %es\n" \
	"	push $" XS(UDS) " + 3\n" \
	"	push $" XS(USER_STACK_TOP) "\n" \
	"	push $0x202\n" \
	"	push $" XS(UCS32) " + 3\n" \
	"	push $" GA(m, L(m, stub)) "\n" \
	"	iret\n", \
	"	push $" XS(UDS) " + 3\n" \
	"	push $" XS(USER_STACK_TOP) "\n" \
	"	push $0x202\n" \
	"	push $" XS(UCS64) " + 3\n" \
	"	push $" GA(m, L(m, stub)) "\n" \
	"	iretq\n")

/* Spin-wait tail: every SPIN rounds an OUT to PORT_YIELD, then loop to lbl. */
#define SPIN_WAIT(lbl) \
	"	pause\n" \
	"	dec %edi\n" \
	"	jnz " lbl "\n" \
	"	mov $" XS(SPIN) ", %edi\n" \
	"	out %al, $" XS(PORT_YIELD) "\n" \
	"	jmp " lbl "\n"

/*
 * Exceptions 0-31: a 16-byte stub each (pushing a zero error code where
 * the CPU pushes none, then the vector) into the common handler. It
 * records vector, error code, RIP, CR2 and EAX, then:
 *  - #PF with a fix-up routine set (V_FIXUP): calls it and returns to
 *    retry the access;
 *  - #PF with V_RESUME set: abandons the frame (which may be a ring-3 one)
 *    and jumps there with the stack pointer saved beside it, every other
 *    register as at the fault;
 *  - anything else: OUT of vector, error code, CR2, RIP to PORT_BAD, HLT.
 */
#define STUBS(m) \
	"	.p2align 4\n" \
	L(m, stubs) ":\n" \
	"	.irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21," \
		"22,23,24,25,26,27,28,29,30,31\n" \
	"	.p2align 4\n" \
	"	.if ((0x60227d00 >> \\v) & 1) == 0\n" \
	"	push $0\n" \
	"	.endif\n" \
	"	push $\\v\n" \
	"	jmp " L(m, common) "\n" \
	"	.endr\n"

#define HANDLER32(m) \
	L(m, common) ":\n" \
	"	mov %eax, " XS(V_EAX) "\n" \
	"	push %eax\n" \
	"	push %ecx\n" \
	"	push %edx\n" \
	"	mov 12(%esp), %eax\n" \
	"	mov %eax, " XS(V_VEC) "\n" \
	"	mov 16(%esp), %eax\n" \
	"	mov %eax, " XS(V_ERR) "\n" \
	"	mov 20(%esp), %eax\n" \
	"	mov %eax, " XS(V_RIP) "\n" \
	"	mov %cr2, %eax\n" \
	"	mov %eax, " XS(V_CR2) "\n" \
	"	incl " XS(V_COUNT) "\n" \
	"	mov " XS(V_VEC) ", %eax\n" \
	"	cmp $14, %eax\n" \
	"	jne " L(m, bad) "\n" \
	"	mov " XS(V_FIXUP) ", %eax\n" \
	"	test %eax, %eax\n" \
	"	jz 2f\n" \
	"	call *%eax\n" \
	"	pop %edx\n" \
	"	pop %ecx\n" \
	"	pop %eax\n" \
	"	add $8, %esp\n" \
	"	iret\n" \
	"2:	cmpl $0, " XS(V_RESUME) "\n" \
	"	je " L(m, bad) "\n" \
	"	pop %edx\n" \
	"	pop %ecx\n" \
	"	pop %eax\n" \
	"	mov " XS(V_RESUME_SP) ", %esp\n" \
	"	push %eax\n" \
	"	mov $" XS(KDS) ", %eax\n" \
	"	mov %eax, %ds\n" \
	"	mov %eax, %es\n" \
	"	pop %eax\n" \
	"	jmp *" XS(V_RESUME) "\n"

#define HANDLER64(m) \
	L(m, common) ":\n" \
	"	mov %eax, " XS(V_EAX) "\n" \
	"	push %rax\n" \
	"	push %rcx\n" \
	"	push %rdx\n" \
	"	mov 24(%rsp), %rax\n" \
	"	mov %eax, " XS(V_VEC) "\n" \
	"	mov 32(%rsp), %rax\n" \
	"	mov %eax, " XS(V_ERR) "\n" \
	"	mov 40(%rsp), %rax\n" \
	"	mov %rax, " XS(V_RIP) "\n" \
	"	mov %cr2, %rax\n" \
	"	mov %rax, " XS(V_CR2) "\n" \
	"	incl " XS(V_COUNT) "\n" \
	"	mov " XS(V_VEC) ", %eax\n" \
	"	cmp $14, %eax\n" \
	"	jne " L(m, bad) "\n" \
	"	mov " XS(V_FIXUP) ", %rax\n" \
	"	test %rax, %rax\n" \
	"	jz 2f\n" \
	"	call *%rax\n" \
	"	pop %rdx\n" \
	"	pop %rcx\n" \
	"	pop %rax\n" \
	"	add $16, %rsp\n" \
	"	iretq\n" \
	"2:	cmpl $0, " XS(V_RESUME) "\n" \
	"	je " L(m, bad) "\n" \
	"	pop %rdx\n" \
	"	pop %rcx\n" \
	"	pop %rax\n" \
	"	mov " XS(V_RESUME_SP) ", %rsp\n" \
	"	jmp *" XS(V_RESUME) "\n"

#define HANDLER(m) \
	STUBS(m) \
	W(m, HANDLER32(m), HANDLER64(m)) \
	L(m, bad) ":\n" \
	"	mov " XS(V_VEC) ", %eax\n" \
	"	out %eax, $" XS(PORT_BAD) "\n" \
	"	mov " XS(V_ERR) ", %eax\n" \
	"	out %eax, $" XS(PORT_BAD) "\n" \
	"	mov " XS(V_CR2) ", %eax\n" \
	"	out %eax, $" XS(PORT_BAD) "\n" \
	"	mov " XS(V_RIP) ", %eax\n" \
	"	out %eax, $" XS(PORT_BAD) "\n" \
	"1:	hlt\n" \
	"	jmp 1b\n"

/*
 * map_remap_unmap_protect: PTE 0 of the window, written by the guest.
 * Host-side the checks follow the same order (TEST_F below).
 */
#define S_MAP(m) \
	L(m, s_map) ":\n" \
	"	mov $" XS(STACK0_TOP) ", %esp\n" \
	"	mov $" XS(PT_WIN_GPA) ", %ebx\n" \
	/* map F_MAP0 (not present before: no INVLPG needed) */ \
	"	mov $" XS(F_MAP0) " + 3, %eax\n" \
	SETPTE(m) \
	OUTV(XS(WIN_LA)) \
	"	movl $0x11111111, " XS(WIN_LA) " + 4\n" \
	OUTV(XS(F_MAP0) " + 4") \
	OUTV("(%ebx)") \
	/* remap to F_MAP1 */ \
	"	mov $" XS(F_MAP1) " + 3, %eax\n" \
	SETPTE(m) \
	"	invlpg " XS(WIN_LA) "\n" \
	OUTV(XS(WIN_LA)) \
	OUTV("(%ebx)") \
	"	movl $0x22222222, " XS(WIN_LA) " + 4\n" \
	OUTV(XS(F_MAP1) " + 4") \
	OUTV(XS(F_MAP0) " + 4") \
	OUTV("(%ebx)") \
	/* unmap: read and write fault */ \
	"	xor %eax, %eax\n" \
	SETPTE(m) \
	"	invlpg " XS(WIN_LA) "\n" \
	EXPECT_FAULT(m, "1f") \
	"	mov " XS(WIN_LA) " + 0x10, %eax\n" \
	FAIL(1) \
	"1:\n" REPORT \
	EXPECT_FAULT(m, "1f") \
	"	movl $5, " XS(WIN_LA) " + 0x14\n" \
	FAIL(2) \
	"1:\n" REPORT \
	/* read-only: reads work, a supervisor write faults (CR0.WP=1) */ \
	"	mov $" XS(F_MAP1) " + 1, %eax\n" \
	SETPTE(m) \
	"	invlpg " XS(WIN_LA) "\n" \
	OUTV(XS(WIN_LA) " + 4") \
	EXPECT_FAULT(m, "1f") \
	"	movl $0x33333333, " XS(WIN_LA) " + 8\n" \
	FAIL(3) \
	"1:\n" REPORT \
	OUTV(XS(F_MAP1) " + 8") \
	/* NX, when EFER.NXE: call a function in the page, then with NX set */ \
	"	testl $" XS(FLAG_NX) ", " XS(V_FLAGS) "\n" \
	"	jz 2f\n" \
	"	mov $" XS(F_CODE) " + 3, %eax\n" \
	SETPTE(m) \
	"	invlpg " XS(WIN_LA) "\n" \
	"	mov $" XS(WIN_LA) " + 0x100, %eax\n" \
	"	call *" RAX(m) "\n" \
	OUTV("%eax") \
	"	orl $0x80000000, 4(%ebx)\n" \
	"	invlpg " XS(WIN_LA) "\n" \
	EXPECT_FAULT(m, "1f") \
	"	mov $" XS(WIN_LA) " + 0x100, %eax\n" \
	"	call *" RAX(m) "\n" \
	FAIL(4) \
	"1:\n" REPORT \
	"	movl $0, 4(%ebx)\n" \
	"	xor %eax, %eax\n" \
	SETPTE(m) \
	"	invlpg " XS(WIN_LA) "\n" \
	EXPECT_FAULT(m, "1f") \
	"	mov $" XS(WIN_LA) " + 0x100, %eax\n" \
	"	call *" RAX(m) "\n" \
	FAIL(5) \
	"1:\n" REPORT \
	"2:\n" \
	/* CPL 3: supervisor page, then user page, then user read-only */ \
	"	mov $" XS(WIN_LA) " + 0x20, %esi\n" \
	"	mov $" XS(F_MAP1) " + 3, %eax\n" \
	SETPTE(m) \
	"	invlpg " XS(WIN_LA) "\n" \
	EXPECT_FAULT(m, "1f") \
	ENTER_USER(m, user_read) \
	"1:\n" REPORT \
	EXPECT_FAULT(m, "1f") \
	ENTER_USER(m, user_write) \
	"1:\n" REPORT \
	"	mov $" XS(F_MAP1) " + 7, %eax\n" \
	SETPTE(m) \
	"	invlpg " XS(WIN_LA) "\n" \
	EXPECT_FAULT(m, "1f") \
	ENTER_USER(m, user_read) \
	"1:\n" REPORT \
	EXPECT_FAULT(m, "1f") \
	ENTER_USER(m, user_write) \
	"1:\n" REPORT \
	OUTV(XS(F_MAP1) " + 0x20") \
	"	mov $" XS(F_MAP1) " + 5, %eax\n" \
	SETPTE(m) \
	"	invlpg " XS(WIN_LA) "\n" \
	EXPECT_FAULT(m, "1f") \
	ENTER_USER(m, user_write) \
	"1:\n" REPORT \
	"	hlt\n" \
	L(m, user_read) ":\n" \
	"	mov (%esi), %eax\n" \
	"	mov " XS(DONE_LA) ", %edx\n" \
	"1:	jmp 1b\n" \
	L(m, user_write) ":\n" \
	"	movl $0x44444444, (%esi)\n" \
	"	mov " XS(DONE_LA) ", %edx\n" \
	"1:	jmp 1b\n"

/*
 * large_pages: LARGE_N reads at offsets spread over the 4 MiB behind
 * BIG_LA into RES, each followed by a write of 0xbe000000 | i there; then,
 * with FLAG_GIG, the same offsets through the 1 GiB page (reads into
 * RES + 0x100, writes of 0xc1000000 | i 4 bytes further).
 */
#define LARGE_OFF \
	"	imul $0x41008, %ecx, %eax\n" \
	"	and $0x3ffff8, %eax\n"
#define S_LARGE(m) \
	L(m, s_large) ":\n" \
	"	mov $" XS(STACK0_TOP) ", %esp\n" \
	"	xor %ecx, %ecx\n" \
	"1:\n" LARGE_OFF \
	"	mov " XS(BIG_LA) "(%eax), %edx\n" \
	"	mov %edx, " XS(RES_GPA) "(,%ecx,4)\n" \
	"	mov %ecx, %edx\n" \
	"	or $0xbe000000, %edx\n" \
	"	mov %edx, " XS(BIG_LA) "(%eax)\n" \
	"	inc %ecx\n" \
	"	cmp $" XS(LARGE_N) ", %ecx\n" \
	"	jb 1b\n" \
	OUTV("%ecx") \
	"	testl $" XS(FLAG_GIG) ", " XS(V_FLAGS) "\n" \
	"	jz 3f\n" \
	"	xor %ecx, %ecx\n" \
	"2:\n" LARGE_OFF \
	"	mov " XS(GIG_LA) " + " XS(BIG_GPA) "(%eax), %edx\n" \
	"	mov %edx, " XS(RES_GPA) " + 0x100(,%ecx,4)\n" \
	"	mov %ecx, %edx\n" \
	"	or $0xc1000000, %edx\n" \
	"	mov %edx, " XS(GIG_LA) " + " XS(BIG_GPA) " + 4(%eax)\n" \
	"	inc %ecx\n" \
	"	cmp $" XS(LARGE_N) ", %ecx\n" \
	"	jb 2b\n" \
	OUTV("%ecx") \
	"3:	hlt\n"

/*
 * fork_like_pt_writes, part 1: FORK_N rounds i over window pages k = i % 16:
 * PTE k -> F_A or F_B (alternating on each visit of the page), writable
 * every other pair of visits, INVLPG, then a read through the page must
 * give the tag of the frame just mapped (EDI counts those) and, when
 * writable, a write through it must land in that frame (EBP).
 * Part 2, copy-on-write: COW_N rounds of: page 20 -> F_C read-only, read,
 * write; the write faults, the fix-up copies F_C to F_COPY0/1 (alternating),
 * maps the copy writable and returns; the write is retried into the copy.
 * EBP counts rounds that check out. Reports EDI, EBP (part 1), EBP, the
 * number of faults, and the faults the fix-up did not expect.
 */
#define S_FORK(m) \
	L(m, s_fork) ":\n" \
	"	mov $" XS(STACK0_TOP) ", %esp\n" \
	"	xor %ecx, %ecx\n" \
	"	xor %edi, %edi\n" \
	"	xor %ebp, %ebp\n" \
	"1:	mov %ecx, %edx\n" \
	"	and $15, %edx\n" \
	"	mov %edx, %ebx\n" \
	"	shl $" PTE_SHIFT(m) ", %ebx\n" \
	"	add $" XS(PT_WIN_GPA) ", %ebx\n" \
	"	shl $12, %edx\n" \
	"	add $" XS(WIN_LA) ", %edx\n" \
	"	mov %ecx, %eax\n" \
	"	shr $4, %eax\n" \
	"	and $1, %eax\n" \
	"	shl $12, %eax\n" \
	"	add $" XS(F_A) ", %eax\n" \
	"	mov %eax, %esi\n" \
	"	test $32, %ecx\n" \
	"	jz 2f\n" \
	"	or $2, %eax\n" \
	"2:	or $1, %eax\n" \
	SETPTE(m) \
	"	invlpg (%edx)\n" \
	"	mov (%edx), %eax\n" \
	"	cmp (%esi), %eax\n" \
	"	jne 3f\n" \
	"	inc %edi\n" \
	"3:	test $32, %ecx\n" \
	"	jz 4f\n" \
	"	mov %ecx, 4(%edx)\n" \
	"	cmp 4(%esi), %ecx\n" \
	"	jne 4f\n" \
	"	inc %ebp\n" \
	"4:	inc %ecx\n" \
	"	cmp $" XS(FORK_N) ", %ecx\n" \
	"	jb 1b\n" \
	OUTV("%edi") \
	OUTV("%ebp") \
	"	movl $" GA(m, L(m, cow_fix)) ", " XS(V_FIXUP) "\n" \
	"	mov " XS(V_COUNT) ", %eax\n" \
	"	mov %eax, " XS(V_COWBASE) "\n" \
	"	xor %ecx, %ecx\n" \
	"	xor %ebp, %ebp\n" \
	"5:	mov $" PTE(m, PT_WIN_GPA, 20) ", %ebx\n" \
	"	mov $" XS(F_C) " + 1, %eax\n" \
	SETPTE(m) \
	"	invlpg " XS(WIN_COW) "\n" \
	"	mov " XS(WIN_COW) ", %eax\n" \
	"	cmp " XS(F_C) ", %eax\n" \
	"	jne 6f\n" \
	"	mov %ecx, " XS(WIN_COW) " + 8\n" \
	"	mov %ecx, %esi\n" \
	"	and $1, %esi\n" \
	"	shl $12, %esi\n" \
	"	add $" XS(F_COPY0) ", %esi\n" \
	"	cmp 8(%esi), %ecx\n" \
	"	jne 6f\n" \
	"	mov (%esi), %eax\n" \
	"	cmp " XS(F_C) ", %eax\n" \
	"	jne 6f\n" \
	"	cmpl $" XS(COW_ORIG) ", " XS(F_C) " + 8\n" \
	"	jne 6f\n" \
	"	cmp " XS(WIN_COW) " + 8, %ecx\n" \
	"	jne 6f\n" \
	"	inc %ebp\n" \
	"6:	inc %ecx\n" \
	"	cmp $" XS(COW_N) ", %ecx\n" \
	"	jb 5b\n" \
	"	movl $0, " XS(V_FIXUP) "\n" \
	OUTV("%ebp") \
	"	mov " XS(V_COUNT) ", %eax\n" \
	"	sub " XS(V_COWBASE) ", %eax\n" \
	OUTV("%eax") \
	OUTV(XS(V_COWBAD)) \
	"	hlt\n" \
	/* the fix-up: called by the #PF handler, may clobber EAX, ECX, EDX */ \
	L(m, cow_fix) ":\n" \
	"	push " RBX(m) "\n" \
	"	push " RSI(m) "\n" \
	"	push " RDI(m) "\n" \
	"	cmpl $3, " XS(V_ERR) "\n" \
	"	jne 1f\n" \
	"	mov " XS(V_CR2) ", %eax\n" \
	"	and $0xfffff000, %eax\n" \
	"	cmp $" XS(WIN_COW) ", %eax\n" \
	"	jne 1f\n" \
	"	mov " XS(V_COWN) ", %edi\n" \
	"	xorl $1, " XS(V_COWN) "\n" \
	"	shl $12, %edi\n" \
	"	add $" XS(F_COPY0) ", %edi\n" \
	"	mov %edi, %eax\n" \
	"	or $3, %eax\n" \
	"	mov $" XS(F_C) ", %esi\n" \
	"	mov $1024, %ecx\n" \
	"	cld\n" \
	"	rep movsl\n" \
	"	mov $" PTE(m, PT_WIN_GPA, 20) ", %ebx\n" \
	SETPTE(m) \
	"	invlpg " XS(WIN_COW) "\n" \
	"	pop " RDI(m) "\n" \
	"	pop " RSI(m) "\n" \
	"	pop " RBX(m) "\n" \
	"	ret\n" \
	"1:	incl " XS(V_COWBAD) "\n" \
	"	jmp " L(m, bad) "\n"

/*
 * many_cr3_switches: SPACE_ROUNDS rounds over the NSPACES address spaces
 * (CR3 = SPACES_GPA + i * 16 KiB). SPACE_LA must show the tag of space i's
 * frame (from round 2: of frame i + 1, after the guest rewrote every
 * space's PTE while another space was current); a write of the round
 * number through it must land there. Reports the count of good visits.
 */
#define S_SPACES(m) \
	L(m, s_spaces) ":\n" \
	"	mov $" XS(STACK0_TOP) ", %esp\n" \
	"	xor %ebp, %ebp\n" \
	"	xor %ecx, %ecx\n" \
	"1:	xor %edx, %edx\n" \
	"2:	mov %edx, %eax\n" \
	"	shl $14, %eax\n" \
	"	add $" XS(SPACES_GPA) ", %eax\n" \
	LOAD_CR3(m) \
	"	mov %edx, %esi\n" \
	"	cmp $2, %ecx\n" \
	"	jb 3f\n" \
	"	inc %esi\n" \
	"	and $" XS(NSPACES) " - 1, %esi\n" \
	"3:	shl $12, %esi\n" \
	"	add $" XS(SPACE_FRAMES) ", %esi\n" \
	"	mov " XS(SPACE_LA) ", %eax\n" \
	"	cmp (%esi), %eax\n" \
	"	jne 4f\n" \
	"	mov %ecx, " XS(SPACE_LA) " + 4\n" \
	"	cmp 4(%esi), %ecx\n" \
	"	jne 4f\n" \
	"	inc %ebp\n" \
	"4:	inc %edx\n" \
	"	cmp $" XS(NSPACES) ", %edx\n" \
	"	jb 2b\n" \
	"	cmp $1, %ecx\n" \
	"	jne 6f\n" \
	"	xor %edx, %edx\n" \
	"5:	mov %edx, %ebx\n" \
	"	shl $14, %ebx\n" \
	"	add $" XS(SPACES_GPA) " + 0x3000, %ebx\n" \
	"	lea 1(%edx), %eax\n" \
	"	and $" XS(NSPACES) " - 1, %eax\n" \
	"	shl $12, %eax\n" \
	"	add $" XS(SPACE_FRAMES) " + 3, %eax\n" \
	SETPTE(m) \
	"	inc %edx\n" \
	"	cmp $" XS(NSPACES) ", %edx\n" \
	"	jb 5b\n" \
	"6:	inc %ecx\n" \
	"	cmp $" XS(SPACE_ROUNDS) ", %ecx\n" \
	"	jb 1b\n" \
	OUTV("%ebp") \
	"	hlt\n"

/*
 * cr0_wp_toggle: page 30 of the window maps F_WP read-only. WP_N rounds:
 * CR0.WP=0, a supervisor write of i must land (EBP counts); CR0.WP=1, a
 * write must fault with error code 3 at WIN_WP and leave F_WP alone (EDI).
 * Reports EBP, EDI and the last fault.
 */
#define S_WP(m) \
	L(m, s_wp) ":\n" \
	"	mov $" XS(STACK0_TOP) ", %esp\n" \
	"	mov $" PTE(m, PT_WIN_GPA, 30) ", %ebx\n" \
	"	mov $" XS(F_WP) " + 1, %eax\n" \
	SETPTE(m) \
	"	invlpg " XS(WIN_WP) "\n" \
	"	xor %ecx, %ecx\n" \
	"	xor %ebp, %ebp\n" \
	"	xor %edi, %edi\n" \
	"1:	mov %cr0, " RAX(m) "\n" \
	"	and $~0x10000, %eax\n" \
	"	mov " RAX(m) ", %cr0\n" \
	"	mov %ecx, " XS(WIN_WP) "\n" \
	"	cmp " XS(F_WP) ", %ecx\n" \
	"	jne 2f\n" \
	"	inc %ebp\n" \
	"2:	mov %cr0, " RAX(m) "\n" \
	"	or $0x10000, %eax\n" \
	"	mov " RAX(m) ", %cr0\n" \
	EXPECT_FAULT(m, "3f") \
	"	movl $0xdead, " XS(WIN_WP) "\n" \
	FAIL(6) \
	"3:	movl $0, " XS(V_RESUME) "\n" \
	"	cmpl $14, " XS(V_VEC) "\n" \
	"	jne 4f\n" \
	"	cmpl $3, " XS(V_ERR) "\n" \
	"	jne 4f\n" \
	"	cmpl $" XS(WIN_WP) ", " XS(V_CR2) "\n" \
	"	jne 4f\n" \
	"	cmp " XS(F_WP) ", %ecx\n" \
	"	jne 4f\n" \
	"	inc %edi\n" \
	"4:	inc %ecx\n" \
	"	cmp $" XS(WP_N) ", %ecx\n" \
	"	jb 1b\n" \
	OUTV("%ebp") \
	OUTV("%edi") \
	REPORT \
	"	hlt\n"

/*
 * two_vcpus_share_tables, vCPU 0: for rounds r = 1..TWO_N, waits until
 * vCPU 1 finished round r - 1, points page 40 of the window at frame
 * F_T0 + (r % 4) pages, INVLPG, checks it sees that frame, publishes r in
 * V_SEQ. Reports the count of good rounds.
 * vCPU 1: waits for V_SEQ = r, INVLPG (even r) or CR3 reload (odd r), must
 * see that frame and write r into it, acknowledges r in V_ACK.
 */
#define S_TWO(m) \
	L(m, s_two0) ":\n" \
	"	mov $" XS(STACK0_TOP) ", %esp\n" \
	"	mov $" PTE(m, PT_WIN_GPA, 40) ", %ebx\n" \
	"	xor %ecx, %ecx\n" \
	"	xor %ebp, %ebp\n" \
	"	mov $" XS(SPIN) ", %edi\n" \
	"1:	inc %ecx\n" \
	"	lea -1(%ecx), %edx\n" \
	"2:	cmp " XS(V_ACK) ", %edx\n" \
	"	je 3f\n" \
	SPIN_WAIT("2b") \
	"3:	mov %ecx, %eax\n" \
	"	and $3, %eax\n" \
	"	shl $12, %eax\n" \
	"	add $" XS(F_T0) ", %eax\n" \
	"	mov %eax, %esi\n" \
	"	or $3, %eax\n" \
	SETPTE(m) \
	"	invlpg " XS(WIN_TWO) "\n" \
	"	mov " XS(WIN_TWO) ", %eax\n" \
	"	cmp (%esi), %eax\n" \
	"	jne 4f\n" \
	"	inc %ebp\n" \
	"4:	mov %ecx, " XS(V_SEQ) "\n" \
	"	cmp $" XS(TWO_N) ", %ecx\n" \
	"	jb 1b\n" \
	"5:	cmpl $" XS(TWO_N) ", " XS(V_ACK) "\n" \
	"	je 6f\n" \
	SPIN_WAIT("5b") \
	"6:\n" \
	OUTV("%ebp") \
	"	hlt\n" \
	L(m, s_two1) ":\n" \
	"	mov $" XS(STACK1_TOP) ", %esp\n" \
	"	xor %ecx, %ecx\n" \
	"	xor %ebp, %ebp\n" \
	"	mov $" XS(SPIN) ", %edi\n" \
	"1:	inc %ecx\n" \
	"2:	cmp " XS(V_SEQ) ", %ecx\n" \
	"	je 3f\n" \
	SPIN_WAIT("2b") \
	"3:	test $1, %ecx\n" \
	"	jz 4f\n" \
	RELOAD_CR3(m) \
	"	jmp 5f\n" \
	"4:	invlpg " XS(WIN_TWO) "\n" \
	"5:	mov %ecx, %esi\n" \
	"	and $3, %esi\n" \
	"	shl $12, %esi\n" \
	"	add $" XS(F_T0) ", %esi\n" \
	"	mov " XS(WIN_TWO) ", %eax\n" \
	"	cmp (%esi), %eax\n" \
	"	jne 6f\n" \
	"	mov %ecx, " XS(WIN_TWO) " + 4\n" \
	"	cmp 4(%esi), %ecx\n" \
	"	jne 6f\n" \
	"	inc %ebp\n" \
	"6:	mov %ecx, " XS(V_ACK) "\n" \
	"	cmp $" XS(TWO_N) ", %ecx\n" \
	"	jb 1b\n" \
	OUTV("%ebp") \
	"	hlt\n"

/*
 * mmu_cost: (a) RDTSC around a first write to each of COST_PAGES fresh
 * pages (page i -> COST_FRAMES + i pages, writes i at offset 4); reports
 * the delta (low, high), then the count of pages whose tag and value read
 * back. (b) RDTSC around COST_WRITES writes to live PTEs of that table
 * (write i: PTE i % 256 -> frame (i % 256 + 1 + i / 256) % 256); reports
 * the delta, reloads CR3 and stores what each page shows at offset 4 in
 * RES.
 */
#define S_COST(m) \
	L(m, s_cost) ":\n" \
	"	mov $" XS(STACK0_TOP) ", %esp\n" \
	"	rdtsc\n" \
	"	mov %eax, %esi\n" \
	"	mov %edx, %edi\n" \
	"	xor %ecx, %ecx\n" \
	"1:	mov %ecx, %ebx\n" \
	"	shl $12, %ebx\n" \
	"	mov %ecx, " XS(COST_LA) " + 4(%ebx)\n" \
	"	inc %ecx\n" \
	"	cmp $" XS(COST_PAGES) ", %ecx\n" \
	"	jb 1b\n" \
	"	rdtsc\n" \
	"	sub %esi, %eax\n" \
	"	sbb %edi, %edx\n" \
	OUTV("%eax") \
	OUTV("%edx") \
	"	xor %ecx, %ecx\n" \
	"	xor %ebp, %ebp\n" \
	"2:	mov %ecx, %ebx\n" \
	"	shl $12, %ebx\n" \
	"	mov " XS(COST_LA) "(%ebx), %eax\n" \
	"	cmp " XS(COST_FRAMES) "(%ebx), %eax\n" \
	"	jne 3f\n" \
	"	cmp " XS(COST_LA) " + 4(%ebx), %ecx\n" \
	"	jne 3f\n" \
	"	inc %ebp\n" \
	"3:	inc %ecx\n" \
	"	cmp $" XS(COST_PAGES) ", %ecx\n" \
	"	jb 2b\n" \
	OUTV("%ebp") \
	"	rdtsc\n" \
	"	mov %eax, %esi\n" \
	"	mov %edx, %edi\n" \
	"	xor %ecx, %ecx\n" \
	"4:	mov %ecx, %edx\n" \
	"	and $255, %edx\n" \
	"	mov %ecx, %eax\n" \
	"	shr $8, %eax\n" \
	"	add %edx, %eax\n" \
	"	inc %eax\n" \
	"	and $255, %eax\n" \
	"	shl $12, %eax\n" \
	"	add $" XS(COST_FRAMES) " + 3, %eax\n" \
	"	lea " XS(PT_COST_GPA) "(,%edx," PTESZ(m) "), %ebx\n" \
	SETPTE(m) \
	"	inc %ecx\n" \
	"	cmp $" XS(COST_WRITES) ", %ecx\n" \
	"	jb 4b\n" \
	"	rdtsc\n" \
	"	sub %esi, %eax\n" \
	"	sbb %edi, %edx\n" \
	OUTV("%eax") \
	OUTV("%edx") \
	RELOAD_CR3(m) \
	"	xor %ecx, %ecx\n" \
	"5:	mov %ecx, %ebx\n" \
	"	shl $12, %ebx\n" \
	"	mov " XS(COST_LA) " + 4(%ebx), %eax\n" \
	"	mov %eax, " XS(RES_GPA) "(,%ecx,4)\n" \
	"	inc %ecx\n" \
	"	cmp $" XS(COST_PAGES) ", %ecx\n" \
	"	jb 5b\n" \
	"	hlt\n"

/* Entry points, as offsets in the table at the start of each copy. */
enum entry { E_STUBS, E_MAP, E_LARGE, E_FORK, E_SPACES, E_WP, E_TWO0, E_TWO1, E_COST, E_NR };

#define MMU_GUEST(m) \
	GUEST_BEGIN \
	W(m, ".code32\n", ".code64\n") \
	".p2align 4\n" \
	".global " L(m, start) ", " L(m, end) "\n" \
	L(m, start) ":\n" \
	"	.long " L(m, stubs) " - " L(m, start) "\n" \
	"	.long " L(m, s_map) " - " L(m, start) "\n" \
	"	.long " L(m, s_large) " - " L(m, start) "\n" \
	"	.long " L(m, s_fork) " - " L(m, start) "\n" \
	"	.long " L(m, s_spaces) " - " L(m, start) "\n" \
	"	.long " L(m, s_wp) " - " L(m, start) "\n" \
	"	.long " L(m, s_two0) " - " L(m, start) "\n" \
	"	.long " L(m, s_two1) " - " L(m, start) "\n" \
	"	.long " L(m, s_cost) " - " L(m, start) "\n" \
	HANDLER(m) \
	S_MAP(m) \
	S_LARGE(m) \
	S_FORK(m) \
	S_SPACES(m) \
	S_WP(m) \
	S_TWO(m) \
	S_COST(m) \
	L(m, end) ":\n" \
	GUEST_END

asm(MMU_GUEST(pg32));
asm(MMU_GUEST(pae));
asm(MMU_GUEST(lm));
extern const char mmu_pg32_start[], mmu_pg32_end[], mmu_pae_start[], mmu_pae_end[],
	mmu_lm_start[], mmu_lm_end[];

/* ---- Host helpers -------------------------------------------------------- */

enum pg_mode { PG32, PAE, LM };

struct vm {
	int dev;
	int fd;
	char *mem;
	size_t mem_size;
};

struct vcpu {
	int fd;
	struct kvm_run *run;
	size_t run_size;
};

static void vm_create(struct __test_metadata *_metadata, struct vm *vm, size_t mem_size)
{
	struct kvm_userspace_memory_region r = { .slot = 0, .memory_size = mem_size };

	memset(vm, 0, sizeof(*vm));
	vm->dev = open(rkvm_dev_path(), O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, vm->dev) TH_LOG("open %s: %s", rkvm_dev_path(), strerror(errno));
	vm->fd = ioctl(vm->dev, KVM_CREATE_VM, 0);
	ASSERT_LE(0, vm->fd) TH_LOG("KVM_CREATE_VM: %s", strerror(errno));
	vm->mem = mmap(NULL, mem_size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	ASSERT_NE(MAP_FAILED, vm->mem);
	vm->mem_size = mem_size;
	r.userspace_addr = (__u64)(unsigned long)vm->mem;
	ASSERT_EQ(0, ioctl(vm->fd, KVM_SET_USER_MEMORY_REGION, &r))
		TH_LOG("KVM_SET_USER_MEMORY_REGION: %s", strerror(errno));
}

static void vm_destroy(struct vm *vm)
{
	close(vm->fd);
	close(vm->dev);
	munmap(vm->mem, vm->mem_size);
}

static void vcpu_create(struct __test_metadata *_metadata, struct vm *vm, int id,
			struct vcpu *vcpu)
{
	int size = ioctl(vm->dev, KVM_GET_VCPU_MMAP_SIZE, 0);

	ASSERT_LT(0, size) TH_LOG("KVM_GET_VCPU_MMAP_SIZE: %s", strerror(errno));
	vcpu->fd = ioctl(vm->fd, KVM_CREATE_VCPU, id);
	ASSERT_LE(0, vcpu->fd) TH_LOG("KVM_CREATE_VCPU %d: %s", id, strerror(errno));
	vcpu->run_size = size;
	vcpu->run = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu->fd, 0);
	ASSERT_NE(MAP_FAILED, vcpu->run) TH_LOG("mmap vcpu: %s", strerror(errno));
}

static void vcpu_destroy(struct vcpu *vcpu)
{
	munmap(vcpu->run, vcpu->run_size);
	close(vcpu->fd);
}

static __u32 mem32(struct vm *vm, __u64 gpa)
{
	__u32 v;

	memcpy(&v, vm->mem + gpa, sizeof(v));
	return v;
}

static void put32(struct vm *vm, __u64 gpa, __u32 v)
{
	memcpy(vm->mem + gpa, &v, sizeof(v));
}

static void put64(struct vm *vm, __u64 gpa, __u64 v)
{
	memcpy(vm->mem + gpa, &v, sizeof(v));
}

static __u32 io_value(const void *p, unsigned int size)
{
	__u32 v = 0;

	memcpy(&v, p, size);
	return v;
}

static void *io_data(struct vcpu *vcpu)
{
	return (char *)vcpu->run + vcpu->run->io.data_offset;
}

static const char *exit_str(const struct kvm_run *run, char *buf, size_t len)
{
	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		snprintf(buf, len, "IO %s size %u port %#x count %u",
			 run->io.direction == KVM_EXIT_IO_OUT ? "out" : "in",
			 run->io.size, run->io.port, run->io.count);
		break;
	case KVM_EXIT_MMIO:
		snprintf(buf, len, "MMIO %s addr %#llx len %u",
			 run->mmio.is_write ? "write" : "read",
			 (unsigned long long)run->mmio.phys_addr, run->mmio.len);
		break;
	case KVM_EXIT_SHUTDOWN:
		snprintf(buf, len, "SHUTDOWN (triple fault)");
		break;
	case KVM_EXIT_FAIL_ENTRY:
		snprintf(buf, len, "FAIL_ENTRY reason %#llx",
			 (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		break;
	case KVM_EXIT_INTERNAL_ERROR:
		snprintf(buf, len, "INTERNAL_ERROR suberror %u ndata %u data0 %#llx",
			 run->internal.suberror, run->internal.ndata,
			 (unsigned long long)(run->internal.ndata ? run->internal.data[0] : 0));
		break;
	default:
		snprintf(buf, len, "exit_reason %u", run->exit_reason);
		break;
	}
	return buf;
}

enum step { STEP_OUT, STEP_HLT, STEP_ERR };

/*
 * Runs the vCPU to its next dword OUT (returned in port/val) or HLT.
 * OUTs to PORT_YIELD are served here (sched_yield(), or STEP_ERR when *stop
 * is set). The guest's reports of an unexpected exception or of an access
 * that did not fault, and any other exit, are STEP_ERR with `why` filled
 * in. No harness asserts: vCPU threads use it too.
 */
static int guest_step(struct vcpu *vcpu, volatile int *stop, __u16 *port, __u32 *val,
		      char *why, size_t len)
{
	struct kvm_run *run = vcpu->run;
	struct kvm_regs regs;
	char ex[128];
	__u32 bad[4];
	int i;

	for (;;) {
		if (ioctl(vcpu->fd, KVM_RUN, 0)) {
			snprintf(why, len, "KVM_RUN: %s", strerror(errno));
			return STEP_ERR;
		}
		if (run->exit_reason == KVM_EXIT_HLT)
			return STEP_HLT;
		if (run->exit_reason != KVM_EXIT_IO || run->io.direction != KVM_EXIT_IO_OUT)
			break;
		if (run->io.port == PORT_YIELD) {
			if (stop && *stop) {
				snprintf(why, len, "stopped: the other vCPU failed");
				return STEP_ERR;
			}
			sched_yield();
			continue;
		}
		if (run->io.size != 4 || run->io.count != 1)
			break;
		*port = run->io.port;
		*val = io_value(io_data(vcpu), 4);
		if (*port == PORT_FAIL) {
			snprintf(why, len, "guest check %u: an access that had to fault did not",
				 *val);
			return STEP_ERR;
		}
		if (*port != PORT_BAD)
			return STEP_OUT;
		bad[0] = *val;
		for (i = 1; i < 4; i++) {
			if (ioctl(vcpu->fd, KVM_RUN, 0) || run->exit_reason != KVM_EXIT_IO ||
			    run->io.port != PORT_BAD)
				break;
			bad[i] = io_value(io_data(vcpu), 4);
		}
		if (i < 4)
			snprintf(why, len, "guest exception %u, report cut short", bad[0]);
		else
			snprintf(why, len,
				 "unexpected guest exception: vector %u error %#x cr2 %#x rip %#x",
				 bad[0], bad[1], bad[2], bad[3]);
		return STEP_ERR;
	}
	if (ioctl(vcpu->fd, KVM_GET_REGS, &regs))
		regs.rip = ~0ULL;
	snprintf(why, len, "unexpected exit: %s at rip %#llx", exit_str(run, ex, sizeof(ex)),
		 (unsigned long long)regs.rip);
	return STEP_ERR;
}

/* The next dword the guest OUTs, which must go to `want`. */
static __u32 next_out(struct __test_metadata *_metadata, struct vcpu *vcpu, __u16 want)
{
	char why[256] = "";
	__u16 port = 0;
	__u32 val = 0;
	int r = guest_step(vcpu, NULL, &port, &val, why, sizeof(why));

	ASSERT_EQ(STEP_OUT, r) TH_LOG("waiting for an OUT to %#x: %s", want,
				      r == STEP_HLT ? "the guest halted" : why);
	ASSERT_EQ(want, port) TH_LOG("value %#x", val);
	return val;
}

static __u32 next_val(struct __test_metadata *_metadata, struct vcpu *vcpu)
{
	return next_out(_metadata, vcpu, PORT_VAL);
}

/*
 * The next REPORT: checks vector, CR2 and error code (CR2 and error code
 * only for #PF) and returns the EAX the handler saw.
 */
static __u32 expect_fault(struct __test_metadata *_metadata, struct vcpu *vcpu,
			  __u32 vec, __u32 cr2, __u32 err, const char *what)
{
	__u32 got_vec = next_out(_metadata, vcpu, PORT_FAULT);
	__u32 got_cr2 = next_out(_metadata, vcpu, PORT_FAULT);
	__u32 got_err = next_out(_metadata, vcpu, PORT_FAULT);
	__u32 eax = next_out(_metadata, vcpu, PORT_FAULT);

	EXPECT_EQ(vec, got_vec) TH_LOG("%s: vector", what);
	if (vec == 14) {
		EXPECT_EQ(cr2, got_cr2) TH_LOG("%s: CR2", what);
		EXPECT_EQ(err, got_err) TH_LOG("%s: error code", what);
	}
	return eax;
}

static void expect_halt(struct __test_metadata *_metadata, struct vcpu *vcpu)
{
	char why[256] = "";
	__u16 port = 0;
	__u32 val = 0;
	int r = guest_step(vcpu, NULL, &port, &val, why, sizeof(why));

	ASSERT_EQ(STEP_HLT, r) TH_LOG("waiting for HLT: %s (port %#x value %#x)",
				      r == STEP_OUT ? "an extra OUT" : why, port, val);
}

static const struct kvm_cpuid_entry2 *cpuid_entry(const struct kvm_cpuid2 *c, __u32 fn)
{
	for (__u32 i = 0; i < c->nent; i++)
		if (c->entries[i].function == fn && c->entries[i].index == 0)
			return &c->entries[i];
	return NULL;
}

/* ---- Page tables built by the host ----------------------------------------- */

#define P_P	0x1ULL
#define P_RW	0x2ULL
#define P_US	0x4ULL
#define P_A	0x20ULL
#define P_D	0x40ULL
#define P_PS	0x80ULL
#define P_TABLE	(P_P | P_RW | P_US)

static void put_entry(struct vm *vm, enum pg_mode mode, __u64 table, unsigned int idx, __u64 v)
{
	if (mode == PG32)
		put32(vm, table + idx * 4, (__u32)v);
	else
		put64(vm, table + idx * 8, v);
}

static __u64 get_entry(struct vm *vm, enum pg_mode mode, __u64 table, unsigned int idx)
{
	__u64 v = 0;

	memcpy(&v, vm->mem + table + idx * (mode == PG32 ? 4 : 8), mode == PG32 ? 4 : 8);
	return v;
}

/* Index of `la` in its page directory. */
static unsigned int pd_index(enum pg_mode mode, __u64 la)
{
	return mode == PG32 ? la >> 22 : (la >> 21) & 511;
}

/* The page directory of the main tables. */
static __u64 main_pd(enum pg_mode mode)
{
	return mode == PG32 ? TOP_GPA : PD_GPA;
}

/*
 * The main tables (CR3 = TOP_GPA):
 *   0 - 4 MiB     identity, 4 KiB pages, user-accessible (so ring 3 can
 *                 run the guest program; the pages it must not reach are
 *                 in the window);
 *   BIG_LA        4 MiB of large pages -> BIG_GPA (one PSE page or two
 *                 2 MiB pages);
 *   WIN_LA        PT_WIN, empty: the guest fills it;
 *   COST_LA       PT_COST: COST_PAGES pages -> COST_FRAMES;
 *   GIG_LA        long mode with `gig`: a 1 GiB page -> gpa 0.
 * The address spaces of many_cr3_switches (space i at SPACES_GPA + i *
 * 16 KiB: top table, long mode PDPT, PD, PT) have their own tables down to
 * the PD, copies of the main ones, plus SPACE_LA -> SPACE_FRAMES + i pages.
 */
static void build_tables(struct vm *vm, enum pg_mode mode, bool gig)
{
	__u64 pd = main_pd(mode);
	unsigned int i;

	memset(vm->mem + TOP_GPA, 0, PT_COST_GPA + 0x1000 - TOP_GPA);
	if (mode == PAE) {
		put_entry(vm, mode, TOP_GPA, 0, PD_GPA | P_P);
	} else if (mode == LM) {
		put_entry(vm, mode, TOP_GPA, 0, L3_GPA | P_TABLE);
		put_entry(vm, mode, L3_GPA, 0, PD_GPA | P_TABLE);
		if (gig)
			put_entry(vm, mode, L3_GPA, 1, 0 | P_PS | P_TABLE);
	}
	if (mode == PG32) {
		put_entry(vm, mode, pd, 0, PT_ID0_GPA | P_TABLE);
		for (i = 0; i < 1024; i++)
			put_entry(vm, mode, PT_ID0_GPA, i, (i << 12) | P_TABLE);
		put_entry(vm, mode, pd, pd_index(mode, BIG_LA), BIG_GPA | P_PS | P_TABLE);
	} else {
		put_entry(vm, mode, pd, 0, PT_ID0_GPA | P_TABLE);
		put_entry(vm, mode, pd, 1, PT_ID1_GPA | P_TABLE);
		for (i = 0; i < 1024; i++)
			put_entry(vm, mode, i < 512 ? PT_ID0_GPA : PT_ID1_GPA, i % 512,
				  ((__u64)i << 12) | P_TABLE);
		put_entry(vm, mode, pd, pd_index(mode, BIG_LA), BIG_GPA | P_PS | P_TABLE);
		put_entry(vm, mode, pd, pd_index(mode, BIG_LA) + 1,
			  (BIG_GPA + (2 << 20)) | P_PS | P_TABLE);
	}
	put_entry(vm, mode, pd, pd_index(mode, WIN_LA), PT_WIN_GPA | P_TABLE);
	put_entry(vm, mode, pd, pd_index(mode, COST_LA), PT_COST_GPA | P_TABLE);
	for (i = 0; i < COST_PAGES; i++)
		put_entry(vm, mode, PT_COST_GPA, i, (COST_FRAMES + i * 0x1000) | P_P | P_RW);

	for (i = 0; i < NSPACES; i++) {
		__u64 base = SPACES_GPA + i * 0x4000, spd = base + 0x2000, pt = base + 0x3000;

		memset(vm->mem + base, 0, 0x4000);
		if (mode == PG32) {
			spd = base;
		} else if (mode == PAE) {
			put_entry(vm, mode, base, 0, spd | P_P);
		} else {
			put_entry(vm, mode, base, 0, (base + 0x1000) | P_TABLE);
			memcpy(vm->mem + base + 0x1000, vm->mem + L3_GPA, 0x1000);
			put_entry(vm, mode, base + 0x1000, 0, spd | P_TABLE);
		}
		memcpy(vm->mem + spd, vm->mem + pd, 0x1000);
		put_entry(vm, mode, spd, pd_index(mode, SPACE_LA), pt | P_TABLE);
		put_entry(vm, mode, pt, 0, (SPACE_FRAMES + i * 0x1000) | P_P | P_RW);
	}
}

/* Tags in every frame the guest maps. */
static void fill_frames(struct vm *vm)
{
	unsigned int i;

	memset(vm->mem + FRAMES_GPA, 0, FRAMES_END - FRAMES_GPA);
	for (__u32 gpa = FRAMES_GPA; gpa < FRAMES_END; gpa += 0x1000)
		put32(vm, gpa, TAG(gpa));
	for (i = 0; i < NSPACES; i++)
		put32(vm, SPACE_FRAMES + i * 0x1000, SPACE_TAG(i));
	for (i = 0; i < COST_PAGES; i++)
		put32(vm, COST_FRAMES + i * 0x1000, COST_TAG(i));
}

static const __u64 gdt[] = {
	0,
	0x00cf9b000000ffffULL,	/* KCS32 */
	0x00cf93000000ffffULL,	/* KDS */
	0x00af9b000000ffffULL,	/* KCS64 */
	0x00cffb000000ffffULL,	/* UCS32 */
	0x00cff3000000ffffULL,	/* UDS */
	0x00affb000000ffffULL,	/* UCS64 */
	/* TSS_SEL: busy TSS at TSS_GPA, limit 0x67 (upper half in long mode) */
	0x67ULL | ((__u64)TSS_GPA << 16) | (0x8bULL << 40),
	0,
};

#define IDT_ENTRIES	32

/*
 * GDT, TSS (ring 0 stack for faults from ring 3) and IDT: vectors 0-31 are
 * trap gates to the stubs, so IF stays as it was (1: see run_test's spin32
 * about Bochs and IF=0 guests).
 */
static void install_descriptors(struct vm *vm, enum pg_mode mode, __u64 stubs)
{
	unsigned int v;

	memcpy(vm->mem + GDT_GPA, gdt, sizeof(gdt));
	memset(vm->mem + TSS_GPA, 0, 0x68);
	if (mode == LM) {
		put64(vm, TSS_GPA + 4, TSS_STACK_TOP);
	} else {
		put32(vm, TSS_GPA + 4, TSS_STACK_TOP);
		put32(vm, TSS_GPA + 8, KDS);
	}
	put32(vm, TSS_GPA + 0x64, 0x68 << 16);	/* I/O map base past the limit */
	memset(vm->mem + IDT_GPA, 0, IDT_ENTRIES * 16);
	for (v = 0; v < IDT_ENTRIES; v++) {
		__u64 off = stubs + 16 * v;
		__u64 gate = (off & 0xffff) | ((__u64)(mode == LM ? KCS64 : KCS32) << 16) |
			     (0x8fULL << 40) | ((off >> 16 & 0xffff) << 48);

		if (mode == LM) {
			put64(vm, IDT_GPA + v * 16, gate);
			put64(vm, IDT_GPA + v * 16 + 8, off >> 32);
		} else {
			put64(vm, IDT_GPA + v * 8, gate);
		}
	}
}

static void segment(struct kvm_segment *s, __u16 sel, __u8 type, bool l)
{
	*s = (struct kvm_segment){
		.base = 0, .limit = 0xffffffff, .selector = sel, .type = type,
		.present = 1, .dpl = 0, .db = !l, .s = 1, .l = l, .g = 1,
	};
}

/* ---- The fixture: one VM, vCPU 0 in the variant's paged mode -------------- */

FIXTURE(mmu) {
	struct vm vm;
	struct vcpu vcpu;
	struct kvm_cpuid2 *cpuid;
	__u32 entry[E_NR];
	bool nx, gig;
};

FIXTURE_VARIANT(mmu) {
	enum pg_mode mode;
	const char *name;	/* for mmu_cost's output */
	const char *start, *end;
};

FIXTURE_VARIANT_ADD(mmu, pg32) {
	.mode = PG32, .name = "32bit", .start = mmu_pg32_start, .end = mmu_pg32_end,
};

FIXTURE_VARIANT_ADD(mmu, pae) {
	.mode = PAE, .name = "pae", .start = mmu_pae_start, .end = mmu_pae_end,
};

FIXTURE_VARIANT_ADD(mmu, lm) {
	.mode = LM, .name = "64bit", .start = mmu_lm_start, .end = mmu_lm_end,
};

/*
 * Puts `vcpu` into the variant's mode at entry point `e` with stack `sp`:
 * CPUID first (EFER.LME/NXE depend on it), then SREGS and REGS.
 */
static void vcpu_setup(struct __test_metadata *_metadata, FIXTURE_DATA(mmu) *self,
		       const FIXTURE_VARIANT(mmu) *variant, struct vcpu *vcpu,
		       enum entry e, __u64 sp)
{
	enum pg_mode mode = variant->mode;
	struct kvm_regs regs = {
		.rip = CODE_GPA + self->entry[e], .rsp = sp, .rflags = 0x202,
	};
	struct kvm_sregs sregs;

	ASSERT_EQ(0, ioctl(vcpu->fd, KVM_SET_CPUID2, self->cpuid))
		TH_LOG("KVM_SET_CPUID2: %s", strerror(errno));
	ASSERT_EQ(0, ioctl(vcpu->fd, KVM_GET_SREGS, &sregs))
		TH_LOG("KVM_GET_SREGS: %s", strerror(errno));
	segment(&sregs.cs, mode == LM ? KCS64 : KCS32, 11, mode == LM);
	segment(&sregs.ds, KDS, 3, false);
	sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
	sregs.tr = (struct kvm_segment){
		.base = TSS_GPA, .limit = 0x67, .selector = TSS_SEL, .type = 11, .present = 1,
	};
	sregs.gdt.base = GDT_GPA;
	sregs.gdt.limit = sizeof(gdt) - 1;
	sregs.idt.base = IDT_GPA;
	sregs.idt.limit = IDT_ENTRIES * (mode == LM ? 16 : 8) - 1;
	sregs.cr0 = 0x80010033;		/* PG | WP | NE | ET | MP | PE */
	sregs.cr3 = TOP_GPA;
	sregs.cr4 = mode == PG32 ? 0x10 : 0x20;	/* PSE or PAE */
	sregs.efer = 0;
	if (mode == LM)
		sregs.efer |= 0x500;		/* LME | LMA */
	if (self->nx && mode != PG32)
		sregs.efer |= 0x800;		/* NXE */
	ASSERT_EQ(0, ioctl(vcpu->fd, KVM_SET_SREGS, &sregs))
		TH_LOG("KVM_SET_SREGS: %s", strerror(errno));
	ASSERT_EQ(0, ioctl(vcpu->fd, KVM_SET_REGS, &regs))
		TH_LOG("KVM_SET_REGS: %s", strerror(errno));
}

FIXTURE_SETUP(mmu)
{
	const struct kvm_cpuid_entry2 *ext;
	size_t size = variant->end - variant->start;
	bool lm;

	vm_create(_metadata, &self->vm, MEM_SIZE);
	vcpu_create(_metadata, &self->vm, 0, &self->vcpu);
	self->cpuid = rkvm_supported_cpuid(self->vm.dev);
	ASSERT_NE(NULL, self->cpuid) TH_LOG("KVM_GET_SUPPORTED_CPUID: %s", strerror(errno));
	ext = cpuid_entry(self->cpuid, 0x80000001);
	lm = ext && (ext->edx & (1u << 29));
	self->nx = ext && (ext->edx & (1u << 20));
	self->gig = variant->mode == LM && ext && (ext->edx & (1u << 26));
	if (variant->mode == LM && !lm)
		SKIP(return, "KVM_GET_SUPPORTED_CPUID has no long mode");

	ASSERT_GE((size_t)(TOP_GPA - CODE_GPA), size);
	memcpy(self->entry, variant->start, sizeof(self->entry));
	memcpy(self->vm.mem + CODE_GPA, variant->start, size);
	memset(self->vm.mem + VARS_GPA, 0, 0x1000);
	put32(&self->vm, V_FLAGS, (self->nx && variant->mode != PG32 ? FLAG_NX : 0) |
				  (self->gig ? FLAG_GIG : 0));
	build_tables(&self->vm, variant->mode, self->gig);
	fill_frames(&self->vm);
	install_descriptors(&self->vm, variant->mode, CODE_GPA + self->entry[E_STUBS]);
}

FIXTURE_TEARDOWN(mmu)
{
	free(self->cpuid);
	vcpu_destroy(&self->vcpu);
	vm_destroy(&self->vm);
}

#define VAL()		next_val(_metadata, &self->vcpu)
#define PF(cr2, err, what) \
	expect_fault(_metadata, &self->vcpu, 14, cr2, err, what)

/*
 * Map, remap (+INVLPG), unmap, read-only, NX and ring-3 accesses through
 * one PTE the guest writes itself; A/D bits of that PTE as the guest reads
 * them.
 */
TEST_F(mmu, map_remap_unmap_protect)
{
	bool nx = self->nx && variant->mode != PG32;
	static const __u8 ret_fn[] = { 0xb8, 0xde, 0xc0, 0x0d, 0x60, 0xc3 }; /* mov $NX_RET, %eax; ret */
	struct kvm_sregs sregs;
	__u32 pte;

	put32(&self->vm, F_MAP1 + 8, MAP1_8);
	put32(&self->vm, F_MAP1 + 0x20, MAP1_20);
	memcpy(self->vm.mem + F_CODE + 0x100, ret_fn, sizeof(ret_fn));
	vcpu_setup(_metadata, self, variant, &self->vcpu, E_MAP, STACK0_TOP);

	/* Mapped: reads F_MAP0's tag, a write reaches F_MAP0, PTE gets A and D. */
	EXPECT_EQ(TAG(F_MAP0), VAL());
	EXPECT_EQ(0x11111111U, VAL());
	EXPECT_EQ(F_MAP0 | 0x63U, VAL()) TH_LOG("PTE after a read and a write");
	/* Remapped to F_MAP1: its tag; A but not D after the read. */
	EXPECT_EQ(TAG(F_MAP1), VAL());
	pte = VAL();
	EXPECT_EQ(F_MAP1 | 0x23U, pte & ~0x40U);
	EXPECT_EQ(0U, pte & 0x40) TH_LOG("D set by a read: PTE %#x", pte);
	EXPECT_EQ(0x22222222U, VAL());
	EXPECT_EQ(0x11111111U, VAL()) TH_LOG("the old frame changed");
	EXPECT_EQ(F_MAP1 | 0x63U, VAL());
	/* Unmapped: not-present read (0) and write (2). */
	PF(WIN_LA + 0x10, 0, "not-present read");
	PF(WIN_LA + 0x14, 2, "not-present write");
	/* Read-only: the read works, a supervisor write with WP faults (3). */
	EXPECT_EQ(0x22222222U, VAL());
	PF(WIN_LA + 8, 3, "supervisor write to a read-only page, CR0.WP=1");
	EXPECT_EQ(MAP1_8, VAL()) TH_LOG("the faulting write landed");
	/* NX: fetch from an NX page (P | I/D), then from a not-present one (I/D). */
	if (nx) {
		EXPECT_EQ(NX_RET, VAL()) TH_LOG("call into the executable page");
		PF(WIN_LA + 0x100, 0x11, "fetch from an NX page");
		PF(WIN_LA + 0x100, 0x10, "fetch from a not-present page");
	} else {
		TH_LOG("no NX (%s): NX checks skipped",
		       variant->mode == PG32 ? "32-bit paging" : "not in supported CPUID");
	}
	/* Ring 3: supervisor page read (U|P = 5), write (U|W|P = 7). */
	PF(WIN_LA + 0x20, 5, "user read of a supervisor page");
	PF(WIN_LA + 0x20, 7, "user write to a supervisor page");
	/* User page: the read gets the value, the write lands (then DONE_LA). */
	EXPECT_EQ(MAP1_20, PF(DONE_LA, 4, "user read of a user page"));
	PF(DONE_LA, 4, "user write to a user page");
	EXPECT_EQ(0x44444444U, VAL());
	/* User read-only page: the write faults (7) whatever CR0.WP. */
	PF(WIN_LA + 0x20, 7, "user write to a read-only user page");
	expect_halt(_metadata, &self->vcpu);

	EXPECT_EQ(0x11111111U, mem32(&self->vm, F_MAP0 + 4));
	EXPECT_EQ(0x44444444U, mem32(&self->vm, F_MAP1 + 0x20));
	EXPECT_EQ(0U, mem32(&self->vm, F_MAP1 + 0x14));
	ASSERT_EQ(0, ioctl(self->vcpu.fd, KVM_GET_SREGS, &sregs));
	EXPECT_EQ((__u64)WIN_LA + 0x20, sregs.cr2);
	EXPECT_EQ((__u64)TOP_GPA, sregs.cr3);
}

static __u32 big_pattern(__u32 gpa)
{
	return (gpa * 0x9e3779b1u) ^ 0x5a5a5a5au;
}

/*
 * Reads and writes at LARGE_N offsets across the large pages (4 MiB PSE,
 * or two 2 MiB pages) see what the host put there; then the same through a
 * 1 GiB page where offered. The large entries get A and D.
 */
TEST_F(mmu, large_pages)
{
	__u64 pd = main_pd(variant->mode);
	unsigned int i, halves = 0;
	__u32 off;

	for (off = 0; off < (4 << 20); off += 4)
		put32(&self->vm, BIG_GPA + off, big_pattern(BIG_GPA + off));
	memset(self->vm.mem + RES_GPA, 0, 0x4000);
	vcpu_setup(_metadata, self, variant, &self->vcpu, E_LARGE, STACK0_TOP);

	EXPECT_EQ((__u32)LARGE_N, VAL());
	if (self->gig) {
		EXPECT_EQ((__u32)LARGE_N, VAL());
	} else if (variant->mode == LM) {
		TH_LOG("1 GiB pages not in KVM_GET_SUPPORTED_CPUID: that check skipped");
	}
	expect_halt(_metadata, &self->vcpu);

	for (i = 0; i < LARGE_N; i++) {
		off = (i * 0x41008) & 0x3ffff8;
		halves |= 1 << (off >> 21);
		EXPECT_EQ(big_pattern(BIG_GPA + off), mem32(&self->vm, RES_GPA + 4 * i))
			TH_LOG("read %u at BIG_LA + %#x", i, off);
		EXPECT_EQ(0xbe000000 | i, mem32(&self->vm, BIG_GPA + off))
			TH_LOG("write %u at BIG_LA + %#x", i, off);
		if (!self->gig)
			continue;
		EXPECT_EQ(0xbe000000 | i, mem32(&self->vm, RES_GPA + 0x100 + 4 * i))
			TH_LOG("read %u through the 1 GiB page", i);
		EXPECT_EQ(0xc1000000 | i, mem32(&self->vm, BIG_GPA + off + 4))
			TH_LOG("write %u through the 1 GiB page", i);
	}
	ASSERT_EQ(3U, halves);
	if (variant->mode == PG32) {
		EXPECT_EQ(P_A | P_D, get_entry(&self->vm, PG32, pd, pd_index(PG32, BIG_LA)) &
				     (P_A | P_D));
	} else {
		for (i = 0; i < 2; i++)
			EXPECT_EQ(P_A | P_D, get_entry(&self->vm, variant->mode, pd,
						       pd_index(variant->mode, BIG_LA) + i) &
					     (P_A | P_D)) TH_LOG("2 MiB page %u", i);
	}
	if (self->gig)
		EXPECT_EQ(P_A | P_D, get_entry(&self->vm, LM, L3_GPA, 1) & (P_A | P_D));
}

/*
 * FORK_N rewrites of live PTEs (frame and RW changing, INVLPG, check), then
 * COW_N copy-on-write faults fixed up by the guest's handler.
 */
TEST_F(mmu, fork_like_pt_writes)
{
	unsigned int i, writes = 0;
	__u32 last[2] = { 0, 0 };

	put32(&self->vm, F_C + 8, COW_ORIG);
	vcpu_setup(_metadata, self, variant, &self->vcpu, E_FORK, STACK0_TOP);

	for (i = 0; i < FORK_N; i++) {
		if (i & 32) {
			writes++;
			last[(i >> 4) & 1] = i;
		}
	}
	EXPECT_EQ((__u32)FORK_N, VAL()) TH_LOG("reads that saw the frame just mapped");
	EXPECT_EQ(writes, VAL()) TH_LOG("writes that landed in the frame just mapped");
	EXPECT_EQ((__u32)COW_N, VAL()) TH_LOG("copy-on-write rounds that checked out");
	EXPECT_EQ((__u32)COW_N, VAL()) TH_LOG("copy-on-write faults");
	EXPECT_EQ(0U, VAL()) TH_LOG("faults the fix-up did not expect");
	expect_halt(_metadata, &self->vcpu);

	EXPECT_EQ(last[0], mem32(&self->vm, F_A + 4));
	EXPECT_EQ(last[1], mem32(&self->vm, F_B + 4));
	EXPECT_EQ(COW_ORIG, mem32(&self->vm, F_C + 8));
	EXPECT_EQ((__u32)COW_N - 2, mem32(&self->vm, F_COPY0 + 8));
	EXPECT_EQ((__u32)COW_N - 1, mem32(&self->vm, F_COPY0 + 0x1000 + 8));
	EXPECT_EQ(TAG(F_C), mem32(&self->vm, F_COPY0));
	/* The last copy is mapped writable and was written. */
	EXPECT_EQ((__u64)(F_COPY0 + 0x1000) | P_P | P_RW | P_A | P_D,
		  get_entry(&self->vm, variant->mode, PT_WIN_GPA, 20));
}

/* NSPACES address spaces, SPACE_ROUNDS rounds of MOV CR3 over all of them. */
TEST_F(mmu, many_cr3_switches)
{
	struct kvm_sregs sregs;
	unsigned int i;

	vcpu_setup(_metadata, self, variant, &self->vcpu, E_SPACES, STACK0_TOP);
	EXPECT_EQ((__u32)(NSPACES * SPACE_ROUNDS), VAL()) TH_LOG("good visits");
	expect_halt(_metadata, &self->vcpu);

	for (i = 0; i < NSPACES; i++) {
		__u64 pt = SPACES_GPA + i * 0x4000 + 0x3000;
		__u64 f = SPACE_FRAMES + ((i + 1) % NSPACES) * 0x1000;

		EXPECT_EQ((__u32)SPACE_ROUNDS - 1, mem32(&self->vm, SPACE_FRAMES + i * 0x1000 + 4))
			TH_LOG("frame %u", i);
		EXPECT_EQ(f | P_P | P_RW | P_A | P_D, get_entry(&self->vm, variant->mode, pt, 0))
			TH_LOG("space %u", i);
	}
	ASSERT_EQ(0, ioctl(self->vcpu.fd, KVM_GET_SREGS, &sregs));
	EXPECT_EQ((__u64)SPACES_GPA + (NSPACES - 1) * 0x4000, sregs.cr3);
}

/* CR0.WP toggled WP_N times around supervisor writes to a read-only page. */
TEST_F(mmu, cr0_wp_toggle)
{
	struct kvm_sregs sregs;

	vcpu_setup(_metadata, self, variant, &self->vcpu, E_WP, STACK0_TOP);
	EXPECT_EQ((__u32)WP_N, VAL()) TH_LOG("writes with WP=0 that landed");
	EXPECT_EQ((__u32)WP_N, VAL()) TH_LOG("writes with WP=1 that faulted with error 3");
	PF(WIN_WP, 3, "the last write with WP=1");
	expect_halt(_metadata, &self->vcpu);

	EXPECT_EQ((__u32)WP_N - 1, mem32(&self->vm, F_WP));
	ASSERT_EQ(0, ioctl(self->vcpu.fd, KVM_GET_SREGS, &sregs));
	EXPECT_EQ(0x10000ULL, sregs.cr0 & 0x10000);
	/* Still read-only; dirty from the WP=0 writes. */
	EXPECT_EQ((__u64)F_WP | P_P | P_A | P_D,
		  get_entry(&self->vm, variant->mode, PT_WIN_GPA, 30));
}

/* A vCPU thread: the one value its guest reports, then HLT. */
struct runner {
	struct vcpu *vcpu;
	volatile int *stop;
	__u32 ok;
	char err[256];
};

static void *runner_thread(void *arg)
{
	struct runner *r = arg;
	__u16 port = 0;
	__u32 val = 0;
	int s = guest_step(r->vcpu, r->stop, &port, &val, r->err, sizeof(r->err));

	if (s == STEP_OUT && port == PORT_VAL) {
		r->ok = val;
		s = guest_step(r->vcpu, r->stop, &port, &val, r->err, sizeof(r->err));
		if (s == STEP_OUT)
			snprintf(r->err, sizeof(r->err), "extra OUT %#x to %#x", val, port);
	} else if (s == STEP_OUT) {
		snprintf(r->err, sizeof(r->err), "OUT %#x to port %#x", val, port);
	} else if (s == STEP_HLT) {
		snprintf(r->err, sizeof(r->err), "halted without a report");
	}
	if (r->err[0])
		*r->stop = 1;
	return NULL;
}

/*
 * Two vCPUs on the same tables: vCPU 0 changes a PTE, vCPU 1 must see the
 * change after its own INVLPG or CR3 reload, TWO_N rounds.
 */
TEST_F(mmu, two_vcpus_share_tables)
{
	volatile int stop = 0;
	struct runner r[2] = { { .vcpu = &self->vcpu }, { 0 } };
	struct vcpu vcpu1;
	pthread_t tid[2];
	unsigned int i;

	vcpu_create(_metadata, &self->vm, 1, &vcpu1);
	vcpu_setup(_metadata, self, variant, &self->vcpu, E_TWO0, STACK0_TOP);
	vcpu_setup(_metadata, self, variant, &vcpu1, E_TWO1, STACK1_TOP);
	r[1].vcpu = &vcpu1;
	for (i = 0; i < 2; i++) {
		r[i].stop = &stop;
		ASSERT_EQ(0, pthread_create(&tid[i], NULL, runner_thread, &r[i]));
	}
	for (i = 0; i < 2; i++)
		ASSERT_EQ(0, pthread_join(tid[i], NULL));

	for (i = 0; i < 2; i++) {
		EXPECT_STREQ("", r[i].err) TH_LOG("vCPU %u", i);
		EXPECT_EQ((__u32)TWO_N, r[i].ok) TH_LOG("vCPU %u: rounds that saw the new frame", i);
	}
	/* vCPU 1's writes: frame k holds the last round r with r % 4 == k. */
	for (i = 0; i < 4; i++) {
		__u32 last = TWO_N - ((TWO_N - i) % 4);

		EXPECT_EQ(last, mem32(&self->vm, F_T0 + i * 0x1000 + 4)) TH_LOG("frame %u", i);
	}
	EXPECT_EQ((__u32)TWO_N, mem32(&self->vm, V_ACK));
	vcpu_destroy(&vcpu1);
}

/*
 * A benchmark: cycles per first touch of a fresh page and per write to a
 * live PTE, as the guest's RDTSC counts them. Prints, asserts only that the
 * accesses were right.
 */
TEST_F(mmu, mmu_cost)
{
	unsigned long long fault, pt_write;
	unsigned int j;

	vcpu_setup(_metadata, self, variant, &self->vcpu, E_COST, STACK0_TOP);
	fault = VAL();
	fault |= (unsigned long long)VAL() << 32;
	EXPECT_EQ((__u32)COST_PAGES, VAL()) TH_LOG("pages that read back");
	pt_write = VAL();
	pt_write |= (unsigned long long)VAL() << 32;
	expect_halt(_metadata, &self->vcpu);

	for (j = 0; j < COST_PAGES; j++) {
		unsigned int last = j + 256 * ((COST_WRITES - 1 - j) / 256);
		__u32 f = (j + 1 + (last >> 8)) & 255;

		EXPECT_EQ(j, mem32(&self->vm, COST_FRAMES + j * 0x1000 + 4)) TH_LOG("page %u", j);
		EXPECT_EQ(f, mem32(&self->vm, RES_GPA + 4 * j)) TH_LOG("page %u after the PTE writes", j);
	}
	ksft_print_msg("mmu_cost %s: fault %llu cycles/page, pt_write %llu cycles/write\n",
		       variant->name, fault / COST_PAGES, pt_write / COST_WRITES);
}

TEST_HARNESS_MAIN
