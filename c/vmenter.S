/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Guest entry and exit for rkvm: the only code that runs with guest values
 * in the general-purpose registers. Same shape as KVM's
 * arch/x86/kvm/vmx/vmenter.S (written independently): HOST_RSP is the
 * stack pointer at the VMLAUNCH/VMRESUME, HOST_RIP is rkvm_vmx_exit.
 *
 * int rkvm_vmx_enter(u64 *gprs, int resume)
 *
 *   gprs   16 guest registers in hardware encoding order (RAX, RCX, RDX,
 *          RBX, RSP, RBP, RSI, RDI, R8..R15); slot 4 is unused, the guest
 *          RSP lives in the VMCS.
 *   resume nonzero: VMRESUME, else VMLAUNCH.
 *
 * Returns 0 after a VM exit (the guest registers saved back into gprs), 1
 * when the VM instruction itself failed (VM_INSTRUCTION_ERROR says why).
 * Called with interrupts disabled, in VMX root operation, with the vCPU's
 * VMCS current and every other host and guest field already written.
 */
#include <linux/linkage.h>
#include <asm/asm.h>
#include <asm/unwind_hints.h>
#include <asm/nospec-branch.h>

#define VMCS_HOST_RSP	0x6c14

#define G_RAX	0*8
#define G_RCX	1*8
#define G_RDX	2*8
#define G_RBX	3*8
#define G_RBP	5*8
#define G_RSI	6*8
#define G_RDI	7*8
#define G_R8	8*8
#define G_R9	9*8
#define G_R10	10*8
#define G_R11	11*8
#define G_R12	12*8
#define G_R13	13*8
#define G_R14	14*8
#define G_R15	15*8

.section .text, "ax"

SYM_FUNC_START(rkvm_vmx_enter)
	push	%rbp
	mov	%rsp, %rbp
	push	%r15
	push	%r14
	push	%r13
	push	%r12
	push	%rbx
	/* The gprs pointer, found again at the exit through HOST_RSP. */
	push	%rdi

	mov	$VMCS_HOST_RSP, %eax
	vmwrite	%rsp, %rax
	/* VMfail here leaves CF or ZF set; report it like an entry failure. */
	jbe	.Lfail_early

	/* Flags from this test survive the MOVs below (they do not write flags). */
	test	%esi, %esi

	mov	G_RAX(%rdi), %rax
	mov	G_RCX(%rdi), %rcx
	mov	G_RDX(%rdi), %rdx
	mov	G_RBX(%rdi), %rbx
	mov	G_RBP(%rdi), %rbp
	mov	G_RSI(%rdi), %rsi
	mov	G_R8(%rdi), %r8
	mov	G_R9(%rdi), %r9
	mov	G_R10(%rdi), %r10
	mov	G_R11(%rdi), %r11
	mov	G_R12(%rdi), %r12
	mov	G_R13(%rdi), %r13
	mov	G_R14(%rdi), %r14
	mov	G_R15(%rdi), %r15
	mov	G_RDI(%rdi), %rdi

	jz	.Llaunch

	/*
	 * A successful VMLAUNCH/VMRESUME continues at rkvm_vmx_exit after the
	 * next VM exit; objtool is told to carry the unwind state across.
	 */
	UNWIND_HINT_SAVE
.Lresume:
	vmresume
	jmp	.Lfail

.Llaunch:
	vmlaunch
	jmp	.Lfail

SYM_INNER_LABEL(rkvm_vmx_exit, SYM_L_GLOBAL)
	UNWIND_HINT_RESTORE
	ENDBR
	/* RSP is HOST_RSP: the gprs pointer is on top of the stack. */
	push	%rax
	mov	8(%rsp), %rax
	mov	%rcx, G_RCX(%rax)
	mov	%rdx, G_RDX(%rax)
	mov	%rbx, G_RBX(%rax)
	mov	%rbp, G_RBP(%rax)
	mov	%rsi, G_RSI(%rax)
	mov	%rdi, G_RDI(%rax)
	mov	%r8, G_R8(%rax)
	mov	%r9, G_R9(%rax)
	mov	%r10, G_R10(%rax)
	mov	%r11, G_R11(%rax)
	mov	%r12, G_R12(%rax)
	mov	%r13, G_R13(%rax)
	mov	%r14, G_R14(%rax)
	mov	%r15, G_R15(%rax)
	popq	G_RAX(%rax)
	xor	%eax, %eax
	jmp	.Lout

.Lfail:
	/* The registers hold guest values; the stack is intact. */
	mov	$1, %eax
	jmp	.Lout

.Lfail_early:
	mov	$1, %eax

.Lout:
	/*
	 * Clear the guest values left in caller-saved registers so they do
	 * not leak into host code; callee-saved ones are restored below.
	 */
	xor	%ecx, %ecx
	xor	%edx, %edx
	xor	%esi, %esi
	xor	%edi, %edi
	xor	%r8d, %r8d
	xor	%r9d, %r9d
	xor	%r10d, %r10d
	xor	%r11d, %r11d
	add	$8, %rsp
	pop	%rbx
	pop	%r12
	pop	%r13
	pop	%r14
	pop	%r15
	pop	%rbp
	RET
SYM_FUNC_END(rkvm_vmx_enter)
