"""Render docs/benchmarks.md from `anomascope eval` results and bench results (run on demand).

    python bench/benchmarks_table.py bench/eval/*.json \
        --bench bench/results.json bench/results-cpu-bf16.json bench/results-h100.json bench/results-training-cpu.json \
        bench/results-train-throughput-cpu.json > docs/benchmarks.md

`bench/eval/*.json` are the `metrics.json` files of the `anomascope eval` runs behind the document,
kept in the repository (runs/ is not) so that it can be rebuilt and compared later. Runs on the same
test sample (dataset, seed, max_images) share one table, whatever their file names.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from peaks import gpu_peak  # bench/peaks.py, beside this script

PIXEL = ["pixel_auroc", "pixel_ap", "max_dice", "dice", "iou", "froc_10fp"]
IMAGE = ["image_auroc", "image_ap"]
ALL_IMAGES = "all test images"


def bundle_folder(name: str) -> str:
    """Shipped bundles live in assets/models; the others (trained for evaluation only) in runs/."""
    shipped = Path("assets/models") / name
    return str(shipped) if shipped.is_dir() else str(Path("runs") / name)


def milliseconds(seconds: float | None) -> str:
    return "— (image level)" if seconds is None else f"{1000 * seconds:.1f}"


def threshold_change(result: dict) -> str:
    """Older runs timed the server-side overlay; the page now thresholds in the browser."""
    if "threshold_change_seconds" not in result:
        return "in the browser: `bench/threshold_browser.py`"
    return milliseconds(result["threshold_change_seconds"])


def training_line(t: dict) -> str:
    line = f"{t['steps_per_second']:.2f} steps/s at batch {t['batch_size']}"
    if "images_per_second" not in t:
        return line + "."
    line += f" = {t['images_per_second']:.0f} images/s at {t['resolution']} px"
    if t.get("fraction_of_peak") is not None:
        line += (
            f"; {t['model_flops_per_image'] / 1e9:.2f} GFLOP per training image, "
            f"{100 * t['fraction_of_peak']:.2f} % of {t['peak_name']} ({t['peak_flops'] / 1e12:.3g} TFLOP/s)"
        )
    return line + "."


def cell(result: dict, key: str) -> str:
    value, std = result.get(key), result.get(f"{key}_std")
    if value is None:
        return "—"
    return f"{value:.3f} ± {std:.3f}" if std is not None else f"{value:.3f}"


def table(report: dict, keys: list[str]) -> list[str]:
    header = ["method", *keys, "threshold (how)", "n images", "s/image (device, precision)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, result in report["results"].items():
        how = (result.get("threshold_method") or "—").split(" (")[0]
        threshold = "—" if result.get("threshold") is None else f"{result['threshold']:.4g} ({how})"
        lines.append(
            "| "
            + " | ".join(
                [
                    f"`{name}`",
                    *(cell(result, k) for k in keys),
                    threshold,
                    str(result["n_images"]),
                    f"{result['seconds_per_image']:.3f} ({result['device']}, {result.get('precision', 'fp32')})",
                ]
            )
            + " |"
        )
    return lines


def references(report: dict) -> list[str]:
    """The training-free references in a run: `eval --baseline` rows, named without a bundle."""
    return [name for name in report["results"] if ":" not in name and not reduced(report["results"][name])]


def verdicts(report: dict, key: str) -> list[str]:
    scored = [(report["results"][name].get(key), name) for name in references(report)]
    scored = [(value, name) for value, name in scored if value is not None]
    if not scored:
        return []
    reference, reference_name = max(scored)
    out = []
    for name, result in report["results"].items():
        if ":" not in name or result.get(key) is None or reduced(result):
            continue
        verb = "beats" if result[key] > reference else "does **not** beat"
        out.append(
            f"- `{name}` {verb} the best training-free reference (`{reference_name}`) on {key} "
            f"({result[key]:.3f} vs {reference:.3f})."
        )
    return out


def training_budget(manifest: dict) -> str:
    """What a bundle's training got, from its manifest: steps at the batch size, time and device, per network."""
    training = manifest.get("training") or {}
    batch = manifest["config"]["train"]["batch_size"]
    parts = []
    for part in training.get("components", [training]):
        name = f"{part['component']}: " if "component" in part and "components" in training else ""
        device = {"cuda": "GPU", "cpu": "CPU"}.get(part["device"], part["device"])
        parts.append(f"{name}{part['steps']:,} steps at batch {batch}, {part['seconds'] / 60:.0f} min on {device}")
    return "; ".join(parts) or "not recorded"


