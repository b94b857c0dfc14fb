// SPDX-License-Identifier: GPL-2.0

//! VMCS field encodings and the VMX instructions rkvm executes.
//!
//! Encodings: Intel SDM Vol. 3D, appendix B. The instruction wrappers are
//! `unsafe`: they are valid only inside the VMX window (interrupts off, VMX
//! root operation, see [`super::window`]).

use core::arch::asm;

/// 16-bit, 32-bit, 64-bit and natural-width field encodings (the ones rkvm
/// uses or checks the layout with).
#[allow(missing_docs, dead_code)]
pub(crate) mod field {
    // 16-bit guest state.
    pub(crate) const GUEST_ES_SELECTOR: u32 = 0x0800;
    pub(crate) const GUEST_LDTR_SELECTOR: u32 = 0x080c;
    pub(crate) const GUEST_TR_SELECTOR: u32 = 0x080e;
    // 16-bit host state.
    pub(crate) const HOST_ES_SELECTOR: u32 = 0x0c00;
    pub(crate) const HOST_CS_SELECTOR: u32 = 0x0c02;
    pub(crate) const HOST_SS_SELECTOR: u32 = 0x0c04;
    pub(crate) const HOST_DS_SELECTOR: u32 = 0x0c06;
    pub(crate) const HOST_FS_SELECTOR: u32 = 0x0c08;
    pub(crate) const HOST_GS_SELECTOR: u32 = 0x0c0a;
    pub(crate) const HOST_TR_SELECTOR: u32 = 0x0c0c;
    // 64-bit control fields.
    pub(crate) const TSC_OFFSET: u32 = 0x2010;
    pub(crate) const EPT_POINTER: u32 = 0x201a;
    pub(crate) const GUEST_PHYSICAL_ADDRESS: u32 = 0x2400;
    // 64-bit guest state.
    pub(crate) const VMCS_LINK_POINTER: u32 = 0x2800;
    pub(crate) const GUEST_IA32_DEBUGCTL: u32 = 0x2802;
    pub(crate) const GUEST_IA32_PAT: u32 = 0x2804;
    pub(crate) const GUEST_IA32_EFER: u32 = 0x2806;
    // 64-bit host state.
    pub(crate) const HOST_IA32_PAT: u32 = 0x2c00;
    pub(crate) const HOST_IA32_EFER: u32 = 0x2c02;
    // 32-bit control fields.
    pub(crate) const PIN_BASED_CONTROLS: u32 = 0x4000;
    pub(crate) const PROC_BASED_CONTROLS: u32 = 0x4002;
    pub(crate) const EXCEPTION_BITMAP: u32 = 0x4004;
    pub(crate) const PAGE_FAULT_ERROR_CODE_MASK: u32 = 0x4006;
    pub(crate) const PAGE_FAULT_ERROR_CODE_MATCH: u32 = 0x4008;
    pub(crate) const CR3_TARGET_COUNT: u32 = 0x400a;
    pub(crate) const EXIT_CONTROLS: u32 = 0x400c;
    pub(crate) const EXIT_MSR_STORE_COUNT: u32 = 0x400e;
    pub(crate) const EXIT_MSR_LOAD_COUNT: u32 = 0x4010;
    pub(crate) const ENTRY_CONTROLS: u32 = 0x4012;
    pub(crate) const ENTRY_MSR_LOAD_COUNT: u32 = 0x4014;
    pub(crate) const ENTRY_INTR_INFO: u32 = 0x4016;
    pub(crate) const ENTRY_EXCEPTION_ERROR_CODE: u32 = 0x4018;
    pub(crate) const ENTRY_INSTRUCTION_LEN: u32 = 0x401a;
    pub(crate) const PROC_BASED_CONTROLS2: u32 = 0x401e;
    // 32-bit read-only data.
    pub(crate) const VM_INSTRUCTION_ERROR: u32 = 0x4400;
    pub(crate) const EXIT_REASON: u32 = 0x4402;
    pub(crate) const EXIT_INTR_INFO: u32 = 0x4404;
    pub(crate) const EXIT_INTR_ERROR_CODE: u32 = 0x4406;
    pub(crate) const IDT_VECTORING_INFO: u32 = 0x4408;
    pub(crate) const IDT_VECTORING_ERROR_CODE: u32 = 0x440a;
    pub(crate) const EXIT_INSTRUCTION_LEN: u32 = 0x440c;
    pub(crate) const EXIT_INSTRUCTION_INFO: u32 = 0x440e;
    // 32-bit guest state.
    pub(crate) const GUEST_ES_LIMIT: u32 = 0x4800;
    pub(crate) const GUEST_GDTR_LIMIT: u32 = 0x4810;
    pub(crate) const GUEST_IDTR_LIMIT: u32 = 0x4812;
    pub(crate) const GUEST_ES_AR: u32 = 0x4814;
    pub(crate) const GUEST_INTERRUPTIBILITY: u32 = 0x4824;
    pub(crate) const GUEST_ACTIVITY_STATE: u32 = 0x4826;
    pub(crate) const GUEST_SYSENTER_CS: u32 = 0x482a;
    pub(crate) const PREEMPTION_TIMER_VALUE: u32 = 0x482e;
    // 32-bit host state.
    pub(crate) const HOST_IA32_SYSENTER_CS: u32 = 0x4c00;
    // Natural-width control fields.
    pub(crate) const CR0_GUEST_HOST_MASK: u32 = 0x6000;
    pub(crate) const CR4_GUEST_HOST_MASK: u32 = 0x6002;
    pub(crate) const CR0_READ_SHADOW: u32 = 0x6004;
    pub(crate) const CR4_READ_SHADOW: u32 = 0x6006;
    // Natural-width read-only data.
    pub(crate) const EXIT_QUALIFICATION: u32 = 0x6400;
    // Natural-width guest state.
    pub(crate) const GUEST_CR0: u32 = 0x6800;
    pub(crate) const GUEST_CR3: u32 = 0x6802;
    pub(crate) const GUEST_CR4: u32 = 0x6804;
    pub(crate) const GUEST_ES_BASE: u32 = 0x6806;
    pub(crate) const GUEST_GDTR_BASE: u32 = 0x6816;
    pub(crate) const GUEST_IDTR_BASE: u32 = 0x6818;
    pub(crate) const GUEST_DR7: u32 = 0x681a;
    pub(crate) const GUEST_RSP: u32 = 0x681c;
    pub(crate) const GUEST_RIP: u32 = 0x681e;
    pub(crate) const GUEST_RFLAGS: u32 = 0x6820;
    pub(crate) const GUEST_PENDING_DBG_EXCEPTIONS: u32 = 0x6822;
    pub(crate) const GUEST_SYSENTER_ESP: u32 = 0x6824;
    pub(crate) const GUEST_SYSENTER_EIP: u32 = 0x6826;
    // Natural-width host state.
    pub(crate) const HOST_CR0: u32 = 0x6c00;
    pub(crate) const HOST_CR3: u32 = 0x6c02;
    pub(crate) const HOST_CR4: u32 = 0x6c04;
    pub(crate) const HOST_FS_BASE: u32 = 0x6c06;
    pub(crate) const HOST_GS_BASE: u32 = 0x6c08;
    pub(crate) const HOST_TR_BASE: u32 = 0x6c0a;
    pub(crate) const HOST_GDTR_BASE: u32 = 0x6c0c;
    pub(crate) const HOST_IDTR_BASE: u32 = 0x6c0e;
    pub(crate) const HOST_IA32_SYSENTER_ESP: u32 = 0x6c10;
    pub(crate) const HOST_IA32_SYSENTER_EIP: u32 = 0x6c12;
    pub(crate) const HOST_RIP: u32 = 0x6c16;

