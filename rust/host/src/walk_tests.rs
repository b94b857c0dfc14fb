// SPDX-License-Identifier: GPL-2.0

//! Tests of the guest page-table walker (`rust/mmu/walk.rs`): one test per
//! paging mode and per rule, and a differential test against a deliberately
//! simple recursive walker written from the SDM tables, on random page
//! tables and accesses, comparing results, #PF error codes and the
//! accessed/dirty flags left in memory.

use crate::walk::*;

/// Pages of guest memory backing the test tables (from gpa 0).
const NPAGES: u64 = 8;

/// Guest memory: `NPAGES` pages; anything above is unbacked.
#[derive(Clone, Debug, PartialEq)]
struct Mem {
    bytes: Vec<u8>,
    /// `set_bits` calls still to lose: another "CPU" sets the accessed flag
    /// just before the exchange.
    races: u32,
    /// Every `set_bits` call loses.
    always_race: bool,
}

impl Mem {
    fn new() -> Self {
        Self {
            bytes: vec![0; (NPAGES * 4096) as usize],
            races: 0,
            always_race: false,
        }
    }

    fn get(&self, gpa: u64, size8: bool) -> Option<u64> {
        let n = if size8 { 8 } else { 4 };
        let start = usize::try_from(gpa).ok()?;
        let b = self.bytes.get(start..start.checked_add(n)?)?;
        let mut v = [0u8; 8];
        v[..n].copy_from_slice(b);
        Some(u64::from_le_bytes(v))
    }

    fn put(&mut self, gpa: u64, size8: bool, value: u64) {
        let n = if size8 { 8 } else { 4 };
        let start = gpa as usize;
        self.bytes[start..start + n].copy_from_slice(&value.to_le_bytes()[..n]);
    }
}

impl GuestMem for Mem {
    fn read_pte(&mut self, gpa: u64, size8: bool) -> Option<u64> {
        self.get(gpa, size8)
    }

    fn set_bits(&mut self, gpa: u64, size8: bool, old: u64, new: u64) -> Result<bool, ()> {
        let cur = self.get(gpa, size8).ok_or(())?;
        if self.always_race {
            return Ok(false);
        }
        if self.races > 0 {
            self.races -= 1;
            self.put(gpa, size8, cur | PTE_A);
            return Ok(false);
        }
        if cur != old {
            return Ok(false);
        }
        self.put(gpa, size8, new);
        Ok(true)
    }
}

fn mmu(mode: Paging) -> Mmu {
    Mmu {
        mode,
        cr3: 0x1000,
        pdptes: [0; 4],
        wp: true,
        pse: true,
        smep: false,
        smap: false,
        nxe: true,
        gbpages: true,
        maxphyaddr: 46,
        ac: false,
    }
}

fn acc(kind: Kind, privilege: Privilege) -> Access {
    Access { kind, privilege }
}

const READ: Access = Access {
    kind: Kind::Read,
    privilege: Privilege::Supervisor,
};
const UREAD: Access = Access {
    kind: Kind::Read,
    privilege: Privilege::User,
};
const WRITE: Access = Access {
    kind: Kind::Write,
    privilege: Privilege::Supervisor,
};
const UWRITE: Access = Access {
    kind: Kind::Write,
    privilege: Privilege::User,
};
const FETCH: Access = Access {
    kind: Kind::Fetch,
    privilege: Privilege::Supervisor,
};
const UFETCH: Access = Access {
    kind: Kind::Fetch,
    privilege: Privilege::User,
};

/// Index of `addr` in the table of `level` (8-byte entries).
fn idx64(addr: u64, level: u8) -> u64 {
    (addr >> (12 + 9 * (u32::from(level) - 1))) & 0x1ff
}

/// Index of `addr` in the table of `level` (32-bit paging).
fn idx32(addr: u64, level: u8) -> u64 {
    (addr >> (12 + 10 * (u32::from(level) - 1))) & 0x3ff
}

/// Stores `entries` (from level `top` down) along the walk of `addr`, the
/// first in the table at `root`, each next one in the table the previous
/// one points to (bits 31:12, which all the tests here use).
fn map(mem: &mut Mem, wide: bool, root: u64, addr: u64, top: u8, entries: &[u64]) {
    let mut table = root;
    for (i, &e) in entries.iter().enumerate() {
        let level = top - i as u8;
        let gpa = if wide {
            table + idx64(addr, level) * 8
        } else {
            table + idx32(addr, level) * 4
        };
        mem.put(gpa, wide, e);
        table = e & 0xffff_f000;
    }
}

const PRW: u64 = PTE_P | PTE_RW;
const PRWU: u64 = PTE_P | PTE_RW | PTE_US;
const ADDR: u64 = 0x0000_7f12_3456_789a;

/// A 4-level walk of `ADDR` through tables at pages 1..=4 to page 5.
fn four_level(flags: [u64; 4]) -> Mem {
    let mut mem = Mem::new();
    map(
        &mut mem,
        true,
        0x1000,
        ADDR,
        4,
        &[
            0x2000 | flags[0],
            0x3000 | flags[1],
            0x4000 | flags[2],
            0x5000 | flags[3],
        ],
    );
    mem
}

fn fault(e: Result<Translation, WalkError>) -> u32 {
    match e {
        Err(WalkError::Fault(pf)) => pf.error_code,
        other => panic!("expected a #PF, got {other:?}"),
    }
}

