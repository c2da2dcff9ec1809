/*
 * bptt_ref_gated.c - hand-derived BPTT of batched LSTM and GRU layers in
 * plain loops (docs/derivations.md section 4). No engine calls.
 *
 * Per step and batch row, the forward keeps what backward needs (gates,
 * states); backward walks t = T..1 carrying dL/dh (and dL/dc) to the step
 * before, and adds each step's weight gradients (the temporal copies) into
 * the totals.
 */
#include "bptt_ref.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double sigm(double z) { return z >= 0 ? 1.0 / (1.0 + exp(-z)) : exp(z) / (1.0 + exp(z)); }

/* out[j] = b[j] + sum_i W[j][i] in[i] for j < rows (W is [rows, cols]). */
static void proj(const double *W, const double *b, const double *in, double *out, int rows, int cols)
{
    for (int j = 0; j < rows; j++) {
        double a = b ? b[j] : 0;
        for (int i = 0; i < cols; i++) a += W[(size_t)j * cols + i] * in[i];
        out[j] = a;
    }
}

/* The transposed step: dW += da in^T, db += da, din += W^T da (each may be NULL). */
static void proj_back(const double *W, const double *da, const double *in, double *dW, double *db,
                      double *din, int rows, int cols)
{
    for (int j = 0; j < rows; j++) {
        if (db) db[j] += da[j];
        for (int i = 0; i < cols; i++) {
            if (dW) dW[(size_t)j * cols + i] += da[j] * in[i];
            if (din) din[i] += W[(size_t)j * cols + i] * da[j];
        }
    }
}

static ad_status check(int B, int I, int H, const nn_ref_weights *w, const double *x, int T,
                       const double *h0, const double *U, const double *loss, ad_error *err)
{
    if (!w || !w->W_ih || !w->W_hh || !w->b_ih || !w->b_hh || !x || !h0 || !U || !loss)
        return ad_error_set(err, AD_ERR_NULL, "ref: a required argument is NULL");
    if (T < 1) return ad_error_set(err, AD_ERR_EMPTY, "ref: empty sequence");
    if (B < 1 || I < 1 || H < 1) return ad_error_set(err, AD_ERR_ARG, "ref: sizes must be >= 1");
    return AD_OK;
}

static void zero_grads(nn_ref_weights *g, int G, int I, int H)
{
    if (!g) return;
    memset(g->W_ih, 0, sizeof(double) * (size_t)G * H * I);
    memset(g->W_hh, 0, sizeof(double) * (size_t)G * H * H);
    memset(g->b_ih, 0, sizeof(double) * (size_t)G * H);
    memset(g->b_hh, 0, sizeof(double) * (size_t)G * H);
}

/* ---- LSTM ------------------------------------------------------------------------------- */

