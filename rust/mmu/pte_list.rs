// SPDX-License-Identifier: GPL-2.0

//! The shadow MMU's reverse-map lists ("pte_lists"): for one guest frame
//! (or one shadow page's parents), the set of shadow PTEs that point at it,
//! so that the MMU can find and clear them all when the mapping must go.
//!
//! The design mirrors KVM's `struct pte_list_desc` and the rmap head
//! encoding in `arch/x86/kvm/mmu/mmu.c` (`pte_list_add()`,
//! `pte_list_remove()`, `kvm_zap_all_rmap_sptes()`, `pte_list_count()`):
//! most frames are mapped by one or two shadow PTEs, so the common case must
//! cost one word and no allocation.
//!
//! # Representation
//!
//! An entry is a *handle*: in the kernel, the address of a shadow PTE. A
//! handle is non-zero and has its two low bits clear (every `u64` in memory
//! is 8-byte aligned), which frees those bits of the head word for tags. The
//! head word ([`PteList`], one `u64`) is in one of three states:
//!
//! * **empty**: zero (apart from the invalid flag), so a zero-filled array
//!   of heads is an array of empty lists;
//! * **one**: the single handle itself, stored inline, with no allocation;
//! * **many**: a pointer to a chain of descriptors ([`Desc`]), tagged by
//!   bit 0. A descriptor is 128 bytes (two cache lines): a link to the next
//!   descriptor, two counters and [`DESC_CAP`] handles.
//!
//! A new descriptor is pushed at the front when the head descriptor is full,
//! so the head is the only descriptor that may be partly filled: every tail
//! descriptor is full. Each descriptor also records how many entries its
//! tail holds, so [`PteList::len`] and [`PteList::chain_len`] are O(1).
//! Removing an entry moves the head's last entry into the hole, which keeps
//! the tails full; a head left empty is freed and its successor becomes the
//! head. As in KVM, a list that shrinks back to one entry keeps its (one)
//! descriptor rather than returning to the inline state, so a list whose size
//! hovers around one or two does not allocate and free on every change.
//!
//! # Duplicates
//!
//! The list is a multiset: [`PteList::add`] does not search for the handle
//! (that would make every add O(n)), so adding a handle twice stores it
//! twice, [`PteList::iter`] then yields it twice and [`PteList::remove`]
//! takes away one copy. The shadow MMU never adds a shadow PTE to a list it
//! is already on, so in practice the entries are distinct.
//!
//! # Bulk operations
//!
//! [`PteList::drain`] is the fast drop of a whole list: one pass that hands
//! every entry to a callback (the kernel clears the shadow PTE there) and
//! frees every descriptor, with no per-entry removal. [`PteList::retain`] is
//! the walk-and-clear that keeps only some entries: one pass that compacts
//! the kept entries towards the front of the chain, then frees the
//! descriptors that are no longer needed.
//!
//! # Invalid lists
//!
//! When a memory slot is being deleted its rmaps are marked invalid
//! ([`PteList::mark_invalid`], a tag bit in the head word). An invalid list
//! can only be cleared, never added to: [`PteList::add`] fails with
//! [`AddError::Invalid`], while remove, retain and drain work as before, and
//! the flag survives them. KVM gets the same effect from
//! `KVM_MEMSLOT_INVALID` on the slot, checked before a fault installs an
//! spte; keeping the flag in each head makes the rule local to the list.
//!
//! # Allocation and ownership
//!
//! The list owns its descriptors but has no allocator of its own: every
//! operation that may allocate or free takes one ([`DescAlloc`]), because the
//! kernel allocates descriptors from its own cache while the host tests use
//! `Box`. The allocator type is a parameter of the list, so the type system
//! keeps one list's descriptors with one kind of allocator. KVM fills a
//! per-vCPU cache before taking the MMU lock so that adding cannot fail;
//! here a failed allocation is reported ([`AddError::AllocFailed`]) and
//! leaves the list unchanged, and a kernel allocator may well be backed by
//! such a pre-filled cache. Dropping a list that still holds descriptors
//! leaks them (a destructor has no allocator to give them back to): drain a
//! list before dropping it.
//!
//! There is no lock: the caller serialises all access to a list (KVM keeps
//! a lock bit in the head word for lockless rmap walks; rkvm does not walk
//! rmaps without the MMU lock).
//!
//! Pure logic over `core`, shared with the host tests.

