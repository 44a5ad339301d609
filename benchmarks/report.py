"""Machine facts, the full-size series time of the last ``make reproduce``, and the table."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from helpers.paths import PROJECT_ROOT, RESULTS_DIR

#: The issue's targets: key -> (bound, "max" or "min", what it bounds).
TARGETS: dict[str, tuple[float, str]] = {
    "fgsm_over_fwd_bwd": (1.3, "max"),
    "fgsm_at_epoch_over_standard": (2.5, "max"),
    "art_fgsm_over_ours": (1.0, "min"),
    "art_pgd_over_ours": (1.0, "min"),
    "cleverhans_fgsm_over_ours": (1.0, "min"),
    "cleverhans_pgd_over_ours": (1.0, "min"),
}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    """Cores this process may run on (its affinity), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def git_commit() -> str:
    """Short commit of the checkout, ``-dirty`` if tracked files differ from it."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        dirty = git("status", "--porcelain", "--untracked-files=no")
        return git("rev-parse", "--short", "HEAD") + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_facts() -> dict[str, Any]:
    """Date, commit, machine and library versions of this run."""
    import keras
    import numpy as np
    import tensorflow as tf

    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git_commit(),
        "machine": {
            "cores": usable_cores(),
            "cpu": cpu_model(),
            "gpu": bool(tf.config.list_physical_devices("GPU")),
        },
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
    }


def series_full_from_results(metrics_path: Path = RESULTS_DIR / "metrics.json") -> dict[str, Any]:
    """The full-size series time recorded by the last ``make reproduce``.

    A full-size series takes 20-30 minutes, more than the benchmark's whole budget, so it
    is read, not re-run. Returns ``{"series_full_s": ..., "source": {...}}``, or
    ``{"note": ...}`` when the file or the number is missing.
    """
    try:
        metrics = json.loads(metrics_path.read_text())
        run = metrics["run"]
        total = float(run["notebook_seconds"]["total"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        return {"note": f"no full-size series time in {metrics_path}: {type(err).__name__}: {err}"}
    try:
        file = str(metrics_path.relative_to(PROJECT_ROOT))
    except ValueError:
        file = str(metrics_path)
    return {
        "series_full_s": total,
        "source": {
            "file": file,
            "key": "run.notebook_seconds.total",
            "date": run.get("date"),
            "commit": run.get("commit"),
            "machine": run.get("machine"),
            "full_size": run.get("full_size"),
            "notebooks": {k: float(v) for k, v in run["notebook_seconds"].items() if k != "total"},
        },
    }


def target_met(key: str, value: float) -> bool | None:
    if key not in TARGETS:
        return None
    bound, kind = TARGETS[key]
    return value <= bound if kind == "max" else value >= bound


def _mark(key: str, value: float) -> str:
    if key not in TARGETS:
        return "–"
    bound, kind = TARGETS[key]
    sign = "≤" if kind == "max" else "≥"
    return f"{sign} {bound:g}× {'✓' if target_met(key, value) else '✗'}"


def _minutes(s: float) -> str:
    return f"{s / 60:.1f} min ({s:,.0f} s)"


def render_table(results: dict[str, Any]) -> str:
    """The Markdown table of a ``results.json``, with a note on how it was measured."""
    r = results
    sizes = r.get("sizes", {})
    rows: list[tuple[str, str, str]] = []
    if "standard_images_per_s" in r:
        rows.append(
            (
                "standard training (batch 128)",
                f"{r['standard_images_per_s']:,.0f} images/s; "
                f"{r['standard_epoch_s']:.1f} s per epoch of {r['full_train_images']:,}",
                "–",
            )
        )
    if "fgsm_over_fwd_bwd" in r:
        rows.append(
            (
                f"FGSM on {r['fgsm']['images']:,} test images",
                f"{r['fgsm_images_per_s']:,.0f} images/s; "
                f"**{r['fgsm_over_fwd_bwd']:.2f}×** one forward+backward pass",
                _mark("fgsm_over_fwd_bwd", r["fgsm_over_fwd_bwd"]),
            )
        )
    labels = {"fgsm": "FGSM", "fgsm_rs": "FGSM-RS", "pgd": "PGD-{steps}"}
    for defense, entry in r.get("adversarial_training", {}).items():
        key = f"{defense}_at_epoch_over_standard"
        name = labels.get(defense, defense).format(steps=entry.get("pgd_steps", 7))
        details = ", ".join(
            f"{k} {entry[k]:g}" for k in ("eps", "adv_fraction") if isinstance(entry.get(k), float)
        )
        rows.append(
            (
                f"{name} adversarial training epoch" + (f" ({details})" if details else ""),
                f"**{entry['over_standard']:.2f}×** a standard epoch "
                f"({entry['epoch_s']:.1f} s per epoch of {r['full_train_images']:,})",
                _mark(key, entry["over_standard"]),
            )
        )
    if "xla_over_default" in r:
        rows.append(
            (
                "XLA (`jit_compile=True`) on the same forward+backward pass",
                f"**{r['xla_over_default']:.2f}×** the default executor's time",
                "–",
            )
        )
    if "pgd_step_over_fgsm" in r:
        p = r["pgd"]
        rows.append(
            (
                f"PGD-{p['steps']} evaluation on {p['images']:,} images",
                f"**{r['pgd_step_over_fgsm']:.2f}×** FGSM per step ({p['pgd_s']:.1f} s for every "
                f"step on every image; {p['pgd_as_evaluated_s']:.1f} s at ε=0.25, where fooled "
                "images stop early)",
                "–",
            )
        )
    if "slider_ms" in r:
        text = f"**{r['slider_ms']:.0f} ms** per move, one model"
        if "slider_ms_two_models" in r:
            text += f"; {r['slider_ms_two_models']:.0f} ms, two side by side"
        rows.append(("explorer ε slider", text, "–"))
    if "series_full_s" in r:
        src = r.get("series_full_source", {})
        rows.append(
            (
                "notebook series, full size",
                f"{_minutes(r['series_full_s'])}, from the last `make reproduce` "
                f"({src.get('date', '?')}, commit `{src.get('commit', '?')}`)",
                "–",
            )
        )
    if "series_ci_s" in r:
        rows.append(("notebook series, CI size", _minutes(r["series_ci_s"]), "–"))
    elif "series_ci_partial_s" in r:
        names = ", ".join(nb[:2] for nb in r.get("series_ci_notebooks", {}))
        rows.append((f"notebooks {names} only, CI size", _minutes(r["series_ci_partial_s"]), "–"))
    if "series_ci_error" in r:
        rows.append(("notebook series, CI size", f"failed ({r['series_ci_error'][:200]})", "–"))
    for peer, label in (("art", "ART"), ("cleverhans", "CleverHans")):
        entry = r.get("peers", {}).get(peer)
        if entry is None:
            continue
        if not entry.get("available"):
            rows.append((f"{label}: FGSM, PGD", f"unavailable ({entry.get('reason', '?')})", "–"))
            continue
        for attack, attack_label in (("fgsm", "FGSM"), ("pgd", f"PGD-{r.get('peer_pgd_steps')}")):
            rec = entry.get(attack, {})
            if "over_ours" not in rec:
                text = f"failed ({rec.get('error', '?')})"
                rows.append((f"{label} {entry.get('version', '')} {attack_label}", text, "–"))
                continue
            ours = r["peers"]["ours"][attack]["accuracy"]
            agree = "agree" if rec["agrees"] else "**disagree**"
            rows.append(
                (
                    f"{label} {entry['version']} {attack_label}, same model and "
                    f"{r['peer_images']:,} images",
                    f"**{rec['over_ours']:.2f}×** our time; adversarial accuracy "
                    f"{100 * rec['accuracy']:.1f}% vs ours {100 * ours:.1f}% ({agree})",
                    _mark(f"{peer}_{attack}_over_ours", rec["over_ours"]),
                )
            )
    table = "| measure | result | target |\n|---|---|---|\n"
    table += "\n".join(f"| {a} | {b} | {c} |" for a, b, c in rows)
    m = r.get("machine", {})
    note = (
        f"\n\nMeasured {r.get('date', '?')} on {m.get('cpu', '?')}, {m.get('cores', '?')} "
        f"cores{', GPU' if m.get('gpu') else ', no GPU'} (commit `{r.get('commit', '?')}`, "
        f"TensorFlow {r.get('tensorflow', '?')}) by `make bench`. Ratios are medians of "
        "back-to-back repetitions in one process."
    )
    if "standard_images_per_s" in r and "train_images" in sizes:
        note += (
            f" Training epochs are timed on {sizes['train_images']:,} images "
            f"(timed epochs per defense: {sizes.get('timed_epochs', '?')}, after a warm-up "
            f"epoch) and scaled to {r.get('full_train_images', 54000):,}."
        )
    if r.get("peers"):
        note += (
            f" Peers: ε={r.get('eps')}, loss on the logits, true labels, PGD without random "
            f"start; accuracies agree when within {100 * r['peer_tolerance']:.1f} points."
        )
    if r.get("quick"):
        note += " **Quick smoke run: tiny sizes, not representative.**"
    if r.get("skipped"):
        labels = {
            "training": "training",
            "fgsm": "FGSM",
            "pgd": "PGD",
            "explorer": "the explorer",
            "peers": "the ART/CleverHans comparison",
            "series": "the notebook series at CI size",
        }
        note += f" Skipped: {', '.join(labels.get(s, s) for s in r['skipped'])}."
    return table + note
