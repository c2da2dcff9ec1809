/*
 * test_nn_gradflow_plot.c - the gradient-flow picture: the data gnuplot is
 * given equals the report's log10 norms (missing where there is no
 * logarithm), the PNG is a PNG, gnuplot's absence and every bad input are
 * clear errors, and no file, allocation or child process is left behind.
 */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <unroll/nn/nn.h>
#include "testsupport.h"

enum { T = 9, B = 2, I = 3, H = 4 };

/* A report of a real unroll (tanh RNN, sum of the last state). */
static void real_report(nn_grad_flow *f)
{
    nn_params *ps = nn_params_new(AD_F64, NULL);
    nn_cell cell;
    cr_assert_eq(nn_cell_create(&cell, ps, "rnn", &(nn_cell_options){.kind = NN_CELL_RNN_TANH, .input_size = I, .hidden_size = H}, NULL), AD_OK);
    ad_rng rng;
    ad_rng_seed(&rng, 31, 0);
    nn_cell_init_pytorch(&cell, &rng);
    ad_tape *t = ad_tape_new(NULL);
    ad_tensor *xs[T];
    for (int k = 0; k < T; k++) xs[k] = ad_rand_normal(t, &rng, AD_F64, ad_shape2(B, I), 0, 1);
    nn_state outs[T], last;
    cr_assert_eq(nn_unroll(t, &cell, xs, T, NULL, outs, &last), AD_OK);
    cr_assert_eq(ad_backward(t, ad_sum(t, last.h, AD_AXIS_ALL, 0), NULL), AD_OK);
    ad_error err;
    cr_assert_eq(nn_grad_flow_collect(t, &cell, outs, T, NULL, f, &err), AD_OK, "%s", err.msg);
    ad_tape_free(t);
    nn_params_free(ps);
}

