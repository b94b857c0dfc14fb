// SPDX-License-Identifier: GPL-2.0

//! The bytes of a binary statistics file (`KVM_GET_STATS_FD`).
//!
//! The file is the one `Documentation/virt/kvm/api.rst` ("KVM_GET_STATS_FD")
//! describes and `virt/kvm/binary_stats.c` serves, with the block placement
//! of KVM's `kvm_vm_stats_header` (`arch/x86/kvm/x86.c`): the header at 0,
//! the id string right after it, then the descriptors, then the data.
//!
//! ```text
//! 0                      header      struct kvm_stats_header, 24 bytes
//! ID_OFFSET = 24         id string   NAME_SIZE bytes, NUL-padded
//! DESC_OFFSET = 72       descriptors num_desc * DESC_SIZE bytes: each a
//!                                    struct kvm_stats_desc (16 bytes) and
//!                                    its name, NUL-padded to NAME_SIZE
//! data_offset            data        one u64 per value, in descriptor order
//! ```
//!
//! Every block starts at a multiple of 8 (24, 72, 72 + 64 n). All numbers
//! are in the CPU's byte order. Nothing here knows where the values come
//! from: [`read`] renders any byte range of the file from a descriptor
//! table, an id and a snapshot of the values. Pure `core`, shared with the
//! host tests.

use core::fmt::Write;

/// Bytes of the id string and of each descriptor's name, trailing NUL
/// included (KVM's `KVM_STATS_NAME_SIZE`, `include/linux/kvm_types.h`).
pub(crate) const NAME_SIZE: usize = 48;

/// `struct kvm_stats_header`: six `u32`s; the byte offset of each field.
pub(crate) mod header {
    /// Always 0.
    pub(crate) const FLAGS: usize = 0;
    /// [`super::NAME_SIZE`].
    pub(crate) const NAME_SIZE: usize = 4;
    /// The number of descriptors.
    pub(crate) const NUM_DESC: usize = 8;
    /// Where the id string starts.
    pub(crate) const ID_OFFSET: usize = 12;
    /// Where the descriptors start.
    pub(crate) const DESC_OFFSET: usize = 16;
    /// Where the data starts.
    pub(crate) const DATA_OFFSET: usize = 20;
    /// The size of the header.
    pub(crate) const SIZE: usize = 24;
}

/// `struct kvm_stats_desc` without its name: the byte offset of each field.
pub(crate) mod desc {
    /// `u32`: type, unit and base (`TYPE_*`, `UNIT_*`, `BASE_*`).
    pub(crate) const FLAGS: usize = 0;
    /// `i16`: the power of the base that scales the unit.
    pub(crate) const EXPONENT: usize = 4;
    /// `u16`: the number of `u64` values.
    pub(crate) const SIZE: usize = 6;
    /// `u32`: the byte offset of the first value in the data block.
    pub(crate) const OFFSET: usize = 8;
    /// `u32`: the bucket width of a linear histogram, else 0.
    pub(crate) const BUCKET_SIZE: usize = 12;
    /// The name (`char name[]`), [`super::NAME_SIZE`] bytes in the file.
    pub(crate) const NAME: usize = 16;
}

/// Where the id string starts.
pub(crate) const ID_OFFSET: usize = header::SIZE;
/// Where the descriptors start.
pub(crate) const DESC_OFFSET: usize = ID_OFFSET + NAME_SIZE;
/// Bytes per descriptor in the file, its name included.
pub(crate) const DESC_SIZE: usize = desc::NAME + NAME_SIZE;

// The type, unit and base fields of a descriptor's flags
// (`include/uapi/linux/kvm.h`).

