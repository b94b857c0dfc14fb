// SPDX-License-Identifier: GPL-2.0

//! The shadow MMU: page tables that translate a paged guest's linear
//! addresses straight to host pages, kept in sync with the guest's own
//! tables by write-protecting them.
//!
//! The design follows KVM's shadow MMU (`arch/x86/kvm/mmu/mmu.c`,
//! `paging_tmpl.h`, `Documentation/virt/kvm/x86/mmu.rst`); the code is
//! rkvm's own. In short (details in `Documentation/rkvm/mmu.rst`):
//!
//! * A *shadow page* ([`Sp`]) is one hardware table. It shadows one guest
//!   table (indirect) or a range of guest-physical memory behind a guest
//!   large page (direct), and is identified by `(gfn, role)`: the role holds
//!   everything that makes two shadows of one guest table differ (level,
//!   the rights of the guest entries above it, the quadrant of a 32-bit
//!   guest table, CR0.WP, EFER.NXE, CR4.SMEP/SMAP/PSE, the paging mode).
//!   Shadow pages live in an arena, are found through a hash on gfn, and are
//!   shared by every vCPU of the VM.
//! * Each shadow page knows its parents (the shadow entries pointing to it,
//!   a [`PteList`]); each guest frame knows the shadow leaves mapping it
//!   (the rmap, one [`PteList`] per frame of a memory slot).
//! * A guest frame that holds a shadowed guest table is *protected*: no
//!   shadow leaf maps it writable. A guest write to it faults, and is
//!   emulated: the write is done, and the shadow entries it affects are
//!   zapped (they are rebuilt from the new guest entry on the next fault).
//!   So no shadow ever holds a translation the guest has removed or
//!   changed, INVLPG needs no work, and shadow pages survive CR3 loads.
//! * Roots: the hardware CR3 points to a root shadow page. Paged 32-bit and
//!   PAE guests run on PAE shadows whose root is a special page holding
//!   four PDPTEs (role `PAE_ROOT`, below 4 GiB); long-mode guests on 4-level
//!   shadows. Each vCPU keeps its current root and three previous ones
//!   ([`Roots`]), each holding a reference (`root_count`) on its page.
//! * The VM's generation: invalidating everything bumps it; shadow pages of
//!   older generations are obsolete, never found again, and zapped in
//!   batches (see [`Shadow::zap_obsolete`]).
//!
//! # Locking
//!
//! All of this state is behind the VM's `mmu` spinlock (KVM's `mmu_lock`).
//! Nothing sleeps under it: table pages and rmap descriptors come from
//! caches filled before it is taken ([`topup`]), arena growth happens
//! outside it ([`resize`]). It is never taken with interrupts disabled (so
//! never inside a VMX window): a holder may wait for vCPUs to leave their
//! windows (the remote TLB flush), and a vCPU in a window runs with
//! interrupts off until it leaves.

use core::{
    mem::MaybeUninit,
    ptr::NonNull, //
};

use kernel::{
    prelude::*,
    sync::SpinLock, //
};

use super::{
    ept::{
        self,
        Ept, //
    },
    pte_list::{
        Desc,
        DescAlloc,
        PteList, //
    },
    stats::{
        MmuStats,
        RMAP_HIST_BUCKETS, //
    },
    // Shadow entries have the hardware's PAE/4-level format: the walker's
    // entry bits serve both.
    walk::{
        Rights,
        Translation,
        PTE_A,
        PTE_P as P,
        PTE_RW as RW,
        PTE_US as US,
        PTE_XD as XD, //
    },
};
use crate::shim;

/// Physical-address bits of a shadow entry.
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
/// No index.
const NIL: u32 = u32::MAX;
/// Hash buckets (a power of two).
const HASH_BUCKETS: usize = 1024;
/// The smallest page budget (KVM's `KVM_MIN_ALLOC_MMU_PAGES`).
pub(crate) const MIN_PAGES: usize = 64;
/// Table pages one fault may take from the cache: a child per level below
/// the root, one more for a leaf page's gfn array.
const PAGE_RESERVE: usize = 6;
/// Rmap descriptors one fault may take: one parent link per new child and
/// one leaf.
const DESC_RESERVE: usize = 6;
/// Arena slots beyond the budget: roots held by vCPUs (4 each, never
/// reclaimed) and one fault's worth.
const ARENA_SLACK: usize = 4 * crate::abi::MAX_VCPUS as usize + PAGE_RESERVE;

/// What makes two shadows of one guest table differ. Bits:
/// level (2:0), direct (3), access W/U/X of the guest entries above
/// (6:4), quadrant of a 32-bit guest table (8:7), 4-byte guest entries (9),
/// CR0.WP (10), EFER.NXE (11), CR4.SMEP (12), CR4.SMAP (13), CR4.PSE (14),
/// PAE root (15), PDPT offset of a PAE guest's CR3 (22:16), long mode (23).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Role(u32);

impl Role {
    const LEVEL: u32 = 0x7;
    const DIRECT: u32 = 1 << 3;
    const ACC_SHIFT: u32 = 4;
    const QUAD_SHIFT: u32 = 7;
    const GPTE4: u32 = 1 << 9;
    const WP: u32 = 1 << 10;
    const NXE: u32 = 1 << 11;
    const SMEP: u32 = 1 << 12;
    const SMAP: u32 = 1 << 13;
    const PSE: u32 = 1 << 14;
    const PAE_ROOT: u32 = 1 << 15;
    const PDPT_SHIFT: u32 = 16;
    const LONG: u32 = 1 << 23;
    /// The bits every shadow page of one paging mode shares.
    const BASE: u32 =
        Self::GPTE4 | Self::WP | Self::NXE | Self::SMEP | Self::SMAP | Self::PSE | Self::LONG;

    fn level(self) -> u8 {
        (self.0 & Self::LEVEL) as u8
    }

    fn direct(self) -> bool {
        self.0 & Self::DIRECT != 0
    }

    fn gpte4(self) -> bool {
        self.0 & Self::GPTE4 != 0
    }

    fn pae_root(self) -> bool {
        self.0 & Self::PAE_ROOT != 0
    }

    fn quadrant(self) -> u64 {
        u64::from((self.0 >> Self::QUAD_SHIFT) & 3)
    }

    fn pdpt_offset(self) -> u64 {
        u64::from((self.0 >> Self::PDPT_SHIFT) & 0x7f) * 32
    }

    /// A child of this mode: `level`, access `acc`, `quadrant`.
    fn child(self, level: u8, direct: bool, acc: u8, quadrant: u64) -> Self {
        let mut r = (self.0 & Self::BASE)
            | u32::from(level)
            | (u32::from(acc & 7) << Self::ACC_SHIFT)
            | ((quadrant as u32 & 3) << Self::QUAD_SHIFT);
        if direct {
            r |= Self::DIRECT;
        }
        Self(r)
    }

    /// Whether shadow pages of this role follow the guest table at their gfn
    /// (which must then be write-protected). A 32-bit guest's PAE root does
    /// not: its four entries depend on CR3 alone.
    fn tracks(self) -> bool {
        !(self.direct() || (self.pae_root() && self.gpte4()))
    }
}

/// The paging state of a vCPU that shadow pages depend on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Mode {
    /// 2-level 32-bit paging.
    pub(crate) bits32: bool,
    /// 4-level long-mode paging.
    pub(crate) long: bool,
    /// CR0.WP.
    pub(crate) wp: bool,
    /// EFER.NXE.
    pub(crate) nxe: bool,
    /// CR4.SMEP.
    pub(crate) smep: bool,
    /// CR4.SMAP.
    pub(crate) smap: bool,
    /// CR4.PSE.
    pub(crate) pse: bool,
}

