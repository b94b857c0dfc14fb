// SPDX-License-Identifier: GPL-2.0

//! Reverse-map lists: the state transitions, the invalid flag, allocation
//! failure, leak and double-free checks, and random operations against a
//! model (a `Vec` of handles compared as a multiset, since the list keeps
//! duplicates).

use crate::pte_list::*;
use std::collections::HashSet;
use std::mem::{size_of, MaybeUninit};
use std::ptr::NonNull;

/// A `Box` allocator that counts, tracks the live descriptors (so a double
/// or foreign free panics and a leak shows) and fails on request.
#[derive(Default)]
struct TestAlloc {
    /// Calls to `alloc` so far, failed ones included.
    calls: u64,
    /// Fail the call with this number (1-based).
    fail_at: Option<u64>,
    /// Fail the next call.
    fail_next: bool,
    /// Successful allocations.
    allocs: u64,
    /// Frees.
    frees: u64,
    /// Descriptors allocated and not yet freed.
    live: HashSet<usize>,
}

// SAFETY: `alloc` returns fresh `Box` memory of a `Desc`, and `free` only
// takes back what some `TestAlloc` allocated (it panics on anything else:
// the `Box` is rebuilt only for a pointer found in `live`, and the same
// pointer is never live twice). Each test frees through the allocator that
// allocated, so `live` catches every mistake.
unsafe impl DescAlloc for TestAlloc {
    fn alloc(&mut self) -> Option<NonNull<Desc>> {
        self.calls += 1;
        if self.fail_next || self.fail_at == Some(self.calls) {
            self.fail_next = false;
            return None;
        }
        let b = Box::new(MaybeUninit::<Desc>::uninit());
        let p = NonNull::new(Box::into_raw(b).cast::<Desc>())?;
        assert!(self.live.insert(p.as_ptr() as usize));
        self.allocs += 1;
        Some(p)
    }

    unsafe fn free(&mut self, d: NonNull<Desc>) {
        assert!(
            self.live.remove(&(d.as_ptr() as usize)),
            "double or foreign free of {d:p}"
        );
        self.frees += 1;
        // SAFETY: `d` came from `Box::into_raw` in `alloc` and was live.
        drop(unsafe { Box::from_raw(d.as_ptr().cast::<MaybeUninit<Desc>>()) });
    }
}

type List = PteList<TestAlloc>;

/// The `n`-th test handle (8-byte aligned, non-zero).
fn h(n: u64) -> u64 {
    0xffff_8880_0000_0000 + n * 8
}

fn sorted(mut v: Vec<u64>) -> Vec<u64> {
    v.sort_unstable();
    v
}

fn entries(l: &List) -> Vec<u64> {
    sorted(l.iter().collect())
}

/// Checks `l` against `model` (a multiset) and the list invariants.
fn check(l: &List, model: &[u64]) {
    assert!(l.is_consistent());
    assert_eq!(l.len(), model.len());
    assert_eq!(l.is_empty(), model.is_empty());
    assert_eq!(l.iter().count(), model.len());
    assert_eq!(entries(l), sorted(model.to_vec()));
    // Tails are full: the descriptors are as few as the entries allow, or
    // none when the single entry is inline.
    let c = l.chain_len();
    assert!(
        c == model.len().div_ceil(DESC_CAP) || (c == 0 && model.len() <= 1),
        "{c} descriptors for {} entries",
        model.len()
    );
}

fn filled(n: u64, a: &mut TestAlloc) -> (List, Vec<u64>) {
    let mut l = List::new();
    let model: Vec<u64> = (0..n).map(h).collect();
    for &x in &model {
        l.add(x, a).unwrap();
    }
    check(&l, &model);
    (l, model)
}

fn drain_all(l: &mut List, a: &mut TestAlloc) -> Vec<u64> {
    let mut seen = Vec::new();
    let n = l.drain(a, |x| seen.push(x));
    assert_eq!(n, seen.len());
    assert!(l.is_empty() && l.chain_len() == 0 && l.is_consistent());
    seen
}

#[test]
fn layout_is_one_word_and_two_cache_lines() {
    assert_eq!(size_of::<List>(), 8);
    assert_eq!(size_of::<Desc>(), 128);
    assert_eq!(DESC_CAP, 14);
}

