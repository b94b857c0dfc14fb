// SPDX-License-Identifier: GPL-2.0
/*
 * KVM_RUN with real guest code: real mode from a chosen address and from the
 * reset vector, the switch to protected mode done by the guest, port I/O of
 * every size and its string forms, MMIO to unbacked addresses, a triple fault,
 * immediate_exit and signals, several VMs and vCPUs running at once, guest
 * CPUID from KVM_SET_CPUID2, and the errors KVM_RUN gives for bad callers.
 *
 * The guest code is assembled into this binary (top-level asm below, in its
 * own read-only section) and copied into an anonymous mapping that backs the
 * guest's memory. Each test checks exit reasons, the I/O and MMIO fields of
 * kvm_run, registers from KVM_GET_REGS/SREGS and guest memory.
 *
 * Run against /dev/rkvm, and with RKVM_DEV=/dev/kvm against kvm_intel to
 * show the expectations are KVM's; where rkvm deliberately differs the test
 * branches on rkvm_dev_is_rkvm() and says why.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "rkvm_util.h"

#define STR(x) #x
#define XSTR(x) STR(x)

#define MEM_SIZE	(2UL << 20)	/* guest memory at gpa 0 */
#define CODE_GPA	0x1000		/* where the guest code is loaded */
#define RES_GPA		0x4000		/* results the guest stores */
#define BUF_GPA		0x5000		/* a buffer for string input */
#define PD_GPA		0x10000		/* page directory of the paging test */
#define PT_GPA		0x11000		/* its one page table */

#define PORT_CON	0xe9		/* console: one byte per OUT */

/*
 * Guest address of `sym` in a blob that starts at `start` and is loaded at
 * CODE_GPA: an assembler expression, usable as $immediate or as a memory
 * operand (no outer parentheses, which AT&T would read as a register).
 */
#define AT(sym, start) #sym " - " #start " + " XSTR(CODE_GPA)

#define GUEST_BEGIN ".pushsection .rodata.guest, \"a\"\n"
#define GUEST_END ".code64\n.popsection\n"

/* Real mode: print a string on PORT_CON, then halt. */
asm(GUEST_BEGIN
	".code16\n"
	".global hello16_start, hello16_after_hlt, hello16_end\n"
	"hello16_start:\n"
	"	mov $" AT(hello16_msg, hello16_start) ", %si\n"
	"1:	lodsb\n"
	"	test %al, %al\n"
	"	jz 2f\n"
	"	out %al, $" XSTR(PORT_CON) "\n"
	"	jmp 1b\n"
	"2:	hlt\n"
	"hello16_after_hlt:\n"
	"hello16_msg:\n"
	"	.asciz \"Hello from real mode\\n\"\n"
	"hello16_end:\n"
	GUEST_END);
extern const char hello16_start[], hello16_after_hlt[], hello16_end[];

/*
 * The last 0x40 bytes of the reset segment (CS base 0xffff0000): the payload
 * at offset 0xffc0 and, at the reset vector 0xfff0, a short jump to it.
 */
#define RESET_BYTE	0x5a
#define RESET_OFFSET	0xffc0
asm(GUEST_BEGIN
	".code16\n"
	".global reset16_start, reset16_after_hlt, reset16_vector, reset16_end\n"
	"reset16_start:\n"
	"	mov $" XSTR(RESET_BYTE) ", %al\n"
	"	out %al, $" XSTR(PORT_CON) "\n"
	"	hlt\n"
	"reset16_after_hlt:\n"
	"	.org reset16_start + 0xfff0 - " XSTR(RESET_OFFSET) "\n"
	"reset16_vector:\n"
	"	jmp reset16_start\n"
	"reset16_end:\n"
	GUEST_END);
extern const char reset16_start[], reset16_after_hlt[], reset16_vector[], reset16_end[];

/*
 * Real mode to protected mode by the guest itself: its own GDT, CR0.PE, a far
 * jump to 32-bit code with selector 0x18, data selector 0x20, then OUT.
 */
#define RTP_PORT	0x10
#define RTP_VALUE	0xcafef00d
#define RTP_CS		0x18
#define RTP_DS		0x20
asm(GUEST_BEGIN
	".code16\n"
	".global rtp16_start, rtp32_after_hlt, rtp16_gdt, rtp16_gdt_end, rtp16_end\n"
	"rtp16_start:\n"
	"	cli\n"
	"	lgdtl " AT(rtp16_gdtr, rtp16_start) "\n"
	"	mov %cr0, %eax\n"
	"	or $1, %eax\n"
	"	mov %eax, %cr0\n"
	"	ljmpl $" XSTR(RTP_CS) ", $" AT(rtp32_entry, rtp16_start) "\n"
	".code32\n"
	"rtp32_entry:\n"
	"	mov $" XSTR(RTP_DS) ", %ax\n"
	"	mov %ax, %ds\n"
	"	mov %ax, %es\n"
	"	mov %ax, %fs\n"
	"	mov %ax, %gs\n"
	"	mov %ax, %ss\n"
	"	mov $" XSTR(RTP_VALUE) ", %eax\n"
	"	out %eax, $" XSTR(RTP_PORT) "\n"
	"	hlt\n"
	"rtp32_after_hlt:\n"
	"	.p2align 3\n"
	"rtp16_gdt:\n"
	"	.quad 0\n"
	"	.quad 0\n"
	"	.quad 0\n"
	"	.quad 0x00cf9a000000ffff\n"	/* 0x18: code, base 0, 4 GiB, 32-bit */
	"	.quad 0x00cf92000000ffff\n"	/* 0x20: data, base 0, 4 GiB */
	"rtp16_gdt_end:\n"
	"rtp16_gdtr:\n"
	"	.word rtp16_gdt_end - rtp16_gdt - 1\n"
	"	.long " AT(rtp16_gdt, rtp16_start) "\n"
	"rtp16_end:\n"
	GUEST_END);
extern const char rtp16_start[], rtp32_after_hlt[], rtp16_gdt[], rtp16_gdt_end[], rtp16_end[];

/*
 * 32-bit IN of each size (saving EAX after each in EBX, ECX, EDX), some
 * arithmetic on the three, and OUT of each size.
 */
#define PIO_IN_B	0x60
#define PIO_IN_W	0x62
#define PIO_IN_L	0x64
#define PIO_OUT_B	0x70
#define PIO_OUT_W	0x72
#define PIO_OUT_L	0x74
asm(GUEST_BEGIN
	".code32\n"
	".global pio32_start, pio32_after_hlt, pio32_end\n"
	"pio32_start:\n"
	"	inb $" XSTR(PIO_IN_B) ", %al\n"
	"	mov %eax, %ebx\n"
	"	inw $" XSTR(PIO_IN_W) ", %ax\n"
	"	mov %eax, %ecx\n"
	"	inl $" XSTR(PIO_IN_L) ", %eax\n"
	"	mov %eax, %edx\n"
	"	add %ebx, %eax\n"
	"	xor %ecx, %eax\n"
	"	outb %al, $" XSTR(PIO_OUT_B) "\n"
	"	ror $8, %eax\n"
	"	outw %ax, $" XSTR(PIO_OUT_W) "\n"
	"	ror $8, %eax\n"
	"	outl %eax, $" XSTR(PIO_OUT_L) "\n"
	"	hlt\n"
	"pio32_after_hlt:\n"
	"pio32_end:\n"
	GUEST_END);
extern const char pio32_start[], pio32_after_hlt[], pio32_end[];

/*
 * String I/O: REP OUTSB of 40 bytes, REP INSW of 8 words into BUF_GPA,
 * REP OUTSB backwards (DF=1) and one OUTSL. ESI/EDI/ECX after each REP go
 * to RES_GPA.
 */
#define SIO_PORT_OUT	0x100
#define SIO_PORT_IN	0x102
#define SIO_PORT_REV	0x104
#define SIO_PORT_L	0x106
#define SIO_STR40	"The quick brown fox jumps over lazy dogs"
#define SIO_REV		"0123456789"
#define SIO_DWORD	0x89abcdef
#define SIO_WORDS	8
asm(GUEST_BEGIN
	".code32\n"
	".global sio32_start, sio32_str40, sio32_rev, sio32_dword, sio32_after_hlt, sio32_end\n"
	"sio32_start:\n"
	"	cld\n"
	"	mov $" AT(sio32_str40, sio32_start) ", %esi\n"
	"	mov $40, %ecx\n"
	"	mov $" XSTR(SIO_PORT_OUT) ", %dx\n"
	"	rep outsb\n"
	"	mov %esi, " XSTR(RES_GPA) "\n"
	"	mov %ecx, " XSTR(RES_GPA) " + 4\n"
	"	mov $" XSTR(BUF_GPA) ", %edi\n"
	"	mov $" XSTR(SIO_WORDS) ", %ecx\n"
	"	mov $" XSTR(SIO_PORT_IN) ", %dx\n"
	"	rep insw\n"
	"	mov %edi, " XSTR(RES_GPA) " + 8\n"
	"	mov %ecx, " XSTR(RES_GPA) " + 12\n"
	"	std\n"
	"	mov $" AT(sio32_rev, sio32_start) " + 9, %esi\n"
	"	mov $10, %ecx\n"
	"	mov $" XSTR(SIO_PORT_REV) ", %dx\n"
	"	rep outsb\n"
	"	cld\n"
	"	mov %esi, " XSTR(RES_GPA) " + 16\n"
	"	mov %ecx, " XSTR(RES_GPA) " + 20\n"
	"	mov $" AT(sio32_dword, sio32_start) ", %esi\n"
	"	mov $" XSTR(SIO_PORT_L) ", %dx\n"
	"	outsl\n"
	"	hlt\n"
	"sio32_after_hlt:\n"
	"sio32_str40:\n"
	"	.ascii \"" SIO_STR40 "\"\n"
	"sio32_rev:\n"
	"	.ascii \"" SIO_REV "\"\n"
	"	.p2align 2\n"
	"sio32_dword:\n"
	"	.long " XSTR(SIO_DWORD) "\n"
	"sio32_end:\n"
	GUEST_END);
extern const char sio32_start[], sio32_str40[], sio32_rev[], sio32_dword[],
	sio32_after_hlt[], sio32_end[];

/* MMIO to addresses no memslot covers. */
#define MMIO_GPA	0xd0000000ULL
asm(GUEST_BEGIN
	".code32\n"
	".global mmio32_start, mmio32_after_hlt, mmio32_end\n"
	"mmio32_start:\n"
	"	movl $0xdeadbeef, 0xd0000000\n"
	"	mov $0x5678, %eax\n"
	"	movw %ax, 0xd0000004\n"
	"	movl 0xd0000008, %ebx\n"
	"	movzbl 0xd0000010, %ecx\n"
	"	hlt\n"
	"mmio32_after_hlt:\n"
	"mmio32_end:\n"
	GUEST_END);
extern const char mmio32_start[], mmio32_after_hlt[], mmio32_end[];

/*
 * Hypercalls (VMCALL) at CPL 0 in 32-bit mode: VAPIC_POLL_IRQ (1), an
 * unknown number and SCHED_YIELD (11); EAX after each to HC_PORT.
 */
#define HC_PORT		0x33
asm(GUEST_BEGIN
	".code32\n"
	".global hc32_start, hc32_end\n"
	"hc32_start:\n"
	"	mov $1, %eax\n"
	"	vmcall\n"
	"	out %eax, $" XSTR(HC_PORT) "\n"
	"	mov $12345, %eax\n"
	"	vmcall\n"
	"	out %eax, $" XSTR(HC_PORT) "\n"
	"	mov $11, %eax\n"
	"	xor %ebx, %ebx\n"
	"	vmcall\n"
	"	out %eax, $" XSTR(HC_PORT) "\n"
	"	hlt\n"
	"hc32_end:\n"
	GUEST_END);
extern const char hc32_start[], hc32_end[];

/* A loop: OUT to SR_PORT, then RBX + 1 (one OUT per KVM_RUN). */
#define SR_PORT		0x34
asm(GUEST_BEGIN
	".code32\n"
	".global sr32_start, sr32_end\n"
	"sr32_start:\n"
	"	out %al, $" XSTR(SR_PORT) "\n"
	"	inc %ebx\n"
	"	jmp sr32_start\n"
	"sr32_end:\n"
	GUEST_END);
extern const char sr32_start[], sr32_end[];

/* An x87 load from MMIO, which neither KVM nor rkvm emulates, then HLT. */
asm(GUEST_BEGIN
	".code32\n"
	".global fld32_start, fld32_insn, fld32_after, fld32_end\n"
	"fld32_start:\n"
	"	mov $0xd0000000, %eax\n"
	"fld32_insn:\n"
	"	flds (%eax)\n"
	"fld32_after:\n"
	"	hlt\n"
	"fld32_end:\n"
	GUEST_END);
extern const char fld32_start[], fld32_insn[], fld32_after[], fld32_end[];

/* A second slot at SLOT2_GPA: read-only in readonly_slot, remapped by the
 * host under the running guest in host_changes_reach_guest. */
#define SLOT2_GPA	0x200000
#define SLOT2_PORT	0x42
asm(GUEST_BEGIN
	".code32\n"
	".global ro32_start, ro32_end\n"
	"ro32_start:\n"
	"	movl 0x200000, %eax\n"
	"	out %eax, $" XSTR(SLOT2_PORT) "\n"
	"	movl $0xcafe, 0x200004\n"
	"	movl 0x200004, %ebx\n"
	"	mov %ebx, %eax\n"
	"	out %eax, $" XSTR(SLOT2_PORT) "\n"
	"	hlt\n"
	"ro32_end:\n"
	GUEST_END);
extern const char ro32_start[], ro32_end[];

/* Reads the first word of the second slot and reports it, forever. */
asm(GUEST_BEGIN
	".code32\n"
	".global peek32_start, peek32_end\n"
	"peek32_start:\n"
	"	movl 0x200000, %eax\n"
	"	out %eax, $" XSTR(SLOT2_PORT) "\n"
	"	jmp peek32_start\n"
	"peek32_end:\n"
	GUEST_END);
extern const char peek32_start[], peek32_end[];

/* Writes pages 0, 3 and 7 of the second slot, reads page 5; then writes
 * pages 3 and 9. */
asm(GUEST_BEGIN
	".code32\n"
	".global dirty32_start, dirty32_end\n"
	"dirty32_start:\n"
	"	movl $1, 0x200000\n"
	"	movl $1, 0x203000\n"
	"	movl $1, 0x207000\n"
	"	movl 0x205000, %eax\n"
	"	out %eax, $" XSTR(SLOT2_PORT) "\n"
	"	movl $2, 0x203004\n"
	"	movl $2, 0x209000\n"
	"	hlt\n"
	"dirty32_end:\n"
	GUEST_END);
extern const char dirty32_start[], dirty32_end[];

/* Reads the words at EBX, ECX, EDX and ESI and reports each. */
asm(GUEST_BEGIN
	".code32\n"
	".global read4_start, read4_end\n"
	"read4_start:\n"
	"	movl (%ebx), %eax\n"
	"	out %eax, $" XSTR(SLOT2_PORT) "\n"
	"	movl (%ecx), %eax\n"
	"	out %eax, $" XSTR(SLOT2_PORT) "\n"
	"	movl (%edx), %eax\n"
	"	out %eax, $" XSTR(SLOT2_PORT) "\n"
	"	movl (%esi), %eax\n"
	"	out %eax, $" XSTR(SLOT2_PORT) "\n"
	"	hlt\n"
	"read4_end:\n"
	GUEST_END);
extern const char read4_start[], read4_end[];

/* #UD with an empty IDT: #GP, #DF, then a triple fault. */
asm(GUEST_BEGIN
	".code32\n"
	".global triple32_start, triple32_end\n"
	"triple32_start:\n"
	"	lidt " AT(triple32_idtr, triple32_start) "\n"
	"	ud2\n"
	"	hlt\n"
	"triple32_idtr:\n"
	"	.word 0\n"
	"	.long 0\n"
	"triple32_end:\n"
	GUEST_END);
extern const char triple32_start[], triple32_end[];

/* One IN, then HLT. */
#define IMM_PORT	0x40
asm(GUEST_BEGIN
	".code32\n"
	".global imm32_start, imm32_after_in, imm32_after_hlt, imm32_end\n"
	"imm32_start:\n"
	"	inl $" XSTR(IMM_PORT) ", %eax\n"
	"imm32_after_in:\n"
	"	hlt\n"
	"imm32_after_hlt:\n"
	"imm32_end:\n"
	GUEST_END);
extern const char imm32_start[], imm32_after_in[], imm32_after_hlt[], imm32_end[];

/* Spins forever. */
asm(GUEST_BEGIN
	".code32\n"
	".global spin32_start, spin32_end\n"
	"spin32_start:\n"
	/*
	 * IF=1: Bochs 2.7 does not take an external-interrupt VM exit from
	 * a guest that runs with IF=0 (real CPUs do), so an IF=0 spin
	 * would hang the emulated host (Documentation/rkvm/lab.rst).
	 */
	"	sti\n"
	"spin32_loop:\n"
	"	jmp spin32_loop\n"
	"spin32_end:\n"
	GUEST_END);
extern const char spin32_start[], spin32_end[];

/*
 * OUT of 0, 1, ..., COUNT_N - 1 to port DX, then the final count to the
 * address in EBX, then HLT. DX and EBX come from KVM_SET_REGS.
 */
#define COUNT_N		2000
asm(GUEST_BEGIN
	".code32\n"
	".global count32_start, count32_after_hlt, count32_end\n"
	"count32_start:\n"
	"	xor %eax, %eax\n"
	"1:	outl %eax, (%dx)\n"
	"	inc %eax\n"
	"	cmp $" XSTR(COUNT_N) ", %eax\n"
	"	jne 1b\n"
	"	mov %eax, (%ebx)\n"
	"	hlt\n"
	"count32_after_hlt:\n"
	"count32_end:\n"
	GUEST_END);
extern const char count32_start[], count32_after_hlt[], count32_end[];

/*
 * CPUID leaf 0 (registers stored at RES_GPA), leaf 0x80000000 (EAX stored at
 * RES_GPA + 16), then leaf 1 left in the registers at HLT.
 */
asm(GUEST_BEGIN
	".code32\n"
	".global cpuid32_start, cpuid32_end\n"
	"cpuid32_start:\n"
	"	xor %eax, %eax\n"
	"	xor %ecx, %ecx\n"
	"	cpuid\n"
	"	mov %eax, " XSTR(RES_GPA) "\n"
	"	mov %ebx, " XSTR(RES_GPA) " + 4\n"
	"	mov %ecx, " XSTR(RES_GPA) " + 8\n"
	"	mov %edx, " XSTR(RES_GPA) " + 12\n"
	"	mov $0x80000000, %eax\n"
	"	xor %ecx, %ecx\n"
	"	cpuid\n"
	"	mov %eax, " XSTR(RES_GPA) " + 16\n"
	"	mov $1, %eax\n"
	"	xor %ecx, %ecx\n"
	"	cpuid\n"
	"	hlt\n"
	"cpuid32_end:\n"
	GUEST_END);
extern const char cpuid32_start[], cpuid32_end[];

