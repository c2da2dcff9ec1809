/*
 * textbook.c - the textbook models on the engine and the engine-vs-reference
 * checker.
 */
#include "textbook.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int64_t dim(ad_param *p, int i) { return ad_tensor_dim(ad_param_value(p), i); }

ad_tensor *nn_case1_loss(ad_tape *t, ad_param *W_i, ad_param *W_h, ad_param *W_o, const double *x,
                         int T, double y, ad_tensor **y_hat)
{
    if (y_hat) *y_hat = NULL;
    if (!t) return NULL;
    if (!W_i || !W_h || !W_o || !x) {
        ad_tape_fail(t, AD_ERR_NULL, "case1: a weight or x is NULL");
        return NULL;
    }
    if (T < 1) {
        ad_tape_fail(t, AD_ERR_EMPTY, "case1: empty sequence");
        return NULL;
    }
    ad_dtype dt = ad_tensor_dtype(ad_param_value(W_i));
    int64_t V = dim(W_i, 0), H = dim(W_i, 1);
    ad_tensor *O = ad_zeros(t, dt, ad_shape2(1, H));
    for (int k = 0; k < T; k++) {
        ad_tensor *xt = ad_from_f64(t, dt, ad_shape2(1, V), x + (size_t)k * (size_t)V);
        /* O_t = tanh(x_t W_i + O_{t-1} W_h) */
        O = ad_tanh(t, ad_add(t, ad_matmul(t, xt, ad_use(t, W_i), 0),
                              ad_matmul(t, O, ad_use(t, W_h), 0)));
    }
    ad_tensor *yhat = ad_sigmoid(t, ad_matmul(t, O, ad_use(t, W_o), 0));
    if (y_hat) *y_hat = yhat;
    double yv[1] = {y};
    return ad_bce(t, yhat, ad_from_f64(t, dt, ad_shape2(1, 1), yv), AD_REDUCE_SUM);
}

ad_tensor *nn_case2_loss(ad_tape *t, const nn_case2_params *p, const int64_t *inputs,
                         const int64_t *targets, int T, ad_tensor *h0, ad_tensor **h_last)
{
    if (!t) return NULL;
    if (h_last) *h_last = NULL;
    if (!p || !p->W_xh || !p->W_hh || !p->W_hy || !inputs || !targets) {
        ad_tape_fail(t, AD_ERR_NULL, "case2: a weight, the inputs or the targets are NULL");
        return NULL;
    }
    if (T < 1) {
        ad_tape_fail(t, AD_ERR_EMPTY, "case2: empty sequence");
        return NULL;
    }
    ad_dtype dt = ad_tensor_dtype(ad_param_value(p->W_xh));
    int64_t H = dim(p->W_xh, 0), V = dim(p->W_xh, 1);
    ad_tensor *h = h0 ? h0 : ad_zeros(t, dt, ad_shape2(H, 1));
    ad_tensor *loss = NULL;
    for (int k = 0; k < T; k++) {
        if (inputs[k] < 0 || inputs[k] >= V) {
            ad_tape_fail(t, AD_ERR_ARG, "case2: input %lld at t=%d is outside 0..%lld", (long long)inputs[k], k,
                         (long long)V - 1);
            return NULL;
        }
        if (targets[k] < 0 || targets[k] >= V) {
            ad_tape_fail(t, AD_ERR_ARG, "case2: target %lld at t=%d is outside 0..%lld", (long long)targets[k], k,
                         (long long)V - 1);
            return NULL;
        }
        ad_tensor *x = ad_zeros(t, dt, ad_shape2(V, 1)); /* one-hot column */
        if (!x) return NULL;
        if (dt == AD_F32) ad_tensor_f32(x)[inputs[k]] = 1.0f;
        else ad_tensor_f64(x)[inputs[k]] = 1.0;
        /* h_t = tanh(W_xh x_t + W_hh h_{t-1} + b_h);  y_t = W_hy h_t + b_y */
        /* (a missing bias is left out, not added as zeros) */
        ad_tensor *a = ad_add(t, ad_matmul(t, ad_use(t, p->W_xh), x, 0), ad_matmul(t, ad_use(t, p->W_hh), h, 0));
        if (p->b_h) a = ad_add(t, a, ad_use(t, p->b_h));
        h = ad_tanh(t, a);
        ad_tensor *y = ad_matmul(t, ad_use(t, p->W_hy), h, 0);
        if (p->b_y) y = ad_add(t, y, ad_use(t, p->b_y));
        int64_t c = targets[k];
        /* -log softmax(y_t)[c_t]: cross-entropy of the row y_t^T */
        ad_tensor *l = ad_cross_entropy(t, ad_transpose(t, y, 0, 1), &c, 1, -1, AD_REDUCE_SUM);
        loss = loss ? ad_add(t, loss, l) : l;
    }
    if (h_last) *h_last = h;
    return loss;
}

