/*
 * fuzz_common.c - the model and scratch folder of fuzz.h.
 */
#define _POSIX_C_SOURCE 200809L
#include "fuzz.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void fuzz_model_new(fuzz_model *m, uint64_t seed)
{
    memset(m, 0, sizeof *m);
    m->ps = nn_params_new(AD_F32, NULL);
    if (!m->ps) return;
    if (nn_cell_create(&m->cell, m->ps, "lstm", &(nn_cell_options){.kind = NN_CELL_LSTM, .input_size = 2, .hidden_size = 2}, NULL) != AD_OK ||
        nn_linear_create(&m->head, m->ps, "head", 2, 3, 1, NULL) != AD_OK) {
        nn_params_free(m->ps);
        m->ps = NULL;
        return;
    }
    ad_rng rng;
    ad_rng_seed(&rng, seed, 1);
    nn_params_init_uniform(m->ps, &rng, -1.0, 1.0);
    nn_optim_config cfg = nn_optim_defaults(NN_OPTIM_ADAM);
    m->opt = nn_optim_new(m->ps, &cfg, NULL);
    if (!m->opt) return;
    /* Distinct moments, so that a load that skips or mixes them shows. */
    for (int k = 0; k < 2; k++) {
        size_t n;
        double *st = nn_optim_state(m->opt, k, &n, NULL);
        for (size_t i = 0; st && i < n; i++) st[i] = (double)(k + 1) * 0.001 * (double)(i + 1) + (double)seed;
    }
    nn_optim_set_steps(m->opt, (int64_t)seed + 3);
}

void fuzz_model_free(fuzz_model *m)
{
    nn_optim_free(m->opt);
    nn_params_free(m->ps);
    memset(m, 0, sizeof *m);
}

int fuzz_model_equal(fuzz_model *a, fuzz_model *b)
{
    size_t na, nb;
    const void *va = nn_params_values(a->ps, &na), *vb = nn_params_values(b->ps, &nb);
    if (na != nb || memcmp(va, vb, na * sizeof(float)) != 0) return 0;
    if (nn_optim_steps(a->opt) != nn_optim_steps(b->opt)) return 0;
    if (memcmp(&nn_optim_config_of(a->opt)->lr, &nn_optim_config_of(b->opt)->lr, sizeof(double)) != 0)
        return 0;
    for (int k = 0; k < 2; k++) {
        size_t ma, mb;
        const double *sa = nn_optim_state(a->opt, k, &ma, NULL);
        const double *sb = nn_optim_state(b->opt, k, &mb, NULL);
        if (ma != mb || memcmp(sa, sb, ma * sizeof(double)) != 0) return 0;
    }
    return 1;
}

static char scratch[4096];

/* The targets write only plain files into the folder. */
static void remove_scratch(void)
{
    DIR *d = opendir(scratch);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char path[8192];
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        snprintf(path, sizeof path, "%s/%s", scratch, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(scratch);
}

const char *fuzz_scratch_dir(void)
{
    if (!scratch[0]) {
        const char *tmp = getenv("TMPDIR");
        snprintf(scratch, sizeof scratch, "%s/unroll-fuzz-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(scratch)) abort();
        atexit(remove_scratch);
    }
    return scratch;
}

int fuzz_write_file(const char *path, const void *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t put = size ? fwrite(data, 1, size, f) : 0;
    return fclose(f) == 0 && put == size ? 0 : -1;
}
