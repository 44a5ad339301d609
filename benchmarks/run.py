"""``make bench`` / ``python -m benchmarks.run``: measure, write ``results.json``, print the table.

Usage::

    python -m benchmarks.run                    # default size (about 10 minutes on 2 cores)
    python -m benchmarks.run --skip-series      # without the CI-size notebook series
    python -m benchmarks.run --skip-peers       # without ART and CleverHans
    python -m benchmarks.run --only training train_step   # training, PyTorch, the floor
    python -m benchmarks.run --quick --skip-series --skip-peers   # smoke run, seconds
    python -m benchmarks.run --table            # print the table of benchmarks/results.json
    python -m benchmarks.run --table --readme   # ... and write it into README.md

A quick run writes ``build/bench/results-quick.json`` unless ``--out`` says otherwise, so it
never replaces the committed ``benchmarks/results.json`` of a real run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from helpers.paths import PROJECT_ROOT, write_atomically

if TYPE_CHECKING:  # only for annotations: --help starts without TensorFlow
    import keras
    import numpy as np

RESULTS = PROJECT_ROOT / "benchmarks" / "results.json"
QUICK_RESULTS = PROJECT_ROOT / "build" / "bench" / "results-quick.json"
SERIES_SCRATCH = PROJECT_ROOT / "build" / "bench" / "series"
EPS = 0.25  # the course's budget


@dataclass(frozen=True)
class Sizes:
    """How much work each measurement does (the default keeps `make bench` near 10 min)."""

    train_images: int  # images per timed training epoch (scaled to the full 54,000)
    timed_epochs: int  # timed epochs per training call, after one warm-up epoch
    batch_size: int  # training batch, as in notebooks 02 and 04
    train_pgd_steps: int | None  # PGD steps of the "pgd" defense (None: the course's recipe)
    fgsm_images: int  # test images for FGSM throughput (10,000 = the whole test set)
    attack_reps: int  # repetitions of each timed attack
    pgd_images: int  # images for PGD evaluation cost
    pgd_steps: int  # PGD-k for evaluation cost, as notebook 05 (40 steps of 0.01)
    pgd_reps: int
    explorer_images: int  # images in the explorer, as notebooks 03/05
    explorer_moves: int  # timed slider moves
    peer_images: int  # test images for the ART / CleverHans comparison
    peer_pgd_steps: int
    peer_reps: int
    aa_images: int  # test images for the APGD / Square comparison with ART
    aa_apgd_steps: int
    aa_queries: int  # Square's queries
    step_rounds: int  # interleaved rounds of the training step vs PyTorch, matmul and bf16
    matmul_n: int  # size of the float32 matmul that measures the machine's peak
    matmul_repeats: int  # matmuls per round


DEFAULT = Sizes(
    train_images=10_240,
    timed_epochs=2,
    batch_size=128,
    train_pgd_steps=None,
    fgsm_images=10_000,
    attack_reps=5,
    pgd_images=1_000,
    pgd_steps=40,
    pgd_reps=3,
    explorer_images=1_000,
    explorer_moves=30,
    peer_images=2_000,
    peer_pgd_steps=10,
    peer_reps=3,
    aa_images=500,
    aa_apgd_steps=100,
    aa_queries=1000,
    step_rounds=5,
    matmul_n=2048,
    matmul_repeats=4,
)
QUICK = Sizes(
    train_images=512,
    timed_epochs=1,
    batch_size=128,
    train_pgd_steps=2,
    fgsm_images=256,
    attack_reps=2,
    pgd_images=128,
    pgd_steps=3,
    pgd_reps=2,
    explorer_images=60,
    explorer_moves=3,
    peer_images=128,
    peer_pgd_steps=3,
    peer_reps=2,
    aa_images=32,
    aa_apgd_steps=5,
    aa_queries=20,
    step_rounds=2,
    matmul_n=2048,
    matmul_repeats=1,
)
DEFENSES = ("none", "fgsm", "fgsm_rs", "pgd")
#: The measurements, in the order they run; --only / --skip-* pick among them.
SECTIONS = ("training", "train_step", "fgsm", "pgd", "explorer", "peers", "series")
PGD_STEP_SIZE = 0.01  # notebook 05's PGD step


def _section(title: str) -> float:
    print(f"== {title}", flush=True)
    return time.perf_counter()


def _done(start: float, text: str = "") -> None:
    print(f"   {text}{' ' if text else ''}({time.perf_counter() - start:.0f} s)", flush=True)


def _autoattack_against_art(
    sizes: Sizes, x_test: np.ndarray, y_test: np.ndarray, fallback: keras.Model
) -> dict[str, Any]:
    """Our APGD-CE and Square against ART's, on the PGD-trained CNN of the last full-size
    `make reproduce` where there is one (on a standard CNN both attacks reach ~0%, and
    agreeing there proves little), else on the benchmark's own model."""
    from benchmarks.peers import compare_autoattack
    from helpers.artifacts import load_model, model_path
    from helpers.data import stratified_subset

    robust = model_path("pgd_at").exists() and not os.environ.get("MNIST_AD_ARTIFACTS")
    model = load_model("pgd_at") if robust else fallback
    xa, ya = stratified_subset(x_test, y_test, sizes.aa_images, seed=0)
    start = _section(f"APGD and Square, ours vs ART, on {len(xa):,} test images")
    result = compare_autoattack(
        model, xa, ya, eps=EPS, apgd_steps=sizes.aa_apgd_steps, queries=sizes.aa_queries
    )
    result["model"] = "artifacts/models/pgd_at.keras" if robust else "the benchmark's model"
    for name in ("apgd", "square"):
        if name in result:
            r = result[name]
            print(
                f"   {name}: ours {r['ours_accuracy']:.4f} in {r['ours_seconds']:.1f} s, ART "
                f"{r['art_accuracy']:.4f} in {r['art_seconds']:.1f} s"
                f"{'' if r['agrees'] else '  OURS WEAKER'}",
                flush=True,
            )
    _done(start)
    return result