ad_status nn_ref_lstm(const nn_ref_sizes *sizes, const nn_ref_weights *w, const double *x, const double *h0,
                      const double *c0, const double *U, double *loss, nn_ref_weights *g, double *dh0, double *dc0,
                      double *dx, ad_error *err)
{
    if (!sizes) return ad_error_set(err, AD_ERR_NULL, "ref_lstm: sizes are NULL");
    const int B = sizes->batch, I = sizes->input, H = sizes->hidden, T = sizes->steps;
    ad_status st = check(B, I, H, w, x, T, h0, U, loss, err);
    if (st != AD_OK) return st;
    if (!c0) return ad_error_set(err, AD_ERR_NULL, "ref_lstm: c0 is NULL");
    size_t bh = (size_t)B * H, G = 4 * (size_t)H;
    double *h = calloc((size_t)(T + 1) * bh, sizeof *h), *c = calloc((size_t)(T + 1) * bh, sizeof *c);
    double *gates = calloc((size_t)T * B * G, sizeof *gates); /* i f g o after activation */
    double *tmp = calloc(G, sizeof *tmp), *da = calloc(G, sizeof *da);
    double *dh = calloc(bh, sizeof *dh), *dc = calloc(bh, sizeof *dc), *dhp = calloc((size_t)H, sizeof *dhp);
    if (!h || !c || !gates || !tmp || !da || !dh || !dc || !dhp) {
        st = ad_error_set(err, AD_ERR_NOMEM, "ref_lstm: out of memory");
        goto done;
    }
    memcpy(h, h0, sizeof(double) * bh);
    memcpy(c, c0, sizeof(double) * bh);
    if (dx) memset(dx, 0, sizeof(double) * (size_t)T * B * I);
    zero_grads(g, 4, I, H);
    double total = 0;
    for (int t = 1; t <= T; t++)
        for (int b = 0; b < B; b++) {
            const double *xt = x + ((size_t)(t - 1) * B + b) * I;
            const double *hp = h + (size_t)(t - 1) * bh + (size_t)b * H;
            const double *cp = c + (size_t)(t - 1) * bh + (size_t)b * H;
            double *gt = gates + ((size_t)(t - 1) * B + b) * G;
            proj(w->W_ih, w->b_ih, xt, gt, (int)G, I);
            proj(w->W_hh, w->b_hh, hp, tmp, (int)G, H);
            for (int j = 0; j < H; j++) {
                double i = sigm(gt[j] + tmp[j]), f = sigm(gt[H + j] + tmp[H + j]);
                double gg = tanh(gt[2 * H + j] + tmp[2 * H + j]), o = sigm(gt[3 * H + j] + tmp[3 * H + j]);
                gt[j] = i, gt[H + j] = f, gt[2 * H + j] = gg, gt[3 * H + j] = o;
                double ct = f * cp[j] + i * gg;
                c[(size_t)t * bh + (size_t)b * H + j] = ct;
                double ht = o * tanh(ct);
                h[(size_t)t * bh + (size_t)b * H + j] = ht;
                total += ht * U[(size_t)(t - 1) * bh + (size_t)b * H + j];
            }
        }
    *loss = total;
    /* dh, dc: gradients flowing into h_t, c_t from step t+1 (zero after T). */
    for (int t = T; t >= 1; t--)
        for (int b = 0; b < B; b++) {
            const double *xt = x + ((size_t)(t - 1) * B + b) * I;
            const double *hp = h + (size_t)(t - 1) * bh + (size_t)b * H;
            const double *cp = c + (size_t)(t - 1) * bh + (size_t)b * H;
            const double *ct = c + (size_t)t * bh + (size_t)b * H;
            const double *gt = gates + ((size_t)(t - 1) * B + b) * G;
            double *dhb = dh + (size_t)b * H, *dcb = dc + (size_t)b * H;
            for (int j = 0; j < H; j++) {
                double i = gt[j], f = gt[H + j], gg = gt[2 * H + j], o = gt[3 * H + j];
                double tc = tanh(ct[j]);
                double dht = U[(size_t)(t - 1) * bh + (size_t)b * H + j] + dhb[j];
                double dct = dcb[j] + dht * o * (1 - tc * tc);
                da[j] = dct * gg * i * (1 - i);             /* input gate */
                da[H + j] = dct * cp[j] * f * (1 - f);      /* forget gate */
                da[2 * H + j] = dct * i * (1 - gg * gg);    /* candidate */
                da[3 * H + j] = dht * tc * o * (1 - o);     /* output gate */
                dcb[j] = dct * f;                           /* to c_{t-1} */
            }
            memset(dhp, 0, sizeof(double) * (size_t)H);
            proj_back(w->W_ih, da, xt, g ? g->W_ih : NULL, g ? g->b_ih : NULL,
                      dx ? dx + ((size_t)(t - 1) * B + b) * I : NULL, (int)G, I);
            proj_back(w->W_hh, da, hp, g ? g->W_hh : NULL, g ? g->b_hh : NULL, dhp, (int)G, H);
            memcpy(dhb, dhp, sizeof(double) * (size_t)H); /* to h_{t-1} */
        }
    if (dh0) memcpy(dh0, dh, sizeof(double) * bh);
    if (dc0) memcpy(dc0, dc, sizeof(double) * bh);
    ad_error_set(err, AD_OK, NULL);
done:
    free(h), free(c), free(gates), free(tmp), free(da), free(dh), free(dc), free(dhp);
    return st;
}

/* ---- GRU ---------------------------------------------------------------------------------- */