#[test]
fn four_level_4k_page_sets_accessed_then_dirty() {
    let mut mem = four_level([PRWU; 4]);
    let m = mmu(Paging::Level4);
    let t = walk(&m, &mut mem, ADDR, UREAD).unwrap();
    assert_eq!(t.gpa, 0x5000 | (ADDR & 0xfff));
    assert_eq!((t.level, t.page_size), (1, 4096));
    assert_eq!(
        t.rights,
        Rights {
            write: true,
            user: true,
            exec: true
        }
    );
    assert!(!t.dirty);
    let v = t.tables.as_slice();
    assert_eq!(v.len(), 4);
    for (i, e) in v.iter().enumerate() {
        assert_eq!(e.level, 4 - i as u8);
        assert_eq!(e.gfn, 1 + i as u64);
        assert_eq!(e.pte_gpa, (1 + i as u64) * 4096 + idx64(ADDR, e.level) * 8);
        assert_eq!(e.pte & (PTE_A | PTE_D), PTE_A);
        assert_eq!(mem.get(e.pte_gpa, true), Some(e.pte));
    }
    let t = walk(&m, &mut mem, ADDR, UWRITE).unwrap();
    assert!(t.dirty);
    let v = t.tables.as_slice();
    assert_eq!(mem.get(v[3].pte_gpa, true).unwrap() & PTE_D, PTE_D);
    for e in &v[..3] {
        assert_eq!(mem.get(e.pte_gpa, true).unwrap() & PTE_D, 0);
    }
}

#[test]
fn large_pages_in_four_level_paging() {
    let m = mmu(Paging::Level4);
    // 2 MiB, with the PAT bit (12) set: not reserved, not address.
    let mut mem = Mem::new();
    map(
        &mut mem,
        true,
        0x1000,
        ADDR,
        4,
        &[
            0x2000 | PRW,
            0x3000 | PRW,
            0x1234_5000_0000 | 1 << 12 | PRW | PTE_PS,
        ],
    );
    let t = walk(&m, &mut mem, ADDR, WRITE).unwrap();
    assert_eq!(t.gpa, 0x1234_5000_0000 | (ADDR & 0x1f_ffff));
    assert_eq!((t.level, t.page_size, t.dirty), (2, 2 << 20, true));
    assert_eq!(t.tables.as_slice().len(), 3);
    // Bits 20:13 of a 2 MiB PDE are reserved.
    for bit in 13..=20 {
        map(
            &mut mem,
            true,
            0x1000,
            ADDR,
            4,
            &[
                0x2000 | PRW,
                0x3000 | PRW,
                0x1234_5000_0000 | 1 << bit | PRW | PTE_PS,
            ],
        );
        assert_eq!(fault(walk(&m, &mut mem, ADDR, READ)), PF_PRESENT | PF_RSVD);
    }

    // 1 GiB.
    let mut mem = Mem::new();
    let pdpte = 0x0012_4000_0000 | 1 << 12 | PRW | PTE_PS;
    map(&mut mem, true, 0x1000, ADDR, 4, &[0x2000 | PRW, pdpte]);
    let t = walk(&m, &mut mem, ADDR, READ).unwrap();
    assert_eq!(t.gpa, 0x0012_4000_0000 | (ADDR & 0x3fff_ffff));
    assert_eq!((t.level, t.page_size), (3, 1 << 30));
    // Without 1 GiB pages PS is a reserved bit in a PDPTE.
    let no_gb = Mmu {
        gbpages: false,
        ..m
    };
    assert_eq!(
        fault(walk(&no_gb, &mut mem, ADDR, WRITE)),
        PF_PRESENT | PF_RSVD | PF_WRITE
    );
    // Bits 29:13 of a 1 GiB PDPTE are reserved.
    for bit in 13..=29 {
        map(
            &mut mem,
            true,
            0x1000,
            ADDR,
            4,
            &[0x2000 | PRW, pdpte | 1 << bit],
        );
        assert_eq!(fault(walk(&m, &mut mem, ADDR, READ)), PF_PRESENT | PF_RSVD);
    }
}

#[test]
fn five_level_paging() {
    let addr = 0x01ab_7f12_3456_789a;
    let mut mem = Mem::new();
    let m = mmu(Paging::Level5);
    map(
        &mut mem,
        true,
        0x1000,
        addr,
        5,
        &[
            0x2000 | PRWU,
            0x3000 | PRWU,
            0x4000 | PRWU,
            0x5000 | PRWU,
            0x6000 | PRWU,
        ],
    );
    let t = walk(&m, &mut mem, addr, UFETCH).unwrap();
    assert_eq!(t.gpa, 0x6000 | 0x89a);
    let levels: Vec<u8> = t.tables.as_slice().iter().map(|v| v.level).collect();
    assert_eq!(levels, [5, 4, 3, 2, 1]);
    // PS is reserved in a PML5E as in a PML4E.
    let pml5e = 0x1000 + idx64(addr, 5) * 8;
    mem.put(pml5e, true, 0x2000 | PRWU | PTE_PS);
    assert_eq!(
        fault(walk(&m, &mut mem, addr, UREAD)),
        PF_PRESENT | PF_RSVD | PF_USER
    );
}

#[test]
fn ps_in_a_pml4e_is_reserved() {
    let mut mem = four_level([PRW | PTE_PS, PRW, PRW, PRW]);
    assert_eq!(
        fault(walk(&mmu(Paging::Level4), &mut mem, ADDR, READ)),
        PF_PRESENT | PF_RSVD
    );
}

