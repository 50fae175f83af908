/* Drives the VMM's PCI bus and virtio-pci devices as a driver would, doing what
   the kernel command line says, and prints what it saw on COM1:
     enum  list bus 0 through 0xCF8/0xCFC (dword, word and byte accesses) and
           check ECAM agrees; for virtio functions also subsystem, BAR 0 (sized
           the way an OS does) and the capability list
     blk   read sector 0 of the virtio-blk disk, then write sector 1
     blk-far
           the same, writing sector 1024 (a hole in a sparse image) instead
     blk-loop
           forever: write a sector and read it back, one request at a time, saying
           for each whether it came back and how many interrupts the queue had
     rng   read 64 bytes from virtio-rng
     net   send a DHCP DISCOVER through virtio-net and wait for the OFFER
     fs    read virtio-fs's tag, send FUSE_INIT through its request queue and read
           virtiofsd's reply; then reset the device, set it up again and repeat
     fs-outlive
           FUSE_INIT once, say "fs waiting", wait about 3 s (the host kills the
           backend meanwhile), then reset the device
   Completions are waited for by sleeping until the queue's MSI-X interrupt. */

#include "guest.h"

#define VIRTIO_VENDOR 0x1af4
#define VIRTIO_ID(type) (0x1040 + (type))
#define TYPE_NET 1
#define TYPE_BLOCK 2
#define TYPE_RNG 4
#define TYPE_FS 26

/* Common configuration registers. */
#define DEVICE_FEATURE_SELECT 0x00
#define DEVICE_FEATURE 0x04
#define DRIVER_FEATURE_SELECT 0x08
#define DRIVER_FEATURE 0x0c
#define CONFIG_MSIX_VECTOR 0x10
#define DEVICE_STATUS 0x14
#define QUEUE_SELECT 0x16
#define QUEUE_SIZE 0x18
#define QUEUE_MSIX_VECTOR 0x1a
#define QUEUE_ENABLE 0x1c
#define QUEUE_NOTIFY_OFF 0x1e
#define QUEUE_DESC 0x20
#define QUEUE_DRIVER 0x28
#define QUEUE_DEVICE 0x30

#define STATUS_ACK 1
#define STATUS_DRIVER 2
#define STATUS_DRIVER_OK 4
#define STATUS_FEATURES_OK 8

#define CAP_VENDOR 0x09
#define CAP_MSIX 0x11
#define DESC_NEXT 1
#define DESC_WRITE 2
#define QSIZE 8

struct desc {
    u64 addr;
    u32 len;
    u16 flags, next;
};

struct vq {
    u16 index, vector;
    u32 irqs_seen; /* irq_counts[vector] when a completion was last taken */
    volatile struct desc *desc;
    volatile u16 *avail; /* flags, idx, ring[QSIZE] */
    volatile u32 *used;  /* flags | idx << 16, then (id, len) pairs */
    u16 next_avail, used_seen;
    u32 doorbell;
};

struct vdev {
    u8 slot, msix_cap;
    u32 common, notify, notify_mult, device, msix;
};

static int find(u16 type) {
    for (u8 dev = 0; dev < 32; dev++)
        if (read32(ecam(dev, 0)) == ((u32)VIRTIO_ID(type) << 16 | VIRTIO_VENDOR)) return dev;
    return -1;
}

/* Enable the function and find its structures through the capability list. */
static void vdev_open(struct vdev *d, u8 slot) {
    d->slot = slot;
    u32 bar = read32(ecam(slot, 0x10)) & ~0xfu; /* upper half is 0: below 4 GiB */
    write16(ecam(slot, 0x04), read16(ecam(slot, 0x04)) | 0x6); /* memory, bus master */
    for (u8 cap = read8(ecam(slot, 0x34)); cap; cap = read8(ecam(slot, cap + 1))) {
        u8 id = read8(ecam(slot, cap));
        if (id == CAP_MSIX) {
            d->msix_cap = cap;
            d->msix = bar + (read32(ecam(slot, cap + 4)) & ~7u);
        }
        if (id != CAP_VENDOR) continue;
        u32 at = bar + read32(ecam(slot, cap + 8));
        switch (read8(ecam(slot, cap + 3))) {
        case 1: d->common = at; break;
        case 2:
            d->notify = at;
            d->notify_mult = read32(ecam(slot, cap + 16));
            break;
        case 4: d->device = at; break;
        }
    }
}