impl Mode {
    fn base(self) -> u32 {
        let mut r = 0;
        for (on, bit) in [
            (self.bits32, Role::GPTE4),
            (self.long, Role::LONG),
            (self.wp, Role::WP),
            (self.nxe, Role::NXE),
            (self.smep, Role::SMEP),
            (self.smap, Role::SMAP),
            (self.pse && self.bits32, Role::PSE),
        ] {
            if on {
                r |= bit;
            }
        }
        r
    }

    /// The root for guest CR3 `cr3`.
    pub(crate) fn root_key(self, cr3: u64) -> RootKey {
        let base = self.base();
        if self.long {
            RootKey {
                cr3: cr3 & ADDR_MASK,
                role: Role(base | 4),
            }
        } else if self.bits32 {
            RootKey {
                cr3: cr3 & 0xffff_f000,
                role: Role(base | 3 | Role::PAE_ROOT),
            }
        } else {
            let cr3 = cr3 & 0xffff_ffe0;
            RootKey {
                cr3,
                role: Role(
                    base | 3 | Role::PAE_ROOT | (((cr3 & 0xfe0) >> 5) as u32) << Role::PDPT_SHIFT,
                ),
            }
        }
    }
}

/// Identifies a root: the guest's CR3 (the bits that select the table) and
/// the root's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RootKey {
    cr3: u64,
    role: Role,
}

/// A root a vCPU holds a reference on.
#[derive(Clone, Copy)]
struct RootRef {
    sp: u32,
    key: RootKey,
    hpa: u64,
}

/// A vCPU's roots: the current one and up to three previous ones (KVM's
/// `prev_roots`), each holding a `root_count` reference.
///
/// # Invariants
///
/// Each entry names a used arena slot whose `root_count` it accounts for.
/// When `epoch` equals the VM's roots epoch, no root named here has been
/// invalidated or become obsolete since it was checked.
pub(crate) struct Roots {
    cur: Option<RootRef>,
    prev: [Option<RootRef>; 3],
    epoch: u64,
}

impl Roots {
    /// No roots.
    pub(crate) const fn new() -> Self {
        Self {
            cur: None,
            prev: [None; 3],
            epoch: u64::MAX,
        }
    }

    /// The epoch the roots were checked in.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The hardware CR3 of the current root.
    pub(crate) fn hpa(&self) -> Option<u64> {
        self.cur.map(|r| r.hpa)
    }

    /// Makes the root for `key` current if it is the current one or a
    /// cached previous one, without locking: valid only while the epoch is
    /// current (the caller checks). Returns its hardware CR3.
    pub(crate) fn switch(&mut self, key: RootKey) -> Option<u64> {
        if let Some(c) = self.cur {
            if c.key == key {
                return Some(c.hpa);
            }
        }
        let i = self
            .prev
            .iter()
            .position(|p| p.is_some_and(|p| p.key == key))?;
        let hit = self.prev[i].take()?;
        // Most recent first: shift the others down, the old current in front.
        let mut carry = self.cur.take();
        for slot in self.prev.iter_mut().take(i + 1) {
            core::mem::swap(slot, &mut carry);
        }
        self.cur = Some(hit);
        Some(hit.hpa)
    }
}

/// One hardware table page from [`shim::table_alloc`], freed on drop.
struct Table(NonNull<[u64; 512]>);

// SAFETY: the page is owned memory, not tied to a thread.
unsafe impl Send for Table {}

impl Table {
    fn new() -> Option<Self> {
        shim::table_alloc().map(Self)
    }

    fn phys(&self) -> u64 {
        shim::virt_to_phys(self.0.as_ptr())
    }

    /// The address of entry `i` (`i < 512`).
    fn entry(&self, i: usize) -> *mut u64 {
        // In bounds for `i < 512`; callers mask their indices.
        self.0.as_ptr().cast::<u64>().wrapping_add(i & 511)
    }

    fn get(&self, i: usize) -> u64 {
        // SAFETY: the entry is inside the live page this value owns; the
        // hardware may set no bit of it we read (accessed/dirty are
        // ignored), so a plain read is enough.
        unsafe { self.entry(i).read_volatile() }
    }

    fn set(&self, i: usize, v: u64) {
        // SAFETY: as in `get`; writes happen under the MMU lock.
        unsafe { self.entry(i).write_volatile(v) }
    }

    /// Gives the page up (to the EPT map, which frees it itself).
    fn into_raw(self) -> NonNull<[u64; 512]> {
        core::mem::ManuallyDrop::new(self).0
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        // SAFETY: the page came from `table_alloc` and is owned by `self`.
        unsafe { shim::table_free(self.0) };
    }
}

/// Rmap descriptors from a cache filled outside the lock; freed to the heap
/// (which never sleeps).
pub(crate) struct DescCache {
    free: KVec<NonNull<Desc>>,
}

// SAFETY: `alloc` hands out heap allocations sized and aligned for a `Desc`
// that nobody else owns (each was pushed once, from `KBox::into_raw`);
// `free` takes any such allocation back whatever value it is called on.
unsafe impl DescAlloc for DescCache {
    fn alloc(&mut self) -> Option<NonNull<Desc>> {
        self.free.pop()
    }

    unsafe fn free(&mut self, d: NonNull<Desc>) {
        // SAFETY: `d` came from `KBox::into_raw` of a
        // `KBox<MaybeUninit<Desc>>` (see `topup`); unused from now on.
        drop(unsafe { KBox::from_raw(d.as_ptr().cast::<MaybeUninit<Desc>>()) });
    }
}

impl Drop for DescCache {
    fn drop(&mut self) {
        while let Some(d) = self.free.pop() {
            // SAFETY: a cached descriptor is owned by the cache.
            unsafe { self.free(d) };
        }
    }
}

type List = PteList<DescCache>;

/// A shadow page.
struct Sp {
    gfn: u64,
    role: Role,
    table: Table,
    /// For an indirect leaf page: the gfn each present entry maps.
    gfns: Option<Table>,
    /// The shadow entries pointing to this page.
    parents: List,
    /// The generation it was created in.
    gen: u64,
    /// vCPUs holding it as a root.
    root_count: u32,
    /// Zapped while a root: out of the hash, empty, freed at the last
    /// `root_count` release.
    invalid: bool,
    hash_next: u32,
    /// Creation order (the reclaim order): `newer`/`older` links.
    newer: u32,
    older: u32,
}

enum Slot {
    Used(Sp),
    Free(u32),
}

/// The rmap of one memory slot: per frame, the shadow leaves mapping it
/// and (at most one) EPT leaf mapping it; and the slot's dirty bitmap
/// (used while it logs dirty pages).
struct SlotRmap {
    base_gfn: u64,
    lists: KVVec<List>,
    ept: KVVec<List>,
    dirty: KVVec<u64>,
}

/// A slot rmap taken out of the shadow MMU, to be freed after the lock is
/// dropped (its arrays may come from vmalloc, whose free may sleep).
pub(crate) struct RetiredRmap(#[allow(dead_code)] SlotRmap);

/// Why a fault did not install its mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fail {
    /// Try again (caches ran dry, the guest tables changed, the root went
    /// away): re-enter the guest and let it fault again.
    Retry,
    /// The arena is full of pages that cannot be reclaimed.
    NoSpace,
}

/// What an operation under the lock did that others must hear of.
#[derive(Clone, Copy, Default)]
pub(crate) struct Changes {
    /// Shadow entries were removed or lost rights: other vCPUs must leave
    /// their windows (their TLBs may hold them).
    pub(crate) flush: bool,
    /// A root in use was invalidated or became obsolete: vCPUs must
    /// reload their roots (the roots epoch moves).
    pub(crate) roots: bool,
}

