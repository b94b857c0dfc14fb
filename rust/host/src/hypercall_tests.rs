// SPDX-License-Identifier: GPL-2.0

//! Hypercall results and paravirtual feature gating (`x86/hypercall.rs`)
//! against KVM's behaviour (kvm_pv_test).

use crate::hypercall::*;
use crate::msr::index;

#[test]
fn hypercalls_answer_as_kvm() {
    let all = PvFeatures::default();
    let none = PvFeatures {
        enforce: true,
        bits: 0,
    };
    assert_eq!(result(nr::VAPIC_POLL_IRQ, 0, all), 0);
    // kvm_pv_test: -KVM_ENOSYS for KICK_CPU, SEND_IPI and SCHED_YIELD
    // once their features are enforced off.
    for n in [nr::KICK_CPU, nr::SEND_IPI, nr::SCHED_YIELD] {
        assert_eq!(result(n, 0, none), 0xffff_ffff_ffff_fc18, "nr {n}");
    }
    assert_eq!(result(nr::SCHED_YIELD, 0, all), 0);
    assert_eq!(result(12345, 0, all), ENOSYS);
    // Only CPL 0 may call.
    assert_eq!(result(nr::VAPIC_POLL_IRQ, 3, all), EPERM);
    assert_eq!(EPERM, u64::MAX);
}

#[test]
fn kvmclock_msrs_need_their_feature_when_enforced() {
    let all = PvFeatures::default();
    let old = PvFeatures {
        enforce: true,
        bits: 1 << feature::CLOCKSOURCE,
    };
    let none = PvFeatures {
        enforce: true,
        bits: 0,
    };
    for i in [index::KVM_WALL_CLOCK, index::KVM_SYSTEM_TIME] {
        assert!(all.msr_allowed(i) && old.msr_allowed(i) && !none.msr_allowed(i));
    }
    for i in [index::KVM_WALL_CLOCK_NEW, index::KVM_SYSTEM_TIME_NEW] {
        assert!(all.msr_allowed(i) && !old.msr_allowed(i) && !none.msr_allowed(i));
    }
    assert!(none.msr_allowed(index::PAT), "other MSRs are not gated");
}