#[test]
fn empty_then_inline_then_descriptors() {
    let mut a = TestAlloc::default();
    let mut l = List::default();
    check(&l, &[]);
    assert_eq!(l.iter().next(), None);

    l.add(h(1), &mut a).unwrap();
    check(&l, &[h(1)]);
    assert_eq!((l.chain_len(), a.calls), (0, 0), "one entry is inline");

    l.add(h(2), &mut a).unwrap();
    check(&l, &[h(1), h(2)]);
    assert_eq!((l.chain_len(), a.allocs), (1, 1));

    let mut model = vec![h(1), h(2)];
    for n in 3..=DESC_CAP as u64 {
        l.add(h(n), &mut a).unwrap();
        model.push(h(n));
    }
    check(&l, &model);
    assert_eq!((l.chain_len(), a.allocs), (1, 1), "one full descriptor");

    l.add(h(100), &mut a).unwrap();
    model.push(h(100));
    check(&l, &model);
    assert_eq!((l.chain_len(), a.allocs), (2, 2));

    for n in 200..200 + 2 * DESC_CAP as u64 {
        l.add(h(n), &mut a).unwrap();
        model.push(h(n));
    }
    check(&l, &model);
    assert_eq!(l.chain_len(), 4);
    // The newest descriptor comes first.
    assert_eq!(l.iter().next(), Some(h(199 + 2 * DESC_CAP as u64)));

    assert_eq!(sorted(drain_all(&mut l, &mut a)), sorted(model));
    assert_eq!((a.allocs, a.frees), (4, 4));
}

#[test]
fn removal_keeps_tails_full_and_frees_empty_heads() {
    let mut a = TestAlloc::default();
    let (mut l, mut model) = filled(3 * DESC_CAP as u64 + 2, &mut a);
    assert_eq!(l.chain_len(), 4);
    // Remove from the oldest (tail) descriptor: the head gives up an entry.
    assert!(l.remove(h(0), &mut a));
    model.retain(|&x| x != h(0));
    check(&l, &model);
    assert_eq!((l.chain_len(), a.frees), (4, 0));
    assert!(l.remove(h(1), &mut a));
    model.retain(|&x| x != h(1));
    check(&l, &model);
    assert_eq!(
        (l.chain_len(), a.frees),
        (3, 1),
        "the emptied head is freed"
    );
    // Remove everything but one, in an order that hits heads and tails.
    while model.len() > 1 {
        let x = model[model.len() / 2];
        assert!(l.remove(x, &mut a));
        model.retain(|&y| y != x);
        check(&l, &model);
    }
    assert_eq!(l.chain_len(), 1, "one entry left stays in its descriptor");
    assert!(l.remove(model[0], &mut a));
    check(&l, &[]);
    assert_eq!((a.allocs, a.frees), (4, 4));
    assert!(a.live.is_empty());
}

#[test]
fn remove_of_absent_or_bad_handles_changes_nothing() {
    let mut a = TestAlloc::default();
    for n in [0, 1, 2, DESC_CAP as u64, 40] {
        let (mut l, model) = filled(n, &mut a);
        for x in [h(1000), 0, 1, 2, 3, h(1) | 1, h(1) | 2, u64::MAX] {
            assert!(!l.remove(x, &mut a));
            check(&l, &model);
        }
        drain_all(&mut l, &mut a);
    }
    assert!(a.live.is_empty());
}

#[test]
fn bad_handles_are_refused() {
    let mut a = TestAlloc::default();
    for n in [0, 1, 2, DESC_CAP as u64] {
        let (mut l, model) = filled(n, &mut a);
        for x in [0, 1, 2, 3, 5, 6, 7, h(3) | 1, h(3) | 2, u64::MAX] {
            assert_eq!(l.add(x, &mut a), Err(AddError::BadHandle));
            check(&l, &model);
        }
        // Two low bits clear is enough.
        l.add(4, &mut a).unwrap();
        let mut m = model.clone();
        m.push(4);
        check(&l, &m);
        drain_all(&mut l, &mut a);
    }
    assert!(a.live.is_empty());
}

#[test]
fn duplicates_are_kept_as_separate_entries() {
    let mut a = TestAlloc::default();
    let mut l = List::new();
    for _ in 0..3 {
        l.add(h(7), &mut a).unwrap();
    }
    l.add(h(8), &mut a).unwrap();
    check(&l, &[h(7), h(7), h(7), h(8)]);
    assert!(l.remove(h(7), &mut a));
    check(&l, &[h(7), h(7), h(8)]);
    let mut n = 0;
    assert_eq!(l.retain(&mut a, |x| x != h(7) || (n += 1, n == 1).1), 1);
    check(&l, &[h(7), h(8)]);
    assert_eq!(sorted(drain_all(&mut l, &mut a)), vec![h(7), h(8)]);
    assert!(a.live.is_empty());
}