use core::marker::PhantomData;
use core::mem::{align_of, size_of};
use core::ptr::NonNull;

/// Handles in one descriptor: with the link and the two counters, a
/// descriptor is 128 bytes.
pub(crate) const DESC_CAP: usize = 14;

/// Head word tag: the rest of the word points to the head descriptor.
const MANY: u64 = 1 << 0;
/// Head word flag: the list belongs to a memory slot being deleted.
const INVALID: u64 = 1 << 1;
/// The head word's tag bits, which handles must leave clear.
const TAG_MASK: u64 = MANY | INVALID;

/// The largest number of entries a list holds: the counters are `u32`.
const MAX_LEN: u32 = u32::MAX;

/// One block of handles in a list of more than one entry.
///
/// The fields are private: an allocator provides the memory only, and the
/// list writes the whole descriptor before linking it.
///
/// # Invariants
///
/// While a descriptor is linked into a list:
/// * every field is initialised (slots past `count` hold stale values that
///   are never read as entries);
/// * `1 <= count <= DESC_CAP`, and `count == DESC_CAP` unless the
///   descriptor is the head of its list;
/// * `handles[..count]` are the descriptor's entries, each a valid handle;
/// * `tail` is the number of entries in the descriptors reachable through
///   `more`, hence a multiple of `DESC_CAP`;
/// * `more` is `None` or the next descriptor of the same list.
#[repr(C)]
pub(crate) struct Desc {
    /// The next (older) descriptor.
    more: Option<NonNull<Desc>>,
    /// Entries in this descriptor.
    count: u32,
    /// Entries in all the descriptors after this one.
    tail: u32,
    /// The entries, in `handles[..count]`.
    handles: [u64; DESC_CAP],
}

const _: () = assert!(size_of::<Desc>() == 128);
// Descriptor pointers leave the head word's tag bits clear.
const _: () = assert!(align_of::<Desc>() >= 4);
// Pointers and handles share the head word.
const _: () = assert!(size_of::<usize>() == size_of::<u64>());

impl Desc {
    /// The descriptor's entries.
    fn live(&self) -> &[u64] {
        self.handles.get(..self.count as usize).unwrap_or(&[])
    }
}

/// Where a list's descriptors come from and go back to.
///
/// # Safety
///
/// Implementors guarantee that:
/// * [`DescAlloc::alloc`] returns `None` or a pointer to memory that is
///   valid for reads and writes of one [`Desc`], aligned for it, and used by
///   nothing else until it is given to [`DescAlloc::free`]; the memory may be
///   uninitialised;
/// * [`DescAlloc::free`] accepts a descriptor from `alloc` of *any* value of
///   the implementing type, not only of the value it is called on (a list
///   may grow through one vCPU's cache and shrink through another's).
pub(crate) unsafe trait DescAlloc {
    /// A descriptor's worth of memory, or `None` when there is none.
    fn alloc(&mut self) -> Option<NonNull<Desc>>;

    /// Gives back a descriptor.
    ///
    /// # Safety
    ///
    /// `d` was returned by [`DescAlloc::alloc`] on a value of this type and
    /// has not been freed since; nothing uses it after this call.
    unsafe fn free(&mut self, d: NonNull<Desc>);
}

/// Why [`PteList::add`] did not add; the list is unchanged in every case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AddError {
    /// No descriptor could be allocated, or the list already holds `u32::MAX`
    /// entries.
    AllocFailed,
    /// The list is marked invalid: it can only be cleared.
    Invalid,
    /// The handle is zero or has one of its two low bits set.
    BadHandle,
}

/// What the head word holds, with the invalid flag masked off.
enum View {
    /// No entries.
    Empty,
    /// One entry, inline.
    One(u64),
    /// A chain of descriptors, starting at this one.
    Many(NonNull<Desc>),
}

