/*
 * dist.c - data-parallel training over MPI: the only file that calls MPI.
 *
 * Reproducibility is the rule here: no result may depend on message timing
 * or on the reduction algorithm an MPI library picks. So gradients are never
 * summed by MPI_Allreduce; each rank gathers every rank's copy of one chunk
 * of the block (all-to-all), sums the copies in rank order, and the averaged
 * chunks are then gathered everywhere (all-gather). Small vectors (losses,
 * statuses, checksums) are all-gathered and reduced in rank order the same
 * way.
 */
#include "dist.h"

#include <limits.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

/* One collective moves at most this many elements (MPI counts are int). */
#define DIST_WINDOW ((size_t)1 << 26)

struct nn_dist {
    MPI_Comm comm;
    int rank, size;
    int finalize; /* nn_dist_new() initialised MPI */
    void *scratch;      /* the receive buffer of the collectives, reused */
    size_t scratch_cap; /* in bytes */
    int *ints;          /* 4 * size: counts and displacements, statuses */
};

static ad_status comm_fail(ad_error *err, const char *fn, const char *what, int rc)
{
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) len = 0;
    msg[len] = '\0';
    return ad_error_set(err, AD_ERR_COMM, "%s: %s failed: %s", fn, what, len ? msg : "unknown MPI error");
}

#define MPI_TRY(call, fn, what)                                    \
    do {                                                           \
        int rc_ = (call);                                          \
        if (rc_ != MPI_SUCCESS) return comm_fail(err, fn, what, rc_); \
    } while (0)

nn_dist *nn_dist_new(const nn_dist_options *opts, ad_error *err)
{
    static const nn_dist_options defaults = {0};
    if (!opts) opts = &defaults;
    int inited = 0, finalized = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    if (finalized) {
        ad_error_set(err, AD_ERR_STATE, "nn_dist_new: MPI is already finalised");
        return NULL;
    }
    int own_init = 0;
    if (!inited) {
        if (!opts->init) {
            ad_error_set(err, AD_ERR_STATE,
                         "nn_dist_new: MPI is not initialised (call MPI_Init, or set opts->init)");
            return NULL;
        }
        int rc = MPI_Init(NULL, NULL);
        if (rc != MPI_SUCCESS) {
            comm_fail(err, "nn_dist_new", "MPI_Init", rc);
            return NULL;
        }
        own_init = 1;
    }
    nn_dist *d = calloc(1, sizeof *d);
    if (d && opts->comm == NULL) {
        int world = 0;
        MPI_Comm_size(MPI_COMM_WORLD, &world);
        d->ints = world > 0 ? malloc(4 * (size_t)world * sizeof(int)) : NULL;
    } else if (d) {
        int size = 0;
        MPI_Comm_size(*(const MPI_Comm *)opts->comm, &size);
        d->ints = size > 0 ? malloc(4 * (size_t)size * sizeof(int)) : NULL;
    }
    if (!d || !d->ints) {
        if (d) free(d);
        ad_error_set(err, AD_ERR_NOMEM, "nn_dist_new: out of memory");
        if (own_init) MPI_Finalize();
        return NULL;
    }
    MPI_Comm base = opts->comm ? *(const MPI_Comm *)opts->comm : MPI_COMM_WORLD;
    int rc = MPI_Comm_dup(base, &d->comm);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_set_errhandler(d->comm, MPI_ERRORS_RETURN);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_rank(d->comm, &d->rank);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_size(d->comm, &d->size);
    if (rc != MPI_SUCCESS) {
        comm_fail(err, "nn_dist_new", "setting up the communicator", rc);
        free(d->ints);
        free(d);
        if (own_init) MPI_Finalize();
        return NULL;
    }
    d->finalize = own_init;
    ad_error_set(err, AD_OK, NULL);
    return d;
}

void nn_dist_free(nn_dist *d)
{
    if (!d) return;
    MPI_Comm_free(&d->comm);
    free(d->scratch);
    free(d->ints);
    int finalize = d->finalize;
    free(d);
    if (finalize) MPI_Finalize();
}

