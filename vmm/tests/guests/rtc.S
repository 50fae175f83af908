# Reads the CMOS clock and prints "rtc CCYY-MM-DD HH:MM" (BCD bytes print as digits).
        .include "common.S"
        .globl _start
_start:
        mov $0x200000, %esp
        mov $label, %esi
        call puts
        mov $0x32, %bl
        call cmos_out
        mov $0x09, %bl
        call cmos_out
        mov $'-', %al
        call putc
        mov $0x08, %bl
        call cmos_out
        mov $'-', %al
        call putc
        mov $0x07, %bl
        call cmos_out
        mov $' ', %al
        call putc
        mov $0x04, %bl
        call cmos_out
        mov $':', %al
        call putc
        mov $0x02, %bl
        call cmos_out
        call newline
        jmp poweroff

# cmos_out: print CMOS register %bl.
cmos_out:
        mov %bl, %al
        out %al, $0x70
        in $0x71, %al
        call puthex8
        ret
label:  .asciz "rtc "
