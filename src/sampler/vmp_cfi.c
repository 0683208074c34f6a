/*
 * vmp_cfi.c - the unwind rule at a pc, read from the object's mapped
 * .eh_frame_hdr / .eh_frame in signal context (contract in the header).
 *
 * The lookup follows the tables' own structure:
 *   - .eh_frame_hdr ends with a table of (initial location, FDE address)
 *     pairs sorted by location, both 4-byte offsets from the header; a
 *     binary search gives the one FDE that can hold pc;
 *   - the FDE says which addresses it covers and points back to its CIE;
 *   - the CIE's initial instructions, then the FDE's, are run up to the row
 *     holding pc, keeping only what the walk's rule needs: the CFA (register
 *     and offset, or the PLT's expression), where the return address is, and
 *     where the caller's rbp and rbx are.
 * Every multi-byte read goes through a cursor that knows the end of the
 * entry it reads, and every entry's end is checked against the segment
 * first, so no read leaves [lo, hi) however the bytes are made.
 *
 * The decisions mirror rule_from_frame in vmp_symbols.c (libdw's path), since
 * the walk must not step differently depending on whether the writer has
 * learned a pc yet: libdw's x86-64 defaults (rbp and rbx unchanged, the return
 * address undefined until the CIE says where it is), restore_state bringing
 * back the whole row including the CFA, an expression CFA accepted when it
 * comes to rsp + constant at this very pc, over the stretch of its 16-byte
 * stub where that constant holds.
 */
#define _GNU_SOURCE /* dl_iterate_phdr */
#include "vmp_cfi.h"

#include <string.h>

/* DWARF register numbers of x86-64 the rule speaks of. */
#define REG_RBX VMP_REG_RBX
#define REG_RBP VMP_REG_RBP
#define REG_RSP VMP_REG_RSP
#define REG_RA 16

/* Pointer encodings (DW_EH_PE_*) this module reads. */
#define PE_UDATA4 0x03
#define PE_PCREL_SDATA4 0x1b
#define PE_DATAREL_SDATA4 0x3b
#define PE_OMIT 0xff

/* Longest CIE or FDE believed (real ones are under 1 KiB). */
#define MAX_ENTRY (1u << 20)

/* ---- bounded reads ----------------------------------------------------- */

struct cursor {
    const uint8_t *p, *end;
    int bad; /* a read went past end: the caller gives up */
};

static int have(struct cursor *c, size_t n)
{
    if (c->bad || (size_t)(c->end - c->p) < n) {
        c->bad = 1;
        return 0;
    }
    return 1;
}

static uint8_t read_u8(struct cursor *c)
{
    return have(c, 1) ? *c->p++ : 0;
}

static uint16_t read_u16(struct cursor *c)
{
    uint16_t v = 0;
    if (have(c, 2)) {
        __builtin_memcpy(&v, c->p, 2);
        c->p += 2;
    }
    return v;
}

static uint32_t read_u32(struct cursor *c)
{
    uint32_t v = 0;
    if (have(c, 4)) {
        __builtin_memcpy(&v, c->p, 4);
        c->p += 4;
    }
    return v;
}

static void skip(struct cursor *c, uint64_t n)
{
    if (have(c, n))
        c->p += n;
}

static uint64_t read_uleb(struct cursor *c)
{
    uint64_t v = 0;
    for (int shift = 0; have(c, 1); shift += 7) {
        uint8_t b = *c->p++;
        if (shift > 63) { /* longer than any 64-bit value */
            c->bad = 1;
            return 0;
        }
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return v;
    }
    return 0;
}

static int64_t read_sleb(struct cursor *c)
{
    uint64_t v = 0;
    for (int shift = 0; have(c, 1); shift += 7) {
        uint8_t b = *c->p++;
        if (shift > 63) {
            c->bad = 1;
            return 0;
        }
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            shift += 7;
            if (shift < 64 && (b & 0x40))
                v |= ~(uint64_t)0 << shift;
            return (int64_t)v;
        }
    }
    return 0;
}