#[test]
fn address_bits_above_maxphyaddr_are_reserved() {
    let m = Mmu {
        maxphyaddr: 36,
        ..mmu(Paging::Level4)
    };
    // Bit 35 is address, bit 36 is reserved, at every level.
    let mut mem = four_level([PRW; 4]);
    let leaf = 0x4000 + idx64(ADDR, 1) * 8;
    mem.put(leaf, true, 1 << 35 | 0x5000 | PRW);
    assert_eq!(
        walk(&m, &mut mem, ADDR, READ).unwrap().gpa,
        1 << 35 | 0x589a
    );
    for level in 1..=4u8 {
        let mut mem = four_level([PRW; 4]);
        let gpa = (5 - u64::from(level)) * 4096 + idx64(ADDR, level) * 8;
        let e = mem.get(gpa, true).unwrap();
        mem.put(gpa, true, e | 1 << 36);
        assert_eq!(fault(walk(&m, &mut mem, ADDR, READ)), PF_PRESENT | PF_RSVD);
        // Bits 62:52 are ignored in IA-32e paging.
        mem.put(gpa, true, e | 0x7ff << 52);
        assert!(walk(&m, &mut mem, ADDR, READ).is_ok());
    }
}

#[test]
fn execute_disable() {
    let mut mem = four_level([PRWU, PRWU | PTE_XD, PRWU, PRWU]);
    let m = mmu(Paging::Level4);
    let t = walk(&m, &mut mem, ADDR, UREAD).unwrap();
    assert!(!t.rights.exec);
    assert_eq!(
        fault(walk(&m, &mut mem, ADDR, UFETCH)),
        PF_PRESENT | PF_USER | PF_FETCH
    );
    assert_eq!(
        fault(walk(&m, &mut mem, ADDR, FETCH)),
        PF_PRESENT | PF_FETCH
    );
    // Without EFER.NXE, bit 63 is reserved, and a fetch does not set I/D.
    let no_nx = Mmu { nxe: false, ..m };
    assert_eq!(
        fault(walk(&no_nx, &mut mem, ADDR, FETCH)),
        PF_PRESENT | PF_RSVD
    );
    let mut mem = four_level([PRWU; 4]);
    assert!(walk(&no_nx, &mut mem, ADDR, FETCH).unwrap().rights.exec);
}

#[test]
fn not_present_at_each_level_and_no_side_effects() {
    for level in 1..=4u8 {
        let mut flags = [PRWU; 4];
        flags[usize::from(4 - level)] = PTE_RW | PTE_US | 0x7_0000_0000_0000;
        let mut mem = four_level(flags);
        let before = mem.clone();
        let m = mmu(Paging::Level4);
        assert_eq!(fault(walk(&m, &mut mem, ADDR, UWRITE)), PF_WRITE | PF_USER);
        assert_eq!(fault(walk(&m, &mut mem, ADDR, READ)), 0);
        assert_eq!(
            walk(&m, &mut mem, ADDR, FETCH),
            Err(WalkError::Fault(PageFault {
                error_code: PF_FETCH,
                addr: ADDR
            }))
        );
        assert_eq!(mem, before, "a faulting walk sets no flags");
    }
}

#[test]
fn user_supervisor_across_levels() {
    let m = mmu(Paging::Level4);
    for level in 0..4 {
        let mut flags = [PRWU; 4];
        flags[level] = PRW;
        let mut mem = four_level(flags);
        let before = mem.clone();
        assert_eq!(fault(walk(&m, &mut mem, ADDR, UREAD)), PF_PRESENT | PF_USER);
        assert_eq!(mem, before);
        let t = walk(&m, &mut mem, ADDR, READ).unwrap();
        assert!(!t.rights.user);
    }
}

#[test]
fn read_write_and_cr0_wp() {
    let wp = mmu(Paging::Level4);
    let no_wp = Mmu { wp: false, ..wp };
    for level in 0..4 {
        let mut flags = [PRWU; 4];
        flags[level] = PTE_P | PTE_US;
        let mut mem = four_level(flags);
        assert_eq!(
            fault(walk(&wp, &mut mem, ADDR, UWRITE)),
            PF_PRESENT | PF_WRITE | PF_USER
        );
        assert_eq!(
            fault(walk(&no_wp, &mut mem, ADDR, UWRITE)),
            PF_PRESENT | PF_WRITE | PF_USER
        );
        assert_eq!(
            fault(walk(&wp, &mut mem, ADDR, WRITE)),
            PF_PRESENT | PF_WRITE
        );
        // CR0.WP = 0: the supervisor write goes through and dirties the page.
        let t = walk(&no_wp, &mut mem, ADDR, WRITE).unwrap();
        assert!(t.dirty && !t.rights.write);
        // So does an implicit one.
        let t = walk(
            &no_wp,
            &mut mem,
            ADDR,
            acc(Kind::Write, Privilege::Implicit),
        );
        assert!(t.is_ok());
    }
}

#[test]
fn smep() {
    let m = Mmu {
        smep: true,
        nxe: false,
        ..mmu(Paging::Level4)
    };
    let mut mem = four_level([PRWU; 4]);
    assert_eq!(
        fault(walk(&m, &mut mem, ADDR, FETCH)),
        PF_PRESENT | PF_FETCH
    );
    assert!(walk(&m, &mut mem, ADDR, UFETCH).is_ok());
    assert!(walk(&m, &mut mem, ADDR, READ).is_ok());
    assert!(walk(&Mmu { smep: false, ..m }, &mut mem, ADDR, FETCH).is_ok());
    // A supervisor page somewhere up the walk makes it a supervisor page.
    let mut mem = four_level([PRWU, PRW, PRWU, PRWU]);
    assert!(walk(&m, &mut mem, ADDR, FETCH).is_ok());
}

