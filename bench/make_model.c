/*
 * make_model.c -- write a llama-architecture GGUF with random F16 weights and a real
 * tokenizer, for benchmarks: its text is noise, its cost per token is that of a real
 * model of the same shape.
 *
 *   make_model VOCAB.gguf OUT.gguf 100m|1b [f16|q8_0]
 *
 * The weight matrices are F16 (default) or Q8_0 (what most people run: 8-bit blocks of 32
 * with a scale, as llama-quantize writes them); norms stay F32.
 * VOCAB.gguf is a vocabulary-only GGUF from the llama.cpp source tree (for example
 * models/ggml-vocab-llama-bpe.gguf: Llama 3's 128,256 tokens); all its tokenizer.* keys
 * are copied. Weights ~ U(-0.05, 0.05), norms 1. Written in a stream: no model-sized
 * buffer in memory.
 */
#include "ggml.h"
#include "gguf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct shape {
    const char *name;
    int n_embd, n_layer, n_head, n_head_kv, n_ff;
    int tied; /* output projection shares token_embd (as Llama 3.2 1B) */
} shape;

static const shape SHAPES[] = {
    {"100m", 384, 6, 6, 6, 1024, 0},
    {"1b", 2048, 16, 32, 8, 8192, 1},
};

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float uniform(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((double)(rng >> 11) * 0x1.0p-53 * 0.1 - 0.05);
}

typedef struct tensor_spec {
    char    name[64];
    int64_t ne0, ne1;
    int     is_norm; /* F32 ones */
} tensor_spec;

