#!/usr/bin/env python3
"""One table from the runs of scripts/gpu_bench.sh: every `gpumf bench --json` file under
OUT/runs, and cuMF_SGD's log OUT/cumf.txt when there is one.

usage: bench_table.py OUT EPOCHS

Per row: host seconds per epoch and the kernels' own (GPU timestamps), updates/s on each
clock, GB/s at the least traffic per update, the final test metric (RMSE, or the loss's own:
log loss, KL divergence, nDCG@20, ...), whether it got better every epoch,
the ratio to cuMF_SGD at rank 128, and for streamed runs the GB/s streamed and the share of
windows written while the device was busy.
"""
import json
import os
import re
import sys


def load_rows(out):
    rows = []
    runs = os.path.join(out, "runs")
    for name in sorted(os.listdir(runs)) if os.path.isdir(runs) else []:
        path = os.path.join(runs, name)
        if not name.endswith(".json"):
            continue
        if os.path.getsize(path) == 0:
            err = path[: -len(".json")] + ".err"
            text = open(err).read().splitlines() if os.path.exists(err) else []
            errors = [l for l in text if l.startswith("error")]
            epochs = [l for l in text if l.startswith("bench:")]
            if errors:
                print(f"{name[:-5]}: no result: {errors[-1]}", file=sys.stderr)
            elif epochs:
                # Cut short (out of time): what it printed as each epoch ended.
                print(f"{name[:-5]}: cut short after {len(epochs)} epoch lines; the last: {epochs[-1]}", file=sys.stderr)
            else:
                print(f"{name[:-5]}: no result: see {err}", file=sys.stderr)
            continue
        try:
            for row in json.load(open(path)):
                row["run"] = name[: -len(".json")]
                rows.append(row)
        except json.JSONDecodeError as e:
            print(f"{path}: not JSON ({e}); see {path[:-5]}.err", file=sys.stderr)
    return rows


def cumf_result(out, epochs):
    path = os.path.join(out, "cumf.txt")
    if not os.path.exists(path):
        return None
    text = open(path).read()
    wall = re.search(r"GPUMF_TIMING.*?wall_s=([0-9.]+)", text)
    nnz = re.search(r"GPUMF_TIMING.*?nnz=([0-9]+)", text)
    rmse = re.search(r"RMSE = ([0-9.]+)", text)
    if not wall:
        return None
    seconds = float(wall.group(1))
    ratings = int(nnz.group(1)) if nnz else None
    return dict(seconds_per_epoch=seconds / epochs, ratings=ratings, rmse=float(rmse.group(1)) if rmse else None)


# Metrics that are better higher (the others, errors and losses, are better lower).
HIGHER_IS_BETTER = ("ndcg", "auc", "accuracy", "precision", "recall", "map", "hit")


def metric_of(row):
    """The run's test metric: (name, final value, whether it got better every epoch)."""
    name = row.get("metric") or "rmse"
    key = "test_" + name
    values = [h[key] for h in row["history"] if h.get(key) is not None]
    final = row.get("test_metric") if row.get("test_metric") is not None else row.get("test_rmse")
    higher = name.startswith(HIGHER_IS_BETTER)
    better = all((b > a) if higher else (b < a) for a, b in zip(values, values[1:]))
    return name, final, better


def main():
    if len(sys.argv) != 3 or not sys.argv[2].isdigit():
        sys.exit("usage: bench_table.py OUT EPOCHS")
    out, epochs = sys.argv[1], int(sys.argv[2])
    if not os.path.isdir(out):
        sys.exit(f"bench_table.py: {out} is not a directory (the OUT of scripts/gpu_bench.sh)")
    rows = load_rows(out)
    cumf = cumf_result(out, epochs)
    cumf_rate = None
    if cumf and cumf["ratings"]:
        cumf_rate = cumf["ratings"] / cumf["seconds_per_epoch"]
    header = f"{'run':22}{'backend':>8}{'rank':>5}{'epochs':>7}{'set-up s':>9}{'s/epoch':>9}{'kernel s':>9}{'G upd/s':>8}{'kernel G/s':>11}{'GB/s':>7}{'metric':>10}{'value':>8}{'better':>7}{'/cuMF':>7}{'stream GB/s':>12}{'overlap':>8}"
    print(header)
    for r in rows:
        kernel = r.get("kernel_seconds_per_epoch")
        kernel_rate = r["ratings"] / kernel if kernel else None
        precision = "f16" if "F16" in r["backend"] else "f32"
        name, final, better = metric_of(r)
        ratio = f"{r['updates_per_second'] / cumf_rate:.2f}" if cumf_rate and r["rank"] == 128 else "-"
        stream = f"{r['streamed_gigabytes_per_second']:.1f}" if r.get("streamed_bytes_per_epoch") else "-"
        overlap = f"{100 * r['upload_overlap']:.0f}%" if r.get("upload_overlap") is not None else "-"
        print(
            f"{r['run']:22}{('gpu-' + precision) if r['backend'].startswith('gpu') else r['backend'][:8]:>8}{r['rank']:>5}{r['epochs']:>7}"
            f"{r.get('setup_seconds', float('nan')):>9.2f}{r['seconds_per_epoch']:>9.4f}{(f'{kernel:.4f}' if kernel else '-'):>9}{r['updates_per_second'] / 1e9:>8.2f}"
            f"{(f'{kernel_rate / 1e9:.2f}' if kernel_rate else '-'):>11}{r['gigabytes_per_second']:>7.0f}"
            f"{name[:9]:>10}{(final if final is not None else float('nan')):>8.4f}{('yes' if better else 'NO'):>7}{ratio:>7}"
            f"{stream:>12}{overlap:>8}"
        )
    if cumf:
        rate = f"{cumf_rate / 1e9:8.2f}" if cumf_rate else f"{'-':>8}"
        print(f"{'cumf_sgd':22}{'f16':>8}{128:>5}{epochs:>7}{'-':>9}{cumf['seconds_per_epoch']:>9.4f}{'-':>9}{rate}{'-':>11}{'-':>7}{'rmse':>10}{(cumf['rmse'] or float('nan')):>8.4f}")
    for r in rows:
        share = f", {100 * r['bandwidth_share']:.1f}% of the bandwidth" if r.get("bandwidth_share") is not None else ""
        print(f"  {r['run']}: {r['backend']}{share}")
    for r in rows:
        name = r.get("metric") or "rmse"
        values = [h.get("test_" + name) for h in r["history"]]
        precision = "f16" if "F16" in r["backend"] else "f32"
        print(f"  {r['run']} ({precision}): test {name} by epoch: " + " ".join(f"{v:.4f}" if v is not None else "-" for v in values))


if __name__ == "__main__":
    main()
