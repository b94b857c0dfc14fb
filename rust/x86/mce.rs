// SPDX-License-Identifier: GPL-2.0

//! Machine-check architecture of a guest: IA32_MCG_CAP/STATUS/CTL and the
//! MCi_CTL/STATUS/ADDR/MISC banks, `KVM_X86_SETUP_MCE` and
//! `KVM_X86_SET_MCE`. Pure logic over `core`, shared with the host tests.
//!
//! Semantics follow KVM (`arch/x86/kvm/x86.c`:
//! `kvm_vcpu_ioctl_x86_setup_mce()`, `kvm_vcpu_ioctl_x86_set_mce()`;
//! `arch/x86/kvm/msrs.c`: `set_msr_mce()`, `get_msr_mce()`): 32 banks
//! exist from vCPU creation (MCG_CAP = 32), MCi_CTL takes 0 or all ones
//! (bits 0 and 10 may be clear), a guest may only clear MCi_STATUS, MCG_CTL
//! exists with MCG_CTL_P. Not modelled: CMCI (MCi_CTL2, no local APIC) and
//! LMCE (no IA32_FEATURE_CONTROL), so MCG_CAP offers neither.

/// `KVM_MAX_MCE_BANKS`, also what `KVM_CAP_MCE` reports.
pub(crate) const MAX_BANKS: usize = 32;
/// MCG_CAP.MCG_CTL_P: IA32_MCG_CTL exists.
pub(crate) const MCG_CTL_P: u64 = 1 << 8;
/// MCG_CAP.MCG_SER_P: software error recovery.
pub(crate) const MCG_SER_P: u64 = 1 << 24;
/// What `KVM_X86_GET_MCE_CAP_SUPPORTED` reports.
pub(crate) const SUPPORTED_CAP: u64 = MCG_CTL_P | MCG_SER_P;
/// MCG_STATUS.MCIP: a machine check is in progress.
pub(crate) const MCG_STATUS_MCIP: u64 = 1 << 2;
/// MCi_STATUS bits.
pub(crate) const MCI_STATUS_VAL: u64 = 1 << 63;
pub(crate) const MCI_STATUS_OVER: u64 = 1 << 62;
pub(crate) const MCI_STATUS_UC: u64 = 1 << 61;
const MCI_STATUS_PCC: u64 = 1 << 57;
const MCI_STATUS_S: u64 = 1 << 56;
const MCI_STATUS_AR: u64 = 1 << 55;

/// MSR numbers.
pub(crate) mod index {
    pub(crate) const MCG_CAP: u32 = 0x179;
    pub(crate) const MCG_STATUS: u32 = 0x17a;
    pub(crate) const MCG_CTL: u32 = 0x17b;
    /// IA32_MC0_CTL; bank i's CTL, STATUS, ADDR, MISC are 0x400 + 4i ...
    pub(crate) const MC0_CTL: u32 = 0x400;
}

/// The machine-check state of a vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Mce {
    pub(crate) cap: u64,
    pub(crate) status: u64,
    pub(crate) ctl: u64,
    /// CTL, STATUS, ADDR, MISC of each bank.
    pub(crate) banks: [[u64; 4]; MAX_BANKS],
}

impl Default for Mce {
    fn default() -> Self {
        Self {
            cap: MAX_BANKS as u64,
            status: 0,
            ctl: 0,
            banks: [[0; 4]; MAX_BANKS],
        }
    }
}

/// What `KVM_X86_SET_MCE` did (beyond updating the banks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Injected {
    /// Nothing to deliver.
    None,
    /// Deliver #MC to the guest.
    MachineCheck,
    /// An uncorrected error the guest cannot take: shut it down.
    TripleFault,
}

impl Mce {
    fn bank_count(&self) -> usize {
        (self.cap & 0xff) as usize
    }

    /// `KVM_X86_SETUP_MCE`; `false` means `EINVAL` (no bank or more than
    /// 32, or a capability bit outside the supported ones, the bank count
    /// and the extended-register count).
    pub(crate) fn setup(&mut self, cap: u64) -> bool {
        let n = (cap & 0xff) as usize;
        if n == 0 || n > MAX_BANKS || cap & !(SUPPORTED_CAP | 0xff | 0xff_0000) != 0 {
            return false;
        }
        self.cap = cap;
        if cap & MCG_CTL_P != 0 {
            self.ctl = u64::MAX;
        }
        for b in &mut self.banks[..n] {
            b[0] = u64::MAX;
        }
        true
    }