/* RDTSC, BENCH_N CPUIDs, RDTSC; OUT of the 64-bit delta, low half first. */
#define BENCH_N		2000
#define BENCH_PORT_LO	0xb0
#define BENCH_PORT_HI	0xb4
asm(GUEST_BEGIN
	".code32\n"
	".global bench32_start, bench32_end\n"
	"bench32_start:\n"
	"	rdtsc\n"
	"	mov %eax, %esi\n"
	"	mov %edx, %edi\n"
	"	mov $" XSTR(BENCH_N) ", %ebp\n"
	"1:	xor %eax, %eax\n"
	"	xor %ecx, %ecx\n"
	"	cpuid\n"
	"	dec %ebp\n"
	"	jnz 1b\n"
	"	rdtsc\n"
	"	sub %esi, %eax\n"
	"	sbb %edi, %edx\n"
	"	outl %eax, $" XSTR(BENCH_PORT_LO) "\n"
	"	mov %edx, %eax\n"
	"	outl %eax, $" XSTR(BENCH_PORT_HI) "\n"
	"	hlt\n"
	"bench32_end:\n"
	GUEST_END);
extern const char bench32_start[], bench32_end[];


/* Just HLT. */
asm(GUEST_BEGIN
	".code32\n"
	".global halt32_start, halt32_end\n"
	"halt32_start:\n"
	"	hlt\n"
	"halt32_end:\n"
	GUEST_END);
extern const char halt32_start[], halt32_end[];

/*
 * Spins (IF=1, see spin32) until the dword at EBX is non-zero, then OUTs it
 * to port DX and halts.
 */
asm(GUEST_BEGIN
	".code32\n"
	".global poll32_start, poll32_end\n"
	"poll32_start:\n"
	"	sti\n"
	"1:	mov (%ebx), %eax\n"
	"	test %eax, %eax\n"
	"	jz 1b\n"
	"	out %eax, %dx\n"
	"	hlt\n"
	"poll32_end:\n"
	GUEST_END);
extern const char poll32_start[], poll32_end[];

/* Spins with interrupts disabled (IF=0) forever. */
asm(GUEST_BEGIN
	".code32\n"
	".global cli_spin32_start, cli_spin32_end\n"
	"cli_spin32_start:\n"
	"	cli\n"
	"1:	jmp 1b\n"
	"cli_spin32_end:\n"
	GUEST_END);
extern const char cli_spin32_start[], cli_spin32_end[];

/*
 * Real mode with interrupts: installs IVT entries for vector IRQ_VECTOR and
 * for the NMI (2), whose handlers OUT a marker to PORT_CON and IRET. Then
 * CLI, an OUT to IRQ_PORT (so the host sees IF=0), STI and a HLT loop.
 */
#define IRQ_VECTOR	0x20
#define IRQ_PORT	0x80
#define IRQ_MARK	0x41
#define NMI_MARK	0x4e
asm(GUEST_BEGIN
	".code16\n"
	".global irq16_start, irq16_end\n"
	"irq16_start:\n"
	"	xor %ax, %ax\n"
	"	mov %ax, %ds\n"
	"	mov %ax, %ss\n"
	"	mov $0x8000, %sp\n"
	"	movw $" AT(irq16_handler, irq16_start) ", " XSTR(IRQ_VECTOR * 4) "\n"
	"	movw $0, " XSTR(IRQ_VECTOR * 4 + 2) "\n"
	"	movw $" AT(irq16_nmi, irq16_start) ", 8\n"
	"	movw $0, 10\n"
	"	cli\n"
	"	out %al, $" XSTR(IRQ_PORT) "\n"
	"	sti\n"
	"	nop\n"
	"1:	hlt\n"
	"	jmp 1b\n"
	"irq16_handler:\n"
	"	mov $" XSTR(IRQ_MARK) ", %al\n"
	"	out %al, $" XSTR(PORT_CON) "\n"
	"	iret\n"
	"irq16_nmi:\n"
	"	mov $" XSTR(NMI_MARK) ", %al\n"
	"	out %al, $" XSTR(PORT_CON) "\n"
	"	iret\n"
	"irq16_end:\n"
	GUEST_END);
extern const char irq16_start[], irq16_end[];

/*
 * FPU state in and out: enables SSE (CR4.OSFXSR/OSXMMEXCPT), OUTs XMM0's
 * low dword to FPU_PORT, stores the x87 control word at RES_GPA, loads
 * FPU_XMM1 into XMM1's low dword, halts.
 */
#define FPU_PORT	0x30
#define FPU_XMM1	0x9abcdef0
asm(GUEST_BEGIN
	".code32\n"
	".global fpu32_start, fpu32_end\n"
	"fpu32_start:\n"
	"	mov %cr4, %eax\n"
	"	or $0x600, %eax\n"
	"	mov %eax, %cr4\n"
	"	movd %xmm0, %eax\n"
	"	out %eax, $" XSTR(FPU_PORT) "\n"
	"	fnstcw " XSTR(RES_GPA) "\n"
	"	mov $" XSTR(FPU_XMM1) ", %eax\n"
	"	movd %eax, %xmm1\n"
	"	hlt\n"
	"fpu32_end:\n"
	GUEST_END);
extern const char fpu32_start[], fpu32_end[];

/*
 * MSRs from the guest (real mode): WRMSR of STAR, RDMSR of PAT (both halves
 * to MSR_PORT) and LSTAR (low half to MSR_PORT + 1), then RDMSR of an MSR
 * nobody implements, whose #GP runs the vector-13 handler: marker 'G' to
 * PORT_CON and HLT.
 */
#define MSR_PORT	0x31
#define MSR_GP_MARK	0x47
#define MSR_UNKNOWN	0x12345
asm(GUEST_BEGIN
	".code16\n"
	".global msr16_start, msr16_end\n"
	"msr16_start:\n"
	"	xor %ax, %ax\n"
	"	mov %ax, %ds\n"
	"	mov %ax, %ss\n"
	"	mov $0x8000, %sp\n"
	"	movw $" AT(msr16_gp, msr16_start) ", 52\n"
	"	movw $0, 54\n"
	"	mov $0xc0000081, %ecx\n"
	"	mov $0x11111111, %eax\n"
	"	mov $0x22222222, %edx\n"
	"	wrmsr\n"
	"	mov $0x277, %ecx\n"
	"	rdmsr\n"
	"	out %eax, $" XSTR(MSR_PORT) "\n"
	"	mov %edx, %eax\n"
	"	out %eax, $" XSTR(MSR_PORT) "\n"
	"	mov $0xc0000082, %ecx\n"
	"	rdmsr\n"
	"	out %eax, $" XSTR(MSR_PORT) " + 1\n"
	"	mov $" XSTR(MSR_UNKNOWN) ", %ecx\n"
	"	rdmsr\n"
	"	hlt\n"
	"msr16_gp:\n"
	"	mov $" XSTR(MSR_GP_MARK) ", %al\n"
	"	out %al, $" XSTR(PORT_CON) "\n"
	"	hlt\n"
	"msr16_end:\n"
	GUEST_END);
extern const char msr16_start[], msr16_end[];

/*
 * MSR accesses user space handles (KVM_CAP_X86_USER_SPACE_MSR and the MSR
 * filter), in real mode: RDMSR of an MSR nobody implements (EAX and EDX
 * to MSR_PORT), WRMSR of it (EDX:EAX = 0x55667788:11223344), RDMSR of STAR,
 * WRMSR of an invalid PAT (2), RDMSR of PAT (EAX to MSR_PORT), HLT. The #GP
 * handler writes MSR_GP_MARK to PORT_CON and skips the 2-byte instruction.
 */
#define MSR_NOBODY	0x474f4f00
asm(GUEST_BEGIN
	".code16\n"
	".global umsr16_start, umsr16_end\n"
	"umsr16_start:\n"
	"	xor %ax, %ax\n"
	"	mov %ax, %ds\n"
	"	mov %ax, %ss\n"
	"	mov $0x8000, %sp\n"
	"	movw $" AT(umsr16_gp, umsr16_start) ", 52\n"
	"	movw $0, 54\n"
	"	mov $" XSTR(MSR_NOBODY) ", %ecx\n"
	"	rdmsr\n"
	"	out %eax, $" XSTR(MSR_PORT) "\n"
	"	mov %edx, %eax\n"
	"	out %eax, $" XSTR(MSR_PORT) "\n"
	"	mov $0x11223344, %eax\n"
	"	mov $0x55667788, %edx\n"
	"	wrmsr\n"
	"	mov $0xc0000081, %ecx\n"
	"	rdmsr\n"
	"	mov $0x277, %ecx\n"
	"	mov $2, %eax\n"
	"	xor %edx, %edx\n"
	"	wrmsr\n"
	"	rdmsr\n"
	"	out %eax, $" XSTR(MSR_PORT) "\n"
	"	hlt\n"
	"umsr16_gp:\n"
	"	push %ax\n"
	"	mov $" XSTR(MSR_GP_MARK) ", %al\n"
	"	out %al, $" XSTR(PORT_CON) "\n"
	"	pop %ax\n"
	"	mov %sp, %bp\n"
	"	addw $2, 0(%bp)\n"
	"	iret\n"
	"umsr16_end:\n"
	GUEST_END);
extern const char umsr16_start[], umsr16_end[];

/*
 * 32-bit paging, exercised by the guest: turns paging on with CR3 = PD_GPA
 * (identity map of the first 2 MiB, and linear ALIAS_LA -> DATA_GPA), then
 *   1. writes through ALIAS_LA and reads the value back through the
 *      identity map;
 *   2. points the alias at DATA2_GPA by writing its own page table, INVLPG,
 *      reads through the alias;
 *   3. loads CR3 = PD2_GPA, where the alias maps DATA3_GPA, reads;
 *   4. reads the unmapped UNMAPPED_LA: the #PF handler OUTs CR2 and the
 *      error code, then halts.
 * Every value goes to PG_PORT.
 */
#define PG_PORT		0x40
#define PG_FAULT_PORT	0x41
#define GDT_GPA		0x3000
#define IDT_GPA		0x6000
#define DATA_GPA	0x7000
#define DATA2_GPA	0x8000
#define DATA3_GPA	0x9000
#define PT2_GPA		0x12000
#define PD2_GPA		0x13000
#define PT3_GPA		0x14000
#define ALIAS_LA	0x400000
#define UNMAPPED_LA	0x800000
asm(GUEST_BEGIN
	".code32\n"
	".global paging32_start, paging32_pf, paging32_end\n"
	"paging32_start:\n"
	"	mov $" XSTR(PD_GPA) ", %eax\n"
	"	mov %eax, %cr3\n"
	"	mov %cr0, %eax\n"
	"	or $0x80010000, %eax\n"
	"	mov %eax, %cr0\n"
	"	movl $0xfeedface, " XSTR(ALIAS_LA) "\n"
	"	mov " XSTR(DATA_GPA) ", %eax\n"
	"	out %eax, $" XSTR(PG_PORT) "\n"
	"	movl $(" XSTR(DATA2_GPA) " | 3), " XSTR(PT2_GPA) "\n"
	"	invlpg " XSTR(ALIAS_LA) "\n"
	"	mov " XSTR(ALIAS_LA) ", %eax\n"
	"	out %eax, $" XSTR(PG_PORT) "\n"
	"	mov $" XSTR(PD2_GPA) ", %eax\n"
	"	mov %eax, %cr3\n"
	"	mov " XSTR(ALIAS_LA) ", %eax\n"
	"	out %eax, $" XSTR(PG_PORT) "\n"
	"	mov " XSTR(UNMAPPED_LA) ", %eax\n"
	"	hlt\n"
	"paging32_pf:\n"
	"	mov %cr2, %eax\n"
	"	out %eax, $" XSTR(PG_FAULT_PORT) "\n"
	"	pop %eax\n"
	"	out %eax, $" XSTR(PG_FAULT_PORT) "\n"
	"	hlt\n"
	"paging32_end:\n"
	GUEST_END);
extern const char paging32_start[], paging32_pf[], paging32_end[];

/*
 * PAE paging, set up by the guest: CR4.PAE, CR3 = PDPT_GPA, CR0.PG. The
 * tables (8-byte entries) map the first 2 MiB with one 2 MiB page and
 * ALIAS_LA -> DATA_GPA with a 4 KiB page. The guest writes through the
 * alias, reads back through the large page, then writes to the read-only
 * RO_LA: the #PF handler OUTs CR2 and the error code (present | write).
 */
#define PDPT_GPA	0x15000
#define PAE_PD_GPA	0x16000
#define PAE_PT_GPA	0x17000
#define RO_LA		0x401000
asm(GUEST_BEGIN
	".code32\n"
	".global pae32_start, pae32_pf, pae32_end\n"
	"pae32_start:\n"
	"	mov %cr4, %eax\n"
	"	or $0x20, %eax\n"
	"	mov %eax, %cr4\n"
	"	mov $" XSTR(PDPT_GPA) ", %eax\n"
	"	mov %eax, %cr3\n"
	"	mov %cr0, %eax\n"
	"	or $0x80010000, %eax\n"
	"	mov %eax, %cr0\n"
	"	movl $0x5ae5ae55, " XSTR(ALIAS_LA) "\n"
	"	mov " XSTR(DATA_GPA) ", %eax\n"
	"	out %eax, $" XSTR(PG_PORT) "\n"
	"	movl $1, " XSTR(RO_LA) "\n"
	"	hlt\n"
	"pae32_pf:\n"
	"	mov %cr2, %eax\n"
	"	out %eax, $" XSTR(PG_FAULT_PORT) "\n"
	"	pop %eax\n"
	"	out %eax, $" XSTR(PG_FAULT_PORT) "\n"
	"	hlt\n"
	"pae32_end:\n"
	GUEST_END);
extern const char pae32_start[], pae32_pf[], pae32_end[];

/* ---- Helpers ----------------------------------------------------------- */

struct vm {
	int dev;
	int fd;
	char *mem;		/* backing of gpa 0 .. mem_size, or NULL */
	size_t mem_size;
};

struct vcpu {
	int fd;
	struct kvm_run *run;
	size_t run_size;
};

enum cpu_mode { REAL_MODE, FLAT32 };

/* Opens the device and creates a VM; mem_size bytes at gpa 0 unless 0. */
static void vm_create(struct __test_metadata *_metadata, struct vm *vm, size_t mem_size)
{
	struct kvm_userspace_memory_region r = { .slot = 0, .memory_size = mem_size };

	memset(vm, 0, sizeof(*vm));
	vm->dev = open(rkvm_dev_path(), O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, vm->dev) TH_LOG("open %s: %s", rkvm_dev_path(), strerror(errno));
	vm->fd = ioctl(vm->dev, KVM_CREATE_VM, 0);
	ASSERT_LE(0, vm->fd) TH_LOG("KVM_CREATE_VM: %s", strerror(errno));
	if (!mem_size)
		return;
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
	if (vm->mem)
		munmap(vm->mem, vm->mem_size);
}

static void vcpu_create(struct __test_metadata *_metadata, struct vm *vm, int id,
			struct vcpu *vcpu)
{
	int size = ioctl(vm->dev, KVM_GET_VCPU_MMAP_SIZE, 0);

	ASSERT_LT(0, size) TH_LOG("KVM_GET_VCPU_MMAP_SIZE: %s", strerror(errno));
	ASSERT_LE((int)sizeof(struct kvm_run), size);
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

/* Copies the blob [start, end) to gpa in the memory at gpa 0. */
static void load_code(struct __test_metadata *_metadata, struct vm *vm, __u64 gpa,
		      const char *start, const char *end)
{
	ASSERT_LE(gpa + (end - start), vm->mem_size);
	memcpy(vm->mem + gpa, start, end - start);
}

static void get_regs(struct __test_metadata *_metadata, struct vcpu *vcpu, struct kvm_regs *regs)
{
	ASSERT_EQ(0, ioctl(vcpu->fd, KVM_GET_REGS, regs)) TH_LOG("KVM_GET_REGS: %s", strerror(errno));
}

static void set_regs(struct __test_metadata *_metadata, struct vcpu *vcpu, struct kvm_regs *regs)
{
	ASSERT_EQ(0, ioctl(vcpu->fd, KVM_SET_REGS, regs)) TH_LOG("KVM_SET_REGS: %s", strerror(errno));
}

static void get_sregs(struct __test_metadata *_metadata, struct vcpu *vcpu,
		      struct kvm_sregs *sregs)
{
	ASSERT_EQ(0, ioctl(vcpu->fd, KVM_GET_SREGS, sregs))
		TH_LOG("KVM_GET_SREGS: %s", strerror(errno));
}

static void set_sregs(struct __test_metadata *_metadata, struct vcpu *vcpu,
		      struct kvm_sregs *sregs)
{
	ASSERT_EQ(0, ioctl(vcpu->fd, KVM_SET_SREGS, sregs))
		TH_LOG("KVM_SET_SREGS: %s", strerror(errno));
}

/* Flat 4 GiB segment at base 0: code (type 11) or data (type 3). */
static void flat_segment(struct kvm_segment *s, __u16 selector, __u8 type)
{
	*s = (struct kvm_segment){
		.base = 0, .limit = 0xffffffff, .selector = selector, .type = type,
		.present = 1, .dpl = 0, .db = 1, .s = 1, .l = 0, .g = 1,
	};
}

/*
 * The segment state for `mode` on top of KVM's reset state (so TR, LDTR and
 * the descriptor tables stay valid), and RIP = rip with every other
 * general-purpose register 0 and RFLAGS at its reset value.
 */
static void vcpu_enter(struct __test_metadata *_metadata, struct vcpu *vcpu,
		       enum cpu_mode mode, __u64 rip)
{
	struct kvm_regs regs = { .rip = rip, .rflags = 0x2 };
	struct kvm_sregs sregs;