/// A count that only grows.
pub(crate) const TYPE_CUMULATIVE: u32 = 0;
/// A value that goes up and down.
pub(crate) const TYPE_INSTANT: u32 = 1;
/// The largest value seen.
pub(crate) const TYPE_PEAK: u32 = 2;
/// A histogram with buckets of `bucket_size`.
pub(crate) const TYPE_LINEAR_HIST: u32 = 3;
/// A histogram whose bucket 0 is `[0, 1)`, bucket `i` (`0 < i < size - 1`)
/// `[2^(i-1), 2^i)` and the last bucket `[2^(size-2), +inf)`: KVM puts a
/// sample `v` in bucket `min(fls64(v), size - 1)`.
pub(crate) const TYPE_LOG_HIST: u32 = 4;
/// The type bits.
pub(crate) const TYPE_MASK: u32 = 0xf;
/// A plain count.
pub(crate) const UNIT_NONE: u32 = 0 << 4;
/// The largest unit KVM defines (`KVM_STATS_UNIT_BOOLEAN`).
pub(crate) const UNIT_MAX: u32 = 4 << 4;
/// The unit bits.
pub(crate) const UNIT_MASK: u32 = 0xf << 4;
/// The exponent is a power of ten.
pub(crate) const BASE_POW10: u32 = 0 << 8;
/// The largest base KVM defines (`KVM_STATS_BASE_POW2`).
pub(crate) const BASE_MAX: u32 = 1 << 8;
/// The base bits.
pub(crate) const BASE_MASK: u32 = 0xf << 8;

/// One statistic: a descriptor without its data offset, which follows from
/// its place in the table.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Desc {
    /// The name: at most `NAME_SIZE - 1` bytes, no NUL.
    pub(crate) name: &'static str,
    /// Type, unit and base.
    pub(crate) flags: u32,
    /// The power of the base that scales the unit.
    pub(crate) exponent: i16,
    /// How many `u64` values (1, or the number of histogram buckets).
    pub(crate) size: u16,
    /// The bucket width of a linear histogram, else 0.
    pub(crate) bucket_size: u32,
}

impl Desc {
    /// A plain number of type `ty` (KVM's `STATS_DESC_*COUNTER`).
    const fn count(name: &'static str, ty: u32) -> Self {
        Self {
            name,
            flags: ty | UNIT_NONE | BASE_POW10,
            exponent: 0,
            size: 1,
            bucket_size: 0,
        }
    }

    /// A cumulative count of events.
    pub(crate) const fn cumulative(name: &'static str) -> Self {
        Self::count(name, TYPE_CUMULATIVE)
    }

    /// A count of things present now.
    pub(crate) const fn instant(name: &'static str) -> Self {
        Self::count(name, TYPE_INSTANT)
    }

    /// The largest value seen.
    pub(crate) const fn peak(name: &'static str) -> Self {
        Self::count(name, TYPE_PEAK)
    }

    /// A logarithmic histogram of plain numbers with `buckets` buckets (see
    /// [`TYPE_LOG_HIST`]).
    pub(crate) const fn log_hist(name: &'static str, buckets: u16) -> Self {
        let mut d = Self::count(name, TYPE_LOG_HIST);
        d.size = buckets;
        d
    }

    /// The descriptor as it appears in the file, its values starting at
    /// byte `offset` of the data block.
    fn bytes(&self, offset: u32) -> [u8; DESC_SIZE] {
        let mut b = [0; DESC_SIZE];
        put(&mut b, desc::FLAGS, &self.flags.to_ne_bytes());
        put(&mut b, desc::EXPONENT, &self.exponent.to_ne_bytes());
        put(&mut b, desc::SIZE, &self.size.to_ne_bytes());
        put(&mut b, desc::OFFSET, &offset.to_ne_bytes());
        put(&mut b, desc::BUCKET_SIZE, &self.bucket_size.to_ne_bytes());
        // Truncated to keep the final NUL if the name were too long
        // (`valid` rules that out for the tables rkvm builds).
        let name = self.name.as_bytes();
        let n = name.len().min(NAME_SIZE - 1);
        put(&mut b, desc::NAME, &name[..n]);
        b
    }
}

/// Copies `src` into `dst` at `at` (both in bounds by construction).
fn put(dst: &mut [u8], at: usize, src: &[u8]) {
    if let Some(d) = dst.get_mut(at..at + src.len()) {
        d.copy_from_slice(src);
    }
}

