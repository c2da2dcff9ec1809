/*
 * gradflow_plot.c - the gradient-flow report as a picture: the data gnuplot
 * reads and the script that draws the heatmap and the line above it.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gradflow.h"
#include "plot.h"

/* log10 of a norm; NaN (missing to gnuplot) when there is no logarithm. */
static double log_norm(double v) { return v > 0 && isfinite(v) ? log10(v) : NAN; }

static void put(FILE *out, double v)
{
    if (isnan(v)) fputs("NaN", out);
    else fprintf(out, "%.17g", v);
}

ad_status nn_grad_flow_write_plot_data(const nn_grad_flow *f, FILE *out)
{
    if (!f || !out) return AD_ERR_NULL;
    if (f->steps < 1 || !f->rows || f->n_w < 1) return AD_ERR_EMPTY;
    for (int k = 0; k < f->steps; k++) {
        for (int w = 0; w < f->n_w; w++) {
            fprintf(out, "%d %d ", f->rows[k].step, w);
            put(out, log_norm(f->rows[k].w_norm[w]));
            fputc('\n', out);
        }
        fputc('\n', out);
    }
    fputc('\n', out);
    for (int k = 0; k < f->steps; k++) {
        fprintf(out, "%d ", f->rows[k].step);
        put(out, log_norm(f->rows[k].h_norm));
        fputc('\n', out);
    }
    return ferror(out) ? AD_ERR_IO : AD_OK;
}

/* An append-only script buffer; `over` is set once something did not fit. */
typedef struct script {
    char text[8192];
    size_t n;
    int over;
} script;

static void add(script *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = s->over ? 0 : vsnprintf(s->text + s->n, sizeof s->text - s->n, fmt, ap);
    va_end(ap);
    if (r < 0 || (size_t)r >= sizeof s->text - s->n) s->over = 1;
    else s->n += (size_t)r;
}

static int missing_cells(const nn_grad_flow *f, int *total)
{
    int miss = 0;
    *total = f->steps * (f->n_w + 1);
    for (int k = 0; k < f->steps; k++) {
        miss += isnan(log_norm(f->rows[k].h_norm));
        for (int w = 0; w < f->n_w; w++) miss += isnan(log_norm(f->rows[k].w_norm[w]));
    }
    return miss;
}

/* A tic step giving about four tics over the finite log10 |dL/dh_t| (the
 * top panel is short); 0 lets gnuplot choose. */
static double h_tic_step(const nn_grad_flow *f)
{
    double lo = INFINITY, hi = -INFINITY;
    for (int k = 0; k < f->steps; k++) {
        double v = log_norm(f->rows[k].h_norm);
        if (!isnan(v)) lo = fmin(lo, v), hi = fmax(hi, v);
    }
    if (!(hi > lo)) return 0;
    double raw = (hi - lo) / 4, p = pow(10, floor(log10(raw))), m = raw / p;
    return p * (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10);
}