#[test]
fn invalid_lists_can_only_be_cleared() {
    let mut a = TestAlloc::default();
    for n in [0, 1, 2, DESC_CAP as u64, DESC_CAP as u64 + 1, 50] {
        let (mut l, mut model) = filled(n, &mut a);
        assert!(!l.is_invalid());
        l.mark_invalid();
        assert!(l.is_invalid());
        check(&l, &model);
        let calls = a.calls;
        assert_eq!(l.add(h(999), &mut a), Err(AddError::Invalid));
        assert_eq!(l.add(0, &mut a), Err(AddError::Invalid));
        assert_eq!(a.calls, calls, "a refused add does not allocate");
        check(&l, &model);
        if let Some(&x) = model.first() {
            assert!(l.remove(x, &mut a));
            model.remove(0);
            check(&l, &model);
        }
        let removed = l.retain(&mut a, |x| x % 16 == 0);
        model.retain(|&x| x % 16 == 0);
        assert_eq!(removed + model.len() + usize::from(n > 0), n as usize);
        check(&l, &model);
        assert!(l.is_invalid());
        assert_eq!(sorted(drain_all(&mut l, &mut a)), sorted(model));
        assert!(l.is_invalid(), "the flag survives a drain");
        assert_eq!(l.add(h(1), &mut a), Err(AddError::Invalid));
        check(&l, &[]);
    }
    assert!(a.live.is_empty());
}

#[test]
fn drain_visits_each_entry_once_and_frees_everything() {
    for n in 0..5 * DESC_CAP as u64 {
        let mut a = TestAlloc::default();
        let (mut l, model) = filled(n, &mut a);
        let seen = drain_all(&mut l, &mut a);
        assert_eq!(sorted(seen), model);
        assert_eq!(a.allocs, a.frees);
        assert!(a.live.is_empty());
        // The list is usable again.
        l.add(h(5), &mut a).unwrap();
        check(&l, &[h(5)]);
        drain_all(&mut l, &mut a);
    }
}

#[test]
fn retain_compacts_and_frees() {
    let preds: [fn(u64) -> bool; 6] = [
        |_| true,
        |_| false,
        |x| x % 16 == 0,
        |x| (x / 8) % 3 == 0,
        |x| (x / 8) % 7 != 0,
        |x| (x / 8) > 30,
    ];
    for n in 0..6 * DESC_CAP as u64 {
        for (k, p) in preds.iter().enumerate() {
            let mut a = TestAlloc::default();
            let (mut l, mut model) = filled(n, &mut a);
            // Also start from lists whose head is not the last added to.
            if k % 2 == 1 && n > 3 {
                assert!(l.remove(h(n / 2), &mut a));
                model.retain(|&x| x != h(n / 2));
            }
            let mut visited = Vec::new();
            let removed = l.retain(&mut a, |x| {
                visited.push(x);
                p(x)
            });
            assert_eq!(sorted(visited), sorted(model.clone()));
            let before = model.len();
            model.retain(|&x| p(x));
            assert_eq!(removed, before - model.len());
            check(&l, &model);
            assert_eq!(a.live.len(), l.chain_len());
            drain_all(&mut l, &mut a);
            assert!(a.live.is_empty());
        }
    }
}

#[test]
fn failed_allocation_leaves_the_list_unchanged() {
    // Fail the k-th allocation while building lists through every
    // transition, then finish and clean up.
    for k in 1..=8 {
        let mut a = TestAlloc {
            fail_at: Some(k),
            ..TestAlloc::default()
        };
        let mut l = List::new();
        let mut model = Vec::new();
        let mut failures = 0;
        for n in 0..10 * DESC_CAP as u64 {
            let before = (entries(&l), l.chain_len(), a.live.len());
            match l.add(h(n), &mut a) {
                Ok(()) => model.push(h(n)),
                Err(e) => {
                    assert_eq!(e, AddError::AllocFailed);
                    failures += 1;
                    assert_eq!((entries(&l), l.chain_len(), a.live.len()), before);
                }
            }
            check(&l, &model);
            assert_eq!(a.live.len(), l.chain_len());
        }
        assert_eq!(failures, 1, "the k-th call failed once");
        assert_eq!(sorted(drain_all(&mut l, &mut a)), sorted(model));
        assert_eq!(a.allocs, a.frees);
        assert!(a.live.is_empty());
    }
}

