// SPDX-License-Identifier: GPL-2.0

//! VM-exit reasons and the decoding of exit qualifications.
//!
//! Pure logic over `core`, shared with the host tests. Encodings: Intel SDM
//! Vol. 3C, appendix C (basic exit reasons) and section 28.2.1 (exit
//! qualifications).

/// Basic exit reasons (bits 15:0 of the exit-reason field). The table also
/// names reasons rkvm reports as unexpected without handling them.
#[allow(dead_code)]
pub(crate) mod reason {
    /// Exception or NMI.
    pub(crate) const EXCEPTION_NMI: u16 = 0;
    /// External interrupt.
    pub(crate) const EXTERNAL_INTERRUPT: u16 = 1;
    /// Triple fault.
    pub(crate) const TRIPLE_FAULT: u16 = 2;
    /// Interrupt window.
    pub(crate) const INTERRUPT_WINDOW: u16 = 7;
    /// NMI window.
    pub(crate) const NMI_WINDOW: u16 = 8;
    /// CPUID.
    pub(crate) const CPUID: u16 = 10;
    /// HLT.
    pub(crate) const HLT: u16 = 12;
    /// INVLPG.
    pub(crate) const INVLPG: u16 = 14;
    /// VMCALL.
    pub(crate) const VMCALL: u16 = 18;
    /// MWAIT.
    pub(crate) const MWAIT_INSTRUCTION: u16 = 36;
    /// MONITOR.
    pub(crate) const MONITOR_INSTRUCTION: u16 = 39;
    /// MOV to/from CR, CLTS, LMSW.
    pub(crate) const CR_ACCESS: u16 = 28;
    /// MOV to/from DR.
    pub(crate) const DR_ACCESS: u16 = 29;
    /// I/O instruction.
    pub(crate) const IO_INSTRUCTION: u16 = 30;
    /// RDMSR.
    pub(crate) const RDMSR: u16 = 31;
    /// WRMSR.
    pub(crate) const WRMSR: u16 = 32;
    /// VM entry failed: invalid guest state.
    pub(crate) const INVALID_GUEST_STATE: u16 = 33;
    /// VM entry failed: MSR loading.
    pub(crate) const MSR_LOADING: u16 = 34;
    /// VM entry failed: machine check.
    pub(crate) const MCE_DURING_ENTRY: u16 = 41;
    /// EPT violation.
    pub(crate) const EPT_VIOLATION: u16 = 48;
    /// EPT misconfiguration.
    pub(crate) const EPT_MISCONFIG: u16 = 49;
    /// The VMX-preemption timer expired.
    pub(crate) const PREEMPTION_TIMER: u16 = 52;
    /// XSETBV.
    pub(crate) const XSETBV: u16 = 55;
}

/// The exit-reason field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ExitReason(pub(crate) u32);

impl ExitReason {
    /// The basic exit reason.
    pub(crate) fn basic(self) -> u16 {
        self.0 as u16
    }

    /// Bit 31: the VM entry failed (the guest never ran).
    pub(crate) fn entry_failed(self) -> bool {
        self.0 & (1 << 31) != 0
    }
}

/// An I/O instruction exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IoExit {
    /// Port number.
    pub(crate) port: u16,
    /// Access size in bytes: 1, 2 or 4.
    pub(crate) size: u8,
    /// IN/INS (true) or OUT/OUTS (false).
    pub(crate) input: bool,
    /// INS/OUTS.
    pub(crate) string: bool,
    /// With a REP prefix.
    pub(crate) rep: bool,
}

impl IoExit {
    /// Decodes the exit qualification; `None` for the reserved size
    /// encoding.
    pub(crate) fn from_qualification(q: u64) -> Option<Self> {
        let size = match q & 7 {
            0 => 1,
            1 => 2,
            3 => 4,
            _ => return None,
        };
        Some(Self {
            port: (q >> 16) as u16,
            size,
            input: q & (1 << 3) != 0,
            string: q & (1 << 4) != 0,
            rep: q & (1 << 5) != 0,
        })
    }
}

/// A control-register access exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CrAccess {
    /// MOV to CRn from a general-purpose register.
    ToCr {
        /// Control register number.
        cr: u8,
        /// Source register (0 = RAX ... 15 = R15).
        gpr: u8,
    },
    /// MOV from CRn to a general-purpose register.
    FromCr {
        /// Control register number.
        cr: u8,
        /// Destination register.
        gpr: u8,
    },
    /// CLTS.
    Clts,
    /// LMSW with this source operand.
    Lmsw(u16),
}

impl CrAccess {
    /// Decodes the exit qualification.
    pub(crate) fn from_qualification(q: u64) -> Self {
        let cr = (q & 15) as u8;
        let gpr = ((q >> 8) & 15) as u8;
        match (q >> 4) & 3 {
            0 => Self::ToCr { cr, gpr },
            1 => Self::FromCr { cr, gpr },
            2 => Self::Clts,
            _ => Self::Lmsw((q >> 16) as u16),
        }
    }
}

/// An EPT violation exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct EptViolation {
    /// The access was a data read.
    pub(crate) read: bool,
    /// The access was a data write.
    pub(crate) write: bool,
    /// The access was an instruction fetch.
    pub(crate) fetch: bool,
    /// The guest-physical address was mapped at all (any of R/W/X allowed
    /// by the EPT entry that stopped the walk).
    pub(crate) present: bool,
}

impl EptViolation {
    /// Decodes the exit qualification.
    pub(crate) fn from_qualification(q: u64) -> Self {
        Self {
            read: q & 1 != 0,
            write: q & 2 != 0,
            fetch: q & 4 != 0,
            present: q & (7 << 3) != 0,
        }
    }
}
