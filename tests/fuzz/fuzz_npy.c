/*
 * fuzz_npy.c - ad_npy_read() on arbitrary bytes.
 *
 * Whatever the input, the reader returns a tensor or a status and a message,
 * never crashes, reads out of bounds or leaks. What it accepts must survive a
 * round trip: written back with ad_npy_write() and read again, the dtype,
 * shape and element bytes are the same.
 */
#include "fuzz.h"

#include <stdlib.h>
#include <string.h>

static void check_round_trip(ad_tensor *x)
{
    void *img = NULL;
    size_t n = 0;
    if (ad_npy_write(x, &img, &n, NULL) != AD_OK) abort();
    ad_error err;
    ad_tensor *y = ad_npy_read(img, n, &err);
    if (!y || ad_tensor_dtype(y) != ad_tensor_dtype(x) ||
        !ad_shape_equal(ad_tensor_shape(y), ad_tensor_shape(x)))
        abort();
    size_t bytes = ad_tensor_numel(x) * ad_dtype_size(ad_tensor_dtype(x));
    if (bytes && memcmp(ad_tensor_data(x), ad_tensor_data(y), bytes) != 0) abort();
    ad_tensor_free(y);
    free(img);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ad_error err;
    ad_tensor *x = ad_npy_read(data, size, &err);
    if (!x) {
        /* A refusal always says why. */
        if (err.code == AD_OK || err.msg[0] == '\0') abort();
        return 0;
    }
    check_round_trip(x);
    ad_tensor_free(x);
    return 0;
}
