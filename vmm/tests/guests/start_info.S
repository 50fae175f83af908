# Prints the PVH start info: magic, command line, and each memory map entry as
# "e820 ADDR_HI ADDR_LO SIZE_HI SIZE_LO TYPE".
        .include "common.S"
        .globl _start
_start:
        mov $0x200000, %esp
        mov %ebx, %edi                   # hvm_start_info
        mov $magic_label, %esi
        call puts
        mov (%edi), %eax
        call puthex
        call newline
        mov $cmdline_label, %esi
        call puts
        mov 24(%edi), %esi               # cmdline_paddr (low half)
        call puts
        call newline
        mov 40(%edi), %ebp               # memmap_paddr (low half)
        mov 48(%edi), %ecx               # memmap_entries
1:      test %ecx, %ecx
        jz 2f
        mov $e820_label, %esi
        call puts
        mov 4(%ebp), %eax
        call puthex
        call space
        mov 0(%ebp), %eax
        call puthex
        call space
        mov 12(%ebp), %eax
        call puthex
        call space
        mov 8(%ebp), %eax
        call puthex
        call space
        mov 16(%ebp), %eax
        call puthex
        call newline
        add $24, %ebp
        dec %ecx
        jmp 1b
2:      jmp poweroff

space:
        push %eax
        mov $' ', %al
        call putc
        pop %eax
        ret
magic_label:   .asciz "magic "
cmdline_label: .asciz "cmdline "
e820_label:    .asciz "e820 "
