# A minimal bzImage: a boot sector and setup header as the Linux boot protocol
# 2.15 describes them, then a protected-mode part whose 64-bit entry (offset
# 0x200) prints from long mode what the loader handed over in boot_params
# (%rsi): the e820 entry count and the command line. Then ACPI S5.
# Assembled and turned into a flat file with objcopy -O binary.

        .set COM1, 0x3f8
        .set SETUP_SECTS, 1

        .text
        .code16
        .org 0x1f1
        .byte SETUP_SECTS        # 0x1f1 setup_sects
        .word 0                  # 0x1f2 root_flags
        .long 0                  # 0x1f4 syssize
        .word 0                  # 0x1f8 ram_size
        .word 0xffff             # 0x1fa vid_mode
        .word 0                  # 0x1fc root_dev
        .word 0xaa55             # 0x1fe boot_flag
        .byte 0xeb, 0x66         # 0x200 jump over the header
        .ascii "HdrS"            # 0x202 header
        .word 0x020f             # 0x206 version 2.15
        .long 0                  # 0x208 realmode_swtch
        .word 0                  # 0x20c start_sys_seg
        .word 0                  # 0x20e kernel_version
        .byte 0                  # 0x210 type_of_loader
        .byte 0x01               # 0x211 loadflags: LOADED_HIGH
        .word 0                  # 0x212 setup_move_size
        .long 0x100000           # 0x214 code32_start
        .long 0                  # 0x218 ramdisk_image
        .long 0                  # 0x21c ramdisk_size
        .long 0                  # 0x220 bootsect_kludge
        .word 0                  # 0x224 heap_end_ptr
        .byte 0, 0               # 0x226 ext_loader_ver, ext_loader_type
        .long 0                  # 0x228 cmd_line_ptr
        .long 0x7fffffff         # 0x22c initrd_addr_max
        .long 0x200000           # 0x230 kernel_alignment
        .byte 0                  # 0x234 relocatable_kernel
        .byte 21                 # 0x235 min_alignment
        .word 0x0001             # 0x236 xloadflags: XLF_KERNEL_64
        .long 2047               # 0x238 cmdline_size
        .long 0                  # 0x23c hardware_subarch
        .quad 0                  # 0x240 hardware_subarch_data
        .long 0                  # 0x248 payload_offset
        .long 0                  # 0x24c payload_length
        .quad 0                  # 0x250 setup_data
        .quad 0x100000           # 0x258 pref_address
        .long 0x10000            # 0x260 init_size
        .long 0                  # 0x264 handover_offset

        # The protected-mode part starts after the boot sector and SETUP_SECTS
        # sectors; the loader puts it at 1 MiB and enters 64-bit code at +0x200.
        .org (SETUP_SECTS + 1) * 512 + 0x200
        .code64
startup_64:
        mov %rsi, %rbx                     # boot_params
        lea banner(%rip), %rsi
        call puts
        lea e820_label(%rip), %rsi
        call puts
        movzbl 0x1e8(%rbx), %eax           # e820_entries
        call puthex8
        mov $'\n', %al
        call putc
        lea cmdline_label(%rip), %rsi
        call puts
        mov 0x228(%rbx), %esi              # cmd_line_ptr
        call puts
        mov $'\n', %al
        call putc
        mov $0x600, %dx                    # ACPI sleep control: S5
        mov $0x34, %al
        out %al, %dx
1:      hlt
        jmp 1b

putc:
        mov $COM1, %dx
        out %al, %dx
        ret
puts:
        lodsb
        test %al, %al
        jz 1f
        call putc
        jmp puts
1:      ret
puthex8:
        mov %al, %cl
        shr $4, %al
        call nibble
        mov %cl, %al
        and $0xf, %al
nibble:
        add $'0', %al
        cmp $'9', %al
        jbe 1f
        add $('a' - '0' - 10), %al
1:      jmp putc

banner:        .asciz "hello from 64-bit mode\n"
e820_label:    .asciz "e820 entries "
cmdline_label: .asciz "cmdline "
        .balign 512