/* Reset, then accept VIRTIO_F_VERSION_1 and whichever of `wanted` the device offers. */
static int vdev_negotiate(struct vdev *d, u32 wanted) {
    u32 c = d->common;
    write8(c + DEVICE_STATUS, 0);
    write8(c + DEVICE_STATUS, STATUS_ACK);
    write8(c + DEVICE_STATUS, STATUS_ACK | STATUS_DRIVER);
    write32(c + DEVICE_FEATURE_SELECT, 1);
    if (!(read32(c + DEVICE_FEATURE) & 1)) return 0;
    write32(c + DEVICE_FEATURE_SELECT, 0);
    wanted &= read32(c + DEVICE_FEATURE);
    write32(c + DRIVER_FEATURE_SELECT, 0);
    write32(c + DRIVER_FEATURE, wanted);
    write32(c + DRIVER_FEATURE_SELECT, 1);
    write32(c + DRIVER_FEATURE, 1);
    write8(c + DEVICE_STATUS, STATUS_ACK | STATUS_DRIVER | STATUS_FEATURES_OK);
    return read8(c + DEVICE_STATUS) & STATUS_FEATURES_OK;
}

/* MSI-X entry n delivers vector IRQ_BASE + n to CPU 0; config changes use entry 0. */
static void vdev_msix(struct vdev *d, u16 entries) {
    for (u16 n = 0; n < entries; n++) {
        u32 e = d->msix + 16 * n;
        write32(e, 0xfee00000);
        write32(e + 4, 0);
        write32(e + 8, IRQ_BASE + n);
        write32(e + 12, 0); /* unmask */
    }
    u32 control = ecam(d->slot, d->msix_cap + 2);
    write16(control, read16(control) | 0x8000);
    write16(d->common + CONFIG_MSIX_VECTOR, 0);
}

/* Queue `index` in the page at `mem`, interrupting through MSI-X entry `vector`. */
static void vq_init(struct vdev *d, struct vq *q, u16 index, u32 mem, u16 vector) {
    u32 c = d->common;
    memset((void *)mem, 0, 4096);
    q->index = index;
    q->vector = vector;
    q->irqs_seen = 0;
    q->desc = (volatile struct desc *)mem;
    q->avail = (volatile u16 *)(mem + 0x80);
    q->used = (volatile u32 *)(mem + 0x100);
    q->next_avail = q->used_seen = 0;
    write16(c + QUEUE_SELECT, index);
    write16(c + QUEUE_SIZE, QSIZE);
    write32(c + QUEUE_DESC, mem);
    write32(c + QUEUE_DESC + 4, 0);
    write32(c + QUEUE_DRIVER, mem + 0x80);
    write32(c + QUEUE_DRIVER + 4, 0);
    write32(c + QUEUE_DEVICE, mem + 0x100);
    write32(c + QUEUE_DEVICE + 4, 0);
    write16(c + QUEUE_MSIX_VECTOR, vector);
    q->doorbell = d->notify + read16(c + QUEUE_NOTIFY_OFF) * d->notify_mult;
    write16(c + QUEUE_ENABLE, 1);
}

static void vq_desc(struct vq *q, u16 i, u32 addr, u32 len, u16 flags) {
    q->desc[i].addr = addr;
    q->desc[i].len = len;
    q->desc[i].flags = flags;
    q->desc[i].next = i + 1;
}

static void vq_submit(struct vq *q, u16 head) {
    q->avail[2 + q->next_avail % QSIZE] = head;
    barrier();
    q->avail[1] = ++q->next_avail;
    barrier();
    write16(q->doorbell, q->index);
}

/* Sleep until the device has used a buffer; returns its length and head. With
   `signalled`, also until the queue's interrupt has come since the last
   completion: exact with one buffer in flight (one interrupt per completion),
   while interrupts for buffers used back to back may merge into one. */
