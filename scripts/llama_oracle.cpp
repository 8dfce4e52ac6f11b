// llama_oracle (built as `oracle`): a small program linked to libllama (the vendored llama.cpp of llama-cpp-python 0.3.36,
// ggml-org/llama.cpp@0c1e57098) that the webllama fixture script drives.
//
//   oracle info  MODEL
//       JSON: model desc, n_params, size, n_vocab, bos/eos/eot, add_bos/add_eos, eog ids.
//   oracle gen   MODEL KV(f16|f32) N_GEN IDS_CSV
//       the prompt ids in ONE llama_decode, then greedy argmax (ties -> lowest id) over the raw
//       logits, each generated token decoded alone, N_GEN steps, not stopping at end-of-generation.
//       One JSON line per step: {"step","pos","token","logits":[...all n_vocab...]}.
//       n_ctx 512, n_batch 512, 2 threads, flash attention off, KV cache type as asked.
//   oracle tok   MODEL FILE...
//       each FILE's raw bytes tokenized with llama_tokenize(add_special=true, parse_special=true)
//       and (add_special=true, parse_special=false); one JSON line per file.
//   oracle quant IN OUT FTYPE [TOKEN_EMBD_TYPE|-] [OUTPUT_TYPE|-] [pure]
//       llama_model_quantize with allow_requantize=true (FTYPE: llama_ftype number; types: ggml_type
//       numbers). FTYPE 0 (ALL_F32) gives the exact dequantization of a quantized file.
#include "llama.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

static void quiet(enum ggml_log_level level, const char * text, void *) {
    if (level >= GGML_LOG_LEVEL_ERROR) fputs(text, stderr);
}

static llama_model * load(const char * path, bool vocab_only) {
    llama_model_params mp = llama_model_default_params();
    mp.vocab_only = vocab_only;
    mp.progress_callback = [](float, void *) { return true; };
    llama_model * m = llama_model_load_from_file(path, mp);
    if (!m) { fprintf(stderr, "cannot load %s\n", path); exit(1); }
    return m;
}

static void print_ids(const std::vector<llama_token> & v) {
    printf("[");
    for (size_t i = 0; i < v.size(); i++) printf(i ? ",%d" : "%d", v[i]);
    printf("]");
}

static std::vector<llama_token> tokenize(const llama_vocab * vocab, const std::string & s, bool add_special, bool parse_special) {
    int n = -llama_tokenize(vocab, s.data(), (int32_t) s.size(), nullptr, 0, add_special, parse_special);
    if (n < 0) n = 0;
    std::vector<llama_token> out(n + 8);
    int k = llama_tokenize(vocab, s.data(), (int32_t) s.size(), out.data(), (int32_t) out.size(), add_special, parse_special);
    if (k < 0) { fprintf(stderr, "tokenize failed\n"); exit(1); }
    out.resize(k);
    return out;
}

