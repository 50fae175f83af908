# Entry of the C test guests (assembled with `as --32`): the PVH note, a stack,
# guest_main(start_info), then ACPI S5 power-off. Also the interrupt stubs it can put
# in the IDT: vector 0x40 + n counts into irq_counts[n] and signals EOI.
#
# The stubs return without iret, which KVM's instruction emulator implements only
# for real mode: interrupts are taken only inside wait_for_interrupt's `sti; hlt`,
# so they pop the return address, drop CS and EFLAGS (leaving IF clear, as the
# `cli` after the hlt would) and jump back, clobbering only %eax, which that asm
# declares.

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
        .globl _start
_start:
        mov $0x200000, %esp
        push %ebx                        # hvm_start_info
        call guest_main
        mov $0x600, %dx                  # sleep control: SLP_TYP 5 | SLP_EN
        mov $0x34, %al
        out %al, %dx
1:      hlt
        jmp 1b

        .set LAPIC_EOI, 0xfee000b0
        .irp n, 0, 1, 2, 3
        .globl irq_stub\n
irq_stub\n:
        incl irq_counts + 4 * \n
        movl $0, LAPIC_EOI
        pop %eax                         # EIP
        add $8, %esp                     # CS, EFLAGS
        jmp *%eax
        .endr