/// The head word for a descriptor chain starting at `d`.
fn many_word(d: NonNull<Desc>) -> u64 {
    d.as_ptr() as usize as u64 | MANY
}

/// A reverse-map list of shadow PTE handles. See the module documentation.
///
/// # Invariants
///
/// Bit 1 of `raw` is the invalid flag. With it masked off, `raw` is:
/// * zero: the list is empty;
/// * a handle (non-zero, tag bits clear): the list's only entry;
/// * the address of a [`Desc`] with bit 0 set: the head of a finite chain of
///   descriptors, each obtained from `A::alloc`, not yet freed, owned by
///   this list alone and satisfying the [`Desc`] invariants.
#[repr(transparent)]
pub(crate) struct PteList<A> {
    /// The head word.
    raw: u64,
    /// The kind of allocator the descriptors come from.
    _alloc: PhantomData<fn() -> A>,
}

impl<A> PteList<A> {
    /// An empty, valid list.
    pub(crate) const fn new() -> Self {
        Self {
            raw: 0,
            _alloc: PhantomData,
        }
    }

    /// Whether the list is marked invalid (adds are refused).
    pub(crate) fn is_invalid(&self) -> bool {
        self.raw & INVALID != 0
    }

    /// Marks the list invalid: from now on it can only be cleared. The mark
    /// is permanent; the list's entries are untouched.
    pub(crate) fn mark_invalid(&mut self) {
        self.raw |= INVALID;
    }

    /// Whether the list has no entries.
    pub(crate) fn is_empty(&self) -> bool {
        self.raw & !INVALID == 0
    }

    /// The head word, decoded.
    fn view(&self) -> View {
        let v = self.raw & !INVALID;
        if v == 0 {
            View::Empty
        } else if v & MANY == 0 {
            View::One(v)
        } else {
            // `MANY` alone is never stored; treat it as empty rather than
            // build a null pointer.
            match NonNull::new((v & !MANY) as usize as *mut Desc) {
                Some(d) => View::Many(d),
                None => View::Empty,
            }
        }
    }

    /// Replaces the contents (not the invalid flag) with `v`.
    fn set(&mut self, v: u64) {
        self.raw = v | (self.raw & INVALID);
    }

    /// The number of entries.
    pub(crate) fn len(&self) -> usize {
        match self.view() {
            View::Empty => 0,
            View::One(_) => 1,
            View::Many(d) => {
                // SAFETY: per the type invariant `d` is a live, initialised
                // descriptor of this list, and `&self` excludes writers.
                let d = unsafe { d.as_ref() };
                d.tail as usize + d.count as usize
            }
        }
    }

    /// The number of descriptors the list holds: 0 for the empty and inline
    /// states. For the chain-length histogram (see [`chain_bucket`]).
    pub(crate) fn chain_len(&self) -> usize {
        match self.view() {
            View::Empty | View::One(_) => 0,
            View::Many(d) => {
                // SAFETY: as in `len`.
                let d = unsafe { d.as_ref() };
                // The tail descriptors are full.
                1 + d.tail as usize / DESC_CAP
            }
        }
    }

    /// Visits every entry once (a handle added twice is visited twice), the
    /// newest descriptor first.
    pub(crate) fn iter(&self) -> Iter<'_> {
        let (one, desc) = match self.view() {
            View::Empty => (None, None),
            View::One(h) => (Some(h), None),
            View::Many(d) => (None, Some(d)),
        };
        Iter {
            one,
            desc,
            pos: 0,
            _list: PhantomData,
        }
    }

    /// Whether the list satisfies its invariants, as far as they can be
    /// observed: entries are valid handles, counts are in range, every tail
    /// descriptor is full and each `tail` counter matches its chain. For
    /// tests and debug checks; O(n).
    pub(crate) fn is_consistent(&self) -> bool {
        let head = match self.view() {
            View::Empty => return self.raw & !INVALID == 0,
            View::One(h) => return h & TAG_MASK == 0,
            View::Many(d) => d,
        };
        let mut cur = Some(head);
        let mut first = true;
        // The chain is finite by the type invariant; the bound only keeps a
        // broken chain from looping.
        let mut steps = u32::MAX / DESC_CAP as u32 + 1;
        while let Some(p) = cur {
            if steps == 0 {
                return false;
            }
            steps -= 1;
            // SAFETY: `p` is a descriptor of this list (type invariant), and
            // `&self` excludes writers.
            let d = unsafe { p.as_ref() };
            let count = d.count as usize;
            let full = count == DESC_CAP;
            if count == 0 || count > DESC_CAP || (!first && !full) {
                return false;
            }
            if d.live().iter().any(|&h| h == 0 || h & TAG_MASK != 0) {
                return false;
            }
            let next_entries = match d.more {
                // SAFETY: as above.
                Some(n) => unsafe { n.as_ref() }.tail as usize + DESC_CAP,
                None => 0,
            };
            if d.tail as usize != next_entries {
                return false;
            }
            first = false;
            cur = d.more;
        }
        true
    }
}