    /// The selector/limit/AR/base fields of guest segment `i` in VMCS order
    /// (ES, CS, SS, DS, FS, GS, LDTR, TR): encodings step by 2.
    pub(crate) const fn guest_seg(i: u32) -> (u32, u32, u32, u32) {
        (
            GUEST_ES_SELECTOR + 2 * i,
            GUEST_ES_LIMIT + 2 * i,
            GUEST_ES_AR + 2 * i,
            GUEST_ES_BASE + 2 * i,
        )
    }

    // Keep the TR/LDTR encodings in step with `guest_seg`.
    const _: () = assert!(guest_seg(6).0 == GUEST_LDTR_SELECTOR);
    const _: () = assert!(guest_seg(7).0 == GUEST_TR_SELECTOR);
}

/// Whether the flags after a VMX instruction report success (neither
/// VMfailInvalid, CF=1, nor VMfailValid, ZF=1).
macro_rules! vmx_ok {
    ($insn:literal, $($args:tt)*) => {{
        let fail: u8;
        asm!(concat!($insn, "\n setbe {fail}"), $($args)*, fail = out(reg_byte) fail,
             options(nostack));
        fail == 0
    }};
}

/// Writes a VMCS field of the current VMCS. Returns false on VMfail.
///
/// # Safety
///
/// VMX root operation with a current VMCS, interrupts disabled.
#[inline]
pub(crate) unsafe fn vmwrite(field: u32, value: u64) -> bool {
    // SAFETY: the caller guarantees VMX root operation and a current VMCS;
    // VMWRITE only changes that VMCS and the flags.
    unsafe { vmx_ok!("vmwrite {f}, {v}", f = in(reg) u64::from(field), v = in(reg) value) }
}

