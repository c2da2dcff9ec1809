/*
 * op_table.c - one row per op: name, arity, shape rule, forward, backward,
 * forward-mode rule (jvp).
 *
 * Adding an op touches its family file (op_<family>.c), this table, the enum
 * in internal.h and one gradcheck row in tests/test_ops.c. tests/test_tape.c
 * walks this table and fails on a row left incomplete.
 */
#include "internal.h"

#define ROW(op, nm, arity, shape, fn, keeps) \
    [op] = { nm, arity, ad__shape_##shape, ad__##fn##_fwd, ad__##fn##_bwd, ad__##fn##_jvp, keeps }

/* What each backward reads besides gradients (AD__KEEPS_*): the data of
 * those inputs, or of the output, must live until backward. */
#define IN0 AD__KEEPS_IN(0)
#define IN1 AD__KEEPS_IN(1)
#define IN2 AD__KEEPS_IN(2)
#define OUT AD__KEEPS_OUT
#define ALL (AD__KEEPS_ALL_IN | AD__KEEPS_OUT)

const ad__op_def ad__ops[AD_OP_COUNT] = {
    ROW(AD_OP_CONST,           "const",           0, leaf,          leaf, 0),
    ROW(AD_OP_VARIABLE,        "variable",        0, leaf,          leaf, 0),
    ROW(AD_OP_PARAM,           "param",           0, leaf,          param, 0),
    ROW(AD_OP_DETACH,          "detach",          1, same,          detach, 0),
    ROW(AD_OP_MATMUL,          "matmul",          2, matmul,        matmul, IN0 | IN1),
    ROW(AD_OP_ADD,             "add",             2, broadcast,     add, 0),
    ROW(AD_OP_SUB,             "sub",             2, broadcast,     sub, 0),
    ROW(AD_OP_MUL,             "mul",             2, broadcast,     mul, IN0 | IN1),
    ROW(AD_OP_DIV,             "div",             2, broadcast,     div, IN0 | IN1),
    ROW(AD_OP_ADD_SCALAR,      "add_scalar",      1, same,          add_scalar, 0),
    ROW(AD_OP_MUL_SCALAR,      "mul_scalar",      1, same,          mul_scalar, 0),
    ROW(AD_OP_POW_SCALAR,      "pow_scalar",      1, same,          pow_scalar, IN0),
    ROW(AD_OP_NEG,             "neg",             1, same,          neg, 0),
    ROW(AD_OP_EXP,             "exp",             1, same,          exp, OUT),
    ROW(AD_OP_LOG,             "log",             1, same,          log, IN0),
    ROW(AD_OP_SQRT,            "sqrt",            1, same,          sqrt, OUT),
    ROW(AD_OP_ABS,             "abs",             1, same,          abs, IN0),
    ROW(AD_OP_TANH,            "tanh",            1, same,          tanh, OUT),
    ROW(AD_OP_SIGMOID,         "sigmoid",         1, same,          sigmoid, OUT),
    ROW(AD_OP_RELU,            "relu",            1, same,          relu, IN0),
    ROW(AD_OP_SUM,             "sum",             1, reduce,        sum, 0),
    ROW(AD_OP_MEAN,            "mean",            1, reduce,        mean, 0),
    ROW(AD_OP_SOFTMAX,         "softmax",         1, softmax,       softmax, IN0 | OUT),
    ROW(AD_OP_LOG_SOFTMAX,     "log_softmax",     1, softmax,       log_softmax, IN0 | OUT),
    ROW(AD_OP_RESHAPE,         "reshape",         1, reshape,       reshape, 0),
    ROW(AD_OP_PERMUTE,         "permute",         1, permute,       permute, 0),
    ROW(AD_OP_CONCAT,          "concat",         -1, concat,        concat, 0),
    ROW(AD_OP_SLICE,           "slice",           1, slice,         slice, 0),
    ROW(AD_OP_GATHER_ROWS,     "gather_rows",     1, gather_rows,   gather_rows, 0),
    ROW(AD_OP_WHERE,           "where",           3, where,         where, ALL),
    ROW(AD_OP_DROPOUT,         "dropout",         1, same,          dropout, 0),
    ROW(AD_OP_CROSS_ENTROPY,   "cross_entropy",   1, cross_entropy, cross_entropy, 0),
    ROW(AD_OP_BCE_WITH_LOGITS, "bce_with_logits", 2, pair_loss,     bce_with_logits, IN0 | IN1),
    ROW(AD_OP_BCE,             "bce",             2, pair_loss,     bce, IN0 | IN1),
    ROW(AD_OP_MSE,             "mse",             2, pair_loss,     mse, IN0 | IN1),
    ROW(AD_OP_CUSTOM,          "custom",         -1, custom,        custom, ALL),
    ROW(AD_OP_LSTM_CELL_STATE, "lstm_cell_state", 3, cell,          lstm_cell_state, IN2),
    ROW(AD_OP_LSTM_CELL_OUTPUT,"lstm_cell_output",3, cell,          lstm_cell_output, 0),
    ROW(AD_OP_GRU_CELL,        "gru_cell",        3, cell,          gru_cell, IN1 | IN2),
    ROW(AD_OP_ADDMM,           "addmm",           3, addmm,         addmm, IN0 | IN1),
    ROW(AD_OP_RNN_CELL,        "rnn_cell",        2, rnn_cell,      rnn_cell, OUT),
    ROW(AD_OP_LAYER_NORM,      "layer_norm",      1, layer_norm,    layer_norm, OUT),
    ROW(AD_OP_CHECKPOINT,      "checkpoint",     -1, checkpoint,    checkpoint, AD__KEEPS_ALL_IN),
};
