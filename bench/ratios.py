#!/usr/bin/env python3
# ratios.py: the one table bench/device.sh prints. Reads, from --dir, per model M: M.prefill.*.json
# and M.decode.*.json (`webllama bench --json`; the first decode run with --profile) and
# M.llama-2026-10.json, M.llama-b4747.json (`llama-bench -o json`). Prints, per model, prefill and
# decode of webllama (median of its runs) against the faster llama.cpp build (its mean over -r runs),
# the ratio and the target, webllama's weight GB/s and its share of the GPU's
# memory-bandwidth bound; then webllama's profile per kind of kernel. Standard library only.
import argparse
import glob
import json
import os
import statistics

# Memory-bandwidth bounds (TB/s) by a word in nvidia-smi's name; the first match wins.
BOUNDS = [("H200", 4.8), ("H100", 3.35)]
# The targets: webllama / the faster llama.cpp build.
TARGETS = {"prefill": 1.0, "decode": 1.5}
BUILDS = ["llama-2026-10", "llama-b4747"]
# A variant beats the default where it is this much faster on every shape (above run-to-run noise).
GAIN = 1.03
NAMES = {"smol": "SmolLM2-135M Q4_1 shape", "l1b": "Llama-3.2-1B Q4_K_M shape"}


def load_json(path):
    """`path` as JSON, else the tests a cut-short llama-bench list holds, else the last line of it
    that parses (webllama prints one object; llama-bench a list)."""
    try:
        text = open(path).read()
    except OSError:
        return None
    try:
        return json.loads(text)
    except ValueError:
        pass
    # llama-bench cut short by its timeout: its list of the tests written so far, unclosed (cut
    # after the last whole one).
    if text.lstrip().startswith("["):
        end = len(text)
        while (end := text.rfind("}", 0, end)) > 0:
            try:
                return json.loads(text[: end + 1] + "]")
            except ValueError:
                continue
    for line in reversed(text.strip().splitlines()):
        try:
            return json.loads(line)
        except ValueError:
            continue
    return None


def webllama_runs(d, model, what):
    runs = [load_json(p) for p in sorted(glob.glob(os.path.join(d, f"{model}.{what}.*.json")))]
    return [r for r in runs if isinstance(r, dict)]


def llama_rate(d, model, build, n_prompt, n_gen):
    """(mean tok/s, stddev) of the llama-bench test with these sizes, or None."""
    runs = load_json(os.path.join(d, f"{model}.{build}.json"))
    for r in runs if isinstance(runs, list) else []:
        if r.get("n_prompt") == n_prompt and r.get("n_gen") == n_gen:
            return r.get("avg_ts"), r.get("stddev_ts")
    return None


def bound_for(gpu):
    for word, tb_s in BOUNDS:
        if word in gpu:
            return word, tb_s
    return None, None