impl Changes {
    /// Adds what `o` requires.
    pub(crate) fn merge(&mut self, o: Changes) {
        self.flush |= o.flush;
        self.roots |= o.roots;
    }
}

/// One shadow fault, prepared outside the lock.
pub(crate) struct Fault<'a> {
    /// The faulting linear address.
    pub(crate) la: u64,
    /// The guest walk.
    pub(crate) t: &'a Translation,
    /// The host page of the guest frame.
    pub(crate) pfn: u64,
    /// Host addresses of the guest tables the walk read, in walk order,
    /// to check under the lock that they did not change.
    pub(crate) tables: &'a [*const u8],
    /// A supervisor write under CR0.WP=0 to a read-only page: map it
    /// writable but supervisor-only (KVM's rule).
    pub(crate) wp0_write: bool,
    /// The host page may be written (a read-only slot's may not).
    pub(crate) host_writable: bool,
    /// The slot logs dirty pages: the leaf is writable only for a write
    /// access, which marks the frame dirty.
    pub(crate) log_dirty: bool,
    /// The access is a write.
    pub(crate) write: bool,
    /// The invalidation sequence read before `pfn` and `tables` were
    /// looked up (see [`Shadow::inval_seq`]).
    pub(crate) seq: u64,
}

/// The outcome of an installed fault.
pub(crate) struct Installed {
    /// The frame is a protected guest table: the leaf is read-only.
    pub(crate) protected: bool,
}

/// The shadow MMU of one VM. See the module documentation.
///
/// # Invariants
///
/// * `slots` holds `used` `Slot::Used` entries; the free slots form a list
///   from `free`. Every used slot not `invalid` is in exactly one hash chain
///   (by gfn) and in the creation list (`newest`..`oldest`); invalid ones are
///   in neither and have `root_count > 0` and no entries.
/// * The page of a used slot has owner tag `index + 1`.
/// * A present entry of a page of level > 1 points to the page of a used,
///   non-invalid slot and is in that slot's `parents`; a present entry of a
///   level-1 page maps a host page pinned by the VM's EPT map, and is in the
///   rmap list of the gfn it maps (`gfns`, or `gfn + index` when direct).
/// * No present leaf is writable while a tracking (see [`Role::tracks`]),
///   current-generation page of its gfn exists.
pub(crate) struct Shadow {
    slots: KVVec<Slot>,
    free: u32,
    used: usize,
    buckets: KVec<u32>,
    newest: u32,
    oldest: u32,
    gen: u64,
    budget: usize,
    user_budget: bool,
    pages: KVec<Table>,
    descs: DescCache,
    rmaps: KVec<SlotRmap>,
    stats: MmuStats,
    /// The EPT identity map (unpaged guests, and the owner of every pin
    /// the shadow leaves map).
    ept: Ept,
    /// Host invalidations (mmu_notifier) under way: no mapping may be
    /// installed while one runs (KVM's `mmu_invalidate_in_progress`).
    inval_in_progress: u32,
    /// Moves at the end of every host invalidation: a mapping prepared
    /// outside the lock from an older value may be stale (KVM's
    /// `mmu_invalidate_seq`).
    inval_seq: u64,
}

// SAFETY: the raw pointers inside (descriptors, table pages) are owned
// memory reached only through this value, which the spinlock serializes.
unsafe impl Send for Shadow {}

/// The list of `gfn` in the slot rmap that holds it.
fn rmap_of(rmaps: &mut KVec<SlotRmap>, gfn: u64) -> Option<&mut List> {
    rmaps.iter_mut().find_map(|r| {
        gfn.checked_sub(r.base_gfn)
            .and_then(|off| r.lists.get_mut(usize::try_from(off).ok()?))
    })
}

/// The slot rmap holding `gfn`, and `gfn`'s index in it.
fn slot_rmap_of(rmaps: &mut KVec<SlotRmap>, gfn: u64) -> Option<(&mut SlotRmap, usize)> {
    rmaps.iter_mut().find_map(|r| {
        let off = usize::try_from(gfn.checked_sub(r.base_gfn)?).ok()?;
        (off < r.lists.len()).then_some((r, off))
    })
}

/// The EPT list of `gfn` in the slot rmap that holds it.
fn ept_rmap_of(rmaps: &mut KVec<SlotRmap>, gfn: u64) -> Option<&mut List> {
    rmaps.iter_mut().find_map(|r| {
        gfn.checked_sub(r.base_gfn)
            .and_then(|off| r.ept.get_mut(usize::try_from(off).ok()?))
    })
}

fn hash(gfn: u64) -> usize {
    ((gfn ^ (gfn >> 10) ^ (gfn >> 20)) as usize) & (HASH_BUCKETS - 1)
}

/// The W/U/X rights of guest entries as role access bits.
fn acc_of(r: Rights) -> u8 {
    u8::from(r.write) | u8::from(r.user) << 1 | u8::from(r.exec) << 2
}

const ACC_ALL: u8 = 7;

impl Shadow {
    /// An empty shadow MMU with the minimum budget.
    pub(crate) fn new() -> Result<Self> {
        let mut buckets = KVec::with_capacity(HASH_BUCKETS, GFP_KERNEL_ACCOUNT)?;
        for _ in 0..HASH_BUCKETS {
            buckets.push(NIL, GFP_KERNEL_ACCOUNT)?;
        }
        Ok(Self {
            slots: KVVec::with_capacity(MIN_PAGES + ARENA_SLACK, GFP_KERNEL_ACCOUNT)?,
            free: NIL,
            used: 0,
            buckets,
            newest: NIL,
            oldest: NIL,
            gen: 0,
            budget: MIN_PAGES,
            user_budget: false,
            pages: KVec::with_capacity(2 * PAGE_RESERVE, GFP_KERNEL_ACCOUNT)?,
            descs: DescCache {
                free: KVec::with_capacity(2 * DESC_RESERVE, GFP_KERNEL_ACCOUNT)?,
            },
            rmaps: KVec::new(),
            stats: MmuStats::default(),
            ept: Ept::new()?,
            inval_in_progress: 0,
            inval_seq: 0,
        })
    }

    fn sp(&self, i: u32) -> Option<&Sp> {
        match self.slots.get(i as usize) {
            Some(Slot::Used(sp)) => Some(sp),
            _ => None,
        }
    }

    fn sp_mut(&mut self, i: u32) -> Option<&mut Sp> {
        match self.slots.get_mut(i as usize) {
            Some(Slot::Used(sp)) => Some(sp),
            _ => None,
        }
    }

    /// The slot owning the table page at physical address `pa`.
    fn owner(pa: u64) -> u32 {
        let va = shim::phys_to_virt(pa & ADDR_MASK).cast::<[u64; 512]>();
        // SAFETY: a present non-leaf shadow entry points to a live table
        // page (invariant).
        (unsafe { shim::table_owner(va) } as u32).wrapping_sub(1)
    }

    fn usable(&self, sp: &Sp) -> bool {
        !sp.invalid && sp.gen == self.gen
    }

    /// The current-generation page for `(gfn, role)`.
    fn find(&mut self, gfn: u64, role: Role) -> Option<u32> {
        let mut i = self.bucket_head(gfn);
        let mut chain = 0u64;
        let mut found = None;
        while let Some(sp) = self.sp(i) {
            chain += 1;
            if sp.gfn == gfn && sp.role == role && self.usable(sp) {
                found = Some(i);
                break;
            }
            i = sp.hash_next;
        }
        self.stats.max_mmu_page_hash_collisions =
            self.stats.max_mmu_page_hash_collisions.max(chain);
        found
    }

    /// Whether a tracking current-generation page shadows `gfn`.
    fn protected(&self, gfn: u64) -> bool {
        self.next_tracking(gfn, self.bucket_head(gfn)).is_some()
    }