/* The multiplot: the line on top, the heatmap below, sharing the time axis. */
static ad_status build_script(script *s, const nn_grad_flow *f, const char *png, const char *data,
                              const nn_grad_flow_plot_options *o, ad_error *err)
{
    char qpng[1024], qdata[1024], qtitle[600], qname[2 * AD_NAME_SIZE + 2];
    const char *title = o->title ? o->title : "gradient flow";
    if (nn_gnuplot_quote(png, qpng, sizeof qpng) != AD_OK || nn_gnuplot_quote(data, qdata, sizeof qdata) != AD_OK ||
        nn_gnuplot_quote(title, qtitle, sizeof qtitle) != AD_OK)
        return ad_error_set(err, AD_ERR_ARG, "grad_flow png: a path or the title is too long for the gnuplot script");
    int total, miss = missing_cells(f, &total);
    add(s, "set terminal png size %d,%d noenhanced; set output '%s';", o->width > 0 ? o->width : 900,
        o->height > 0 ? o->height : 600, qpng);
    if (miss)
        add(s, "set multiplot title '%s'.\"\\n\".'(%d of %d norms are 0 or not finite: left blank)';", qtitle, miss, total);
    else
        add(s, "set multiplot title '%s';", qtitle);
    add(s, "set lmargin at screen 0.22; set rmargin at screen 0.84; set xrange [-0.5:%g]; unset key;",
        f->steps - 0.5);
    double tic = h_tic_step(f);
    if (tic > 0) add(s, "set ytics %.17g;", tic);
    add(s, "set tmargin at screen 0.88; set bmargin at screen 0.66; set grid; set format x '';"
           " set ylabel 'log10 |dL/dh_t|'; plot '%s' index 1 using 1:2 with linespoints pt 7 ps 0.6 lw 2;",
        qdata);
    add(s, "set tmargin at screen 0.60; set bmargin at screen 0.10; unset grid; set format x '%%g';"
           " set xlabel 'time step t'; set ylabel ''; set yrange [%g:-0.5]; set cblabel 'log10 |dL/dW^(t)|' offset 1.5,0;"
           " set ytics autofreq; set palette defined (0 '#440154', 1 '#3b528b', 2 '#21918c', 3 '#5ec962', 4 '#fde725');"
           " set ytics (",
        f->n_w - 0.5);
    for (int w = 0; w < f->n_w; w++) {
        if (nn_gnuplot_quote(f->names[w], qname, sizeof qname) != AD_OK) s->over = 1;
        add(s, "%s'%s' %d", w ? ", " : "", qname, w);
    }
    add(s, "); plot '%s' index 0 using 1:2:3 with image; unset multiplot", qdata);
    if (s->over) return ad_error_set(err, AD_ERR_ARG, "grad_flow png: the gnuplot script does not fit its buffer");
    return AD_OK;
}

/* Opens the data file: the one asked for, or "<png>.XXXXXX" made unique. */
static FILE *open_data(const char *png, const char *keep, char *tmp, size_t size)
{
    if (keep) return fopen(keep, "w");
    int fd = (size_t)snprintf(tmp, size, "%s.XXXXXX", png) < size ? mkstemp(tmp) : -1;
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (fd >= 0 && !f) {
        close(fd);
        remove(tmp);
    }
    if (!f) tmp[0] = '\0'; /* nothing to remove later */
    return f;
}

ad_status nn_grad_flow_write_png(const nn_grad_flow *f, const char *png_path, const nn_grad_flow_plot_options *opts,
                                 ad_error *err)
{
    if (!f || !png_path) return ad_error_set(err, AD_ERR_NULL, "grad_flow png: the report or the path is NULL");
    if (f->steps < 1 || !f->rows || f->n_w < 1)
        return ad_error_set(err, AD_ERR_EMPTY, "grad_flow png: the report is empty (%d steps, %d weights)",
                            f->steps, f->n_w);
    nn_grad_flow_plot_options o = opts ? *opts : (nn_grad_flow_plot_options){0};
    FILE *png = fopen(png_path, "wb"); /* an unwritable path is an error even without gnuplot */
    if (!png) return ad_error_set(err, AD_ERR_IO, "grad_flow png: cannot write '%s': %s", png_path, strerror(errno));
    fclose(png);
    char tmp[1100] = "";
    FILE *data = open_data(png_path, o.data_path, tmp, sizeof tmp);
    const char *data_path = o.data_path ? o.data_path : tmp;
    ad_status st;
    if (!data) {
        st = ad_error_set(err, AD_ERR_IO, "grad_flow png: cannot write the data file '%s': %s", data_path,
                          strerror(errno));
    } else {
        st = nn_grad_flow_write_plot_data(f, data);
        if (fclose(data) != 0 || st != AD_OK)
            st = ad_error_set(err, AD_ERR_IO, "grad_flow png: writing the data file '%s' failed", data_path);
    }
    script *s = st == AD_OK ? calloc(1, sizeof *s) : NULL;
    if (st == AD_OK && !s) {
        ad_error_set(err, AD_ERR_NOMEM, "grad_flow png: out of memory");
        st = AD_ERR_NOMEM; /* spelled out: the analyzer cannot see that ad_error_set returns its code */
    }
    if (st == AD_OK && s) st = build_script(s, f, png_path, data_path, &o, err);
    if (st == AD_OK) st = nn_gnuplot_run(s->text, err);
    free(s);
    if (tmp[0] && !o.data_path) remove(tmp);
    if (st != AD_OK) remove(png_path);
    return st;
}
