// SPDX-License-Identifier: GPL-2.0
/*
 * rkvm.ko on a CPU without VMX: loading must fail with EOPNOTSUPP (KVM's
 * errno for the same case) and a kernel log line that says why, and leave
 * nothing behind.
 */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "rkvm_util.h"

TEST(cpu_model_lacks_vmx)
{
	ASSERT_FALSE(cpu_has_vmx()) TH_LOG("this suite needs a CPU model without VMX");
}

TEST(load_refused_with_message)
{
	char log[4096];
	int kmsg = kmsg_open();

	ASSERT_LE(0, kmsg);
	ASSERT_EQ(-EOPNOTSUPP, rkvm_load());
	EXPECT_TRUE(kmsg_find(kmsg, "rkvm: cannot load: VMX not supported by the CPU", log,
			      sizeof(log)))
		TH_LOG("kernel log since load:\n%s", log);
	close(kmsg);
	EXPECT_FALSE(rkvm_loaded());
	EXPECT_NE(0, access("/dev/rkvm", F_OK));
}

TEST(refusal_repeats_cleanly)
{
	for (int i = 0; i < 4; i++) {
		ASSERT_EQ(-EOPNOTSUPP, rkvm_load()) TH_LOG("attempt %d", i);
	}
	EXPECT_FALSE(rkvm_loaded());
}

TEST_HARNESS_MAIN