#[test]
fn smap() {
    let m = Mmu {
        smap: true,
        ..mmu(Paging::Level4)
    };
    let ac = Mmu { ac: true, ..m };
    let implicit_read = acc(Kind::Read, Privilege::Implicit);
    let implicit_write = acc(Kind::Write, Privilege::Implicit);
    let mut mem = four_level([PRWU; 4]);
    assert_eq!(fault(walk(&m, &mut mem, ADDR, READ)), PF_PRESENT);
    assert_eq!(
        fault(walk(&m, &mut mem, ADDR, WRITE)),
        PF_PRESENT | PF_WRITE
    );
    assert!(walk(&ac, &mut mem, ADDR, READ).is_ok());
    assert!(walk(&ac, &mut mem, ADDR, WRITE).is_ok());
    // RFLAGS.AC does not lift SMAP for implicit accesses (U/S clear in
    // the error code even though they may come from CPL 3).
    assert_eq!(fault(walk(&ac, &mut mem, ADDR, implicit_read)), PF_PRESENT);
    assert_eq!(
        fault(walk(&ac, &mut mem, ADDR, implicit_write)),
        PF_PRESENT | PF_WRITE
    );
    // Neither fetches nor user accesses are SMAP's business.
    assert!(walk(&m, &mut mem, ADDR, FETCH).is_ok());
    assert!(walk(&m, &mut mem, ADDR, UWRITE).is_ok());
    // Supervisor pages are fine.
    let mut mem = four_level([PRWU, PRWU, PRWU, PRW]);
    assert!(walk(&m, &mut mem, ADDR, implicit_write).is_ok());
    // With AC and CR0.WP = 0, a user read-only page takes supervisor writes.
    let mut mem = four_level([PTE_P | PTE_US; 4]);
    let ac_no_wp = Mmu { wp: false, ..ac };
    assert!(walk(&ac_no_wp, &mut mem, ADDR, WRITE).is_ok());
    assert_eq!(
        fault(walk(&Mmu { wp: false, ..m }, &mut mem, ADDR, WRITE)),
        PF_PRESENT | PF_WRITE
    );
}

#[test]
fn thirty_two_bit_paging() {
    let addr = 0x8765_4321u64;
    let mut m = Mmu {
        cr3: 0x1000 | 0x18, // PWT/PCD are not address bits
        nxe: false,
        ..mmu(Paging::Bits32)
    };
    let mut mem = Mem::new();
    map(
        &mut mem,
        false,
        0x1000,
        addr,
        2,
        &[0x2000 | PRWU, 0x3000 | PRWU],
    );
    // The upper half of the linear address is not looked at.
    let t = walk(&m, &mut mem, 0xffff_ffff_0000_0000 | addr, UWRITE).unwrap();
    assert_eq!(t.gpa, 0x3321);
    assert_eq!((t.level, t.page_size, t.dirty), (1, 4096, true));
    let v = t.tables.as_slice();
    assert_eq!(v.len(), 2);
    assert_eq!((v[0].gfn, v[0].level), (1, 2));
    assert_eq!(v[0].pte_gpa, 0x1000 + idx32(addr, 2) * 4);
    assert_eq!((v[1].gfn, v[1].level), (2, 1));
    assert_eq!(v[1].pte, 0x3000 | PRWU | PTE_A | PTE_D);
    // The neighbouring 4-byte entries were left alone.
    assert_eq!(mem.get(v[1].pte_gpa + 4, false), Some(0));
    assert_eq!(mem.get(v[0].pte_gpa, false), Some(0x2000 | PRWU | PTE_A));

    // PAT (bit 7) in a PTE is fine; without CR4.PSE, PS in a PDE is ignored.
    map(
        &mut mem,
        false,
        0x1000,
        addr,
        2,
        &[0x2000 | PRWU | PTE_PS, 0x3000 | PRWU | PTE_PS],
    );
    m.pse = false;
    assert_eq!(walk(&m, &mut mem, addr, UREAD).unwrap().gpa, 0x3321);

    // With CR4.PSE, a 4 MiB page; PSE-36 bits 20:13 give address bits 39:32.
    m.pse = true;
    m.maxphyaddr = 40;
    let pde = 0x8000_0000 | 0xab << 13 | 1 << 12 | PRWU | PTE_PS;
    map(&mut mem, false, 0x1000, addr, 2, &[pde]);
    let t = walk(&m, &mut mem, addr, UREAD).unwrap();
    assert_eq!(t.gpa, 0xab_8000_0000 | (addr & 0x3f_ffff));
    assert_eq!((t.level, t.page_size), (2, 4 << 20));
    // Bit 21 is always reserved; with MAXPHYADDR 36, bits 21:17 are.
    map(&mut mem, false, 0x1000, addr, 2, &[pde | 1 << 21]);
    assert_eq!(
        fault(walk(&m, &mut mem, addr, UREAD)),
        PF_PRESENT | PF_RSVD | PF_USER
    );
    m.maxphyaddr = 36;
    map(&mut mem, false, 0x1000, addr, 2, &[pde]);
    assert_eq!(fault(walk(&m, &mut mem, addr, READ)), PF_PRESENT | PF_RSVD);
    map(&mut mem, false, 0x1000, addr, 2, &[pde & !(0xf0 << 13)]);
    assert_eq!(walk(&m, &mut mem, addr, READ).unwrap().gpa, 0xb_8025_4321);
    // MAXPHYADDR 52 still gives PSE-36 only 40 address bits.
    m.maxphyaddr = 52;
    map(&mut mem, false, 0x1000, addr, 2, &[pde | 1 << 21]);
    assert_eq!(fault(walk(&m, &mut mem, addr, READ)), PF_PRESENT | PF_RSVD);
}