static u32 vq_wait(struct vq *q, u32 *head, int signalled) {
    while ((u16)(q->used[0] >> 16) == q->used_seen ||
           (signalled && irq_counts[q->vector] == q->irqs_seen))
        wait_for_interrupt();
    q->irqs_seen = irq_counts[q->vector];
    u32 slot = q->used_seen++ % QSIZE;
    if (head) *head = q->used[1 + 2 * slot];
    return q->used[2 + 2 * slot];
}

static void puthex_bytes(u32 addr, int n) {
    for (int i = 0; i < n; i++) puthex(read8(addr + i), 2);
}

static void enumerate(void) {
    for (u8 dev = 0; dev < 32; dev++) {
        u32 id = cf8_read32(dev, 0);
        if ((id & 0xffff) == 0xffff) continue;
        u16 vendor = cf8_read16(dev, 0);
        puts("pci 00:");
        puthex(dev, 2);
        puts(".0 ");
        puthex(vendor, 4);
        putc(':');
        puthex(cf8_read16(dev, 2), 4);
        puts(" rev ");
        puthex(cf8_read8(dev, 8), 2);
        puts(" class ");
        puthex(cf8_read8(dev, 0xb), 2);
        puthex(cf8_read8(dev, 0xa), 2);
        puthex(cf8_read8(dev, 0x9), 2);
        int same = read32(ecam(dev, 0)) == id && read32(ecam(dev, 8)) == cf8_read32(dev, 8);
        puts(same ? " ecam ok" : " ecam differs");
        if (vendor == VIRTIO_VENDOR) {
            puts(" sub ");
            puthex(read16(ecam(dev, 0x2c)), 4);
            putc(':');
            puthex(read16(ecam(dev, 0x2e)), 4);
            u32 lo = read32(ecam(dev, 0x10)), hi = read32(ecam(dev, 0x14));
            write32(ecam(dev, 0x10), 0xffffffff);
            write32(ecam(dev, 0x14), 0xffffffff);
            u32 mask = read32(ecam(dev, 0x10)) & ~0xfu;
            write32(ecam(dev, 0x10), lo);
            write32(ecam(dev, 0x14), hi);
            puts(" bar0 ");
            puthex(hi, 8);
            puthex(lo, 8);
            puts(" size ");
            puthex(~mask + 1, 8);
            puts(" caps");
            for (u8 cap = read8(ecam(dev, 0x34)); cap; cap = read8(ecam(dev, cap + 1))) {
                u8 cap_id = read8(ecam(dev, cap));
                putc(' ');
                puthex(cap_id, 2);
                if (cap_id == CAP_VENDOR) {
                    putc('.');
                    puthex(read8(ecam(dev, cap + 3)), 1);
                }
            }
        }
        putc('\n');
    }
}

static u8 blk_request(struct vq *q, u32 type, u32 sector, u32 buf) {
    u32 hdr = buf + 0x1000, status = buf + 0x1100;
    write32(hdr, type);
    write32(hdr + 4, 0);
    write32(hdr + 8, sector);
    write32(hdr + 12, 0);
    write8(status, 0xff);
    vq_desc(q, 0, hdr, 16, DESC_NEXT);
    vq_desc(q, 1, buf, 512, DESC_NEXT | (type == 0 ? DESC_WRITE : 0));
    vq_desc(q, 2, status, 1, DESC_WRITE);
    vq_submit(q, 0);
    vq_wait(q, 0, 1);
    return read8(status);
}

/* Set up the virtio-blk device with its request queue on MSI-X vector 1. */
static int blk_open(struct vdev *d, struct vq *q) {
    int slot = find(TYPE_BLOCK);
    if (slot < 0 || (vdev_open(d, slot), !vdev_negotiate(d, 0))) {
        puts("blk: no usable device\n");
        return 0;
    }
    vdev_msix(d, 2);
    vq_init(d, q, 0, 0x300000, 1);
    write8(d->common + DEVICE_STATUS, STATUS_ACK | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK);
    return 1;
}