/* A cursor over [at, at + n) if that lies inside the object's segment. */
static int span(const vmp_cfi_object *o, uintptr_t at, uint64_t n, struct cursor *c)
{
    if (at < o->lo || at > o->hi || n > o->hi - at)
        return -1;
    c->p = (const uint8_t *)at;
    c->end = (const uint8_t *)(at + n);
    c->bad = 0;
    return 0;
}

/* A CIE or FDE at `at`: a cursor over its body (after the length word), or
 * -1 when its length is 64-bit, a terminator, absurd, or leaves the segment. */
static int entry(const vmp_cfi_object *o, uintptr_t at, struct cursor *body)
{
    struct cursor c;
    if (span(o, at, 4, &c) < 0)
        return -1;
    uint32_t len = read_u32(&c);
    if (len == 0 || len >= MAX_ENTRY)
        return -1;
    return span(o, at + 4, len, body);
}

/* ---- the header -------------------------------------------------------- */

int vmp_cfi_object_init(vmp_cfi_object *o, uintptr_t hdr, uintptr_t seg_lo, uintptr_t seg_hi)
{
    memset(o, 0, sizeof *o);
    o->lo = seg_lo;
    o->hi = seg_hi;
    struct cursor c;
    if (seg_hi <= seg_lo || span(o, hdr, 12, &c) < 0)
        return -1;
    /* version, eh_frame_ptr encoding, fde_count encoding, table encoding:
     * what GNU ld, gold and lld all write for a searchable table. */
    if (read_u8(&c) != 1 || read_u8(&c) != PE_PCREL_SDATA4 || read_u8(&c) != PE_UDATA4 ||
        read_u8(&c) != PE_DATAREL_SDATA4)
        return -1;
    read_u32(&c); /* where .eh_frame starts: FDEs are reached through the table */
    uint32_t count = read_u32(&c);
    if (count == 0 || span(o, hdr + 12, (uint64_t)count * 8, &c) < 0)
        return -1;
    o->table = hdr + 12;
    o->count = count;
    o->hdr = hdr;
    return 0;
}

int vmp_cfi_object_from_phdrs(vmp_cfi_object *o, uintptr_t base, const ElfW(Phdr) *phdr,
                              int phnum)
{
    memset(o, 0, sizeof *o);
    for (int i = 0; i < phnum; i++) {
        if (phdr[i].p_type != PT_GNU_EH_FRAME)
            continue;
        uintptr_t hdr = base + phdr[i].p_vaddr;
        for (int j = 0; j < phnum; j++) {
            const ElfW(Phdr) *ld = &phdr[j];
            uintptr_t lo = base + ld->p_vaddr, hi = lo + ld->p_filesz;
            /* The file-backed part of a readable segment: the sections are
             * file contents, and past p_filesz lies .bss. */
            if (ld->p_type == PT_LOAD && (ld->p_flags & PF_R) && hdr >= lo && hdr < hi)
                return vmp_cfi_object_init(o, hdr, lo, hi);
        }
    }
    return -1;
}

void vmp_cfi_touch(const vmp_cfi_object *o)
{
    if (!o->hdr)
        return;
    /* The header, and what follows it to the segment's end: .eh_frame (and
     * the exception tables after it, no harm). */
    const volatile uint8_t *p = (const volatile uint8_t *)o->hdr;
    uintptr_t page = 4096;
    for (uintptr_t at = o->hdr & ~(page - 1); at < o->hi; at += page)
        (void)p[(at > o->hdr ? at : o->hdr) - o->hdr];
}

/* ---- the call-frame program ------------------------------------------- */

/* Where a register is, as far as the rule cares. */
enum { SAVED_SAME, SAVED_AT_OFFSET, SAVED_UNDEFINED, SAVED_OTHER };