/* ---- case 2 as a cell -------------------------------------------------------------------- */

/* The column step of nn_case2_loss() on a batch of one: w = {W_xh, W_hh[, b_h]}. */
static ad_status case2_step(ad_tape *t, const nn_cell *cell, ad_tensor *x, const nn_state *prev, nn_state *next)
{
    int64_t V = cell->input_size, H = cell->hidden_size;
    if (ad_tensor_dim(x, 0) != 1 || ad_tensor_dim(prev->h, 0) != 1)
        return ad_tape_fail(t, AD_ERR_SHAPE, "%s: the column form takes a batch of 1, got %lld rows", cell->name,
                            (long long)ad_tensor_dim(x, 0));
    ad_tensor *xc = ad_reshape(t, x, ad_shape2(V, 1)), *hc = ad_reshape(t, prev->h, ad_shape2(H, 1));
    ad_tensor *a = ad_add(t, ad_matmul(t, ad_use(t, cell->w[0]), xc, 0), ad_matmul(t, ad_use(t, cell->w[1]), hc, 0));
    if (cell->n_w == 3) a = ad_add(t, a, ad_use(t, cell->w[2]));
    next->h = ad_reshape(t, ad_tanh(t, a), ad_shape2(1, H));
    next->c = NULL;
    return ad_tape_status(t);
}

ad_status nn_case2_cell(const nn_case2_params *p, nn_cell *cell, ad_error *err)
{
    if (!p || !cell || !p->W_xh || !p->W_hh || !p->W_hy)
        return ad_error_set(err, AD_ERR_NULL, "case2_cell: %s is NULL", !p ? "p" : !cell ? "cell" : "a weight");
    int64_t H = dim(p->W_xh, 0), V = dim(p->W_xh, 1);
    ad_dtype dt = ad_tensor_dtype(ad_param_value(p->W_xh));
    ad_param *all[5] = {p->W_xh, p->W_hh, p->W_hy, p->b_h, p->b_y};
    for (int i = 1; i < 5; i++)
        if (all[i] && ad_tensor_dtype(ad_param_value(all[i])) != dt)
            return ad_error_set(err, AD_ERR_DTYPE, "case2_cell: the weights' dtypes differ");
    if (dim(p->W_hh, 0) != H || dim(p->W_hh, 1) != H || dim(p->W_hy, 0) != V || dim(p->W_hy, 1) != H ||
        (p->b_h && (dim(p->b_h, 0) != H || dim(p->b_h, 1) != 1)) ||
        (p->b_y && (dim(p->b_y, 0) != V || dim(p->b_y, 1) != 1)))
        return ad_error_set(err, AD_ERR_SHAPE, "case2_cell: weight shapes do not fit together (W_xh is [%lld, %lld])",
                            (long long)H, (long long)V);
    *cell = (nn_cell){.kind = NN_CELL_CUSTOM, .input_size = (int)V, .hidden_size = (int)H, .step = case2_step,
                      .ctx = (void *)p};
    snprintf(cell->name, sizeof cell->name, "case2");
    cell->w[cell->n_w++] = p->W_xh;
    cell->w[cell->n_w++] = p->W_hh;
    if (p->b_h) cell->w[cell->n_w++] = p->b_h;
    return ad_error_set(err, AD_OK, NULL);
}