    /// The first slot of `gfn`'s hash chain.
    fn bucket_head(&self, gfn: u64) -> u32 {
        self.buckets.get(hash(gfn)).copied().unwrap_or(NIL)
    }

    /// From slot `i` on along its hash chain, the first tracking,
    /// current-generation page that shadows `gfn`.
    fn next_tracking(&self, gfn: u64, mut i: u32) -> Option<u32> {
        while let Some(sp) = self.sp(i) {
            if sp.gfn == gfn && sp.role.tracks() && self.usable(sp) {
                return Some(i);
            }
            i = sp.hash_next;
        }
        None
    }

    /// The rmap list of `gfn`.
    fn rmap(&mut self, gfn: u64) -> Option<&mut List> {
        rmap_of(&mut self.rmaps, gfn)
    }

    /// Removes every writable leaf mapping of `gfn`'s rights to write.
    fn write_protect(&mut self, gfn: u64) -> bool {
        let Some(list) = self.rmap(gfn) else {
            return false;
        };
        let mut changed = false;
        for h in list.iter() {
            let e = h as *mut u64;
            // SAFETY: rmap handles are addresses of present leaves in live
            // table pages (invariant).
            unsafe {
                let v = e.read_volatile();
                if v & RW != 0 {
                    e.write_volatile(v & !RW);
                    changed = true;
                }
            }
        }
        changed
    }

    /// A new page for `(gfn, role)`, write-protecting `gfn` if it tracks.
    fn alloc(&mut self, gfn: u64, role: Role, ch: &mut Changes) -> Result<u32, Fail> {
        let need = if role.level() == 1 && !role.direct() {
            2
        } else {
            1
        };
        if self.pages.len() < need {
            return Err(Fail::Retry);
        }
        let i = if self.free != NIL {
            self.free
        } else if self.slots.len() < self.slots.capacity() {
            self.slots.len() as u32
        } else {
            return Err(Fail::NoSpace);
        };
        let table = self.pages.pop().ok_or(Fail::Retry)?;
        let gfns = if need == 2 { self.pages.pop() } else { None };
        // SAFETY: the page is owned by `table`.
        unsafe { shim::table_set_owner(table.0.as_ptr(), u64::from(i) + 1) };
        let b = hash(gfn);
        let sp = Sp {
            gfn,
            role,
            table,
            gfns,
            parents: List::new(),
            gen: self.gen,
            root_count: 0,
            invalid: false,
            hash_next: self.buckets.get(b).copied().unwrap_or(NIL),
            newer: NIL,
            older: self.newest,
        };
        if i == self.free {
            if let Some(Slot::Free(next)) = self.slots.get(i as usize) {
                self.free = *next;
            }
            if let Some(s) = self.slots.get_mut(i as usize) {
                *s = Slot::Used(sp);
            }
        } else if self.slots.push_within_capacity(Slot::Used(sp)).is_err() {
            return Err(Fail::NoSpace);
        }
        if let Some(h) = self.buckets.get_mut(b) {
            *h = i;
        }
        let old_newest = self.newest;
        if let Some(n) = self.sp_mut(old_newest) {
            n.newer = i;
        }
        self.newest = i;
        if self.oldest == NIL {
            self.oldest = i;
        }
        self.used += 1;
        self.stats.mmu_cache_miss += 1;
        if role.tracks() && self.write_protect(gfn) {
            ch.flush = true;
        }
        Ok(i)
    }

    /// Takes `i` out of its hash chain and the creation list.
    fn unlink(&mut self, i: u32) {
        let Some(sp) = self.sp(i) else {
            return;
        };
        let (gfn, next, newer, older) = (sp.gfn, sp.hash_next, sp.newer, sp.older);
        let b = hash(gfn);
        let mut cur = self.buckets.get(b).copied().unwrap_or(NIL);
        if cur == i {
            if let Some(h) = self.buckets.get_mut(b) {
                *h = next;
            }
        } else {
            while let Some(sp) = self.sp(cur) {
                let n = sp.hash_next;
                if n == i {
                    if let Some(p) = self.sp_mut(cur) {
                        p.hash_next = next;
                    }
                    break;
                }
                cur = n;
            }
        }
        match self.sp_mut(newer) {
            Some(n) => n.older = older,
            None => self.newest = older,
        }
        match self.sp_mut(older) {
            Some(o) => o.newer = newer,
            None => self.oldest = newer,
        }
    }

    /// Returns slot `i` to the free list, freeing its pages.
    fn release_slot(&mut self, i: u32) {
        if let Some(s) = self.slots.get_mut(i as usize) {
            // Dropping the `Sp` frees its table pages; its lists are empty.
            *s = Slot::Free(self.free);
            self.free = i;
            self.used -= 1;
        }
    }

    /// The gfn a leaf entry `idx` of page `sp` maps.
    fn leaf_gfn(sp: &Sp, idx: usize) -> u64 {
        match &sp.gfns {
            Some(g) => g.get(idx),
            None => sp.gfn + idx as u64,
        }
    }

    /// Clears entry `idx` of page `i`, unlinking what it pointed to.
    fn zap_entry(&mut self, i: u32, idx: usize) -> bool {
        let Some(sp) = self.sp(i) else {
            return false;
        };
        let v = sp.table.get(idx);
        if v & P == 0 {
            return false;
        }
        let h = sp.table.entry(idx) as u64;
        sp.table.set(idx, 0);
        if sp.role.level() == 1 {
            let gfn = Self::leaf_gfn(sp, idx);
            let Self { rmaps, descs, .. } = self;
            if let Some(list) = rmap_of(rmaps, gfn) {
                list.remove(h, descs);
            }
            self.stats.pages_4k = self.stats.pages_4k.saturating_sub(1);
        } else {
            let child = Self::owner(v);
            let Self { slots, descs, .. } = self;
            if let Some(Slot::Used(c)) = slots.get_mut(child as usize) {
                c.parents.remove(h, descs);
            }
        }
        true
    }

    /// Zaps page `i`: clears its entries and every entry pointing to it,
    /// then frees it, or marks it invalid while it is somebody's root.
    fn zap(&mut self, i: u32) -> Changes {
        let mut ch = Changes::default();
        let Some(sp) = self.sp(i) else {
            return ch;
        };
        if sp.invalid {
            return ch;
        }
        let n = if sp.role.pae_root() { 4 } else { 512 };
        for idx in 0..n {
            ch.flush |= self.zap_entry(i, idx);
        }
        let Self { slots, descs, .. } = self;
        if let Some(Slot::Used(sp)) = slots.get_mut(i as usize) {
            sp.parents.drain(descs, |h| {
                // SAFETY: parents are addresses of present entries in live
                // table pages (invariant).
                unsafe { (h as *mut u64).write_volatile(0) };
                ch.flush = true;
            });
        }
        self.unlink(i);
        self.stats.mmu_shadow_zapped += 1;
        let Some(sp) = self.sp_mut(i) else {
            return ch;
        };
        if sp.root_count > 0 {
            sp.invalid = true;
            ch.roots = true;
        } else {
            self.release_slot(i);
        }
        ch
    }

    /// Zaps the oldest pages no vCPU holds as a root until `want` more fit
    /// in the budget.
    fn reclaim(&mut self, want: usize) -> Changes {
        let mut ch = Changes::default();
        let mut i = self.oldest;
        while self.used + want > self.budget {
            let Some(sp) = self.sp(i) else {
                break;
            };
            let newer = sp.newer;
            if sp.root_count == 0 {
                ch.merge(self.zap(i));
                self.stats.mmu_recycled += 1;
            }
            i = newer;
        }
        ch
    }