struct row {
    uint8_t cfa_reg;
    uint8_t cfa_is_expr; /* the CFA is the expression cfa_expr[0..cfa_expr_len) */
    uint8_t ra, rbp, rbx; /* SAVED_* */
    int64_t cfa_off, ra_off, rbp_off, rbx_off;
    const uint8_t *cfa_expr;
    uint64_t cfa_expr_len;
};

/* libdw's x86-64 defaults before any CIE instruction: rbp and rbx are
 * callee-saved (unchanged), the return address has no rule (undefined) and
 * no CFA yet. */
static const struct row abi_row = {.ra = SAVED_UNDEFINED, .rbp = SAVED_SAME, .rbx = SAVED_SAME};

/* What the CIE says about its FDEs. */
struct cie {
    int64_t data_align;
    const uint8_t *program, *program_end;
    int fde_has_aug; /* 'z': the FDE carries an augmentation length */
};

static int parse_cie(const vmp_cfi_object *o, uintptr_t at, struct cie *cie)
{
    struct cursor c;
    if (entry(o, at, &c) < 0 || read_u32(&c) != 0) /* id 0: a CIE */
        return -1;
    uint8_t version = read_u8(&c);
    if (version != 1 && version != 3)
        return -1;
    char aug[8];
    int n = 0;
    for (;;) {
        char ch = (char)read_u8(&c);
        if (c.bad || n == (int)sizeof aug)
            return -1;
        aug[n++] = ch;
        if (!ch)
            break;
    }
    uint64_t code_align = read_uleb(&c);
    cie->data_align = read_sleb(&c);
    uint64_t ra_reg = version == 1 ? read_u8(&c) : read_uleb(&c);
    /* Code alignment 1 is what x86-64 compilers write; anything else would
     * scale every advance and is not worth the care. */
    if (code_align != 1 || ra_reg != REG_RA)
        return -1;
    /* Without 'z' there is no 'R' either, and the FDE's addresses would be
     * absolute 8-byte words: not what shared code carries.  "eh" and other
     * old forms are refused too. */
    cie->fde_has_aug = aug[0] == 'z';
    if (!cie->fde_has_aug)
        return -1;
    {
        int has_r = 0;
        uint64_t len = read_uleb(&c);
        struct cursor data = {c.p, c.p, 0};
        if (!have(&c, len))
            return -1;
        data.end = c.p + len;
        c.p += len;
        for (const char *a = aug + 1; *a; a++) {
            if (*a == 'R') {
                /* The FDE's addresses: pc-relative 4-byte, as linkers write. */
                if (read_u8(&data) != PE_PCREL_SDATA4)
                    return -1;
                has_r = 1;
            } else if (*a == 'L') {
                read_u8(&data); /* the FDE's LSDA pointer is skipped whole */
            } else if (*a == 'P') {
                uint8_t enc = read_u8(&data);
                int size = enc == PE_OMIT         ? 0
                           : (enc & 0x0f) == 0x03 ? 4 /* udata4 */
                           : (enc & 0x0f) == 0x0b ? 4 /* sdata4 */
                           : (enc & 0x0f) == 0x00 ? 8 /* absptr */
                           : (enc & 0x0f) == 0x04 ? 8 /* udata8 */
                           : (enc & 0x0f) == 0x0c ? 8 /* sdata8 */
                                                  : -1;
                if (size < 0 || (enc & 0x70) == 0x50) /* aligned: not met in practice */
                    return -1;
                skip(&data, (uint64_t)size);
            } else {
                return -1; /* 'S' (a signal frame) and unknown letters */
            }
        }
        if (data.bad || !has_r)
            return -1;
    }
    if (c.bad)
        return -1;
    cie->program = c.p;
    cie->program_end = c.end;
    return 0;
}