static void blk(u32 write_sector) {
    struct vdev d = {0};
    struct vq q;
    if (!blk_open(&d, &q)) return;
    puts("blk capacity ");
    puthex(read32(d.device), 8);
    putc('\n');
    u32 buf = 0x310000;
    u8 status = blk_request(&q, 0, 0, buf);
    puts("blk read status ");
    puthex(status, 2);
    puts(" data ");
    puthex_bytes(buf, 32);
    putc('\n');
    for (u32 i = 0; i < 512; i++) write8(buf + i, (u8)(i * 7 + 3));
    status = blk_request(&q, 1, write_sector, buf);
    puts("blk write status ");
    puthex(status, 2);
    puts("\nblk irqs ");
    putdec(irq_counts[1]);
    putc('\n');
}

/* Forever: write request N's number into a sector, read it back, say whether it
   came back and how many interrupts the queue has had (one per request). */
static void blk_loop(void) {
    struct vdev d = {0};
    struct vq q;
    if (!blk_open(&d, &q)) return;
    u32 buf = 0x310000;
    for (u32 n = 1;; n++) {
        u32 sector = 8 + n % 64;
        write32(buf, n);
        u8 wrote = blk_request(&q, 1, sector, buf);
        write32(buf, 0);
        u8 read = blk_request(&q, 0, sector, buf);
        puts("blk request ");
        putdec(n);
        puts(wrote == 0 && read == 0 && read32(buf) == n ? " ok" : " FAILED");
        puts(" irqs ");
        putdec(irq_counts[1]);
        putc('\n');
        for (volatile u32 delay = 0; delay < 20000; delay++) {}
    }
}

static void rng(void) {
    struct vdev d = {0};
    struct vq q;
    int slot = find(TYPE_RNG);
    if (slot < 0 || (vdev_open(&d, slot), !vdev_negotiate(&d, 0))) {
        puts("rng: no usable device\n");
        return;
    }
    vdev_msix(&d, 2);
    vq_init(&d, &q, 0, 0x300000, 1);
    write8(d.common + DEVICE_STATUS, STATUS_ACK | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK);
    u32 buf = 0x310000;
    vq_desc(&q, 0, buf, 64, DESC_WRITE);
    vq_submit(&q, 0);
    u32 len = vq_wait(&q, 0, 1);
    puts("rng len ");
    putdec(len);
    puts(" data ");
    puthex_bytes(buf, 64);
    puts("\nrng irqs ");
    putdec(irq_counts[1]);
    putc('\n');
}

#define NET_HDR 12
#define RX_BUFS 4
#define RX_BUF 0x310000u
#define RX_BUF_LEN 0x800u
#define DHCP_XID 0x68766278u /* "hvbx" */

static void put16be(u8 *p, u16 v) { p[0] = v >> 8, p[1] = (u8)v; }
static u16 get16be(const u8 *p) { return (u16)(p[0] << 8 | p[1]); }

/* Ethernet + IPv4 + UDP + BOOTP DHCPDISCOVER from `mac`; returns its length. */
static u32 dhcp_discover(u8 *f, const u8 *mac) {
    const u32 bootp_len = 300, udp_len = 8 + bootp_len, ip_len = 20 + udp_len;
    memset(f, 0, 14 + ip_len);
    memset(f, 0xff, 6);
    memcpy(f + 6, mac, 6);
    put16be(f + 12, 0x0800);
    u8 *ip = f + 14;
    ip[0] = 0x45;
    put16be(ip + 2, ip_len);
    ip[8] = 64;
    ip[9] = 17;
    memset(ip + 16, 0xff, 4);
    u32 sum = 0;
    for (int i = 0; i < 20; i += 2) sum += get16be(ip + i);
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    put16be(ip + 10, (u16)~sum);
    u8 *udp = ip + 20;
    put16be(udp, 68);
    put16be(udp + 2, 67);
    put16be(udp + 4, udp_len);
    u8 *b = udp + 8;
    b[0] = 1; /* BOOTREQUEST */
    b[1] = 1; /* Ethernet */
    b[2] = 6;
    for (int i = 0; i < 4; i++) b[4 + i] = (u8)(DHCP_XID >> (24 - 8 * i));
    b[10] = 0x80; /* broadcast the reply */
    memcpy(b + 28, mac, 6);
    b[236] = 0x63, b[237] = 0x82, b[238] = 0x53, b[239] = 0x63;
    u8 *o = b + 240;
    o[0] = 53, o[1] = 1, o[2] = 1;       /* DHCPDISCOVER */
    o[3] = 55, o[4] = 2, o[5] = 1, o[6] = 3; /* ask for netmask and router */
    o[7] = 255;
    return 14 + ip_len;
}