    /// Zaps every current page shadowing `gfn` (the guest table there is
    /// no longer followed: KVM's `kvm_mmu_unprotect_page()`).
    pub(crate) fn unprotect(&mut self, gfn: u64) -> Changes {
        let mut ch = Changes::default();
        // A zap unhashes the page, so each search starts again at the head.
        while let Some(i) = self.next_tracking(gfn, self.bucket_head(gfn)) {
            ch.merge(self.zap(i));
        }
        ch
    }

    /// A guest write of `len` bytes at `gpa` to a protected table (already
    /// done in guest memory): zaps the shadow entries built from the guest
    /// entries it touched.
    pub(crate) fn pte_write(&mut self, gpa: u64, len: u64) -> Changes {
        let mut ch = Changes::default();
        let gfn = gpa >> 12;
        let (first, last) = (gpa & 0xfff, (gpa & 0xfff) + len.max(1) - 1);
        self.stats.mmu_pte_write += 1;
        let last = last.min(4095);
        let mut cur = self.next_tracking(gfn, self.bucket_head(gfn));
        // Zapping entries leaves the page in its hash chain.
        while let Some((i, sp)) = cur.and_then(|i| Some((i, self.sp(i)?))) {
            let (role, next) = (sp.role, sp.hash_next);
            {
                if role.gpte4() {
                    let q = role.quadrant();
                    for gi in (first / 4)..=(last / 4) {
                        match role.level() {
                            1 if gi >> 9 == q => {
                                ch.flush |= self.zap_entry(i, (gi & 511) as usize);
                            }
                            2 if gi >> 8 == q => {
                                let s = ((gi & 255) * 2) as usize;
                                ch.flush |= self.zap_entry(i, s);
                                ch.flush |= self.zap_entry(i, s + 1);
                            }
                            _ => {}
                        }
                    }
                } else if role.pae_root() {
                    let base = role.pdpt_offset();
                    for gi in (first / 8)..=(last / 8) {
                        if let Some(rel) = (gi * 8).checked_sub(base).filter(|r| *r < 32) {
                            ch.flush |= self.zap_entry(i, (rel / 8) as usize);
                        }
                    }
                } else {
                    for gi in (first / 8)..=(last / 8) {
                        ch.flush |= self.zap_entry(i, gi as usize);
                    }
                }
            }
            cur = self.next_tracking(gfn, next);
        }
        ch
    }

    /// Links shadow entry `entry` to page `child`.
    fn link(&mut self, entry: *mut u64, child: u32, bits: u64) -> Result<(), Fail> {
        let Self { slots, descs, .. } = self;
        let Some(Slot::Used(c)) = slots.get_mut(child as usize) else {
            return Err(Fail::Retry);
        };
        c.parents
            .add(entry as u64, descs)
            .map_err(|_| Fail::Retry)?;
        // SAFETY: `entry` is an entry of a live table page (the caller's
        // page), written under the lock.
        unsafe { entry.write_volatile(c.table.phys() | bits) };
        Ok(())
    }

    /// Whether `(gfn, role)` is what page `i` is.
    fn is(&self, i: u32, gfn: u64, role: Role) -> bool {
        self.sp(i)
            .is_some_and(|sp| sp.gfn == gfn && sp.role == role && self.usable(sp))
    }

    /// Makes `key`'s root current in `roots`; returns its hardware CR3.
    pub(crate) fn load_root(
        &mut self,
        roots: &mut Roots,
        key: RootKey,
        epoch: u64,
        ch: &mut Changes,
    ) -> Result<u64, Fail> {
        // Drop cached roots that went away.
        for r in roots.prev.iter_mut() {
            if let Some(p) = *r {
                if !self.sp(p.sp).is_some_and(|sp| self.usable(sp)) {
                    *r = None;
                    self.put_root(p.sp);
                }
            }
        }
        if let Some(c) = roots.cur {
            if !self.sp(c.sp).is_some_and(|sp| self.usable(sp)) {
                roots.cur = None;
                self.put_root(c.sp);
            }
        }
        let hpa = match roots.switch(key) {
            Some(hpa) => hpa,
            None => {
                ch.merge(self.reclaim(1));
                let gfn = key.cr3 >> 12;
                let i = match self.find(gfn, key.role) {
                    Some(i) => i,
                    None => self.alloc(gfn, key.role, ch)?,
                };
                let sp = self.sp_mut(i).ok_or(Fail::Retry)?;
                sp.root_count += 1;
                let hpa = sp.table.phys();
                let new = RootRef { sp: i, key, hpa };
                let mut carry = roots.cur.take();
                for slot in roots.prev.iter_mut() {
                    core::mem::swap(slot, &mut carry);
                }
                if let Some(evicted) = carry {
                    self.put_root(evicted.sp);
                }
                roots.cur = Some(new);
                hpa
            }
        };
        roots.epoch = epoch;
        Ok(hpa)
    }

    /// Drops a root reference; an invalid page goes at the last one.
    fn put_root(&mut self, i: u32) {
        let Some(sp) = self.sp_mut(i) else {
            return;
        };
        sp.root_count = sp.root_count.saturating_sub(1);
        if sp.root_count == 0 && sp.invalid {
            self.release_slot(i);
        }
    }