/* Evaluates the CFA expressions PLT stubs carry, which read only rsp and the
 * pc ("rsp + 8, and 8 more once past the stub's push"), with the operations
 * libdw's path accepts.  Returns 0 and *value, or -1. */
static int eval_cfa_expr(const uint8_t *p, uint64_t len, uint64_t rsp, uint64_t pc, uint64_t *value)
{
    struct cursor c = {p, p + len, 0};
    uint64_t st[8];
    int n = 0;
    for (int ops = 0; c.p < c.end; ops++) {
        if (n == 8 || ops == 64)
            return -1;
        uint8_t op = read_u8(&c);
        if (op == 0x77 || op == 0x80) { /* DW_OP_breg7 (rsp), DW_OP_breg16 (the pc) */
            int64_t off = read_sleb(&c);
            st[n++] = (op == 0x77 ? rsp : pc) + (uint64_t)off;
        } else if (op >= 0x30 && op <= 0x4f) { /* DW_OP_lit0..31 */
            st[n++] = op - 0x30u;
        } else if (op == 0x08) { /* const1u */
            st[n++] = read_u8(&c);
        } else if (op == 0x09) { /* const1s */
            st[n++] = (uint64_t)(int64_t)(int8_t)read_u8(&c);
        } else if (op == 0x0a) { /* const2u */
            st[n++] = read_u16(&c);
        } else if (op == 0x0b) { /* const2s */
            st[n++] = (uint64_t)(int64_t)(int16_t)read_u16(&c);
        } else if (op == 0x0c) { /* const4u */
            st[n++] = read_u32(&c);
        } else if (op == 0x0d) { /* const4s */
            st[n++] = (uint64_t)(int64_t)(int32_t)read_u32(&c);
        } else if (op == 0x23 && n >= 1) { /* plus_uconst */
            st[n - 1] += read_uleb(&c);
        } else if (n >= 2 && (op == 0x22 || op == 0x1c || op == 0x1a || op == 0x24 || op == 0x2a ||
                              op == 0x2b || op == 0x2d || op == 0x2c)) {
            uint64_t b = st[--n], a = st[n - 1];
            int64_t sa = (int64_t)a, sb = (int64_t)b;
            st[n - 1] = op == 0x22   ? a + b                  /* plus */
                        : op == 0x1c ? a - b                  /* minus */
                        : op == 0x1a ? a & b                  /* and */
                        : op == 0x24 ? (b < 64 ? a << b : 0)  /* shl */
                        : op == 0x2a ? (uint64_t)(sa >= sb)   /* ge */
                        : op == 0x2b ? (uint64_t)(sa > sb)    /* gt */
                        : op == 0x2d ? (uint64_t)(sa < sb)    /* lt */
                                     : (uint64_t)(sa <= sb);  /* le */
        } else {
            return -1;
        }
        if (c.bad)
            return -1;
    }
    if (n != 1)
        return -1;
    *value = st[0];
    return 0;
}

/* The CFA register as the row keeps it: any number the walk cannot use
 * (only rsp, rbp and rbx) becomes 255, never one that truncates to 3, 6
 * or 7. */
static uint8_t cfa_register(uint64_t reg)
{
    return reg < 255 ? (uint8_t)reg : 255;
}

/* Runs one program (the CIE's initial instructions when `init` is NULL, else
 * an FDE's, with `init` the row the CIE left) from *loc, until the row
 * holding pc is reached.  Returns 1 when it stopped at pc's row's end (*hi
 * set), 0 when the program ran out, -1 on anything it cannot follow. */