ad_tensor *nn_case2_step_loss(ad_tape *t, const nn_case2_params *p, const nn_state *h, int64_t target)
{
    if (!t) return NULL;
    if (!p || !p->W_hy || !h || !h->h) {
        ad_tape_fail(t, AD_ERR_NULL, "case2_step_loss: %s is NULL", !p || !p->W_hy ? "W_hy" : "the state");
        return NULL;
    }
    int64_t V = dim(p->W_hy, 0), H = dim(p->W_hy, 1);
    if (target < 0 || target >= V) {
        ad_tape_fail(t, AD_ERR_ARG, "case2_step_loss: target %lld is outside 0..%lld", (long long)target,
                     (long long)V - 1);
        return NULL;
    }
    if (ad_tensor_numel(h->h) != (size_t)H) {
        ad_tape_fail(t, AD_ERR_SHAPE, "case2_step_loss: the state has %zu elements, W_hy takes %lld",
                     ad_tensor_numel(h->h), (long long)H);
        return NULL;
    }
    ad_tensor *y = ad_matmul(t, ad_use(t, p->W_hy), ad_reshape(t, h->h, ad_shape2(H, 1)), 0);
    if (p->b_y) y = ad_add(t, y, ad_use(t, p->b_y));
    int64_t c = target;
    return ad_cross_entropy(t, ad_transpose(t, y, 0, 1), &c, 1, -1, AD_REDUCE_SUM);
}

/* ---- checker ---------------------------------------------------------------------------- */

static void compare(nn_check_report *r, const char *name, const double *engine,
                    const double *reference, size_t n)
{
    nn_check_entry *e = &r->entries[r->count++];
    memset(e, 0, sizeof *e);
    snprintf(e->name, sizeof e->name, "%s", name);
    for (size_t i = 0; i < n; i++) {
        double a = fabs(engine[i] - reference[i]);
        double rel = a / fmax(fabs(reference[i]), 1e-300);
        if (i == 0 || a > e->abs_err) {
            e->worst_index = i;
            e->engine = engine[i];
            e->reference = reference[i];
            e->abs_err = a;
            e->rel_err = a == 0 ? 0 : rel;
        }
    }
    if (e->abs_err > r->max_abs_err) r->max_abs_err = e->abs_err;
    if (e->rel_err > r->max_rel_err) r->max_rel_err = e->rel_err;
}

/* Saves the weights' gradients to `saved` and zeroes them; restore puts them back. */
static int stash_grads(ad_param *const *ws, int n, double **saved, int restore)
{
    for (int i = 0; i < n; i++) {
        ad_tensor *g = ad_param_grad(ws[i]);
        size_t bytes = ad_tensor_numel(g) * sizeof(double);
        if (restore) {
            memcpy(ad_tensor_f64(g), saved[i], bytes);
            free(saved[i]);
            continue;
        }
        saved[i] = malloc(bytes ? bytes : 1);
        if (!saved[i]) {
            while (i-- > 0) free(saved[i]);
            return 0;
        }
        memcpy(saved[i], ad_tensor_f64(g), bytes);
        ad_param_zero_grad(ws[i]);
    }
    return 1;
}

static ad_status check_f64(ad_param *const *ws, int n, ad_error *err)
{
    for (int i = 0; i < n; i++) {
        if (!ws[i]) return ad_error_set(err, AD_ERR_NULL, "check: a weight is NULL");
        if (ad_tensor_dtype(ad_param_value(ws[i])) != AD_F64)
            return ad_error_set(err, AD_ERR_DTYPE, "check: weights must be f64 (the reference is f64)");
    }
    return AD_OK;
}

