// SPDX-License-Identifier: GPL-2.0

//! The memory-type range registers a guest sees: IA32_MTRRCAP (read-only),
//! IA32_MTRR_DEF_TYPE, the eleven fixed-range and eight variable-range
//! pairs. rkvm stores them for the guest and its VMM (QEMU writes all 28 at
//! every reset, whatever the CPUID it was given) and, as KVM does for a VM
//! without non-coherent DMA, lets them change nothing: guest memory is
//! always write-back. Rules follow KVM's `arch/x86/kvm/mtrr.c`.
//!
//! Pure logic over `core`, shared with the host tests.

/// IA32_MTRRCAP and IA32_MTRR_DEF_TYPE.
pub(crate) const CAP: u32 = 0xfe;
pub(crate) const DEF_TYPE: u32 = 0x2ff;
/// The first variable-range MSR (IA32_MTRR_PHYSBASE0); bases are even,
/// masks odd.
pub(crate) const VAR_FIRST: u32 = 0x200;
/// Variable ranges: KVM's `KVM_NR_VAR_MTRR`.
pub(crate) const NR_VAR: u32 = 8;
/// IA32_MTRRCAP: write-combining and fixed ranges supported, `NR_VAR`
/// variable ranges, no SMRR (KVM's value).
pub(crate) const CAP_VALUE: u64 = 0x500 | NR_VAR as u64;

/// The fixed-range MSRs, in the order of [`Mtrrs::fixed`]: 64K_00000,
/// 16K_80000, 16K_A0000, 4K_C0000 .. 4K_F8000.
const FIXED: [u32; 11] = [
    0x250, 0x258, 0x259, 0x268, 0x269, 0x26a, 0x26b, 0x26c, 0x26d, 0x26e, 0x26f,
];

/// Whether `t` is a memory type an MTRR may hold: UC, WC, WT, WP, WB.
fn valid_type(t: u64) -> bool {
    t < 8 && (1 << t) & 0x73 != 0
}

/// Whether `index` is one of the MTRR MSRs (IA32_MTRRCAP included).
pub(crate) fn is_mtrr(index: u32) -> bool {
    index == CAP
        || index == DEF_TYPE
        || FIXED.contains(&index)
        || (VAR_FIRST..VAR_FIRST + 2 * NR_VAR).contains(&index)
}

/// A vCPU's MTRRs (all 0 at reset: disabled, default type UC).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Mtrrs {
    pub(crate) def_type: u64,
    pub(crate) fixed: [u64; 11],
    /// PHYSBASE0, PHYSMASK0, PHYSBASE1, ...
    pub(crate) var: [u64; 2 * NR_VAR as usize],
}

impl Mtrrs {
    fn slot(&mut self, index: u32) -> Option<&mut u64> {
        if index == DEF_TYPE {
            return Some(&mut self.def_type);
        }
        if let Some(i) = FIXED.iter().position(|&m| m == index) {
            return self.fixed.get_mut(i);
        }
        let v = index.checked_sub(VAR_FIRST)?;
        self.var.get_mut(v as usize)
    }

    /// An MTRR's value; `None` if `index` is not one.
    pub(crate) fn get(&self, index: u32) -> Option<u64> {
        if index == CAP {
            return Some(CAP_VALUE);
        }
        let mut copy = *self;
        copy.slot(index).map(|v| *v)
    }

    /// Writes an MTRR if `v` is valid for it (KVM's `kvm_mtrr_valid()`;
    /// `maxphyaddr` bounds the variable ranges' addresses). `None`: not an
    /// MTRR; `Some(false)`: refused (MTRRCAP is read-only).
    pub(crate) fn set(&mut self, index: u32, v: u64, maxphyaddr: u32) -> Option<bool> {
        if index == CAP {
            return Some(false);
        }
        let valid = if index == DEF_TYPE {
            v & !0xcff == 0 && valid_type(v & 0xff)
        } else if FIXED.contains(&index) {
            (0..8).all(|i| valid_type((v >> (i * 8)) & 0xff))
        } else if (VAR_FIRST..VAR_FIRST + 2 * NR_VAR).contains(&index) {
            let above = if maxphyaddr >= 64 {
                0
            } else {
                u64::MAX << maxphyaddr
            };
            if index & 1 == 0 {
                valid_type(v & 0xff) && v & (above | 0xf00) == 0
            } else {
                v & (above | 0x7ff) == 0
            }
        } else {
            return None;
        };
        if valid {
            *self.slot(index)? = v;
        }
        Some(valid)
    }
}
