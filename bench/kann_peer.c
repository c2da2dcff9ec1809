/* KANN as a peer of unroll_bench: the workloads W1, W2, W3, W4, W4g of
 * WORKLOADS.md built from KANN's own layers (kann_layer_rnn / _lstm / _gru),
 * unrolled with kann_unroll to T, fed dense one-hot rows, B as the mini-batch.
 * KANN ships RMSprop only, so SGD, clipped Adagrad and Adam are applied here
 * over KANN's flat parameter and gradient arrays (ann->x, ann->g).
 *
 * Built by bench/side_by_side.py against a KANN checkout (never part of this
 * repository), e.g.:
 *   cc -O3 -march=native -I$KANN bench/kann_peer.c $KANN/kann.c $KANN/kautodiff.c -lm
 *   cc -O3 -march=native -DHAVE_CBLAS -I$KANN -I/usr/include/x86_64-linux-gnu/openblas-pthread \
 *      bench/kann_peer.c $KANN/kann.c $KANN/kautodiff.c -lopenblas -lm
 *
 *   kann_peer --workload W --data PATH --seconds S --label NAME
 *   kann_peer --workload W --data PATH --check     first/last loss of 200 steps
 *   kann_peer --gradcheck                          W1 step-1 gradients vs central differences
 *
 * Rows: "workload,variant,f32,1,median_us,tokens_per_s,0", as unroll_bench's.
 *
 * KANN's unrolled cost is the mean over the T steps of the per-step cost
 * (itself a mean over the batch). W3/W4/W4g define that mean; W1 and W2 define
 * a sum over T, so their gradient (and printed loss) is multiplied by T. */
#define _POSIX_C_SOURCE 199309L /* clock_gettime under -std=c11 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kann.h"

typedef struct {
	const char *w;
	int V, H, T, B, kind; /* kind: 0 rnn, 1 lstm, 2 gru */
	int *ids;
	long n_ids, pos;
	kann_t *ann, *ua;
	float **x, **y; /* T feed rows of B*V (inputs) and B*n_out (targets) */
	float *m, *v;   /* optimizer state */
	int n_var, n_out;
	long step;
} peer_t;

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec * 1e-3;
}

static int load_ids(peer_t *p, const char *path)
{
	FILE *fp = fopen(path, "rb");
	int rank[256], seen[256] = {0}, n = 0, c;
	long cap = 1 << 20;
	if (!fp) { fprintf(stderr, "kann_peer: cannot open %s\n", path); return -1; }
	p->ids = malloc(cap * sizeof(int));
	p->n_ids = 0;
	while ((c = getc(fp)) != EOF) {
		if (p->n_ids == cap) p->ids = realloc(p->ids, (cap *= 2) * sizeof(int));
		p->ids[p->n_ids++] = c, seen[c] = 1;
	}
	fclose(fp);
	for (c = 0; c < 256; ++c) rank[c] = seen[c] ? n++ : -1;
	for (long i = 0; i < p->n_ids; ++i) p->ids[i] = rank[p->ids[i]];
	return n;
}