/* Runs the engine graph on a fresh tape and backward; copies the tape's error to err. */
static ad_status run_engine(ad_tape *t, ad_tensor *loss, double *value, ad_error *err)
{
    if (loss && ad_backward(t, loss, NULL) == AD_OK) {
        *value = ad_tensor_item(loss);
        return AD_OK;
    }
    return ad_error_set(err, ad_tape_status(t), "%s", ad_tape_message(t));
}

ad_status nn_check_case1(ad_param *W_i, ad_param *W_h, ad_param *W_o, const double *x, int T,
                         double y, nn_check_report *report, ad_error *err)
{
    ad_param *ws[3] = {W_i, W_h, W_o};
    if (!report || !x) return ad_error_set(err, AD_ERR_NULL, "check_case1: report or x is NULL");
    ad_status st = check_f64(ws, 3, err);
    if (st != AD_OK) return st;
    int64_t V = dim(W_i, 0), H = dim(W_i, 1);
    if (dim(W_h, 0) != H || dim(W_h, 1) != H || dim(W_o, 0) != H || dim(W_o, 1) != 1)
        return ad_error_set(err, AD_ERR_SHAPE, "check_case1: W_i [V,H], W_h [H,H], W_o [H,1] do not fit together");
    memset(report, 0, sizeof *report);
    size_t n = (size_t)(V * H + H * H + H);
    double *ref = malloc(n * sizeof *ref), *saved[3];
    if (!ref || !stash_grads(ws, 3, saved, 0)) {
        free(ref);
        return ad_error_set(err, AD_ERR_NOMEM, "check_case1: out of memory");
    }
    nn_case1_weights w = {ad_tensor_f64(ad_param_value(W_i)), ad_tensor_f64(ad_param_value(W_h)),
                          ad_tensor_f64(ad_param_value(W_o))};
    nn_case1_weights g = {ref, ref + V * H, ref + V * H + H * H};
    st = nn_ref_case1((int)V, (int)H, &w, x, T, y, &report->reference_loss, &g, err);
    ad_tape *t = ad_tape_new(NULL);
    if (st == AD_OK && !t) st = ad_error_set(err, AD_ERR_NOMEM, "check_case1: out of memory");
    if (st == AD_OK)
        st = run_engine(t, nn_case1_loss(t, W_i, W_h, W_o, x, T, y, NULL), &report->engine_loss, err);
    if (st == AD_OK) {
        compare(report, ad_param_name(W_i), ad_tensor_f64(ad_param_grad(W_i)), g.W_i, (size_t)(V * H));
        compare(report, ad_param_name(W_h), ad_tensor_f64(ad_param_grad(W_h)), g.W_h, (size_t)(H * H));
        compare(report, ad_param_name(W_o), ad_tensor_f64(ad_param_grad(W_o)), g.W_o, (size_t)H);
    }
    ad_tape_free(t);
    stash_grads(ws, 3, saved, 1);
    free(ref);
    return st;
}

