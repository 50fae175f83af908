# Prints a greeting on COM1, then powers off.
        .include "common.S"
        .globl _start
_start:
        mov $0x200000, %esp
        mov $msg, %esi
        call puts
        jmp poweroff
msg:    .asciz "hello from a tiny guest\n"