	get_sregs(_metadata, vcpu, &sregs);
	if (mode == REAL_MODE) {
		sregs.cs.selector = 0;
		sregs.cs.base = 0;
	} else {
		sregs.cr0 = 0x11;	/* PE | ET */
		flat_segment(&sregs.cs, 0x8, 11);
		flat_segment(&sregs.ds, 0x10, 3);
		sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
	}
	set_sregs(_metadata, vcpu, &sregs);
	set_regs(_metadata, vcpu, &regs);
}

/* KVM_RUN; returns 0 or -errno. */
static int vcpu_run(struct vcpu *vcpu)
{
	return ioctl(vcpu->fd, KVM_RUN, 0) ? -errno : 0;
}

/* A line about the exit in run, for failure messages. */
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

/* KVM_RUN must succeed and stop with `reason`. */
static void run_expect(struct __test_metadata *_metadata, struct vcpu *vcpu, __u32 reason)
{
	char why[128];
	int ret = vcpu_run(vcpu);

	ASSERT_EQ(0, ret) TH_LOG("KVM_RUN: %s", strerror(-ret));
	ASSERT_EQ(reason, vcpu->run->exit_reason)
		TH_LOG("got %s", exit_str(vcpu->run, why, sizeof(why)));
}

/* Where the data of the current I/O exit is. */
static void *io_data(struct vcpu *vcpu)
{
	return (char *)vcpu->run + vcpu->run->io.data_offset;
}

/*
 * KVM_RUN to an exit for port I/O of one element; checks direction, size
 * and port and returns the data.
 */
static void *run_expect_io(struct __test_metadata *_metadata, struct vcpu *vcpu, __u8 dir,
			   __u8 size, __u16 port)
{
	struct kvm_run *run = vcpu->run;
	char why[128];

	run_expect(_metadata, vcpu, KVM_EXIT_IO);
	ASSERT_TRUE(run->io.direction == dir && run->io.size == size && run->io.port == port &&
		    run->io.count == 1)
		TH_LOG("want %s size %u port %#x count 1, got %s",
		       dir == KVM_EXIT_IO_OUT ? "out" : "in", size, port,
		       exit_str(run, why, sizeof(why)));
	ASSERT_LE(run->io.data_offset + size, vcpu->run_size);
	return io_data(vcpu);
}

/* The value of an I/O element (x86 is little-endian). */
static __u32 io_value(const void *p, unsigned int size)
{
	__u32 v = 0;

	memcpy(&v, p, size);
	return v;
}

/*
 * Runs while the guest writes bytes to `port`, one OUT exit after another,
 * and collects them in buf. Returns how many; the exit that ended the loop
 * is left in kvm_run.
 */
static size_t run_collect_out(struct __test_metadata *_metadata, struct vcpu *vcpu,
			      __u16 port, char *buf, size_t cap)
{
	struct kvm_run *run = vcpu->run;
	size_t n = 0;
	int ret;

	for (;;) {
		ret = vcpu_run(vcpu);
		EXPECT_EQ(0, ret) TH_LOG("KVM_RUN: %s", strerror(-ret));
		if (ret)
			break;
		if (run->exit_reason != KVM_EXIT_IO || run->io.direction != KVM_EXIT_IO_OUT ||
		    run->io.port != port || run->io.size != 1)
			break;
		ASSERT_LE(1U, run->io.count);
		ASSERT_LE(n + run->io.count, cap);
		ASSERT_LE(run->io.data_offset + run->io.count, vcpu->run_size);
		memcpy(buf + n, io_data(vcpu), run->io.count);
		n += run->io.count;
	}
	return n;
}

/*
 * A string OUT of n elements of `size` bytes to `port`: the implementation
 * may split it over several exits of count >= 1 each. Collects exactly n
 * elements into buf.
 */
static void run_string_out(struct __test_metadata *_metadata, struct vcpu *vcpu, __u16 port,
			   __u8 size, void *buf, unsigned int n)
{
	struct kvm_run *run = vcpu->run;
	unsigned int got = 0;
	char why[128];

	while (got < n) {
		run_expect(_metadata, vcpu, KVM_EXIT_IO);
		ASSERT_TRUE(run->io.direction == KVM_EXIT_IO_OUT && run->io.size == size &&
			    run->io.port == port && run->io.count >= 1 &&
			    run->io.count <= n - got)
			TH_LOG("element %u of %u: want out size %u port %#x, got %s",
			       got, n, size, port, exit_str(run, why, sizeof(why)));
		ASSERT_LE(run->io.data_offset + run->io.count * size, vcpu->run_size);
		memcpy((char *)buf + got * size, io_data(vcpu), run->io.count * size);
		got += run->io.count;
	}
}

/* A string IN of n elements from `port`, supplied from src as asked for. */
static void run_string_in(struct __test_metadata *_metadata, struct vcpu *vcpu, __u16 port,
			  __u8 size, const void *src, unsigned int n)
{
	struct kvm_run *run = vcpu->run;
	unsigned int done = 0;
	char why[128];

	while (done < n) {
		run_expect(_metadata, vcpu, KVM_EXIT_IO);
		ASSERT_TRUE(run->io.direction == KVM_EXIT_IO_IN && run->io.size == size &&
			    run->io.port == port && run->io.count >= 1 &&
			    run->io.count <= n - done)
			TH_LOG("element %u of %u: want in size %u port %#x, got %s",
			       done, n, size, port, exit_str(run, why, sizeof(why)));
		ASSERT_LE(run->io.data_offset + run->io.count * size, vcpu->run_size);
		memcpy(io_data(vcpu), (const char *)src + done * size, run->io.count * size);
		done += run->io.count;
	}
}

/* Guest memory as a 32-bit value. */
static __u32 mem32(struct vm *vm, __u64 gpa)
{
	__u32 v;

	memcpy(&v, vm->mem + gpa, sizeof(v));
	return v;
}

/* ---- Tests with one VM and one vCPU ------------------------------------ */

FIXTURE(run) {
	struct vm vm;
	struct vcpu vcpu;
};

FIXTURE_SETUP(run)
{
	vm_create(_metadata, &self->vm, MEM_SIZE);
	vcpu_create(_metadata, &self->vm, 0, &self->vcpu);
}

FIXTURE_TEARDOWN(run)
{
	vcpu_destroy(&self->vcpu);
	vm_destroy(&self->vm);
}

TEST_F(run, real_mode_hello)
{
	static const char want[] = "Hello from real mode\n";
	char got[64] = "";
	struct kvm_regs regs;
	size_t n;

	load_code(_metadata, &self->vm, CODE_GPA, hello16_start, hello16_end);
	vcpu_enter(_metadata, &self->vcpu, REAL_MODE, CODE_GPA);
	n = run_collect_out(_metadata, &self->vcpu, PORT_CON, got, sizeof(got) - 1);
	got[n] = '\0';
	EXPECT_STREQ(want, got);
	ASSERT_EQ((__u32)KVM_EXIT_HLT, self->vcpu.run->exit_reason);
	get_regs(_metadata, &self->vcpu, &regs);
	EXPECT_EQ(CODE_GPA + (__u64)(hello16_after_hlt - hello16_start), regs.rip);
}

TEST_F(run, real_to_protected)
{
	__u64 gdt_gpa = CODE_GPA + (rtp16_gdt - rtp16_start);
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	void *data;

	load_code(_metadata, &self->vm, CODE_GPA, rtp16_start, rtp16_end);
	vcpu_enter(_metadata, &self->vcpu, REAL_MODE, CODE_GPA);
	data = run_expect_io(_metadata, &self->vcpu, KVM_EXIT_IO_OUT, 4, RTP_PORT);
	EXPECT_EQ(RTP_VALUE, io_value(data, 4));
	run_expect(_metadata, &self->vcpu, KVM_EXIT_HLT);

	get_regs(_metadata, &self->vcpu, &regs);
	EXPECT_EQ(CODE_GPA + (__u64)(rtp32_after_hlt - rtp16_start), regs.rip);
	get_sregs(_metadata, &self->vcpu, &sregs);
	EXPECT_EQ(1ULL, sregs.cr0 & 1);
	EXPECT_EQ(0ULL, sregs.cr0 & 0x80000000ULL);
	EXPECT_EQ(RTP_CS, sregs.cs.selector);
	EXPECT_EQ(1, sregs.cs.db);
	EXPECT_EQ(1, sregs.cs.g);
	EXPECT_EQ(0ULL, sregs.cs.base);
	EXPECT_EQ(0xffffffffU, sregs.cs.limit);
	EXPECT_EQ(RTP_DS, sregs.ds.selector);
	EXPECT_EQ(RTP_DS, sregs.ss.selector);
	EXPECT_EQ(1, sregs.ss.db);
	EXPECT_EQ(gdt_gpa, sregs.gdt.base);
	EXPECT_EQ(rtp16_gdt_end - rtp16_gdt - 1, sregs.gdt.limit);
}

TEST_F(run, protected_mode_io)
{
	const __u32 pattern = 0x11223344, in_b = 0x5a, in_w = 0xbeef, in_l = 0x01020304;
	__u32 want_ebx = (pattern & ~0xffU) | in_b;
	__u32 want_ecx = (want_ebx & ~0xffffU) | in_w;
	__u32 v = (in_l + want_ebx) ^ want_ecx;
	struct kvm_regs regs;
	void *data;

	load_code(_metadata, &self->vm, CODE_GPA, pio32_start, pio32_end);
	vcpu_enter(_metadata, &self->vcpu, FLAT32, CODE_GPA);
	get_regs(_metadata, &self->vcpu, &regs);
	regs.rax = pattern;
	set_regs(_metadata, &self->vcpu, &regs);

	/* The 0xff bytes past each element must not reach EAX. */
	data = run_expect_io(_metadata, &self->vcpu, KVM_EXIT_IO_IN, 1, PIO_IN_B);
	memset(data, 0xff, 4);
	memcpy(data, &in_b, 1);
	data = run_expect_io(_metadata, &self->vcpu, KVM_EXIT_IO_IN, 2, PIO_IN_W);
	memset(data, 0xff, 4);
	memcpy(data, &in_w, 2);
	data = run_expect_io(_metadata, &self->vcpu, KVM_EXIT_IO_IN, 4, PIO_IN_L);
	memcpy(data, &in_l, 4);

	data = run_expect_io(_metadata, &self->vcpu, KVM_EXIT_IO_OUT, 1, PIO_OUT_B);
	EXPECT_EQ(v & 0xff, io_value(data, 1));
	v = (v >> 8) | (v << 24);
	data = run_expect_io(_metadata, &self->vcpu, KVM_EXIT_IO_OUT, 2, PIO_OUT_W);
	EXPECT_EQ(v & 0xffff, io_value(data, 2));
	v = (v >> 8) | (v << 24);
	data = run_expect_io(_metadata, &self->vcpu, KVM_EXIT_IO_OUT, 4, PIO_OUT_L);
	EXPECT_EQ(v, io_value(data, 4));
	run_expect(_metadata, &self->vcpu, KVM_EXIT_HLT);

	get_regs(_metadata, &self->vcpu, &regs);
	EXPECT_EQ(want_ebx, regs.rbx);		/* inb changed AL only */
	EXPECT_EQ(want_ecx, regs.rcx);		/* inw changed AX only */
	EXPECT_EQ(in_l, regs.rdx);
	EXPECT_EQ(v, regs.rax);
	EXPECT_EQ(CODE_GPA + (__u64)(pio32_after_hlt - pio32_start), regs.rip);
}

TEST_F(run, string_io)
{
	__u64 str40 = CODE_GPA + (sio32_str40 - sio32_start);
	__u64 rev = CODE_GPA + (sio32_rev - sio32_start);
	__u64 dword = CODE_GPA + (sio32_dword - sio32_start);
	__u16 words[SIO_WORDS];
	char out[64], buf[2 * SIO_WORDS + 16];
	struct kvm_regs regs;
	void *data;
	int i;

	ASSERT_EQ(40U, strlen(SIO_STR40));
	for (i = 0; i < SIO_WORDS; i++)
		words[i] = 0xa000 | (i << 4) | (15 - i);
	load_code(_metadata, &self->vm, CODE_GPA, sio32_start, sio32_end);
	memset(self->vm.mem + BUF_GPA, 0xcc, sizeof(buf));
	vcpu_enter(_metadata, &self->vcpu, FLAT32, CODE_GPA);

	/* REP OUTSB, forwards. */
	run_string_out(_metadata, &self->vcpu, SIO_PORT_OUT, 1, out, 40);
	EXPECT_EQ(0, memcmp(SIO_STR40, out, 40)) TH_LOG("got '%.40s'", out);
	/* REP INSW into guest memory. */
	run_string_in(_metadata, &self->vcpu, SIO_PORT_IN, 2, words, SIO_WORDS);
	/* REP OUTSB with DF=1: the bytes come last to first. */
	run_string_out(_metadata, &self->vcpu, SIO_PORT_REV, 1, out, 10);
	EXPECT_EQ(0, memcmp("9876543210", out, 10)) TH_LOG("got '%.10s'", out);
	/* OUTSL without REP: one element. */
	data = run_expect_io(_metadata, &self->vcpu, KVM_EXIT_IO_OUT, 4, SIO_PORT_L);
	EXPECT_EQ(SIO_DWORD, io_value(data, 4));
	run_expect(_metadata, &self->vcpu, KVM_EXIT_HLT);

	/* The words landed in order, and nothing past them. */
	memcpy(buf, self->vm.mem + BUF_GPA, sizeof(buf));
	EXPECT_EQ(0, memcmp(words, buf, sizeof(words)));
	for (i = sizeof(words); i < (int)sizeof(buf); i++)
		EXPECT_EQ(0xcc, (unsigned char)buf[i]) TH_LOG("byte %d", i);

	/* ESI/EDI/ECX after each REP, as the guest stored them. */
	EXPECT_EQ(str40 + 40, mem32(&self->vm, RES_GPA));
	EXPECT_EQ(0U, mem32(&self->vm, RES_GPA + 4));
	EXPECT_EQ(BUF_GPA + sizeof(words), mem32(&self->vm, RES_GPA + 8));
	EXPECT_EQ(0U, mem32(&self->vm, RES_GPA + 12));
	EXPECT_EQ(rev - 1, mem32(&self->vm, RES_GPA + 16));
	EXPECT_EQ(0U, mem32(&self->vm, RES_GPA + 20));

	get_regs(_metadata, &self->vcpu, &regs);
	EXPECT_EQ(dword + 4, regs.rsi);
	EXPECT_EQ(BUF_GPA + sizeof(words), regs.rdi);
	EXPECT_EQ(0ULL, regs.rcx);
	EXPECT_EQ(0ULL, regs.rflags & 0x400);	/* DF clear again */
	EXPECT_EQ(CODE_GPA + (__u64)(sio32_after_hlt - sio32_start), regs.rip);
}

/* Maps npages of fresh anonymous memory at SLOT2_GPA as slot 1. */
static __u32 *add_slot2_pages(struct __test_metadata *_metadata, struct vm *vm, __u32 flags,
			      size_t npages)
{
	struct kvm_userspace_memory_region r = {
		.slot = 1, .flags = flags, .guest_phys_addr = SLOT2_GPA,
		.memory_size = npages * 4096,
	};
	__u32 *p = mmap(NULL, npages * 4096, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	EXPECT_NE(MAP_FAILED, p);
	if (p == MAP_FAILED)
		return NULL;
	r.userspace_addr = (__u64)(unsigned long)p;
	EXPECT_EQ(0, ioctl(vm->fd, KVM_SET_USER_MEMORY_REGION, &r)) TH_LOG("%s", strerror(errno));
	return p;
}

static __u32 *add_slot2(struct __test_metadata *_metadata, struct vm *vm, __u32 flags)
{
	return add_slot2_pages(_metadata, vm, flags, 1);
}

/*
 * The VMM makes guest memory read-only (mprotect): guest reads still work,
 * a guest write fails KVM_RUN with EFAULT (exit reason KVM_EXIT_UNKNOWN),
 * and once the VMM allows writes again the guest's write goes through.
 */
TEST_F(run, host_mprotect)
{
	struct kvm_run *run = self->vcpu.run;
	__u32 *p = add_slot2(_metadata, &self->vm, 0);

	ASSERT_NE(NULL, p);
	p[0] = 0x1111;
	p[1] = 0x2222;
	ASSERT_EQ(0, mprotect(p, 4096, PROT_READ));
	load_code(_metadata, &self->vm, CODE_GPA, ro32_start, ro32_end);
	vcpu_enter(_metadata, &self->vcpu, FLAT32, CODE_GPA);
	EXPECT_EQ(0x1111U, io_value(run_expect_io(_metadata, &self->vcpu, KVM_EXIT_IO_OUT,
						   4, SLOT2_PORT), 4));
	EXPECT_EQ(-EFAULT, vcpu_run(&self->vcpu));
	EXPECT_EQ((__u32)KVM_EXIT_UNKNOWN, run->exit_reason);
	EXPECT_EQ(0x2222U, p[1]);
	ASSERT_EQ(0, mprotect(p, 4096, PROT_READ | PROT_WRITE));
	EXPECT_EQ(0xcafeU, io_value(run_expect_io(_metadata, &self->vcpu, KVM_EXIT_IO_OUT,
						   4, SLOT2_PORT), 4));
	EXPECT_EQ(0xcafeU, p[1]);
	run_expect(_metadata, &self->vcpu, KVM_EXIT_HLT);
	munmap(p, 4096);
}

/* A thousand slots (KVM takes ~30 s of Bochs time for 2000): one page
 * each, a page apart. */
#define MANY_N		1000
#define MANY_GPA(i)	(0x400000ULL + (__u64)(i) * 0x2000)

static double now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/*
 * MANY_N one-page slots: each can be found by the guest (four are read),
 * overlaps are still refused, one moves, all are deleted again. Prints
 * the time the creations and deletions took.
 */
TEST_F_TIMEOUT(run, many_slots, 300)
{
	static const unsigned int probe[4] = { 0, 377, 750, MANY_N - 1 };
	struct kvm_userspace_memory_region r = { .memory_size = 4096 };
	__u32 *m = mmap(NULL, MANY_N * 4096UL, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct kvm_regs regs;
	double t0, create_ms, delete_ms;
	unsigned int i;

	ASSERT_NE(MAP_FAILED, m);
	t0 = now_ms();
	for (i = 0; i < MANY_N; i++) {
		m[i * 1024] = 0xa0000000 | i;
		r.slot = 2 + i;
		r.guest_phys_addr = MANY_GPA(i);
		r.userspace_addr = (__u64)(unsigned long)(m + i * 1024);
		ASSERT_EQ(0, ioctl(self->vm.fd, KVM_SET_USER_MEMORY_REGION, &r))
			TH_LOG("slot %u: %s", 2 + i, strerror(errno));
	}
	create_ms = now_ms() - t0;
	/* A new slot across the middle of two others. */
	r.slot = 2 + MANY_N;
	r.guest_phys_addr = MANY_GPA(500);
	r.memory_size = 3 * 4096;
	errno = 0;
	EXPECT_EQ(-1, ioctl(self->vm.fd, KVM_SET_USER_MEMORY_REGION, &r));
	EXPECT_EQ(EEXIST, errno);
	/* Move slot 750 into the gap after it. */
	r.slot = 2 + 750;
	r.guest_phys_addr = MANY_GPA(750) + 4096;
	r.memory_size = 4096;
	r.userspace_addr = (__u64)(unsigned long)(m + 750 * 1024);
	ASSERT_EQ(0, ioctl(self->vm.fd, KVM_SET_USER_MEMORY_REGION, &r));

	load_code(_metadata, &self->vm, CODE_GPA, read4_start, read4_end);
	vcpu_enter(_metadata, &self->vcpu, FLAT32, CODE_GPA);
	get_regs(_metadata, &self->vcpu, &regs);
	regs.rbx = MANY_GPA(probe[0]);
	regs.rcx = MANY_GPA(probe[1]);
	regs.rdx = MANY_GPA(probe[2]) + 4096;
	regs.rsi = MANY_GPA(probe[3]);
	set_regs(_metadata, &self->vcpu, &regs);
	for (i = 0; i < 4; i++)
		EXPECT_EQ(0xa0000000 | probe[i],
			  io_value(run_expect_io(_metadata, &self->vcpu, KVM_EXIT_IO_OUT, 4,
						 SLOT2_PORT), 4)) TH_LOG("slot %u", 2 + probe[i]);
	run_expect(_metadata, &self->vcpu, KVM_EXIT_HLT);

	t0 = now_ms();
	r.memory_size = 0;
	for (i = 0; i < MANY_N; i++) {
		r.slot = 2 + i;
		ASSERT_EQ(0, ioctl(self->vm.fd, KVM_SET_USER_MEMORY_REGION, &r))
			TH_LOG("delete %u: %s", 2 + i, strerror(errno));
	}
	delete_ms = now_ms() - t0;
	printf("# many_slots: %u slots created in %.1f ms, deleted in %.1f ms\n", MANY_N,
	       create_ms, delete_ms);
	munmap(m, MANY_N * 4096UL);
}

/* KVM_GET_DIRTY_LOG of slot into bitmap; 0 or -errno. */
static int get_dirty_log(struct vm *vm, __u32 slot, __u64 *bitmap)
{
	struct kvm_dirty_log log = { .slot = slot, .dirty_bitmap = bitmap };

	return ioctl(vm->fd, KVM_GET_DIRTY_LOG, &log) ? -errno : 0;
}

/*
 * KVM_MEM_LOG_DIRTY_PAGES on an unpaged guest: the log holds exactly the
 * pages written since the last KVM_GET_DIRTY_LOG (not those only read),
 * and the guest's writes land. Bad requests get KVM's errno.
 */
TEST_F(run, dirty_log)
{
	__u32 *p = add_slot2_pages(_metadata, &self->vm, KVM_MEM_LOG_DIRTY_PAGES, 16);
	__u64 bitmap = ~0ULL;

	ASSERT_NE(NULL, p);
	load_code(_metadata, &self->vm, CODE_GPA, dirty32_start, dirty32_end);
	vcpu_enter(_metadata, &self->vcpu, FLAT32, CODE_GPA);
	EXPECT_EQ(-ENOENT, get_dirty_log(&self->vm, 0, &bitmap)) TH_LOG("slot 0 does not log");
	/* x86 KVM has a second (SMM) address space: empty there. */
	EXPECT_EQ(-ENOENT, get_dirty_log(&self->vm, 1 | 1 << 16, &bitmap));
	EXPECT_EQ(-EINVAL, get_dirty_log(&self->vm, 1 | 2 << 16, &bitmap));
	EXPECT_EQ(-EINVAL, get_dirty_log(&self->vm, 40000, &bitmap));
	EXPECT_EQ(-ENOENT, get_dirty_log(&self->vm, 2, &bitmap)) TH_LOG("no slot 2");
	EXPECT_EQ(-EFAULT, get_dirty_log(&self->vm, 1, (__u64 *)8));
	ASSERT_EQ(0, get_dirty_log(&self->vm, 1, &bitmap));
	EXPECT_EQ(0ULL, bitmap) TH_LOG("dirty before the guest ran: %#llx", bitmap);

	run_expect_io(_metadata, &self->vcpu, KVM_EXIT_IO_OUT, 4, SLOT2_PORT);
	ASSERT_EQ(0, get_dirty_log(&self->vm, 1, &bitmap));
	EXPECT_EQ(1ULL << 0 | 1ULL << 3 | 1ULL << 7, bitmap) TH_LOG("got %#llx", bitmap);
	ASSERT_EQ(0, get_dirty_log(&self->vm, 1, &bitmap));
	EXPECT_EQ(0ULL, bitmap) TH_LOG("not cleared: %#llx", bitmap);

	run_expect(_metadata, &self->vcpu, KVM_EXIT_HLT);
	ASSERT_EQ(0, get_dirty_log(&self->vm, 1, &bitmap));
	EXPECT_EQ(1ULL << 3 | 1ULL << 9, bitmap) TH_LOG("got %#llx", bitmap);
	EXPECT_EQ(1U, p[0]);
	EXPECT_EQ(1U, p[3 * 1024]);
	EXPECT_EQ(2U, p[3 * 1024 + 1]);
	EXPECT_EQ(1U, p[7 * 1024]);
	EXPECT_EQ(2U, p[9 * 1024]);
	munmap(p, 16 * 4096);
}

/*
 * KVM_MEM_READONLY: reads see the host's data, a write exits as an MMIO
 * write and changes nothing.
 */
TEST_F(run, readonly_slot)
{
	struct kvm_run *run = self->vcpu.run;
	__u32 *ro = add_slot2(_metadata, &self->vm, KVM_MEM_READONLY);
	char why[128];

	ASSERT_NE(NULL, ro);
	ro[0] = 0x11223344;
	ro[1] = 0x55667788;
	load_code(_metadata, &self->vm, CODE_GPA, ro32_start, ro32_end);
	vcpu_enter(_metadata, &self->vcpu, FLAT32, CODE_GPA);
	EXPECT_EQ(0x11223344U, io_value(run_expect_io(_metadata, &self->vcpu, KVM_EXIT_IO_OUT,
						       4, SLOT2_PORT), 4));
	run_expect(_metadata, &self->vcpu, KVM_EXIT_MMIO);
	ASSERT_TRUE(run->mmio.phys_addr == SLOT2_GPA + 4 && run->mmio.is_write &&
		    run->mmio.len == 4)
		TH_LOG("got %s", exit_str(run, why, sizeof(why)));
	EXPECT_EQ(0xcafeU, io_value(run->mmio.data, 4));
	EXPECT_EQ(0x55667788U, io_value(run_expect_io(_metadata, &self->vcpu, KVM_EXIT_IO_OUT,
						       4, SLOT2_PORT), 4));
	EXPECT_EQ(0x55667788U, ro[1]);
	run_expect(_metadata, &self->vcpu, KVM_EXIT_HLT);
	munmap(ro, 4096);
}

/*
 * The guest keeps reading a page of the second slot while the host
 * changes what backs it: MADV_DONTNEED (a fresh zero page), then munmap
 * and a new mapping at the same address. After each change the host
 * writes a canary through its mapping; the guest's next read must see it
 * (a mapping of the old page must not survive: the mmu_notifier).
 */
TEST_F(run, host_changes_reach_guest)
{
	__u32 *p = add_slot2(_metadata, &self->vm, 0);
	void *again;

	ASSERT_NE(NULL, p);
	p[0] = 0x1111;
	load_code(_metadata, &self->vm, CODE_GPA, peek32_start, peek32_end);
	vcpu_enter(_metadata, &self->vcpu, FLAT32, CODE_GPA);
	EXPECT_EQ(0x1111U, io_value(run_expect_io(_metadata, &self->vcpu, KVM_EXIT_IO_OUT,
						   4, SLOT2_PORT), 4));

	ASSERT_EQ(0, madvise(p, 4096, MADV_DONTNEED));
	EXPECT_EQ(0U, p[0]);
	p[0] = 0x2222;
	EXPECT_EQ(0x2222U, io_value(run_expect_io(_metadata, &self->vcpu, KVM_EXIT_IO_OUT,
						   4, SLOT2_PORT), 4)) TH_LOG("after MADV_DONTNEED");

	ASSERT_EQ(0, munmap(p, 4096));
	again = mmap(p, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
		     -1, 0);
	ASSERT_EQ((void *)p, again);
	p[0] = 0x3333;
	EXPECT_EQ(0x3333U, io_value(run_expect_io(_metadata, &self->vcpu, KVM_EXIT_IO_OUT,
						   4, SLOT2_PORT), 4)) TH_LOG("after munmap + mmap");
	munmap(p, 4096);
}

TEST_F(run, mmio)
{
	struct kvm_run *run = self->vcpu.run;
	const __u32 load = 0x8badf00d;
	struct kvm_regs regs;
	char why[128];

	load_code(_metadata, &self->vm, CODE_GPA, mmio32_start, mmio32_end);
	vcpu_enter(_metadata, &self->vcpu, FLAT32, CODE_GPA);
	get_regs(_metadata, &self->vcpu, &regs);
	regs.rbx = 0x11111111;
	regs.rcx = 0xffffffff;
	set_regs(_metadata, &self->vcpu, &regs);

	run_expect(_metadata, &self->vcpu, KVM_EXIT_MMIO);
	ASSERT_TRUE(run->mmio.phys_addr == MMIO_GPA && run->mmio.is_write && run->mmio.len == 4)
		TH_LOG("got %s", exit_str(run, why, sizeof(why)));
	EXPECT_EQ(0xdeadbeefU, io_value(run->mmio.data, 4));

	run_expect(_metadata, &self->vcpu, KVM_EXIT_MMIO);
	ASSERT_TRUE(run->mmio.phys_addr == MMIO_GPA + 4 && run->mmio.is_write &&
		    run->mmio.len == 2)
		TH_LOG("got %s", exit_str(run, why, sizeof(why)));
	EXPECT_EQ(0x5678U, io_value(run->mmio.data, 2));

	run_expect(_metadata, &self->vcpu, KVM_EXIT_MMIO);
	ASSERT_TRUE(run->mmio.phys_addr == MMIO_GPA + 8 && !run->mmio.is_write &&
		    run->mmio.len == 4)
		TH_LOG("got %s", exit_str(run, why, sizeof(why)));
	memcpy(run->mmio.data, &load, 4);

	run_expect(_metadata, &self->vcpu, KVM_EXIT_MMIO);
	ASSERT_TRUE(run->mmio.phys_addr == MMIO_GPA + 0x10 && !run->mmio.is_write &&
		    run->mmio.len == 1)
		TH_LOG("got %s", exit_str(run, why, sizeof(why)));
	/* Only the first byte is the load; movzbl clears the rest of ECX. */
	memset(run->mmio.data, 0xff, sizeof(run->mmio.data));
	run->mmio.data[0] = 0xa5;

	run_expect(_metadata, &self->vcpu, KVM_EXIT_HLT);
	get_regs(_metadata, &self->vcpu, &regs);
	EXPECT_EQ(load, regs.rbx);
	EXPECT_EQ(0xa5ULL, regs.rcx);
	EXPECT_EQ(0x5678ULL, regs.rax);
	EXPECT_EQ(CODE_GPA + (__u64)(mmio32_after_hlt - mmio32_start), regs.rip);
}

TEST_F(run, triple_fault)
{
	load_code(_metadata, &self->vm, CODE_GPA, triple32_start, triple32_end);
	vcpu_enter(_metadata, &self->vcpu, FLAT32, CODE_GPA);
	run_expect(_metadata, &self->vcpu, KVM_EXIT_SHUTDOWN);
}

/*
 * immediate_exit: KVM_RUN first completes a pending IN (the data userspace
 * put in kvm_run reaches the guest), then returns -EINTR without running
 * the guest. KVM leaves exit_reason alone on this path (the !wants_to_run
 * return in kvm_arch_vcpu_ioctl_run(); KVM_EXIT_INTR is written only when a
 * signal interrupts the guest), so the previous reason must still be there.
 */
TEST_F(run, immediate_exit)
{
	struct kvm_run *run = self->vcpu.run;
	const __u32 pattern = 0x55aa55aa, in = 0x13579bdf;
	struct kvm_regs regs;
	void *data;

	load_code(_metadata, &self->vm, CODE_GPA, imm32_start, imm32_end);
	vcpu_enter(_metadata, &self->vcpu, FLAT32, CODE_GPA);
	get_regs(_metadata, &self->vcpu, &regs);
	regs.rax = pattern;
	set_regs(_metadata, &self->vcpu, &regs);

	/* Nothing pending: out at once, the guest did not move. */
	run->immediate_exit = 1;
	EXPECT_EQ(-EINTR, vcpu_run(&self->vcpu));
	EXPECT_EQ((__u32)KVM_EXIT_UNKNOWN, run->exit_reason);
	get_regs(_metadata, &self->vcpu, &regs);
	EXPECT_EQ((__u64)CODE_GPA, regs.rip);
	EXPECT_EQ(pattern, regs.rax);

	/* An IN pending: it completes, then KVM_RUN returns before the HLT. */
	run->immediate_exit = 0;
	data = run_expect_io(_metadata, &self->vcpu, KVM_EXIT_IO_IN, 4, IMM_PORT);
	memcpy(data, &in, 4);
	run->immediate_exit = 1;
	EXPECT_EQ(-EINTR, vcpu_run(&self->vcpu));
	EXPECT_EQ((__u32)KVM_EXIT_IO, run->exit_reason);
	get_regs(_metadata, &self->vcpu, &regs);
	EXPECT_EQ(in, regs.rax);
	EXPECT_EQ(CODE_GPA + (__u64)(imm32_after_in - imm32_start), regs.rip);

	/* Still immediate: nothing more happens. */
	EXPECT_EQ(-EINTR, vcpu_run(&self->vcpu));
	get_regs(_metadata, &self->vcpu, &regs);
	EXPECT_EQ(CODE_GPA + (__u64)(imm32_after_in - imm32_start), regs.rip);

	run->immediate_exit = 0;
	run_expect(_metadata, &self->vcpu, KVM_EXIT_HLT);
	get_regs(_metadata, &self->vcpu, &regs);
	EXPECT_EQ(in, regs.rax);
	EXPECT_EQ(CODE_GPA + (__u64)(imm32_after_hlt - imm32_start), regs.rip);
}

static volatile sig_atomic_t alarms;

static void on_alarm(int sig)
{
	(void)sig;
	alarms++;
}

TEST_F(run, signal_eintr)
{
	struct sigaction sa = { .sa_handler = on_alarm, .sa_flags = 0 };	/* no SA_RESTART */
	struct itimerval timer = { .it_value = { .tv_usec = 50000 } };
	struct kvm_run *run = self->vcpu.run;
	struct kvm_regs regs;
	int i;

	load_code(_metadata, &self->vm, CODE_GPA, spin32_start, spin32_end);
	vcpu_enter(_metadata, &self->vcpu, FLAT32, CODE_GPA);
	sigemptyset(&sa.sa_mask);
	ASSERT_EQ(0, sigaction(SIGALRM, &sa, NULL));

	for (i = 1; i <= 2; i++) {
		run->exit_reason = KVM_EXIT_UNKNOWN;
		ASSERT_EQ(0, setitimer(ITIMER_REAL, &timer, NULL));
		EXPECT_EQ(-EINTR, vcpu_run(&self->vcpu)) TH_LOG("round %d", i);
		EXPECT_EQ((__u32)KVM_EXIT_INTR, run->exit_reason) TH_LOG("round %d", i);
		EXPECT_EQ(i, alarms);
		get_regs(_metadata, &self->vcpu, &regs);
		/* Still in the guest's code (before or in the loop). */
		EXPECT_LE((__u64)CODE_GPA, regs.rip);
		EXPECT_GT((__u64)CODE_GPA + (spin32_end - spin32_start), regs.rip);
	}
}

/*
 * A guest that spins with IF=0 must not keep its CPU from the host: rkvm
 * bounds every entry with the VMX-preemption timer, so the signal still
 * ends KVM_RUN. (Real CPUs also exit on the host's interrupts whatever the
 * guest's IF; Bochs 2.7 does not, which is why the reference is skipped:
 * under Bochs kvm_intel would never get its CPU back.)
 */
TEST_F(run, spin_with_interrupts_off_still_stops)
{
	struct sigaction sa = { .sa_handler = on_alarm, .sa_flags = 0 };
	struct itimerval timer = { .it_value = { .tv_usec = 50000 } };
	struct kvm_run *run = self->vcpu.run;

	if (!rkvm_dev_is_rkvm())
		SKIP(return, "kvm_intel cannot leave an IF=0 guest under Bochs 2.7 (lab.rst)");
	load_code(_metadata, &self->vm, CODE_GPA, cli_spin32_start, cli_spin32_end);
	vcpu_enter(_metadata, &self->vcpu, FLAT32, CODE_GPA);
	sigemptyset(&sa.sa_mask);
	ASSERT_EQ(0, sigaction(SIGALRM, &sa, NULL));
	alarms = 0;
	ASSERT_EQ(0, setitimer(ITIMER_REAL, &timer, NULL));
	EXPECT_EQ(-EINTR, vcpu_run(&self->vcpu));
	EXPECT_EQ((__u32)KVM_EXIT_INTR, run->exit_reason);
	EXPECT_EQ(1, alarms);
}

/* KVM_RUN expecting an OUT of `mark` to PORT_CON. */
static void run_expect_mark(struct __test_metadata *_metadata, struct vcpu *vcpu, __u8 mark)
{
	__u8 *data = run_expect_io(_metadata, vcpu, KVM_EXIT_IO_OUT, 1, PORT_CON);

	EXPECT_EQ(mark, *data);
}

/*
 * A user-space irqchip: the guest halts with interrupts enabled, the VMM
 * queues an interrupt with KVM_INTERRUPT and an NMI with KVM_NMI, and the
 * guest's handlers run. kvm_run's if_flag and ready_for_interrupt_injection
 * follow the guest; a second KVM_INTERRUPT before the first is taken
 * replaces it (one delivery), a vector above 255 is EINVAL.
 */
TEST_F(run, interrupt_and_nmi_injection)
{
	struct kvm_interrupt irq = { .irq = IRQ_VECTOR };
	struct kvm_interrupt bad = { .irq = 256 };
	struct kvm_run *run = self->vcpu.run;
	__u8 first, second;

	load_code(_metadata, &self->vm, CODE_GPA, irq16_start, irq16_end);
	vcpu_enter(_metadata, &self->vcpu, REAL_MODE, CODE_GPA);
	run_expect_io(_metadata, &self->vcpu, KVM_EXIT_IO_OUT, 1, IRQ_PORT);
	EXPECT_EQ(0, run->if_flag);
	EXPECT_EQ(0, run->ready_for_interrupt_injection);
	run_expect(_metadata, &self->vcpu, KVM_EXIT_HLT);
	EXPECT_EQ(1, run->if_flag);
	EXPECT_EQ(1, run->ready_for_interrupt_injection);

	errno = 0;
	EXPECT_EQ(-1, ioctl(self->vcpu.fd, KVM_INTERRUPT, &bad));
	EXPECT_EQ(EINVAL, errno);
	ASSERT_EQ(0, ioctl(self->vcpu.fd, KVM_INTERRUPT, &irq));
	ASSERT_EQ(0, ioctl(self->vcpu.fd, KVM_INTERRUPT, &irq));
	run_expect_mark(_metadata, &self->vcpu, IRQ_MARK);
	run_expect(_metadata, &self->vcpu, KVM_EXIT_HLT);

	ASSERT_EQ(0, ioctl(self->vcpu.fd, KVM_NMI));
	run_expect_mark(_metadata, &self->vcpu, NMI_MARK);
	run_expect(_metadata, &self->vcpu, KVM_EXIT_HLT);

	/* Both at once: each handler runs exactly once, in either order. */
	ASSERT_EQ(0, ioctl(self->vcpu.fd, KVM_INTERRUPT, &irq));
	ASSERT_EQ(0, ioctl(self->vcpu.fd, KVM_NMI));
	first = *(__u8 *)run_expect_io(_metadata, &self->vcpu, KVM_EXIT_IO_OUT, 1, PORT_CON);
	second = *(__u8 *)run_expect_io(_metadata, &self->vcpu, KVM_EXIT_IO_OUT, 1, PORT_CON);
	EXPECT_EQ(IRQ_MARK + NMI_MARK, first + second);
	EXPECT_NE(first, second);
	run_expect(_metadata, &self->vcpu, KVM_EXIT_HLT);
}

/*
 * request_interrupt_window: with the guest's interrupts off, the VMM asks
 * for a window and gets KVM_EXIT_IRQ_WINDOW_OPEN once the guest enables
 * them, ready for the interrupt it then queues.
 */
TEST_F(run, interrupt_window_exit)
{
	struct kvm_interrupt irq = { .irq = IRQ_VECTOR };
	struct kvm_run *run = self->vcpu.run;
	char why[128];

	load_code(_metadata, &self->vm, CODE_GPA, irq16_start, irq16_end);
	vcpu_enter(_metadata, &self->vcpu, REAL_MODE, CODE_GPA);
	run_expect_io(_metadata, &self->vcpu, KVM_EXIT_IO_OUT, 1, IRQ_PORT);
	EXPECT_EQ(0, run->ready_for_interrupt_injection);
	run->request_interrupt_window = 1;
	ASSERT_EQ(0, vcpu_run(&self->vcpu));
	ASSERT_EQ((__u32)KVM_EXIT_IRQ_WINDOW_OPEN, run->exit_reason)
		TH_LOG("%s", exit_str(run, why, sizeof(why)));
	EXPECT_EQ(1, run->if_flag);
	EXPECT_EQ(1, run->ready_for_interrupt_injection);
	run->request_interrupt_window = 0;
	ASSERT_EQ(0, ioctl(self->vcpu.fd, KVM_INTERRUPT, &irq));
	run_expect_mark(_metadata, &self->vcpu, IRQ_MARK);
	run_expect(_metadata, &self->vcpu, KVM_EXIT_HLT);
}

/*
 * KVM_SET_FPU reaches the guest (XMM0, the x87 control word) and what the
 * guest leaves in its registers comes back through KVM_GET_FPU; the vCPU's
 * initial FPU state is the architectural one.
 *
 * KVM 7.3 writes KVM_SET_FPU into the legacy area of its XSAVE buffer
 * without marking x87/SSE state present, so on a vCPU whose guest never
 * used them the values do not reach the guest (seen in the lab: XMM0 0,
 * FCW 0x37f), and KVM_GET_FPU then returns the FCW it was given. rkvm
 * marks them present; the reference is only checked in the guest-to-host
 * direction (XMM1).
 */
TEST_F(run, fpu_state_reaches_the_guest_and_back)
{
	bool rkvm = rkvm_dev_is_rkvm();
	struct kvm_fpu fpu;
	__u32 x0 = 0x11223344, x1, seen;
	__u16 fcw;

	ASSERT_EQ(0, ioctl(self->vcpu.fd, KVM_GET_FPU, &fpu));
	EXPECT_EQ(0x37f, fpu.fcw);
	EXPECT_EQ(0, fpu.fsw);
	fpu.fcw = 0x27f;
	memcpy(fpu.xmm[0], &x0, 4);
	ASSERT_EQ(0, ioctl(self->vcpu.fd, KVM_SET_FPU, &fpu));

	load_code(_metadata, &self->vm, CODE_GPA, fpu32_start, fpu32_end);
	vcpu_enter(_metadata, &self->vcpu, FLAT32, CODE_GPA);
	seen = io_value(run_expect_io(_metadata, &self->vcpu, KVM_EXIT_IO_OUT, 4, FPU_PORT), 4);
	run_expect(_metadata, &self->vcpu, KVM_EXIT_HLT);
	memcpy(&fcw, self->vm.mem + RES_GPA, 2);
	if (rkvm) {
		EXPECT_EQ(x0, seen);
		EXPECT_EQ(0x27f, fcw);
	} else {
		TH_LOG("reference: guest saw XMM0 %#x, FCW %#x", seen, fcw);
	}

	memset(&fpu, 0, sizeof(fpu));
	ASSERT_EQ(0, ioctl(self->vcpu.fd, KVM_GET_FPU, &fpu));
	memcpy(&x1, fpu.xmm[1], 4);
	EXPECT_EQ((__u32)FPU_XMM1, x1);
	/* The reference reports back the FCW it was given, not the guest's. */
	if (rkvm)
		EXPECT_EQ(0x27f, fpu.fcw);
}

/* Without an in-kernel local APIC only RUNNABLE exists. */
TEST_F(run, mp_state_is_runnable_only)
{
	struct kvm_mp_state mp = { .mp_state = 0xff };

	ASSERT_EQ(0, ioctl(self->vcpu.fd, KVM_GET_MP_STATE, &mp));
	EXPECT_EQ((__u32)KVM_MP_STATE_RUNNABLE, mp.mp_state);
	EXPECT_EQ(1, ioctl(self->vm.dev, KVM_CHECK_EXTENSION, KVM_CAP_MP_STATE));
	for (__u32 st = KVM_MP_STATE_UNINITIALIZED; st <= KVM_MP_STATE_AP_RESET_HOLD + 1; st++) {
		mp.mp_state = st;
		errno = 0;
		EXPECT_EQ(-1, ioctl(self->vcpu.fd, KVM_SET_MP_STATE, &mp)) TH_LOG("state %u", st);
		EXPECT_EQ(EINVAL, errno) TH_LOG("state %u", st);
	}
	mp.mp_state = KVM_MP_STATE_RUNNABLE;
	EXPECT_EQ(0, ioctl(self->vcpu.fd, KVM_SET_MP_STATE, &mp));
}

/*
 * Guest RDMSR/WRMSR and KVM_GET/SET_MSRS see one set of MSRs; an MSR that
 * does not exist raises #GP in the guest.
 */
TEST_F(run, msrs_guest_and_host_agree)
{
	struct kvm_msr_entry lstar = { .index = 0xc0000082, .data = 0xffffffff81000000ULL };
	struct kvm_msr_entry star = { .index = 0xc0000081 };

	ASSERT_EQ(1, rkvm_msrs(self->vcpu.fd, KVM_SET_MSRS, &lstar, 1));
	load_code(_metadata, &self->vm, CODE_GPA, msr16_start, msr16_end);
	vcpu_enter(_metadata, &self->vcpu, REAL_MODE, CODE_GPA);
	EXPECT_EQ(0x00070406U, io_value(run_expect_io(_metadata, &self->vcpu, KVM_EXIT_IO_OUT,
						      4, MSR_PORT), 4));
	EXPECT_EQ(0x00070406U, io_value(run_expect_io(_metadata, &self->vcpu, KVM_EXIT_IO_OUT,
						      4, MSR_PORT), 4));
	EXPECT_EQ(0x81000000U, io_value(run_expect_io(_metadata, &self->vcpu, KVM_EXIT_IO_OUT,
						      4, MSR_PORT + 1), 4));
	run_expect_mark(_metadata, &self->vcpu, MSR_GP_MARK);
	run_expect(_metadata, &self->vcpu, KVM_EXIT_HLT);
	ASSERT_EQ(1, rkvm_msrs(self->vcpu.fd, KVM_GET_MSRS, &star, 1));
	EXPECT_EQ(0x2222222211111111ULL, star.data);
}

/*
 * KVM_GET_MSR_INDEX_LIST's protocol (count written back, E2BIG when the
 * array is too small) and KVM_GET/SET_MSRS's: processing stops at the first
 * refused entry and the count is the result; 256 entries or more is E2BIG.
 */
TEST_F(run, msr_ioctls_follow_kvm_protocols)
{
	struct kvm_msr_entry e[4] = {
		{ .index = 0x277, .data = 0x0006040600070406ULL },	/* valid PAT */
		{ .index = 0x277, .data = 0x2 },			/* type 2: invalid */
		{ .index = 0x277, .data = 0x0007040600070406ULL },
	};
	struct { struct kvm_msr_list hdr; __u32 idx[512]; } list = { .hdr.nmsrs = 1 };
	struct kvm_msrs big = { .nmsrs = 256 };
	unsigned int i, n;

	errno = 0;
	EXPECT_EQ(-1, ioctl(self->vm.dev, KVM_GET_MSR_INDEX_LIST, &list));
	EXPECT_EQ(E2BIG, errno);
	n = list.hdr.nmsrs;
	EXPECT_LT(1U, n);
	ASSERT_GE(512U, n);
	ASSERT_EQ(0, ioctl(self->vm.dev, KVM_GET_MSR_INDEX_LIST, &list));
	EXPECT_EQ(n, list.hdr.nmsrs);
	for (i = 0; i < n && list.idx[i] != 0x277; i++)
		;
	EXPECT_GT(n, i) TH_LOG("IA32_PAT is not in the index list");

	EXPECT_EQ(1, rkvm_msrs(self->vcpu.fd, KVM_SET_MSRS, e, 3));
	e[0].data = 0;
	EXPECT_EQ(1, rkvm_msrs(self->vcpu.fd, KVM_GET_MSRS, e, 1));
	EXPECT_EQ(0x0006040600070406ULL, e[0].data);
	e[0] = (struct kvm_msr_entry){ .index = 0xc0000082, .data = 0x0000800000000000ULL };
	EXPECT_EQ(0, rkvm_msrs(self->vcpu.fd, KVM_SET_MSRS, e, 1)) TH_LOG("non-canonical LSTAR");
	e[0] = (struct kvm_msr_entry){ .index = MSR_UNKNOWN };
	EXPECT_EQ(0, rkvm_msrs(self->vcpu.fd, KVM_GET_MSRS, e, 1));
	errno = 0;
	EXPECT_EQ(-1, ioctl(self->vcpu.fd, KVM_GET_MSRS, &big));
	EXPECT_EQ(E2BIG, errno);
}

/* The next exit is KVM_EXIT_X86_RDMSR/WRMSR of `index` for `reason`. */
static struct kvm_run *run_expect_msr(struct __test_metadata *_metadata, struct vcpu *vcpu,
				      __u32 exit, __u32 index, __u32 reason, __u64 data)
{
	struct kvm_run *run = vcpu->run;

	run_expect(_metadata, vcpu, exit);
	EXPECT_EQ(index, run->msr.index);
	EXPECT_EQ(reason, run->msr.reason);
	EXPECT_EQ(data, run->msr.data);
	EXPECT_EQ(0, run->msr.error);
	return run;
}

/*
 * KVM_CAP_X86_USER_SPACE_MSR and KVM_X86_SET_MSR_FILTER: refused guest
 * RDMSR/WRMSR go to user space for the reasons it enabled (an MSR rkvm does
 * not know, one the filter denies, an invalid value), with KVM's
 * kvm_run.msr; user space's data reaches EDX:EAX and its error is #GP. A
 * reason not enabled stays #GP, the filter never applies to KVM_GET_MSRS,
 * and bad masks, flags, ranges and bitmaps get KVM's errnos.
 */
TEST_F(run, msr_exits_and_filter)
{
	__u64 deny = 0;
	struct kvm_msr_filter f = {
		.ranges[0] = { .flags = KVM_MSR_FILTER_READ, .nmsrs = 1, .base = 0xc0000081,
			       .bitmap = (__u8 *)&deny },
	};
	struct kvm_msr_filter none = { .flags = KVM_MSR_FILTER_DEFAULT_ALLOW };
	struct kvm_enable_cap cap = { .cap = KVM_CAP_X86_USER_SPACE_MSR };
	struct kvm_msr_entry star = { .index = 0xc0000081 };
	struct kvm_run *run;
	int pass;

	EXPECT_EQ(1, ioctl(self->vm.dev, KVM_CHECK_EXTENSION, KVM_CAP_X86_USER_SPACE_MSR));
	EXPECT_EQ(1, ioctl(self->vm.dev, KVM_CHECK_EXTENSION, KVM_CAP_X86_MSR_FILTER));

	/* Bad requests. */
	cap.args[0] = 8;
	errno = 0;
	EXPECT_EQ(-1, ioctl(self->vm.fd, KVM_ENABLE_CAP, &cap));
	EXPECT_EQ(EINVAL, errno) TH_LOG("unknown exit reason");
	f.flags = 2;
	errno = 0;
	EXPECT_EQ(-1, ioctl(self->vm.fd, KVM_X86_SET_MSR_FILTER, &f));
	EXPECT_EQ(EINVAL, errno) TH_LOG("unknown filter flag");
	f.flags = 0;
	f.ranges[0].flags = 4;
	errno = 0;
	EXPECT_EQ(-1, ioctl(self->vm.fd, KVM_X86_SET_MSR_FILTER, &f));
	EXPECT_EQ(EINVAL, errno) TH_LOG("unknown range flag");
	f.ranges[0].flags = 0;
	errno = 0;
	EXPECT_EQ(-1, ioctl(self->vm.fd, KVM_X86_SET_MSR_FILTER, &f));
	EXPECT_EQ(EINVAL, errno) TH_LOG("a range that filters nothing");
	f.ranges[0].flags = KVM_MSR_FILTER_READ;
	f.ranges[0].nmsrs = KVM_MSR_FILTER_MAX_BITMAP_SIZE * 8 + 1;
	errno = 0;
	EXPECT_EQ(-1, ioctl(self->vm.fd, KVM_X86_SET_MSR_FILTER, &f));
	EXPECT_EQ(EINVAL, errno) TH_LOG("bitmap too large");
	f.ranges[0].nmsrs = 1;
	f.ranges[0].bitmap = (__u8 *)8;
	errno = 0;
	EXPECT_EQ(-1, ioctl(self->vm.fd, KVM_X86_SET_MSR_FILTER, &f));
	EXPECT_EQ(EFAULT, errno) TH_LOG("unreadable bitmap");
	f.ranges[0].bitmap = (__u8 *)&deny;
	none.flags = KVM_MSR_FILTER_DEFAULT_DENY;
	errno = 0;
	EXPECT_EQ(-1, ioctl(self->vm.fd, KVM_X86_SET_MSR_FILTER, &none));
	EXPECT_EQ(EINVAL, errno) TH_LOG("deny everything with no range");
	none.flags = KVM_MSR_FILTER_DEFAULT_ALLOW;

	/* Unknown MSRs and the filter's denials to user space, not INVAL. */
	cap.args[0] = KVM_MSR_EXIT_REASON_UNKNOWN | KVM_MSR_EXIT_REASON_FILTER;
	ASSERT_EQ(0, ioctl(self->vm.fd, KVM_ENABLE_CAP, &cap)) TH_LOG("%s", strerror(errno));
	ASSERT_EQ(0, ioctl(self->vm.fd, KVM_X86_SET_MSR_FILTER, &f)) TH_LOG("%s", strerror(errno));
	ASSERT_EQ(1, rkvm_set_msr(self->vcpu.fd, 0xc0000081, 0x0023001000000000ULL));
	ASSERT_EQ(1, rkvm_msrs(self->vcpu.fd, KVM_GET_MSRS, &star, 1)) TH_LOG("host access filtered");
	EXPECT_EQ(0x0023001000000000ULL, star.data);
	load_code(_metadata, &self->vm, CODE_GPA, umsr16_start, umsr16_end);
	for (pass = 0; pass < 2; pass++) {
		vcpu_enter(_metadata, &self->vcpu, REAL_MODE, CODE_GPA);
		run = run_expect_msr(_metadata, &self->vcpu, KVM_EXIT_X86_RDMSR, MSR_NOBODY,
				     KVM_MSR_EXIT_REASON_UNKNOWN, 0);
		run->msr.data = 0xaabbccddeeff0011ULL;
		EXPECT_EQ(0xeeff0011U, io_value(run_expect_io(_metadata, &self->vcpu,
							      KVM_EXIT_IO_OUT, 4, MSR_PORT), 4));
		EXPECT_EQ(0xaabbccddU, io_value(run_expect_io(_metadata, &self->vcpu,
							      KVM_EXIT_IO_OUT, 4, MSR_PORT), 4));
		run_expect_msr(_metadata, &self->vcpu, KVM_EXIT_X86_WRMSR, MSR_NOBODY,
			       KVM_MSR_EXIT_REASON_UNKNOWN, 0x5566778811223344ULL);
		if (pass == 0) {
			/* STAR's read is filtered; user space refuses it: #GP. */
			run = run_expect_msr(_metadata, &self->vcpu, KVM_EXIT_X86_RDMSR,
					     0xc0000081, KVM_MSR_EXIT_REASON_FILTER, 0);
			run->msr.error = 1;
			run_expect_mark(_metadata, &self->vcpu, MSR_GP_MARK);
			/* The invalid PAT: INVAL is not enabled, so #GP. */
			run_expect_mark(_metadata, &self->vcpu, MSR_GP_MARK);
			/* Every reason from now on, and no filter. */
			cap.args[0] = KVM_MSR_EXIT_REASON_VALID_MASK;
			ASSERT_EQ(0, ioctl(self->vm.fd, KVM_ENABLE_CAP, &cap));
			ASSERT_EQ(0, ioctl(self->vm.fd, KVM_X86_SET_MSR_FILTER, &none))
				TH_LOG("%s", strerror(errno));
		} else {
			/* The invalid PAT is user space's, which accepts it. */
			run_expect_msr(_metadata, &self->vcpu, KVM_EXIT_X86_WRMSR, 0x277,
				       KVM_MSR_EXIT_REASON_INVAL, 2);
		}
		EXPECT_EQ(0x00070406U, io_value(run_expect_io(_metadata, &self->vcpu,
							      KVM_EXIT_IO_OUT, 4, MSR_PORT), 4));
		run_expect(_metadata, &self->vcpu, KVM_EXIT_HLT);
	}
}

/*
 * Guest CPUID bits KVM owns at run time (kvm_update_cpuid_runtime(): OSXSAVE
 * mirrors CR4, APIC mirrors IA32_APIC_BASE), ignored in the comparison.
 * Everything else the guest sees is the table exactly.
 */
#define CPUID1_ECX_OSXSAVE	(1U << 27)
#define CPUID1_EDX_APIC		(1U << 9)

TEST_F(run, cpuid)
{
	static struct {
		struct kvm_cpuid2 hdr;
		struct kvm_cpuid_entry2 e[3];
	} table;
	static const char vendor[] = "rkvmTestCPU!";
	__u32 ebx, edx, ecx;
	struct kvm_regs regs;

	memcpy(&ebx, vendor, 4);
	memcpy(&edx, vendor + 4, 4);
	memcpy(&ecx, vendor + 8, 4);
	table.hdr.nent = 3;
	table.e[0] = (struct kvm_cpuid_entry2){ .function = 0, .eax = 1,
						.ebx = ebx, .ecx = ecx, .edx = edx };
	table.e[1] = (struct kvm_cpuid_entry2){ .function = 1, .eax = 0x000906a3,
						.ebx = 0x00010800, .ecx = 0x00000201,
						.edx = 0x00000011 };
	table.e[2] = (struct kvm_cpuid_entry2){ .function = 0x80000000, .eax = 0x80000000 };
	ASSERT_EQ(0, ioctl(self->vcpu.fd, KVM_SET_CPUID2, &table))
		TH_LOG("KVM_SET_CPUID2: %s", strerror(errno));

	load_code(_metadata, &self->vm, CODE_GPA, cpuid32_start, cpuid32_end);
	vcpu_enter(_metadata, &self->vcpu, FLAT32, CODE_GPA);
	get_regs(_metadata, &self->vcpu, &regs);
	regs.rbx = regs.rdx = 0xffffffff;
	set_regs(_metadata, &self->vcpu, &regs);
	run_expect(_metadata, &self->vcpu, KVM_EXIT_HLT);

	EXPECT_EQ(1U, mem32(&self->vm, RES_GPA));
	EXPECT_EQ(ebx, mem32(&self->vm, RES_GPA + 4));
	EXPECT_EQ(ecx, mem32(&self->vm, RES_GPA + 8));
	EXPECT_EQ(edx, mem32(&self->vm, RES_GPA + 12));
	EXPECT_EQ(0, memcmp(vendor, self->vm.mem + RES_GPA + 4, 4));
	EXPECT_EQ(0x80000000U, mem32(&self->vm, RES_GPA + 16));

	get_regs(_metadata, &self->vcpu, &regs);
	EXPECT_EQ(0x000906a3ULL, regs.rax);
	EXPECT_EQ(0x00010800ULL, regs.rbx);
	EXPECT_EQ(0x00000201ULL, regs.rcx & ~(__u64)CPUID1_ECX_OSXSAVE);
	EXPECT_EQ(0x00000011ULL, regs.rdx & ~(__u64)CPUID1_EDX_APIC);
}

/* A benchmark: prints the cost, asserts only that it was measured. */
TEST_F(run, cpuid_exit_cost)
{
	unsigned long long delta, per_exit;
	void *data;

	load_code(_metadata, &self->vm, CODE_GPA, bench32_start, bench32_end);
	vcpu_enter(_metadata, &self->vcpu, FLAT32, CODE_GPA);
	data = run_expect_io(_metadata, &self->vcpu, KVM_EXIT_IO_OUT, 4, BENCH_PORT_LO);
	delta = io_value(data, 4);
	data = run_expect_io(_metadata, &self->vcpu, KVM_EXIT_IO_OUT, 4, BENCH_PORT_HI);
	delta |= (unsigned long long)io_value(data, 4) << 32;
	run_expect(_metadata, &self->vcpu, KVM_EXIT_HLT);

	per_exit = delta / BENCH_N;
	ksft_print_msg("bench cpuid_exit dev=%s cycles_per_exit=%llu\n", rkvm_dev_path(),
		       per_exit);
	EXPECT_LT(0ULL, per_exit);
}

/* Identity-maps the first MEM_SIZE bytes with 4 KiB pages (PD_GPA, PT_GPA). */
static void build_page_tables(struct vm *vm)
{
	__u32 *pd = (__u32 *)(vm->mem + PD_GPA), *pt = (__u32 *)(vm->mem + PT_GPA);
	unsigned int i;

	memset(pd, 0, 4096);
	pd[0] = PT_GPA | 0x3;			/* present, writable */
	for (i = 0; i < 1024; i++)
		pt[i] = i < MEM_SIZE / 4096 ? (i << 12) | 0x3 : 0;
}

/*
 * Protected mode for a paging test: code at CODE_GPA, a GDT with flat code
 * (selector 8) and data, an IDT whose vector 14 is a 32-bit interrupt gate
 * to the blob's #PF handler `pf_handler`, and a stack below 0xf000.
 */
static void enter_paging_guest(struct __test_metadata *_metadata, struct vm *vm,
			       struct vcpu *vcpu, const char *start, const char *end,
			       const char *pf_handler)
{
	static const __u64 gdt[] = { 0, 0x00cf9b000000ffffULL, 0x00cf93000000ffffULL };
	__u32 *idt = (__u32 *)(vm->mem + IDT_GPA);
	__u32 pf = CODE_GPA + (pf_handler - start);
	struct kvm_sregs sregs;
	struct kvm_regs regs;

	idt[2 * 14] = (0x8 << 16) | (pf & 0xffff);
	idt[2 * 14 + 1] = (pf & 0xffff0000) | 0x8e00;
	memcpy(vm->mem + GDT_GPA, gdt, sizeof(gdt));
	load_code(_metadata, vm, CODE_GPA, start, end);
	vcpu_enter(_metadata, vcpu, FLAT32, CODE_GPA);
	get_sregs(_metadata, vcpu, &sregs);
	sregs.idt.base = IDT_GPA;
	sregs.idt.limit = 8 * 32 - 1;
	sregs.gdt.base = GDT_GPA;
	sregs.gdt.limit = sizeof(gdt) - 1;
	set_sregs(_metadata, vcpu, &sregs);
	get_regs(_metadata, vcpu, &regs);
	regs.rsp = 0xf000;
	set_regs(_metadata, vcpu, &regs);
}

TEST_F(run, paging_32bit)
{
	__u32 *pd = (__u32 *)(self->vm.mem + PD_GPA);
	__u32 *pt2 = (__u32 *)(self->vm.mem + PT2_GPA);
	__u32 *pd2 = (__u32 *)(self->vm.mem + PD2_GPA);
	__u32 *pt3 = (__u32 *)(self->vm.mem + PT3_GPA);
	struct kvm_sregs sregs;
	__u32 v;

	build_page_tables(&self->vm);
	pd[1] = PT2_GPA | 3;
	memset(pt2, 0, 4096);
	pt2[0] = DATA_GPA | 3;
	memset(pd2, 0, 4096);
	pd2[0] = pd[0];
	pd2[1] = PT3_GPA | 3;
	memset(pt3, 0, 4096);
	pt3[0] = DATA3_GPA | 3;
	v = 0x12345678;
	memcpy(self->vm.mem + DATA2_GPA, &v, 4);
	v = 0xabcdef01;
	memcpy(self->vm.mem + DATA3_GPA, &v, 4);
	enter_paging_guest(_metadata, &self->vm, &self->vcpu, paging32_start, paging32_end,
			   paging32_pf);

	EXPECT_EQ(0xfeedfaceU, io_value(run_expect_io(_metadata, &self->vcpu, KVM_EXIT_IO_OUT,
						      4, PG_PORT), 4));
	EXPECT_EQ(0x12345678U, io_value(run_expect_io(_metadata, &self->vcpu, KVM_EXIT_IO_OUT,
						      4, PG_PORT), 4));
	EXPECT_EQ(0xabcdef01U, io_value(run_expect_io(_metadata, &self->vcpu, KVM_EXIT_IO_OUT,
						      4, PG_PORT), 4));
	EXPECT_EQ((__u32)UNMAPPED_LA, io_value(run_expect_io(_metadata, &self->vcpu,
							     KVM_EXIT_IO_OUT, 4, PG_FAULT_PORT), 4));
	/* Supervisor read of a not-present page: error code 0. */
	EXPECT_EQ(0U, io_value(run_expect_io(_metadata, &self->vcpu, KVM_EXIT_IO_OUT, 4,
					     PG_FAULT_PORT), 4));
	run_expect(_metadata, &self->vcpu, KVM_EXIT_HLT);

	/* The walk set accessed flags, and dirty only where written. */
	EXPECT_EQ(0x20U, pt3[0] & 0x60) TH_LOG("PTE %#x", pt3[0]);
	EXPECT_EQ(0x20U, pd2[1] & 0x20) TH_LOG("PDE %#x", pd2[1]);
	get_sregs(_metadata, &self->vcpu, &sregs);
	EXPECT_EQ((__u64)PD2_GPA, sregs.cr3);
	EXPECT_EQ((__u64)UNMAPPED_LA, sregs.cr2);
	EXPECT_EQ(0x80010011ULL, sregs.cr0);
}

/* PAE paging with a 2 MiB page, a 4 KiB alias and a write to a read-only page. */
TEST_F(run, paging_pae)
{
	__u64 *pdpt = (__u64 *)(self->vm.mem + PDPT_GPA);
	__u64 *pd = (__u64 *)(self->vm.mem + PAE_PD_GPA);
	__u64 *pt = (__u64 *)(self->vm.mem + PAE_PT_GPA);
	struct kvm_sregs sregs;

	memset(pdpt, 0, 4096);
	memset(pd, 0, 4096);
	memset(pt, 0, 4096);
	pdpt[0] = PAE_PD_GPA | 1;
	pd[0] = 0x0 | 0x83;			/* 2 MiB page at 0: P, RW, PS */
	pd[2] = PAE_PT_GPA | 3;			/* 4 MiB - 6 MiB */
	pt[0] = DATA_GPA | 3;			/* ALIAS_LA */
	pt[1] = DATA2_GPA | 1;			/* RO_LA: read-only */
	enter_paging_guest(_metadata, &self->vm, &self->vcpu, pae32_start, pae32_end, pae32_pf);

	EXPECT_EQ(0x5ae5ae55U, io_value(run_expect_io(_metadata, &self->vcpu, KVM_EXIT_IO_OUT,
						      4, PG_PORT), 4));
	EXPECT_EQ((__u32)RO_LA, io_value(run_expect_io(_metadata, &self->vcpu, KVM_EXIT_IO_OUT,
						       4, PG_FAULT_PORT), 4));
	/* Supervisor write to a present read-only page with CR0.WP: P | W. */
	EXPECT_EQ(3U, io_value(run_expect_io(_metadata, &self->vcpu, KVM_EXIT_IO_OUT, 4,
					     PG_FAULT_PORT), 4));
	run_expect(_metadata, &self->vcpu, KVM_EXIT_HLT);
	/* Accessed and dirty on the written 4 KiB entry, accessed on the 2 MiB one. */
	EXPECT_EQ(0x60U, pt[0] & 0x60) TH_LOG("PTE %#llx", (unsigned long long)pt[0]);
	EXPECT_EQ(0x20U, pd[0] & 0x20) TH_LOG("PDE %#llx", (unsigned long long)pd[0]);
	get_sregs(_metadata, &self->vcpu, &sregs);
	EXPECT_EQ(0x20ULL, sregs.cr4 & 0x20);
	EXPECT_EQ((__u64)RO_LA, sregs.cr2);
}


/*
 * Long mode on 4-level tables the host builds: PML4 -> PDPT -> PD whose
 * first entry maps the low 2 MiB with a 2 MiB page and whose second points
 * to a page table mapping ALIAS_LA -> DATA_GPA. The 64-bit guest stores a
 * 64-bit value through the alias, reads it back through the identity map,
 * OUTs both halves, then reads an unmapped address: the #PF handler (a
 * 64-bit interrupt gate) OUTs CR2 and the error code.
 */
#define LM_PML4_GPA	0x18000
#define LM_PDPT_GPA	0x19000
#define LM_PD_GPA	0x1a000
#define LM_PT_GPA	0x1b000
#define LM_VALUE_LO	0x89abcdef
#define LM_VALUE_HI	0x01234567
asm(GUEST_BEGIN
	".code64\n"
	".global lm_start, lm_pf, lm_end\n"
	"lm_start:\n"
	"	movabs $0x0123456789abcdef, %rax\n"
	"	mov %rax, " XSTR(ALIAS_LA) "\n"
	"	mov " XSTR(DATA_GPA) ", %rbx\n"
	"	mov %ebx, %eax\n"
	"	out %eax, $" XSTR(PG_PORT) "\n"
	"	shr $32, %rbx\n"
	"	mov %ebx, %eax\n"
	"	out %eax, $" XSTR(PG_PORT) "\n"
	"	mov " XSTR(UNMAPPED_LA) ", %rax\n"
	"	hlt\n"
	"lm_pf:\n"
	"	mov %cr2, %rax\n"
	"	out %eax, $" XSTR(PG_FAULT_PORT) "\n"
	"	pop %rax\n"
	"	out %eax, $" XSTR(PG_FAULT_PORT) "\n"
	"	hlt\n"
	"lm_end:\n"
	GUEST_END);
extern const char lm_start[], lm_pf[], lm_end[];

TEST_F(run, long_mode_paging)
{
	static const __u64 gdt[] = { 0, 0x00af9b000000ffffULL, 0x00cf93000000ffffULL };
	__u64 *pml4 = (__u64 *)(self->vm.mem + LM_PML4_GPA);
	__u64 *pdpt = (__u64 *)(self->vm.mem + LM_PDPT_GPA);
	__u64 *pd = (__u64 *)(self->vm.mem + LM_PD_GPA);
	__u64 *pt = (__u64 *)(self->vm.mem + LM_PT_GPA);
	__u64 *idt = (__u64 *)(self->vm.mem + IDT_GPA);
	__u64 pf = CODE_GPA + (lm_pf - lm_start);
	struct {
		struct kvm_cpuid2 hdr;
		struct kvm_cpuid_entry2 e[256];
	} cpuid = { .hdr.nent = 256 };
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	__u64 v;

	ASSERT_EQ(0, ioctl(self->vm.dev, KVM_GET_SUPPORTED_CPUID, &cpuid));
	ASSERT_EQ(0, ioctl(self->vcpu.fd, KVM_SET_CPUID2, &cpuid));
	memset(pml4, 0, 4 * 4096);
	pml4[0] = LM_PDPT_GPA | 3;
	pdpt[0] = LM_PD_GPA | 3;
	pd[0] = 0x83;				/* 2 MiB page at 0: P, RW, PS */
	pd[2] = LM_PT_GPA | 3;			/* 4 MiB - 6 MiB */
	pt[0] = DATA_GPA | 3;			/* ALIAS_LA */
	memset(idt, 0, 16 * 32);
	idt[2 * 14] = (pf & 0xffff) | (0x8ULL << 16) | (0x8eULL << 40) |
		      ((pf >> 16) & 0xffff) << 48;
	idt[2 * 14 + 1] = pf >> 32;
	memcpy(self->vm.mem + GDT_GPA, gdt, sizeof(gdt));
	load_code(_metadata, &self->vm, CODE_GPA, lm_start, lm_end);
	vcpu_enter(_metadata, &self->vcpu, FLAT32, CODE_GPA);
	get_sregs(_metadata, &self->vcpu, &sregs);
	sregs.cr0 = 0x80010011;			/* PG, WP, ET, PE */
	sregs.cr4 = 0x20;			/* PAE */
	sregs.efer = 0x500;			/* LME, LMA */
	sregs.cr3 = LM_PML4_GPA;
	sregs.cs.l = 1;
	sregs.cs.db = 0;
	sregs.idt.base = IDT_GPA;
	sregs.idt.limit = 16 * 32 - 1;
	sregs.gdt.base = GDT_GPA;
	sregs.gdt.limit = sizeof(gdt) - 1;
	set_sregs(_metadata, &self->vcpu, &sregs);
	get_regs(_metadata, &self->vcpu, &regs);
	regs.rsp = 0xf000;
	set_regs(_metadata, &self->vcpu, &regs);

	EXPECT_EQ((__u32)LM_VALUE_LO, io_value(run_expect_io(_metadata, &self->vcpu,
							     KVM_EXIT_IO_OUT, 4, PG_PORT), 4));
	EXPECT_EQ((__u32)LM_VALUE_HI, io_value(run_expect_io(_metadata, &self->vcpu,
							     KVM_EXIT_IO_OUT, 4, PG_PORT), 4));
	EXPECT_EQ((__u32)UNMAPPED_LA, io_value(run_expect_io(_metadata, &self->vcpu,
							     KVM_EXIT_IO_OUT, 4, PG_FAULT_PORT), 4));
	/* Supervisor read of a not-present page: error code 0. */
	EXPECT_EQ(0U, io_value(run_expect_io(_metadata, &self->vcpu, KVM_EXIT_IO_OUT, 4,
					     PG_FAULT_PORT), 4));
	run_expect(_metadata, &self->vcpu, KVM_EXIT_HLT);
	memcpy(&v, self->vm.mem + DATA_GPA, 8);
	EXPECT_EQ(0x0123456789abcdefULL, v);
	/* Accessed and dirty on the written leaf. */
	EXPECT_EQ(0x60ULL, pt[0] & 0x60);
	get_sregs(_metadata, &self->vcpu, &sregs);
	EXPECT_EQ(0x500ULL, sregs.efer & 0x500);
	EXPECT_EQ((__u64)UNMAPPED_LA, sregs.cr2);
}

TEST_F(run, run_bad_inputs)
{
	struct kvm_regs regs;
	pid_t pid;
	int status;

	load_code(_metadata, &self->vm, CODE_GPA, halt32_start, halt32_end);
	vcpu_enter(_metadata, &self->vcpu, FLAT32, CODE_GPA);

	errno = 0;
	EXPECT_EQ(-1, ioctl(self->vcpu.fd, KVM_RUN, 1));
	EXPECT_EQ(EINVAL, errno);

	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		/* The vCPU belongs to the creator's address space. */
		errno = 0;
		if (ioctl(self->vcpu.fd, KVM_RUN, 0) != -1)
			_exit(1);
		_exit(errno == EIO ? 0 : 2);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	EXPECT_TRUE(WIFEXITED(status));
	EXPECT_EQ(0, WEXITSTATUS(status)) TH_LOG("child: 1 = KVM_RUN worked, 2 = not EIO");

	/* Neither attempt ran the guest; it still runs here. */
	get_regs(_metadata, &self->vcpu, &regs);
	EXPECT_EQ((__u64)CODE_GPA, regs.rip);
	run_expect(_metadata, &self->vcpu, KVM_EXIT_HLT);
	get_regs(_metadata, &self->vcpu, &regs);
	EXPECT_EQ((__u64)CODE_GPA + 1, regs.rip);
}

/* ---- Tests with their own VMs ------------------------------------------ */

TEST(reset_vector)
{
	const __u64 base = 0xffff0000, size = 0x10000;
	struct kvm_userspace_memory_region r = {
		.slot = 0, .guest_phys_addr = base, .memory_size = size,
	};
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	struct vcpu vcpu;
	struct vm vm;
	char *mem;
	void *data;

	/* The short jump at the vector reaches the payload. */
	ASSERT_EQ(0xfff0 - RESET_OFFSET, reset16_vector - reset16_start);
	ASSERT_EQ(2, reset16_end - reset16_vector);
	ASSERT_EQ(0xeb, (unsigned char)reset16_vector[0]);

	vm_create(_metadata, &vm, 0);
	mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, mem);
	memcpy(mem + RESET_OFFSET, reset16_start, reset16_end - reset16_start);
	r.userspace_addr = (__u64)(unsigned long)mem;
	ASSERT_EQ(0, ioctl(vm.fd, KVM_SET_USER_MEMORY_REGION, &r))
		TH_LOG("KVM_SET_USER_MEMORY_REGION: %s", strerror(errno));
	vcpu_create(_metadata, &vm, 0, &vcpu);

	/* No SET_REGS/SET_SREGS: the vCPU starts at 0xf000:0xfff0. */
	data = run_expect_io(_metadata, &vcpu, KVM_EXIT_IO_OUT, 1, PORT_CON);
	EXPECT_EQ((__u32)RESET_BYTE, io_value(data, 1));
	run_expect(_metadata, &vcpu, KVM_EXIT_HLT);
	get_regs(_metadata, &vcpu, &regs);
	EXPECT_EQ(RESET_OFFSET + (__u64)(reset16_after_hlt - reset16_start), regs.rip);
	get_sregs(_metadata, &vcpu, &sregs);
	EXPECT_EQ(0xf000, sregs.cs.selector);
	EXPECT_EQ(base, sregs.cs.base);
	EXPECT_EQ(0ULL, sregs.cr0 & 1);

	vcpu_destroy(&vcpu);
	vm_destroy(&vm);
	munmap(mem, size);
}

/* One vCPU of the concurrency test, run by its own thread. */
struct counter {
	struct vcpu vcpu;
	__u16 port;
	pthread_barrier_t *start;
	unsigned int seen;	/* values that arrived in order */
	char err[160];		/* empty unless something went wrong */
};

static void *counter_thread(void *arg)
{
	struct counter *c = arg;
	struct kvm_run *run = c->vcpu.run;
	char why[128];
	__u32 v;

	pthread_barrier_wait(c->start);
	for (c->seen = 0; c->seen < COUNT_N; c->seen++) {
		if (ioctl(c->vcpu.fd, KVM_RUN, 0)) {
			snprintf(c->err, sizeof(c->err), "KVM_RUN: %s", strerror(errno));
			return NULL;
		}
		if (run->exit_reason != KVM_EXIT_IO || run->io.direction != KVM_EXIT_IO_OUT ||
		    run->io.size != 4 || run->io.port != c->port || run->io.count != 1) {
			snprintf(c->err, sizeof(c->err), "value %u: %s", c->seen,
				 exit_str(run, why, sizeof(why)));
			return NULL;
		}
		memcpy(&v, (char *)run + run->io.data_offset, 4);
		if (v != c->seen) {
			snprintf(c->err, sizeof(c->err), "value %u: got %u", c->seen, v);
			return NULL;
		}
	}
	if (ioctl(c->vcpu.fd, KVM_RUN, 0) || run->exit_reason != KVM_EXIT_HLT)
		snprintf(c->err, sizeof(c->err), "at the end: %s",
			 exit_str(run, why, sizeof(why)));
	return NULL;
}

/*
 * VM a runs two vCPUs on one memory, from different addresses; VM b runs
 * one. All three count to COUNT_N on their own port at the same time.
 */
TEST(two_vms_two_vcpus)
{
	static const struct {
		int vm;
		__u64 code, result;
		__u16 port;
	} cfg[3] = {
		{ 0, 0x1000, 0x3000, 0x10 },
		{ 0, 0x2000, 0x3004, 0x11 },
		{ 1, 0x1000, 0x3000, 0x12 },
	};
	struct counter c[3];
	pthread_barrier_t start;
	pthread_t tid[3];
	struct kvm_regs regs;
	struct vm vm[2];
	int i;

	memset(c, 0, sizeof(c));
	ASSERT_EQ(0, pthread_barrier_init(&start, NULL, 3));
	vm_create(_metadata, &vm[0], MEM_SIZE);
	vm_create(_metadata, &vm[1], MEM_SIZE);
	for (i = 0; i < 3; i++) {
		struct vm *v = &vm[cfg[i].vm];

		load_code(_metadata, v, cfg[i].code, count32_start, count32_end);
		vcpu_create(_metadata, v, i == 1 ? 1 : 0, &c[i].vcpu);
		vcpu_enter(_metadata, &c[i].vcpu, FLAT32, cfg[i].code);
		get_regs(_metadata, &c[i].vcpu, &regs);
		regs.rdx = cfg[i].port;
		regs.rbx = cfg[i].result;
		set_regs(_metadata, &c[i].vcpu, &regs);
		c[i].port = cfg[i].port;
		c[i].start = &start;
	}
	for (i = 0; i < 3; i++)
		ASSERT_EQ(0, pthread_create(&tid[i], NULL, counter_thread, &c[i]));
	for (i = 0; i < 3; i++)
		ASSERT_EQ(0, pthread_join(tid[i], NULL));

	for (i = 0; i < 3; i++) {
		EXPECT_STREQ("", c[i].err) TH_LOG("vCPU %d", i);
		EXPECT_EQ((unsigned int)COUNT_N, c[i].seen) TH_LOG("vCPU %d", i);
		EXPECT_EQ((__u32)COUNT_N, mem32(&vm[cfg[i].vm], cfg[i].result)) TH_LOG("vCPU %d", i);
		get_regs(_metadata, &c[i].vcpu, &regs);
		EXPECT_EQ(cfg[i].code + (count32_after_hlt - count32_start), regs.rip)
			TH_LOG("vCPU %d", i);
	}
	/* VM b's memory is its own: nothing at VM a's second result. */
	EXPECT_EQ(0U, mem32(&vm[1], 0x3004));

	for (i = 0; i < 3; i++)
		vcpu_destroy(&c[i].vcpu);
	vm_destroy(&vm[0]);
	vm_destroy(&vm[1]);
	pthread_barrier_destroy(&start);
}

struct poller {
	struct vcpu vcpu;
	volatile int entered;	/* the vCPU thread is about to run the guest */
	int ret;
};

static void *poller_thread(void *arg)
{
	struct poller *p = arg;

	p->entered = 1;
	p->ret = vcpu_run(&p->vcpu);
	return NULL;
}

/*
 * A vCPU spins inside the guest reading a page of slot 1 (zero: keep
 * spinning) while another thread deletes slot 1. The deletion must take
 * the page away from the running guest: its next read of that address is
 * an MMIO exit (no slot backs it any more), never the old page. On rkvm this
 * is the EPT zap and the kick of a vCPU inside its VMX window.
 */
#define POLL_GPA	0x40000
#define POLL_PORT	0x20
TEST(slot_delete_while_running)
{
	struct kvm_userspace_memory_region r = {
		.slot = 1, .guest_phys_addr = POLL_GPA, .memory_size = 4096,
	};
	struct kvm_run *run;
	struct kvm_regs regs;
	struct poller p = { 0 };
	struct vm vm;
	pthread_t tid;
	char why[128];
	__u32 v = 0x600d;
	void *page;

	vm_create(_metadata, &vm, 0x10000);
	page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, page);
	r.userspace_addr = (unsigned long)page;
	ASSERT_EQ(0, ioctl(vm.fd, KVM_SET_USER_MEMORY_REGION, &r));
	load_code(_metadata, &vm, CODE_GPA, poll32_start, poll32_end);
	vcpu_create(_metadata, &vm, 0, &p.vcpu);
	run = p.vcpu.run;
	vcpu_enter(_metadata, &p.vcpu, FLAT32, CODE_GPA);
	get_regs(_metadata, &p.vcpu, &regs);
	regs.rbx = POLL_GPA;
	regs.rdx = POLL_PORT;
	set_regs(_metadata, &p.vcpu, &regs);

	ASSERT_EQ(0, pthread_create(&tid, NULL, poller_thread, &p));
	while (!p.entered)
		usleep(1000);
	usleep(200000);		/* let the guest map the page and spin */
	r.memory_size = 0;
	ASSERT_EQ(0, ioctl(vm.fd, KVM_SET_USER_MEMORY_REGION, &r));
	/* Too late for the guest: the host's write must not reach it. */
	memcpy(page, &v, 4);
	ASSERT_EQ(0, pthread_join(tid, NULL));

	ASSERT_EQ(0, p.ret) TH_LOG("KVM_RUN: %s", strerror(-p.ret));
	ASSERT_EQ((__u32)KVM_EXIT_MMIO, run->exit_reason) TH_LOG("%s", exit_str(run, why, sizeof(why)));
	EXPECT_EQ((__u64)POLL_GPA, run->mmio.phys_addr);
	EXPECT_EQ(4U, run->mmio.len);
	EXPECT_EQ(0, run->mmio.is_write);
	v = 0x5107;
	memcpy(run->mmio.data, &v, 4);
	ASSERT_EQ(0, vcpu_run(&p.vcpu));
	ASSERT_EQ((__u32)KVM_EXIT_IO, run->exit_reason) TH_LOG("%s", exit_str(run, why, sizeof(why)));
	EXPECT_EQ(POLL_PORT, run->io.port);
	EXPECT_EQ(0x5107U, io_value(io_data(&p.vcpu), 4));
	ASSERT_EQ(0, vcpu_run(&p.vcpu));
	EXPECT_EQ((__u32)KVM_EXIT_HLT, run->exit_reason);

	vcpu_destroy(&p.vcpu);
	vm_destroy(&vm);
	munmap(page, 4096);
}

/*
 * REP INSB whose count user space changes between the exit and the next
 * KVM_RUN. The guest is "rep insb; hlt" with EDI, ECX = 2 and DX set by
 * the host; the first exit asks for both bytes. User space supplies them,
 * then rewrites RCX with KVM_SET_REGS before resuming:
 *   - lowered to 1: only one element is completed (KVM's emulator reads
 *     ahead min(RCX, ...) elements), so one byte lands, RCX = 0 and RDI
 *     moved by one; the same with DF=1, where the byte lands at RDI;
 *   - 0: nothing is written and RDI stays; rkvm completes the instruction,
 *     kvm_intel keeps reporting the same exit (see below);
 *   - raised to 4: the guest must end with RCX = 0 and RDI moved by 4, the
 *     two bytes user space gave first in place (KVM fills the other two
 *     from its read-ahead buffer in the same KVM_RUN; an implementation may
 *     instead ask for them with further exits, which this test answers).
 * Nothing past the run may be written, and the vCPU must not get stuck
 * (rkvm used to overflow a subtraction in the kernel on the lowered count).
 */
#define RINS_PORT	0x80
#define RINS_CANARY	0xcc
asm(GUEST_BEGIN
	".code32\n"
	".global rins32_start, rins32_after_hlt, rins32_end\n"
	"rins32_start:\n"
	"	rep insb\n"
	"	hlt\n"
	"rins32_after_hlt:\n"
	"rins32_end:\n"
	GUEST_END);
extern const char rins32_start[], rins32_after_hlt[], rins32_end[];

TEST(rep_ins_with_rcx_changed_by_user_space)
{
	static const struct {
		const char *name;
		bool df;
		__u64 new_rcx;
	} cases[] = {
		{ "lowered", false, 1 },
		{ "zeroed", false, 0 },
		{ "raised", false, 4 },
		{ "lowered_df", true, 1 },
	};
	const __u8 first[2] = { 0x11, 0x22 };
	unsigned int i, j;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		/* DF=1 stores from RDI down: start inside the page. */
		__u64 rdi = cases[i].df ? BUF_GPA + 0x10 : BUF_GPA;
		__u64 n = cases[i].new_rcx;
		__u64 lo = cases[i].df ? rdi + 1 - n : rdi;	/* bytes [lo, lo + n) written */
		unsigned int k;
		bool stopped;
		struct kvm_regs regs;
		struct kvm_run *run;
		struct vcpu vcpu;
		struct vm vm;
		char why[128];
		__u8 *buf;

		TH_LOG("case %s", cases[i].name);
		vm_create(_metadata, &vm, MEM_SIZE);
		vcpu_create(_metadata, &vm, 0, &vcpu);
		run = vcpu.run;
		buf = (__u8 *)vm.mem + BUF_GPA;
		memset(buf, RINS_CANARY, 0x40);
		load_code(_metadata, &vm, CODE_GPA, rins32_start, rins32_end);
		vcpu_enter(_metadata, &vcpu, FLAT32, CODE_GPA);
		get_regs(_metadata, &vcpu, &regs);
		regs.rdi = rdi;
		regs.rcx = 2;
		regs.rdx = RINS_PORT;
		if (cases[i].df)
			regs.rflags |= 0x400;
		set_regs(_metadata, &vcpu, &regs);

		run_expect(_metadata, &vcpu, KVM_EXIT_IO);
		ASSERT_TRUE(run->io.direction == KVM_EXIT_IO_IN && run->io.size == 1 &&
			    run->io.port == RINS_PORT && run->io.count == 2)
			TH_LOG("%s: want in size 1 port %#x count 2, got %s", cases[i].name,
			       RINS_PORT, exit_str(run, why, sizeof(why)));
		memcpy(io_data(&vcpu), first, 2);
		/* Nothing is written to the guest before the exit completes. */
		for (j = 0; j < 0x40; j++)
			ASSERT_EQ(RINS_CANARY, buf[j]) TH_LOG("%s: byte %u", cases[i].name, j);
		get_regs(_metadata, &vcpu, &regs);
		EXPECT_EQ(2ULL, regs.rcx) TH_LOG("%s", cases[i].name);
		EXPECT_EQ(rdi, regs.rdi) TH_LOG("%s", cases[i].name);
		EXPECT_EQ((__u64)CODE_GPA, regs.rip) TH_LOG("%s", cases[i].name);
		regs.rcx = n;
		set_regs(_metadata, &vcpu, &regs);

		/*
		 * RCX 0: rkvm completes the instruction. kvm_intel (EPT or
		 * not) does not: its emulator ends the REP at once, but the
		 * input stays pending, so every KVM_RUN reports the same exit
		 * again with nothing written and RIP, RCX, RDI as they are.
		 * Either is accepted; the latter is checked twice, then
		 * resolved by setting RCX to 1 (the lowered case).
		 */
		stopped = false;
		if (n == 0) {
			int ret = vcpu_run(&vcpu);

			ASSERT_EQ(0, ret) TH_LOG("%s: KVM_RUN: %s", cases[i].name, strerror(-ret));
			stopped = run->exit_reason != KVM_EXIT_IO;
			for (j = 0; !stopped && j < 2; j++) {
				ASSERT_TRUE(run->io.direction == KVM_EXIT_IO_IN &&
					    run->io.size == 1 && run->io.port == RINS_PORT &&
					    run->io.count == 2)
					TH_LOG("%s: repeated exit %u is %s", cases[i].name, j,
					       exit_str(run, why, sizeof(why)));
				for (k = 0; k < 0x40; k++)
					ASSERT_EQ(RINS_CANARY, buf[k])
						TH_LOG("%s: byte %u", cases[i].name, k);
				get_regs(_metadata, &vcpu, &regs);
				EXPECT_EQ(0ULL, regs.rcx) TH_LOG("%s", cases[i].name);
				EXPECT_EQ(rdi, regs.rdi) TH_LOG("%s", cases[i].name);
				EXPECT_EQ((__u64)CODE_GPA, regs.rip) TH_LOG("%s", cases[i].name);
				if (j == 0)
					run_expect(_metadata, &vcpu, KVM_EXIT_IO);
			}
			if (!stopped) {
				TH_LOG("%s: the input stays pending; RCX := 1", cases[i].name);
				n = 1;
				lo = rdi;
				regs.rcx = 1;
				set_regs(_metadata, &vcpu, &regs);
				memcpy(io_data(&vcpu), first, 2);
			}
		}

		/* Further exits for the raised count get bytes 0x33, 0x34, ... */
		for (j = 0; !stopped; j++) {
			int ret = vcpu_run(&vcpu);

			ASSERT_EQ(0, ret) TH_LOG("%s: KVM_RUN: %s", cases[i].name, strerror(-ret));
			if (run->exit_reason != KVM_EXIT_IO)
				break;
			ASSERT_TRUE(n > 2 && j < n - 2 && run->io.direction == KVM_EXIT_IO_IN &&
				    run->io.size == 1 && run->io.port == RINS_PORT &&
				    run->io.count >= 1 && run->io.count <= n - 2 - j)
				TH_LOG("%s: unexpected %s after %u more", cases[i].name,
				       exit_str(run, why, sizeof(why)), j);
			for (k = 0; k < run->io.count; k++)
				((__u8 *)io_data(&vcpu))[k] = 0x33 + j + k;
			j += run->io.count - 1;
		}
		ASSERT_EQ((__u32)KVM_EXIT_HLT, run->exit_reason)
			TH_LOG("%s: got %s", cases[i].name, exit_str(run, why, sizeof(why)));
		get_regs(_metadata, &vcpu, &regs);
		EXPECT_EQ(0ULL, regs.rcx) TH_LOG("%s", cases[i].name);
		EXPECT_EQ(cases[i].df ? rdi - n : rdi + n, regs.rdi) TH_LOG("%s", cases[i].name);
		EXPECT_EQ(CODE_GPA + (__u64)(rins32_after_hlt - rins32_start), regs.rip)
			TH_LOG("%s", cases[i].name);
		EXPECT_EQ(cases[i].df ? 0x400ULL : 0ULL, regs.rflags & 0x400)
			TH_LOG("%s", cases[i].name);

		/* The first element user space gave is first in the run's order. */
		if (n >= 1)
			EXPECT_EQ(first[0], buf[rdi - BUF_GPA]) TH_LOG("%s", cases[i].name);
		if (n >= 2)
			EXPECT_EQ(first[1], buf[cases[i].df ? rdi - BUF_GPA - 1 : rdi - BUF_GPA + 1])
				TH_LOG("%s", cases[i].name);
		/* Outside [lo, lo + n) the buffer is untouched. */
		for (j = 0; j < 0x40; j++)
			if (BUF_GPA + j < lo || BUF_GPA + j >= lo + n)
				EXPECT_EQ(RINS_CANARY, buf[j])
					TH_LOG("%s: byte %u written", cases[i].name, j);

		vcpu_destroy(&vcpu);
		vm_destroy(&vm);
	}
}

