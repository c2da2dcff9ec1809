/*
 * op_table.c - one row per op: name, arity, shape rule, forward, backward.
 *
 * Adding an op touches its family file (op_<family>.c), this table, the enum
 * in internal.h and one gradcheck row in tests/test_ops.c. tests/test_tape.c
 * walks this table and fails on a row left incomplete.
 */
#include "internal.h"

#define ROW(op, nm, arity, shape, fn) \
    [op] = { nm, arity, ad__shape_##shape, ad__##fn##_fwd, ad__##fn##_bwd }

const ad__op_def ad__ops[AD_OP_COUNT] = {
    ROW(AD_OP_CONST,           "const",           0, leaf,          leaf),
    ROW(AD_OP_VARIABLE,        "variable",        0, leaf,          leaf),
    ROW(AD_OP_PARAM,           "param",           0, leaf,          param),
    ROW(AD_OP_DETACH,          "detach",          1, same,          detach),
    ROW(AD_OP_MATMUL,          "matmul",          2, matmul,        matmul),
    ROW(AD_OP_ADD,             "add",             2, broadcast,     add),
    ROW(AD_OP_SUB,             "sub",             2, broadcast,     sub),
    ROW(AD_OP_MUL,             "mul",             2, broadcast,     mul),
    ROW(AD_OP_DIV,             "div",             2, broadcast,     div),
    ROW(AD_OP_ADD_SCALAR,      "add_scalar",      1, same,          add_scalar),
    ROW(AD_OP_MUL_SCALAR,      "mul_scalar",      1, same,          mul_scalar),
    ROW(AD_OP_POW_SCALAR,      "pow_scalar",      1, same,          pow_scalar),
    ROW(AD_OP_NEG,             "neg",             1, same,          neg),
    ROW(AD_OP_EXP,             "exp",             1, same,          exp),
    ROW(AD_OP_LOG,             "log",             1, same,          log),
    ROW(AD_OP_SQRT,            "sqrt",            1, same,          sqrt),
    ROW(AD_OP_ABS,             "abs",             1, same,          abs),
    ROW(AD_OP_TANH,            "tanh",            1, same,          tanh),
    ROW(AD_OP_SIGMOID,         "sigmoid",         1, same,          sigmoid),
    ROW(AD_OP_RELU,            "relu",            1, same,          relu),
    ROW(AD_OP_SUM,             "sum",             1, reduce,        sum),
    ROW(AD_OP_MEAN,            "mean",            1, reduce,        mean),
    ROW(AD_OP_SOFTMAX,         "softmax",         1, softmax,       softmax),
    ROW(AD_OP_LOG_SOFTMAX,     "log_softmax",     1, softmax,       log_softmax),
    ROW(AD_OP_RESHAPE,         "reshape",         1, reshape,       reshape),
    ROW(AD_OP_PERMUTE,         "permute",         1, permute,       permute),
    ROW(AD_OP_CONCAT,          "concat",         -1, concat,        concat),
    ROW(AD_OP_SLICE,           "slice",           1, slice,         slice),
    ROW(AD_OP_GATHER_ROWS,     "gather_rows",     1, gather_rows,   gather_rows),
    ROW(AD_OP_WHERE,           "where",           3, where,         where),
    ROW(AD_OP_DROPOUT,         "dropout",         1, same,          dropout),
    ROW(AD_OP_CROSS_ENTROPY,   "cross_entropy",   1, cross_entropy, cross_entropy),
    ROW(AD_OP_BCE_WITH_LOGITS, "bce_with_logits", 2, pair_loss,     bce_with_logits),
    ROW(AD_OP_BCE,             "bce",             2, pair_loss,     bce),
    ROW(AD_OP_MSE,             "mse",             2, pair_loss,     mse),
    ROW(AD_OP_CUSTOM,          "custom",         -1, custom,        custom),
    ROW(AD_OP_LSTM_CELL_STATE, "lstm_cell_state", 3, cell,          lstm_cell_state),
    ROW(AD_OP_LSTM_CELL_OUTPUT,"lstm_cell_output",3, cell,          lstm_cell_output),
    ROW(AD_OP_GRU_CELL,        "gru_cell",        3, cell,          gru_cell),
    ROW(AD_OP_ADDMM,           "addmm",           3, addmm,         addmm),
    ROW(AD_OP_RNN_CELL,        "rnn_cell",        2, rnn_cell,      rnn_cell),
};
