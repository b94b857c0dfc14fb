// SPDX-License-Identifier: GPL-2.0

//! VMX capability decoding.
//!
//! Turns the raw values of the VMX capability MSRs into the control settings
//! rkvm will program, or into an error that names the missing feature. This
//! file is pure logic over `core` so the host crate under `rust/host` can test
//! it with synthetic and recorded MSR values.
//!
//! The rules follow the Intel SDM, Vol. 3D, Appendix A ("VMX capability
//! reporting facility"); KVM's `setup_vmcs_config()` in
//! `arch/x86/kvm/vmx/vmx.c` applies the same rules to a different control set.

use core::fmt;

/// MSR indices read by the probe.
pub(crate) mod msr {
    /// IA32_FEATURE_CONTROL: lock bit and VMXON enables.
    pub(crate) const FEATURE_CONTROL: u32 = 0x3a;
    /// IA32_VMX_BASIC.
    pub(crate) const BASIC: u32 = 0x480;
    /// IA32_VMX_PINBASED_CTLS.
    pub(crate) const PINBASED: u32 = 0x481;
    /// IA32_VMX_PROCBASED_CTLS.
    pub(crate) const PROCBASED: u32 = 0x482;
    /// IA32_VMX_EXIT_CTLS.
    pub(crate) const EXIT: u32 = 0x483;
    /// IA32_VMX_ENTRY_CTLS.
    pub(crate) const ENTRY: u32 = 0x484;
    /// IA32_VMX_MISC.
    pub(crate) const MISC: u32 = 0x485;
    /// IA32_VMX_CR0_FIXED0.
    pub(crate) const CR0_FIXED0: u32 = 0x486;
    /// IA32_VMX_CR0_FIXED1.
    pub(crate) const CR0_FIXED1: u32 = 0x487;
    /// IA32_VMX_CR4_FIXED0.
    pub(crate) const CR4_FIXED0: u32 = 0x488;
    /// IA32_VMX_CR4_FIXED1.
    pub(crate) const CR4_FIXED1: u32 = 0x489;
    /// IA32_VMX_PROCBASED_CTLS2 (exists only if secondary controls may be 1).
    pub(crate) const PROCBASED2: u32 = 0x48b;
    /// IA32_VMX_EPT_VPID_CAP (exists only if EPT or VPID may be enabled).
    pub(crate) const EPT_VPID_CAP: u32 = 0x48c;
    /// IA32_VMX_TRUE_PINBASED_CTLS (exists only if BASIC bit 55 is set).
    pub(crate) const TRUE_PINBASED: u32 = 0x48d;
    /// IA32_VMX_TRUE_PROCBASED_CTLS.
    pub(crate) const TRUE_PROCBASED: u32 = 0x48e;
    /// IA32_VMX_TRUE_EXIT_CTLS.
    pub(crate) const TRUE_EXIT: u32 = 0x48f;
    /// IA32_VMX_TRUE_ENTRY_CTLS.
    pub(crate) const TRUE_ENTRY: u32 = 0x490;
}

/// IA32_FEATURE_CONTROL bits.
const FEATURE_CONTROL_LOCKED: u64 = 1 << 0;
const FEATURE_CONTROL_VMXON_OUTSIDE_SMX: u64 = 1 << 2;

/// CR4.VMXE: must be set for VMXON, and is part of CR4_FIXED0.
pub(crate) const CR4_VMXE: u64 = 1 << 13;

/// Pin-based VM-execution controls.
pub(crate) mod pin {
    /// External interrupts cause VM exits.
    pub(crate) const EXT_INTR_EXITING: u32 = 1 << 0;
    /// NMIs cause VM exits.
    pub(crate) const NMI_EXITING: u32 = 1 << 3;
    /// Virtual NMIs (NMI blocking tracked per guest).
    pub(crate) const VIRTUAL_NMIS: u32 = 1 << 5;
    /// Activate the VMX-preemption timer.
    pub(crate) const PREEMPTION_TIMER: u32 = 1 << 6;
}

