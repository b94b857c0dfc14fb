// SPDX-License-Identifier: GPL-2.0

//! Tests of the MMIO instruction decoder (`rust/x86/decode.rs`): known
//! encodings, and a differential test against iced-x86 on random
//! instructions of every supported form, prefix mix and code size.

use crate::decode::*;
use iced_x86::{Decoder, DecoderOptions, Instruction, OpKind, Register};

fn reg(num: u8, size: u8) -> Reg {
    Reg {
        num,
        high_byte: false,
        size,
    }
}

#[test]
fn known_encodings() {
    // mov %eax,(%rdi)
    assert_eq!(
        decode(&[0x89, 0x07], Mode::Bits64),
        Ok(Insn {
            len: 2,
            size: 4,
            access: Access::StoreReg(reg(0, 4))
        })
    );
    // mov 0x10(%rbx),%r9  (REX.W REX.R)
    assert_eq!(
        decode(&[0x4c, 0x8b, 0x4b, 0x10], Mode::Bits64),
        Ok(Insn {
            len: 4,
            size: 8,
            access: Access::Load {
                dst: reg(9, 8),
                extend: Extend::None
            }
        })
    );
    // movb $0x5a,0x1234 in real mode: disp16 then imm8
    assert_eq!(
        decode(&[0xc6, 0x06, 0x34, 0x12, 0x5a], Mode::Bits16),
        Ok(Insn {
            len: 5,
            size: 1,
            access: Access::StoreImm(0x5a)
        })
    );
    // movq $-1,(%rax): imm32 sign-extended to 64 bits
    assert_eq!(
        decode(&[0x48, 0xc7, 0x00, 0xff, 0xff, 0xff, 0xff], Mode::Bits64),
        Ok(Insn {
            len: 7,
            size: 8,
            access: Access::StoreImm(u64::MAX)
        })
    );
    // mov %ah,(%ecx): AH without REX
    assert_eq!(
        decode(&[0x88, 0x21], Mode::Bits32),
        Ok(Insn {
            len: 2,
            size: 1,
            access: Access::StoreReg(Reg {
                num: 0,
                high_byte: true,
                size: 1
            })
        })
    );
    // mov %spl,(%rcx): the same ModRM with a REX prefix means SPL
    assert_eq!(
        decode(&[0x40, 0x88, 0x21], Mode::Bits64),
        Ok(Insn {
            len: 3,
            size: 1,
            access: Access::StoreReg(reg(4, 1))
        })
    );
    // movzwl 0x8(%rsi),%eax
    assert_eq!(
        decode(&[0x0f, 0xb7, 0x46, 0x08], Mode::Bits64),
        Ok(Insn {
            len: 4,
            size: 2,
            access: Access::Load {
                dst: reg(0, 4),
                extend: Extend::Zero
            }
        })
    );
    // mov 0xfee000f0,%eax (moffs32 in 32-bit code)
    assert_eq!(
        decode(&[0xa1, 0xf0, 0x00, 0xe0, 0xfe], Mode::Bits32),
        Ok(Insn {
            len: 5,
            size: 4,
            access: Access::Load {
                dst: reg(0, 4),
                extend: Extend::None
            }
        })
    );
}

#[test]
fn unsupported_and_truncated() {
    // Register operand: no memory access.
    assert_eq!(decode(&[0x89, 0xc0], Mode::Bits64), Err(Error::Unsupported));
    // ADD to memory: not a MOV.
    assert_eq!(decode(&[0x01, 0x07], Mode::Bits64), Err(Error::Unsupported));
    // C7 with reg field 1 is not MOV.
    assert_eq!(
        decode(&[0xc7, 0x08, 0, 0, 0, 0], Mode::Bits32),
        Err(Error::Unsupported)
    );
    // Cut in the displacement.
    assert_eq!(
        decode(&[0x8b, 0x80, 0x00], Mode::Bits32),
        Err(Error::Truncated)
    );
    assert_eq!(decode(&[], Mode::Bits16), Err(Error::Truncated));
    // 16 bytes of prefixes: longer than any instruction.
    assert_eq!(decode(&[0x66; 16], Mode::Bits32), Err(Error::Truncated));
}

#[test]
fn load_results_follow_register_rules() {
    let old = 0x1122_3344_5566_7788;
    let load = |dst, size, extend| Insn {
        len: 2,
        size,
        access: Access::Load { dst, extend },
    };
    // 32-bit destination zeroes the upper half.
    assert_eq!(
        apply_load(old, 0xdead_beef, &load(reg(0, 4), 4, Extend::None)),
        0xdead_beef
    );
    // 16-bit destination keeps the rest.
    assert_eq!(
        apply_load(old, 0xbeef, &load(reg(0, 2), 2, Extend::None)),
        0x1122_3344_5566_beef
    );
    // AH.
    let ah = Reg {
        num: 0,
        high_byte: true,
        size: 1,
    };
    assert_eq!(
        apply_load(old, 0xab, &load(ah, 1, Extend::None)),
        0x1122_3344_5566_ab88
    );
    // movsbq: sign extension to 64 bits.
    assert_eq!(
        apply_load(old, 0x80, &load(reg(0, 8), 1, Extend::Sign)),
        0xffff_ffff_ffff_ff80
    );
    // movzbl: zero extension, upper half cleared.
    assert_eq!(
        apply_load(old, 0x80, &load(reg(0, 4), 1, Extend::Zero)),
        0x80
    );
    // movswl keeps 32 bits of sign.
    assert_eq!(
        apply_load(old, 0x8000, &load(reg(0, 4), 2, Extend::Sign)),
        0xffff_8000
    );
}

