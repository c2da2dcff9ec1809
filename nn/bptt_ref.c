/*
 * bptt_ref.c - the hand-derived BPTT of docs/derivations.md in plain loops.
 * Section numbers in comments refer to that file. No engine calls.
 */
#include "bptt_ref.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double sigmoid(double z)
{
    return z >= 0 ? 1.0 / (1.0 + exp(-z)) : exp(z) / (1.0 + exp(z));
}

/* ---- case 1: many-to-one (section 1) ------------------------------------------------ */

ad_status nn_ref_case1(int V, int H, const nn_case1_weights *w, const double *x, int T, double y,
                       double *loss, nn_case1_weights *grads, ad_error *err)
{
    if (!w || !w->W_i || !w->W_h || !w->W_o || !x || !loss)
        return ad_error_set(err, AD_ERR_NULL, "ref_case1: a required argument is NULL");
    if (T < 1) return ad_error_set(err, AD_ERR_EMPTY, "ref_case1: empty sequence");
    if (V < 1 || H < 1) return ad_error_set(err, AD_ERR_ARG, "ref_case1: sizes must be >= 1");
    /* O[t*H + j], t = 0..T; O_0 = 0 */
    double *O = calloc((size_t)(T + 1) * (size_t)H, sizeof *O);
    double *dO = calloc((size_t)H, sizeof *dO), *dprev = calloc((size_t)H, sizeof *dprev);
    if (!O || !dO || !dprev) {
        free(O), free(dO), free(dprev);
        return ad_error_set(err, AD_ERR_NOMEM, "ref_case1: out of memory");
    }
    /* Forward (1.1): O_t = tanh(x_t W_i + O_{t-1} W_h). */
    for (int t = 1; t <= T; t++)
        for (int j = 0; j < H; j++) {
            double a = 0;
            for (int v = 0; v < V; v++) a += x[(size_t)(t - 1) * V + v] * w->W_i[v * H + j];
            for (int k = 0; k < H; k++) a += O[(size_t)(t - 1) * H + k] * w->W_h[k * H + j];
            O[(size_t)t * H + j] = tanh(a);
        }
    const double *OT = O + (size_t)T * H;
    double z = 0;
    for (int j = 0; j < H; j++) z += OT[j] * w->W_o[j];
    double yhat = sigmoid(z);
    *loss = -(y * log(yhat) + (1 - y) * log1p(-yhat));
    if (grads) {
        /* (1.2) dL/dz = yhat - y;  dW_o = O_T^T dz;  dO_T = dz W_o^T */
        double dz = yhat - y;
        memset(grads->W_i, 0, sizeof(double) * (size_t)V * H);
        memset(grads->W_h, 0, sizeof(double) * (size_t)H * H);
        for (int j = 0; j < H; j++) {
            grads->W_o[j] = OT[j] * dz;
            dO[j] = dz * w->W_o[j];
        }
        /* (1.3) back through time: da_t = dO_t (1 - O_t^2), summed into dW_i and dW_h */
        for (int t = T; t >= 1; t--) {
            const double *Ot = O + (size_t)t * H, *Op = O + (size_t)(t - 1) * H;
            for (int j = 0; j < H; j++) dO[j] *= 1 - Ot[j] * Ot[j]; /* now da_t */
            for (int v = 0; v < V; v++)
                for (int j = 0; j < H; j++) grads->W_i[v * H + j] += x[(size_t)(t - 1) * V + v] * dO[j];
            for (int k = 0; k < H; k++) {
                double s = 0;
                for (int j = 0; j < H; j++) {
                    grads->W_h[k * H + j] += Op[k] * dO[j];
                    s += w->W_h[k * H + j] * dO[j];
                }
                dprev[k] = s;
            }
            memcpy(dO, dprev, sizeof(double) * (size_t)H);
        }
    }
    free(O), free(dO), free(dprev);
    return ad_error_set(err, AD_OK, NULL);
}

/* ---- case 2: many-to-many, min-char-rnn form (section 2) --------------------------------- */

static void zero_case2(nn_case2_weights *g, int V, int H)
{
    memset(g->W_xh, 0, sizeof(double) * (size_t)H * V);
    memset(g->W_hh, 0, sizeof(double) * (size_t)H * H);
    memset(g->W_hy, 0, sizeof(double) * (size_t)V * H);
    if (g->b_h) memset(g->b_h, 0, sizeof(double) * (size_t)H);
    if (g->b_y) memset(g->b_y, 0, sizeof(double) * (size_t)V);
}