/// Primary processor-based VM-execution controls.
pub(crate) mod proc {
    /// Exit as soon as the guest can take an interrupt.
    pub(crate) const INTR_WINDOW_EXITING: u32 = 1 << 2;
    /// TSC offsetting.
    pub(crate) const TSC_OFFSETTING: u32 = 1 << 3;
    /// HLT exits.
    pub(crate) const HLT_EXITING: u32 = 1 << 7;
    /// MWAIT exiting.
    pub(crate) const MWAIT_EXITING: u32 = 1 << 10;
    /// INVLPG exits (shadow paging).
    pub(crate) const INVLPG_EXITING: u32 = 1 << 9;
    /// MOV to CR3 exits (shadow paging).
    pub(crate) const CR3_LOAD_EXITING: u32 = 1 << 15;
    /// MOV from CR3 exits (shadow paging).
    pub(crate) const CR3_STORE_EXITING: u32 = 1 << 16;
    /// MOV to/from CR8 exit: CR8 is the guest's TPR, never the host's.
    pub(crate) const CR8_LOAD_EXITING: u32 = 1 << 19;
    pub(crate) const CR8_STORE_EXITING: u32 = 1 << 20;
    /// Exit as soon as the guest can take an NMI.
    pub(crate) const NMI_WINDOW_EXITING: u32 = 1 << 22;
    /// MOV DR exits.
    pub(crate) const MOV_DR_EXITING: u32 = 1 << 23;
    /// Every I/O instruction exits.
    pub(crate) const UNCOND_IO_EXITING: u32 = 1 << 24;
    /// MSR accesses consult the MSR bitmaps.
    pub(crate) const USE_MSR_BITMAPS: u32 = 1 << 28;
    /// MONITOR exiting.
    pub(crate) const MONITOR_EXITING: u32 = 1 << 29;
    /// The secondary controls are in effect.
    pub(crate) const ACTIVATE_SECONDARY: u32 = 1 << 31;
}

/// Secondary processor-based VM-execution controls.
pub(crate) mod proc2 {
    /// Extended page tables.
    pub(crate) const ENABLE_EPT: u32 = 1 << 1;
    /// Virtual-processor identifiers.
    pub(crate) const ENABLE_VPID: u32 = 1 << 5;
    /// Guest may run unpaged and in real mode.
    pub(crate) const UNRESTRICTED_GUEST: u32 = 1 << 7;
}

/// VM-exit controls.
pub(crate) mod exit {
    /// The host runs in 64-bit mode after an exit.
    pub(crate) const HOST_ADDR_SPACE_SIZE: u32 = 1 << 9;
    /// Save the guest's IA32_PAT on exit.
    pub(crate) const SAVE_PAT: u32 = 1 << 18;
    /// Load IA32_PAT from the host-state area.
    pub(crate) const LOAD_PAT: u32 = 1 << 19;
    /// Save the guest's IA32_EFER on exit.
    pub(crate) const SAVE_EFER: u32 = 1 << 20;
    /// Load the host's IA32_EFER on exit.
    pub(crate) const LOAD_EFER: u32 = 1 << 21;
}

/// VM-entry controls.
pub(crate) mod entry {
    /// Load DR7 and IA32_DEBUGCTL from the guest-state area.
    pub(crate) const LOAD_DEBUG_CONTROLS: u32 = 1 << 2;
    /// Load IA32_PAT from the guest-state area.
    pub(crate) const LOAD_PAT: u32 = 1 << 14;
    /// The guest runs in IA-32e mode after entry.
    pub(crate) const IA32E_MODE: u32 = 1 << 9;
    /// Load the guest's IA32_EFER on entry.
    pub(crate) const LOAD_EFER: u32 = 1 << 15;
}

/// IA32_VMX_EPT_VPID_CAP bits.
mod ept_cap {
    pub(super) const WALK_LENGTH_4: u64 = 1 << 6;
    pub(super) const MEMTYPE_WB: u64 = 1 << 14;
    pub(super) const PAGE_2M: u64 = 1 << 16;
    pub(super) const PAGE_1G: u64 = 1 << 17;
    pub(super) const INVEPT: u64 = 1 << 20;
    pub(super) const AD_BITS: u64 = 1 << 21;
    pub(super) const INVEPT_SINGLE: u64 = 1 << 25;
    pub(super) const INVEPT_ALL: u64 = 1 << 26;
    pub(super) const INVVPID: u64 = 1 << 32;
    pub(super) const INVVPID_SINGLE: u64 = 1 << 41;
    pub(super) const INVVPID_ALL: u64 = 1 << 43;
}

