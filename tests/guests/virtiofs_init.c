/* A whole init for an initramfs that checks a virtio-fs share end to end: load the
   modules the initramfs carries as /mod0.ko, /mod1.ko, ... in that order (virtio's
   PCI transport, fuse, virtiofs), mount the share tagged "lab-share" at /mnt, print
   what /mnt/from-l1.txt holds, write "L2 saw: " and that to /mnt/from-l2.txt,
   unmount and power off. Every step says on the console how it went.

   No libc: static, freestanding, raw system calls (freestanding.h). */

#define GUEST_NAME "l2 virtiofs"
#include "freestanding.h"

static void load_modules(void) {
    char path[] = "/mod0.ko";
    for (char i = 0; i < 10; i++) {
        path[4] = '0' + i;
        i64 fd = sys(SYS_open, path, O_RDONLY, 0);
        if (fd == -ENOENT) return;
        check(fd, path);
        check(sys(SYS_finit_module, fd, "", 0), path);
        sys(SYS_close, fd, 0, 0);
    }
}

int main(void) {
    sys(SYS_mkdir, "/dev", 0755, 0);
    sys(SYS_mount, "devtmpfs", "/dev", "devtmpfs");
    console = (int)sys(SYS_open, "/dev/console", O_WRONLY, 0);
    say("l2 virtiofs: init started\n");
    load_modules();
    check(sys(SYS_mkdir, "/mnt", 0755, 0), "mkdir /mnt");
    check(syscall6(SYS_mount, (i64) "lab-share", (i64) "/mnt", (i64) "virtiofs", 0, 0),
          "mount -t virtiofs lab-share /mnt");
    say("l2 virtiofs: mounted\n");

    static char seen[512] = "L2 saw: ";
    const u64 prefix = 8;
    i64 in = sys(SYS_open, "/mnt/from-l1.txt", O_RDONLY, 0);
    check(in, "open /mnt/from-l1.txt");
    i64 got = sys(SYS_read, in, seen + prefix, sizeof seen - prefix - 1);
    check(got, "read /mnt/from-l1.txt");
    sys(SYS_close, in, 0, 0);
    say("l2 read: ");
    sys(SYS_write, console, seen + prefix, got);

    i64 out = sys(SYS_open, "/mnt/from-l2.txt", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    check(out, "create /mnt/from-l2.txt");
    check(sys(SYS_write, out, seen, prefix + got), "write /mnt/from-l2.txt");
    check(sys(SYS_fsync, out, 0, 0), "fsync /mnt/from-l2.txt");
    check(sys(SYS_close, out, 0, 0), "close /mnt/from-l2.txt");
    check(sys(SYS_umount2, "/mnt", 0, 0), "umount /mnt");
    say("l2 virtiofs: wrote from-l2.txt and unmounted\n");
    power_off();
}