/* One segment; gradients are added into g (already zeroed by the caller). */
static ad_status case2_segment(int V, int H, const nn_case2_weights *w, const int64_t *in,
                               const int64_t *tg, int T, const double *h0, double *loss,
                               nn_case2_weights *g, double *dh0, double *h_last, ad_error *err)
{
    double *h = calloc((size_t)(T + 1) * (size_t)H, sizeof *h);
    double *p = calloc((size_t)T * (size_t)V, sizeof *p);
    double *dh = calloc((size_t)H, sizeof *dh), *dnext = calloc((size_t)H, sizeof *dnext);
    if (!h || !p || !dh || !dnext) {
        free(h), free(p), free(dh), free(dnext);
        return ad_error_set(err, AD_ERR_NOMEM, "ref_case2: out of memory");
    }
    if (h0) memcpy(h, h0, sizeof(double) * (size_t)H);
    double total = 0;
    /* Forward (2.1): x_t one-hot, so W_xh x_t is column in_t of W_xh. */
    for (int t = 1; t <= T; t++) {
        double *ht = h + (size_t)t * H, *hp = h + (size_t)(t - 1) * H, *pt = p + (size_t)(t - 1) * V;
        for (int i = 0; i < H; i++) {
            double a = w->W_xh[i * V + in[t - 1]] + (w->b_h ? w->b_h[i] : 0.0);
            for (int k = 0; k < H; k++) a += w->W_hh[i * H + k] * hp[k];
            ht[i] = tanh(a);
        }
        double m = -INFINITY, s = 0;
        for (int v = 0; v < V; v++) {
            double yv = w->b_y ? w->b_y[v] : 0.0;
            for (int i = 0; i < H; i++) yv += w->W_hy[v * H + i] * ht[i];
            pt[v] = yv;
            if (yv > m) m = yv;
        }
        for (int v = 0; v < V; v++) s += exp(pt[v] - m);
        /* s holds exp(0) = 1 from the maximum, never 0 as cppcheck assumes. */
        // cppcheck-suppress invalidFunctionArg
        double lse = m + log(s);
        total += lse - pt[tg[t - 1]];       /* -log p_t[c_t] */
        for (int v = 0; v < V; v++) pt[v] = exp(pt[v] - lse);
    }
    *loss = total;
    if (h_last) memcpy(h_last, h + (size_t)T * H, sizeof(double) * (size_t)H);
    if (g) {
        /* Backward (2.2, 2.3): dy_t = p_t - onehot(c_t); temporal copies summed. */
        for (int t = T; t >= 1; t--) {
            double *ht = h + (size_t)t * H, *hp = h + (size_t)(t - 1) * H, *pt = p + (size_t)(t - 1) * V;
            pt[tg[t - 1]] -= 1.0; /* now dy_t */
            for (int i = 0; i < H; i++) dh[i] = dnext[i];
            for (int v = 0; v < V; v++) {
                if (g->b_y) g->b_y[v] += pt[v];
                for (int i = 0; i < H; i++) {
                    g->W_hy[v * H + i] += pt[v] * ht[i];
                    dh[i] += w->W_hy[v * H + i] * pt[v];
                }
            }
            for (int i = 0; i < H; i++) dh[i] *= 1 - ht[i] * ht[i]; /* d(pre-activation) */
            for (int k = 0; k < H; k++) dnext[k] = 0;
            for (int i = 0; i < H; i++) {
                if (g->b_h) g->b_h[i] += dh[i];
                g->W_xh[i * V + in[t - 1]] += dh[i];
                for (int k = 0; k < H; k++) {
                    g->W_hh[i * H + k] += dh[i] * hp[k];
                    dnext[k] += w->W_hh[i * H + k] * dh[i];
                }
            }
        }
    }
    if (dh0) memcpy(dh0, dnext, sizeof(double) * (size_t)H);
    free(h), free(p), free(dh), free(dnext);
    return ad_error_set(err, AD_OK, NULL);
}

static ad_status check_case2(int V, int H, const nn_case2_weights *w, const int64_t *in, const int64_t *tg,
                             int T, const double *loss, ad_error *err)
{
    if (!w || !w->W_xh || !w->W_hh || !w->W_hy || !in || !tg || !loss)
        return ad_error_set(err, AD_ERR_NULL, "ref_case2: a required argument is NULL");
    if (T < 1) return ad_error_set(err, AD_ERR_EMPTY, "ref_case2: empty sequence");
    if (V < 1 || H < 1) return ad_error_set(err, AD_ERR_ARG, "ref_case2: sizes must be >= 1");
    for (int t = 0; t < T; t++)
        if (in[t] < 0 || in[t] >= V || tg[t] < 0 || tg[t] >= V)
            return ad_error_set(err, AD_ERR_ARG, "ref_case2: an input or target is outside 0..V-1");
    return AD_OK;
}

ad_status nn_ref_case2(int V, int H, const nn_case2_weights *w, const int64_t *inputs,
                       const int64_t *targets, int T, const double *h0, double *loss,
                       nn_case2_weights *grads, double *dh0, double *h_last, ad_error *err)
{
    ad_status st = check_case2(V, H, w, inputs, targets, T, loss, err);
    if (st != AD_OK) return st;
    if (grads) zero_case2(grads, V, H);
    return case2_segment(V, H, w, inputs, targets, T, h0, loss, grads, dh0, h_last, err);
}

