/*
 * op_table.c - one row per op: name, arity, shape rule, forward, backward,
 * forward-mode rule (jvp), what backward keeps, flags; all generated from the
 * list in op_list.h.
 *
 * Adding an op touches that list, its family file (op_<family>.c) and its
 * test row in tests/test_op_list.c (docs/internals.md). tests/test_tape.c
 * walks this table and fails on a row left incomplete.
 */
#include "internal.h"

/* What each backward reads besides gradients (AD__KEEPS_*): the data of
 * those inputs, or of the output, must live until backward. */
#define KEEPS_NONE 0u
#define KEEPS_IN(i) AD__KEEPS_IN(i)
#define KEEPS_OUT AD__KEEPS_OUT
#define KEEPS_ALL (AD__KEEPS_ALL_IN | AD__KEEPS_OUT)
#define KEEPS_ALL_IN AD__KEEPS_ALL_IN
#define ROW_USER_NAMED AD__ROW_USER_NAMED

/* The cast makes an empty keeps column a compile error. */
#define ROW(ID, nm, arity, shape, fn, flags, keeps)                                            \
    [AD_OP_##ID] = { #nm, arity, ad__shape_##shape, ad__##fn##_fwd, ad__##fn##_bwd, ad__##fn##_jvp, \
                     (unsigned char)(keeps), (unsigned char)(flags) },

const ad__op_def ad__ops[AD_OP_COUNT] = { AD__OP_LIST(ROW) };

const char *ad__op_name(ad__op op, const ad__args *a)
{
    if ((ad__ops[op].flags & AD__ROW_USER_NAMED) && a && a->custom && a->custom->name) return a->custom->name;
    return ad__ops[op].name;
}