/*
 * An exception whose delivery reads an IDT that no memslot backs: the CPU
 * exits while vectoring the event, and nothing at RIP caused the access,
 * so KVM does not emulate it as MMIO but returns KVM_EXIT_INTERNAL_ERROR,
 * suberror KVM_INTERNAL_ERROR_DELIVERY_EV, with five words: the
 * IDT-vectoring information (valid, hardware exception, the vector, the
 * error-code bit for #GP), the VMX exit reason, its qualification, the
 * faulting address and the CPU of the last entry. The address is the
 * guest-physical one on an EPT exit and CR2 on a shadow-paging #PF exit;
 * the IDT's linear addresses map to themselves here, so both are the
 * gate's address. Cases: #UD (UD2) and #GP (a selector past the GDT limit
 * loaded into DS), each in protected mode without paging, with 32-bit
 * paging and in long mode. RIP stays at the faulting instruction.
 */
#define EVD_IDT		0xd0000000ULL	/* unbacked, like MMIO_GPA */
#define EVD_PT_GPA	0x12000		/* 32-bit: maps EVD_IDT's 4 MiB */
#define EVD_PD2_GPA	0x13000		/* long mode: the PD for EVD_IDT's GiB */
asm(GUEST_BEGIN
	".code32\n"
	".global evd_ud, evd_gp, evd_gp_fault, evd_end\n"
	"evd_ud:\n"
	"	ud2\n"
	"	hlt\n"
	"evd_gp:\n"
	"	mov $0x1000, %eax\n"
	"evd_gp_fault:\n"
	"	mov %eax, %ds\n"
	"	hlt\n"
	"evd_end:\n"
	GUEST_END);