impl<A> Default for PteList<A> {
    fn default() -> Self {
        Self::new()
    }
}

impl<A: DescAlloc> PteList<A> {
    /// Adds handle `h`. Fails, leaving the list unchanged, when the list is
    /// invalid, when `h` is not a handle, and when a descriptor is needed and
    /// `alloc` has none. Does not look for `h` among the entries (see the
    /// module documentation on duplicates).
    pub(crate) fn add(&mut self, h: u64, alloc: &mut A) -> Result<(), AddError> {
        if self.is_invalid() {
            return Err(AddError::Invalid);
        }
        if h == 0 || h & TAG_MASK != 0 {
            return Err(AddError::BadHandle);
        }
        match self.view() {
            View::Empty => self.set(h),
            View::One(old) => {
                let d = alloc.alloc().ok_or(AddError::AllocFailed)?;
                let mut handles = [0; DESC_CAP];
                handles[0] = old;
                handles[1] = h;
                // SAFETY: per the `DescAlloc` contract `d` is valid for a
                // write of a `Desc`, aligned and used by nothing else.
                unsafe {
                    d.as_ptr().write(Desc {
                        more: None,
                        count: 2,
                        tail: 0,
                        handles,
                    })
                };
                self.set(many_word(d));
            }
            View::Many(head) => {
                // SAFETY: per the type invariant `head` is a live,
                // initialised descriptor owned by this list; `&mut self`
                // makes this the only reference to it.
                let hd = unsafe { &mut *head.as_ptr() };
                let len = hd.tail.checked_add(hd.count).unwrap_or(MAX_LEN);
                if len == MAX_LEN {
                    return Err(AddError::AllocFailed);
                }
                if let Some(slot) = hd.handles.get_mut(hd.count as usize) {
                    *slot = h;
                    hd.count += 1;
                } else {
                    let d = alloc.alloc().ok_or(AddError::AllocFailed)?;
                    let mut handles = [0; DESC_CAP];
                    handles[0] = h;
                    // SAFETY: as for the first descriptor above.
                    unsafe {
                        d.as_ptr().write(Desc {
                            more: Some(head),
                            count: 1,
                            tail: len,
                            handles,
                        })
                    };
                    self.set(many_word(d));
                }
            }
        }
        Ok(())
    }

    /// Removes one copy of `h`; false when the list does not hold it.
    pub(crate) fn remove(&mut self, h: u64, alloc: &mut A) -> bool {
        match self.view() {
            View::Empty => false,
            View::One(x) => {
                if x == h {
                    self.set(0);
                }
                x == h
            }
            View::Many(head) => {
                let mut cur = Some(head);
                while let Some(p) = cur {
                    // SAFETY: `p` is a descriptor of this list (type
                    // invariant); the reference ends before any write.
                    let d = unsafe { p.as_ref() };
                    if let Some(i) = d.live().iter().position(|&x| x == h) {
                        self.remove_at(head, p, i, alloc);
                        return true;
                    }
                    cur = d.more;
                }
                false
            }
        }
    }