/* The offered address if `f` is a DHCPOFFER for our transaction, else 0. */
static u32 dhcp_offer(const u8 *f, u32 len) {
    const u8 *ip = f + 14;
    if (len < 14 + 20 + 8 + 244 || get16be(f + 12) != 0x0800 || ip[9] != 17) return 0;
    const u8 *udp = ip + 4 * (ip[0] & 0xf);
    const u8 *b = udp + 8;
    if (get16be(udp + 2) != 68 || b[0] != 2) return 0;
    if (((u32)b[4] << 24 | b[5] << 16 | b[6] << 8 | b[7]) != DHCP_XID) return 0;
    for (const u8 *o = b + 240; o < f + len && *o != 255; o += *o ? 2 + o[1] : 1)
        if (o[0] == 53 && o[2] == 2) return (u32)b[16] << 24 | b[17] << 16 | b[18] << 8 | b[19];
    return 0;
}

static void net(void) {
    struct vdev d = {0};
    struct vq rx, tx;
    int slot = find(TYPE_NET);
    if (slot < 0 || (vdev_open(&d, slot), !vdev_negotiate(&d, 1 << 5 /* MAC */))) {
        puts("net: no usable device\n");
        return;
    }
    vdev_msix(&d, 3);
    vq_init(&d, &rx, 0, 0x300000, 1);
    vq_init(&d, &tx, 1, 0x301000, 2);
    write8(d.common + DEVICE_STATUS, STATUS_ACK | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK);
    u8 mac[6];
    puts("net mac ");
    for (int i = 0; i < 6; i++) {
        mac[i] = read8(d.device + i);
        puthex(mac[i], 2);
        if (i < 5) putc(':');
    }
    putc('\n');
    for (u16 i = 0; i < RX_BUFS; i++) {
        vq_desc(&rx, i, RX_BUF + i * RX_BUF_LEN, RX_BUF_LEN, DESC_WRITE);
        vq_submit(&rx, i);
    }
    u8 *frame = (u8 *)0x320000;
    memset(frame, 0, NET_HDR);
    u32 len = dhcp_discover(frame + NET_HDR, mac);
    vq_desc(&tx, 0, (u32)frame, NET_HDR + len, 0);
    vq_submit(&tx, 0);
    vq_wait(&tx, 0, 1);
    puts("net sent discover\n");
    for (int frames = 1; frames <= 16; frames++) {
        u32 head;
        u32 got = vq_wait(&rx, &head, 0);
        u32 addr = RX_BUF + head * RX_BUF_LEN;
        u32 yiaddr = got > NET_HDR ? dhcp_offer((const u8 *)addr + NET_HDR, got - NET_HDR) : 0;
        if (yiaddr) {
            puts("net dhcp offer ");
            for (int i = 3; i >= 0; i--) {
                putdec(yiaddr >> (8 * i) & 0xff);
                if (i) putc('.');
            }
            puts(" after ");
            putdec(frames);
            /* Frames came by interrupt too: at least one rx interrupt. */
            while (!irq_counts[rx.vector]) wait_for_interrupt();
            puts(" frames\nnet rx irqs ");
            putdec(irq_counts[1]);
            putc('\n');
            return;
        }
        vq_desc(&rx, head, addr, RX_BUF_LEN, DESC_WRITE);
        vq_submit(&rx, head);
    }
    puts("net: no offer\n");
}

#define FUSE_INIT 26
#define FS_REQUEST 0x310000u
#define FS_REPLY 0x311000u

