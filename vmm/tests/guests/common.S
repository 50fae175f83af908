# Shared pieces of the tiny test guests: a PVH entry note, COM1 output and the
# ACPI S5 power-off. Guests start in 32-bit protected mode, paging off, flat
# segments, %ebx = hvm_start_info (the PVH boot ABI).

        .set COM1, 0x3f8
        .set SLEEP_CONTROL, 0x600
        .set SLP_TYP_S5_EN, 0x34        # (SLP_TYP 5 << 2) | SLP_EN

        .section .note.Xen, "a", @note
        .balign 4
        .long 4                          # name size ("Xen\0")
        .long 4                          # descriptor size
        .long 18                         # XEN_ELFNOTE_PHYS32_ENTRY
        .asciz "Xen"
        .balign 4
        .long _start
        .balign 4

        .text
        .code32

# putc: write %al to COM1.
putc:
        push %edx
        mov $COM1, %dx
        out %al, %dx
        pop %edx
        ret

# puts: write the NUL-terminated string at %esi.
puts:
        push %eax
1:      lodsb
        test %al, %al
        jz 2f
        call putc
        jmp 1b
2:      pop %eax
        ret

# putdigits: write the top %ecx hex digits of %eax (clobbers %eax, %ecx).
putdigits:
1:      rol $4, %eax
        push %eax
        and $0xf, %al
        add $'0', %al
        cmp $'9', %al
        jbe 2f
        add $('a' - '0' - 10), %al
2:      call putc
        pop %eax
        loop 1b
        ret

# puthex: write %eax as 8 hex digits.
puthex:
        push %ecx
        push %eax
        mov $8, %ecx
        call putdigits
        pop %eax
        pop %ecx
        ret

# puthex8: write %al as 2 hex digits (a BCD byte prints as its decimal digits).
puthex8:
        push %ecx
        push %eax
        shl $24, %eax
        mov $2, %ecx
        call putdigits
        pop %eax
        pop %ecx
        ret

newline:
        push %eax
        mov $'\n', %al
        call putc
        pop %eax
        ret

# poweroff: ACPI S5 through the sleep control register; never returns.
poweroff:
        mov $SLEEP_CONTROL, %dx
        mov $SLP_TYP_S5_EN, %al
        out %al, %dx
1:      hlt
        jmp 1b
