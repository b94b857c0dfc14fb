// SPDX-License-Identifier: GPL-2.0

//! String port I/O (INS/OUTS, with or without REP): how many elements one
//! exit to user space may carry, and how the index registers move.
//!
//! One exit moves a run of elements that lies in one 4 KiB guest page,
//! fits the PIO data page and does not wrap the address-size mask; the
//! instruction is re-executed for the rest, as a CPU would after an
//! interrupt between iterations. Pure logic over `core`, shared with the
//! host tests.

/// Bytes in the PIO data page.
pub(crate) const DATA_PAGE: u64 = 4096;

/// One string I/O step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Chunk {
    /// Elements to move in this exit.
    pub(crate) count: u64,
    /// Guest-linear address of the lowest byte the run touches.
    pub(crate) low: u64,
}

/// The address-size mask: 0xffff, 0xffff_ffff or all ones.
pub(crate) fn addr_mask(addr_bytes: u8) -> u64 {
    match addr_bytes {
        2 => 0xffff,
        4 => 0xffff_ffff,
        _ => u64::MAX,
    }
}

/// Plans one step: `base` is the segment base, `offset` the index register
/// (already masked), `size` the element size, `df` RFLAGS.DF, `remaining`
/// the elements left (1 without REP, never 0). `None` when even the first
/// element straddles a page or the wrap point (rkvm does not split an
/// element).
pub(crate) fn plan(
    base: u64,
    offset: u64,
    mask: u64,
    size: u64,
    df: bool,
    remaining: u64,
) -> Option<Chunk> {
    let lin = base.wrapping_add(offset);
    let in_page = lin & 0xfff;
    if in_page + size > 4096 || offset > mask - (size - 1) {
        return None;
    }
    let (room_page, room_wrap) = if df {
        (in_page / size + 1, (offset / size).saturating_add(1))
    } else {
        (
            (4096 - in_page) / size,
            ((mask - offset - (size - 1)) / size).saturating_add(1),
        )
    };
    let count = remaining
        .min(DATA_PAGE / size)
        .min(room_page)
        .min(room_wrap);
    let low = if df {
        lin.wrapping_sub((count - 1) * size)
    } else {
        lin
    };
    Some(Chunk { count, low })
}

/// Writes `value` into a register whose low `addr_bytes` bytes are the
/// index: 16-bit addressing keeps the upper bits, 32-bit addressing
/// zero-extends (as a 32-bit register write does), 64-bit replaces all.
pub(crate) fn set_index(reg: u64, value: u64, addr_bytes: u8) -> u64 {
    match addr_bytes {
        2 => (reg & !0xffff) | (value & 0xffff),
        4 => value & 0xffff_ffff,
        _ => value,
    }
}
