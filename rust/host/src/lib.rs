// SPDX-License-Identifier: GPL-2.0

//! Host build of rkvm's pure logic.
//!
//! Each module below is the very file the kernel module compiles, included by
//! path, so `cargo test` here checks the code that runs in the kernel. Those
//! files depend on `core` only.

#![allow(dead_code)]

#[path = "../../vmx/caps.rs"]
pub mod caps;

#[cfg(test)]
mod caps_tests;
