// SPDX-License-Identifier: GPL-2.0

//! The guest page-table walker of the shadow MMU: translates a guest-linear
//! address through the guest's own paging structures, as the CPU would, into
//! a guest-physical address, or into the #PF the CPU would raise.
//!
//! Paging modes (Intel SDM Vol. 3A, chapter 4): 32-bit (4-byte entries, two
//! levels, 4 MiB pages with CR4.PSE, PSE-36 high address bits), PAE (the
//! four PDPTE registers are an input, as the CPU loads them with CR3; then
//! two levels of 8-byte entries, 2 MiB pages), 4-level and 5-level IA-32e
//! (2 MiB pages, 1 GiB pages when the guest has them).
//!
//! Order of checks, per level from the root: a clear P flag is a not-present
//! fault; a reserved bit set is a reserved-bit fault (error code P|RSVD).
//! Access rights are the combination over all levels (SDM 4.6: a page is
//! writable if R/W is set at every level, user if U/S is set at every level,
//! execute-disabled if XD is set at any level with EFER.NXE) and are checked
//! once the leaf is found, against CR0.WP, CR4.SMEP, CR4.SMAP and RFLAGS.AC.
//!
//! Accessed and dirty flags (SDM 4.8) are set only when the translation
//! succeeds: the accessed flag in every entry used, top down, then the dirty
//! flag in the leaf for a write. A walk that faults changes nothing. A CPU
//! may already have set accessed flags of upper levels on a walk that then
//! faults; KVM does not, nor does this walker.
//! Each flag update is a compare-exchange against the value the walk read;
//! when the entry changed meanwhile the whole walk is redone (at most
//! [`RETRIES`] times).
//!
//! Where this differs from KVM, it follows the SDM: the #PF I/D bit is not
//! set for fetches in 32-bit paging with EFER.NXE but without SMEP; PSE-36
//! gives 4 MiB pages min(MAXPHYADDR, 40) address bits rather than 36. A
//! present PAE PDPTE with a reserved bit (which the CPU refuses with #GP
//! when loading it, see [`pdpte_valid`]) gives a reserved-bit #PF.
//!
//! Not modelled: protection keys and shadow stacks (not offered to guests),
//! HLAT, LAM, and the canonical-address check (a #GP, the caller's job).
//!
//! Pure logic over `core`, shared with the host tests, which compare it with
//! a simple reference walker on random page tables. Model:
//! `arch/x86/kvm/mmu/paging_tmpl.h` (`walk_addr_generic()`) and the
//! reserved-bit masks of `__reset_rsvds_bits_mask()` in
//! `arch/x86/kvm/mmu/mmu.c`.

/// #PF error code: the fault is a protection or reserved-bit violation
/// (clear: the page is not present).
pub(crate) const PF_PRESENT: u32 = 1 << 0;
/// #PF error code: the access is a write.
pub(crate) const PF_WRITE: u32 = 1 << 1;
/// #PF error code: the access is a user-mode access.
pub(crate) const PF_USER: u32 = 1 << 2;
/// #PF error code: a reserved bit is set in some paging-structure entry.
pub(crate) const PF_RSVD: u32 = 1 << 3;
/// #PF error code: the access is an instruction fetch (reported only with
/// CR4.SMEP, or with EFER.NXE outside 32-bit paging).
pub(crate) const PF_FETCH: u32 = 1 << 4;

/// Entry flag: present.
pub(crate) const PTE_P: u64 = 1 << 0;
/// Entry flag: writes allowed.
pub(crate) const PTE_RW: u64 = 1 << 1;
/// Entry flag: user-mode accesses allowed.
pub(crate) const PTE_US: u64 = 1 << 2;
/// Entry flag: accessed.
pub(crate) const PTE_A: u64 = 1 << 5;
/// Entry flag: dirty (leaf entries only).
pub(crate) const PTE_D: u64 = 1 << 6;
/// Entry flag: page size (the entry maps a large page).
pub(crate) const PTE_PS: u64 = 1 << 7;
/// Entry flag: execute disable (8-byte entries, with EFER.NXE).
pub(crate) const PTE_XD: u64 = 1 << 63;

/// How many times a walk is redone after losing an accessed/dirty update
/// race before giving up with [`WalkError::Retry`].
pub(crate) const RETRIES: u32 = 16;

/// The paging mode in use (CR0.PG = 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Paging {
    /// 32-bit paging: CR4.PAE = 0.
    Bits32,
    /// PAE paging: CR4.PAE = 1, EFER.LMA = 0.
    Pae,
    /// 4-level paging: EFER.LMA = 1, CR4.LA57 = 0.
    Level4,
    /// 5-level paging: EFER.LMA = 1, CR4.LA57 = 1.
    Level5,
}