static int run(struct cursor *c, const struct cie *cie, const struct row *init, struct row *s,
               uint64_t pc, uint64_t *loc, uint64_t *row_lo, uint64_t *hi, int *ops)
{
    struct row stack[VMP_CFI_STATE_STACK];
    int depth = 0;
    while (c->p < c->end && !c->bad) {
        if (++*ops > VMP_CFI_MAX_OPS)
            return -1;
        uint8_t op = read_u8(c);
        uint64_t reg = 0, advance = 0;
        int64_t off = 0;
        int how = -1; /* a register rule to record: SAVED_* */
        switch (op >> 6) {
        case 1: /* DW_CFA_advance_loc */
            advance = op & 0x3f;
            goto advance;
        case 2: /* DW_CFA_offset */
            reg = op & 0x3f;
            off = (int64_t)read_uleb(c) * cie->data_align;
            how = SAVED_AT_OFFSET;
            goto record;
        case 3: /* DW_CFA_restore */
            reg = op & 0x3f;
            goto restore;
        }
        switch (op) {
        case 0x00: /* nop */
            continue;
        case 0x02: /* advance_loc1 */
            advance = read_u8(c);
            goto advance;
        case 0x03: /* advance_loc2 */
            advance = read_u16(c);
            goto advance;
        case 0x04: /* advance_loc4 */
            advance = read_u32(c);
            goto advance;
        case 0x05: /* offset_extended */
            reg = read_uleb(c);
            off = (int64_t)read_uleb(c) * cie->data_align;
            how = SAVED_AT_OFFSET;
            goto record;
        case 0x11: /* offset_extended_sf */
            reg = read_uleb(c);
            off = read_sleb(c) * cie->data_align;
            how = SAVED_AT_OFFSET;
            goto record;
        case 0x2f: /* GNU_negative_offset_extended */
            reg = read_uleb(c);
            off = -(int64_t)read_uleb(c) * cie->data_align;
            how = SAVED_AT_OFFSET;
            goto record;
        case 0x06: /* restore_extended */
            reg = read_uleb(c);
            goto restore;
        case 0x07: /* undefined */
            reg = read_uleb(c);
            how = SAVED_UNDEFINED;
            goto record;
        case 0x08: /* same_value */
            reg = read_uleb(c);
            how = SAVED_SAME;
            goto record;
        case 0x09: /* register: the value is in another register */
            reg = read_uleb(c);
            read_uleb(c);
            how = SAVED_OTHER;
            goto record;
        case 0x14: /* val_offset */
            reg = read_uleb(c);
            read_uleb(c);
            how = SAVED_OTHER;
            goto record;
        case 0x15: /* val_offset_sf */
            reg = read_uleb(c);
            read_sleb(c);
            how = SAVED_OTHER;
            goto record;
        case 0x10: /* expression */
        case 0x16: /* val_expression */
            reg = read_uleb(c);
            skip(c, read_uleb(c));
            how = SAVED_OTHER;
            goto record;
        case 0x0a: /* remember_state */
            if (depth == VMP_CFI_STATE_STACK)
                return -1;
            stack[depth++] = *s;
            continue;
        case 0x0b: /* restore_state: the whole row, the CFA included */
            if (depth == 0)
                return -1;
            *s = stack[--depth];
            continue;
        case 0x0c: /* def_cfa */
            s->cfa_reg = cfa_register(read_uleb(c));
            s->cfa_off = (int64_t)read_uleb(c);
            s->cfa_is_expr = 0;
            goto cfa;
        case 0x12: /* def_cfa_sf */
            s->cfa_reg = cfa_register(read_uleb(c));
            s->cfa_off = read_sleb(c) * cie->data_align;
            s->cfa_is_expr = 0;
            goto cfa;
        case 0x0d: /* def_cfa_register */
            if (s->cfa_is_expr)
                return -1;
            s->cfa_reg = cfa_register(read_uleb(c));
            goto cfa;
        case 0x0e: /* def_cfa_offset */
            if (s->cfa_is_expr)
                return -1;
            s->cfa_off = (int64_t)read_uleb(c);
            continue;
        case 0x13: /* def_cfa_offset_sf */
            if (s->cfa_is_expr)
                return -1;
            s->cfa_off = read_sleb(c) * cie->data_align;
            continue;
        case 0x0f: /* def_cfa_expression */
            s->cfa_expr_len = read_uleb(c);
            s->cfa_expr = c->p;
            skip(c, s->cfa_expr_len);
            s->cfa_is_expr = 1;
            continue;
        case 0x2e: /* GNU_args_size: what the caller pushed, not the rule */
            read_uleb(c);
            continue;
        default: /* set_loc, and anything unknown */
            return -1;
        }
    cfa:
        if (c->bad)
            return -1;
        continue;
    advance:
        if (c->bad || !init)
            return -1; /* the CIE's instructions do not advance */
        if (*loc + advance > pc) {
            *hi = *loc + advance;
            return 1;
        }
        *loc += advance;
        *row_lo = *loc;
        continue;
    restore:
        if (!init)
            return -1; /* restore means "as the CIE left it": not inside the CIE */
        if (reg == REG_RA) {
            s->ra = init->ra;
            s->ra_off = init->ra_off;
        } else if (reg == REG_RBP) {
            s->rbp = init->rbp;
            s->rbp_off = init->rbp_off;
        } else if (reg == REG_RBX) {
            s->rbx = init->rbx;
            s->rbx_off = init->rbx_off;
        }
        continue;
    record:
        if (reg == REG_RA) {
            s->ra = (uint8_t)how;
            s->ra_off = off;
        } else if (reg == REG_RBP) {
            s->rbp = (uint8_t)how;
            s->rbp_off = off;
        } else if (reg == REG_RBX) {
            s->rbx = (uint8_t)how;
            s->rbx_off = off;
        }
        continue;
    }
    return c->bad ? -1 : 0;
}

