/*
 * fuzz_safetensors.c - nn_safetensors_read() on arbitrary bytes.
 *
 * Whatever the input, the reader returns a file or a status and a message,
 * never crashes, reads out of bounds or leaks. What it accepts must survive a
 * round trip: every tensor (floats converted to f64, which holds F32, F16 and
 * BF16 exactly; integers as they are) and every metadata pair written back
 * with nn_safetensors_write() and read again gives the same names, shapes
 * and values.
 */
#include "fuzz.h"

#include <stdlib.h>
#include <string.h>

static void check_round_trip(const nn_safetensors *st)
{
    size_t n = nn_safetensors_count(st), n_meta = nn_safetensors_metadata_count(st);
    nn_safetensors_entry *e = calloc(n ? n : 1, sizeof *e);
    const char **meta = calloc(2 * n_meta + 1, sizeof *meta);
    if (!e || !meta) abort();
    for (size_t i = 0; i < n; i++) {
        e[i].name = nn_safetensors_name(st, i);
        if (nn_safetensors_is_int(st, i)) e[i].ints = nn_safetensors_ints(st, i, NULL);
        else e[i].tensor = nn_safetensors_tensor(st, i, AD_F64, NULL);
        if (!e[i].ints && !e[i].tensor) abort(); /* an accepted entry converts */
    }
    for (size_t k = 0; k < n_meta; k++) meta[2 * k] = nn_safetensors_metadata_at(st, k, &meta[2 * k + 1]);
    void *img = NULL;
    size_t size = 0;
    if (nn_safetensors_write(e, n, meta, n_meta, &img, &size, NULL) != AD_OK) abort();
    nn_safetensors *back = nn_safetensors_read(img, size, NULL);
    if (!back || nn_safetensors_count(back) != n || nn_safetensors_metadata_count(back) != n_meta) abort();
    for (size_t i = 0; i < n; i++) {
        long j = nn_safetensors_find(back, e[i].name);
        if (j < 0 || !ad_shape_equal(nn_safetensors_shape(back, (size_t)j), nn_safetensors_shape(st, i))) abort();
        if (e[i].tensor) {
            ad_tensor *y = nn_safetensors_tensor(back, (size_t)j, AD_F64, NULL);
            size_t bytes = ad_tensor_numel(y) * sizeof(double);
            if (!y || (bytes && memcmp(ad_tensor_data(y), ad_tensor_data((ad_tensor *)e[i].tensor), bytes) != 0)) abort();
            ad_tensor_free(y);
        } else {
            ad_itensor *y = nn_safetensors_ints(back, (size_t)j, NULL);
            size_t bytes = ad_itensor_numel(y) * sizeof(int64_t);
            if (!y || (bytes && memcmp(ad_itensor_data(y), ad_itensor_data((ad_itensor *)e[i].ints), bytes) != 0)) abort();
            ad_itensor_free(y);
        }
    }
    for (size_t k = 0; k < n_meta; k++) {
        const char *v = nn_safetensors_metadata(back, meta[2 * k]);
        if (!v || strcmp(v, meta[2 * k + 1]) != 0) abort();
    }
    nn_safetensors_free(back);
    free(img);
    for (size_t i = 0; i < n; i++) {
        ad_tensor_free((ad_tensor *)e[i].tensor);
        ad_itensor_free((ad_itensor *)e[i].ints);
    }
    free(e);
    free(meta);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ad_error err;
    nn_safetensors *st = nn_safetensors_read(data, size, &err);
    if (!st) {
        /* A refusal always says why. */
        if (err.code == AD_OK || err.msg[0] == '\0') abort();
        return 0;
    }
    check_round_trip(st);
    nn_safetensors_free(st);
    return 0;
}
