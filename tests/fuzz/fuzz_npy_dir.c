/*
 * fuzz_npy_dir.c - nn_params_load_npy_dir() of a folder made from arbitrary
 * bytes, into the fixed model of fuzz.h.
 *
 * The input is the model's files in parameter order, separated by
 * FUZZ_NPY_DIR_SEP; a missing piece is a missing file. Invariants: no crash,
 * leak or out-of-bounds read; a refused folder changes no parameter and the
 * refusal says why.
 */
#include "fuzz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_model m, ref;
    fuzz_model_new(&m, 2);
    fuzz_model_new(&ref, 2);
    if (!m.opt || !ref.opt) abort();
    const char *dir = fuzz_scratch_dir();
    const size_t sep_len = strlen(FUZZ_NPY_DIR_SEP);
    const uint8_t *p = data, *end = data + size;
    for (size_t i = 0; i < nn_params_count(m.ps); i++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/%s.npy", dir, ad_param_name(nn_params_at(m.ps, i)));
        unlink(path);
        if (!p) continue;
        const uint8_t *q = p;
        while ((size_t)(end - q) >= sep_len && memcmp(q, FUZZ_NPY_DIR_SEP, sep_len) != 0) q++;
        if ((size_t)(end - q) < sep_len) q = end;
        if (fuzz_write_file(path, p, (size_t)(q - p)) != 0) abort();
        p = q == end ? NULL : q + sep_len;
    }
    ad_error err;
    ad_status st = nn_params_load_npy_dir(m.ps, dir, &err);
    if (st != AD_OK && (!fuzz_model_equal(&m, &ref) || err.msg[0] == '\0')) abort();
    fuzz_model_free(&m);
    fuzz_model_free(&ref);
    return 0;
}