/* The CFA of an expression row as rsp + *off at pc: the expression is
 * evaluated for two values of rsp, and must move with it one for one. */
static int expr_offset(const struct row *s, uint64_t pc, int64_t *off)
{
    uint64_t at0, at1;
    if (eval_cfa_expr(s->cfa_expr, s->cfa_expr_len, 0, pc, &at0) < 0 ||
        eval_cfa_expr(s->cfa_expr, s->cfa_expr_len, 1u << 20, pc, &at1) < 0 ||
        at1 - at0 != 1u << 20)
        return -1;
    *off = (int64_t)at0;
    return 0;
}

/* Where a row lies, besides its rule. */
struct row_span {
    uint64_t fde_lo, fde_hi; /* the FDE's range */
    uint64_t row_hi;         /* the end of the table's row (an expression
                              * rule's range is narrower: its stub) */
    int expr;                /* the CFA is an expression (PLT stubs) */
};

/* The FDE that can hold pc: its CIE, its range [*begin, *begin + *range)
 * and a cursor c over its program.  0, or -1 when no FDE of the header's
 * table is readable for pc or pc lies in a gap between two. */
static int fde_at(const vmp_cfi_object *o, uintptr_t pc, struct cursor *c, struct cie *cie, uint64_t *begin,
                  uint32_t *range)
{
    if (!o->hdr)
        return -1;
    /* The last table entry whose initial location is <= pc (locations are
     * offsets from the header, so pc is compared the same way). */
    int64_t rel = (int64_t)(pc - o->hdr);
    const uint8_t *table = (const uint8_t *)o->table;
    uint32_t lo = 0, hi = o->count;
    while (hi - lo > 1) {
        uint32_t mid = lo + (hi - lo) / 2;
        int32_t loc;
        __builtin_memcpy(&loc, table + (size_t)mid * 8, 4);
        if (loc <= rel)
            lo = mid;
        else
            hi = mid;
    }
    int32_t first_loc, fde_off;
    __builtin_memcpy(&first_loc, table + (size_t)lo * 8, 4);
    __builtin_memcpy(&fde_off, table + (size_t)lo * 8 + 4, 4);
    if (first_loc > rel)
        return -1; /* below the first function */

    uintptr_t fde = o->hdr + (uintptr_t)(intptr_t)fde_off;
    if (entry(o, fde, c) < 0)
        return -1;
    uintptr_t cie_field = (uintptr_t)c->p;
    uint32_t cie_ptr = read_u32(c);
    if (cie_ptr == 0 || cie_ptr > cie_field)
        return -1; /* 0 would make this a CIE */
    if (parse_cie(o, cie_field - cie_ptr, cie) < 0)
        return -1;
    uintptr_t begin_field = (uintptr_t)c->p;
    int32_t begin_rel = (int32_t)read_u32(c);
    *range = read_u32(c);
    *begin = (uint64_t)begin_field + (uint64_t)(int64_t)begin_rel;
    if (c->bad || pc < *begin || pc - *begin >= *range)
        return -1; /* in a gap between functions */
    if (cie->fde_has_aug)
        skip(c, read_uleb(c)); /* the LSDA pointer */
    return c->bad ? -1 : 0;
}