ad_status nn_ref_case2_truncated(int V, int H, const nn_case2_weights *w, const int64_t *inputs,
                                 const int64_t *targets, int T, int k, const double *h0,
                                 double *loss, nn_case2_weights *grads, double *dh0,
                                 ad_error *err)
{
    ad_status st = check_case2(V, H, w, inputs, targets, T, loss, err);
    if (st != AD_OK) return st;
    if (k < 1) return ad_error_set(err, AD_ERR_ARG, "ref_case2_truncated: segment length must be >= 1");
    double *h = calloc((size_t)H, sizeof *h);
    if (!h) return ad_error_set(err, AD_ERR_NOMEM, "ref_case2_truncated: out of memory");
    if (h0) memcpy(h, h0, sizeof(double) * (size_t)H);
    if (grads) zero_case2(grads, V, H);
    *loss = 0;
    /* (2.4) each segment starts from the carried state; its gradient stops there. */
    for (int s = 0; s < T && st == AD_OK; s += k) {
        int len = T - s < k ? T - s : k;
        double seg = 0;
        st = case2_segment(V, H, w, inputs + s, targets + s, len, h, &seg, grads,
                           s == 0 ? dh0 : NULL, h, err);
        if (st == AD_OK) *loss += seg; /* a failed segment set no loss */
    }
    free(h);
    return st;
}

/* ---- batched Elman (section 3) --------------------------------------------------------- */

ad_status nn_ref_elman(const nn_ref_sizes *sizes, const nn_ref_weights *w, const double *x, const double *h0,
                       const double *U, double *loss, nn_ref_weights *g, double *dh0, double *dx, ad_error *err)
{
    if (!sizes) return ad_error_set(err, AD_ERR_NULL, "ref_elman: sizes are NULL");
    const int B = sizes->batch, I = sizes->input, H = sizes->hidden, T = sizes->steps;
    if (!w || !w->W_ih || !w->W_hh || !w->b_ih || !w->b_hh || !x || !h0 || !U || !loss)
        return ad_error_set(err, AD_ERR_NULL, "ref_elman: a required argument is NULL");
    if (T < 1) return ad_error_set(err, AD_ERR_EMPTY, "ref_elman: empty sequence");
    if (B < 1 || I < 1 || H < 1) return ad_error_set(err, AD_ERR_ARG, "ref_elman: sizes must be >= 1");
    size_t bh = (size_t)B * H;
    double *h = calloc((size_t)(T + 1) * bh, sizeof *h);
    double *dh = calloc(bh, sizeof *dh), *dnext = calloc(bh, sizeof *dnext);
    if (!h || !dh || !dnext) {
        free(h), free(dh), free(dnext);
        return ad_error_set(err, AD_ERR_NOMEM, "ref_elman: out of memory");
    }
    memcpy(h, h0, sizeof(double) * bh);
    if (dx) memset(dx, 0, sizeof(double) * (size_t)T * B * I);
    double total = 0;
    for (int t = 1; t <= T; t++)
        for (int b = 0; b < B; b++)
            for (int j = 0; j < H; j++) {
                const double *xt = x + ((size_t)(t - 1) * B + b) * I;
                const double *hp = h + (size_t)(t - 1) * bh + (size_t)b * H;
                double a = w->b_ih[j] + w->b_hh[j];
                for (int i = 0; i < I; i++) a += xt[i] * w->W_ih[j * I + i];
                for (int k = 0; k < H; k++) a += hp[k] * w->W_hh[j * H + k];
                double ht = tanh(a);
                h[(size_t)t * bh + (size_t)b * H + j] = ht;
                total += ht * U[(size_t)(t - 1) * bh + (size_t)b * H + j];
            }
    *loss = total;
    if (g) {
        memset(g->W_ih, 0, sizeof(double) * (size_t)H * I);
        memset(g->W_hh, 0, sizeof(double) * (size_t)H * H);
        memset(g->b_ih, 0, sizeof(double) * (size_t)H);
        memset(g->b_hh, 0, sizeof(double) * (size_t)H);
    }
    for (int t = T; t >= 1; t--) {
        const double *ht = h + (size_t)t * bh, *hp = h + (size_t)(t - 1) * bh;
        for (size_t e = 0; e < bh; e++) {
            dh[e] = (U[(size_t)(t - 1) * bh + e] + dnext[e]) * (1 - ht[e] * ht[e]);
            dnext[e] = 0;
        }
        for (int b = 0; b < B; b++)
            for (int j = 0; j < H; j++) {
                double d = dh[(size_t)b * H + j];
                const double *xt = x + ((size_t)(t - 1) * B + b) * I;
                if (g) {
                    g->b_ih[j] += d;
                    g->b_hh[j] += d;
                    for (int i = 0; i < I; i++) g->W_ih[j * I + i] += d * xt[i];
                    for (int k = 0; k < H; k++) g->W_hh[j * H + k] += d * hp[(size_t)b * H + k];
                }
                if (dx)
                    for (int i = 0; i < I; i++)
                        dx[((size_t)(t - 1) * B + b) * I + i] += d * w->W_ih[j * I + i];
                for (int k = 0; k < H; k++) dnext[(size_t)b * H + k] += d * w->W_hh[j * H + k];
            }
    }
    if (dh0) memcpy(dh0, dnext, sizeof(double) * bh);
    free(h), free(dh), free(dnext);
    return ad_error_set(err, AD_OK, NULL);
}
