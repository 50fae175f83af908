/* /sbin/init of the lab's crash-consistency root file system. On a root without
   /crash-test.bin it writes 1 MiB of a known pattern there, fsyncs the file and the
   root folder, says so on the console and waits: the test kills the VMM with SIGKILL
   now. On a root that has the file (the boot after the crash) it reads it back,
   says whether every byte is as written, and powers off.

   No libc: static, freestanding, raw system calls (freestanding.h). */

#define GUEST_NAME "crash test"
#include "freestanding.h"

#define MS_REMOUNT 32
#define FILE_SIZE (1 << 20)
#define FILE_PATH "/crash-test.bin"

static unsigned char data[FILE_SIZE];

/* Differs from block to block, so that a block written in the wrong place shows. */
static unsigned char pattern(u64 i) { return (unsigned char)(i * 7 + (i >> 12) * 13 + 1); }

__attribute__((noreturn)) static void read_back(i64 fd) {
    i64 total = 0;
    for (;;) {
        i64 got = sys(SYS_read, fd, data + total, FILE_SIZE - total);
        check(got, "read " FILE_PATH);
        if (got == 0 || (total += got) == FILE_SIZE) break;
    }
    i64 wrong = 0;
    for (i64 i = 0; i < total; i++) wrong += data[i] != pattern(i);
    say("crash test: found " FILE_PATH ", ");
    say_number(total);
    say(" bytes, ");
    say_number(wrong);
    say(" differ from what was written\n");
    power_off();
}

int main(void) {
    i64 fd = sys(SYS_open, "/dev/console", O_WRONLY, 0);
    if (fd >= 0) console = (int)fd;
    check(syscall6(SYS_mount, 0, (i64) "/", 0, MS_REMOUNT, 0), "remount / read-write");
    fd = sys(SYS_open, FILE_PATH, O_RDONLY, 0);
    if (fd >= 0) read_back(fd);
    if (fd != -ENOENT) check(fd, "open " FILE_PATH);

    say("crash test: no " FILE_PATH " yet; writing it\n");
    for (u64 i = 0; i < FILE_SIZE; i++) data[i] = pattern(i);
    fd = sys(SYS_open, FILE_PATH, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    check(fd, "create " FILE_PATH);
    for (i64 done = 0; done < FILE_SIZE;) {
        i64 wrote = sys(SYS_write, fd, data + done, FILE_SIZE - done);
        check(wrote, "write " FILE_PATH);
        done += wrote;
    }
    check(sys(SYS_fsync, fd, 0, 0), "fsync " FILE_PATH);
    check(sys(SYS_close, fd, 0, 0), "close " FILE_PATH);
    i64 root = sys(SYS_open, "/", O_RDONLY | O_DIRECTORY, 0);
    check(root, "open /");
    check(sys(SYS_fsync, root, 0, 0), "fsync /");
    say("crash test: written and synced; waiting to be killed\n");
    for (;;) sys(SYS_pause, 0, 0, 0);
}