int nn_dist_rank(const nn_dist *d) { return d ? d->rank : 0; }
int nn_dist_size(const nn_dist *d) { return d ? d->size : 1; }

/* At least `count` elements of `size` bytes of scratch, untyped (it serves
 * doubles, floats and 64-bit words); NULL after setting err. */
static void *scratch(nn_dist *d, size_t count, size_t size, ad_error *err, const char *fn)
{
    if (size && count > SIZE_MAX / size) {
        ad_error_set(err, AD_ERR_OVERFLOW, "%s: %zu elements do not fit in memory", fn, count);
        return NULL;
    }
    size_t bytes = count * size > 0 ? count * size : 1;
    if (bytes <= d->scratch_cap) return d->scratch;
    void *p = realloc(d->scratch, bytes);
    if (!p) {
        ad_error_set(err, AD_ERR_NOMEM, "%s: out of memory for %zu bytes", fn, bytes);
        return NULL;
    }
    d->scratch = p;
    d->scratch_cap = bytes;
    return p;
}

/* FNV-1a over the bytes of a parameter set's layout. */
static uint64_t fnv(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

static uint64_t layout_checksum(const nn_params *ps)
{
    uint64_t h = 14695981039346656037ull;
    int32_t dtype = (int32_t)nn_params_dtype(ps);
    uint64_t count = nn_params_count(ps);
    h = fnv(h, &dtype, sizeof dtype);
    h = fnv(h, &count, sizeof count);
    for (size_t i = 0; i < count; i++) {
        const ad_param *p = nn_params_at(ps, i);
        const char *name = ad_param_name(p);
        ad_shape s = ad_tensor_shape(ad_param_value((ad_param *)p));
        h = fnv(h, name, strlen(name) + 1);
        h = fnv(h, &s.rank, sizeof s.rank);
        for (int k = 0; k < s.rank; k++) h = fnv(h, &s.dim[k], sizeof s.dim[k]);
    }
    return h;
}

/* The first rank whose `words` words differ from rank 0's, or -1. */
static ad_status first_differing(nn_dist *d, const uint64_t *mine, int words, int *rank,
                                 ad_error *err, const char *fn)
{
    uint64_t *all = scratch(d, (size_t)d->size * (size_t)words, sizeof *all, err, fn);
    if (!all) return AD_ERR_NOMEM;
    MPI_TRY(MPI_Allgather(mine, words, MPI_UINT64_T, all, words, MPI_UINT64_T, d->comm), fn,
            "MPI_Allgather");
    *rank = -1;
    for (int r = 1; r < d->size && *rank < 0; r++)
        if (memcmp(all + (size_t)r * words, all, (size_t)words * sizeof *all) != 0) *rank = r;
    return AD_OK;
}

ad_status nn_dist_check_params(nn_dist *d, const nn_params *ps, ad_error *err)
{
    if (!d || !ps) return ad_error_set(err, AD_ERR_NULL, "nn_dist_check_params: %s is NULL", d ? "ps" : "d");
    uint64_t sum = layout_checksum(ps);
    int bad;
    ad_status st = first_differing(d, &sum, 1, &bad, err, "nn_dist_check_params");
    if (st != AD_OK) return st;
    if (bad >= 0)
        return ad_error_set(err, AD_ERR_MISMATCH,
                            "nn_dist_check_params: rank %d's parameter set differs from rank 0's "
                            "(dtype, names, shapes or order)", bad);
    return ad_error_set(err, AD_OK, NULL);
}

/* MPI_Bcast of n elements from rank 0, in windows that fit MPI's int counts. */
static ad_status bcast(nn_dist *d, void *data, size_t n, size_t elem, MPI_Datatype type,
                       ad_error *err, const char *fn)
{
    for (size_t off = 0; off < n; off += DIST_WINDOW) {
        size_t len = n - off < DIST_WINDOW ? n - off : DIST_WINDOW;
        MPI_TRY(MPI_Bcast((char *)data + off * elem, (int)len, type, 0, d->comm), fn, "MPI_Bcast");
    }
    return AD_OK;
}

ad_status nn_dist_broadcast_params(nn_dist *d, nn_params *ps, ad_error *err)
{
    if (!d || !ps) return ad_error_set(err, AD_ERR_NULL, "nn_dist_broadcast_params: %s is NULL", d ? "ps" : "d");
    size_t n = 0;
    void *v = nn_params_values(ps, &n);
    int f64 = nn_params_dtype(ps) == AD_F64;
    ad_status st = bcast(d, v, n, f64 ? sizeof(double) : sizeof(float), f64 ? MPI_DOUBLE : MPI_FLOAT,
                         err, "nn_dist_broadcast_params");
    return st != AD_OK ? st : ad_error_set(err, AD_OK, NULL);
}

ad_status nn_dist_broadcast_optim(nn_dist *d, nn_optim *opt, ad_error *err)
{
    const char *fn = "nn_dist_broadcast_optim";
    if (!d || !opt) return ad_error_set(err, AD_ERR_NULL, "%s: %s is NULL", fn, d ? "opt" : "d");
    size_t numel = 0;
    int count = 0;
    nn_optim_state(opt, 0, &numel, &count);
    uint64_t shape[3] = {(uint64_t)nn_optim_config_of(opt)->kind, (uint64_t)count, (uint64_t)numel};
    int bad;
    ad_status st = first_differing(d, shape, 3, &bad, err, fn);
    if (st != AD_OK) return st;
    if (bad >= 0)
        return ad_error_set(err, AD_ERR_MISMATCH,
                            "%s: rank %d's optimizer differs from rank 0's (kind or state size)", fn, bad);
    int64_t steps = nn_optim_steps(opt);
    MPI_TRY(MPI_Bcast(&steps, 1, MPI_INT64_T, 0, d->comm), fn, "MPI_Bcast");
    for (int k = 0; k < count; k++) {
        st = bcast(d, nn_optim_state(opt, k, NULL, NULL), numel, sizeof(double), MPI_DOUBLE, err, fn);
        if (st != AD_OK) return st;
    }
    nn_optim_set_steps(opt, steps);
    return ad_error_set(err, AD_OK, NULL);
}

/*
 * The mean over ranks of one window of n elements of a block (float or
 * double): rank r owns chunk r; an all-to-all brings it every rank's copy
 * of that chunk, it sums them in rank order (in double), and an all-gather
 * hands every rank every averaged chunk.
 */
static ad_status average_window(nn_dist *d, void *block, size_t n, int f64, ad_error *err)
{
    const char *fn = "nn_dist_average_grads";
    int N = d->size;
    size_t elem = f64 ? sizeof(double) : sizeof(float);
    MPI_Datatype type = f64 ? MPI_DOUBLE : MPI_FLOAT;
    int *counts = d->ints, *displs = d->ints + N, *rcounts = d->ints + 2 * N,
        *rdispls = d->ints + 3 * N;
    size_t base = n / (size_t)N, extra = n % (size_t)N, off = 0;
    for (int r = 0; r < N; r++) {
        counts[r] = (int)(base + ((size_t)r < extra));
        displs[r] = (int)off;
        off += (size_t)counts[r];
    }
    int mine = counts[d->rank];
    /* recv holds N copies of this rank's chunk, in the block's own dtype. */
    void *buf = scratch(d, (size_t)N * (size_t)mine, elem, err, fn);
    if (!buf) return AD_ERR_NOMEM;
    for (int r = 0; r < N; r++) {
        rcounts[r] = mine;
        rdispls[r] = r * mine;
    }
    MPI_TRY(MPI_Alltoallv(block, counts, displs, type, buf, rcounts, rdispls, type, d->comm), fn,
            "MPI_Alltoallv");
    void *dst = (char *)block + (size_t)displs[d->rank] * elem;
    const double *bd = buf;
    const float *bf = buf;
    double *dd = dst;
    float *df = dst;
    for (int i = 0; i < mine; i++) {
        double acc = 0.0;
        for (int r = 0; r < N; r++)
            acc += f64 ? bd[(size_t)r * mine + i] : bf[(size_t)r * mine + i];
        acc /= N;
        if (f64) dd[i] = acc;
        else df[i] = (float)acc;
    }
    MPI_TRY(MPI_Allgatherv(MPI_IN_PLACE, 0, type, block, counts, displs, type, d->comm), fn,
            "MPI_Allgatherv");
    return AD_OK;
}

ad_status nn_dist_average_grads(nn_dist *d, nn_params *ps, ad_error *err)
{
    if (!d || !ps) return ad_error_set(err, AD_ERR_NULL, "nn_dist_average_grads: %s is NULL", d ? "ps" : "d");
    size_t n = 0;
    char *g = nn_params_grads(ps, &n);
    int f64 = nn_params_dtype(ps) == AD_F64;
    size_t elem = f64 ? sizeof(double) : sizeof(float);
    for (size_t off = 0; off < n; off += DIST_WINDOW) {
        size_t len = n - off < DIST_WINDOW ? n - off : DIST_WINDOW;
        ad_status st = average_window(d, g + off * elem, len, f64, err);
        if (st != AD_OK) return st;
    }
    return ad_error_set(err, AD_OK, NULL);
}

ad_status nn_dist_average(nn_dist *d, double *values, size_t n, ad_error *err)
{
    const char *fn = "nn_dist_average";
    if (!d || (!values && n > 0)) return ad_error_set(err, AD_ERR_NULL, "%s: %s is NULL", fn, d ? "values" : "d");
    if (n > (size_t)INT_MAX / (size_t)d->size)
        return ad_error_set(err, AD_ERR_ARG, "%s: %zu values is more than one call handles", fn, n);
    double *all = scratch(d, (size_t)d->size * n + 1, sizeof *all, err, fn);
    if (!all) return AD_ERR_NOMEM;
    MPI_TRY(MPI_Allgather(values, (int)n, MPI_DOUBLE, all, (int)n, MPI_DOUBLE, d->comm), fn,
            "MPI_Allgather");
    for (size_t i = 0; i < n; i++) {
        double acc = 0.0;
        for (int r = 0; r < d->size; r++) acc += all[(size_t)r * n + i];
        values[i] = acc / d->size;
    }
    return ad_error_set(err, AD_OK, NULL);
}

ad_status nn_dist_agree(nn_dist *d, ad_status local, ad_error *err)
{
    const char *fn = "nn_dist_agree";
    if (!d) return ad_error_set(err, AD_ERR_NULL, "%s: d is NULL", fn);
    int mine = (int)local;
    int *all = d->ints;
    MPI_TRY(MPI_Allgather(&mine, 1, MPI_INT, all, 1, MPI_INT, d->comm), fn, "MPI_Allgather");
    int bad = -1;
    for (int r = 0; r < d->size && bad < 0; r++)
        if (all[r] != AD_OK) bad = r;
    if (bad < 0) return ad_error_set(err, AD_OK, NULL);
    /* The failing rank's message, when it had one, reaches every rank. */
    char msg[AD_ERROR_MSG_SIZE] = "";
    if (d->rank == bad && err && err->code == local) snprintf(msg, sizeof msg, "%s", err->msg);
    MPI_TRY(MPI_Bcast(msg, (int)sizeof msg, MPI_CHAR, bad, d->comm), fn, "MPI_Bcast");
    msg[sizeof msg - 1] = '\0';
    return ad_error_set(err, (ad_status)all[bad], "rank %d failed (%s)%s%s", bad,
                        ad_status_name((ad_status)all[bad]), msg[0] ? ": " : "", msg);
}

ad_status nn_dist_shard(const nn_dist *d, int64_t global, int64_t *begin, int64_t *count, ad_error *err)
{
    const char *fn = "nn_dist_shard";
    if (!d || !begin || !count)
        return ad_error_set(err, AD_ERR_NULL, "%s: %s is NULL", fn, !d ? "d" : !begin ? "begin" : "count");
    if (global < 1 || global % d->size != 0)
        return ad_error_set(err, AD_ERR_ARG,
                            "%s: a global batch of %lld rows does not split evenly over %d ranks "
                            "(it must be a positive multiple of %d)", fn, (long long)global, d->size,
                            d->size);
    *count = global / d->size;
    *begin = *count * d->rank;
    return ad_error_set(err, AD_OK, NULL);
}