#[test]
fn fetch_error_code_in_thirty_two_bit_paging() {
    // No XD bit here: EFER.NXE alone does not make #PF report fetches.
    let addr = 0x0040_1000u64;
    let m = Mmu {
        nxe: true,
        ..mmu(Paging::Bits32)
    };
    let mut mem = Mem::new();
    map(&mut mem, false, 0x1000, addr, 2, &[0x2000 | PRW, 0x3000]);
    assert_eq!(fault(walk(&m, &mut mem, addr, UFETCH)), PF_USER);
    let smep = Mmu { smep: true, ..m };
    assert_eq!(
        fault(walk(&smep, &mut mem, addr, UFETCH)),
        PF_USER | PF_FETCH
    );
    // ... nor does it outside it.
    let mut mem = four_level([PRW, PRW, PRW, 0]);
    let no_nx = Mmu {
        nxe: false,
        ..mmu(Paging::Level4)
    };
    assert_eq!(fault(walk(&no_nx, &mut mem, ADDR, UFETCH)), PF_USER);
    assert_eq!(
        fault(walk(&mmu(Paging::Level4), &mut mem, ADDR, UFETCH)),
        PF_USER | PF_FETCH
    );
}

#[test]
fn pae_paging() {
    let addr = 0xc012_3456u64;
    let mut m = Mmu {
        cr3: 0,
        maxphyaddr: 36,
        ..mmu(Paging::Pae)
    };
    m.pdptes[3] = 0x1000 | PTE_P;
    let mut mem = Mem::new();
    map(
        &mut mem,
        true,
        0x1000,
        addr,
        2,
        &[0x2000 | PRWU, 0x3000 | PRWU],
    );
    let t = walk(&m, &mut mem, addr, UWRITE).unwrap();
    assert_eq!(t.gpa, 0x3456);
    assert_eq!(t.tables.as_slice().len(), 2);
    assert_eq!(t.tables.as_slice()[0].gfn, 1);
    assert_eq!(t.tables.as_slice()[0].level, 2);
    // The PDPTE register is not written: it has no accessed flag.
    assert_eq!(m.pdptes[3], 0x1000 | PTE_P);

    // A 2 MiB page needs no CR4.PSE.
    m.pse = false;
    let pde = 0xa_0020_0000 | 1 << 12 | PRWU | PTE_PS;
    map(&mut mem, true, 0x1000, addr, 2, &[pde]);
    let t = walk(&m, &mut mem, addr, UREAD).unwrap();
    assert_eq!((t.gpa, t.level), (0xa_0032_3456, 2));
    // Bits 62:MAXPHYADDR are reserved in PAE paging (unlike IA-32e).
    map(&mut mem, true, 0x1000, addr, 2, &[pde | 1 << 52]);
    assert_eq!(fault(walk(&m, &mut mem, addr, READ)), PF_PRESENT | PF_RSVD);
    map(&mut mem, true, 0x1000, addr, 2, &[pde | 1 << 36]);
    assert_eq!(fault(walk(&m, &mut mem, addr, READ)), PF_PRESENT | PF_RSVD);
    map(&mut mem, true, 0x1000, addr, 2, &[pde | PTE_XD]);
    assert_eq!(
        fault(walk(&m, &mut mem, addr, FETCH)),
        PF_PRESENT | PF_FETCH
    );
    map(&mut mem, true, 0x1000, addr, 2, &[pde | 1 << 13]);
    assert_eq!(fault(walk(&m, &mut mem, addr, READ)), PF_PRESENT | PF_RSVD);

    // The PDPTE is chosen by bits 31:30; a clear P flag faults.
    assert_eq!(fault(walk(&m, &mut mem, 0x4000_0000, UREAD)), PF_USER);
    // Reserved PDPTE bits (a CPU would have refused them at the load).
    map(&mut mem, true, 0x1000, addr, 2, &[pde]);
    for bit in [1, 2, 5, 6, 7, 8, 36, 51, 62, 63] {
        let mut bad = m;
        bad.pdptes[3] |= 1 << bit;
        assert!(!pdpte_valid(bad.pdptes[3], 36));
        assert_eq!(
            fault(walk(&bad, &mut mem, addr, WRITE)),
            PF_PRESENT | PF_RSVD | PF_WRITE
        );
    }
    assert!(pdpte_valid(0x1000 | PTE_P | 0x18 | 0xe00, 36));
    assert!(pdpte_valid(!PTE_P, 36));
}

#[test]
fn unbacked_tables_are_reported() {
    let mut mem = four_level([PRW; 4]);
    let pde = 0x3000 + idx64(ADDR, 2) * 8;
    mem.put(pde, true, 0x10_0000 | PRW);
    assert_eq!(
        walk(&mmu(Paging::Level4), &mut mem, ADDR, READ),
        Err(WalkError::Unbacked {
            gpa: 0x10_0000 + idx64(ADDR, 1) * 8
        })
    );
}