/// The raw MSR values one CPU reports. An MSR the CPU does not implement
/// (for example the TRUE_* family when BASIC bit 55 is clear) reads as 0,
/// which [`VmxCaps::from_msrs`] interprets as "nothing allowed".
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub(crate) struct VmxMsrs {
    /// IA32_FEATURE_CONTROL.
    pub(crate) feature_control: u64,
    /// IA32_VMX_BASIC.
    pub(crate) basic: u64,
    /// IA32_VMX_PINBASED_CTLS.
    pub(crate) pinbased: u64,
    /// IA32_VMX_PROCBASED_CTLS.
    pub(crate) procbased: u64,
    /// IA32_VMX_EXIT_CTLS.
    pub(crate) exit: u64,
    /// IA32_VMX_ENTRY_CTLS.
    pub(crate) entry: u64,
    /// IA32_VMX_MISC.
    pub(crate) misc: u64,
    /// IA32_VMX_CR0_FIXED0.
    pub(crate) cr0_fixed0: u64,
    /// IA32_VMX_CR0_FIXED1.
    pub(crate) cr0_fixed1: u64,
    /// IA32_VMX_CR4_FIXED0.
    pub(crate) cr4_fixed0: u64,
    /// IA32_VMX_CR4_FIXED1.
    pub(crate) cr4_fixed1: u64,
    /// IA32_VMX_PROCBASED_CTLS2.
    pub(crate) procbased2: u64,
    /// IA32_VMX_EPT_VPID_CAP.
    pub(crate) ept_vpid: u64,
    /// IA32_VMX_TRUE_PINBASED_CTLS.
    pub(crate) true_pinbased: u64,
    /// IA32_VMX_TRUE_PROCBASED_CTLS.
    pub(crate) true_procbased: u64,
    /// IA32_VMX_TRUE_EXIT_CTLS.
    pub(crate) true_exit: u64,
    /// IA32_VMX_TRUE_ENTRY_CTLS.
    pub(crate) true_entry: u64,
}

/// Which VMCS control field a [`ProbeError::MissingControls`] is about.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum ControlField {
    /// Pin-based VM-execution controls.
    Pin,
    /// Primary processor-based VM-execution controls.
    Proc,
    /// Secondary processor-based VM-execution controls.
    Proc2,
    /// VM-exit controls.
    Exit,
    /// VM-entry controls.
    Entry,
}

impl fmt::Display for ControlField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pin => "pin-based",
            Self::Proc => "primary processor-based",
            Self::Proc2 => "secondary processor-based",
            Self::Exit => "VM-exit",
            Self::Entry => "VM-entry",
        })
    }
}

/// Why the CPU cannot run rkvm.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum ProbeError {
    /// CPUID.1:ECX.VMX is clear.
    NoVmx,
    /// IA32_FEATURE_CONTROL is unlocked or forbids VMXON outside SMX.
    DisabledByFirmware(u64),
    /// IA32_VMX_BASIC describes a VMCS rkvm cannot use.
    Basic(&'static str),
    /// Required control bits that the CPU does not allow to be 1.
    MissingControls(ControlField, u32),
    /// A required EPT capability is absent.
    Ept(&'static str),
    /// Bits of the host's CR0/CR4 (with VMXE set) that contradict the VMX
    /// fixed-0/fixed-1 MSRs.
    HostCr(&'static str, u64),
    /// Two CPUs report different VMX capabilities.
    Asymmetric(u32),
}

impl ProbeError {
    /// True when the CPU has no usable VMX at all (as opposed to VMX that
    /// lacks a feature rkvm needs). KVM answers the first with -EOPNOTSUPP and
    /// the second with -EIO; rkvm does the same.
    pub(crate) fn is_unsupported(&self) -> bool {
        matches!(self, Self::NoVmx | Self::DisabledByFirmware(_))
    }
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NoVmx => f.write_str("VMX not supported by the CPU (CPUID.1:ECX.VMX is 0)"),
            Self::DisabledByFirmware(v) => write!(
                f,
                "VMX disabled by firmware (IA32_FEATURE_CONTROL={v:#x}: needs lock and VMXON outside SMX)"
            ),
            Self::Basic(why) => write!(f, "unusable VMCS format: {why}"),
            Self::MissingControls(field, bits) => {
                write!(f, "required {field} controls not supported: {bits:#010x}")
            }
            Self::Ept(why) => write!(f, "EPT lacks a required capability: {why}"),
            Self::HostCr(which, bits) => {
                write!(f, "host {which} conflicts with the VMX fixed bits: {bits:#x}")
            }
            Self::Asymmetric(cpu) => {
                write!(f, "CPU {cpu} reports VMX capabilities different from CPU 0")
            }
        }
    }
}

