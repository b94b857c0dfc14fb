// SPDX-License-Identifier: GPL-2.0
/*
 * Loading and unloading rkvm.ko on a CPU with VMX. Each test starts and ends
 * with the module unloaded.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "rkvm_util.h"

static void ensure_unloaded(struct __test_metadata *_metadata)
{
	if (rkvm_loaded())
		ASSERT_EQ(0, rkvm_unload(O_NONBLOCK));
	ASSERT_FALSE(rkvm_loaded());
}

/* /dev/rkvm opens and answers; returns the fd. */
static int open_and_ask(struct __test_metadata *_metadata)
{
	int fd = open("/dev/rkvm", O_RDWR | O_CLOEXEC);

	EXPECT_LE(0, fd) TH_LOG("open /dev/rkvm: %s", strerror(errno));
	if (fd >= 0)
		EXPECT_EQ(12, ioctl(fd, KVM_GET_API_VERSION, 0));
	return fd;
}

TEST(cpu_model_has_vmx)
{
	ASSERT_TRUE(cpu_has_vmx()) TH_LOG("this suite needs a CPU model with VMX");
}

TEST(load_logs_capabilities_and_creates_device)
{
	char log[4096];
	int kmsg, fd;

	ensure_unloaded(_metadata);
	kmsg = kmsg_open();
	ASSERT_LE(0, kmsg);
	ASSERT_EQ(0, rkvm_load());
	EXPECT_TRUE(kmsg_find(kmsg, "rkvm: VMX revision", log, sizeof(log)))
		TH_LOG("kernel log since load:\n%s", log);
	close(kmsg);
	fd = open_and_ask(_metadata);
	close(fd);
	ASSERT_EQ(0, rkvm_unload(O_NONBLOCK));
	errno = 0;
	EXPECT_EQ(-1, open("/dev/rkvm", O_RDWR));
	EXPECT_EQ(ENOENT, errno);
}

TEST(load_unload_cycles)
{
	ensure_unloaded(_metadata);
	for (int i = 0; i < 8; i++) {
		ASSERT_EQ(0, rkvm_load()) TH_LOG("cycle %d", i);
		close(open_and_ask(_metadata));
		ASSERT_EQ(0, rkvm_unload(O_NONBLOCK)) TH_LOG("cycle %d", i);
		ASSERT_NE(0, access("/dev/rkvm", F_OK)) TH_LOG("cycle %d", i);
	}
}

TEST(second_load_is_eexist)
{
	ensure_unloaded(_metadata);
	ASSERT_EQ(0, rkvm_load());
	EXPECT_EQ(-EEXIST, rkvm_load());
	EXPECT_EQ(0, rkvm_unload(O_NONBLOCK));
}

TEST(open_fd_pins_module)
{
	int fd, fd2;

	ensure_unloaded(_metadata);
	ASSERT_EQ(0, rkvm_load());
	fd = open_and_ask(_metadata);
	ASSERT_LE(0, fd);
	fd2 = dup(fd);
	EXPECT_EQ(-EWOULDBLOCK, rkvm_unload(O_NONBLOCK));
	EXPECT_TRUE(rkvm_loaded());
	close(fd);
	/* The duplicate still holds the file. */
	EXPECT_EQ(-EWOULDBLOCK, rkvm_unload(O_NONBLOCK));
	EXPECT_EQ(12, ioctl(fd2, KVM_GET_API_VERSION, 0));
	close(fd2);
	EXPECT_EQ(0, rkvm_unload(O_NONBLOCK));
	EXPECT_FALSE(rkvm_loaded());
}

TEST(vm_and_vcpu_fds_pin_module)
{
	int dev, vm, vcpu;

	ensure_unloaded(_metadata);
	ASSERT_EQ(0, rkvm_load());
	dev = open("/dev/rkvm", O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, dev);
	vm = ioctl(dev, KVM_CREATE_VM, 0);
	ASSERT_LE(0, vm);
	vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	ASSERT_LE(0, vcpu);
	close(dev);
	EXPECT_EQ(-EWOULDBLOCK, rkvm_unload(O_NONBLOCK));
	close(vm);
	/* The vCPU fd keeps the VM, and so the module, alive. */
	EXPECT_EQ(-EWOULDBLOCK, rkvm_unload(O_NONBLOCK));
	close(vcpu);
	EXPECT_EQ(0, rkvm_unload(O_NONBLOCK));
}

TEST(unload_when_absent_is_enoent)
{
	ensure_unloaded(_metadata);
	EXPECT_EQ(-ENOENT, rkvm_unload(O_NONBLOCK));
}

TEST_HARNESS_MAIN
