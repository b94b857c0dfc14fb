// SPDX-License-Identifier: GPL-2.0

//! Paged 32-bit guests (2-level and PAE paging) on the virtual TLB
//! ([`crate::mmu::vtlb`]): shadow page faults, guest #PF injection, and
//! guest-linear accesses of the emulator.
//!
//! A #PF exit walks the guest's tables ([`crate::mmu::walk`], which sets
//! the accessed and dirty flags as the CPU would); a guest fault is
//! injected with the walker's error code and CR2; otherwise the page is
//! mapped (writable only once the guest entry is dirty, so the first write
//! faults again and sets D) or, without a slot behind it, the access is
//! emulated as MMIO. Long mode (4-level paging) is not supported yet.

use kernel::prelude::*;

use super::{
    emulate_mmio, emulation_failure, ExitInfo, RunArea, Step, CR4_PAE, EVENT_ERROR_CODE,
    EVENT_TYPE_HW_EXCEPTION, EVENT_VALID, PF_VECTOR,
};
use crate::{
    mmu::{
        vtlb::{
            Leaf,
            Vtlb, //
        },
        walk::{
            self,
            Access,
            GuestMem,
            Kind,
            Mmu,
            Paging,
            Privilege,
            WalkError, //
        },
    },
    vcpu::{
        Event,
        State, //
    },
    vm::Vm,
    x86::{
        cpuid,
        sregs::{
            cr0,
            efer, //
        },
    },
};

const CR4_PSE: u64 = 1 << 4;
const CR4_SMEP: u64 = 1 << 20;
const CR4_SMAP: u64 = 1 << 21;
const RFLAGS_AC: u64 = 1 << 18;
/// Hardware #PF error-code bits of the shadow fault.
const ERR_WRITE: u32 = 1 << 1;
const ERR_USER: u32 = 1 << 2;
const ERR_FETCH: u32 = 1 << 4;

/// Guest-physical memory through the VM's slots. Accessed/dirty updates
/// are a read-compare-write, not an atomic compare-exchange on the VMM's
/// memory: a guest that updates a PTE on another vCPU at the same moment
/// may lose that update (KVM uses a user-space cmpxchg).
struct SlotMem<'a>(&'a Vm);

impl GuestMem for SlotMem<'_> {
    fn read_pte(&mut self, gpa: u64, size8: bool) -> Option<u64> {
        let mut b = [0u8; 8];
        let n = if size8 { 8 } else { 4 };
        self.0.read_guest(gpa, &mut b[..n]).ok()?;
        Some(u64::from_le_bytes(b))
    }

    fn set_bits(&mut self, gpa: u64, size8: bool, old: u64, new: u64) -> Result<bool, ()> {
        let n = if size8 { 8 } else { 4 };
        let mut b = [0u8; 8];
        self.0.read_guest(gpa, &mut b[..n]).map_err(|_| ())?;
        if u64::from_le_bytes(b) != old {
            return Ok(false);
        }
        self.0
            .write_guest(gpa, &new.to_le_bytes()[..n])
            .map_err(|_| ())?;
        Ok(true)
    }
}

/// Whether the guest runs with paging in a mode rkvm supports (2-level or
/// PAE); `Err` for long mode.
pub(super) fn paged(st: &State) -> Result<bool, ()> {
    if st.cr0 & cr0::PG == 0 {
        return Ok(false);
    }
    if st.efer & efer::LME != 0 {
        return Err(());
    }
    Ok(true)
}

/// The walker's view of the guest's paging state.
fn guest_mmu(vm: &Vm, st: &State) -> Mmu {
    let cpu = cpuid::guest_cpu(&st.cpuid);
    let pae = st.cr4 & CR4_PAE != 0;
    let mut pdptes = [0u64; 4];
    if pae {
        // The CPU loads the PDPTEs at CR3 load; rkvm reads them at each
        // walk (a guest that rewrites them without reloading CR3 sees the
        // change early).
        let base = st.cr3 & 0xffff_ffe0;
        for (i, p) in pdptes.iter_mut().enumerate() {
            *p = SlotMem(vm).read_pte(base + 8 * i as u64, true).unwrap_or(0);
        }
    }
    Mmu {
        mode: if pae { Paging::Pae } else { Paging::Bits32 },
        cr3: st.cr3,
        pdptes,
        wp: st.cr0 & cr0::WP != 0,
        pse: st.cr4 & CR4_PSE != 0,
        smep: st.cr4 & CR4_SMEP != 0,
        smap: st.cr4 & CR4_SMAP != 0,
        nxe: st.efer & efer::NXE != 0,
        gbpages: false,
        maxphyaddr: cpu.maxphyaddr as u8,
        ac: st.regs.rflags & RFLAGS_AC != 0,
    }
}

