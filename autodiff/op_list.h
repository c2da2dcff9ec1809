/*
 * op_list.h - the one list of ops. Never installed.
 *
 * Each entry is X(ID, name, arity, shape, fn, flags, keeps):
 *   ID     the enum value AD_OP_<ID> (internal.h);
 *   name   the op's name in messages, DOT graphs and tests;
 *   arity  the number of inputs the gate accepts, -1 for any number >= 1
 *          (0: a leaf, recorded by ad__leaf, never through the gate);
 *   shape  the shape rule ad__shape_<shape> (shared by ops of one form);
 *   fn     the family code ad__<fn>_fwd, ad__<fn>_bwd and ad__<fn>_jvp;
 *   flags  0 or AD__ROW_* bits (op_table.c): ROW_USER_NAMED when messages
 *          name the op by the name its arguments carry (custom ops);
 *   keeps  the data its backward reads, which must live until backward:
 *          KEEPS_NONE, or KEEPS_IN(i) / KEEPS_ALL (every input) / KEEPS_OUT
 *          joined with |. It may not be left empty (that does not compile).
 *
 * The enum, the prototypes of the family code and the rows of ad__ops are
 * all generated from this list; adding an op is one entry here, its family
 * code and its test row (docs/internals.md).
 */
#ifndef UNROLL_AD_OP_LIST_H
#define UNROLL_AD_OP_LIST_H

/* clang-format off */
#define AD__OP_LIST(X) \
    X(CONST,            const,            0,  leaf,          leaf,             0,              KEEPS_NONE) \
    X(VARIABLE,         variable,         0,  leaf,          leaf,             0,              KEEPS_NONE) \
    X(PARAM,            param,            0,  leaf,          param,            0,              KEEPS_NONE) \
    X(DETACH,           detach,           1,  same,          detach,           0,              KEEPS_NONE) \
    X(MATMUL,           matmul,           2,  matmul,        matmul,           0,              KEEPS_IN(0) | KEEPS_IN(1)) \
    X(ADD,              add,              2,  broadcast,     add,              0,              KEEPS_NONE) \
    X(SUB,              sub,              2,  broadcast,     sub,              0,              KEEPS_NONE) \
    X(MUL,              mul,              2,  broadcast,     mul,              0,              KEEPS_IN(0) | KEEPS_IN(1)) \
    X(DIV,              div,              2,  broadcast,     div,              0,              KEEPS_IN(0) | KEEPS_IN(1)) \
    X(ADD_SCALAR,       add_scalar,       1,  same,          add_scalar,       0,              KEEPS_NONE) \
    X(MUL_SCALAR,       mul_scalar,       1,  same,          mul_scalar,       0,              KEEPS_NONE) \
    X(POW_SCALAR,       pow_scalar,       1,  same,          pow_scalar,       0,              KEEPS_IN(0)) \
    X(NEG,              neg,              1,  same,          neg,              0,              KEEPS_NONE) \
    X(EXP,              exp,              1,  same,          exp,              0,              KEEPS_OUT) \
    X(LOG,              log,              1,  same,          log,              0,              KEEPS_IN(0)) \
    X(SQRT,             sqrt,             1,  same,          sqrt,             0,              KEEPS_OUT) \
    X(ABS,              abs,              1,  same,          abs,              0,              KEEPS_IN(0)) \
    X(TANH,             tanh,             1,  same,          tanh,             0,              KEEPS_OUT) \
    X(SIGMOID,          sigmoid,          1,  same,          sigmoid,          0,              KEEPS_OUT) \
    X(RELU,             relu,             1,  same,          relu,             0,              KEEPS_IN(0)) \
    X(SUM,              sum,              1,  reduce,        sum,              0,              KEEPS_NONE) \
    X(MEAN,             mean,             1,  reduce,        mean,             0,              KEEPS_NONE) \
    X(SOFTMAX,          softmax,          1,  softmax,       softmax,          0,              KEEPS_IN(0) | KEEPS_OUT) \
    X(LOG_SOFTMAX,      log_softmax,      1,  softmax,       log_softmax,      0,              KEEPS_IN(0) | KEEPS_OUT) \
    X(RESHAPE,          reshape,          1,  reshape,       reshape,          0,              KEEPS_NONE) \
    X(PERMUTE,          permute,          1,  permute,       permute,          0,              KEEPS_NONE) \
    X(CONCAT,           concat,           -1, concat,        concat,           0,              KEEPS_NONE) \
    X(SLICE,            slice,            1,  slice,         slice,            0,              KEEPS_NONE) \
    X(GATHER_ROWS,      gather_rows,      1,  gather_rows,   gather_rows,      0,              KEEPS_NONE) \
    X(WHERE,            where,            3,  where,         where,            0,              KEEPS_ALL) \
    X(DROPOUT,          dropout,          1,  same,          dropout,          0,              KEEPS_NONE) \
    X(CROSS_ENTROPY,    cross_entropy,    1,  cross_entropy, cross_entropy,    0,              KEEPS_NONE) \
    X(BCE_WITH_LOGITS,  bce_with_logits,  2,  pair_loss,     bce_with_logits,  0,              KEEPS_IN(0) | KEEPS_IN(1)) \
    X(BCE,              bce,              2,  pair_loss,     bce,              0,              KEEPS_IN(0) | KEEPS_IN(1)) \
    X(MSE,              mse,              2,  pair_loss,     mse,              0,              KEEPS_IN(0) | KEEPS_IN(1)) \
    X(CUSTOM,           custom,           -1, custom,        custom,           ROW_USER_NAMED, KEEPS_ALL) \
    X(LSTM_CELL_STATE,  lstm_cell_state,  3,  cell,          lstm_cell_state,  0,              KEEPS_IN(2)) \
    X(LSTM_CELL_OUTPUT, lstm_cell_output, 3,  cell,          lstm_cell_output, 0,              KEEPS_NONE) \
    X(GRU_CELL,         gru_cell,         3,  cell,          gru_cell,         0,              KEEPS_IN(1) | KEEPS_IN(2)) \
    X(ADDMM,            addmm,            3,  addmm,         addmm,            0,              KEEPS_IN(0) | KEEPS_IN(1)) \
    X(RNN_CELL,         rnn_cell,         2,  rnn_cell,      rnn_cell,         0,              KEEPS_OUT) \
    X(LAYER_NORM,       layer_norm,       1,  layer_norm,    layer_norm,       0,              KEEPS_OUT) \
    X(CHECKPOINT,       checkpoint,       -1, checkpoint,    checkpoint,       0,              KEEPS_ALL_IN) \
    X(SOFTPLUS,         softplus,         1,  same,          softplus,         0,              KEEPS_IN(0)) \
    X(RNN_SEQUENCE,     rnn_sequence,     3,  rnn_sequence,  rnn_sequence,     0,              KEEPS_IN(1) | KEEPS_IN(2) | KEEPS_OUT) \
    X(GRU_SEQUENCE,     gru_sequence,     4,  gru_sequence,  gru_sequence,     0,              KEEPS_IN(1) | KEEPS_IN(2) | KEEPS_OUT)
/* clang-format on */

#endif