    /// Removes entry `i` of descriptor `d` by moving the last entry of the
    /// head descriptor `head` into its place, then frees the head if that
    /// left it empty.
    fn remove_at(&mut self, head: NonNull<Desc>, d: NonNull<Desc>, i: usize, alloc: &mut A) {
        // SAFETY: `head` is this list's head descriptor (type invariant);
        // `&mut self` makes this the only reference to it.
        let hd = unsafe { &mut *head.as_ptr() };
        let Some(j) = (hd.count as usize).checked_sub(1) else {
            return;
        };
        let Some(&last) = hd.handles.get(j) else {
            return;
        };
        hd.count -= 1;
        let (left, more) = (hd.count, hd.more);
        if d != head || i != j {
            // SAFETY: `d` is a descriptor of this list (caller), and the
            // reference to the head is not used any more.
            if let Some(slot) = unsafe { &mut *d.as_ptr() }.handles.get_mut(i) {
                *slot = last;
            }
        }
        if left == 0 {
            self.set(more.map_or(0, many_word));
            // SAFETY: the head came from `A::alloc` (type invariant), has not
            // been freed, is now unlinked and holds no entry, so nothing uses
            // it after this.
            unsafe { alloc.free(head) };
        }
    }

    /// Empties the list in one pass: calls `f` on every entry and frees every
    /// descriptor. Returns the number of entries visited. The invalid flag
    /// stays as it was. If `f` panics, the list is already empty and the
    /// descriptors not yet freed are leaked.
    pub(crate) fn drain(&mut self, alloc: &mut A, mut f: impl FnMut(u64)) -> usize {
        let view = self.view();
        self.set(0);
        match view {
            View::Empty => 0,
            View::One(h) => {
                f(h);
                1
            }
            View::Many(head) => {
                let mut n = 0;
                let mut cur = Some(head);
                while let Some(p) = cur {
                    // SAFETY: `p` was a descriptor of this list (type
                    // invariant), which no longer refers to it: we own it
                    // until it is freed below.
                    let d = unsafe { p.as_ref() };
                    for &h in d.live() {
                        f(h);
                    }
                    n += d.live().len();
                    cur = d.more;
                    // SAFETY: `p` came from `A::alloc` (type invariant), has
                    // not been freed, and is not used after this.
                    unsafe { alloc.free(p) };
                }
                n
            }
        }
    }

    /// Keeps the entries for which `f` returns true and removes the others,
    /// in one pass over the entries and one over the descriptors; freed
    /// descriptors go back to `alloc`. Returns the number of entries removed.
    /// The invalid flag stays as it was. If `f` panics, the list stays safe
    /// to use and drain, but which handles it holds is unspecified.
    pub(crate) fn retain(&mut self, alloc: &mut A, mut f: impl FnMut(u64) -> bool) -> usize {
        match self.view() {
            View::Empty => 0,
            View::One(h) => {
                if f(h) {
                    0
                } else {
                    self.set(0);
                    1
                }
            }
            View::Many(head) => self.retain_many(head, alloc, f),
        }
    }