    /// Installs the translation of a fault under `roots`' current root.
    pub(crate) fn fault(
        &mut self,
        roots: &Roots,
        mode: Mode,
        f: &Fault<'_>,
        ch: &mut Changes,
    ) -> Result<Installed, Fail> {
        self.stats.pf_taken += 1;
        if self.inval_in_progress != 0 || self.inval_seq != f.seq {
            return Err(Fail::Retry);
        }
        let root = roots.cur.ok_or(Fail::Retry)?;
        if !self.sp(root.sp).is_some_and(|sp| self.usable(sp)) {
            return Err(Fail::Retry);
        }
        ch.merge(self.reclaim(PAGE_RESERVE));
        let t = f.t;
        let tables = t.tables.as_slice();
        let la = f.la;
        let gfn = t.gpa >> 12;
        let root_role = root.key.role;
        let mut cur = root.sp;
        let mut level = root_role.level();
        while level > 1 {
            let c = level - 1;
            let idx = ((la >> (12 + 9 * u32::from(c))) & 511) as usize;
            // What the child shadows.
            let (cgfn, direct, acc, quad) = if mode.bits32 {
                if c == 2 {
                    (root.key.cr3 >> 12, false, ACC_ALL, (la >> 30) & 3)
                } else {
                    match tables.get(1) {
                        Some(pt) => {
                            let pde = tables.first().map_or(0, |v| v.pte);
                            let acc = u8::from(pde & RW != 0) | u8::from(pde & US != 0) << 1 | 4;
                            (pt.gfn, false, acc, (la >> 21) & 1)
                        }
                        None => ((t.gpa >> 12) & !511, true, acc_of(t.rights), 0),
                    }
                }
            } else {
                match tables.iter().position(|v| v.level == c) {
                    Some(p) => {
                        let mut r = Rights {
                            write: true,
                            user: true,
                            exec: true,
                        };
                        for v in tables.iter().take(p) {
                            r.write &= v.pte & RW != 0;
                            r.user &= v.pte & US != 0;
                            r.exec &= v.pte & XD == 0;
                        }
                        (tables.get(p).map_or(0, |v| v.gfn), false, acc_of(r), 0)
                    }
                    None => {
                        let span = (1u64 << (9 * u32::from(c))) - 1;
                        ((t.gpa >> 12) & !span, true, acc_of(t.rights), 0)
                    }
                }
            };
            let crole = root_role.child(c, direct, acc, quad);
            let sp = self.sp(cur).ok_or(Fail::Retry)?;
            let entry = sp.table.entry(idx);
            let v = sp.table.get(idx);
            let bits = if sp.role.pae_root() { P } else { P | RW | US };
            let next = if v & P != 0 && self.is(Self::owner(v), cgfn, crole) {
                Self::owner(v)
            } else {
                if v & P != 0 {
                    ch.flush |= self.zap_entry(cur, idx);
                }
                let child = match self.find(cgfn, crole) {
                    Some(i) => i,
                    None => self.alloc(cgfn, crole, ch)?,
                };
                self.link(entry, child, bits)?;
                child
            };
            cur = next;
            level = c;
        }
        // The guest entries may have changed before the pages above were
        // protected: check them now that they are.
        for (v, va) in tables.iter().zip(f.tables.iter()) {
            let now = if mode.bits32 {
                // SAFETY: `va` is the direct-map address of the entry in a
                // guest page pinned by the EPT map, which unpins only after
                // a generation change or a host invalidation (both checked
                // above, under this lock).
                u64::from(unsafe { va.cast::<u32>().read_volatile() })
            } else {
                // SAFETY: as above.
                unsafe { va.cast::<u64>().read_volatile() }
            };
            if now != v.pte {
                return Err(Fail::Retry);
            }
        }
        let idx = ((la >> 12) & 511) as usize;
        let protected = self.protected(gfn);
        let r = t.rights;
        let mut spte = (f.pfn << 12) & ADDR_MASK | P;
        if (r.write || f.wp0_write)
            && t.dirty
            && !protected
            && f.host_writable
            && (f.write || !f.log_dirty)
        {
            spte |= RW;
            if f.log_dirty {
                self.mark_dirty(gfn);
            }
        }
        if r.user && !f.wp0_write {
            spte |= US;
        }
        if mode.nxe && !r.exec {
            spte |= XD;
        }
        let sp = self.sp(cur).ok_or(Fail::Retry)?;
        let old = sp.table.get(idx);
        if old & P != 0 {
            if Self::leaf_gfn(sp, idx) == gfn && old & ADDR_MASK == spte & ADDR_MASK {
                if old & !spte & (RW | US) != 0 || spte & !old & XD != 0 {
                    ch.flush = true;
                }
                sp.table.set(idx, spte);
                self.stats.pf_fixed += 1;
                return Ok(Installed { protected });
            }
            ch.flush |= self.zap_entry(cur, idx);
        }
        let sp = self.sp(cur).ok_or(Fail::Retry)?;
        let entry = sp.table.entry(idx);
        if let Some(g) = &sp.gfns {
            g.set(idx, gfn);
        }
        let Self { rmaps, descs, .. } = self;
        let list = rmap_of(rmaps, gfn).ok_or(Fail::Retry)?;
        list.add(entry as u64, descs).map_err(|_| Fail::Retry)?;
        let len = list.len() as u64;
        // SAFETY: `entry` is entry `idx` of the live leaf page `cur`.
        unsafe { entry.write_volatile(spte) };
        self.stats.max_mmu_rmap_size = self.stats.max_mmu_rmap_size.max(len);
        self.stats.pages_4k += 1;
        self.stats.pf_fixed += 1;
        Ok(Installed { protected })
    }

    /// The EPT pointer of the VM's identity map (its root never changes).
    pub(crate) fn eptp(&self) -> u64 {
        self.ept.eptp()
    }

    /// The invalidation sequence a fault reads before looking its pages
    /// up outside the lock; see [`Fault::seq`].
    pub(crate) fn inval_seq(&self) -> u64 {
        self.inval_seq
    }

    /// Whether a mapping prepared with sequence `seq` may be installed.
    fn inval_ok(&self, seq: u64) -> bool {
        self.inval_in_progress == 0 && self.inval_seq == seq
    }

    /// A host invalidation starts: nothing is installed until it ends.
    pub(crate) fn inval_begin(&mut self) {
        self.inval_in_progress += 1;
    }

    /// A host invalidation ends.
    pub(crate) fn inval_end(&mut self) {
        self.inval_seq = self.inval_seq.wrapping_add(1);
        self.inval_in_progress = self.inval_in_progress.saturating_sub(1);
    }

    /// The host page guest frame `gfn` is mapped to in the EPT, and
    /// whether it was pinned for writing.
    pub(crate) fn ept_lookup(&mut self, gfn: u64) -> Option<(u64, bool)> {
        self.ept
            .lookup(gfn)
            .map(|e| (ept::leaf_pfn(e), e & ept::PIN_W != 0))
    }

    /// Maps `gfn` to the pinned page `pfn` in the EPT, read-only unless
    /// `writable`, if no host invalidation ran since `seq` was read.
    /// `Ok(true)`: the pin passed to the map; `Ok(false)`: `gfn` was mapped
    /// already, the pin stays with the caller; `Err(Retry)`: the pin stays
    /// with the caller too (stale `seq`, caches empty, no rmap yet). A
    /// writable mapping of a slot that logs dirty pages marks `gfn` dirty.
    /// `pin_w`: the page was pinned for writing (else it is never mapped
    /// writable).
    pub(crate) fn ept_map(
        &mut self,
        gfn: u64,
        pfn: u64,
        writable: bool,
        pin_w: bool,
        log_dirty: bool,
        seq: u64,
    ) -> Result<bool, Fail> {
        if !self.inval_ok(seq) || self.pages.len() < ept::TABLES_PER_MAP {
            return Err(Fail::Retry);
        }
        let Self {
            ept,
            pages,
            rmaps,
            descs,
            ..
        } = self;
        let list = ept_rmap_of(rmaps, gfn).ok_or(Fail::Retry)?;
        let Some(entry) = ept.prepare(gfn, &mut || pages.pop().map(Table::into_raw)) else {
            return Ok(false);
        };
        list.add(entry as u64, descs).map_err(|_| Fail::Retry)?;
        ept.set_leaf(entry, pfn, writable, pin_w);
        if writable && pin_w && log_dirty {
            self.mark_dirty(gfn);
        }
        Ok(true)
    }

    /// Lets the guest write `gfn` through its EPT leaf, marking it dirty
    /// if the slot logs. False if `gfn` is not mapped, or its page was
    /// not pinned for writing (the caller unmaps it and pins again).
    pub(crate) fn ept_allow_write(&mut self, gfn: u64, log_dirty: bool) -> bool {
        let Some(list) = ept_rmap_of(&mut self.rmaps, gfn) else {
            return false;
        };
        let mut found = false;
        for h in list.iter() {
            let e = h as *mut u64;
            // SAFETY: an EPT rmap handle is a present leaf of the map, which
            // is changed only under this lock.
            if unsafe { e.read() } & ept::PIN_W == 0 {
                return false;
            }
            // SAFETY: as above.
            unsafe { ept::set_writable(e, true) };
            found = true;
        }
        if found && log_dirty {
            self.mark_dirty(gfn);
        }
        found
    }

    /// Sets `gfn`'s bit in its slot's dirty bitmap.
    pub(crate) fn mark_dirty(&mut self, gfn: u64) {
        if let Some((r, off)) = slot_rmap_of(&mut self.rmaps, gfn) {
            if let Some(w) = r.dirty.get_mut(off / 64) {
                *w |= 1 << (off % 64);
            }
        }
    }

    /// Takes write access away from every leaf (EPT and shadow) mapping
    /// `gfn`, so that the next guest write faults.
    fn write_protect_all(&mut self, gfn: u64) -> bool {
        let mut changed = self.write_protect(gfn);
        if let Some(list) = ept_rmap_of(&mut self.rmaps, gfn) {
            for h in list.iter() {
                // SAFETY: as in `ept_allow_write`.
                changed |= unsafe { ept::set_writable(h as *mut u64, false) };
            }
        }
        changed
    }