extern const char evd_ud[], evd_gp[], evd_gp_fault[], evd_end[];

enum evd_mode { EVD_UNPAGED, EVD_PAGED32, EVD_LONG };

static void evd_case(struct __test_metadata *_metadata, enum evd_mode mode, bool gp)
{
	static const __u64 gdt32[] = { 0, 0x00cf9b000000ffffULL, 0x00cf93000000ffffULL };
	static const __u64 gdt64[] = { 0, 0x00af9b000000ffffULL, 0x00cf93000000ffffULL };
	static const char *const names[] = { "unpaged", "paged32", "long" };
	unsigned int vector = gp ? 13 : 6;
	__u64 gate = EVD_IDT + vector * (mode == EVD_LONG ? 16 : 8);
	__u64 want_info = 0x80000000ULL | (3 << 8) | vector | (gp ? 0x800 : 0);
	__u64 rip = CODE_GPA + (gp ? evd_gp - evd_ud : 0);
	__u64 fault_rip = CODE_GPA + (gp ? evd_gp_fault - evd_ud : 0);
	struct {
		struct kvm_cpuid2 hdr;
		struct kvm_cpuid_entry2 e[256];
	} cpuid = { .hdr.nent = 256 };
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	struct kvm_run *run;
	struct vcpu vcpu;
	struct vm vm;
	char why[128];
	__u64 *d;

	TH_LOG("case %s %s", names[mode], gp ? "#GP" : "#UD");
	vm_create(_metadata, &vm, MEM_SIZE);
	vcpu_create(_metadata, &vm, 0, &vcpu);
	run = vcpu.run;
	load_code(_metadata, &vm, CODE_GPA, evd_ud, evd_end);
	vcpu_enter(_metadata, &vcpu, FLAT32, rip);
	get_sregs(_metadata, &vcpu, &sregs);
	if (mode == EVD_PAGED32) {
		__u32 *pd = (__u32 *)(vm.mem + PD_GPA), *pt = (__u32 *)(vm.mem + EVD_PT_GPA);

		build_page_tables(&vm);
		memset(pt, 0, 4096);
		pd[EVD_IDT >> 22] = EVD_PT_GPA | 3;
		pt[(EVD_IDT >> 12) & 0x3ff] = EVD_IDT | 3;
		sregs.cr0 = 0x80010011;		/* PG, WP, ET, PE */
		sregs.cr3 = PD_GPA;
	} else if (mode == EVD_LONG) {
		__u64 *pml4 = (__u64 *)(vm.mem + LM_PML4_GPA);
		__u64 *pdpt = (__u64 *)(vm.mem + LM_PDPT_GPA);
		__u64 *pd = (__u64 *)(vm.mem + LM_PD_GPA);
		__u64 *pd2 = (__u64 *)(vm.mem + EVD_PD2_GPA);

		ASSERT_EQ(0, ioctl(vm.dev, KVM_GET_SUPPORTED_CPUID, &cpuid));
		ASSERT_EQ(0, ioctl(vcpu.fd, KVM_SET_CPUID2, &cpuid));
		memset(pml4, 0, 3 * 4096);
		memset(pd2, 0, 4096);
		pml4[0] = LM_PDPT_GPA | 3;
		pdpt[0] = LM_PD_GPA | 3;
		pd[0] = 0x83;			/* 2 MiB page at 0 */
		pdpt[EVD_IDT >> 30] = EVD_PD2_GPA | 3;
		pd2[(EVD_IDT >> 21) & 0x1ff] = EVD_IDT | 0x83;
		sregs.cr0 = 0x80010011;
		sregs.cr4 = 0x20;		/* PAE */
		sregs.efer = 0x500;		/* LME, LMA */
		sregs.cr3 = LM_PML4_GPA;
		sregs.cs.l = 1;
		sregs.cs.db = 0;
	}
	memcpy(vm.mem + GDT_GPA, mode == EVD_LONG ? gdt64 : gdt32, sizeof(gdt32));
	sregs.gdt.base = GDT_GPA;
	sregs.gdt.limit = sizeof(gdt32) - 1;
	sregs.idt.base = EVD_IDT;
	sregs.idt.limit = (mode == EVD_LONG ? 16 : 8) * 32 - 1;
	set_sregs(_metadata, &vcpu, &sregs);
	get_regs(_metadata, &vcpu, &regs);
	regs.rsp = 0xf000;
	set_regs(_metadata, &vcpu, &regs);

	run_expect(_metadata, &vcpu, KVM_EXIT_INTERNAL_ERROR);
	d = run->internal.data;
	ASSERT_EQ((__u32)KVM_INTERNAL_ERROR_DELIVERY_EV, run->internal.suberror)
		TH_LOG("%s %s: got %s", names[mode], gp ? "#GP" : "#UD",
		       exit_str(run, why, sizeof(why)));
	ASSERT_EQ(5U, run->internal.ndata);
	/* Bit 12 of the IDT-vectoring information is undefined (SDM 25.9.3). */
	EXPECT_EQ(want_info, d[0] & ~0x1000ULL)
		TH_LOG("%s: data[0] %#llx", names[mode], (unsigned long long)d[0]);
	EXPECT_EQ(gate, d[3])
		TH_LOG("%s: data[3] %#llx", names[mode], (unsigned long long)d[3]);
	/* Exception or NMI (a #PF), EPT violation or EPT misconfiguration. */
	EXPECT_TRUE(d[1] == 0 || d[1] == 48 || d[1] == 49)
		TH_LOG("%s: exit reason %llu", names[mode], (unsigned long long)d[1]);
	if (d[1] == 0)		/* a #PF's qualification is its linear address */
		EXPECT_EQ(gate, d[2]);
	if (d[1] == 48)		/* a read, not a write or a fetch */
		EXPECT_EQ(1ULL, d[2] & 7) TH_LOG("qualification %#llx",
						 (unsigned long long)d[2]);
	EXPECT_GT((__u64)sysconf(_SC_NPROCESSORS_CONF), d[4]);
	printf("# %s %s: exit reason %llu qualification %#llx address %#llx\n",
	       names[mode], gp ? "#GP" : "#UD", (unsigned long long)d[1],
	       (unsigned long long)d[2], (unsigned long long)d[3]);
	get_regs(_metadata, &vcpu, &regs);
	EXPECT_EQ(fault_rip, regs.rip) TH_LOG("%s", names[mode]);
	if (gp)
		EXPECT_EQ(0x1000ULL, regs.rax & 0xffff);

	vcpu_destroy(&vcpu);
	vm_destroy(&vm);
}