def _train_step(
    results: dict[str, Any], sizes: Sizes, x: np.ndarray, y: np.ndarray, *, torch_peer: bool
) -> None:
    """Section ``train_step``: the course's standard training step against the same CNN in
    PyTorch, the machine's float32 matmul rate and the ``mixed_bfloat16`` policy, in
    interleaved rounds on the training section's images; adds its keys to ``results``."""
    from benchmarks import measure as m

    settings, _ = m.defense_settings(("none",))
    standard = settings["none"]
    start = _section(
        f"standard training step on {len(x):,} images vs PyTorch, matmul peak and bf16 "
        f"({sizes.step_rounds} rounds)"
    )
    step = m.training_step_floor(
        x,
        y,
        build=standard["build"],
        lr_schedule=standard["train"].get("lr_schedule", "constant"),
        batch_size=sizes.batch_size,
        rounds=sizes.step_rounds,
        matmul_n=sizes.matmul_n,
        matmul_repeats=sizes.matmul_repeats,
        torch_peer=torch_peer,
    )
    results["train_step"] = step
    results["train_flops_per_image"] = step["flops"]["train_per_image"]
    results["matmul_gflop_s"] = step["matmul"]["gflop_s"]
    results["train_fraction_of_peak"] = step["train_fraction_of_peak"]
    results["cpu_bf16"] = step["cpu_bf16"]
    load = {k: float("nan") if v is None else v for k, v in step["load_average"].items()}
    print(
        f"   ours {step['ours_images_per_s']:,.0f} images/s = {step['train_gflop_s']:.1f} "
        f"GFLOP/s, {step['train_fraction_of_peak']:.1%} of the matmul's "
        f"{step['matmul']['gflop_s']:.1f} GFLOP/s (load average {load['before']:.1f} before, "
        f"{load['after']:.1f} after)",
        flush=True,
    )
    peer = step["torch"]
    if "over_ours" in peer:
        results["torch_train_over_ours"] = peer["over_ours"]
        results["torch_images_per_s"] = peer["images_per_s"]
        results["torch_variant"] = peer["variant"]
        for variant, entry in peer["variants"].items():
            text = (
                f"{entry['images_per_s']:,.0f} images/s, {entry['over_ours']:.2f}× our time"
                if "over_ours" in entry
                else entry.get("error", "?")
            )
            print(f"   PyTorch {peer['version']} {variant}: {text}", flush=True)
    else:
        print(f"   PyTorch: unavailable ({peer.get('reason')})", flush=True)
    bf16 = step["bf16"]
    if bf16["measured"]:
        results["bf16_train_over_fp32"] = bf16["over_fp32"]
        print(f"   mixed_bfloat16: {bf16['over_fp32']:.2f}× float32's time", flush=True)
    else:
        results["bf16_note"] = bf16["note"]
        print(f"   mixed_bfloat16: {bf16['note']}", flush=True)
    _done(start)