int main(int argc, char ** argv) {
    if (argc < 3) { fprintf(stderr, "usage: see the top of oracle.cpp\n"); return 2; }
    llama_log_set(quiet, nullptr);
    llama_backend_init();
    std::string cmd = argv[1];

    if (cmd == "quant") {
        llama_model_quantize_params qp = llama_model_quantize_default_params();
        qp.nthread = 2;
        qp.ftype = (llama_ftype) atoi(argv[4]);
        qp.allow_requantize = true;
        if (argc > 5 && strcmp(argv[5], "-")) qp.token_embedding_type = (ggml_type) atoi(argv[5]);
        if (argc > 6 && strcmp(argv[6], "-")) qp.output_tensor_type = (ggml_type) atoi(argv[6]);
        if (argc > 7 && !strcmp(argv[7], "pure")) qp.pure = true;
        uint32_t rc = llama_model_quantize(argv[2], argv[3], &qp);
        fprintf(stderr, "quantize rc %u\n", rc);
        return rc ? 1 : 0;
    }

    if (cmd == "info") {
        llama_model * model = load(argv[2], false);
        const llama_vocab * vocab = llama_model_get_vocab(model);
        char desc[256];
        llama_model_desc(model, desc, sizeof desc);
        int nv = llama_vocab_n_tokens(vocab);
        printf("{\"llama_model_desc\":\"%s\",\"n_params\":%llu,\"size_bytes\":%llu,\"n_vocab\":%d,\"bos\":%d,\"eos\":%d,\"eot\":%d,"
               "\"add_bos\":%s,\"add_eos\":%s,\"eog_ids\":[",
               desc, (unsigned long long) llama_model_n_params(model), (unsigned long long) llama_model_size(model), nv,
               llama_vocab_bos(vocab), llama_vocab_eos(vocab), llama_vocab_eot(vocab),
               llama_vocab_get_add_bos(vocab) ? "true" : "false", llama_vocab_get_add_eos(vocab) ? "true" : "false");
        bool first = true;
        for (int i = 0; i < nv; i++) if (llama_vocab_is_eog(vocab, i)) { printf(first ? "%d" : ",%d", i); first = false; }
        printf("]}\n");
        llama_model_free(model);
        return 0;
    }

    if (cmd == "tok") {
        llama_model * model = load(argv[2], true);
        const llama_vocab * vocab = llama_model_get_vocab(model);
        for (int a = 3; a < argc; a++) {
            std::ifstream f(argv[a], std::ios::binary);
            std::stringstream ss;
            ss << f.rdbuf();
            std::string s = ss.str();
            printf("{\"file\":\"%s\",\"ids_parse_special\":", argv[a]);
            print_ids(tokenize(vocab, s, true, true));
            printf(",\"ids_no_parse_special\":");
            print_ids(tokenize(vocab, s, true, false));
            printf(",\"ids_no_special_no_parse\":");
            print_ids(tokenize(vocab, s, false, false));
            printf("}\n");
        }
        llama_model_free(model);
        return 0;
    }

    if (cmd == "gen") {
        llama_model * model = load(argv[2], false);
        const llama_vocab * vocab = llama_model_get_vocab(model);
        const int nv = llama_vocab_n_tokens(vocab);
        const bool kv32 = !strcmp(argv[3], "f32");
        const int n_gen = atoi(argv[4]);
        std::vector<llama_token> prompt;
        {
            std::stringstream ss(argv[5]);
            std::string t;
            while (std::getline(ss, t, ',')) prompt.push_back(atoi(t.c_str()));
        }
        llama_context_params cp = llama_context_default_params();
        cp.n_ctx = 512;
        cp.n_batch = 512;
        cp.n_ubatch = 512;
        cp.n_seq_max = 1;
        cp.n_threads = 2;
        cp.n_threads_batch = 2;
        cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
        cp.type_k = kv32 ? GGML_TYPE_F32 : GGML_TYPE_F16;
        cp.type_v = kv32 ? GGML_TYPE_F32 : GGML_TYPE_F16;
        cp.no_perf = true;
        llama_context * ctx = llama_init_from_model(model, cp);
        if (!ctx) { fprintf(stderr, "no context\n"); return 1; }
        llama_batch batch = llama_batch_get_one(prompt.data(), (int32_t) prompt.size());
        if (llama_decode(ctx, batch)) { fprintf(stderr, "decode failed\n"); return 1; }
        int pos = (int) prompt.size() - 1;
        for (int step = 0; step < n_gen; step++) {
            const float * logits = llama_get_logits_ith(ctx, -1);
            llama_token best = 0;
            for (int i = 1; i < nv; i++) if (logits[i] > logits[best]) best = i;
            printf("{\"step\":%d,\"pos\":%d,\"token\":%d,\"logits\":[", step, pos, best);
            for (int i = 0; i < nv; i++) printf(i ? ",%.9g" : "%.9g", logits[i]);
            printf("]}\n");
            llama_token t = best;
            llama_batch b = llama_batch_get_one(&t, 1);
            if (step + 1 < n_gen && llama_decode(ctx, b)) { fprintf(stderr, "decode failed\n"); return 1; }
            pos++;
        }
        llama_free(ctx);
        llama_model_free(model);
        return 0;
    }
    fprintf(stderr, "unknown command %s\n", cmd.c_str());
    return 2;
}