/// The vCPU's virtual TLB, created on first use, flushed if the VM's
/// mapping generation moved.
pub(super) fn vtlb<'a>(vm: &Vm, st: &'a mut State) -> Result<&'a mut Vtlb> {
    let gen = vm.mmu_gen();
    if st.vtlb.is_none() {
        st.vtlb = Some(Vtlb::new(gen)?);
    }
    let t = st.vtlb.as_mut().ok_or(ENOMEM)?;
    if t.gen() != gen {
        t.flush(gen);
    }
    Ok(t)
}

/// Queues #PF with `error_code` at `addr` (CR2).
fn inject_page_fault(st: &mut State, error_code: u32, addr: u64) {
    st.cr2 = addr;
    st.pending_event = Some(Event {
        info: EVENT_VALID | EVENT_TYPE_HW_EXCEPTION | EVENT_ERROR_CODE | PF_VECTOR,
        error_code,
        insn_len: 0,
    });
}

/// A #PF exit: fill the shadow, inject the guest's own fault, or emulate
/// an MMIO access.
pub(super) fn handle_page_fault(
    vm: &Vm,
    st: &mut State,
    area: &RunArea<'_>,
    e: &ExitInfo,
) -> Result<Step> {
    let la = e.qualification & 0xffff_ffff;
    let code = e.intr_error_code;
    let kind = if code & ERR_FETCH != 0 {
        Kind::Fetch
    } else if code & ERR_WRITE != 0 {
        Kind::Write
    } else {
        Kind::Read
    };
    let privilege = if code & ERR_USER != 0 {
        Privilege::User
    } else {
        Privilege::Supervisor
    };
    let mmu = guest_mmu(vm, st);
    let t = match walk::walk(&mmu, &mut SlotMem(vm), la, Access { kind, privilege }) {
        Ok(t) => t,
        Err(WalkError::Fault(pf)) => {
            // An event whose delivery faulted is superseded by the #PF.
            inject_page_fault(st, pf.error_code, pf.addr);
            return Ok(Step::Continue);
        }
        Err(WalkError::Retry) => return Ok(Step::Continue),
        Err(WalkError::Unbacked { .. }) => {
            emulation_failure(area, &[]);
            return Ok(Step::ToUser);
        }
    };
    let Some(pfn) = vm.gfn_pfn(t.gpa >> 12)? else {
        if kind == Kind::Fetch {
            emulation_failure(area, &[]);
            return Ok(Step::ToUser);
        }
        return emulate_mmio(vm, st, area, t.gpa);
    };
    // CR0.WP=0 lets supervisor code write read-only pages; the shadow
    // (always run with WP=1) then maps the page writable but supervisor
    // only, so a user access faults and is checked again.
    let wp0_write = !mmu.wp && !t.rights.write && privilege == Privilege::Supervisor;
    let leaf = Leaf {
        pfn,
        write: (t.rights.write || wp0_write) && t.dirty,
        user: t.rights.user && !wp0_write,
        no_exec: mmu.nxe && !t.rights.exec,
    };
    vtlb(vm, st)?.map(la, leaf)?;
    Ok(Step::Continue)
}

/// The guest-physical address of guest-linear `la` for an access of the
/// emulator (an instruction fetch, or string I/O reading or writing), with
/// the privilege of the guest's CPL; `None` if the guest's tables do not
/// allow it (rkvm then reports an emulation failure rather than injecting
/// the #PF).
pub(super) fn translate(vm: &Vm, st: &State, la: u64, kind: Kind) -> Option<u64> {
    let mmu = guest_mmu(vm, st);
    let privilege = if st.segs[crate::vcpu::SEG_CS].selector & 3 == 3 {
        Privilege::User
    } else {
        Privilege::Supervisor
    };
    walk::walk(&mmu, &mut SlotMem(vm), la, Access { kind, privilege })
        .ok()
        .map(|t| t.gpa)
}