def fmt(x, spec=None):
    """x with `spec`, or by default whole numbers from 100 up and one decimal below."""
    if x is None:
        return "-"
    return format(x, spec or (",.0f" if abs(x) >= 100 else ".1f"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--models", default="smol l1b")
    ap.add_argument("--prompt", type=int, default=512, help="prefill tokens (llama-bench -p)")
    ap.add_argument("--gen", type=int, default=128, help="decoded tokens (llama-bench -n)")
    ap.add_argument("--gpu", default="", help="nvidia-smi's GPU name (picks the bandwidth bound)")
    a = ap.parse_args()

    word, tb_s = bound_for(a.gpu)
    print(f"GPU: {a.gpu or 'not an NVIDIA GPU (no nvidia-smi)'}; memory-bandwidth bound: "
          + (f"{tb_s} TB/s ({word})" if tb_s else "none known for it (GB/s shares left out)"))
    print(f"webllama: median of its runs (prefill: -p {a.prompt}; decode: -p 8 -n {a.gen}); "
          f"llama.cpp: llama-bench's mean of -r runs (pp{a.prompt}, tg{a.gen}); "
          "ratio = webllama / the faster llama.cpp build")
    head = ["shape", "test", "webllama tok/s", "llama.cpp best tok/s", "other build", "ratio",
            "target", "met", "webllama GB/s", "% of bound"]
    rows, missing, profiles = [], [], []
    for m in a.models.split():
        name = NAMES.get(m, m)
        for test, what, n_prompt, n_gen in [("prefill", "prefill", a.prompt, 0),
                                            ("decode", "decode", 0, a.gen)]:
            runs = webllama_runs(a.dir, m, what)
            key = "prefill_tok_s" if test == "prefill" else "decode_tok_s"
            ours = statistics.median(r[key] for r in runs) if runs else None
            if not runs:
                missing.append(f"{m}: webllama {what}")
            peers = []
            for b in BUILDS:
                r = llama_rate(a.dir, m, b, n_prompt, n_gen)
                if r is None:
                    missing.append(f"{m}: {b} {'pp' if n_prompt else 'tg'}{n_prompt or n_gen}")
                else:
                    peers.append((r[0], r[1], b))
            peers.sort(reverse=True)
            best = peers[0] if peers else None
            other = peers[1] if len(peers) > 1 else None
            ratio = ours / best[0] if ours and best else None
            target = TARGETS[test]
            gb_s = share = None
            if test == "decode" and runs:
                wb = statistics.median(r["weight_bytes_per_token"] for r in runs)
                gb_s = wb * ours / 1e9
                share = 100 * gb_s / (tb_s * 1000) if tb_s else None
                name_mb = f"{name} ({wb / 1e6:.1f} MB)"
            label = f"{test} {a.prompt}" if test == "prefill" else f"decode tg{a.gen}"
            rows.append([
                name, label, fmt(ours),
                f"{fmt(best[0])} ± {fmt(best[1])} ({best[2][6:]})" if best else "-",
                f"{fmt(other[0])} ({other[2][6:]})" if other else "-",
                fmt(ratio, ".3f") + ("x" if ratio else ""), f">= {target}x",
                "-" if ratio is None else ("yes" if ratio >= target else "no"),
                fmt(gb_s, ",.1f"), fmt(share, ".1f"),
            ])
            if test == "decode" and runs:
                rows[-2][0] = rows[-1][0] = name_mb
        prof = next((r["profile"] for r in webllama_runs(a.dir, m, "decode") if "profile" in r), None)
        if prof:
            profiles.append((name, prof))
        else:
            missing.append(f"{m}: webllama profile")
    print_table(head, rows)
    # Each variant's ratio to the default, per shape, for the verdict below the lines.
    verdicts = {}
    for m in a.models.split():
        runs = webllama_runs(a.dir, m, "decode")
        greedy = [r["decode_tok_s"] for r in runs]
        sampled = [r["sampled_decode_tok_s"] for r in runs if "sampled_decode_tok_s" in r]
        penalized = [r["penalized_decode_tok_s"] for r in runs if "penalized_decode_tok_s" in r]
        if sampled:
            s, g = statistics.median(sampled), statistics.median(greedy)
            print(f"{NAMES.get(m, m)}: decode sampled at temperature 1 on the GPU {fmt(s)} tok/s "
                  f"({100 * s / g:.0f}% of greedy)")
        for name, test, what in VARIANTS:
            path = os.path.join(a.dir, f"{m}.{name}.json")
            default = [r[f"{test}_tok_s"] for r in webllama_runs(a.dir, m, test)]
            if os.path.exists(path) and default:
                run = load_json(path)
                if not isinstance(run, dict) or f"{test}_tok_s" not in run:
                    missing.append(f"{m}: {name}")
                    continue
                v, d = run[f"{test}_tok_s"], statistics.median(default)
                verdicts.setdefault(what, []).append(v / d)
                print(f"{NAMES.get(m, m)}: {test} with {what} {fmt(v)} tok/s ({100 * v / d:.0f}% of the default's "
                      f"{fmt(d)}; layout {run.get('layout', '?')})")
        if penalized:
            s, g = statistics.median(penalized), statistics.median(greedy)
            print(f"{NAMES.get(m, m)}: the same with repetition penalty 1.1 (edit_logits) {fmt(s)} tok/s "
                  f"({100 * s / g:.0f}% of greedy)")
    if verdicts:
        print(f"\nverdict per variant (its speed / the default's on each shape; a default to change where "
              f"every shape gains {100 * (GAIN - 1):.0f}% or more, one run against a median):")
        for what, ratios in verdicts.items():
            verdict = "CHANGE THE DEFAULT" if all(r >= GAIN for r in ratios) else "keep the default"
            print(f"  {what}: {', '.join(f'{100 * r:.0f}%' for r in ratios)} -> {verdict}")
    for name, prof in profiles:
        print_profile(name, prof, tb_s)
    print("\nwhere each ran:")
    for m in a.models.split():
        adapters = sorted({r.get("adapter", "?") for what in ("prefill", "decode") for r in webllama_runs(a.dir, m, what)})
        print(f"  {NAMES.get(m, m)}: webllama on {', '.join(adapters) or '-'}")
        for b in BUILDS:
            runs = load_json(os.path.join(a.dir, f"{m}.{b}.json"))
            seen = sorted({f"{r.get('gpu_info')} ({r.get('backends')}, {r.get('n_gpu_layers')} layers)"
                           for r in runs}) if isinstance(runs, list) else []
            print(f"  {NAMES.get(m, m)}: {b} on {', '.join(seen) or '-'}")
    # The ratios again, last (a reply that keeps the output's end keeps them).
    print()
    print_table(head, rows)
    if missing:
        print("MISSING: " + "; ".join(missing))


# The runs of bench/device.sh with one Layout option changed: (file suffix, test, what changed).
VARIANTS = [
    ("prefill-f32-tiles", "prefill", "f32 tiles (WEBLLAMA_F16=0)"),
    ("prefill-16-column-steps", "prefill", "f16 tiles stepping as f32 ones, 16 columns in the large tile (WEBLLAMA_F16_K32=0)"),
    ("prefill-f16-products", "prefill", "products in f16 within each K step (WEBLLAMA_F16_PRODUCTS=1)"),
    ("prefill-largest-tiles", "prefill", "the largest tile that fits the batch (WEBLLAMA_MATMUL_MIN_WORKGROUPS=0)"),
    ("prefill-component-staging", "prefill", "tiles staged a component a thread (WEBLLAMA_COMPONENT_STAGING=1; "
     "races on Metal and D3D12: a faster one is a case for it on Vulkan only)"),
    ("decode-8-value-walk", "decode", "the 8-value row walk (WEBLLAMA_PAIRS=0)"),
    ("decode-combine-dispatch", "decode", "attention's combine as its own dispatch (WEBLLAMA_COMBINE_IN_WO=0)"),
]


def print_table(head, rows):
    widths = [max(len(str(r[i])) for r in [head] + rows) for i in range(len(head))]
    line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"
    print(line(head))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print(line(r))


def print_profile(name, prof, tb_s):
    print(f"\nprofile of webllama, {name} ({prof['method']}: {prof['how']})")
    print(prof["bytes"])
    for what, key in [("decode step", "decode_step"), ("prompt chunk", "prompt_chunk")]:
        p = prof[key]
        print(f"{what} at position {p['pos']}, {p['rows']} row(s), {p['dispatches']} dispatches: "
              f"GPU {p['gpu_ms']:.3f} ms as it runs; timestamped kinds sum {p['sum_ms']:.3f} ms "
              f"(gaps {p['gap_ms']:.3f}); wall {p['wall_ms']:.3f} ms; host {p.get('host_ms', float('nan')):.3f} ms "
              f"to record it; {p['bytes'] / 1e6:.1f} MB at {fmt(p['gb_s'], ',.1f')} GB/s"
              + (f" ({100 * p['gb_s'] / (tb_s * 1000):.1f}% of the bound)" if tb_s and p['gb_s'] is not None else ""))
        head = ["kind", "dispatches", "ms", "share", "gap ms", "kernel ms", "weight MB", "KV MB", "GB/s",
                "% of bound"]
        rows = []
        for k in sorted(p["kinds"], key=lambda k: -k["ms"]):
            moved = k["weight_bytes"] + k["kv_bytes"]
            rows.append([
                k["name"], k["dispatches"], f"{k['ms']:.3f}", f"{100 * k['ms'] / p['sum_ms']:.1f}%",
                f"{k['gap_ms']:.3f}", f"{k['kernel_ms']:.3f}", f"{k['weight_bytes'] / 1e6:.2f}",
                f"{k['kv_bytes'] / 1e6:.2f}", fmt(k["gb_s"] if moved else None, ",.1f"),
                fmt(100 * k["gb_s"] / (tb_s * 1000) if moved and tb_s and k["gb_s"] is not None else None, ".1f"),
            ])
        print_table(head, rows)


if __name__ == "__main__":
    main()