/// Computes a control field value: every bit the CPU forces to 1, every
/// `required` bit (error if one is not allowed) and every `optional` bit the
/// CPU allows. `cap` is a capability MSR: bits 31:0 are the allowed 0-settings
/// (a 1 there means the control must be 1), bits 63:32 the allowed
/// 1-settings (a 1 there means the control may be 1).
pub(crate) fn adjust_controls(
    field: ControlField,
    cap: u64,
    required: u32,
    optional: u32,
) -> Result<u32, ProbeError> {
    let must_be_one = cap as u32;
    let may_be_one = (cap >> 32) as u32;
    let missing = required & !may_be_one;
    if missing != 0 {
        return Err(ProbeError::MissingControls(field, missing));
    }
    Ok(must_be_one | required | (optional & may_be_one))
}

/// EPT and VPID capabilities rkvm uses.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct EptCaps {
    /// 2 MiB EPT leaf pages.
    pub(crate) page_2m: bool,
    /// 1 GiB EPT leaf pages.
    pub(crate) page_1g: bool,
    /// EPT accessed and dirty flags.
    pub(crate) ad_bits: bool,
    /// INVEPT single-context (else all-context is used).
    pub(crate) invept_single: bool,
    /// VPID is usable (secondary control allowed and INVVPID present).
    pub(crate) vpid: bool,
}

/// The VMCS control fields of a guest run.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct RunControls {
    /// Pin-based controls.
    pub(crate) pin: u32,
    /// Primary processor-based controls.
    pub(crate) proc: u32,
    /// Secondary processor-based controls.
    pub(crate) proc2: u32,
    /// VM-exit controls.
    pub(crate) exit: u32,
    /// VM-entry controls.
    pub(crate) entry: u32,
}

/// Everything rkvm needs to know about the CPU's VMX implementation.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct VmxCaps {
    /// VMCS revision identifier, written to the VMXON region and each VMCS.
    pub(crate) revision_id: u32,
    /// Size of the VMXON region and VMCS in bytes.
    pub(crate) vmcs_size: u32,
    /// The TRUE_* control MSRs were used.
    pub(crate) true_controls: bool,
    /// INS/OUTS exits report instruction information.
    pub(crate) ins_outs_info: bool,
    /// Pin-based controls rkvm will program.
    pub(crate) pin: u32,
    /// Primary processor-based controls.
    pub(crate) proc: u32,
    /// Secondary processor-based controls (EPT and VPID bits included when
    /// available; the VMCS setup clears them per guest mode).
    pub(crate) proc2: u32,
    /// VM-exit controls.
    pub(crate) exit: u32,
    /// VM-entry controls.
    pub(crate) entry: u32,
    /// EPT and VPID capabilities.
    pub(crate) ept: EptCaps,
    /// CR0 bits that must be 1 in VMX operation.
    pub(crate) cr0_fixed0: u64,
    /// CR0 bits that may be 1 in VMX operation.
    pub(crate) cr0_fixed1: u64,
    /// CR4 bits that must be 1 in VMX operation.
    pub(crate) cr4_fixed0: u64,
    /// CR4 bits that may be 1 in VMX operation.
    pub(crate) cr4_fixed1: u64,
    /// VMX-preemption timer rate: the timer counts down every 2^rate TSC ticks.
    pub(crate) preemption_timer_rate: u8,
    /// Controls for unpaged guest modes (EPT identity map, unrestricted
    /// guest): external interrupts and NMIs exit, the VMX-preemption timer
    /// bounds each entry when the CPU has one, HLT, every I/O
    /// instruction, every MSR access (no bitmaps), MOV DR (required: the
    /// guest's DR0-DR3/DR6 are emulated, KVM requires it too),
    /// MONITOR/MWAIT exit; CR3 accesses, INVLPG and interrupt windows do not; no VPID
    /// (entries and exits flush the guest's linear translations); the
    /// guest's EFER is loaded and saved.
    pub(crate) unpaged: RunControls,
}

