/**
 * @file
 * plot.h - running gnuplot to draw a PNG: the one place that starts it.
 *
 * gnuplot is started directly (posix_spawnp, no shell, so no path needs
 * shell quoting), with the script as its `-e` argument; its standard output
 * goes to /dev/null and the start of its error output becomes the message.
 * Paths and titles go into single-quoted gnuplot strings through
 * nn_gnuplot_quote().
 *
 *     char q[1024], script[2048];
 *     ad_error err;
 *     if (nn_gnuplot_quote("loss.csv", q, sizeof q) == AD_OK) {
 *         snprintf(script, sizeof script, "set terminal png; set output '%s.png';"
 *                  " set datafile separator ','; plot '%s' using 1:2 with lines", q, q);
 *         if (nn_gnuplot_run(script, &err) != AD_OK) printf("plot skipped: %s\n", err.msg);
 *     }
 */
#ifndef UNROLL_NN_PLOT_H
#define UNROLL_NN_PLOT_H

#include <stddef.h>

#include "../autodiff/autodiff.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * Writes `s` into `out` (of `size` bytes) as the inside of a gnuplot
 * single-quoted string, where '' stands for one quote. Returns AD_ERR_NULL
 * for a NULL argument and AD_ERR_ARG when the quoted text does not fit.
 */
NN_API ad_status nn_gnuplot_quote(const char *s, char *out, size_t size);

/**
 * Runs `gnuplot -e script` and waits for it (no zombie is left). Returns
 * AD_ERR_NOT_FOUND with "gnuplot not found ..." when gnuplot is not on the
 * PATH (callers print a note and go on), AD_ERR_IO when it cannot be started
 * or exits with an error (the message holds the start of its error output),
 * AD_ERR_NULL for a NULL script.
 */
NN_API ad_status nn_gnuplot_run(const char *script, ad_error *err);

#ifdef __cplusplus
}
#endif
#endif