/// The guest state a walk depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Mmu {
    /// The paging mode.
    pub(crate) mode: Paging,
    /// CR3. Only the table address is used: bits 31:12 for 32-bit paging,
    /// bits MAXPHYADDR-1:12 for 4- and 5-level paging; unused for PAE.
    pub(crate) cr3: u64,
    /// The PDPTE registers (PAE paging only), as loaded with CR3.
    pub(crate) pdptes: [u64; 4],
    /// CR0.WP: supervisor writes honour read-only pages.
    pub(crate) wp: bool,
    /// CR4.PSE: 4 MiB pages in 32-bit paging.
    pub(crate) pse: bool,
    /// CR4.SMEP.
    pub(crate) smep: bool,
    /// CR4.SMAP.
    pub(crate) smap: bool,
    /// EFER.NXE.
    pub(crate) nxe: bool,
    /// The guest has 1 GiB pages (CPUID.80000001H:EDX.Page1GB).
    pub(crate) gbpages: bool,
    /// The guest's MAXPHYADDR (CPUID.80000008H:EAX[7:0]); taken as 32 when
    /// smaller and 52 when larger.
    pub(crate) maxphyaddr: u8,
    /// RFLAGS.AC: lifts SMAP for explicit supervisor accesses.
    pub(crate) ac: bool,
}

/// What the access does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A data read.
    Read,
    /// A data write.
    Write,
    /// An instruction fetch.
    Fetch,
}

/// Who makes the access (SDM 4.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Privilege {
    /// A user-mode access: CPL 3, not implicit.
    User,
    /// An explicit supervisor-mode access: CPL < 3.
    Supervisor,
    /// An implicit supervisor-mode access (descriptor tables, TSS, ... at
    /// any CPL): SMAP applies whatever RFLAGS.AC says.
    Implicit,
}

/// One access to translate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Access {
    /// Read, write or fetch.
    pub(crate) kind: Kind,
    /// The privilege the access is made with.
    pub(crate) privilege: Privilege,
}

/// Guest-physical memory as the walker sees it.
pub(crate) trait GuestMem {
    /// Reads the 8-byte (`size8`) or 4-byte entry at `gpa`; `None` when no
    /// memory backs `gpa`.
    fn read_pte(&mut self, gpa: u64, size8: bool) -> Option<u64>;

    /// Atomically replaces the entry at `gpa` with `new` if it still holds
    /// `old`: `Ok(true)` when replaced, `Ok(false)` when it holds something
    /// else, `Err(())` when no memory backs `gpa`. Read-only memory should
    /// answer `Ok(true)` without writing (flags are then not recorded, as
    /// KVM does for ROM slots).
    fn set_bits(&mut self, gpa: u64, size8: bool, old: u64, new: u64) -> Result<bool, ()>;
}

/// A #PF to inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PageFault {
    /// The error code (`PF_*` bits).
    pub(crate) error_code: u32,
    /// The faulting linear address (CR2); 32 bits outside IA-32e paging.
    pub(crate) addr: u64,
}

/// Why a walk gave no translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WalkError {
    /// The guest takes a page fault.
    Fault(PageFault),
    /// A paging-structure entry lies at `gpa`, which no memory backs (an
    /// emulation failure: page tables in MMIO are not supported).
    Unbacked {
        /// Guest-physical address of the entry.
        gpa: u64,
    },
    /// Accessed/dirty updates kept losing races ([`RETRIES`] times); the
    /// caller lets the guest re-execute the access.
    Retry,
}

/// The access rights of a translation, combined over all levels (before
/// CR0.WP, SMEP and SMAP are applied).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Rights {
    /// R/W set at every level.
    pub(crate) write: bool,
    /// U/S set at every level.
    pub(crate) user: bool,
    /// No level has XD set with EFER.NXE (always true in 32-bit paging).
    pub(crate) exec: bool,
}

/// A paging-structure entry the walk used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Visited {
    /// Frame number of the table holding the entry.
    pub(crate) gfn: u64,
    /// The table's level: 1 = page table ... 5 = PML5 table.
    pub(crate) level: u8,
    /// Guest-physical address of the entry.
    pub(crate) pte_gpa: u64,
    /// The entry, with the accessed/dirty flags this walk set.
    pub(crate) pte: u64,
}

/// The entries a walk used, root first (the PAE PDPTEs, being registers,
/// are not among them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tables {
    entries: [Visited; 5],
    len: usize,
}

impl Tables {
    const EMPTY: Self = Self {
        entries: [Visited {
            gfn: 0,
            level: 0,
            pte_gpa: 0,
            pte: 0,
        }; 5],
        len: 0,
    };

    fn push(&mut self, v: Visited) {
        if let Some(slot) = self.entries.get_mut(self.len) {
            *slot = v;
            self.len = self.len.wrapping_add(1);
        }
    }