def selection_line(selection: dict) -> str:
    """How a shipped bundle was chosen among seeds (bench/ablate.py --ship): the seeds' val mean ± sd beside
    the picked seed's, so that a test figure can be read against the spread of its recipe."""
    seeds = ", ".join(str(seed) for seed in selection["seeds"])
    figures = "; ".join(
        f"{key} {value['seeds'][0]:.3f} ± {value['seeds'][1]:.3f} (shipped {value['picked']:.3f})"
        for key, value in selection["val"].items()
        if value["seeds"] is not None
    )
    return (
        f"is the best of seeds {seeds} by {selection['rule'].rpartition(' by ')[2]} (`{selection['plan']}`, "
        f"`{selection['setting']}` at {selection['steps']:,} steps), scored once on test. On the whole val split "
        f"({selection['n_val_images']} images, {selection['n_val_lesion_images']} with a lesion), the seeds' "
        f"mean ± sd: {figures}"
    )


def where_measured(machine: dict) -> str:
    return machine.get("gpu") or (
        f"{machine['cpu_count']}-core CPU ({machine['processor']}"
        + (f", {machine['cpu_capability']}" if "cpu_capability" in machine else "")
        + f"), {machine['torch_threads']} torch threads"
    )


def training_section(path: str, results: dict, others: list[tuple[str, dict]]) -> None:
    """A `bench/run.py --training-only` run: training throughput and the fraction of the device's peak;
    GPU runs in `others` that timed the same bundle (before FLOPs were counted) are set against the same peak
    with these FLOPs, which do not depend on the device."""
    machine = results["machine"]
    print(f"## Training throughput on {where_measured(machine)} (`{path}`, torch {machine['torch']})\n")
    print(
        "Images per second of each bundle's training step (its config, random data of its shape, 5 steps after a "
        "warm-up), the model FLOPs of one training image (forward and backward, as torch's FlopCounterMode counts "
        "matrix products and convolutions) and the fraction of the named peak they reach.\n"
    )
    for name, t in results["training"].items():
        print(f"- `{name}`: {training_line(t)}")
        for gpu_path, gpu in others:
            measured = gpu.get("training", {}).get(name)  # a lever sweep has rows, not per-bundle training
            if gpu["machine"]["device"] != "cuda" or not measured or measured.get("batch_size") != t["batch_size"]:
                continue
            peak_name, peak = gpu_peak(gpu["machine"]["gpu"])
            images = measured["steps_per_second"] * measured["batch_size"]
            if peak:
                print(
                    f"  - on the {gpu['machine']['gpu']} (`{gpu_path}`): {images:.0f} images/s at the same model and "
                    f"batch, {100 * t['model_flops_per_image'] * images / peak:.2f} % of {peak_name}."
                )
    print(f"\nRegenerate: `python bench/run.py --device {machine['device']} --training-only --out {path}`\n")


def levers_section(path: str, results: dict) -> None:
    """A `bench/train_throughput.py` run: the denoiser's training throughput as levers are added."""
    machine = results["machine"]
    print(f"## Training throughput lever by lever on {where_measured(machine)} (`{path}`, torch {machine['torch']})\n")
    print(
        f"`{results['bundle']}`'s model at its resolution; each row keeps the levers above it, except those "
        "refused. The H100 baseline is 541 images/s (#16 asks for 10× that).\n"
    )
    print("| levers | batch | images/s | % of peak | × first row | × H100 baseline |")
    print("|---|---|---|---|---|---|")
    for row in results["rows"]:
        if "refused" in row:
            print(f"| {row['levers']} | — | refused: {row['refused']} | | | |")
            continue
        fraction = "—" if row["fraction_of_peak"] is None else f"{100 * row['fraction_of_peak']:.2f}"
        print(
            f"| {row['levers']} | {row['batch_size']} | {row['images_per_second']:.1f} | {fraction} | "
            f"{row['speedup_over_first_row']:.2f} | {row['speedup_over_h100_baseline']:.3f} |"
        )
    peak = next((row["peak_name"] for row in results["rows"] if "peak_name" in row), "not measured")
    print(f"\nPeak: {peak}. Regenerate: `python bench/train_throughput.py --device {machine['device']} --out {path}`\n")