static int setup(peer_t *p, const char *w, const char *data)
{
	kad_node_t *t;
	p->w = w;
	p->kind = !strcmp(w, "W4") ? 1 : !strcmp(w, "W4g") ? 2 : 0;
	if (!strcmp(w, "W1")) {
		p->V = 3, p->H = 3, p->T = 3, p->B = 1, p->n_out = 1;
	} else {
		int V = load_ids(p, data);
		if (V < 0) return -1;
		p->V = V, p->n_out = V;
		if (!strcmp(w, "W2")) p->H = 100, p->T = 25, p->B = 1;
		else if (!strcmp(w, "W3") || p->kind) p->H = 256, p->T = 64, p->B = 32;
		else { fprintf(stderr, "kann_peer: unknown workload %s\n", w); return -1; }
	}
	kann_srand(1);
	t = kann_layer_input(p->V);
	t = p->kind == 1 ? kann_layer_lstm(t, p->H, 0) : p->kind == 2 ? kann_layer_gru(t, p->H, 0) : kann_layer_rnn(t, p->H, 0);
	t = kann_layer_cost(t, p->n_out, p->n_out == 1 ? KANN_C_CEB : KANN_C_CEM);
	p->ann = kann_new(t, 0);
	p->ua = kann_unroll(p->ann, p->T);
	kann_set_batch_size(p->ua, p->B);
	p->x = malloc(p->T * sizeof(float *));
	p->y = malloc(p->T * sizeof(float *));
	for (int i = 0; i < p->T; ++i) {
		p->x[i] = calloc((size_t)p->B * p->V, sizeof(float));
		p->y[i] = calloc((size_t)p->B * p->n_out, sizeof(float));
	}
	kann_feed_bind(p->ua, KANN_F_IN, 0, p->x);
	kann_feed_bind(p->ua, KANN_F_TRUTH, 0, p->y);
	p->n_var = kann_size_var(p->ua);
	p->m = calloc(p->n_var, sizeof(float));
	p->v = calloc(p->n_var, sizeof(float));
	return 0;
}

/* One-hot inputs ids[o..o+T-1] and targets ids[o+1..o+T] of batch row b. */
static void fill_row(peer_t *p, int b, long o)
{
	for (int t = 0; t < p->T; ++t) {
		memset(p->x[t] + (size_t)b * p->V, 0, p->V * sizeof(float));
		memset(p->y[t] + (size_t)b * p->n_out, 0, p->n_out * sizeof(float));
		p->x[t][(size_t)b * p->V + p->ids[o + t]] = 1.0f;
		p->y[t][(size_t)b * p->n_out + p->ids[o + t + 1]] = 1.0f;
	}
}

static void fill_batch(peer_t *p)
{
	if (!strcmp(p->w, "W1")) { /* inputs (0,1,2), targets (1,0,1) */
		static const float d[3] = {1, 0, 1};
		for (int t = 0; t < 3; ++t) {
			memset(p->x[t], 0, 3 * sizeof(float));
			p->x[t][t] = 1.0f, p->y[t][0] = d[t];
		}
	} else if (p->B == 1) { /* W2: sequential pointer advancing by T */
		if (p->pos + p->T + 1 > p->n_ids) p->pos = 0;
		fill_row(p, 0, p->pos);
		p->pos += p->T;
	} else {
		for (int b = 0; b < p->B; ++b)
			fill_row(p, b, (long)(kad_drand(0) * (p->n_ids - p->T - 1)));
	}
}

/* Forward + backward of the filled batch; the cost as the workload defines it. */
static float cost_grad(peer_t *p, int grad)
{
	float c = kann_cost(p->ua, 0, grad);
	if (p->B == 1) { /* W1, W2: a sum over T, KANN averages */
		if (grad) for (int i = 0; i < p->n_var; ++i) p->ua->g[i] *= p->T;
		c *= p->T;
	}
	return c;
}

static void update(peer_t *p)
{
	float *x = p->ua->x, *g = p->ua->g;
	int n = p->n_var;
	++p->step;
	if (!strcmp(p->w, "W1")) {
		for (int i = 0; i < n; ++i) x[i] -= 0.1f * g[i];
	} else if (!strcmp(p->w, "W2")) {
		for (int i = 0; i < n; ++i) {
			float gi = g[i] < -5.0f ? -5.0f : g[i] > 5.0f ? 5.0f : g[i];
			p->m[i] += gi * gi;
			x[i] -= 0.1f * gi / sqrtf(p->m[i] + 1e-8f);
		}
	} else {
		float c1 = 1.0f - powf(0.9f, p->step), c2 = 1.0f - powf(0.999f, p->step);
		for (int i = 0; i < n; ++i) {
			p->m[i] = 0.9f * p->m[i] + 0.1f * g[i];
			p->v[i] = 0.999f * p->v[i] + 0.001f * g[i] * g[i];
			x[i] -= 2e-3f * (p->m[i] / c1) / (sqrtf(p->v[i] / c2) + 1e-8f);
		}
	}
}