#[test]
fn chain_buckets_are_powers_of_two() {
    let want = [
        (0, 0),
        (1, 1),
        (2, 2),
        (3, 3),
        (4, 3),
        (5, 4),
        (8, 4),
        (9, 5),
        (16, 5),
        (17, 6),
        (32, 6),
        (33, 7),
        (1000, 7),
        (usize::MAX, 7),
    ];
    for (descs, bucket) in want {
        assert_eq!(chain_bucket(descs), bucket, "{descs} descriptors");
        assert!(chain_bucket(descs) < CHAIN_BUCKETS);
    }
}

#[test]
fn random_operations_match_a_multiset_model() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    // Several lists share one allocator, as the rmaps of a VM do.
    const LISTS: usize = 4;
    let mut a = TestAlloc::default();
    let mut lists: Vec<List> = (0..LISTS).map(|_| List::new()).collect();
    let mut models: Vec<Vec<u64>> = vec![Vec::new(); LISTS];
    let mut ops = 0u64;
    let mut stats = [0u64; 8];
    for round in 0..200_000u64 {
        let i = rnd(LISTS as u64) as usize;
        let (l, m) = (&mut lists[i], &mut models[i]);
        // Phases that grow, shrink and churn lists; a small handle pool in
        // some phases makes duplicates common.
        let grow = [70, 30, 50][(round / 5000 % 3) as usize];
        let pool = [40, 400, 6][(round / 7000 % 3) as usize];
        let x = h(1 + rnd(pool));
        match rnd(1000) {
            0..=1 => {
                let seen = l.drain(&mut a, |_| {});
                assert_eq!(seen, m.len());
                m.clear();
                if l.is_invalid() {
                    // An invalid list is only cleared; start a fresh one.
                    *l = List::new();
                }
                stats[0] += 1;
            }
            2 => {
                l.mark_invalid();
                stats[1] += 1;
            }
            3..=20 => {
                let salt = rnd(1 << 20);
                let keep = |y: u64| (y.wrapping_mul(salt | 1) >> 7) % 4 != 0;
                let before = m.len();
                let removed = l.retain(&mut a, keep);
                m.retain(|&y| keep(y));
                assert_eq!(removed, before - m.len());
                stats[2] += 1;
            }
            r if r < 21 + grow * 10 - 10 => {
                a.fail_next = rnd(16) == 0;
                let before = (entries(l), l.chain_len());
                match l.add(x, &mut a) {
                    Ok(()) => {
                        assert!(!l.is_invalid());
                        m.push(x);
                        stats[3] += 1;
                    }
                    Err(AddError::Invalid) => {
                        assert!(l.is_invalid());
                        assert_eq!((entries(l), l.chain_len()), before);
                        stats[4] += 1;
                    }
                    Err(e) => {
                        assert_eq!(e, AddError::AllocFailed);
                        assert_eq!((entries(l), l.chain_len()), before);
                        stats[5] += 1;
                    }
                }
                a.fail_next = false;
            }
            _ => {
                // Mostly remove something present.
                let y = match m.len() {
                    0 => x,
                    n if rnd(8) != 0 => m[rnd(n as u64) as usize],
                    _ => x,
                };
                let present = m.iter().position(|&z| z == y);
                assert_eq!(l.remove(y, &mut a), present.is_some());
                if let Some(p) = present {
                    m.swap_remove(p);
                }
                stats[6] += 1;
            }
        }
        check(l, m);
        ops += 1;
        // No leak, no stray descriptor: the live ones are exactly those the
        // lists hold.
        let held: usize = lists.iter().map(|l| l.chain_len()).sum();
        assert_eq!(a.live.len(), held);
        stats[7] = stats[7].max(models[i].len() as u64);
    }
    assert!(ops >= 100_000);
    for l in &mut lists {
        l.drain(&mut a, |_| {});
    }
    assert!(a.live.is_empty());
    assert_eq!(a.allocs, a.frees);
    // Every kind of operation happened, and lists grew past a few
    // descriptors.
    assert!(stats[..7].iter().all(|&s| s > 50), "{stats:?}");
    assert!(stats[7] > 4 * DESC_CAP as u64, "{stats:?}");
}