    /// An MSR read; `None` if the MSR does not exist (or, for MCG_CTL
    /// without MCG_CTL_P, is not readable by the guest).
    pub(crate) fn get(&self, index: u32, host: bool) -> Option<u64> {
        match index {
            index::MCG_CAP => Some(self.cap),
            index::MCG_STATUS => Some(self.status),
            index::MCG_CTL if self.cap & MCG_CTL_P != 0 || host => Some(self.ctl),
            i if (index::MC0_CTL..index::MC0_CTL + 4 * MAX_BANKS as u32).contains(&i) => {
                let off = (i - index::MC0_CTL) as usize;
                (off / 4 < self.bank_count()).then(|| self.banks[off / 4][off % 4])
            }
            _ => None,
        }
    }

    /// An MSR write; `None` if the MSR does not exist, `Some(false)` for a
    /// refused value (#GP for the guest, end of the batch for the host).
    pub(crate) fn set(&mut self, index: u32, v: u64, host: bool) -> Option<bool> {
        match index {
            index::MCG_STATUS => self.status = v,
            index::MCG_CTL => {
                if self.cap & MCG_CTL_P == 0 && (v != 0 || !host) {
                    return Some(false);
                }
                if v != 0 && v != u64::MAX {
                    return Some(false);
                }
                self.ctl = v;
            }
            i if (index::MC0_CTL..index::MC0_CTL + 4 * MAX_BANKS as u32).contains(&i) => {
                let off = (i - index::MC0_CTL) as usize;
                if off / 4 >= self.bank_count() {
                    return None;
                }
                let ok = match off % 4 {
                    // 0 or all ones; bits 0 and 10 may be clear.
                    0 => v == 0 || (v | 1 << 10 | 1) == u64::MAX,
                    // The guest may only clear it (Intel: no McStatusWrEn).
                    1 => host || v == 0,
                    _ => true,
                };
                if !ok {
                    return Some(false);
                }
                self.banks[off / 4][off % 4] = v;
            }
            _ => return None,
        }
        Some(true)
    }

    /// `KVM_X86_SET_MCE`: records an error in bank `e.bank` and says what
    /// to deliver; `Err(())` means `EINVAL` (no such bank, or a status
    /// without VAL). `cr4_mce` is the guest's CR4.MCE.
    pub(crate) fn inject(
        &mut self,
        bank: u8,
        status: u64,
        addr: u64,
        misc: u64,
        mcg_status: u64,
        cr4_mce: bool,
    ) -> Result<Injected, ()> {
        let bank = usize::from(bank);
        if bank >= self.bank_count() || status & MCI_STATUS_VAL == 0 {
            return Err(());
        }
        let uc = status & MCI_STATUS_UC != 0;
        let ucna =
            mcg_status == 0 && status & (MCI_STATUS_PCC | MCI_STATUS_S | MCI_STATUS_AR) == 0 && uc;
        let b = &mut self.banks[bank];
        if ucna {
            // Uncorrected, no action required: logged, no CMCI without it.
            b[1] = status;
            b[2] = addr;
            b[3] = misc;
            self.status = mcg_status;
            return Ok(Injected::None);
        }
        let mut status = status;
        if uc {
            // Reporting disabled by MCG_CTL or MCi_CTL: dropped.
            if (self.cap & MCG_CTL_P != 0 && self.ctl != u64::MAX) || b[0] != u64::MAX {
                return Ok(Injected::None);
            }
            if self.status & MCG_STATUS_MCIP != 0 || !cr4_mce {
                return Ok(Injected::TripleFault);
            }
            if b[1] & MCI_STATUS_VAL != 0 {
                status |= MCI_STATUS_OVER;
            }
            b[2] = addr;
            b[3] = misc;
            b[1] = status;
            self.status = mcg_status;
            return Ok(Injected::MachineCheck);
        }
        if b[1] & MCI_STATUS_VAL == 0 || b[1] & MCI_STATUS_UC == 0 {
            if b[1] & MCI_STATUS_VAL != 0 {
                status |= MCI_STATUS_OVER;
            }
            b[2] = addr;
            b[3] = misc;
            b[1] = status;
        } else {
            b[1] |= MCI_STATUS_OVER;
        }
        Ok(Injected::None)
    }
}
