// SPDX-License-Identifier: GPL-2.0
/*
 * Build-time check of selftests/abi_layout.h against the kernel's own KVM
 * uapi header: the object compiles only if every size and offset matches.
 */
#include <stddef.h>
#include <linux/kvm.h>

#define SIZE(s, n) _Static_assert(sizeof(struct s) == (n), "size of struct " #s);
#define OFFSET(s, f, n) _Static_assert(offsetof(struct s, f) == (n), "offset of " #s "." #f);
#include "abi_layout.h"