    /// The entries, root first.
    pub(crate) fn as_slice(&self) -> &[Visited] {
        self.entries.get(..self.len).unwrap_or(&[])
    }
}

/// A successful translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Translation {
    /// The guest-physical address of the accessed byte.
    pub(crate) gpa: u64,
    /// The leaf's level: 1 (4 KiB page), 2 (2 or 4 MiB), 3 (1 GiB).
    pub(crate) level: u8,
    /// The page size in bytes.
    pub(crate) page_size: u64,
    /// Combined access rights.
    pub(crate) rights: Rights,
    /// The leaf's dirty flag after the walk (a clean page's shadow mapping
    /// must stay read-only so that the first write sets it).
    pub(crate) dirty: bool,
    /// The entries used, root first.
    pub(crate) tables: Tables,
}

/// Mask of bits `hi:lo` (`lo <= 64`, `hi < 64`; empty when `lo > hi`).
const fn bits(hi: u32, lo: u32) -> u64 {
    if lo > hi || hi > 63 {
        0
    } else {
        (u64::MAX >> (63 - hi)) & (u64::MAX << lo)
    }
}

/// MAXPHYADDR clamped to what the walker supports.
fn phys_bits(mmu: &Mmu) -> u32 {
    u32::from(mmu.maxphyaddr).clamp(32, 52)
}

/// Whether a PAE PDPTE may be loaded: not present, or no reserved bit set
/// (a MOV to CR3/CR0/CR4 that loads one that fails raises #GP).
pub(crate) fn pdpte_valid(pdpte: u64, maxphyaddr: u8) -> bool {
    let m = u32::from(maxphyaddr).clamp(32, 52);
    pdpte & PTE_P == 0 || pdpte & pdpte_reserved(m) == 0
}

/// Reserved bits of a PAE PDPTE with MAXPHYADDR `m`.
fn pdpte_reserved(m: u32) -> u64 {
    bits(63, m) | bits(8, 5) | bits(2, 1)
}

/// Whether a present entry of `level` with PS set maps a page.
fn maps_large_page(mmu: &Mmu, level: u8) -> bool {
    match mmu.mode {
        Paging::Bits32 => level == 2 && mmu.pse,
        Paging::Pae => level == 2,
        Paging::Level4 | Paging::Level5 => level == 2 || (level == 3 && mmu.gbpages),
    }
}

/// Reserved bits of a present entry of `level`; `large` when it maps a
/// large page (SDM tables 4-4 to 4-20).
fn reserved(mmu: &Mmu, m: u32, level: u8, large: bool) -> u64 {
    let nx = if mmu.nxe { 0 } else { PTE_XD };
    match mmu.mode {
        Paging::Bits32 => {
            if large {
                // PSE-36: bits 20:13 carry physical-address bits 39:32, as
                // many as MAXPHYADDR (at most 40 here) allows.
                bits(21, 13 + (m.min(40) - 32))
            } else {
                0
            }
        }
        Paging::Pae => bits(62, m) | nx | if large { bits(20, 13) } else { 0 },
        Paging::Level4 | Paging::Level5 => {
            let high = bits(51, m) | nx;
            match (level, large) {
                (2, true) => high | bits(20, 13),
                (3, true) => high | bits(29, 13),
                // PS is reserved where it cannot map a page.
                (3, false) | (4, _) | (5, _) => high | PTE_PS,
                _ => high,
            }
        }
    }
}

/// Whether the combined `rights` allow `access` (SDM 4.6).
fn allowed(mmu: &Mmu, rights: Rights, access: Access) -> bool {
    let user = access.privilege == Privilege::User;
    match access.kind {
        Kind::Fetch => {
            rights.exec
                && if user {
                    rights.user
                } else {
                    !(mmu.smep && rights.user)
                }
        }
        Kind::Read | Kind::Write => {
            let writing = access.kind == Kind::Write;
            if user {
                rights.user && (!writing || rights.write)
            } else {
                let smap_off = access.privilege == Privilege::Supervisor && mmu.ac;
                let smap_blocks = rights.user && mmu.smap && !smap_off;
                !smap_blocks && (!writing || rights.write || !mmu.wp)
            }
        }
    }
}

/// Translates `addr` for `access` under `mmu`, reading the guest's paging
/// structures from `mem` and setting their accessed/dirty flags on success.
pub(crate) fn walk<M: GuestMem + ?Sized>(
    mmu: &Mmu,
    mem: &mut M,
    addr: u64,
    access: Access,
) -> Result<Translation, WalkError> {
    let addr = match mmu.mode {
        Paging::Bits32 | Paging::Pae => addr & 0xffff_ffff,
        Paging::Level4 | Paging::Level5 => addr,
    };
    for _ in 0..RETRIES {
        if let Some(t) = walk_once(mmu, mem, addr, access)? {
            return Ok(t);
        }
    }
    Err(WalkError::Retry)
}