/* Set the virtio-fs device up (hiprio queue 0, request queue 1) and send one
   FUSE_INIT numbered `unique`; prints the reply. */
static int fs_session(struct vdev *d, u32 unique) {
    struct vq hiprio, req;
    if (!vdev_negotiate(d, 0)) return 0;
    vdev_msix(d, 3);
    vq_init(d, &hiprio, 0, 0x300000, 1);
    vq_init(d, &req, 1, 0x301000, 2);
    write8(d->common + DEVICE_STATUS, STATUS_ACK | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK);
    /* fuse_in_header (40 bytes), then fuse_init_in (64): protocol 7.31, no flags. */
    memset((void *)FS_REQUEST, 0, 104);
    write32(FS_REQUEST, 104);
    write32(FS_REQUEST + 4, FUSE_INIT);
    write32(FS_REQUEST + 8, unique);
    write32(FS_REQUEST + 12, 0x68766278); /* "hvbx" */
    write32(FS_REQUEST + 40, 7);
    write32(FS_REQUEST + 44, 31);
    write32(FS_REQUEST + 48, 0x20000);
    memset((void *)FS_REPLY, 0xaa, 256);
    vq_desc(&req, 0, FS_REQUEST, 104, DESC_NEXT);
    vq_desc(&req, 1, FS_REPLY, 256, DESC_WRITE);
    vq_submit(&req, 0);
    u32 len = vq_wait(&req, 0, 1);
    /* fuse_out_header: len, error, unique; fuse_init_out: major, minor, ... */
    puts("fs init len ");
    putdec(len);
    puts(" unique ");
    puthex(read32(FS_REPLY + 12), 8);
    puthex(read32(FS_REPLY + 8), 8);
    puts(" error ");
    puthex(read32(FS_REPLY + 4), 8);
    puts(" major ");
    putdec(read32(FS_REPLY + 16));
    puts(" minor ");
    putdec(read32(FS_REPLY + 20));
    puts(" irqs ");
    putdec(irq_counts[req.vector]);
    putc('\n');
    return 1;
}

/* The CMOS clock's seconds register (BCD), as it ticks. */
static u8 rtc_seconds(void) {
    outb(0x70, 0);
    return inb(0x71);
}

static void fs(int outlive) {
    struct vdev d = {0};
    int slot = find(TYPE_FS);
    if (slot < 0) {
        puts("fs: no device\n");
        return;
    }
    vdev_open(&d, slot);
    puts("fs tag ");
    for (int i = 0; i < 36 && read8(d.device + i); i++) putc((char)read8(d.device + i));
    puts(" request queues ");
    putdec(read32(d.device + 36));
    putc('\n');
    if (!fs_session(&d, 1)) {
        puts("fs: negotiation failed\n");
        return;
    }
    if (outlive) {
        puts("fs waiting\n");
        for (int ticks = 0; ticks < 3; ticks++) {
            u8 now = rtc_seconds();
            while (rtc_seconds() == now) {}
        }
        write8(d.common + DEVICE_STATUS, 0);
        puts("fs reset\n");
        return;
    }
    /* vdev_negotiate starts with a device reset: the backend's queues stop and the
       device is set up anew. */
    for (int i = 0; i < 4; i++) irq_counts[i] = 0;
    if (!fs_session(&d, 2)) puts("fs: negotiation failed after reset\n");
}

void guest_main(u32 start_info) {
    const char *mode = (const char *)read32(start_info + 24); /* cmdline_paddr */
    interrupts_init();
    if (streq(mode, "enum"))
        enumerate();
    else if (streq(mode, "blk"))
        blk(1);
    else if (streq(mode, "blk-far"))
        blk(1024);
    else if (streq(mode, "blk-loop"))
        blk_loop();
    else if (streq(mode, "rng"))
        rng();
    else if (streq(mode, "net"))
        net();
    else if (streq(mode, "fs"))
        fs(0);
    else if (streq(mode, "fs-outlive"))
        fs(1);
    else
        puts("unknown mode\n");
    puts("done\n");
}