int main(int argc, char **argv) {
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: make_model VOCAB.gguf OUT.gguf 100m|1b [f16|q8_0]\n");
        return 2;
    }
    enum ggml_type wtype = GGML_TYPE_F16;
    if (argc == 5 && strcmp(argv[4], "q8_0") == 0) wtype = GGML_TYPE_Q8_0;
    else if (argc == 5 && strcmp(argv[4], "f16") != 0) {
        fprintf(stderr, "make_model: unknown weight type '%s' (f16 or q8_0)\n", argv[4]);
        return 2;
    }
    const shape *sh = NULL;
    for (size_t i = 0; i < sizeof SHAPES / sizeof *SHAPES; i++)
        if (strcmp(SHAPES[i].name, argv[3]) == 0) sh = &SHAPES[i];
    if (!sh) {
        fprintf(stderr, "make_model: unknown size '%s' (100m or 1b)\n", argv[3]);
        return 2;
    }
    struct gguf_init_params ip = {.no_alloc = true, .ctx = NULL};
    struct gguf_context *voc = gguf_init_from_file(argv[1], ip);
    if (!voc) {
        fprintf(stderr, "make_model: cannot read %s\n", argv[1]);
        return 1;
    }
    int64_t tok_key = gguf_find_key(voc, "tokenizer.ggml.tokens");
    if (tok_key < 0) {
        fprintf(stderr, "make_model: %s has no tokenizer\n", argv[1]);
        return 1;
    }
    int64_t n_vocab = (int64_t)gguf_get_arr_n(voc, tok_key);
    int head_dim = sh->n_embd / sh->n_head, n_embd_kv = head_dim * sh->n_head_kv;

    struct gguf_context *out = gguf_init_empty();
    gguf_set_kv(out, voc);
    gguf_set_val_str(out, "general.architecture", "llama");
    gguf_set_val_str(out, "general.name", "backtrack-bench-random");
    gguf_set_val_u32(out, "general.file_type", wtype == GGML_TYPE_Q8_0 ? 7 : 1); /* mostly Q8_0 / F16 */
    gguf_set_val_u32(out, "llama.context_length", 4096);
    gguf_set_val_u32(out, "llama.embedding_length", (uint32_t)sh->n_embd);
    gguf_set_val_u32(out, "llama.block_count", (uint32_t)sh->n_layer);
    gguf_set_val_u32(out, "llama.feed_forward_length", (uint32_t)sh->n_ff);
    gguf_set_val_u32(out, "llama.rope.dimension_count", (uint32_t)head_dim);
    gguf_set_val_u32(out, "llama.attention.head_count", (uint32_t)sh->n_head);
    gguf_set_val_u32(out, "llama.attention.head_count_kv", (uint32_t)sh->n_head_kv);
    gguf_set_val_f32(out, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    gguf_set_val_f32(out, "llama.rope.freq_base", 500000.0f);
    gguf_set_val_u32(out, "llama.vocab_size", (uint32_t)n_vocab);

    /* the tensor list */
    int n_t = 0, cap = 3 + 9 * sh->n_layer;
    tensor_spec *ts = calloc((size_t)cap, sizeof *ts);
#define ADD(nm, a, b, norm) (snprintf(ts[n_t].name, 64, "%s", nm), ts[n_t].ne0 = a, ts[n_t].ne1 = b, ts[n_t++].is_norm = norm)
    ADD("token_embd.weight", sh->n_embd, n_vocab, 0);
    ADD("output_norm.weight", sh->n_embd, 1, 1);
    if (!sh->tied) ADD("output.weight", sh->n_embd, n_vocab, 0);
    for (int l = 0; l < sh->n_layer; l++) {
        char nm[64];
#define L(suffix, a, b, norm) (snprintf(nm, sizeof nm, "blk.%d." suffix, l), ADD(nm, a, b, norm))
        L("attn_norm.weight", sh->n_embd, 1, 1);
        L("attn_q.weight", sh->n_embd, sh->n_embd, 0);
        L("attn_k.weight", sh->n_embd, n_embd_kv, 0);
        L("attn_v.weight", sh->n_embd, n_embd_kv, 0);
        L("attn_output.weight", sh->n_embd, sh->n_embd, 0);
        L("ffn_norm.weight", sh->n_embd, 1, 1);
        L("ffn_gate.weight", sh->n_embd, sh->n_ff, 0);
        L("ffn_up.weight", sh->n_embd, sh->n_ff, 0);
        L("ffn_down.weight", sh->n_ff, sh->n_embd, 0);
    }
    struct ggml_init_params gp = {.mem_size = (size_t)(n_t + 8) * ggml_tensor_overhead(),
                                  .mem_buffer = NULL, .no_alloc = true};
    struct ggml_context *gctx = ggml_init(gp);
    int64_t params = 0;
    for (int i = 0; i < n_t; i++) {
        struct ggml_tensor *t = ts[i].ne1 == 1 && ts[i].is_norm
            ? ggml_new_tensor_1d(gctx, GGML_TYPE_F32, ts[i].ne0)
            : ggml_new_tensor_2d(gctx, wtype, ts[i].ne0, ts[i].ne1);
        ggml_set_name(t, ts[i].name);
        gguf_add_tensor(out, t);
        params += ts[i].ne0 * ts[i].ne1;
    }

    FILE *f = fopen(argv[2], "wb");
    if (!f || !gguf_write_to_file_ptr(out, f, true)) {
        fprintf(stderr, "make_model: cannot write %s\n", argv[2]);
        return 1;
    }
    /* tensor data, in order, each padded to the alignment */
    size_t align = gguf_get_alignment(out), chunk = 1 << 20;
    float *buf32 = malloc(chunk * sizeof *buf32);
    ggml_fp16_t *buf16 = malloc(chunk * sizeof *buf16);
    void *bufq = malloc(ggml_row_size(GGML_TYPE_Q8_0, (int64_t)chunk));
    for (int i = 0; i < n_t; i++) {
        int64_t n = ts[i].ne0 * ts[i].ne1;
        size_t bytes = 0;
        /* whole rows per chunk: Q8_0 quantizes row by row */
        size_t step = chunk - chunk % (size_t)ts[i].ne0;
        for (int64_t done = 0; done < n;) {
            size_t m = (size_t)(n - done) < step ? (size_t)(n - done) : step;
            for (size_t k = 0; k < m; k++) buf32[k] = ts[i].is_norm ? 1.0f : uniform();
            if (ts[i].is_norm) {
                fwrite(buf32, sizeof *buf32, m, f);
                bytes += m * sizeof *buf32;
            } else if (wtype == GGML_TYPE_Q8_0) {
                int64_t rows = (int64_t)m / ts[i].ne0;
                size_t qb = ggml_quantize_chunk(GGML_TYPE_Q8_0, buf32, bufq, 0, rows, ts[i].ne0, NULL);
                fwrite(bufq, 1, qb, f);
                bytes += qb;
            } else {
                ggml_fp32_to_fp16_row(buf32, buf16, (int64_t)m);
                fwrite(buf16, sizeof *buf16, m, f);
                bytes += m * sizeof *buf16;
            }
            done += (int64_t)m;
        }
        static const char zeros[64];
        size_t pad = (align - bytes % align) % align;
        fwrite(zeros, 1, pad, f);
    }
    if (fclose(f) != 0) {
        fprintf(stderr, "make_model: write error on %s\n", argv[2]);
        return 1;
    }
    printf("%s: %s, %.0fM parameters, %s, vocabulary %lld (%s)\n", argv[2], sh->name, params / 1e6,
           ggml_type_name(wtype), (long long)n_vocab, argv[1]);
    free(buf32);
    free(buf16);
    free(bufq);
    free(ts);
    ggml_free(gctx);
    gguf_free(out);
    gguf_free(voc);
    return 0;
}