#[test]
fn lost_races_redo_the_walk() {
    let mut mem = four_level([PRW; 4]);
    mem.races = 2;
    let t = walk(&mmu(Paging::Level4), &mut mem, ADDR, WRITE).unwrap();
    assert_eq!(mem.races, 0);
    for v in t.tables.as_slice() {
        assert_eq!(v.pte & PTE_A, PTE_A);
        assert_eq!(mem.get(v.pte_gpa, true), Some(v.pte));
    }
    assert!(t.dirty);

    let mut mem = four_level([PRW; 4]);
    mem.always_race = true;
    assert_eq!(
        walk(&mmu(Paging::Level4), &mut mem, ADDR, READ),
        Err(WalkError::Retry)
    );
    // Nothing left to set: no exchange is attempted.
    let mut mem = four_level([PRW | PTE_A; 4]);
    mem.always_race = true;
    assert!(walk(&mmu(Paging::Level4), &mut mem, ADDR, READ).is_ok());
}

#[test]
fn guest_memory_as_a_trait_object() {
    let mut mem = four_level([PRW; 4]);
    let dynmem: &mut dyn GuestMem = &mut mem;
    assert!(walk(&mmu(Paging::Level4), dynmem, ADDR, READ).is_ok());
}

// ---------------------------------------------------------------------------
// The reference model.

/// The kinds of paging-structure entry, by format (SDM tables 4-4 to 4-20).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Entry {
    Pde32,
    Pde32Big,
    Pte32,
    PaePdpte,
    PaePde,
    PaePdeBig,
    PaePte,
    Pml5e,
    Pml4e,
    Pdpte,
    PdpteBig,
    Pde,
    PdeBig,
    Pte,
}

/// Whether `bit` is reserved in a present entry of kind `e`.
fn reserved_bit(mmu: &Mmu, m: u32, e: Entry, bit: u32) -> bool {
    use Entry::*;
    let xd = bit == 63 && !mmu.nxe;
    match e {
        Pde32 | Pte32 => false,
        // Bits 20:13 hold physical-address bits 39:32.
        Pde32Big => bit == 21 || ((13..=20).contains(&bit) && bit + 19 >= m.min(40)),
        PaePdpte => [1, 2, 5, 6, 7, 8].contains(&bit) || bit >= m,
        PaePde | PaePte => xd || (m..=62).contains(&bit),
        PaePdeBig => xd || (m..=62).contains(&bit) || (13..=20).contains(&bit),
        Pml5e | Pml4e => xd || (m..=51).contains(&bit) || bit == 7,
        Pdpte => xd || (m..=51).contains(&bit) || (bit == 7 && !mmu.gbpages),
        PdpteBig => xd || (m..=51).contains(&bit) || (13..=29).contains(&bit),
        Pde | Pte => xd || (m..=51).contains(&bit),
        PdeBig => xd || (m..=51).contains(&bit) || (13..=20).contains(&bit),
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Outcome {
    Done {
        gpa: u64,
        level: u8,
        page_size: u64,
        rights: (bool, bool, bool),
        dirty: bool,
        visited: Vec<(u64, u8, u64, u64)>,
    },
    Fault(u32, u64),
    Unbacked(u64),
    Retry,
}

fn outcome(r: Result<Translation, WalkError>) -> Outcome {
    match r {
        Ok(t) => Outcome::Done {
            gpa: t.gpa,
            level: t.level,
            page_size: t.page_size,
            rights: (t.rights.write, t.rights.user, t.rights.exec),
            dirty: t.dirty,
            visited: t
                .tables
                .as_slice()
                .iter()
                .map(|v| (v.gfn, v.level, v.pte_gpa, v.pte))
                .collect(),
        },
        Err(WalkError::Fault(pf)) => Outcome::Fault(pf.error_code, pf.addr),
        Err(WalkError::Unbacked { gpa }) => Outcome::Unbacked(gpa),
        Err(WalkError::Retry) => Outcome::Retry,
    }
}

/// How a walk of the model ends before the permission check.
enum Stop {
    NotPresent,
    Reserved,
    Unbacked(u64),
}

/// The model's leaf: frame base, level, page size, and the entries used.
struct Leaf {
    base: u64,
    level: u8,
    size: u64,
    entries: Vec<(u64, u8, u64, u64)>,
}

struct Model<'a> {
    mmu: &'a Mmu,
    mem: &'a Mem,
    addr: u64,
    m: u32,
}

impl Model<'_> {
    /// Looks up `addr` in the table at `table` of `level`, then below.
    fn descend(
        &self,
        table: u64,
        level: u8,
        mut used: Vec<(u64, u8, u64, u64)>,
    ) -> Result<Leaf, Stop> {
        let bits32 = self.mmu.mode == Paging::Bits32;
        let (lo, width, size) = if bits32 {
            (12 + 10 * (u32::from(level) - 1), 10, 4)
        } else {
            (12 + 9 * (u32::from(level) - 1), 9, 8)
        };
        let index = (self.addr >> lo) % (1 << width);
        let gpa = table + index * size;
        let e = self.mem.get(gpa, !bits32).ok_or(Stop::Unbacked(gpa))?;
        used.push((table / 4096, level, gpa, e));
        if e % 2 == 0 {
            return Err(Stop::NotPresent);
        }
        let ps = (e >> 7) & 1 == 1;
        let kind = match (self.mmu.mode, level) {
            (Paging::Bits32, 2) if ps && self.mmu.pse => Entry::Pde32Big,
            (Paging::Bits32, 2) => Entry::Pde32,
            (Paging::Bits32, _) => Entry::Pte32,
            (Paging::Pae, 2) if ps => Entry::PaePdeBig,
            (Paging::Pae, 2) => Entry::PaePde,
            (Paging::Pae, _) => Entry::PaePte,
            (_, 5) => Entry::Pml5e,
            (_, 4) => Entry::Pml4e,
            (_, 3) if ps && self.mmu.gbpages => Entry::PdpteBig,
            (_, 3) => Entry::Pdpte,
            (_, 2) if ps => Entry::PdeBig,
            (_, 2) => Entry::Pde,
            _ => Entry::Pte,
        };
        if (0..64).any(|b| (e >> b) & 1 == 1 && reserved_bit(self.mmu, self.m, kind, b)) {
            return Err(Stop::Reserved);
        }
        let frame_mask = if bits32 {
            0xffff_f000
        } else {
            ((1u64 << self.m) - 1) & !0xfff
        };
        match kind {
            Entry::Pte32 | Entry::PaePte | Entry::Pte => Ok(Leaf {
                base: e & frame_mask,
                level: 1,
                size: 4096,
                entries: used,
            }),
            Entry::Pde32Big => Ok(Leaf {
                base: (e >> 22 << 22) + (((e >> 13) & 0xff) << 32),
                level: 2,
                size: 4 << 20,
                entries: used,
            }),
            Entry::PaePdeBig | Entry::PdeBig => Ok(Leaf {
                base: e & frame_mask & !0x1f_ffff,
                level: 2,
                size: 2 << 20,
                entries: used,
            }),
            Entry::PdpteBig => Ok(Leaf {
                base: e & frame_mask & !0x3fff_ffff,
                level: 3,
                size: 1 << 30,
                entries: used,
            }),
            _ => self.descend(e & frame_mask, level - 1, used),
        }
    }
}

