/*
 * train_lstm.c - the training loop of docs/guide.md ("Training an LSTM, start to
 * finish"): embedding, LSTM, linear head, TBPTT(20, 20) with clipping and Adam,
 * and a checkpoint at the end (lm.ckpt in the current folder). The data is a
 * toy pattern; put your token ids in `text`.
 *
 * Run: ./build/train_lstm
 */
#include <stdio.h>
#include <unroll/nn/nn.h>

enum { V = 16, E = 8, H = 32, B = 4, K = 20 };
static int64_t text[B][1001];          /* B streams of token ids, filled by you */

typedef struct lm { nn_params *ps; nn_embedding emb; nn_cell lstm; nn_linear head; nn_optim *opt; } lm;

static ad_tensor *input(ad_tape *t, int64_t s, void *c)        /* x_s: [B, E] */
{
    lm *m = c;
    int64_t ids[B];
    for (int b = 0; b < B; b++) ids[b] = text[b][s];
    return nn_embedding_forward(t, &m->emb, ids, B);
}

static ad_tensor *loss(ad_tape *t, const nn_state *h, int64_t s, void *c)  /* predict s+1 */
{
    lm *m = c;
    int64_t next[B];
    for (int b = 0; b < B; b++) next[b] = text[b][s + 1];
    return ad_cross_entropy(t, nn_linear_forward(t, &m->head, h->h), next, B, -1, AD_REDUCE_MEAN);
}

static ad_status update(int64_t seg, double l, void *c)
{
    lm *m = c;
    double norm;
    if (nn_clip_grad_norm(m->ps, 5.0, &norm, NULL) != AD_OK) return AD_OK;  /* skip a NaN step */
    if (seg % 10 == 0) printf("segment %lld  loss %.3f  |g| %.2f\n", (long long)seg, l / K, norm);
    return nn_optim_step(m->opt, NULL);
}

int main(void)
{
    lm m;
    ad_error err;
    ad_rng rng;
    ad_rng_seed(&rng, 1, 0);
    m.ps = nn_params_new(AD_F32, &err);
    if (nn_embedding_create(&m.emb, m.ps, "emb", V, E, &err) != AD_OK ||
        nn_cell_create(&m.lstm, m.ps, "lstm", &(nn_cell_options){.kind = NN_CELL_LSTM, .input_size = E, .hidden_size = H}, &err) != AD_OK ||
        nn_linear_create(&m.head, m.ps, "head", H, V, 1, &err) != AD_OK) {
        fprintf(stderr, "train_lstm: %s\n", err.msg);
        nn_params_free(m.ps);
        return 1;
    }
    nn_embedding_init_pytorch(&m.emb, &rng);
    nn_cell_init_pytorch(&m.lstm, &rng);
    nn_linear_init_pytorch(&m.head, &rng);
    nn_optim_config cfg = nn_optim_defaults(NN_OPTIM_ADAM);
    m.opt = nn_optim_new(m.ps, &cfg, &err);
    for (int b = 0; b < B; b++)
        for (int s = 0; s < 1001; s++) text[b][s] = (s * (b + 1)) % V;   /* toy data */

    /* lean: this loop reads neither per-copy nor intermediate gradients */
    ad_tape *t = ad_tape_new(&(ad_tape_options){.copy_grads = AD_COPY_GRADS_NORMS, .release_grads = 1});
    nn_tbptt_options o = {.k1 = K, .k2 = K, .steps = 1000, .batch = B};
    ad_status st = nn_tbptt_run(t, &m.lstm, m.ps, &o, input, loss, update, &m, &err);
    nn_train_state ts = {.step = nn_optim_steps(m.opt), .rng = rng, .has_rng = 1};
    if (st == AD_OK) st = nn_checkpoint_save("lm.ckpt", m.ps, m.opt, &ts, &err);
    if (st != AD_OK) fprintf(stderr, "train_lstm: %s\n", err.msg);
    ad_tape_free(t);
    nn_optim_free(m.opt);
    nn_params_free(m.ps);
    return st == AD_OK ? 0 : 1;
}