/// Reads a VMCS field of the current VMCS (0 if the read fails).
///
/// # Safety
///
/// As for [`vmwrite`].
#[inline]
pub(crate) unsafe fn vmread(field: u32) -> u64 {
    let value: u64;
    // SAFETY: the caller guarantees VMX root operation and a current VMCS;
    // VMREAD only writes its output register and the flags.
    unsafe {
        asm!("vmread {v}, {f}", f = in(reg) u64::from(field), v = out(reg) value,
             options(nostack, nomem));
    }
    value
}

/// VMXON with the region at physical address `pa`. False on failure.
///
/// # Safety
///
/// Interrupts disabled, CR4.VMXE set, `pa` a zeroed page holding the VMCS
/// revision id and used by no other CPU.
pub(crate) unsafe fn vmxon(pa: u64) -> bool {
    // SAFETY: the operand is a u64 on the stack; the caller guarantees the
    // rest.
    unsafe { vmx_ok!("vmxon [{p}]", p = in(reg) &pa) }
}

/// VMXOFF.
///
/// # Safety
///
/// VMX root operation, interrupts disabled; no VMCS may be left active.
pub(crate) unsafe fn vmxoff() {
    // SAFETY: guaranteed by the caller.
    unsafe { asm!("vmxoff", options(nostack)) };
}

/// VMCLEAR of the VMCS at `pa`. False on failure.
///
/// # Safety
///
/// VMX root operation; `pa` is a VMCS region not active on another CPU.
pub(crate) unsafe fn vmclear(pa: u64) -> bool {
    // SAFETY: the operand is a u64 on the stack; the caller guarantees the
    // rest.
    unsafe { vmx_ok!("vmclear [{p}]", p = in(reg) &pa) }
}

/// VMPTRLD of the VMCS at `pa`. False on failure.
///
/// # Safety
///
/// As for [`vmclear`].
pub(crate) unsafe fn vmptrld(pa: u64) -> bool {
    // SAFETY: the operand is a u64 on the stack; the caller guarantees the
    // rest.
    unsafe { vmx_ok!("vmptrld [{p}]", p = in(reg) &pa) }
}

/// INVEPT of type `kind` (1 single-context, 2 all-context) for `eptp`.
///
/// # Safety
///
/// VMX root operation; `kind` is supported by the CPU.
pub(crate) unsafe fn invept(kind: u64, eptp: u64) -> bool {
    let desc: [u64; 2] = [eptp, 0];
    // SAFETY: the descriptor is a 16-byte array on the stack; the caller
    // guarantees the rest.
    unsafe { vmx_ok!("invept {k}, [{d}]", k = in(reg) kind, d = in(reg) &desc) }
}