    /// [`PteList::retain`] for a chain starting at `head`.
    ///
    /// The kept entries are copied, in walk order, to the front of the
    /// chain; the writer never passes the reader, so no entry is overwritten
    /// before it is read. The descriptors after the last one written are
    /// freed. The last one written is the only one that may be partly full,
    /// so its entries are then swapped with the (full) head's.
    fn retain_many(
        &mut self,
        head: NonNull<Desc>,
        alloc: &mut A,
        mut f: impl FnMut(u64) -> bool,
    ) -> usize {
        let mut removed = 0;
        let mut kept = 0usize;
        // The write position: descriptor and slot.
        let mut wd = head;
        let mut wi = 0;
        let mut rd = Some(head);
        while let Some(r) = rd {
            let mut i = 0;
            // SAFETY: `r` is a descriptor of this list (type invariant); the
            // reference ends before any write.
            while let Some(&h) = unsafe { r.as_ref() }.live().get(i) {
                i += 1;
                if !f(h) {
                    removed += 1;
                    continue;
                }
                if wi == DESC_CAP {
                    // The writer is behind the reader, so a full write
                    // descriptor has a successor.
                    // SAFETY: `wd` is a descriptor of this list.
                    match unsafe { wd.as_ref() }.more {
                        Some(n) => wd = n,
                        None => break,
                    }
                    wi = 0;
                }
                // SAFETY: `wd` is a descriptor of this list, and no other
                // reference to a descriptor is live.
                if let Some(slot) = unsafe { &mut *wd.as_ptr() }.handles.get_mut(wi) {
                    *slot = h;
                }
                wi += 1;
                kept += 1;
            }
            // SAFETY: as above.
            rd = unsafe { r.as_ref() }.more;
        }

        if kept == 0 {
            // Nothing kept: free the whole chain.
            let mut cur = Some(head);
            self.set(0);
            while let Some(p) = cur {
                // SAFETY: `p` was a descriptor of this list, which no longer
                // refers to it.
                cur = unsafe { p.as_ref() }.more;
                // SAFETY: `p` came from `A::alloc` (type invariant), has not
                // been freed, and is not used after this.
                unsafe { alloc.free(p) };
            }
            return removed;
        }

        // Unlink and free what follows the last descriptor written.
        // SAFETY: `wd` is a descriptor of this list; no other reference to a
        // descriptor is live.
        let mut cur = unsafe { &mut *wd.as_ptr() }.more.take();
        while let Some(p) = cur {
            // SAFETY: `p` was a descriptor of this list and is now unlinked.
            cur = unsafe { p.as_ref() }.more;
            // SAFETY: `p` came from `A::alloc` (type invariant), has not been
            // freed, and is not used after this.
            unsafe { alloc.free(p) };
        }

        // Make the head the partly full one, then fix the counters. `kept` is
        // at most the old length, so the `u32` counters cannot overflow.
        if wd != head {
            // SAFETY: `wd` and `head` are distinct descriptors of this list,
            // so the two references do not alias.
            let (w, hd) = unsafe { (&mut *wd.as_ptr(), &mut *head.as_ptr()) };
            core::mem::swap(&mut w.handles, &mut hd.handles);
        }
        let mut tail = kept as u32;
        let mut cur = Some(head);
        let mut count = wi as u32;
        while let Some(p) = cur {
            // SAFETY: `p` is a descriptor of this list; no other reference
            // to a descriptor is live.
            let d = unsafe { &mut *p.as_ptr() };
            d.count = count;
            tail = tail.saturating_sub(count);
            d.tail = tail;
            count = DESC_CAP as u32;
            cur = d.more;
        }
        removed
    }
}

/// The histogram buckets of [`chain_bucket`].
pub(crate) const CHAIN_BUCKETS: usize = 8;

/// The histogram bucket of a list with `descs` descriptors
/// ([`PteList::chain_len`]): 0 for none, 1 for one, then powers of two (2,
/// 3-4, 5-8, ...), the last bucket taking every longer chain.
pub(crate) fn chain_bucket(descs: usize) -> usize {
    match descs.checked_sub(1) {
        None => 0,
        Some(m) => ((usize::BITS - m.leading_zeros()) as usize + 1).min(CHAIN_BUCKETS - 1),
    }
}

/// An iterator over a list's entries ([`PteList::iter`]).
///
/// # Invariants
///
/// `desc`, when set, is a descriptor of the list borrowed for `'a`, and
/// `pos` an index into it; `one` is the entry of an inline list, not yet
/// returned.
pub(crate) struct Iter<'a> {
    /// The inline entry, until it is returned.
    one: Option<u64>,
    /// The descriptor being walked.
    desc: Option<NonNull<Desc>>,
    /// The next entry of `desc` to return.
    pos: usize,
    /// The list is borrowed, hence unchanged, while the iterator lives.
    _list: PhantomData<&'a Desc>,
}

impl Iterator for Iter<'_> {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        if let Some(h) = self.one.take() {
            return Some(h);
        }
        while let Some(p) = self.desc {
            // SAFETY: `p` is a descriptor of a list that is borrowed shared
            // for the iterator's lifetime (type invariant), so it is live
            // and nobody writes to it.
            let d = unsafe { p.as_ref() };
            if let Some(&h) = d.live().get(self.pos) {
                self.pos += 1;
                return Some(h);
            }
            self.desc = d.more;
            self.pos = 0;
        }
        None
    }
}