/* A fresh, empty directory under /tmp for one test's files. */
static void make_dir(char *dir, size_t size)
{
    snprintf(dir, size, "/tmp/unroll_gfplot_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

/* The number of entries in dir other than . and .. */
static int dir_entries(const char *dir)
{
    DIR *d = opendir(dir);
    cr_assert_not_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return n;
}

/* No child is left unwaited (a zombie would make waitpid return its pid). */
static void expect_no_children(void)
{
    errno = 0;
    cr_assert_eq(waitpid(-1, NULL, WNOHANG), -1, "a child process was left behind");
    cr_assert_eq(errno, ECHILD);
}

static void expect_value(FILE *in, int step, int w, double norm)
{
    char tok[64];
    int s, c;
    if (w >= 0) {
        cr_assert_eq(fscanf(in, "%d %d %63s", &s, &c, tok), 3);
        cr_assert_eq(c, w);
    } else {
        cr_assert_eq(fscanf(in, "%d %63s", &s, tok), 2);
    }
    cr_assert_eq(s, step);
    if (norm > 0 && isfinite(norm))
        cr_assert_eq(strtod(tok, NULL), log10(norm), "step %d, column %d: %s, want log10(%.17g)", step, w, tok, norm);
    else
        cr_assert_str_eq(tok, "NaN", "step %d, column %d: norm %g has no logarithm", step, w, norm);
}

/* Reads the plot data back: block 0 (step, weight, log10 norm) then block 1
 * (step, log10 |dL/dh|), equal to the report's norms to the last bit. */
static void expect_data(FILE *in, const nn_grad_flow *f)
{
    for (int k = 0; k < f->steps; k++)
        for (int w = 0; w < f->n_w; w++) expect_value(in, f->rows[k].step, w, f->rows[k].w_norm[w]);
    for (int k = 0; k < f->steps; k++) expect_value(in, f->rows[k].step, -1, f->rows[k].h_norm);
    char rest[8];
    cr_assert_eq(fscanf(in, "%7s", rest), EOF, "nothing after the last row");
}

Test(nn_gradflow_plot, data_is_the_reports_log10_norms)
{
    long before = ts_live_allocs();
    nn_grad_flow f;
    real_report(&f);
    /* the traps: no gradient at all, a NaN, an infinity, a denormal */
    f.rows[2].w_norm[0] = 0;
    f.rows[3].w_norm[1] = NAN;
    f.rows[4].h_norm = INFINITY;
    f.rows[5].h_norm = 0;
    f.rows[6].w_norm[2] = 4.9e-324;
    FILE *data = tmpfile();
    cr_assert_eq(nn_grad_flow_write_plot_data(&f, data), AD_OK);
    rewind(data);
    expect_data(data, &f);
    fclose(data);

    /* the file write_png plots, kept through data_path, is the same data
     * (written before gnuplot runs, so this holds without gnuplot too) */
    char dir[64], png[128], kept[128];
    make_dir(dir, sizeof dir);
    snprintf(png, sizeof png, "%s/flow.png", dir);
    snprintf(kept, sizeof kept, "%s/flow.dat", dir);
    ad_error err;
    ad_status st = nn_grad_flow_write_png(&f, png, &(nn_grad_flow_plot_options){.data_path = kept}, &err);
    cr_assert(st == AD_OK || st == AD_ERR_NOT_FOUND, "%s", err.msg);
    data = fopen(kept, "r");
    cr_assert_not_null(data);
    expect_data(data, &f);
    fclose(data);
    remove(kept);
    remove(png);
    rmdir(dir);
    nn_grad_flow_free(&f);
    expect_no_children();
    cr_assert_eq(ts_live_allocs(), before);
}

Test(nn_gradflow_plot, png_has_the_png_signature)
{
    ad_error err;
    if (nn_gnuplot_run("exit", &err) == AD_ERR_NOT_FOUND)
        cr_skip_test("gnuplot is not installed (scripts/deps.sh installs gnuplot-nox): %s", err.msg);
    long before = ts_live_allocs();
    nn_grad_flow f;
    real_report(&f);
    f.rows[1].w_norm[1] = NAN; /* a blank cell does not break the plot */
    char dir[64], png[160];
    make_dir(dir, sizeof dir);
    snprintf(png, sizeof png, "%s/it's a flow.png", dir); /* a quote and a space: no shell, quoted for gnuplot */
    cr_assert_eq(nn_grad_flow_write_png(&f, png, &(nn_grad_flow_plot_options){.title = "a 'quoted' title", .width = 400, .height = 300}, &err), AD_OK, "%s", err.msg);
    FILE *in = fopen(png, "rb");
    cr_assert_not_null(in);
    unsigned char sig[8];
    cr_assert_eq(fread(sig, 1, 8, in), 8);
    fclose(in);
    cr_assert_eq(memcmp(sig, "\x89PNG\r\n\x1a\n", 8), 0, "the file does not start with the PNG signature");
    cr_assert_eq(dir_entries(dir), 1, "the temporary data file was removed");
    remove(png);
    rmdir(dir);
    nn_grad_flow_free(&f);
    expect_no_children();
    cr_assert_eq(ts_live_allocs(), before);
}

/* With no gnuplot on the PATH: AD_ERR_NOT_FOUND saying so, no PNG and no
 * data file left. */
Test(nn_gradflow_plot, without_gnuplot_a_clear_status)
{
    long before = ts_live_allocs();
    nn_grad_flow f;
    real_report(&f);
    char dir[64], png[128];
    make_dir(dir, sizeof dir);
    snprintf(png, sizeof png, "%s/flow.png", dir);
    cr_assert_eq(setenv("PATH", dir, 1), 0); /* an empty directory: nothing to run */
    ad_error err;
    cr_assert_eq(nn_grad_flow_write_png(&f, png, NULL, &err), AD_ERR_NOT_FOUND);
    cr_assert(strstr(err.msg, "gnuplot not found"), "%s", err.msg);
    cr_assert_eq(nn_gnuplot_run("exit", &err), AD_ERR_NOT_FOUND);
    cr_assert_eq(dir_entries(dir), 0, "no PNG and no data file are left");
    rmdir(dir);
    nn_grad_flow_free(&f);
    expect_no_children();
    cr_assert_eq(ts_live_allocs(), before);
}

Test(nn_gradflow_plot, bad_inputs)
{
    long before = ts_live_allocs();
    nn_grad_flow f;
    real_report(&f);
    ad_error err;
    cr_assert_eq(nn_grad_flow_write_png(NULL, "/tmp/x.png", NULL, &err), AD_ERR_NULL);
    cr_assert(strstr(err.msg, "NULL"), "%s", err.msg);
    cr_assert_eq(nn_grad_flow_write_png(&f, NULL, NULL, &err), AD_ERR_NULL);
    nn_grad_flow empty = {0};
    cr_assert_eq(nn_grad_flow_write_png(&empty, "/tmp/x.png", NULL, &err), AD_ERR_EMPTY);
    cr_assert(strstr(err.msg, "empty"), "%s", err.msg);
    nn_grad_flow no_weights = f;
    no_weights.n_w = 0;
    cr_assert_eq(nn_grad_flow_write_png(&no_weights, "/tmp/x.png", NULL, &err), AD_ERR_EMPTY);
    cr_assert_eq(nn_grad_flow_write_png(&f, "/nonexistent_dir_unroll/flow.png", NULL, &err), AD_ERR_IO);
    cr_assert(strstr(err.msg, "/nonexistent_dir_unroll/flow.png"), "the message names the path: %s", err.msg);
    char dir[64], png[128];
    make_dir(dir, sizeof dir);
    snprintf(png, sizeof png, "%s/flow.png", dir);
    cr_assert_eq(nn_grad_flow_write_png(&f, png, &(nn_grad_flow_plot_options){.data_path = "/nonexistent_dir_unroll/d"}, &err), AD_ERR_IO);
    cr_assert(strstr(err.msg, "data file"), "%s", err.msg);
    char long_title[700];
    memset(long_title, 'x', sizeof long_title - 1);
    long_title[sizeof long_title - 1] = '\0';
    cr_assert_eq(nn_grad_flow_write_png(&f, png, &(nn_grad_flow_plot_options){.title = long_title}, &err), AD_ERR_ARG);
    cr_assert_eq(dir_entries(dir), 0, "a failed call leaves no file");
    rmdir(dir);
    FILE *data = tmpfile();
    cr_assert_eq(nn_grad_flow_write_plot_data(NULL, data), AD_ERR_NULL);
    cr_assert_eq(nn_grad_flow_write_plot_data(&f, NULL), AD_ERR_NULL);
    cr_assert_eq(nn_grad_flow_write_plot_data(&empty, data), AD_ERR_EMPTY);
    fclose(data);
    nn_grad_flow_free(&f);
    expect_no_children();
    cr_assert_eq(ts_live_allocs(), before);
}

Test(nn_gradflow_plot, gnuplot_quote_and_run)
{
    char q[16];
    cr_assert_eq(nn_gnuplot_quote("it's", q, sizeof q), AD_OK);
    cr_assert_str_eq(q, "it''s");
    cr_assert_eq(nn_gnuplot_quote("0123456789abcdef", q, sizeof q), AD_ERR_ARG);
    cr_assert_eq(nn_gnuplot_quote("0123456789abcd", q, sizeof q), AD_OK);
    cr_assert_eq(nn_gnuplot_quote(NULL, q, sizeof q), AD_ERR_NULL);
    cr_assert_eq(nn_gnuplot_quote("a", NULL, 4), AD_ERR_NULL);
    ad_error err;
    cr_assert_eq(nn_gnuplot_run(NULL, &err), AD_ERR_NULL);
    ad_status st = nn_gnuplot_run("plot no_such_function_unroll(x)", &err);
    if (st == AD_ERR_NOT_FOUND) cr_skip_test("gnuplot is not installed: %s", err.msg);
    cr_assert_eq(st, AD_ERR_IO);
    cr_assert(strstr(err.msg, "gnuplot failed") && strstr(err.msg, "no_such_function_unroll"),
              "the message carries gnuplot's: %s", err.msg);
    expect_no_children();
}