static float train_step(peer_t *p)
{
	float c;
	fill_batch(p);
	c = cost_grad(p, 1);
	update(p);
	return c;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static void bench(peer_t *p, double seconds, const char *label)
{
	size_t n = 0, cap = 1024;
	double *ts = malloc(cap * sizeof(double)), start, med;
	for (int i = 0; i < 3; ++i) train_step(p);
	start = now_us();
	while (n < 3 || now_us() - start < seconds * 1e6) {
		double t0 = now_us();
		train_step(p);
		if (n == cap) ts = realloc(ts, (cap *= 2) * sizeof(double));
		ts[n++] = now_us() - t0;
	}
	qsort(ts, n, sizeof(double), cmp_double);
	med = n % 2 ? ts[n / 2] : 0.5 * (ts[n / 2 - 1] + ts[n / 2]);
	printf("%s,%s,f32,1,%.2f,%.0f,0\n", p->w, label, med, p->T * p->B / (med * 1e-6));
	free(ts);
}

/* W1, first step: KANN's gradient against central differences of the cost. */
static int gradcheck(peer_t *p)
{
	float *x = p->ua->x, *g = malloc(p->n_var * sizeof(float));
	double worst = 0.0;
	fill_batch(p);
	cost_grad(p, 1);
	memcpy(g, p->ua->g, p->n_var * sizeof(float));
	for (int i = 0; i < p->n_var; ++i) {
		float x0 = x[i], h = 1e-2f;
		double fp, fm, fd;
		x[i] = x0 + h, fp = cost_grad(p, 0);
		x[i] = x0 - h, fm = cost_grad(p, 0);
		x[i] = x0;
		fd = (fp - fm) / (2 * h);
		if (fabs(fd - g[i]) > worst) worst = fabs(fd - g[i]);
	}
	printf("gradcheck W1: %d parameters, max |kann - central difference| = %.2e (%s)\n", p->n_var, worst,
	       p->n_var == 25 && worst < 1e-3 ? "ok" : "FAILED");
	free(g);
	return p->n_var == 25 && worst < 1e-3 ? 0 : 1;
}

static void teardown(peer_t *p)
{
	for (int i = 0; i < p->T; ++i) free(p->x[i]), free(p->y[i]);
	free(p->x), free(p->y), free(p->m), free(p->v), free(p->ids);
	kann_delete_unrolled(p->ua);
	kann_delete(p->ann);
}

int main(int argc, char **argv)
{
	const char *w = "W1", *data = NULL, *label = "kann";
	double seconds = 1.0;
	int check = 0, grad = 0, rc = 0;
	peer_t p;
	for (int i = 1; i < argc; ++i) {
		if (!strcmp(argv[i], "--workload") && i + 1 < argc) w = argv[++i];
		else if (!strcmp(argv[i], "--data") && i + 1 < argc) data = argv[++i];
		else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) seconds = atof(argv[++i]);
		else if (!strcmp(argv[i], "--label") && i + 1 < argc) label = argv[++i];
		else if (!strcmp(argv[i], "--check")) check = 1;
		else if (!strcmp(argv[i], "--gradcheck")) grad = 1, w = "W1";
		else { fprintf(stderr, "kann_peer: unknown argument %s\n", argv[i]); return 2; }
	}
	if (strcmp(w, "W1") && !data) { fprintf(stderr, "kann_peer: %s needs --data PATH\n", w); return 2; }
	kann_verbose = 0;
	memset(&p, 0, sizeof p);
	if (setup(&p, w, data) < 0) return 2;
	if (grad) {
		rc = gradcheck(&p);
	} else if (check) {
		float first = train_step(&p), last = first;
		for (int i = 1; i < 200; ++i) last = train_step(&p);
		printf("check %s: loss step 1 = %.4f, step 200 = %.4f (%s)\n", w, first, last, last < first ? "falls" : "DOES NOT FALL");
		rc = last < first ? 0 : 1;
	} else {
		bench(&p, seconds, label);
	}
	teardown(&p);
	return rc;
}