/// The number of `u64` values the data block holds.
pub(crate) const fn num_values(descs: &[Desc]) -> usize {
    let mut n = 0;
    let mut i = 0;
    while i < descs.len() {
        n += descs[i].size as usize;
        i += 1;
    }
    n
}

/// Where the data block starts.
pub(crate) const fn data_offset(descs: &[Desc]) -> usize {
    DESC_OFFSET + descs.len() * DESC_SIZE
}

/// The size of the file.
pub(crate) const fn file_len(descs: &[Desc]) -> usize {
    data_offset(descs) + num_values(descs) * 8
}

/// Whether two byte strings are equal (`const`).
const fn bytes_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Whether `descs` makes a file KVM's rules allow: names non-empty, without
/// NUL, shorter than [`NAME_SIZE`] and distinct; type, unit and base known
/// and no other flag bit; one value for non-histograms and at least one for
/// histograms; a bucket size for linear histograms only; every offset
/// within `u32`. The tables are built through [`checked`].
pub(crate) const fn valid(descs: &[Desc]) -> bool {
    if file_len(descs) > u32::MAX as usize {
        return false;
    }
    let mut i = 0;
    while i < descs.len() {
        let d = &descs[i];
        let name = d.name.as_bytes();
        if name.is_empty() || name.len() >= NAME_SIZE {
            return false;
        }
        let mut k = 0;
        while k < name.len() {
            if name[k] == 0 {
                return false;
            }
            k += 1;
        }
        let ty = d.flags & TYPE_MASK;
        if ty > TYPE_LOG_HIST
            || d.flags & UNIT_MASK > UNIT_MAX
            || d.flags & BASE_MASK > BASE_MAX
            || d.flags & !(TYPE_MASK | UNIT_MASK | BASE_MASK) != 0
        {
            return false;
        }
        let hist = ty == TYPE_LINEAR_HIST || ty == TYPE_LOG_HIST;
        if d.size == 0 || (!hist && d.size != 1) {
            return false;
        }
        if (ty == TYPE_LINEAR_HIST) != (d.bucket_size != 0) {
            return false;
        }
        let mut j = 0;
        while j < i {
            if bytes_eq(descs[j].name.as_bytes(), name) {
                return false;
            }
            j += 1;
        }
        i += 1;
    }
    true
}

/// `descs`, once [`valid`]; a `const` use fails to compile otherwise.
pub(crate) const fn checked(descs: &[Desc]) -> &[Desc] {
    assert!(valid(descs), "invalid statistics descriptor table");
    descs
}

/// The header of the file of `descs`.
fn header_bytes(descs: &[Desc]) -> [u8; header::SIZE] {
    let mut b = [0; header::SIZE];
    let fields = [
        (header::FLAGS, 0),
        (header::NAME_SIZE, NAME_SIZE),
        (header::NUM_DESC, descs.len()),
        (header::ID_OFFSET, ID_OFFSET),
        (header::DESC_OFFSET, DESC_OFFSET),
        (header::DATA_OFFSET, data_offset(descs)),
    ];
    for (at, v) in fields {
        // `valid` bounds every offset by u32::MAX.
        put(&mut b, at, &(v as u32).to_ne_bytes());
    }
    b
}