/// IA32_VMX_BASIC fields.
const BASIC_REVISION_MASK: u64 = 0x7fff_ffff;
const BASIC_32BIT_ADDRESSES: u64 = 1 << 48;
const BASIC_INS_OUTS_INFO: u64 = 1 << 54;
const BASIC_TRUE_CONTROLS: u64 = 1 << 55;
const MEMTYPE_WB: u64 = 6;

/// Page size; the VMXON region and each VMCS live in one page.
const PAGE_SIZE: u32 = 4096;

impl VmxCaps {
    /// Decodes the MSRs of one CPU. `cpuid_vmx` is CPUID.1:ECX bit 5.
    pub(crate) fn from_msrs(cpuid_vmx: bool, m: &VmxMsrs) -> Result<Self, ProbeError> {
        if !cpuid_vmx {
            return Err(ProbeError::NoVmx);
        }
        let fc = FEATURE_CONTROL_LOCKED | FEATURE_CONTROL_VMXON_OUTSIDE_SMX;
        if m.feature_control & fc != fc {
            return Err(ProbeError::DisabledByFirmware(m.feature_control));
        }

        let vmcs_size = ((m.basic >> 32) & 0x1fff) as u32;
        if vmcs_size == 0 || vmcs_size > PAGE_SIZE {
            return Err(ProbeError::Basic("VMCS size is not within one page"));
        }
        if m.basic & BASIC_32BIT_ADDRESSES != 0 {
            return Err(ProbeError::Basic(
                "VMX structures limited to 32-bit addresses",
            ));
        }
        if (m.basic >> 50) & 0xf != MEMTYPE_WB {
            return Err(ProbeError::Basic("VMCS memory type is not write-back"));
        }
        let true_controls = m.basic & BASIC_TRUE_CONTROLS != 0;
        let (pin_cap, proc_cap, exit_cap, entry_cap) = if true_controls {
            (m.true_pinbased, m.true_procbased, m.true_exit, m.true_entry)
        } else {
            (m.pinbased, m.procbased, m.exit, m.entry)
        };

        let pin = adjust_controls(
            ControlField::Pin,
            pin_cap,
            pin::EXT_INTR_EXITING | pin::NMI_EXITING,
            pin::VIRTUAL_NMIS,
        )?;
        let proc = adjust_controls(
            ControlField::Proc,
            proc_cap,
            proc::INTR_WINDOW_EXITING
                | proc::HLT_EXITING
                | proc::INVLPG_EXITING
                | proc::CR3_LOAD_EXITING
                | proc::CR3_STORE_EXITING
                | proc::CR8_LOAD_EXITING
                | proc::CR8_STORE_EXITING
                | proc::UNCOND_IO_EXITING
                | proc::USE_MSR_BITMAPS
                | proc::ACTIVATE_SECONDARY,
            proc::TSC_OFFSETTING | proc::NMI_WINDOW_EXITING | proc::MOV_DR_EXITING,
        )?;
        let proc2 = adjust_controls(
            ControlField::Proc2,
            m.procbased2,
            proc2::ENABLE_EPT | proc2::UNRESTRICTED_GUEST,
            proc2::ENABLE_VPID,
        )?;
        // "Acknowledge interrupt on exit" stays off: an external interrupt
        // that exits the guest remains pending in the local APIC and is
        // delivered through the host IDT as soon as the VMX window closes
        // and interrupts are enabled again (design.rst, the VMX window).
        let exit = adjust_controls(
            ControlField::Exit,
            exit_cap,
            exit::HOST_ADDR_SPACE_SIZE | exit::SAVE_EFER | exit::LOAD_EFER,
            0,
        )?;
        let entry = adjust_controls(
            ControlField::Entry,
            entry_cap,
            entry::IA32E_MODE | entry::LOAD_EFER,
            0,
        )?;

        let unpaged = RunControls {
            pin: adjust_controls(
                ControlField::Pin,
                pin_cap,
                pin::EXT_INTR_EXITING | pin::NMI_EXITING,
                pin::PREEMPTION_TIMER | pin::VIRTUAL_NMIS,
            )?,
            proc: adjust_controls(
                ControlField::Proc,
                proc_cap,
                proc::HLT_EXITING
                    | proc::UNCOND_IO_EXITING
                    | proc::ACTIVATE_SECONDARY
                    | proc::MOV_DR_EXITING
                    | proc::CR8_LOAD_EXITING
                    | proc::CR8_STORE_EXITING,
                proc::TSC_OFFSETTING | proc::MWAIT_EXITING | proc::MONITOR_EXITING,
            )?,
            proc2: adjust_controls(
                ControlField::Proc2,
                m.procbased2,
                proc2::ENABLE_EPT | proc2::UNRESTRICTED_GUEST,
                0,
            )?,
            exit: adjust_controls(
                ControlField::Exit,
                exit_cap,
                exit::HOST_ADDR_SPACE_SIZE | exit::SAVE_EFER | exit::LOAD_EFER,
                exit::SAVE_PAT | exit::LOAD_PAT,
            )?,
            entry: adjust_controls(
                ControlField::Entry,
                entry_cap,
                entry::LOAD_DEBUG_CONTROLS | entry::LOAD_EFER,
                entry::LOAD_PAT,
            )?,
        };

        let e = m.ept_vpid;
        if e & ept_cap::WALK_LENGTH_4 == 0 {
            return Err(ProbeError::Ept("no 4-level page walk"));
        }
        if e & ept_cap::MEMTYPE_WB == 0 {
            return Err(ProbeError::Ept(
                "no write-back paging-structure memory type",
            ));
        }
        if e & ept_cap::INVEPT == 0 || e & (ept_cap::INVEPT_SINGLE | ept_cap::INVEPT_ALL) == 0 {
            return Err(ProbeError::Ept("no usable INVEPT type"));
        }
        let vpid = proc2 & proc2::ENABLE_VPID != 0
            && e & ept_cap::INVVPID != 0
            && e & (ept_cap::INVVPID_SINGLE | ept_cap::INVVPID_ALL) != 0;
        let ept = EptCaps {
            page_2m: e & ept_cap::PAGE_2M != 0,
            page_1g: e & ept_cap::PAGE_1G != 0,
            ad_bits: e & ept_cap::AD_BITS != 0,
            invept_single: e & ept_cap::INVEPT_SINGLE != 0,
            vpid,
        };

        if m.cr0_fixed0 & !m.cr0_fixed1 != 0 || m.cr4_fixed0 & !m.cr4_fixed1 != 0 {
            return Err(ProbeError::Basic(
                "CR fixed-0 bits are not a subset of fixed-1 bits",
            ));
        }
        if m.cr4_fixed1 & CR4_VMXE == 0 {
            return Err(ProbeError::Basic("CR4.VMXE may not be set"));
        }

        Ok(Self {
            revision_id: (m.basic & BASIC_REVISION_MASK) as u32,
            vmcs_size,
            true_controls,
            ins_outs_info: m.basic & BASIC_INS_OUTS_INFO != 0,
            pin,
            proc,
            proc2: if vpid {
                proc2
            } else {
                proc2 & !proc2::ENABLE_VPID
            },
            exit,
            entry,
            ept,
            cr0_fixed0: m.cr0_fixed0,
            cr0_fixed1: m.cr0_fixed1,
            cr4_fixed0: m.cr4_fixed0,
            cr4_fixed1: m.cr4_fixed1,
            preemption_timer_rate: (m.misc & 0x1f) as u8,
            unpaged,
        })
    }

    /// Checks that the host's CR0 and CR4, once CR4.VMXE is set for the VMX
    /// window, have every fixed-0 bit set and no bit outside fixed-1; VMXON
    /// fails otherwise. Unrestricted guests relax CR0.PE and CR0.PG for the
    /// guest only; the host must meet them all.
    pub(crate) fn check_host_cr(&self, cr0: u64, cr4: u64) -> Result<(), ProbeError> {
        let cr4 = cr4 | CR4_VMXE;
        let cr0_bad = (self.cr0_fixed0 & !cr0) | (cr0 & !self.cr0_fixed1);
        if cr0_bad != 0 {
            return Err(ProbeError::HostCr("CR0", cr0_bad));
        }
        let cr4_bad = (self.cr4_fixed0 & !cr4) | (cr4 & !self.cr4_fixed1);
        if cr4_bad != 0 {
            return Err(ProbeError::HostCr("CR4", cr4_bad));
        }
        Ok(())
    }
}
