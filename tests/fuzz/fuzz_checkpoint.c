/*
 * fuzz_checkpoint.c - nn_checkpoint_load() of arbitrary bytes into a fixed
 * model with an Adam optimizer and a training state.
 *
 * Invariants: no crash, leak or out-of-bounds read; a refused file changes
 * nothing (the model, the optimizer and the training state stay bit for bit
 * what they were); a refusal says why.
 *
 * Built with FUZZ_REPAIR_CRC=1 (fuzz_checkpoint_crc), the target first sets
 * the header's total size and every CRC the input's framing locates to the
 * right values: a random mutation almost never passes the checksums, so
 * without this the fuzzer would explore little beyond them.
 */
#include "fuzz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef FUZZ_REPAIR_CRC
#define FUZZ_REPAIR_CRC 0
#endif

static void put_le(unsigned char *p, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_le(const unsigned char *p, int bytes)
{
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* The layout of docs/formats.md: a 32-byte header (total size at 16, its CRC
 * at 28), sections of tag, reserved, length, payload, CRC, and a final CRC. */
static void repair(unsigned char *p, size_t size)
{
    if (size < 36) return;
    put_le(p + 16, size, 8);
    size_t at = 32;
    while (at + 16 <= size - 4) {
        uint64_t len = get_le(p + at + 8, 8);
        if (len > size - 4 - (at + 16) || size - 4 - (at + 16) - len < 4) break;
        put_le(p + at + 16 + len, nn__crc32(0, p + at + 16, (size_t)len), 4);
        at += 16 + (size_t)len + 4;
    }
    put_le(p + 28, nn__crc32(0, p, 28), 4);
    put_le(p + size - 4, nn__crc32(0, p, size - 4), 4);
}

static int train_equal(const nn_train_state *a, const nn_train_state *b)
{
    return memcmp(a, b, sizeof *a) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char *copy = malloc(size ? size : 1);
    if (!copy) return 0;
    if (size) memcpy(copy, data, size);
    if (FUZZ_REPAIR_CRC) repair(copy, size);
    char path[4200];
    snprintf(path, sizeof path, "%s/fuzz.ckpt", fuzz_scratch_dir());
    if (fuzz_write_file(path, copy, size) != 0) abort();
    free(copy);

    fuzz_model m, ref;
    fuzz_model_new(&m, 1);
    fuzz_model_new(&ref, 1);
    if (!m.opt || !ref.opt) abort();
    nn_train_state ts, ts_ref;
    memset(&ts, 0xA5, sizeof ts);
    memcpy(&ts_ref, &ts, sizeof ts);

    ad_error err;
    /* Parameters alone, then everything: the two paths validate differently. */
    ad_status st = nn_checkpoint_load(path, m.ps, NULL, NULL, &err);
    if (st != AD_OK && (!fuzz_model_equal(&m, &ref) || err.msg[0] == '\0')) abort();
    if (st == AD_OK) { /* the values may have changed: compare from here on */
        fuzz_model_free(&ref);
        fuzz_model_new(&ref, 1);
        size_t n;
        memcpy(nn_params_values(ref.ps, &n), nn_params_values(m.ps, &n), n * sizeof(float));
    }
    st = nn_checkpoint_load(path, m.ps, m.opt, &ts, &err);
    if (st != AD_OK && (!fuzz_model_equal(&m, &ref) || !train_equal(&ts, &ts_ref) || err.msg[0] == '\0'))
        abort();
    fuzz_model_free(&m);
    fuzz_model_free(&ref);
    return 0;
}