    /// Dirty logging starts for the slot at `base_gfn`: a clean bitmap,
    /// and no leaf of the slot writable.
    pub(crate) fn start_dirty_log(&mut self, base_gfn: u64) -> Changes {
        let mut ch = Changes::default();
        let Some(i) = self.rmaps.iter().position(|r| r.base_gfn == base_gfn) else {
            return ch;
        };
        let n = self.rmaps[i].lists.len() as u64;
        self.rmaps[i].dirty.iter_mut().for_each(|w| *w = 0);
        for gfn in base_gfn..base_gfn + n {
            ch.flush |= self.write_protect_all(gfn);
        }
        ch
    }

    /// `KVM_GET_DIRTY_LOG`: moves the bitmap of the slot at `base_gfn` to
    /// `out` (as many words as fit) and write-protects the pages that were
    /// dirty, so that their next write is logged again.
    pub(crate) fn take_dirty_log(&mut self, base_gfn: u64, out: &mut [u64]) -> Changes {
        let mut ch = Changes::default();
        out.iter_mut().for_each(|w| *w = 0);
        let Some(i) = self.rmaps.iter().position(|r| r.base_gfn == base_gfn) else {
            return ch;
        };
        for (w, o) in out.iter_mut().enumerate() {
            let Some(word) = self.rmaps[i].dirty.get_mut(w) else {
                break;
            };
            *o = core::mem::take(word);
            let mut bits = *o;
            while bits != 0 {
                let b = u64::from(bits.trailing_zeros());
                bits &= bits - 1;
                ch.flush |= self.write_protect_all(base_gfn + 64 * w as u64 + b);
            }
        }
        ch
    }

    /// Unmaps guest frames `[first, last)` from the EPT and the shadow
    /// leaves (draining each frame's rmap lists), stopping early once
    /// `pins` is full of cleared EPT leaves whose pins passed to the
    /// caller, who must kick the vCPUs (the returned `Changes`) before
    /// releasing them with [`ept::unpin`].
    /// Returns the frame to continue at, and how many pins were stored.
    pub(crate) fn zap_range(
        &mut self,
        first: u64,
        last: u64,
        pins: &mut [u64],
    ) -> (u64, usize, Changes) {
        let mut ch = Changes::default();
        let mut n = 0;
        let mut gfn = first;
        // Bounded work per lock hold: at most `pins.len()` pages, and at
        // most 1024 frames looked at.
        while gfn < last && n < pins.len() && gfn - first < 1024 {
            let Self {
                ept,
                rmaps,
                descs,
                stats,
                ..
            } = self;
            if let Some(list) = ept_rmap_of(rmaps, gfn) {
                list.drain(descs, |h| {
                    // SAFETY: an EPT rmap handle is the address of a present
                    // leaf of the map (`Ept` invariant).
                    let old = unsafe { ept.clear_leaf(h as *mut u64) };
                    if let Some(p) = pins.get_mut(n) {
                        *p = old;
                        n += 1;
                    }
                    ch.flush = true;
                });
            }
            if let Some(list) = rmap_of(rmaps, gfn) {
                list.drain(descs, |h| {
                    // SAFETY: shadow rmap handles are addresses of present
                    // leaves in live table pages (invariant).
                    unsafe { (h as *mut u64).write_volatile(0) };
                    stats.pages_4k = stats.pages_4k.saturating_sub(1);
                    ch.flush = true;
                });
            }
            gfn += 1;
        }
        (gfn, n, ch)
    }

    /// Whether a frame of `[first, last)` is young: mapped by the EPT (no
    /// accessed bits there) or by a shadow leaf the guest accessed through;
    /// the shadow leaves' accessed bits are cleared if `clear`.
    pub(crate) fn age_range(&mut self, first: u64, last: u64, clear: bool) -> (bool, Changes) {
        let mut young = false;
        let mut ch = Changes::default();
        for gfn in first..last {
            if ept_rmap_of(&mut self.rmaps, gfn).is_some_and(|l| !l.is_empty()) {
                young = true;
            }
            let Some(list) = rmap_of(&mut self.rmaps, gfn) else {
                continue;
            };
            for h in list.iter() {
                let e = h as *mut u64;
                // SAFETY: rmap handles are addresses of present leaves in
                // live table pages (invariant).
                let v = unsafe { e.read_volatile() };
                if v & PTE_A != 0 {
                    young = true;
                    if clear {
                        // SAFETY: as above.
                        unsafe { e.write_volatile(v & !PTE_A) };
                        ch.flush = true;
                    }
                }
            }
        }
        (young, ch)
    }

    /// Starts a fast invalidation of everything: every page becomes
    /// obsolete (never found again; roots reloaded). The pages are zapped
    /// by [`Shadow::zap_obsolete`].
    pub(crate) fn invalidate_all(&mut self) -> Changes {
        if self.used == 0 {
            // No page, so no root either: nothing to retire, nobody to
            // tell (an unpaged VM deleting slots kicks nobody for this).
            return Changes::default();
        }
        self.gen = self.gen.wrapping_add(1);
        Changes {
            flush: true,
            roots: true,
        }
    }

    /// Zaps up to `batch` obsolete pages, oldest first; true when none is
    /// left.
    pub(crate) fn zap_obsolete(&mut self, batch: usize) -> (bool, Changes) {
        let mut ch = Changes::default();
        let mut n = 0;
        let mut i = self.oldest;
        while let Some(sp) = self.sp(i) {
            if sp.gen == self.gen {
                // Newer pages come after: all obsolete ones are gone.
                return (true, ch);
            }
            if n == batch {
                return (false, ch);
            }
            let newer = sp.newer;
            ch.merge(self.zap(i));
            n += 1;
            i = newer;
        }
        (true, ch)
    }

    /// Zaps the current pages built for guest frames in `[first, last)`
    /// (the tables a deleted or moved slot held, and direct pages there),
    /// looking at up to `count` arena entries from index `from`. Returns
    /// the index to go on at (`None` when done) and what changed. Once the
    /// slot is published invalid and its readers are gone, no page for
    /// these frames can be created (a fault that would read a table there
    /// retries), so an index cursor stays valid across lock drops. KVM's
    /// `kvm_mmu_zap_memslot()` walks the slot's gfns instead; the arena is
    /// bounded by the page budget, a slot is not.
    pub(crate) fn zap_gfn_pages(
        &mut self,
        first: u64,
        last: u64,
        from: usize,
        count: usize,
    ) -> (Option<usize>, Changes) {
        let end = self.slots.len().min(from.saturating_add(count));
        let mut ch = Changes::default();
        for i in from..end {
            let hit = matches!(self.sp(i as u32),
                Some(sp) if (first..last).contains(&sp.gfn) && self.usable(sp));
            if hit {
                ch.merge(self.zap(i as u32));
            }
        }
        ((end < self.slots.len()).then_some(end), ch)
    }

    /// Marks up to `count` frames' lists (shadow and EPT) of the rmap of
    /// the slot at `base_gfn` invalid, from frame index `from`: they can
    /// only be cleared from now on (a fault that would add to one
    /// retries). Returns the index to continue at, `None` when done.
    pub(crate) fn invalidate_rmap(
        &mut self,
        base_gfn: u64,
        from: usize,
        count: usize,
    ) -> Option<usize> {
        let r = self.rmaps.iter_mut().find(|r| r.base_gfn == base_gfn)?;
        let end = r.lists.len().min(from.saturating_add(count));
        for i in from..end {
            if let Some(l) = r.lists.get_mut(i) {
                l.mark_invalid();
            }
            if let Some(l) = r.ept.get_mut(i) {
                l.mark_invalid();
            }
        }
        (end < r.lists.len()).then_some(end)
    }