def reduced(result: dict) -> bool:
    """Whether the result's networks ran in reduced precision (results from before the option are fp32)."""
    return result.get("precision", "fp32") != "fp32"


def with_precision(results: dict) -> dict:
    """Read-outs run in reduced precision get it in their name, beside their float32 rows."""
    return {f"{name} ({r['precision']})" if reduced(r) else name: r for name, r in results.items()}


def merged_reports(runs: list[str]) -> list[tuple[str, dict]]:
    """One report per dataset: runs on the same test sample (dataset, seed, max_images) are joined, so
    bundles evaluated at different times share one table."""
    merged: dict[tuple, tuple[str, dict]] = {}
    reports = [(run, json.loads(Path(run).read_text())) for run in runs]
    # Float32 runs first: they name the table's run and come before their reduced-precision rows.
    reports.sort(key=lambda item: any(reduced(r) for r in item[1]["results"].values()))
    for _, report in reports:
        report["results"] = with_precision(report["results"])
        images = report.get("images", ALL_IMAGES)
        key = (report["data"].get("dataset"), report["seed"], report.get("max_images"), images)
        if key in merged:
            merged[key][1]["results"].update(report["results"])
        else:
            merged[key] = (f"runs/eval-{key[0]}" + ("" if images == ALL_IMAGES else "-anomalous"), report)
    return list(merged.values())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--bench", nargs="*", default=[])
    args = parser.parse_args()
    print("# Benchmarks\n")
    print(
        "Generated by `bench/benchmarks_table.py` from the `anomascope eval` runs below; numbers are whatever "
        "was measured. ± is the bootstrap standard deviation (1000 resamples of lesions, subjects or patients "
        "as the split groups them). Pixel metrics pool all test pixels; Dice/IoU use the bundle's calibrated "
        "max-F1 threshold from the validation split. `median-distance` is the training-free reference "
        "(colour distance from the image's median, Gaussian-smoothed) and `flair-zscore` the brain MRI one "
        "(per-slice z-score of FLAIR intensity over the brain), calibrated the same way. The eval "
        "tables' s/image were taken while other jobs shared the machine; the speed sections at the end come "
        "from `bench/run.py` on an otherwise idle machine.\n"
    )
    for run, report in merged_reports(args.runs):
        data = report["data"]
        pixel_level = any(r.get("pixel_auroc") is not None for r in report["results"].values())
        images = report.get("images", ALL_IMAGES)
        protocol = "" if images == ALL_IMAGES else f", {images}"
        print(f"## {data.get('dataset', Path(run).name)} — {'pixel' if pixel_level else 'image'} level{protocol}\n")
        n_images = next(iter(report["results"].values()))["n_images"]
        sampled = report.get("max_images") and n_images >= report["max_images"]
        sample = (
            f"a seeded random sample (seed {report['seed']}) of {n_images} test images"
            if sampled
            else f"the whole test split ({n_images} images)"
        )
        print(
            f"Test data: {sample} of `anomascope prepare {data.get('dataset')} --seed {data.get('seed')}` "
            f"(grouping: {data.get('grouping')}). Licence: {data.get('licence')}.\n"
        )
        if images != ALL_IMAGES:
            print(
                "Only the test images with an anomaly are pooled here (`eval --anomalous-only`; for lgg the tumour "
                "slices, the protocol of the reference figures in the LGG issue); the table that pools every test "
                "image is the papers' protocol.\n"
            )
        print("\n".join(table(report, (PIXEL + IMAGE) if pixel_level else IMAGE)) + "\n")
        if not any(":" in name for name in report["results"]):
            print("Only the training-free references have been evaluated here so far.\n")
        keys = ["pixel_auroc", "pixel_ap"] if pixel_level else ["image_auroc"]
        print("\n".join(line for key in keys for line in verdicts(report, key)) + "\n")
        bundles = list(dict.fromkeys(r.split(":")[0] for r in report["results"] if ":" in r))
        precisions = sorted({r["precision"] for r in report["results"].values() if reduced(r)})
        for bundle in bundles:
            manifest = Path(bundle_folder(bundle)) / "manifest.json"
            if not manifest.exists():  # a bundle trained for evaluation only, in a runs/ folder not kept here
                config = Path("configs") / f"{bundle}.toml"
                said = f"; `{config}` gives its training budget" if config.exists() else ""
                print(f"`{bundle}` is not shipped: it was trained for this evaluation only{said}.\n")
                continue
            recorded = json.loads(manifest.read_text())
            trained_on = recorded["data"].get("dataset")
            print(f"`{bundle}` training budget: {training_budget(recorded)}.\n")
            if "selection" in recorded:
                print(f"`{bundle}` {selection_line(recorded['selection'])}.\n")
            if trained_on != data.get("dataset"):
                print(
                    f"`{bundle}` is the shipped bundle as it is, trained on {trained_on}: a domain-shift test here.\n"
                )
        command = " ".join(["anomascope eval", *(f"--bundle {bundle_folder(b)}" for b in bundles)])
        baselines = "".join(f" --baseline {name}" for name in references(report))
        command += f"{baselines} --data prepared/{data.get('dataset')} --out {run} --seed {report['seed']}"
        if report.get("max_images"):
            command += f" --max-images {report['max_images']}"
        if images != ALL_IMAGES:
            command += " --anomalous-only"
        print(f"Regenerate: `{command}`, and copy `{run}/metrics.json` into `bench/eval/`\n")
        for precision in precisions:
            reduced_command = command.replace(baselines, "").replace(f"--out {run}", f"--out {run}-{precision}")
            print(f"The ({precision}) rows: `{reduced_command} --precision {precision}`\n")
    targets_told = False
    benches = [(path, json.loads(Path(path).read_text())) for path in args.bench]
    for path, results in benches:
        if "rows" in results:
            levers_section(path, results)
            continue
        if not results["methods"]:
            training_section(path, results, benches)
            continue
        machine = results["machine"]
        where = where_measured(machine)
        precision = next(iter(results["methods"].values())).get("precision", "fp32")
        print(f"## Speed on {where}, inference in {precision} (`{path}`, torch {machine['torch']})\n")
        if machine["device"] == "cpu" and not targets_told:
            targets_told = True
            print(
                "Targets on the 2-core CPU (issue #9): single-forward methods under 1 s per image at the bundle's "
                "resolution, cddpm with its fast sampler under 20 s, a threshold change under 100 ms. On the CPU the "
                "peak memory is the process's resident peak so far (methods run in the order listed).\n"
            )
        print(
            "| method | s/image at bundle resolution | s/whole demo case (shape) | images/s in batch "
            "| peak memory (MB) | threshold change (ms) |"
        )
        print("|---|---|---|---|---|---|")
        for name, r in results["methods"].items():
            print(
                f"| `{name}` | {r['seconds_per_image_at_bundle_resolution']:.3f} ({r['bundle_resolution']} px) | "
                f"{r['seconds_per_whole_demo_case']:.3f} ({'×'.join(map(str, r['demo_case_shape'][-2:][::-1]))}) | "
                f"{r['images_per_second_batch']:.1f} | {r['peak_memory_mb']:.0f} | "
                f"{threshold_change(r)} |"
            )
        print(
            "\nTraining runs in float32 on the CPU and in the config's `mixed_precision` on CUDA, whatever "
            "`--precision` says; each figure times 5 steps after a warm-up, so repeated runs differ by tens of percent."
        )
        for name, t in results["training"].items():
            print(f"\nTraining `{name}`: {training_line(t)}")
        print(
            f"\nRegenerate: `python bench/run.py --device {machine['device']} --precision {precision} --out {path}`\n"
        )
    if args.bench:
        print("A method missing from a machine's table was not measured on that machine.\n")


if __name__ == "__main__":
    main()