TEST(event_delivery_into_mmio_is_internal_error)
{
	evd_case(_metadata, EVD_UNPAGED, false);
	evd_case(_metadata, EVD_UNPAGED, true);
	evd_case(_metadata, EVD_PAGED32, false);
	evd_case(_metadata, EVD_PAGED32, true);
	evd_case(_metadata, EVD_LONG, false);
	evd_case(_metadata, EVD_LONG, true);
}

/*
 * An MMIO access rkvm cannot emulate ends KVM_RUN with
 * KVM_INTERNAL_ERROR_EMULATION in KVM's emulation_failure layout (flags
 * bit 0, then insn_size and the bytes, `d9 00` for flds (%eax)), and with
 * KVM_CAP_EXIT_ON_EMULATION_FAILURE no #UD is queued: the VMM skips the
 * instruction and the guest goes on. Also the capability's own checks.
 */
TEST_F(run, emulation_failure_exits_with_the_instruction)
{
	struct kvm_enable_cap cap = { .cap = KVM_CAP_EXIT_ON_EMULATION_FAILURE, .args = { 2 } };
	struct kvm_run *run = self->vcpu.run;
	struct kvm_regs regs;
	char why[128];

	EXPECT_EQ(1, ioctl(self->vm.dev, KVM_CHECK_EXTENSION, KVM_CAP_EXIT_ON_EMULATION_FAILURE));
	errno = 0;
	EXPECT_EQ(-1, ioctl(self->vm.fd, KVM_ENABLE_CAP, &cap));
	EXPECT_EQ(EINVAL, errno);
	cap.args[0] = 1;
	ASSERT_EQ(0, ioctl(self->vm.fd, KVM_ENABLE_CAP, &cap)) TH_LOG("%s", strerror(errno));

	load_code(_metadata, &self->vm, CODE_GPA, fld32_start, fld32_end);
	vcpu_enter(_metadata, &self->vcpu, FLAT32, CODE_GPA);
	run_expect(_metadata, &self->vcpu, KVM_EXIT_INTERNAL_ERROR);
	ASSERT_EQ((__u32)KVM_INTERNAL_ERROR_EMULATION, run->emulation_failure.suberror)
		TH_LOG("got %s", exit_str(run, why, sizeof(why)));
	EXPECT_LE(3U, run->emulation_failure.ndata);
	ASSERT_NE(0ULL, run->emulation_failure.flags &
		  KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES);
	EXPECT_LE(2, run->emulation_failure.insn_size);
	EXPECT_GE(15, run->emulation_failure.insn_size);
	EXPECT_EQ(0xd9, run->emulation_failure.insn_bytes[0]);
	EXPECT_EQ(0x00, run->emulation_failure.insn_bytes[1]);
	get_regs(_metadata, &self->vcpu, &regs);
	EXPECT_EQ(CODE_GPA + (__u64)(fld32_insn - fld32_start), regs.rip) TH_LOG("RIP at the flds");
	regs.rip += 2;
	set_regs(_metadata, &self->vcpu, &regs);
	run_expect(_metadata, &self->vcpu, KVM_EXIT_HLT);
	get_regs(_metadata, &self->vcpu, &regs);
	EXPECT_EQ(CODE_GPA + (__u64)(fld32_end - fld32_start), regs.rip) TH_LOG("no #UD queued");
}

