// SPDX-License-Identifier: GPL-2.0

//! String I/O planning against a simple element-by-element model.

use crate::pio::*;

/// The reference: walk element by element until a limit is hit.
fn model(base: u64, offset: u64, mask: u64, size: u64, df: bool, remaining: u64) -> Option<Chunk> {
    let first = base.wrapping_add(offset);
    let page = first >> 12;
    let mut count = 0;
    let mut off = offset;
    let mut low = first;
    while count < remaining && count * size < DATA_PAGE {
        let lin = base.wrapping_add(off);
        if lin >> 12 != page || lin.wrapping_add(size - 1) >> 12 != page || off > mask - (size - 1)
        {
            break;
        }
        low = low.min(lin);
        count += 1;
        if df {
            if off < size {
                break;
            }
            off -= size;
        } else {
            if off > mask - size {
                break;
            }
            off += size;
        }
    }
    (count > 0).then_some(Chunk { count, low })
}

#[test]
fn plan_matches_the_model() {
    let mut seed = 0x1234_5678_9abc_def0u64;
    let mut rnd = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for _ in 0..200_000 {
        let addr_bytes = [2u8, 4, 8][rnd(3) as usize];
        let mask = addr_mask(addr_bytes);
        let size = [1u64, 2, 4][rnd(3) as usize];
        let base = rnd(0x10_0000) & !0xf;
        // Offsets near page ends and the wrap point are the interesting ones.
        let offset = match rnd(3) {
            0 => rnd(0x1_0000) & mask,
            1 => mask - rnd(16),
            _ => (rnd(64) << 12 | (4096 - rnd(16))) & mask,
        };
        let df = rnd(2) == 1;
        let remaining = 1 + rnd(9000);
        assert_eq!(
            plan(base, offset, mask, size, df, remaining),
            model(base, offset, mask, size, df, remaining),
            "base {base:#x} offset {offset:#x} mask {mask:#x} size {size} df {df} n {remaining}"
        );
    }
}

#[test]
fn index_registers_keep_their_upper_bits_as_the_cpu_does() {
    assert_eq!(
        set_index(0xdead_0000_1234_ffff, 0x1_0000, 2),
        0xdead_0000_1234_0000
    );
    assert_eq!(set_index(0xdead_0000_1234_ffff, 0x1_0000_0005, 4), 5);
    assert_eq!(set_index(1, 0x1_0000_0005, 8), 0x1_0000_0005);
}