ad_status nn_check_case2(const nn_case2_params *p, const int64_t *inputs, const int64_t *targets, int T,
                         const double *h0, nn_check_report *report, ad_error *err)
{
    if (!p || !report || !inputs || !targets)
        return ad_error_set(err, AD_ERR_NULL, "check_case2: an argument is NULL");
    if (!p->W_xh || !p->W_hh || !p->W_hy)
        return ad_error_set(err, AD_ERR_NULL, "check_case2: W_xh, W_hh or W_hy is NULL");
    /* ws: the weights present, in the order W_xh W_hh W_hy [b_h] [b_y] */
    ad_param *ws[5] = {p->W_xh, p->W_hh, p->W_hy, NULL, NULL};
    int n_w = 3;
    if (p->b_h) ws[n_w++] = p->b_h;
    if (p->b_y) ws[n_w++] = p->b_y;
    ad_status st = check_f64(ws, n_w, err);
    if (st != AD_OK) return st;
    int64_t H = dim(p->W_xh, 0), V = dim(p->W_xh, 1);
    if (dim(p->W_hh, 0) != H || dim(p->W_hh, 1) != H || dim(p->W_hy, 0) != V ||
        dim(p->W_hy, 1) != H || (p->b_h && dim(p->b_h, 0) != H) || (p->b_y && dim(p->b_y, 0) != V))
        return ad_error_set(err, AD_ERR_SHAPE, "check_case2: weight shapes do not fit together");
    memset(report, 0, sizeof *report);
    size_t n = (size_t)(2 * H * V + H * H + H + V + H);
    double *ref = malloc(n * sizeof *ref), *saved[5];
    if (!ref || !stash_grads(ws, n_w, saved, 0)) {
        free(ref);
        return ad_error_set(err, AD_ERR_NOMEM, "check_case2: out of memory");
    }
    nn_case2_weights w = {ad_tensor_f64(ad_param_value(p->W_xh)), ad_tensor_f64(ad_param_value(p->W_hh)),
                          ad_tensor_f64(ad_param_value(p->W_hy)),
                          p->b_h ? ad_tensor_f64(ad_param_value(p->b_h)) : NULL,
                          p->b_y ? ad_tensor_f64(ad_param_value(p->b_y)) : NULL};
    nn_case2_weights g = {ref, ref + H * V, ref + H * V + H * H, p->b_h ? ref + 2 * H * V + H * H : NULL,
                          p->b_y ? ref + 2 * H * V + H * H + H : NULL};
    double *dh0 = ref + 2 * H * V + H * H + H + V;
    st = nn_ref_case2((int)V, (int)H, &w, inputs, targets, T, h0, &report->reference_loss, &g,
                      dh0, NULL, err);
    ad_tape *t = ad_tape_new(NULL);
    if (st == AD_OK && !t) st = ad_error_set(err, AD_ERR_NOMEM, "check_case2: out of memory");
    ad_tensor *h0v = NULL;
    if (st == AD_OK) {
        h0v = ad_variable(t, AD_F64, ad_shape2(H, 1), h0 ? h0 : dh0); /* a buffer of the right size... */
        if (h0v && !h0) memset(ad_tensor_f64(h0v), 0, (size_t)H * sizeof(double)); /* ...then h0 = 0 */
    }
    if (st == AD_OK)
        st = run_engine(t, nn_case2_loss(t, p, inputs, targets, T, h0v, NULL), &report->engine_loss, err);
    if (st == AD_OK) {
        const double *refs[5] = {g.W_xh, g.W_hh, g.W_hy, NULL, NULL};
        int r = 3;
        if (p->b_h) refs[r++] = g.b_h;
        if (p->b_y) refs[r++] = g.b_y;
        for (int i = 0; i < n_w; i++)
            compare(report, ad_param_name(ws[i]), ad_tensor_f64(ad_param_grad(ws[i])), refs[i],
                    ad_tensor_numel(ad_param_value(ws[i])));
        compare(report, "h0", ad_tensor_grad_f64(h0v), dh0, (size_t)H);
    }
    ad_tape_free(t);
    stash_grads(ws, n_w, saved, 1);
    free(ref);
    return st;
}

void nn_check_print(const nn_check_report *r, FILE *out)
{
    if (!r || !out) return;
    fprintf(out, "loss: engine %.17g, reference %.17g\n", r->engine_loss, r->reference_loss);
    for (size_t i = 0; i < r->count; i++) {
        const nn_check_entry *e = &r->entries[i];
        fprintf(out, "  %-12s worst [%zu]: engine %+.15e reference %+.15e abs %.2e rel %.2e\n",
                e->name, e->worst_index, e->engine, e->reference, e->abs_err, e->rel_err);
    }
    fprintf(out, "max |engine - reference| = %.3e\n", r->max_abs_err);
}