/* The VMCALL results of the hc32 guest: the three reports, then HLT. */
static void expect_hypercalls(struct __test_metadata *_metadata, struct vcpu *vcpu,
			      __u32 yield)
{
	EXPECT_EQ(0U, io_value(run_expect_io(_metadata, vcpu, KVM_EXIT_IO_OUT, 4, HC_PORT), 4))
		TH_LOG("VAPIC_POLL_IRQ");
	/* -KVM_ENOSYS, 32 bits outside 64-bit mode. */
	EXPECT_EQ(0xfffffc18U,
		  io_value(run_expect_io(_metadata, vcpu, KVM_EXIT_IO_OUT, 4, HC_PORT), 4))
		TH_LOG("an unknown hypercall");
	EXPECT_EQ(yield, io_value(run_expect_io(_metadata, vcpu, KVM_EXIT_IO_OUT, 4, HC_PORT), 4))
		TH_LOG("SCHED_YIELD");
	run_expect(_metadata, vcpu, KVM_EXIT_HLT);
}

/*
 * KVM's hypercalls, and KVM_CAP_ENFORCE_PV_FEATURE_CPUID (vCPU
 * KVM_ENABLE_CAP): once enforced, a guest whose CPUID 0x40000001 lacks a
 * feature gets -KVM_ENOSYS for its hypercall and cannot use the kvmclock
 * MSRs of a clocksource it lacks (nor can the host, as on KVM).
 */