/// xorshift64*: deterministic, dependency-free randomness.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[(self.next() % xs.len() as u64) as usize]
    }
}

/// The general-purpose register number and high-byte flag of an iced
/// register.
fn iced_reg(r: Register) -> (u8, bool, u8) {
    let full = r.full_register();
    let num = (full as u32 - Register::RAX as u32) as u8;
    let high = matches!(r, Register::AH | Register::CH | Register::DH | Register::BH);
    (num, high, r.size() as u8)
}

/// Our view of an iced instruction, or None if it is not an MMIO MOV form.
fn expected(ins: &Instruction) -> Option<Insn> {
    let has_mem = (0..ins.op_count()).any(|i| ins.op_kind(i) == OpKind::Memory);
    if !has_mem {
        return None;
    }
    let size = ins.memory_size().size() as u8;
    let len = ins.len() as u8;
    let mnemonic = format!("{:?}", ins.mnemonic());
    let access = match mnemonic.as_str() {
        "Mov" if ins.op0_kind() == OpKind::Memory => match ins.op1_kind() {
            OpKind::Register => {
                let (num, high_byte, size) = iced_reg(ins.op1_register());
                Access::StoreReg(Reg {
                    num,
                    high_byte,
                    size,
                })
            }
            OpKind::Immediate8
            | OpKind::Immediate16
            | OpKind::Immediate32
            | OpKind::Immediate32to64 => {
                let mask = if size == 8 {
                    u64::MAX
                } else {
                    (1u64 << (8 * size)) - 1
                };
                Access::StoreImm(ins.immediate(1) & mask)
            }
            _ => return None,
        },
        "Mov" | "Movzx" | "Movsx" if ins.op1_kind() == OpKind::Memory => {
            if ins.op0_kind() != OpKind::Register {
                return None;
            }
            let (num, high_byte, rsize) = iced_reg(ins.op0_register());
            let extend = match mnemonic.as_str() {
                "Movzx" => Extend::Zero,
                "Movsx" => Extend::Sign,
                _ => Extend::None,
            };
            Access::Load {
                dst: Reg {
                    num,
                    high_byte,
                    size: rsize,
                },
                extend,
            }
        }
        _ => return None,
    };
    Some(Insn { len, size, access })
}

#[test]
fn differential_against_iced() {
    let prefixes = [0x66u8, 0x67, 0x2e, 0x36, 0x3e, 0x26, 0x64, 0x65, 0xf2, 0xf3];
    let opcodes: [&[u8]; 14] = [
        &[0x88],
        &[0x89],
        &[0x8a],
        &[0x8b],
        &[0xc6],
        &[0xc7],
        &[0xa0],
        &[0xa1],
        &[0xa2],
        &[0xa3],
        &[0x0f, 0xb6],
        &[0x0f, 0xb7],
        &[0x0f, 0xbe],
        &[0x0f, 0xbf],
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut compared = 0;
    for mode in [Mode::Bits16, Mode::Bits32, Mode::Bits64] {
        let bitness = match mode {
            Mode::Bits16 => 16,
            Mode::Bits32 => 32,
            Mode::Bits64 => 64,
        };
        for _ in 0..60_000 {
            let mut bytes = Vec::with_capacity(20);
            for _ in 0..(rng.next() % 3) {
                bytes.push(rng.pick(&prefixes));
            }
            if mode == Mode::Bits64 && rng.next() % 2 == 0 {
                bytes.push(0x40 | (rng.next() % 16) as u8);
            }
            bytes.extend_from_slice(rng.pick(&opcodes));
            while bytes.len() < 15 {
                bytes.push(rng.next() as u8);
            }
            let mut d = Decoder::new(bitness, &bytes, DecoderOptions::NONE);
            let ins = d.decode();
            let ours = decode(&bytes, mode);
            if ins.is_invalid() {
                continue;
            }
            match expected(&ins) {
                Some(want) => {
                    assert_eq!(
                        ours,
                        Ok(want),
                        "{mode:?} {:02x?} = {:?}",
                        &bytes[..ins.len()],
                        ins.code()
                    );
                    compared += 1;
                }
                None => {
                    // Valid but not an MMIO MOV (e.g. register operand):
                    // we must not claim it.
                    assert!(
                        ours.is_err(),
                        "{mode:?} {:02x?} = {:?}: {ours:?}",
                        &bytes[..ins.len()],
                        ins.code()
                    );
                }
            }
        }
    }
    assert!(compared > 100_000, "only {compared} instructions compared");
}