ad_status nn_ref_gru(const nn_ref_sizes *sizes, const nn_ref_weights *w, const double *x, const double *h0,
                     const double *U, double *loss, nn_ref_weights *g, double *dh0, double *dx, ad_error *err)
{
    if (!sizes) return ad_error_set(err, AD_ERR_NULL, "ref_gru: sizes are NULL");
    const int B = sizes->batch, I = sizes->input, H = sizes->hidden, T = sizes->steps;
    ad_status st = check(B, I, H, w, x, T, h0, U, loss, err);
    if (st != AD_OK) return st;
    size_t bh = (size_t)B * H, G = 3 * (size_t)H;
    double *h = calloc((size_t)(T + 1) * bh, sizeof *h);
    /* per step and row: r, z, n and the hidden projection of n (h W_hn^T + b_hn) */
    double *keep = calloc((size_t)T * B * 4 * H, sizeof *keep);
    double *gi = calloc(G, sizeof *gi), *gh = calloc(G, sizeof *gh);
    double *dgi = calloc(G, sizeof *dgi), *dgh = calloc(G, sizeof *dgh);
    double *dh = calloc(bh, sizeof *dh), *dhp = calloc((size_t)H, sizeof *dhp);
    if (!h || !keep || !gi || !gh || !dgi || !dgh || !dh || !dhp) {
        st = ad_error_set(err, AD_ERR_NOMEM, "ref_gru: out of memory");
        goto done;
    }
    memcpy(h, h0, sizeof(double) * bh);
    if (dx) memset(dx, 0, sizeof(double) * (size_t)T * B * I);
    zero_grads(g, 3, I, H);
    double total = 0;
    for (int t = 1; t <= T; t++)
        for (int b = 0; b < B; b++) {
            const double *xt = x + ((size_t)(t - 1) * B + b) * I;
            const double *hp = h + (size_t)(t - 1) * bh + (size_t)b * H;
            double *k = keep + ((size_t)(t - 1) * B + b) * 4 * H;
            proj(w->W_ih, w->b_ih, xt, gi, (int)G, I);
            proj(w->W_hh, w->b_hh, hp, gh, (int)G, H);
            for (int j = 0; j < H; j++) {
                double r = sigm(gi[j] + gh[j]), z = sigm(gi[H + j] + gh[H + j]);
                double n = tanh(gi[2 * H + j] + r * gh[2 * H + j]);
                k[j] = r, k[H + j] = z, k[2 * H + j] = n, k[3 * H + j] = gh[2 * H + j];
                double ht = (1 - z) * n + z * hp[j];
                h[(size_t)t * bh + (size_t)b * H + j] = ht;
                total += ht * U[(size_t)(t - 1) * bh + (size_t)b * H + j];
            }
        }
    *loss = total;
    for (int t = T; t >= 1; t--)
        for (int b = 0; b < B; b++) {
            const double *xt = x + ((size_t)(t - 1) * B + b) * I;
            const double *hp = h + (size_t)(t - 1) * bh + (size_t)b * H;
            const double *k = keep + ((size_t)(t - 1) * B + b) * 4 * H;
            double *dhb = dh + (size_t)b * H;
            for (int j = 0; j < H; j++) {
                double r = k[j], z = k[H + j], n = k[2 * H + j], hn = k[3 * H + j];
                double dht = U[(size_t)(t - 1) * bh + (size_t)b * H + j] + dhb[j];
                double dan = dht * (1 - z) * (1 - n * n); /* pre-activation of n */
                double daz = dht * (hp[j] - n) * z * (1 - z);
                double dar = dan * hn * r * (1 - r);
                dgi[j] = dar, dgi[H + j] = daz, dgi[2 * H + j] = dan;
                dgh[j] = dar, dgh[H + j] = daz, dgh[2 * H + j] = dan * r;
                dhp[j] = dht * z; /* the direct path z h_{t-1} */
            }
            proj_back(w->W_ih, dgi, xt, g ? g->W_ih : NULL, g ? g->b_ih : NULL,
                      dx ? dx + ((size_t)(t - 1) * B + b) * I : NULL, (int)G, I);
            proj_back(w->W_hh, dgh, hp, g ? g->W_hh : NULL, g ? g->b_hh : NULL, dhp, (int)G, H);
            memcpy(dhb, dhp, sizeof(double) * (size_t)H);
        }
    if (dh0) memcpy(dh0, dh, sizeof(double) * bh);
    ad_error_set(err, AD_OK, NULL);
done:
    free(h), free(keep), free(gi), free(gh), free(dgi), free(dgh), free(dh), free(dhp);
    return st;
}
