/*
 * dot.c - DOT export: nodes in tape order, parameters drawn once.
 *
 * The text goes to a sink: a FILE, or a growing buffer that
 * ad_tape_save_dot() then writes atomically.
 */
#include "dot.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "fileio.h"
#include "internal.h"

typedef struct sink {
    FILE *file; /* NULL: append to buf */
    char *buf;
    size_t len, cap;
    int failed;
} sink;

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void put(sink *s, const char *fmt, ...)
{
    if (s->failed) return;
    va_list ap;
    va_start(ap, fmt);
    if (s->file) {
        if (vfprintf(s->file, fmt, ap) < 0) s->failed = 1;
        va_end(ap);
        return;
    }
    va_list again;
    va_copy(again, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || s->len + (size_t)n + 1 > s->cap) {
        size_t cap = (s->cap ? s->cap * 2 : 4096) + (n > 0 ? (size_t)n : 0);
        char *b = n < 0 ? NULL : realloc(s->buf, cap);
        if (!b) {
            s->failed = 1;
            va_end(again);
            return;
        }
        s->buf = b;
        s->cap = cap;
    }
    vsnprintf(s->buf + s->len, s->cap - s->len, fmt, again);
    va_end(again);
    s->len += (size_t)n;
}

/* DOT-safe text: quotes and backslashes dropped. */
static void put_text(sink *s, const char *text)
{
    char clean[AD_NAME_SIZE * 2];
    size_t n = 0;
    for (; *text && n + 1 < sizeof clean; text++)
        if (*text != '"' && *text != '\\') clean[n++] = *text;
    clean[n] = '\0';
    put(s, "%s", clean);
}

/* Whether node i is the first use of parameter p, so each parameter is drawn once. */
static int first_use_of(ad_node *const *nodes, size_t i, const ad_param *p)
{
    for (size_t j = 0; j < i; j++)
        if (nodes[j]->op == AD_OP_PARAM && nodes[j]->out->param == p) return 0;
    return 1;
}

static void write_graph(const ad_tape *t, sink *s)
{
    size_t count;
    ad_node *const *nodes = ad__tape_nodes(t, &count);
    put(s, "digraph tape {\n  rankdir=BT;\n  node [fontname=\"monospace\", fontsize=10];\n");
    for (size_t i = 0; i < count; i++) {
        const ad_node *n = nodes[i];
        char sh[AD__SHAPE_BUF];
        const char *name = ad__op_name(n->op, &n->a);
        put(s, "  n%zu [shape=box, label=\"#%zu ", i, i);
        put_text(s, name);
        put(s, " %s", ad__shape_str(n->out->shape, sh));
        if (n->label) {
            put(s, "\\n");
            put_text(s, n->label);
        }
        put(s, "\"];\n");
        for (int k = 0; k < n->n_in; k++)
            if (n->in[k]->node) put(s, "  n%zu -> n%zu;\n", n->in[k]->node->index, i);
        const ad_param *p = n->out->param;
        if (n->op != AD_OP_PARAM || !p) continue;
        if (first_use_of(nodes, i, p)) {
            put(s, "  p%p [shape=ellipse, style=bold, label=\"", (const void *)p);
            put_text(s, p->name);
            put(s, " %s\"];\n", ad__shape_str(p->value.shape, sh));
        }
        put(s, "  p%p -> n%zu [style=dashed, label=\"copy\"];\n", (const void *)p, i);
    }
    put(s, "}\n");
}

ad_status ad_tape_write_dot(const ad_tape *t, FILE *out, ad_error *err)
{
    if (!t || !out) return ad_error_set(err, AD_ERR_NULL, "dot: %s is NULL", !t ? "tape" : "out");
    sink s = {out, NULL, 0, 0, 0};
    write_graph(t, &s);
    if (s.failed || ferror(out)) return ad_error_set(err, AD_ERR_IO, "dot: write failed");
    return ad_error_set(err, AD_OK, NULL);
}

ad_status ad_tape_save_dot(const ad_tape *t, const char *path, ad_error *err)
{
    if (!t || !path) return ad_error_set(err, AD_ERR_NULL, "dot: %s is NULL", !t ? "tape" : "path");
    sink s = {NULL, NULL, 0, 0, 0};
    write_graph(t, &s);
    ad_status st = s.failed ? ad_error_set(err, AD_ERR_NOMEM, "dot: out of memory")
                            : ad__file_write_atomic(path, s.buf, s.len, err);
    free(s.buf);
    return st;
}
