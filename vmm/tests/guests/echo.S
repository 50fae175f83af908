# Prints "echo ready", then echoes every byte received on COM1 until a 'q',
# after which it powers off: the console's input and output paths in one guest.
        .include "common.S"
        .set LSR, COM1 + 5
        .globl _start
_start:
        mov $0x200000, %esp
        mov $banner, %esi
        call puts
1:      mov $LSR, %dx
        in %dx, %al
        test $1, %al                     # data ready
        jz 1b
        mov $COM1, %dx
        in %dx, %al
        call putc
        cmp $'q', %al
        jne 1b
        call newline
        jmp poweroff
banner: .asciz "echo ready\n"