/// The reference walker.
fn model(mmu: &Mmu, mem: &mut Mem, addr: u64, a: Access) -> Outcome {
    let m = match mmu.maxphyaddr {
        0..=32 => 32,
        52.. => 52,
        x => u32::from(x),
    };
    let addr = if matches!(mmu.mode, Paging::Bits32 | Paging::Pae) {
        addr as u32 as u64
    } else {
        addr
    };
    let user = a.privilege == Privilege::User;
    let error = |p: bool, rsvd: bool| {
        let mut code = 0;
        if p {
            code += 1;
        }
        if a.kind == Kind::Write {
            code += 2;
        }
        if user {
            code += 4;
        }
        if rsvd {
            code += 8;
        }
        if a.kind == Kind::Fetch && (mmu.smep || (mmu.nxe && mmu.mode != Paging::Bits32)) {
            code += 16;
        }
        Outcome::Fault(code, addr)
    };
    let mdl = Model { mmu, mem, addr, m };
    let res = match mmu.mode {
        Paging::Bits32 => mdl.descend(mmu.cr3 & 0xffff_f000, 2, vec![]),
        Paging::Level4 => mdl.descend(mmu.cr3 & ((1 << m) - 1) & !0xfff, 4, vec![]),
        Paging::Level5 => mdl.descend(mmu.cr3 & ((1 << m) - 1) & !0xfff, 5, vec![]),
        Paging::Pae => {
            let pdpte = mmu.pdptes[(addr >> 30) as usize];
            if pdpte & 1 == 0 {
                Err(Stop::NotPresent)
            } else if (0..64)
                .any(|b| (pdpte >> b) & 1 == 1 && reserved_bit(mmu, m, Entry::PaePdpte, b))
            {
                Err(Stop::Reserved)
            } else {
                mdl.descend(pdpte & ((1 << m) - 1) & !0xfff, 2, vec![])
            }
        }
    };
    let leaf = match res {
        Ok(leaf) => leaf,
        Err(Stop::NotPresent) => return error(false, false),
        Err(Stop::Reserved) => return error(true, true),
        Err(Stop::Unbacked(gpa)) => return Outcome::Unbacked(gpa),
    };
    let all = |bit: u32| leaf.entries.iter().all(|e| (e.3 >> bit) & 1 == 1);
    let w = all(1);
    let u = all(2);
    let x = mmu.mode == Paging::Bits32 || !leaf.entries.iter().any(|e| e.3 >> 63 == 1);
    let smap_applies = mmu.smap && !(a.privilege == Privilege::Supervisor && mmu.ac);
    let ok = match (user, a.kind) {
        (true, Kind::Read) => u,
        (true, Kind::Write) => u && w,
        (true, Kind::Fetch) => u && x,
        (false, Kind::Fetch) => x && !(mmu.smep && u),
        (false, Kind::Read) => !(u && smap_applies),
        (false, Kind::Write) => !(u && smap_applies) && (w || !mmu.wp),
    };
    if !ok {
        return error(true, false);
    }
    let n = leaf.entries.len();
    let mut visited = vec![];
    for (i, &(gfn, level, gpa, _)) in leaf.entries.iter().enumerate() {
        let size8 = mmu.mode != Paging::Bits32;
        let mut e = mem.get(gpa, size8).unwrap();
        e |= 1 << 5;
        if i == n - 1 && a.kind == Kind::Write {
            e |= 1 << 6;
        }
        mem.put(gpa, size8, e);
        visited.push((gfn, level, gpa, e));
    }
    Outcome::Done {
        gpa: leaf.base + (addr % leaf.size),
        level: leaf.level,
        page_size: leaf.size,
        rights: (w, u, x),
        dirty: visited.last().unwrap().3 & (1 << 6) != 0,
        visited,
    }
}

// ---------------------------------------------------------------------------
// The differential test.

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }
}