    /// Forgets the rmap of the slot that started at `base_gfn` (after its
    /// leaves were zapped).
    pub(crate) fn drop_rmap(&mut self, base_gfn: u64) -> Option<RetiredRmap> {
        let p = self.rmaps.iter().position(|r| r.base_gfn == base_gfn)?;
        let mut r = self.rmaps.remove(p).ok()?;
        let descs = &mut self.descs;
        for l in r.lists.iter_mut() {
            // Empty after the zap; drained for safety.
            l.drain(descs, |h| {
                // SAFETY: a handle is a present leaf in a live page.
                unsafe { (h as *mut u64).write_volatile(0) };
            });
        }
        // The EPT lists are empty: the caller unmapped the whole slot with
        // `zap_range` while the slot was invalid (nothing could map it).
        Some(RetiredRmap(r))
    }

    /// Sets the page budget (`KVM_SET_NR_MMU_PAGES`, or the default when
    /// `user` is false and the user never set one), zapping the oldest
    /// pages above it. The arena must have been resized first.
    pub(crate) fn set_budget(&mut self, pages: usize, user: bool) -> Changes {
        if !user && self.user_budget {
            return Changes::default();
        }
        self.user_budget |= user;
        self.budget = pages.max(MIN_PAGES);
        self.reclaim(0)
    }

    /// A snapshot of the counters; the rmap histogram is computed now.
    pub(crate) fn stats(&self) -> MmuStats {
        let mut s = self.stats;
        s.mmu_shadow_pages = self.used as u64;
        let mut hist = [0u64; RMAP_HIST_BUCKETS];
        for r in self.rmaps.iter() {
            for l in r.lists.iter() {
                let n = l.len();
                if n > 0 {
                    let b = (usize::BITS - 1 - n.leading_zeros()) as usize;
                    if let Some(h) = hist.get_mut(b.min(RMAP_HIST_BUCKETS - 1)) {
                        *h += 1;
                    }
                }
            }
        }
        s.rmap_len_hist = hist;
        s
    }

    /// Counts a fault reflected into the guest.
    pub(crate) fn count_guest_fault(&mut self) {
        self.stats.pf_guest += 1;
    }

    /// Counts an emulated guest page-table write.
    pub(crate) fn count_emulated(&mut self) {
        self.stats.pf_emulate += 1;
    }
}

impl Drop for Shadow {
    fn drop(&mut self) {
        // No vCPU runs any more: clear every list so that descriptors go
        // back to the heap; the pages go with their slots.
        let descs = &mut self.descs;
        for s in self.slots.iter_mut() {
            if let Slot::Used(sp) = s {
                sp.parents.drain(descs, |_| {});
            }
        }
        let ept = &mut self.ept;
        for r in self.rmaps.iter_mut() {
            for l in r.lists.iter_mut() {
                l.drain(descs, |_| {});
            }
            for l in r.ept.iter_mut() {
                l.drain(descs, |h| {
                    // SAFETY: an EPT rmap handle is a present leaf of the
                    // map, whose pin is released once here; no vCPU of
                    // this VM runs any more.
                    unsafe { ept::unpin(ept.clear_leaf(h as *mut u64)) };
                });
            }
        }
    }
}

/// Fills the page and descriptor caches so that one fault can complete
/// under the lock without allocating.
pub(crate) fn topup(lock: &SpinLock<Shadow>) -> Result {
    let (pages, descs) = {
        let s = lock.lock();
        (
            PAGE_RESERVE.saturating_sub(s.pages.len()),
            DESC_RESERVE.saturating_sub(s.descs.free.len()),
        )
    };
    if pages == 0 && descs == 0 {
        return Ok(());
    }
    let mut new_pages = KVec::with_capacity(pages, GFP_KERNEL_ACCOUNT)?;
    for _ in 0..pages {
        new_pages.push(Table::new().ok_or(ENOMEM)?, GFP_KERNEL_ACCOUNT)?;
    }
    // Dropped on every path, outside the lock: what did not fit is freed.
    let mut new_descs = DescCache {
        free: KVec::with_capacity(descs, GFP_KERNEL_ACCOUNT)?,
    };
    for _ in 0..descs {
        let b = KBox::<Desc>::new_uninit(GFP_KERNEL_ACCOUNT)?;
        let d = NonNull::new(KBox::into_raw(b).cast::<Desc>()).ok_or(ENOMEM)?;
        // Capacity was reserved for `descs` entries.
        let _ = new_descs.free.push_within_capacity(d);
    }
    let mut s = lock.lock();
    while s.pages.len() < s.pages.capacity() {
        match new_pages.pop() {
            Some(p) => {
                let _ = s.pages.push_within_capacity(p);
            }
            None => break,
        }
    }
    while s.descs.free.len() < s.descs.free.capacity() {
        match new_descs.free.pop() {
            Some(d) => {
                let _ = s.descs.free.push_within_capacity(d);
            }
            None => break,
        }
    }
    drop(s);
    Ok(())
}

/// Makes sure the slot `[base_gfn, base_gfn + npages)` has an rmap.
pub(crate) fn ensure_rmap(lock: &SpinLock<Shadow>, base_gfn: u64, npages: u64) -> Result {
    if lock.lock().rmaps.iter().any(|r| r.base_gfn == base_gfn) {
        return Ok(());
    }
    let n = usize::try_from(npages).map_err(|_| ENOMEM)?;
    let mut lists = KVVec::with_capacity(n, GFP_KERNEL_ACCOUNT)?;
    let mut ept = KVVec::with_capacity(n, GFP_KERNEL_ACCOUNT)?;
    for _ in 0..n {
        lists.push(List::new(), GFP_KERNEL_ACCOUNT)?;
        ept.push(List::new(), GFP_KERNEL_ACCOUNT)?;
    }
    let words = n.div_ceil(64);
    let mut dirty = KVVec::with_capacity(words, GFP_KERNEL_ACCOUNT)?;
    for _ in 0..words {
        dirty.push(0, GFP_KERNEL_ACCOUNT)?;
    }
    let mut spare = KVec::with_capacity(1, GFP_KERNEL_ACCOUNT)?;
    spare.push(
        SlotRmap {
            base_gfn,
            lists,
            ept,
            dirty,
        },
        GFP_KERNEL_ACCOUNT,
    )?;
    let mut s = lock.lock();
    if !s.rmaps.iter().any(|r| r.base_gfn == base_gfn) {
        if s.rmaps.len() == s.rmaps.capacity() {
            // Grow outside the lock and retry.
            let want = s.rmaps.len() + 4;
            drop(s);
            let mut bigger = KVec::with_capacity(want, GFP_KERNEL_ACCOUNT)?;
            let mut s = lock.lock();
            if bigger.capacity() > s.rmaps.capacity() {
                while let Some(r) = s.rmaps.pop() {
                    let _ = bigger.push_within_capacity(r);
                }
                bigger.reverse();
                core::mem::swap(&mut s.rmaps, &mut bigger);
            }
            drop(s);
            return ensure_rmap(lock, base_gfn, npages);
        }
        if let Some(r) = spare.pop() {
            let _ = s.rmaps.push_within_capacity(r);
        }
    }
    Ok(())
}

/// Grows the arena to hold `budget` pages plus the slack for roots.
pub(crate) fn resize(lock: &SpinLock<Shadow>, budget: usize) -> Result {
    let want = budget.max(MIN_PAGES) + ARENA_SLACK;
    if lock.lock().slots.capacity() >= want {
        return Ok(());
    }
    let mut bigger = KVVec::with_capacity(want, GFP_KERNEL_ACCOUNT)?;
    {
        let mut s = lock.lock();
        if s.slots.capacity() >= want {
            return Ok(());
        }
        core::mem::swap(&mut s.slots, &mut bigger);
        // Move the slots back in order: indices are the pages' identities.
        for slot in bigger.drain_all() {
            let _ = s.slots.push_within_capacity(slot);
        }
    }
    Ok(())
}
