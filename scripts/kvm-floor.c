/* The floor for scripts/bench-vmm: the least a KVM VMM does for the bench's tiny
 * guest. It creates the VM as hvbox's VMM does (128 MiB of RAM, in-kernel irqchip
 * and PIT, one vCPU), runs a real-mode guest that writes the ACPI S5 value to port
 * 0x600 (as the `poweroff` guest does), and exits when that write comes out.
 * Process start, VM creation and the kernel's VM teardown at exit are all in its
 * time, as they are in the VMM's. */
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define RAM (128UL << 20)

static int check(int rc, const char *what) {
    if (rc < 0) {
        perror(what);
        _exit(1);
    }
    return rc;
}

int main(void) {
    int kvm = check(open("/dev/kvm", O_RDWR | O_CLOEXEC), "/dev/kvm");
    int vm = check(ioctl(kvm, KVM_CREATE_VM, 0), "KVM_CREATE_VM");
    unsigned char *ram = mmap(NULL, RAM, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (ram == MAP_FAILED)
        check(-1, "mmap");
    struct kvm_userspace_memory_region region = {
        .slot = 0, .guest_phys_addr = 0, .memory_size = RAM, .userspace_addr = (unsigned long)ram};
    check(ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region), "KVM_SET_USER_MEMORY_REGION");
    check(ioctl(vm, KVM_SET_TSS_ADDR, 0xfffbd000), "KVM_SET_TSS_ADDR");
    check(ioctl(vm, KVM_CREATE_IRQCHIP, 0), "KVM_CREATE_IRQCHIP");
    struct kvm_pit_config pit = {0};
    check(ioctl(vm, KVM_CREATE_PIT2, &pit), "KVM_CREATE_PIT2");
    int vcpu = check(ioctl(vm, KVM_CREATE_VCPU, 0), "KVM_CREATE_VCPU");
    int run_size = check(ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0), "KVM_GET_VCPU_MMAP_SIZE");
    struct kvm_run *run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    if (run == MAP_FAILED)
        check(-1, "mmap kvm_run");
    /* mov dx, 0x600; mov al, 0x34; out dx, al; hlt */
    static const unsigned char guest[] = {0xba, 0x00, 0x06, 0xb0, 0x34, 0xee, 0xf4};
    memcpy(ram + 0x1000, guest, sizeof guest);
    struct kvm_sregs sregs;
    check(ioctl(vcpu, KVM_GET_SREGS, &sregs), "KVM_GET_SREGS");
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    check(ioctl(vcpu, KVM_SET_SREGS, &sregs), "KVM_SET_SREGS");
    struct kvm_regs regs = {.rip = 0x1000, .rflags = 2};
    check(ioctl(vcpu, KVM_SET_REGS, &regs), "KVM_SET_REGS");
    check(ioctl(vcpu, KVM_RUN, 0), "KVM_RUN");
    if (run->exit_reason != KVM_EXIT_IO || run->io.port != 0x600) {
        fprintf(stderr, "kvm-floor: unexpected exit %u\n", run->exit_reason);
        return 1;
    }
    return 0;
}