/// One walk; `Ok(None)` when an accessed/dirty update lost a race.
fn walk_once<M: GuestMem + ?Sized>(
    mmu: &Mmu,
    mem: &mut M,
    addr: u64,
    access: Access,
) -> Result<Option<Translation>, WalkError> {
    let m = phys_bits(mmu);
    let wide = mmu.mode != Paging::Bits32;
    let fault = |code: u32| {
        let mut error_code = code;
        match access.kind {
            Kind::Write => error_code |= PF_WRITE,
            Kind::Fetch if mmu.smep || (wide && mmu.nxe) => error_code |= PF_FETCH,
            Kind::Read | Kind::Fetch => {}
        }
        if access.privilege == Privilege::User {
            error_code |= PF_USER;
        }
        WalkError::Fault(PageFault { error_code, addr })
    };
    let addr_mask = if wide { bits(m - 1, 12) } else { bits(31, 12) };

    let (mut level, mut table): (u8, u64) = match mmu.mode {
        Paging::Bits32 => (2, mmu.cr3 & addr_mask),
        Paging::Pae => {
            let pdpte = mmu
                .pdptes
                .get(((addr >> 30) & 3) as usize)
                .copied()
                .unwrap_or(0);
            if pdpte & PTE_P == 0 {
                return Err(fault(0));
            }
            if pdpte & pdpte_reserved(m) != 0 {
                return Err(fault(PF_PRESENT | PF_RSVD));
            }
            (2, pdpte & addr_mask)
        }
        Paging::Level4 => (4, mmu.cr3 & addr_mask),
        Paging::Level5 => (5, mmu.cr3 & addr_mask),
    };

    let mut rights = Rights {
        write: true,
        user: true,
        exec: true,
    };
    let mut tables = Tables::EMPTY;
    let (leaf, large) = loop {
        let (index, size) = if wide {
            let shift = 12 + 9 * u32::from(level.wrapping_sub(1).min(4));
            ((addr >> shift) & 0x1ff, 8)
        } else {
            let shift = 12 + 10 * u32::from(level.wrapping_sub(1) & 1);
            ((addr >> shift) & 0x3ff, 4)
        };
        let pte_gpa = table | (index * size);
        let mut pte = mem
            .read_pte(pte_gpa, wide)
            .ok_or(WalkError::Unbacked { gpa: pte_gpa })?;
        if !wide {
            pte &= 0xffff_ffff;
        }
        tables.push(Visited {
            gfn: table >> 12,
            level,
            pte_gpa,
            pte,
        });
        if pte & PTE_P == 0 {
            return Err(fault(0));
        }
        let large = level > 1 && pte & PTE_PS != 0 && maps_large_page(mmu, level);
        if pte & reserved(mmu, m, level, large) != 0 {
            return Err(fault(PF_PRESENT | PF_RSVD));
        }
        rights.write &= pte & PTE_RW != 0;
        rights.user &= pte & PTE_US != 0;
        rights.exec &= pte & PTE_XD == 0;
        if level <= 1 || large {
            break (pte, large);
        }
        table = pte & addr_mask;
        level = level.wrapping_sub(1);
    };

    if !allowed(mmu, rights, access) {
        return Err(fault(PF_PRESENT));
    }

    let (gpa, page_size) = if !wide && large {
        // 4 MiB page: bits 31:22 from the entry, 39:32 from its bits 20:13.
        let base = (leaf & bits(31, 22)) | ((leaf >> 13) & 0xff) << 32;
        (base | (addr & bits(21, 0)), 1 << 22)
    } else {
        let page_size = 1u64 << (12 + 9 * u32::from(level.wrapping_sub(1).min(2)));
        let offset = page_size.wrapping_sub(1);
        ((leaf & addr_mask & !offset) | (addr & offset), page_size)
    };

    // Accessed flags top down, then the dirty flag of the leaf.
    let n = tables.len;
    for (i, v) in tables.entries.iter_mut().enumerate().take(n) {
        let mut new = v.pte | PTE_A;
        if i.wrapping_add(1) == n && access.kind == Kind::Write {
            new |= PTE_D;
        }
        if new == v.pte {
            continue;
        }
        match mem.set_bits(v.pte_gpa, wide, v.pte, new) {
            Ok(true) => v.pte = new,
            Ok(false) => return Ok(None),
            Err(()) => return Err(WalkError::Unbacked { gpa: v.pte_gpa }),
        }
    }
    let dirty = tables.as_slice().last().is_some_and(|v| v.pte & PTE_D != 0);

    Ok(Some(Translation {
        gpa,
        level,
        page_size,
        rights,
        dirty,
        tables,
    }))
}