TEST_F(run, hypercalls_and_pv_feature_enforcement)
{
	struct kvm_enable_cap cap = { .cap = KVM_CAP_ENFORCE_PV_FEATURE_CPUID, .args = { 1 } };
	struct kvm_cpuid2 *cpuid;
	struct kvm_msr_entry e = { .index = 0x12 };

	EXPECT_EQ(1, ioctl(self->vm.dev, KVM_CHECK_EXTENSION, KVM_CAP_ENFORCE_PV_FEATURE_CPUID));
	/*
	 * The supported CPUID with only the old clocksource (bit 0) (before
	 * the first run: KVM takes no other CPUID after it).
	 */
	cpuid = rkvm_supported_cpuid(self->vm.dev);
	ASSERT_NE(NULL, cpuid);
	for (__u32 i = 0; i < cpuid->nent; i++)
		if (cpuid->entries[i].function == 0x40000001)
			cpuid->entries[i].eax = 1;
	ASSERT_EQ(0, ioctl(self->vcpu.fd, KVM_SET_CPUID2, cpuid)) TH_LOG("%s", strerror(errno));
	free(cpuid);
	load_code(_metadata, &self->vm, CODE_GPA, hc32_start, hc32_end);
	vcpu_enter(_metadata, &self->vcpu, FLAT32, CODE_GPA);
	/* Not enforced: the guest has every feature. */
	expect_hypercalls(_metadata, &self->vcpu, 0);

	/* Bad requests. */
	cap.flags = 1;
	errno = 0;
	EXPECT_EQ(-1, ioctl(self->vcpu.fd, KVM_ENABLE_CAP, &cap));
	EXPECT_EQ(EINVAL, errno);
	cap.flags = 0;
	cap.cap = KVM_CAP_SPLIT_IRQCHIP;
	errno = 0;
	EXPECT_EQ(-1, ioctl(self->vcpu.fd, KVM_ENABLE_CAP, &cap));
	EXPECT_EQ(EINVAL, errno) TH_LOG("a VM capability on the vCPU fd");
	cap.cap = KVM_CAP_ENFORCE_PV_FEATURE_CPUID;

	ASSERT_EQ(1, rkvm_msrs(self->vcpu.fd, KVM_GET_MSRS, &e, 1));
	ASSERT_EQ(0, ioctl(self->vcpu.fd, KVM_ENABLE_CAP, &cap)) TH_LOG("%s", strerror(errno));
	EXPECT_EQ(1, rkvm_msrs(self->vcpu.fd, KVM_GET_MSRS, &e, 1)) TH_LOG("CLOCKSOURCE");
	/*
	 * Without CLOCKSOURCE2 the host, like the guest, cannot use its MSRs,
	 * but KVM lets it read (0) and write 0 to an MSR it lists.
	 */
	ASSERT_EQ(1, rkvm_set_msr(self->vcpu.fd, 0x4b564d01, 0));
	e.index = 0x4b564d01;
	e.data = 5;
	EXPECT_EQ(1, rkvm_msrs(self->vcpu.fd, KVM_GET_MSRS, &e, 1)) TH_LOG("no CLOCKSOURCE2");
	EXPECT_EQ(0ULL, e.data);
	EXPECT_EQ(0, rkvm_set_msr(self->vcpu.fd, 0x4b564d01, 0x1000 | 1));
	EXPECT_EQ(1, rkvm_set_msr(self->vcpu.fd, 0x4b564d00, 0));
	EXPECT_EQ(0, rkvm_set_msr(self->vcpu.fd, 0x4b564d00, 0x2000));

	/* No PV_SCHED_YIELD: -KVM_ENOSYS now. */
	vcpu_enter(_metadata, &self->vcpu, FLAT32, CODE_GPA);
	expect_hypercalls(_metadata, &self->vcpu, 0xfffffc18);

	/* Enforcement off again. */
	cap.args[0] = 0;
	ASSERT_EQ(0, ioctl(self->vcpu.fd, KVM_ENABLE_CAP, &cap)) TH_LOG("%s", strerror(errno));
	EXPECT_EQ(1, rkvm_msrs(self->vcpu.fd, KVM_GET_MSRS, &e, 1));
	vcpu_enter(_metadata, &self->vcpu, FLAT32, CODE_GPA);
	expect_hypercalls(_metadata, &self->vcpu, 0);
}

/*
 * KVM_CAP_SYNC_REGS: kvm_run.s.regs carries the register sets
 * kvm_valid_regs asks for after every KVM_RUN, and KVM_RUN first takes the
 * ones kvm_dirty_regs names (clearing each bit it consumed). Unknown bits
 * and invalid sets are EINVAL; without valid bits s.regs is left alone.
 */
TEST_F(run, sync_regs)
{
	struct kvm_run *run = self->vcpu.run;
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	int r;

	EXPECT_EQ(KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS | KVM_SYNC_X86_EVENTS,
		  (unsigned long)ioctl(self->vm.dev, KVM_CHECK_EXTENSION, KVM_CAP_SYNC_REGS));
	load_code(_metadata, &self->vm, CODE_GPA, sr32_start, sr32_end);
	vcpu_enter(_metadata, &self->vcpu, FLAT32, CODE_GPA);
	get_regs(_metadata, &self->vcpu, &regs);
	regs.rbx = 0;
	set_regs(_metadata, &self->vcpu, &regs);

	run->kvm_valid_regs = 0x80000000;
	errno = 0;
	EXPECT_EQ(-1, ioctl(self->vcpu.fd, KVM_RUN, 0));
	EXPECT_EQ(EINVAL, errno);
	run->kvm_valid_regs = 0;
	run->kvm_dirty_regs = 0x80000000 | KVM_SYNC_X86_REGS;
	errno = 0;
	EXPECT_EQ(-1, ioctl(self->vcpu.fd, KVM_RUN, 0));
	EXPECT_EQ(EINVAL, errno);
	run->kvm_dirty_regs = 0;

	/* Every set, as the ioctls give them. */
	run->kvm_valid_regs = KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS | KVM_SYNC_X86_EVENTS;
	run_expect_io(_metadata, &self->vcpu, KVM_EXIT_IO_OUT, 1, SR_PORT);
	get_regs(_metadata, &self->vcpu, &regs);
	ASSERT_EQ(0, ioctl(self->vcpu.fd, KVM_GET_SREGS, &sregs));
	EXPECT_EQ(0, memcmp(&regs, &run->s.regs.regs, sizeof(regs)));
	EXPECT_EQ(0, memcmp(&sregs, &run->s.regs.sregs, sizeof(sregs)));
	EXPECT_EQ(0x8U, run->s.regs.sregs.cs.selector);

	/* A dirty REGS set reaches the guest (RBX + 1 after one loop). */
	run->s.regs.regs.rbx = 0x1000;
	run->kvm_dirty_regs = KVM_SYNC_X86_REGS;
	run_expect_io(_metadata, &self->vcpu, KVM_EXIT_IO_OUT, 1, SR_PORT);
	EXPECT_EQ(0ULL, run->kvm_dirty_regs) TH_LOG("consumed");
	EXPECT_EQ(0x1001ULL, run->s.regs.regs.rbx);
	get_regs(_metadata, &self->vcpu, &regs);
	EXPECT_EQ(0x1001ULL, regs.rbx);

	/* An invalid SREGS set (CR0.PG without PE): EINVAL, nothing ran. */
	run->s.regs.sregs.cr0 = 0x80000010;
	run->kvm_dirty_regs = KVM_SYNC_X86_SREGS;
	errno = 0;
	r = ioctl(self->vcpu.fd, KVM_RUN, 0);
	EXPECT_EQ(-1, r);
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ((__u64)KVM_SYNC_X86_SREGS, run->kvm_dirty_regs) TH_LOG("not consumed");
	/* ... and an invalid event (exception vector 255). */
	run->kvm_dirty_regs = KVM_SYNC_X86_EVENTS;
	run->s.regs.events.exception.injected = 1;
	run->s.regs.events.exception.nr = 255;
	errno = 0;
	EXPECT_EQ(-1, ioctl(self->vcpu.fd, KVM_RUN, 0));
	EXPECT_EQ(EINVAL, errno);
	get_regs(_metadata, &self->vcpu, &regs);
	EXPECT_EQ(0x1001ULL, regs.rbx) TH_LOG("the guest did not run");

	/* Without valid bits s.regs is not written. */
	run->kvm_dirty_regs = 0;
	run->kvm_valid_regs = 0;
	run->s.regs.regs.rbx = 0xaaaa;
	run_expect_io(_metadata, &self->vcpu, KVM_EXIT_IO_OUT, 1, SR_PORT);
	EXPECT_EQ(0xaaaaULL, run->s.regs.regs.rbx);
	get_regs(_metadata, &self->vcpu, &regs);
	EXPECT_EQ(0x1002ULL, regs.rbx);
}

TEST_HARNESS_MAIN