def measure(
    sizes: Sizes,
    *,
    quick: bool,
    sections: tuple[str, ...] = SECTIONS,
    peers: tuple[str, ...] = ("art", "cleverhans"),
    series_notebooks: tuple[str, ...] | None = None,
    model_path: Path | None = None,
    torch_peer: bool = True,
) -> dict[str, Any]:
    """Run the measurements of ``sections`` and return the results (see benchmarks/README.md).

    ``torch_peer``: in section ``train_step``, also time the PyTorch peer of the CNN."""
    import keras

    from benchmarks import measure as m
    from benchmarks import report
    from helpers.data import prepare_mnist, stratified_subset
    from helpers.model import build_cnn, in_float32, predict_probabilities, training_precision
    from helpers.training import set_seed, train_model
    from tooling.series import NOTEBOOKS

    began = time.perf_counter()
    results: dict[str, Any] = {**report.run_facts(), "quick": quick, "sizes": asdict(sizes)}
    results["eps"] = EPS
    skipped = [name for name in SECTIONS if name not in sections]
    set_seed(0)  # as the notebooks do (with TensorFlow's deterministic ops)
    data = prepare_mnist(seed=0)
    full_train = len(data.x_train)
    results["full_train_images"] = full_train
    n = min(sizes.train_images, full_train)
    x_test, y_test = data.x_test, data.y_test

    # -- training ----------------------------------------------------------------------
    models: dict[str, keras.Model] = {}
    if "training" in sections:
        start = _section(f"training epochs on {n:,} images, scaled to {full_train:,}")
        settings, source = m.defense_settings(DEFENSES)
        if sizes.train_pgd_steps is not None:  # --quick: fewer PGD steps than the recipe
            steps = sizes.train_pgd_steps
            pgd_train = settings["pgd"]["train"]
            pgd_train["defense"] = pgd_train["defense"]._replace(steps=steps)
        precision = training_precision()  # what the notebooks train in on this CPU
        epochs, models = m.training_epochs(
            data.x_train[:n],
            data.y_train[:n],
            settings=settings,
            timed_epochs=sizes.timed_epochs,
            batch_size=sizes.batch_size,
            precision=precision,
        )
        results["training_precision"] = precision
        if precision != "float32":  # the attacks measured below run in float32
            models = {d: in_float32(v, **settings[d].get("build", {})) for d, v in models.items()}
        results["training_settings"] = {"source": source, **m.settings_record(settings)}
        standard = statistics.median(epochs["none"])
        results["standard_images_per_s"] = n / standard
        results["standard_epoch_s"] = standard * full_train / n
        results["adversarial_training"] = {}
        for defense in DEFENSES[1:]:
            over = statistics.median(epochs[defense]) / standard
            entry = {"over_standard": over, "epoch_s": over * results["standard_epoch_s"]}
            entry.update(m.step_settings(settings[defense]["train"]))
            results["adversarial_training"][defense] = entry
            results[f"{defense}_at_epoch_over_standard"] = over
        results["training_epoch_seconds"] = epochs
        _done(
            start,
            f"standard {results['standard_images_per_s']:,.0f} images/s; FGSM training "
            f"{results['fgsm_at_epoch_over_standard']:.2f}× standard",
        )

    # -- the standard training step against PyTorch, the compute floor and bf16 ---------
    if "train_step" in sections:
        _train_step(results, sizes, data.x_train[:n], data.y_train[:n], torch_peer=torch_peer)

    # -- the model the attacks run on --------------------------------------------------
    if {"fgsm", "pgd", "explorer", "peers"} & set(sections):
        if model_path is not None:
            model = keras.models.load_model(model_path)
            try:
                source = str(Path(model_path).resolve().relative_to(PROJECT_ROOT))
            except ValueError:
                source = str(model_path)
            results["attack_model"] = {"source": source}
        elif "none" in models:
            model = models["none"]
            results["attack_model"] = {
                "source": "trained by the benchmark: the standard CNN of the training "
                f"measurement ({2 * (1 + sizes.timed_epochs)} epochs on {n:,} images)"
            }
        else:
            start = _section(f"training the model to attack (1 epoch on {n:,} images)")
            model = build_cnn()
            train_model(model, data.x_train[:n], data.y_train[:n], epochs=1, progress=False)
            results["attack_model"] = {
                "source": f"trained by the benchmark: standard CNN, 1 epoch on {n:,} images"
            }
            _done(start)
        predicted = predict_probabilities(model, x_test).argmax(axis=1)
        results["attack_model"]["clean_accuracy"] = float((predicted == y_test).mean())

    # -- FGSM --------------------------------------------------------------------------
    if "fgsm" in sections:
        xf, yf = stratified_subset(x_test, y_test, sizes.fgsm_images, seed=0)
        start = _section(f"FGSM on {len(xf):,} test images vs one forward+backward pass")
        fg = m.fgsm_cost(model, xf, yf, eps=EPS, reps=sizes.attack_reps)
        results["fgsm"] = fg
        results["fgsm_over_fwd_bwd"] = fg["fgsm_over_fwd_bwd"]
        results["fgsm_images_per_s"] = fg["fgsm_images_per_s"]
        results["xla_over_default"] = fg["xla_over_default"]
        _done(start, f"{fg['fgsm_images_per_s']:,.0f} images/s, {fg['fgsm_over_fwd_bwd']:.2f}×")

    # -- PGD ---------------------------------------------------------------------------
    if "pgd" in sections:
        xp, yp = stratified_subset(x_test, y_test, sizes.pgd_images, seed=0)
        start = _section(f"PGD-{sizes.pgd_steps} on {len(xp):,} test images vs FGSM")
        pg = m.pgd_cost(
            model,
            xp,
            yp,
            eps=EPS,
            steps=sizes.pgd_steps,
            step_size=PGD_STEP_SIZE,
            reps=sizes.pgd_reps,
        )
        results["pgd"] = pg
        results["pgd_step_over_fgsm"] = pg["pgd_step_over_fgsm"]
        _done(start, f"{pg['pgd_step_over_fgsm']:.2f}× FGSM per step")

    # -- the explorer ------------------------------------------------------------------
    if "explorer" in sections:
        xe, ye = x_test[: sizes.explorer_images], y_test[: sizes.explorer_images]
        start = _section(f"explorer slider on {len(xe):,} images")
        one = m.slider_latency(
            {"standard": model}, xe, ye, moves=sizes.explorer_moves, side_by_side=False
        )
        # As notebook 05: the standard and the FGSM-trained model side by side.
        second = models.get("fgsm", model)
        two = m.slider_latency(
            {"standard": model, "FGSM-trained": second},
            xe,
            ye,
            moves=sizes.explorer_moves,
            side_by_side=True,
        )
        results["explorer"] = {"one_model": one, "two_models": two}
        results["slider_ms"] = one["slider_ms"]
        results["slider_ms_two_models"] = two["slider_ms"]
        _done(start, f"{one['slider_ms']:.0f} ms one model, {two['slider_ms']:.0f} ms two")

    # -- peers -------------------------------------------------------------------------
    if "peers" in sections and peers:
        from benchmarks.peers import AGREEMENT_TOLERANCE, compare

        xq, yq = stratified_subset(x_test, y_test, sizes.peer_images, seed=0)
        start = _section(f"ours vs {', '.join(peers)} on {len(xq):,} test images")
        comparison = compare(
            model,
            xq,
            yq,
            eps=EPS,
            steps=sizes.peer_pgd_steps,
            step_size=PGD_STEP_SIZE,
            reps=sizes.peer_reps,
            peers=peers,
        )
        results["peers"] = comparison
        results["peer_images"] = len(xq)
        results["peer_pgd_steps"] = sizes.peer_pgd_steps
        results["peer_tolerance"] = AGREEMENT_TOLERANCE
        for peer in peers:
            entry = comparison[peer]
            if not entry["available"]:
                print(f"   {peer}: unavailable ({entry['reason']})", flush=True)
                continue
            for attack in ("fgsm", "pgd"):
                rec = entry.get(attack, {})
                if "over_ours" in rec:
                    results[f"{peer}_{attack}_over_ours"] = rec["over_ours"]
                    ours = comparison["ours"][attack]["accuracy"]
                    print(
                        f"   {peer} {attack}: {rec['over_ours']:.2f}× our time, accuracy "
                        f"{rec['accuracy']:.4f} vs ours {ours:.4f}"
                        f"{'' if rec['agrees'] else '  DISAGREE'}",
                        flush=True,
                    )
                else:
                    print(f"   {peer} {attack}: {rec.get('error')}", flush=True)
        _done(start)
        if "art" in peers:
            results["autoattack_peers"] = _autoattack_against_art(sizes, x_test, y_test, model)

    # -- the notebook series -----------------------------------------------------------
    results = report.with_records(results)
    if "series" in sections:
        notebooks = NOTEBOOKS
        if series_notebooks:
            notebooks = tuple(nb for nb in NOTEBOOKS if nb.startswith(series_notebooks))
        start = _section(
            f"{len(notebooks)} notebook{'s' * (len(notebooks) != 1)} at CI size "
            f"(scratch: {SERIES_SCRATCH})"
        )
        try:
            seconds = m.series_at_ci_size(SERIES_SCRATCH, notebooks)
        except Exception as err:  # a failing notebook: keep the other numbers, exit non-zero
            results["series_ci_error"] = f"{type(err).__name__}: {str(err)[:2000]}"
            print(f"   FAILED: {results['series_ci_error']}", flush=True)
        else:
            total = sum(seconds.values())
            results["series_ci_notebooks"] = seconds
            if notebooks == NOTEBOOKS:
                results["series_ci_s"] = total
            else:
                results["series_ci_partial_s"] = total
                skipped.append(
                    f"series notebooks other than {', '.join(nb[:2] for nb in notebooks)}"
                )
        _done(start)

    results["skipped"] = skipped
    results["benchmark_s"] = time.perf_counter() - began
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="Measure where the course's time goes (see benchmarks/README.md).",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument(
        "--only", nargs="+", choices=SECTIONS, metavar="SECTION", help=f"only {SECTIONS}"
    )
    parser.add_argument(
        "--skip-series", action="store_true", help="do not run the notebooks at CI size"
    )
    parser.add_argument("--skip-peers", action="store_true", help="do not compare ART/CleverHans")
    parser.add_argument(
        "--skip-torch",
        action="store_true",
        help="in section train_step, do not time the PyTorch peer of the CNN",
    )
    parser.add_argument(
        "--peers",
        nargs="+",
        choices=["art", "cleverhans"],
        default=["art", "cleverhans"],
        help="which peers to compare (default: both)",
    )
    parser.add_argument(
        "--series-notebooks",
        nargs="+",
        metavar="PREFIX",
        help="only these notebooks of the series (e.g. 01); the total is then partial",
    )
    parser.add_argument(
        "--model", type=Path, help="a saved .keras model to attack (default: train one)"
    )
    parser.add_argument("--out", type=Path, help="where to write the JSON")
    parser.add_argument(
        "--table", action="store_true", help="only print the table of an existing JSON"
    )
    parser.add_argument(
        "--readme", action="store_true", help="with --table: also write it into README.md"
    )
    args = parser.parse_args(argv)

    from benchmarks.report import (
        README_END,
        README_START,
        render_table,
        with_records,
    )
    from tooling.reproduce import update_readme

    out = args.out or (QUICK_RESULTS if args.quick else RESULTS)
    if args.table:
        if not out.exists():
            print(f"no results at {out}: run `make bench` first", file=sys.stderr)
            return 1
        stored = json.loads(out.read_text())
        # the rows read from other runs' records (not re-run here) are read again
        results = with_records(stored)
        if results != stored and out == RESULTS:
            _write_json(out, results)
            print(f"{out.name}: the rows read from other runs' records brought up to date")
        table = render_table(results)
        print(table)
        if args.readme:
            update_readme(table, start=README_START, end=README_END)
        return 0

    sections = tuple(s for s in SECTIONS if s in (args.only or SECTIONS))
    sections = tuple(
        s
        for s in sections
        if not (s == "series" and args.skip_series) and not (s == "peers" and args.skip_peers)
    )
    sizes = QUICK if args.quick else DEFAULT
    results = measure(
        sizes,
        quick=args.quick,
        sections=sections,
        peers=tuple(dict.fromkeys(args.peers)),
        series_notebooks=tuple(args.series_notebooks) if args.series_notebooks else None,
        model_path=args.model,
        torch_peer=not args.skip_torch,
    )
    _write_json(out, results)
    print("\n" + render_table(results) + "\n")
    print(f"wrote {out} in {results['benchmark_s'] / 60:.1f} min")
    if out == RESULTS:
        update_readme(render_table(results), start=README_START, end=README_END)
        print("README speed table updated from benchmarks/results.json")
    return 1 if "series_ci_error" in results else 0


def _write_json(path: Path, results: dict[str, Any]) -> None:
    """Write ``results`` to ``path`` in one step: a killed run leaves the old file whole."""
    with write_atomically(path) as temporary:
        temporary.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    sys.exit(main())