/* The row of the call-frame table holding pc, and the FDE it is in:
 * 0 with pc's rule (as vmp_cfi_rule gives it); 1 when the row was found but
 * holds a rule the walk cannot follow (rule->lo and rule->hi still give the
 * row); -1 when no FDE covers pc or its programs cannot be followed up to
 * pc.  *span is filled when the result is not -1. */
static int row_at(const vmp_cfi_object *o, uintptr_t pc, vmp_unwind_rule *rule, struct row_span *span)
{
    struct cursor c;
    struct cie cie;
    uint64_t begin;
    uint32_t range;
    if (fde_at(o, pc, &c, &cie, &begin, &range) < 0)
        return -1;

    struct row init = abi_row, s;
    uint64_t loc = begin, row_lo = begin, row_hi = begin + range;
    int ops = 0;
    struct cursor cp = {cie.program, cie.program_end, 0};
    if (run(&cp, &cie, NULL, &init, pc, &loc, &row_lo, &row_hi, &ops) != 0)
        return -1;
    s = init;
    if (run(&c, &cie, &init, &s, pc, &loc, &row_lo, &row_hi, &ops) < 0)
        return -1;
    span->fde_lo = begin;
    span->fde_hi = begin + range;
    span->row_hi = row_hi;
    span->expr = s.cfa_is_expr;
    rule->lo = (uintptr_t)row_lo;
    rule->hi = (uintptr_t)row_hi;

    /* The rule, decided as rule_from_frame decides from libdw's row. */
    int64_t cfa_off = s.cfa_off;
    unsigned cfa_reg = s.cfa_reg;
    if (s.cfa_is_expr) {
        if (expr_offset(&s, pc, &cfa_off) < 0)
            return 1;
        cfa_reg = REG_RSP;
        /* The same offset holds around pc within its 16-byte stub. */
        uint64_t block = pc & ~(uint64_t)15, a = pc, b = pc + 1;
        int64_t v;
        while (a > block && a > row_lo && expr_offset(&s, a - 1, &v) == 0 && v == cfa_off)
            a--;
        while (b < block + 16 && b < row_hi && expr_offset(&s, b, &v) == 0 && v == cfa_off)
            b++;
        rule->lo = (uintptr_t)a;
        rule->hi = (uintptr_t)b;
    }
    if ((cfa_reg != REG_RSP && cfa_reg != REG_RBP && cfa_reg != REG_RBX) || cfa_off < INT32_MIN ||
        cfa_off > INT32_MAX)
        return 1;
    rule->cfa_reg = (uint8_t)cfa_reg;
    rule->cfa_off = (int32_t)cfa_off;
    rule->rbp_off = 0;
    rule->rbx_off = 0;
    if (s.ra == SAVED_UNDEFINED) {
        rule->kind = VMP_RULE_END; /* no caller: the thread's first frame */
        return 0;
    }
    if (s.ra != SAVED_AT_OFFSET || s.ra_off != -8)
        return 1;
    if (s.rbp == SAVED_AT_OFFSET) {
        if (s.rbp_off >= 0 || s.rbp_off < INT16_MIN)
            return 1;
        rule->rbp_off = (int16_t)s.rbp_off;
    } else if (s.rbp != SAVED_SAME) {
        return 1;
    }
    /* rbx: tracked for the frames whose CFA is on it; where it cannot be
     * told, the rule still steps (only such a caller is then cut).
     * Undefined counts as unchanged, as rbx_rule in vmp_symbols.c must read
     * libdw's rows (whose defaults leave rbx undefined where the ABI says
     * callee-saved). */
    rule->rbx_off = s.rbx == SAVED_SAME || s.rbx == SAVED_UNDEFINED ? 0
                    : s.rbx == SAVED_AT_OFFSET                     ? vmp_unwind_rbx_slot(s.rbx_off)
                                                                   : VMP_RBX_LOST;
    rule->kind = VMP_RULE_STEP;
    return 0;
}

