// SPDX-License-Identifier: GPL-2.0

//! The binary statistics file (`rust/stats/layout.rs`): header, id string,
//! descriptor and data layout against an image built independently here
//! from the text of `Documentation/virt/kvm/api.rst`; reads of every range
//! (odd offsets, straddling blocks, at and past the end); the table rules;
//! the id strings; the histogram conversion.

use crate::stats_layout::*;

/// A table with every kind of statistic rkvm uses.
const TABLE: &[Desc] = &[
    Desc::cumulative("exits"),
    Desc::instant("mmu_shadow_pages"),
    Desc::peak("max_mmu_rmap_size"),
    Desc::log_hist("rmap_len_hist", 5),
    Desc::cumulative("a_name_of_exactly_forty_seven_bytes_long_123456"),
];

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(b[at..at + 4].try_into().unwrap())
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes(b[at..at + 2].try_into().unwrap())
}

fn i16_at(b: &[u8], at: usize) -> i16 {
    i16::from_ne_bytes(b[at..at + 2].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(b[at..at + 8].try_into().unwrap())
}

/// `s`, NUL-padded to `NAME_SIZE`.
fn padded(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    assert!(v.len() < NAME_SIZE);
    v.resize(NAME_SIZE, 0);
    v
}

/// The file as the documentation describes it, built without the module's
/// code: header, id, then each descriptor (flags, exponent, size, offset,
/// bucket_size, name), then the values.
fn reference(descs: &[Desc], id: &str, values: &[u64]) -> Vec<u8> {
    let n = descs.len() as u32;
    let mut f = Vec::new();
    for v in [0u32, 48, n, 24, 72, 72 + 64 * n] {
        f.extend_from_slice(&v.to_ne_bytes());
    }
    f.extend(padded(id));
    let mut offset = 0u32;
    for d in descs {
        f.extend_from_slice(&d.flags.to_ne_bytes());
        f.extend_from_slice(&d.exponent.to_ne_bytes());
        f.extend_from_slice(&d.size.to_ne_bytes());
        f.extend_from_slice(&offset.to_ne_bytes());
        f.extend_from_slice(&d.bucket_size.to_ne_bytes());
        f.extend(padded(d.name));
        offset += 8 * u32::from(d.size);
    }
    for v in values {
        f.extend_from_slice(&v.to_ne_bytes());
    }
    f
}

/// The whole file, read in one call.
fn image(descs: &[Desc], id: &[u8; NAME_SIZE], values: &[u64]) -> Vec<u8> {
    let mut out = vec![0xaa; file_len(descs) + 100];
    let n = read(descs, id, values, 0, &mut out);
    out.truncate(n);
    out
}

fn test_values() -> Vec<u64> {
    (0..num_values(TABLE) as u64)
        .map(|i| 0x0102_0304_0506_0700 + i)
        .collect()
}

fn id_str(id: &[u8; NAME_SIZE]) -> &str {
    let end = id.iter().position(|&b| b == 0).unwrap();
    std::str::from_utf8(&id[..end]).unwrap()
}

#[test]
fn table_is_valid_and_sized() {
    assert!(valid(TABLE));
    assert_eq!(num_values(TABLE), 1 + 1 + 1 + 5 + 1);
    assert_eq!(data_offset(TABLE), 72 + 5 * 64);
    assert_eq!(file_len(TABLE), 72 + 5 * 64 + 9 * 8);
    assert_eq!(DESC_SIZE, 64);
    assert_eq!(ID_OFFSET, 24);
    assert_eq!(DESC_OFFSET, 72);
}

#[test]
fn whole_file_matches_the_documented_layout() {
    let values = test_values();
    let id = vm_id(4321);
    let got = image(TABLE, &id, &values);
    assert_eq!(got, reference(TABLE, "kvm-4321", &values));
}

#[test]
fn header_fields() {
    let f = image(TABLE, &vm_id(1), &test_values());
    assert_eq!(u32_at(&f, header::FLAGS), 0);
    assert_eq!(u32_at(&f, header::NAME_SIZE), 48);
    assert_eq!(u32_at(&f, header::NUM_DESC), TABLE.len() as u32);
    let id = u32_at(&f, header::ID_OFFSET) as usize;
    let desc = u32_at(&f, header::DESC_OFFSET) as usize;
    let data = u32_at(&f, header::DATA_OFFSET) as usize;
    // Multiples of 8, in order, without overlap, ending at the file's end.
    for off in [id, desc, data] {
        assert_eq!(off % 8, 0, "{off}");
    }
    assert!(id >= header::SIZE);
    assert!(desc >= id + NAME_SIZE);
    assert!(data >= desc + TABLE.len() * DESC_SIZE);
    assert_eq!(data + num_values(TABLE) * 8, f.len());
    assert_eq!(&f[id..id + 5], b"kvm-1");
}

#[test]
fn descriptors() {
    let f = image(TABLE, &vm_id(1), &test_values());
    let mut offset = 0;
    for (i, d) in TABLE.iter().enumerate() {
        let at = DESC_OFFSET + i * DESC_SIZE;
        assert_eq!(u32_at(&f, at + desc::FLAGS), d.flags, "{}", d.name);
        assert_eq!(i16_at(&f, at + desc::EXPONENT), 0);
        assert_eq!(u16_at(&f, at + desc::SIZE), d.size);
        assert_eq!(u32_at(&f, at + desc::OFFSET), offset);
        assert_eq!(u32_at(&f, at + desc::BUCKET_SIZE), 0);
        let name = &f[at + desc::NAME..at + DESC_SIZE];
        assert_eq!(name, &padded(d.name)[..]);
        assert_eq!(*name.last().unwrap(), 0, "NUL-terminated");
        offset += 8 * u32::from(d.size);
    }
    // Types, unit none, base 10.
    let flags: Vec<u32> = TABLE.iter().map(|d| d.flags).collect();
    assert_eq!(
        flags,
        [
            TYPE_CUMULATIVE,
            TYPE_INSTANT,
            TYPE_PEAK,
            TYPE_LOG_HIST,
            TYPE_CUMULATIVE
        ]
    );
    assert_eq!((TYPE_CUMULATIVE, TYPE_INSTANT, TYPE_PEAK), (0, 1, 2));
    assert_eq!((TYPE_LINEAR_HIST, TYPE_LOG_HIST), (3, 4));
    assert_eq!(TABLE[3].size, 5);
}

#[test]
fn data_block_holds_the_values_in_order() {
    let values = test_values();
    let f = image(TABLE, &vm_id(1), &values);
    let data = data_offset(TABLE);
    for (i, v) in values.iter().enumerate() {
        assert_eq!(u64_at(&f, data + 8 * i), *v);
    }
}

#[test]
fn missing_values_read_as_zero() {
    let f = image(TABLE, &vm_id(1), &[7]);
    let data = data_offset(TABLE);
    assert_eq!(u64_at(&f, data), 7);
    assert!(f[data + 8..].iter().all(|&b| b == 0));
}

/// Every (offset, length) window reads what the whole image holds there,
/// and never touches the buffer past what it returns.
#[test]
fn every_window_matches_the_whole_file() {
    let values = test_values();
    let id = vcpu_id(77, 3);
    let whole = image(TABLE, &id, &values);
    let len = whole.len();
    for pos in 0..len + 10 {
        for n in [0, 1, 2, 3, 5, 7, 8, 13, 24, 63, 64, 65, 100, 4096] {
            let mut buf = vec![0x5a; n + 4];
            let got = read(TABLE, &id, &values, pos as u64, &mut buf[..n]);
            let want = len.saturating_sub(pos).min(n);
            assert_eq!(got, want, "pos {pos} n {n}");
            assert_eq!(&buf[..got], &whole[pos.min(len)..pos.min(len) + got]);
            assert!(buf[got..].iter().all(|&b| b == 0x5a), "pos {pos} n {n}");
        }
    }
}

#[test]
fn reads_at_odd_offsets_across_blocks() {
    let values = test_values();
    let id = vm_id(9);
    let whole = image(TABLE, &id, &values);
    // From inside the header into the id; from inside the id into the
    // first descriptor; from the last descriptor into the data.
    for (pos, n) in [(21, 9), (67, 11), (data_offset(TABLE) - 5, 13)] {
        let mut buf = vec![0; n];
        assert_eq!(read(TABLE, &id, &values, pos as u64, &mut buf), n);
        assert_eq!(buf, &whole[pos..pos + n]);
    }
}

#[test]
fn read_at_and_past_the_end_returns_0() {
    let len = file_len(TABLE) as u64;
    let mut buf = [0u8; 16];
    for pos in [len, len + 1, len + 4096, u64::MAX / 2, u64::MAX] {
        assert_eq!(read(TABLE, &vm_id(1), &[], pos, &mut buf), 0, "{pos}");
        assert_eq!(read_len(TABLE, pos, 16), 0);
    }
    // Straddling the end: what is left.
    assert_eq!(read(TABLE, &vm_id(1), &[], len - 3, &mut buf), 3);
    assert_eq!(read_len(TABLE, len - 3, 16), 3);
    // An empty buffer reads nothing.
    assert_eq!(read(TABLE, &vm_id(1), &[], 0, &mut []), 0);
}

#[test]
fn reads_data_only_when_the_range_reaches_it() {
    let data = data_offset(TABLE) as u64;
    assert!(!reads_data(TABLE, 0, data as usize));
    assert!(reads_data(TABLE, 0, data as usize + 1));
    assert!(reads_data(TABLE, data, 1));
    assert!(!reads_data(TABLE, data, 0));
    assert!(reads_data(TABLE, data + 5, 3));
    assert!(!reads_data(TABLE, 10, 20));
}

#[test]
fn ids_follow_kvm() {
    assert_eq!(id_str(&vm_id(1234)), "kvm-1234");
    assert_eq!(id_str(&vcpu_id(1234, 0)), "kvm-1234/vcpu-0");
    assert_eq!(id_str(&vcpu_id(4194304, 63)), "kvm-4194304/vcpu-63");
    assert_eq!(
        id_str(&vcpu_id(i32::MIN, u32::MAX)),
        "kvm--2147483648/vcpu-4294967295"
    );
    // The rest of the block is zero.
    let id = vcpu_id(5, 6);
    assert!(id[id_str(&id).len()..].iter().all(|&b| b == 0));
}

#[test]
fn validity_rules() {
    let ok = Desc::cumulative("x");
    assert!(valid(&[ok]));
    assert!(valid(&[]));
    let name47 = "n".repeat(NAME_SIZE - 1).leak();
    let name48 = "n".repeat(NAME_SIZE).leak();
    assert!(valid(&[Desc::cumulative(name47)]));
    assert!(!valid(&[Desc::cumulative(name48)]));
    assert!(!valid(&[Desc::cumulative("")]));
    assert!(!valid(&[Desc::cumulative("a\0b")]));
    // Names are unique.
    assert!(!valid(&[ok, Desc::instant("y"), Desc::peak("x")]));
    assert!(valid(&[ok, Desc::instant("xx")]));
    // Flags: known type, unit and base, nothing else.
    let with_flags = |flags| Desc { flags, ..ok };
    assert!(valid(&[with_flags(TYPE_PEAK | UNIT_MAX | BASE_MAX)]));
    for bad in [
        5,
        0xf,
        UNIT_MAX + (1 << 4),
        BASE_MAX + (1 << 8),
        1 << 12,
        1 << 31,
    ] {
        assert!(!valid(&[with_flags(bad)]), "{bad:#x}");
    }
    // Sizes: one value, or at least one bucket for histograms.
    assert!(!valid(&[Desc { size: 2, ..ok }]));
    assert!(!valid(&[Desc { size: 0, ..ok }]));
    assert!(!valid(&[Desc::log_hist("h", 0)]));
    assert!(valid(&[Desc::log_hist("h", 1)]));
    // A bucket size for linear histograms, and only for them.
    let linear = Desc {
        flags: TYPE_LINEAR_HIST,
        size: 4,
        ..ok
    };
    assert!(!valid(&[linear]));
    assert!(valid(&[Desc {
        bucket_size: 10,
        ..linear
    }]));
    assert!(!valid(&[Desc {
        bucket_size: 10,
        ..ok
    }]));
    assert!(!valid(&[Desc {
        bucket_size: 10,
        ..Desc::log_hist("h", 4)
    }]));
}

#[test]
fn checked_passes_a_valid_table_through() {
    const T: &[Desc] = checked(TABLE);
    assert_eq!(T.len(), TABLE.len());
}

#[test]
#[should_panic(expected = "invalid statistics descriptor table")]
fn checked_rejects_an_invalid_table() {
    let _ = checked(&[Desc::cumulative("x"), Desc::cumulative("x")]);
}

/// A sample's bucket in KVM's log histogram (`kvm_stats_log_hist_update()`:
/// `fls64`, capped at the last bucket).
fn kvm_bucket(v: u64, n: usize) -> usize {
    ((64 - v.leading_zeros()) as usize).min(n - 1)
}

/// A sample's bucket in the power-of-two histogram of `MmuStats` (`[2^i,
/// 2^(i+1))`, capped).
fn pow2_bucket(v: u64, n: usize) -> usize {
    (63 - v.leading_zeros() as usize).min(n - 1)
}

#[test]
fn pow2_histogram_becomes_kvm_log_histogram() {
    const N: usize = 16;
    // Samples of every magnitude, 1 to 2^40.
    let samples: Vec<u64> = (0..40)
        .flat_map(|s| [1u64 << s, (1u64 << s) + 1, (2u64 << s) - 1])
        .collect();
    let mut pow2 = [0u64; N];
    let mut want = [0u64; N];
    for &v in &samples {
        pow2[pow2_bucket(v, N)] += 1;
        want[kvm_bucket(v, N)] += 1;
    }
    let mut got = [0xdead; N];
    pow2_to_log_hist(&pow2, &mut got);
    assert_eq!(got, want);
    assert_eq!(got[0], 0, "no sample of 0");
    assert_eq!(got.iter().sum::<u64>(), samples.len() as u64);
}

#[test]
fn pow2_histogram_conversion_edges() {
    let mut out = [9u64; 4];
    pow2_to_log_hist(&[1, 2, 3, 4], &mut out);
    assert_eq!(out, [0, 1, 2, 3 + 4]);
    pow2_to_log_hist(&[0; 4], &mut out);
    assert_eq!(out, [0; 4]);
    let mut one = [5u64; 1];
    pow2_to_log_hist(&[1, 2], &mut one);
    assert_eq!(one, [3]);
    pow2_to_log_hist(&[1, 2], &mut []);
}
