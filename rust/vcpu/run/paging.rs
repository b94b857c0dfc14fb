// SPDX-License-Identifier: GPL-2.0

//! Paged guests (2-level 32-bit, PAE and 4-level long mode) on the shadow
//! MMU ([`crate::mmu::shadow`]): roots, shadow page faults, guest #PF
//! injection, emulated guest page-table writes, and guest-linear accesses
//! of the emulator.
//!
//! A #PF exit walks the guest's tables ([`crate::mmu::walk`], which sets
//! the accessed and dirty flags as the CPU would); a guest fault is
//! injected with the walker's error code and CR2; an access to a frame no
//! slot backs is emulated as MMIO; otherwise the shadow MMU installs the
//! translation (writable only once the guest entry is dirty, so the first
//! write faults again and sets D, and never while the frame holds a guest
//! table the shadow follows). A write to such a table is emulated here and
//! the shadow entries built from what it changed are zapped.

use kernel::prelude::*;

use super::{
    emulate_mmio, emulation_failure, fetch_insn, skip, store_value, vectoring_exit, ExitInfo,
    RunArea, Step, CR4_PAE, EVENT_ERROR_CODE, EVENT_TYPE_HW_EXCEPTION, EVENT_VALID, PF_VECTOR,
};
use crate::{
    mmu::{
        shadow::{
            Fail,
            Fault,
            Mode,
            RootKey, //
        },
        walk::{
            self,
            Access,
            GuestMem,
            Kind,
            Mmu,
            Paging,
            Privilege,
            WalkError,
            PF_FETCH,
            PF_USER,
            PF_WRITE, //
        },
    },
    shim,
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

/// Guest-physical memory through the VM's slots. Accessed/dirty updates
/// are a read-compare-write, not an atomic compare-exchange on the VMM's
/// memory: a guest that updates a PTE on another vCPU at the same moment
/// may lose that update (KVM uses a user-space cmpxchg). They only add
/// rights, so the shadow needs no update for them.
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

/// Whether the guest runs with paging.
pub(super) fn paged(st: &State) -> bool {
    st.cr0 & cr0::PG != 0
}

/// Whether the guest is in IA-32e mode (EFER.LMA).
pub(super) fn long_mode(st: &State) -> bool {
    st.efer & efer::LMA != 0
}

/// The shadow MMU's view of the guest's paging controls.
pub(super) fn mode(st: &State) -> Mode {
    Mode {
        bits32: st.cr4 & CR4_PAE == 0,
        long: long_mode(st),
        wp: st.cr0 & cr0::WP != 0,
        nxe: st.efer & efer::NXE != 0,
        smep: st.cr4 & CR4_SMEP != 0,
        smap: st.cr4 & CR4_SMAP != 0,
        pse: st.cr4 & CR4_PSE != 0,
    }
}

/// The root the guest's current CR3 and controls select.
pub(super) fn root_key(st: &State) -> RootKey {
    mode(st).root_key(st.cr3)
}

/// Linear addresses are 32 bits wide outside long mode.
fn linear(st: &State, la: u64) -> u64 {
    if long_mode(st) {
        la
    } else {
        la & 0xffff_ffff
    }
}

/// The walker's view of the guest's paging state.
fn guest_mmu(vm: &Vm, st: &State) -> Mmu {
    let cpu = cpuid::guest_cpu(&st.cpuid);
    let m = mode(st);
    let mut pdptes = [0u64; 4];
    if !m.bits32 && !m.long {
        // The CPU loads the PDPTEs at CR3 load; rkvm reads them at each
        // walk (a guest that rewrites them without reloading CR3 sees the
        // change early).
        let base = st.cr3 & 0xffff_ffe0;
        for (i, p) in pdptes.iter_mut().enumerate() {
            *p = SlotMem(vm).read_pte(base + 8 * i as u64, true).unwrap_or(0);
        }
    }
    Mmu {
        mode: if m.long {
            Paging::Level4
        } else if m.bits32 {
            Paging::Bits32
        } else {
            Paging::Pae
        },
        cr3: st.cr3,
        pdptes,
        wp: m.wp,
        pse: m.pse,
        smep: m.smep,
        smap: m.smap,
        nxe: m.nxe,
        gbpages: cpu.gbpages,
        maxphyaddr: cpu.maxphyaddr as u8,
        ac: st.regs.rflags & RFLAGS_AC != 0,
    }
}

/// Makes the root for the guest's CR3 current (outside the window: it may
/// allocate), recording the roots epoch it was checked in.
pub(super) fn load_root(vm: &Vm, st: &mut State) -> Result {
    let key = root_key(st);
    loop {
        crate::mmu::shadow::topup(vm.mmu())?;
        let roots = &mut st.roots;
        let r = vm.with_mmu(|s, ch| {
            let epoch = vm.roots_epoch();
            s.load_root(roots, key, epoch, ch)
        });
        match r {
            Ok(_) => return Ok(()),
            Err(Fail::Retry) => continue,
            Err(Fail::NoSpace) => return Err(ENOSPC),
        }
    }
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

/// A #PF exit: fill the shadow, inject the guest's own fault, emulate an
/// MMIO access or a write to a guest page table.
pub(super) fn handle_page_fault(
    vm: &Vm,
    st: &mut State,
    area: &RunArea<'_>,
    e: &ExitInfo,
) -> Result<Step> {
    let la = linear(st, e.qualification);
    let code = e.intr_error_code;
    let kind = if code & PF_FETCH != 0 {
        Kind::Fetch
    } else if code & PF_WRITE != 0 {
        Kind::Write
    } else {
        Kind::Read
    };
    let privilege = if code & PF_USER != 0 {
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
            vm.with_mmu(|s, _| s.count_guest_fault());
            return Ok(Step::Continue);
        }
        Err(WalkError::Retry) => return Ok(Step::Continue),
        Err(WalkError::Unbacked { .. }) => {
            emulation_failure(area, &[]);
            return Ok(Step::ToUser);
        }
    };
    let gfn = t.gpa >> 12;
    // From the slot lookup to the installed leaf: a slot published as
    // invalid waits for this section (see `memslot`).
    let _srcu = vm.slots_read();
    let seq = vm.inval_seq();
    let slot = match vm.mmu_prepare(gfn)? {
        Some(slot) if slot.invalid() => return Ok(Step::Continue),
        // Writes to a read-only slot exit as MMIO writes, as in KVM.
        Some(slot) if !(slot.readonly() && kind == Kind::Write) => slot,
        // KVM reports cr2 (the linear address) for a shadow-paging fault.
        _ if vectoring_exit(area, e, e.qualification) => return Ok(Step::ToUser),
        _ if kind == Kind::Fetch => {
            emulation_failure(area, &[]);
            return Ok(Step::ToUser);
        }
        _ => return emulate_mmio(vm, st, area, t.gpa),
    };
    // The leaf's page and the guest tables the walk read, pinned (by the
    // EPT map) so that the shadow MMU can recheck the tables under its lock.
    let Some((pfn, pin_w)) = vm.gfn_pfn(gfn, kind == Kind::Write && !slot.readonly())? else {
        return Ok(Step::Continue);
    };
    let mut tables = [core::ptr::null::<u8>(); 5];
    let visited = t.tables.as_slice();
    for (slot, v) in tables.iter_mut().zip(visited) {
        let Some((p, _)) = vm.gfn_pfn(v.gfn, false)? else {
            return Ok(Step::Continue);
        };
        *slot = shim::phys_to_virt((p << 12) | (v.pte_gpa & 0xfff)).cast_const();
    }
    let f = Fault {
        la,
        t: &t,
        pfn,
        tables: tables.get(..visited.len()).unwrap_or(&[]),
        // CR0.WP=0 lets supervisor code write read-only pages; the shadow
        // (always run with WP=1) then maps the page writable but
        // supervisor-only, so a user access faults and is checked again.
        wp0_write: !mmu.wp
            && !t.rights.write
            && privilege == Privilege::Supervisor
            && kind == Kind::Write,
        host_writable: pin_w && !slot.readonly(),
        log_dirty: slot.logs_dirty(),
        write: kind == Kind::Write,
        seq,
    };
    let m = mode(st);
    let roots = &st.roots;
    match vm.with_mmu(|s, ch| s.fault(roots, m, &f, ch)) {
        Ok(i) if i.protected && kind == Kind::Write => emulate_pt_write(vm, st, area, t.gpa),
        Ok(_) => {
            st.last_unprotect = None;
            Ok(Step::Continue)
        }
        Err(Fail::Retry) => Ok(Step::Continue),
        Err(Fail::NoSpace) => Err(ENOSPC),
    }
}

/// A guest write to a guest page table the shadow follows (its page is
/// mapped read-only): a store rkvm can decode is done here and the shadow
/// entries built from the old guest entries are zapped (KVM's
/// `kvm_mmu_pte_write()`); any other instruction makes the shadow stop
/// following the table, and the guest retries the write itself (KVM's
/// unprotect-and-retry). A retry that faults again at the same place is an
/// emulation failure.
fn emulate_pt_write(vm: &Vm, st: &mut State, area: &RunArea<'_>, gpa: u64) -> Result<Step> {
    let (bytes, n, insn) = fetch_insn(vm, st);
    let value = insn.and_then(|i| {
        let v = store_value(st, &i)?;
        ((gpa & 0xfff) + u64::from(i.size) <= 4096).then_some((i, v))
    });
    if let Some((insn, v)) = value {
        let size = usize::from(insn.size).min(8);
        vm.write_guest(gpa, v.to_le_bytes().get(..size).unwrap_or(&[]))?;
        vm.with_mmu(|s, ch| {
            s.count_emulated();
            ch.merge(s.pte_write(gpa, size as u64));
        });
        skip(st, u64::from(insn.len));
        st.last_unprotect = None;
        return Ok(Step::Continue);
    }
    let at = (st.regs.rip, gpa >> 12);
    if st.last_unprotect == Some(at) {
        emulation_failure(area, bytes.get(..n).unwrap_or(&[]));
        return Ok(Step::ToUser);
    }
    st.last_unprotect = Some(at);
    vm.with_mmu(|s, ch| ch.merge(s.unprotect(gpa >> 12)));
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
    walk::walk(
        &mmu,
        &mut SlotMem(vm),
        linear(st, la),
        Access { kind, privilege },
    )
    .ok()
    .map(|t| t.gpa)
}