int vmp_cfi_rule(const vmp_cfi_object *o, uintptr_t pc, vmp_unwind_rule *rule)
{
    struct row_span span;
    return row_at(o, pc, rule, &span) == 0 ? 0 : -1;
}

int vmp_cfi_rules(const vmp_cfi_object *o, uintptr_t pc, vmp_unwind_rule *rules, int max)
{
    vmp_unwind_rule own;
    struct row_span span;
    if (max <= 0 || row_at(o, pc, &own, &span) != 0)
        return 0;
    /* A PLT's stubs: one FDE for them all, its rule changing every few
     * bytes; only the stub pc is in is worth learning. */
    if (span.expr) {
        rules[0] = own;
        return 1;
    }
    /* Row by row from the FDE's start, each looked up as the handler looks
     * one up: a function's rows are few, and this runs once per function. */
    int n = 0;
    for (uint64_t at = span.fde_lo; at < span.fde_hi && n < max;) {
        vmp_unwind_rule r;
        struct row_span rs;
        int rc = row_at(o, (uintptr_t)at, &r, &rs);
        if (rc < 0 || rs.row_hi <= at)
            break; /* (the rest of the FDE waits for its own miss) */
        if (rc == 0 && !rs.expr)
            n = vmp_unwind_rules_append(rules, n, r, (uintptr_t)at);
        at = rs.row_hi;
    }
    /* pc's own row is there even when the FDE had more rows than room. */
    if (vmp_unwind_rules_cover(rules, n, pc))
        return n;
    rules[n < max ? n++ : max - 1] = own;
    return n;
}

struct function_at {
    uintptr_t pc, lo, hi;
    int found;
};

/* (dl_iterate_phdr's callback: the loader's lock keeps the object mapped
 * while its tables are read) */
static int function_in_object(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    struct function_at *f = arg;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X) || f->pc < lo || f->pc - lo >= ph->p_memsz)
            continue;
        vmp_cfi_object o;
        struct cursor c;
        struct cie cie;
        uint64_t begin;
        uint32_t range;
        if (vmp_cfi_object_from_phdrs(&o, info->dlpi_addr, info->dlpi_phdr, info->dlpi_phnum) == 0 &&
            fde_at(&o, f->pc, &c, &cie, &begin, &range) == 0) {
            f->lo = (uintptr_t)begin;
            f->hi = (uintptr_t)(begin + range);
            f->found = 1;
        }
        return 1; /* (the object holding pc: no other can) */
    }
    return 0;
}

int vmp_cfi_function_at(uintptr_t pc, uintptr_t *lo, uintptr_t *hi)
{
    struct function_at f = {pc, 0, 0, 0};
    dl_iterate_phdr(function_in_object, &f);
    if (!f.found)
        return -1;
    *lo = f.lo;
    *hi = f.hi;
    return 0;
}