/// Fills `out` with bytes `pos..pos + out.len()` of the file of `descs`,
/// `id` and `values` (in descriptor order; missing ones read as 0) and
/// returns how many bytes that is: fewer than `out.len()` at the end of the
/// file, 0 at or past it (as `kvm_stats_read()`).
pub(crate) fn read(
    descs: &[Desc],
    id: &[u8; NAME_SIZE],
    values: &[u64],
    pos: u64,
    out: &mut [u8],
) -> usize {
    let len = read_len(descs, pos, out.len());
    if len == 0 {
        return 0;
    }
    // `read_len` is 0 unless `pos` is inside the file, so it fits a usize.
    let pos = pos as usize;
    let out = &mut out[..len];
    let end = pos + len;
    // Copies the part of `src`, which sits at file offset `at`, that falls
    // in `pos..end`.
    let mut copy = |at: usize, src: &[u8]| {
        let lo = at.max(pos);
        let hi = (at + src.len()).min(end);
        if lo < hi {
            out[lo - pos..hi - pos].copy_from_slice(&src[lo - at..hi - at]);
        }
    };
    let overlaps = |at: usize, n: usize| at < end && pos < at + n;

    copy(0, &header_bytes(descs));
    copy(ID_OFFSET, id);
    let mut value_offset = 0u32;
    for (i, d) in descs.iter().enumerate() {
        let at = DESC_OFFSET + i * DESC_SIZE;
        if overlaps(at, DESC_SIZE) {
            copy(at, &d.bytes(value_offset));
        }
        // `valid` bounds the data block by u32::MAX.
        value_offset = value_offset.wrapping_add(u32::from(d.size) * 8);
    }
    let data = data_offset(descs);
    for i in 0..num_values(descs) {
        let at = data + i * 8;
        if overlaps(at, 8) {
            copy(at, &values.get(i).copied().unwrap_or(0).to_ne_bytes());
        }
    }
    len
}

/// How many bytes a read of `count` bytes at `pos` returns.
pub(crate) fn read_len(descs: &[Desc], pos: u64, count: usize) -> usize {
    let total = file_len(descs) as u64;
    if pos >= total {
        return 0;
    }
    (total - pos).min(count as u64) as usize
}

/// Whether a read of `len` bytes at `pos` includes any of the data block
/// (the values need not be sampled otherwise).
pub(crate) fn reads_data(descs: &[Desc], pos: u64, len: usize) -> bool {
    len != 0 && pos.saturating_add(len as u64) > data_offset(descs) as u64
}

/// Writes into a fixed buffer, dropping what does not fit.
struct IdWriter {
    buf: [u8; NAME_SIZE],
    len: usize,
}

impl Write for IdWriter {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for &b in s.as_bytes() {
            // Keep the last byte for the NUL, like snprintf.
            if self.len < NAME_SIZE - 1 {
                self.buf[self.len] = b;
                self.len += 1;
            }
        }
        Ok(())
    }
}

/// The id string of a VM created by task `pid` ("kvm-%d", as
/// `kvm_create_vm()` in `virt/kvm/kvm_main.c`).
pub(crate) fn vm_id(pid: i32) -> [u8; NAME_SIZE] {
    let mut w = IdWriter {
        buf: [0; NAME_SIZE],
        len: 0,
    };
    let _ = write!(w, "kvm-{pid}");
    w.buf
}

/// The id string of vCPU `vcpu_id` created by task `pid` ("kvm-%d/vcpu-%d",
/// as `kvm_vcpu_init()`).
pub(crate) fn vcpu_id(pid: i32, vcpu_id: u32) -> [u8; NAME_SIZE] {
    let mut w = IdWriter {
        buf: [0; NAME_SIZE],
        len: 0,
    };
    let _ = write!(w, "kvm-{pid}/vcpu-{vcpu_id}");
    w.buf
}

/// Converts a power-of-two histogram whose bucket `i` counts the samples in
/// `[2^i, 2^(i+1))` (the last bucket open-ended; no bucket for 0) into
/// KVM's layout of [`TYPE_LOG_HIST`] with as many buckets: bucket 0
/// (samples of 0) is empty, bucket `i + 1` takes bucket `i`, and the last
/// one gathers the two topmost, `[2^(n-2), +inf)`.
pub(crate) fn pow2_to_log_hist(pow2: &[u64], out: &mut [u64]) {
    out.fill(0);
    let n = out.len();
    for (i, &v) in pow2.iter().enumerate() {
        if n == 0 {
            break;
        }
        let b = (i + 1).min(n - 1);
        out[b] = out[b].wrapping_add(v);
    }
}
