/* TEMPORARY development scaffold: weak placeholders for ops not yet written. */
#include "internal.h"
#define W __attribute__((weak))
W ad_status ad__add_fwd(ad_tape *t, ad_node *n) { (void)n; return ad__fail(t, AD_ERR_STATE, "add: not built yet"); }
W void ad__add_bwd(ad_tape *t, ad_node *n) { (void)n; ad__fail(t, AD_ERR_STATE, "add: not built yet"); }
W ad_status ad__sub_fwd(ad_tape *t, ad_node *n) { (void)n; return ad__fail(t, AD_ERR_STATE, "sub: not built yet"); }
W void ad__sub_bwd(ad_tape *t, ad_node *n) { (void)n; ad__fail(t, AD_ERR_STATE, "sub: not built yet"); }
W ad_status ad__mul_fwd(ad_tape *t, ad_node *n) { (void)n; return ad__fail(t, AD_ERR_STATE, "mul: not built yet"); }
W void ad__mul_bwd(ad_tape *t, ad_node *n) { (void)n; ad__fail(t, AD_ERR_STATE, "mul: not built yet"); }
W ad_status ad__div_fwd(ad_tape *t, ad_node *n) { (void)n; return ad__fail(t, AD_ERR_STATE, "div: not built yet"); }
W void ad__div_bwd(ad_tape *t, ad_node *n) { (void)n; ad__fail(t, AD_ERR_STATE, "div: not built yet"); }
W ad_status ad__add_scalar_fwd(ad_tape *t, ad_node *n) { (void)n; return ad__fail(t, AD_ERR_STATE, "add_scalar: not built yet"); }
W void ad__add_scalar_bwd(ad_tape *t, ad_node *n) { (void)n; ad__fail(t, AD_ERR_STATE, "add_scalar: not built yet"); }
W ad_status ad__mul_scalar_fwd(ad_tape *t, ad_node *n) { (void)n; return ad__fail(t, AD_ERR_STATE, "mul_scalar: not built yet"); }
W void ad__mul_scalar_bwd(ad_tape *t, ad_node *n) { (void)n; ad__fail(t, AD_ERR_STATE, "mul_scalar: not built yet"); }
W ad_status ad__pow_scalar_fwd(ad_tape *t, ad_node *n) { (void)n; return ad__fail(t, AD_ERR_STATE, "pow_scalar: not built yet"); }
W void ad__pow_scalar_bwd(ad_tape *t, ad_node *n) { (void)n; ad__fail(t, AD_ERR_STATE, "pow_scalar: not built yet"); }
W ad_status ad__neg_fwd(ad_tape *t, ad_node *n) { (void)n; return ad__fail(t, AD_ERR_STATE, "neg: not built yet"); }
W void ad__neg_bwd(ad_tape *t, ad_node *n) { (void)n; ad__fail(t, AD_ERR_STATE, "neg: not built yet"); }
W ad_status ad__exp_fwd(ad_tape *t, ad_node *n) { (void)n; return ad__fail(t, AD_ERR_STATE, "exp: not built yet"); }
W void ad__exp_bwd(ad_tape *t, ad_node *n) { (void)n; ad__fail(t, AD_ERR_STATE, "exp: not built yet"); }
W ad_status ad__log_fwd(ad_tape *t, ad_node *n) { (void)n; return ad__fail(t, AD_ERR_STATE, "log: not built yet"); }
W void ad__log_bwd(ad_tape *t, ad_node *n) { (void)n; ad__fail(t, AD_ERR_STATE, "log: not built yet"); }
W ad_status ad__sqrt_fwd(ad_tape *t, ad_node *n) { (void)n; return ad__fail(t, AD_ERR_STATE, "sqrt: not built yet"); }
W void ad__sqrt_bwd(ad_tape *t, ad_node *n) { (void)n; ad__fail(t, AD_ERR_STATE, "sqrt: not built yet"); }
W ad_status ad__abs_fwd(ad_tape *t, ad_node *n) { (void)n; return ad__fail(t, AD_ERR_STATE, "abs: not built yet"); }
W void ad__abs_bwd(ad_tape *t, ad_node *n) { (void)n; ad__fail(t, AD_ERR_STATE, "abs: not built yet"); }
W ad_status ad__tanh_fwd(ad_tape *t, ad_node *n) { (void)n; return ad__fail(t, AD_ERR_STATE, "tanh: not built yet"); }
W void ad__tanh_bwd(ad_tape *t, ad_node *n) { (void)n; ad__fail(t, AD_ERR_STATE, "tanh: not built yet"); }
W ad_status ad__sigmoid_fwd(ad_tape *t, ad_node *n) { (void)n; return ad__fail(t, AD_ERR_STATE, "sigmoid: not built yet"); }
W void ad__sigmoid_bwd(ad_tape *t, ad_node *n) { (void)n; ad__fail(t, AD_ERR_STATE, "sigmoid: not built yet"); }
W ad_status ad__relu_fwd(ad_tape *t, ad_node *n) { (void)n; return ad__fail(t, AD_ERR_STATE, "relu: not built yet"); }
W void ad__relu_bwd(ad_tape *t, ad_node *n) { (void)n; ad__fail(t, AD_ERR_STATE, "relu: not built yet"); }
W ad_status ad__sum_fwd(ad_tape *t, ad_node *n) { (void)n; return ad__fail(t, AD_ERR_STATE, "sum: not built yet"); }
W void ad__sum_bwd(ad_tape *t, ad_node *n) { (void)n; ad__fail(t, AD_ERR_STATE, "sum: not built yet"); }
W ad_status ad__mean_fwd(ad_tape *t, ad_node *n) { (void)n; return ad__fail(t, AD_ERR_STATE, "mean: not built yet"); }
W void ad__mean_bwd(ad_tape *t, ad_node *n) { (void)n; ad__fail(t, AD_ERR_STATE, "mean: not built yet"); }
W ad_status ad__softmax_fwd(ad_tape *t, ad_node *n) { (void)n; return ad__fail(t, AD_ERR_STATE, "softmax: not built yet"); }
W void ad__softmax_bwd(ad_tape *t, ad_node *n) { (void)n; ad__fail(t, AD_ERR_STATE, "softmax: not built yet"); }
W ad_status ad__log_softmax_fwd(ad_tape *t, ad_node *n) { (void)n; return ad__fail(t, AD_ERR_STATE, "log_softmax: not built yet"); }
W void ad__log_softmax_bwd(ad_tape *t, ad_node *n) { (void)n; ad__fail(t, AD_ERR_STATE, "log_softmax: not built yet"); }
W ad_status ad__reshape_fwd(ad_tape *t, ad_node *n) { (void)n; return ad__fail(t, AD_ERR_STATE, "reshape: not built yet"); }
W void ad__reshape_bwd(ad_tape *t, ad_node *n) { (void)n; ad__fail(t, AD_ERR_STATE, "reshape: not built yet"); }
W ad_status ad__permute_fwd(ad_tape *t, ad_node *n) { (void)n; return ad__fail(t, AD_ERR_STATE, "permute: not built yet"); }
W void ad__permute_bwd(ad_tape *t, ad_node *n) { (void)n; ad__fail(t, AD_ERR_STATE, "permute: not built yet"); }
W ad_status ad__concat_fwd(ad_tape *t, ad_node *n) { (void)n; return ad__fail(t, AD_ERR_STATE, "concat: not built yet"); }
W void ad__concat_bwd(ad_tape *t, ad_node *n) { (void)n; ad__fail(t, AD_ERR_STATE, "concat: not built yet"); }
W ad_status ad__slice_fwd(ad_tape *t, ad_node *n) { (void)n; return ad__fail(t, AD_ERR_STATE, "slice: not built yet"); }
W void ad__slice_bwd(ad_tape *t, ad_node *n) { (void)n; ad__fail(t, AD_ERR_STATE, "slice: not built yet"); }
W ad_status ad__gather_rows_fwd(ad_tape *t, ad_node *n) { (void)n; return ad__fail(t, AD_ERR_STATE, "gather_rows: not built yet"); }
W void ad__gather_rows_bwd(ad_tape *t, ad_node *n) { (void)n; ad__fail(t, AD_ERR_STATE, "gather_rows: not built yet"); }
W ad_status ad__where_fwd(ad_tape *t, ad_node *n) { (void)n; return ad__fail(t, AD_ERR_STATE, "where: not built yet"); }
W void ad__where_bwd(ad_tape *t, ad_node *n) { (void)n; ad__fail(t, AD_ERR_STATE, "where: not built yet"); }
W ad_status ad__dropout_fwd(ad_tape *t, ad_node *n) { (void)n; return ad__fail(t, AD_ERR_STATE, "dropout: not built yet"); }
W void ad__dropout_bwd(ad_tape *t, ad_node *n) { (void)n; ad__fail(t, AD_ERR_STATE, "dropout: not built yet"); }
W ad_status ad__cross_entropy_fwd(ad_tape *t, ad_node *n) { (void)n; return ad__fail(t, AD_ERR_STATE, "cross_entropy: not built yet"); }
W void ad__cross_entropy_bwd(ad_tape *t, ad_node *n) { (void)n; ad__fail(t, AD_ERR_STATE, "cross_entropy: not built yet"); }
W ad_status ad__bce_with_logits_fwd(ad_tape *t, ad_node *n) { (void)n; return ad__fail(t, AD_ERR_STATE, "bce_with_logits: not built yet"); }
W void ad__bce_with_logits_bwd(ad_tape *t, ad_node *n) { (void)n; ad__fail(t, AD_ERR_STATE, "bce_with_logits: not built yet"); }
W ad_status ad__bce_fwd(ad_tape *t, ad_node *n) { (void)n; return ad__fail(t, AD_ERR_STATE, "bce: not built yet"); }
W void ad__bce_bwd(ad_tape *t, ad_node *n) { (void)n; ad__fail(t, AD_ERR_STATE, "bce: not built yet"); }
W ad_status ad__mse_fwd(ad_tape *t, ad_node *n) { (void)n; return ad__fail(t, AD_ERR_STATE, "mse: not built yet"); }
W void ad__mse_bwd(ad_tape *t, ad_node *n) { (void)n; ad__fail(t, AD_ERR_STATE, "mse: not built yet"); }
W ad_status ad__custom_fwd(ad_tape *t, ad_node *n) { (void)n; return ad__fail(t, AD_ERR_STATE, "custom: not built yet"); }
W void ad__custom_bwd(ad_tape *t, ad_node *n) { (void)n; ad__fail(t, AD_ERR_STATE, "custom: not built yet"); }
W ad_status ad__shape_broadcast(ad_tape *t, ad_node *n, ad_shape *o) { (void)n; (void)o; return ad__fail(t, AD_ERR_STATE, "broadcast: not built yet"); }
W ad_status ad__shape_reduce(ad_tape *t, ad_node *n, ad_shape *o) { (void)n; (void)o; return ad__fail(t, AD_ERR_STATE, "reduce: not built yet"); }
W ad_status ad__shape_softmax(ad_tape *t, ad_node *n, ad_shape *o) { (void)n; (void)o; return ad__fail(t, AD_ERR_STATE, "softmax: not built yet"); }
W ad_status ad__shape_reshape(ad_tape *t, ad_node *n, ad_shape *o) { (void)n; (void)o; return ad__fail(t, AD_ERR_STATE, "reshape: not built yet"); }
W ad_status ad__shape_permute(ad_tape *t, ad_node *n, ad_shape *o) { (void)n; (void)o; return ad__fail(t, AD_ERR_STATE, "permute: not built yet"); }
W ad_status ad__shape_concat(ad_tape *t, ad_node *n, ad_shape *o) { (void)n; (void)o; return ad__fail(t, AD_ERR_STATE, "concat: not built yet"); }
W ad_status ad__shape_slice(ad_tape *t, ad_node *n, ad_shape *o) { (void)n; (void)o; return ad__fail(t, AD_ERR_STATE, "slice: not built yet"); }
W ad_status ad__shape_gather_rows(ad_tape *t, ad_node *n, ad_shape *o) { (void)n; (void)o; return ad__fail(t, AD_ERR_STATE, "gather_rows: not built yet"); }
W ad_status ad__shape_where(ad_tape *t, ad_node *n, ad_shape *o) { (void)n; (void)o; return ad__fail(t, AD_ERR_STATE, "where: not built yet"); }
W ad_status ad__shape_cross_entropy(ad_tape *t, ad_node *n, ad_shape *o) { (void)n; (void)o; return ad__fail(t, AD_ERR_STATE, "cross_entropy: not built yet"); }
W ad_status ad__shape_pair_loss(ad_tape *t, ad_node *n, ad_shape *o) { (void)n; (void)o; return ad__fail(t, AD_ERR_STATE, "pair_loss: not built yet"); }
W ad_status ad__shape_custom(ad_tape *t, ad_node *n, ad_shape *o) { (void)n; (void)o; return ad__fail(t, AD_ERR_STATE, "custom: not built yet"); }
