/*
 * exchange_weights.c - weights in and out of the files PyTorch users have:
 * save a model as safetensors, load it into a model whose names differ by a
 * prefix (PyTorch's load_state_dict(strict=True) with the keys mapped), read
 * the report, and load integer targets from a .npy file. docs/guide.md,
 * "Exchanging weights", shows this code.
 *
 *     ./exchange_weights     # writes and reads exchange_weights.* in the current folder
 */
#include <stdio.h>
#include <string.h>

#include <unroll/nn/nn.h>

static int fail(const ad_error *err)
{
    fprintf(stderr, "exchange_weights: %s\n", err->msg);
    return 1;
}

int main(void)
{
    ad_error err;
    ad_rng rng;
    ad_rng_seed(&rng, 7, 0);
    /* guide-snippet begin exchange_weights */
    /* A bare LSTM + head, named as a torch.nn.LSTM's own state dict is:
     * "weight_ih_l0", ..., "fc.weight", "fc.bias". */
    nn_params *src = nn_params_new(AD_F64, &err);
    nn_cell cell;
    nn_linear fc;
    if (!src || nn_cell_create(&cell, src, "", &(nn_cell_options){.kind = NN_CELL_LSTM, .input_size = 3, .hidden_size = 4}, &err) != AD_OK ||
        nn_linear_create(&fc, src, "fc", 4, 2, 1, &err) != AD_OK)
        return fail(&err);
    nn_cell_init_pytorch(&cell, &rng);
    nn_linear_init_pytorch(&fc, &rng);
    const char *meta[] = {"format", "pt"};
    if (nn_params_save_safetensors(src, "exchange_weights.safetensors", meta, 1, &err) != AD_OK) return fail(&err);

    /* The same model with its LSTM under "encoder.": map the keys, strictly. */
    nn_params *dst = nn_params_new(AD_F64, &err);
    nn_cell enc;
    nn_linear head;
    if (!dst || nn_cell_create(&enc, dst, "encoder", &(nn_cell_options){.kind = NN_CELL_LSTM, .input_size = 3, .hidden_size = 4}, &err) != AD_OK ||
        nn_linear_create(&head, dst, "fc", 4, 2, 1, &err) != AD_OK)
        return fail(&err);
    nn_load_options strict = {.add_prefix = "encoder.", .strict = 1};
    nn_load_report rep;
    if (nn_params_load_state_dict(dst, "exchange_weights.safetensors", &strict, &rep, &err) != AD_ERR_MISMATCH)
        return fprintf(stderr, "exchange_weights: the strict load should have refused fc.*\n"), 1;
    printf("strict: %s\n", err.msg);
    for (size_t i = 0; i < rep.n_unexpected; i++) printf("  unexpected %s\n", rep.unexpected[i]);
    for (size_t i = 0; i < rep.n_missing; i++) printf("  missing %s\n", rep.missing[i]);
    nn_load_report_free(&rep);
    /* guide-snippet end */
    /* Not strict: the LSTM loads, fc.* are reported; then fc by its own name. */
    nn_load_options lenient = {.add_prefix = "encoder."};
    if (nn_params_load_state_dict(dst, "exchange_weights.safetensors", &lenient, &rep, &err) != AD_OK)
        return fail(&err);
    printf("lenient: %zu loaded, %zu unexpected\n", rep.n_loaded, rep.n_unexpected);
    nn_load_report_free(&rep);
    if (nn_params_load_state_dict(dst, "exchange_weights.safetensors", NULL, &rep, &err) != AD_OK) return fail(&err);
    printf("as they are: %zu loaded, %zu unexpected\n", rep.n_loaded, rep.n_unexpected);
    nn_load_report_free(&rep);
    size_t n;
    double *a = nn_params_values(src, &n), *b = nn_params_values(dst, NULL);
    if (memcmp(a, b, n * sizeof *a) != 0) return fprintf(stderr, "exchange_weights: values differ\n"), 1;

    /* Integer targets (np.int64, torch.long) as int64_t, straight into a loss. */
    ad_itensor *y = ad_itensor_new(AD_I64, ad_shape1(3), &err);
    if (!y) return fail(&err);
    int64_t *yv = ad_itensor_data(y);
    yv[0] = 1, yv[1] = 0, yv[2] = 1;
    if (ad_npy_save_ints("exchange_weights_targets.npy", y, &err) != AD_OK) return fail(&err);
    ad_itensor_free(y);
    y = ad_npy_load_ints("exchange_weights_targets.npy", &err);
    if (!y) return fail(&err);
    ad_tape *t = ad_tape_new(NULL);
    ad_tensor *logits = ad_zeros(t, AD_F64, ad_shape2(3, 2));
    ad_tensor *loss = ad_cross_entropy(t, logits, ad_itensor_data(y), 3, -100, AD_REDUCE_MEAN);
    if (!loss) return fprintf(stderr, "exchange_weights: %s\n", ad_tape_message(t)), 1;
    printf("cross-entropy of uniform logits: %.6f (log 2)\n", ad_tensor_item(loss));
    ad_tape_free(t);
    ad_itensor_free(y);
    nn_params_free(src);
    nn_params_free(dst);
    return 0;
}