/// A random entry for `level`: mostly pointing into the test memory, with
/// random flags and, one time in `noise`, a stray high bit.
fn random_entry(r: &mut Rng, wide: bool, m: u32, level: u8, noise: u64) -> u64 {
    // Upper levels mostly point at tables, lower ones may map anything.
    let tables = if level >= 3 { 14 } else { 10 };
    let mut e = match r.below(16) {
        x if x < tables => r.below(NPAGES + 1) << 12,
        14 => r.next() & ((1 << m) - 1) & !0xfff,
        15 => r.below(1 << 10) << 30 | r.below(2) << 12,
        _ => r.below(1 << 12) << 21 | r.below(2) << 12,
    };
    e |= r.below(0x1000) & !(PTE_P | PTE_RW | PTE_US | PTE_PS);
    if !r.one_in(8) {
        e |= PTE_P;
    }
    if !r.one_in(4) {
        e |= PTE_RW;
    }
    if !r.one_in(4) {
        e |= PTE_US;
    }
    if r.one_in(if level >= 4 { 16 } else { 3 }) {
        e |= PTE_PS;
    }
    if r.one_in(noise) {
        e |= 1 << (12 + r.below(52));
    }
    if wide {
        if r.one_in(4) {
            e |= PTE_XD;
        }
        if r.one_in(16) {
            e |= r.below(1 << 11) << 52;
        }
        e
    } else {
        if r.one_in(4) {
            e |= r.below(0x200) << 13;
        }
        e & 0xffff_ffff
    }
}

#[test]
fn walker_matches_the_model() {
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    let mut stats = std::collections::BTreeMap::<String, u32>::new();
    const CASES: u32 = 150_000;
    for case in 0..CASES {
        let mode =
            [Paging::Bits32, Paging::Pae, Paging::Level4, Paging::Level5][r.below(4) as usize];
        let maxphyaddr = [36u8, 39, 40, 46, 52, 0, 64][r.below(7) as usize];
        let m = u32::from(maxphyaddr).clamp(32, 52);
        let wide = mode != Paging::Bits32;
        let mut mmu = Mmu {
            mode,
            cr3: r.below(NPAGES) << 12 | r.below(0x1000),
            pdptes: [0; 4],
            wp: r.one_in(2),
            pse: !r.one_in(4),
            smep: r.one_in(3),
            smap: r.one_in(3),
            nxe: !r.one_in(4),
            gbpages: !r.one_in(4),
            maxphyaddr,
            ac: r.one_in(2),
        };
        for p in &mut mmu.pdptes {
            *p = r.below(NPAGES + 1) << 12 | r.below(0x1000) & (PTE_P | 0x18 | 0xe00);
            if !r.one_in(8) {
                *p |= PTE_P;
            }
            if r.one_in(8) {
                *p |=
                    1 << [1, 2, 5, 6, 7, 8, m.min(63), 63, r.below(64) as u32][r.below(9) as usize];
            }
        }
        let kind = [Kind::Read, Kind::Write, Kind::Fetch][r.below(3) as usize];
        let privilege =
            [Privilege::User, Privilege::Supervisor, Privilege::Implicit][r.below(3) as usize];
        let access = Access { kind, privilege };
        let addr = r.next();
        let noise = [8, 64, 1 << 20][r.below(3) as usize];

        // Random entries where this walk looks, in every page (so tables
        // alias freely), and beside them.
        let mut mem = Mem::new();
        let levels: &[u8] = match mode {
            Paging::Bits32 | Paging::Pae => &[2, 1],
            Paging::Level4 => &[4, 3, 2, 1],
            Paging::Level5 => &[5, 4, 3, 2, 1],
        };
        for page in 0..NPAGES {
            for &level in levels {
                let (idx, size) = if wide {
                    (idx64(addr, level), 8)
                } else {
                    (idx32(addr, level), 4)
                };
                for i in [idx, idx ^ 1] {
                    let e = random_entry(&mut r, wide, m, level, noise);
                    mem.put(page * 4096 + i * size, wide, e);
                }
            }
        }

        let mut ref_mem = mem.clone();
        let got = outcome(walk(&mmu, &mut mem, addr, access));
        let want = model(&mmu, &mut ref_mem, addr, access);
        assert_eq!(got, want, "case {case}: {mmu:x?} addr {addr:#x} {access:?}");
        assert!(
            mem == ref_mem,
            "case {case}: memory differs: {mmu:x?} addr {addr:#x} {access:?}"
        );

        let key = match &got {
            Outcome::Done { level, dirty, .. } => {
                format!("{mode:?} ok level {level} dirty {dirty}")
            }
            Outcome::Fault(code, _) if code & PF_RSVD != 0 => format!("{mode:?} rsvd"),
            Outcome::Fault(code, _) if code & PF_PRESENT != 0 => format!("{mode:?} protection"),
            Outcome::Fault(..) => format!("{mode:?} not present"),
            Outcome::Unbacked(_) => format!("{mode:?} unbacked"),
            Outcome::Retry => format!("{mode:?} retry"),
        };
        *stats.entry(key).or_default() += 1;
    }
    // Every outcome of every mode was exercised.
    for mode in ["Bits32", "Pae", "Level4", "Level5"] {
        for what in [
            "rsvd",
            "protection",
            "not present",
            "unbacked",
            "ok level 1 dirty true",
            "ok level 1 dirty false",
            "ok level 2 dirty true",
        ] {
            let n = stats.get(&format!("{mode} {what}")).copied().unwrap_or(0);
            assert!(n >= 50, "{mode} {what}: only {n} cases\n{stats:#?}");
        }
    }
    for mode in ["Level4", "Level5"] {
        let n = stats
            .get(&format!("{mode} ok level 3 dirty true"))
            .copied()
            .unwrap_or(0);
        assert!(n >= 50, "{mode} 1 GiB: only {n} cases\n{stats:#?}");
    }
    assert!(!stats.keys().any(|k| k.ends_with("retry")));
}
