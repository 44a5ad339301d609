"""The robust-training front: train candidate recipes and measure each one the same way.

``python -m tooling.front NAME [NAME ...]`` trains each named candidate of :data:`CANDIDATES`
(a course recipe with some settings changed, by :func:`helpers.registry.train_recipe`)
on the full training set (seed 0), saves it under ``build/front/NAME.keras`` and appends
one row to ``results/front.json``: clean and FGSM accuracy (ε 0.25) on all 10,000 test
images, AutoAttack-style accuracy at ε 0.25 and 0.3 on the first ``--n-eval`` test images,
and the training time in minutes on this machine (with its CPU's name). The rows are the
measured front behind the course's choice of its robust recipe (issue #15): clean accuracy
against robust accuracy against training time, one row per run.

The screening AutoAttack is lighter than notebook 06's (``--targets`` and ``--queries``);
the recipe the course keeps is measured again there at full strength.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

from helpers import registry
from helpers.attacks import EPS, fgsm
from helpers.autoattack import autoattack
from helpers.data import prepare_mnist
from helpers.evaluation import accuracy
from helpers.paths import write_atomically
from helpers.training import Defense, Monitor


def _old(kind: str, **defense: Any) -> dict[str, Any]:
    """Changes for a candidate on the robust recipe as it was before the ε ramp and the
    weight average: no ramp, no average, the best epoch by validation PGD kept."""
    return {
        "defense": Defense(kind, **defense),
        "weight_average": 0.0,
        "monitor": Monitor(eps=EPS, pgd_steps=10, restore_best="val_pgd_accuracy"),
    }


#: Each candidate: a recipe of :data:`helpers.registry.MODELS` (its build, schedule and
#: monitor), its epochs, and the training settings it changes.
CANDIDATES: dict[str, tuple[str, int | None, dict[str, Any]]] = {
    # the course's robust recipes as they are (epochs None: the recipe's)
    "pgd_at": ("pgd_at", None, {}),
    "trades_at": ("trades_at", None, {}),
    # earlier candidates, on the recipe they were run with (no ramp, no weight average,
    # the best epoch by validation PGD kept)
    "trades_b6_e30_k3": ("pgd_at", 8, _old("trades", eps=0.3, steps=3, beta=6.0)),
    "trades_b3_e30_k3": ("pgd_at", 8, _old("trades", eps=0.3, steps=3, beta=3.0)),
    "trades_b1_e30_k3": ("pgd_at", 8, _old("trades", eps=0.3, steps=3, beta=1.0)),
    "trades_b6_e30_k5_12ep": ("pgd_at", 12, _old("trades", eps=0.3, steps=5, beta=6.0)),
    "trades_b1_e25_k3": ("trades_at", 8, _old("trades", eps=0.25, steps=3, beta=1.0)),
    "trades_b3_e25_k3": ("trades_at", 8, _old("trades", eps=0.25, steps=3, beta=3.0)),
    "pgd3_e30": ("pgd_at", 8, _old("pgd", eps=0.3, steps=3, adv_fraction=1.0)),
    "pgd3_e25": ("pgd_at", 8, _old("pgd", eps=EPS, steps=3, adv_fraction=1.0)),
    "standard_12ep": ("standard", 12, {}),
    "fgsm_at_10ep": ("fgsm_at", 10, {}),
}  # fmt: skip


def run(
    name: str, n_eval: int, targets: int, queries: int, out: Path, precision: str | None = None
) -> dict[str, Any]:
    """Train candidate ``name`` (in ``precision``; ``None``: as the CPU suggests), measure
    it, append its row to ``out`` and return it. A row is named ``name`` for float32
    training and ``name@mixed_bfloat16`` otherwise."""
    recipe, epochs, changes = CANDIDATES[name]
    model, history, settings = registry.train_recipe(
        recipe, epochs=epochs, precision=precision, **changes
    )
    if settings["precision"] != "float32":
        name = f"{name}@{settings['precision']}"
    with write_atomically(Path(f"build/front/{name}.keras")) as temporary:
        model.save(temporary)
    data = prepare_mnist(seed=0)
    x, y = data.x_test[:n_eval], data.y_test[:n_eval]
    run_facts = ("build", "train_seconds", "n_train", "seed", "precision")
    row: dict[str, Any] = {
        "name": name,
        "recipe": {
            "build": settings["build"],
            "train": {k: v for k, v in settings.items() if k not in run_facts},
        },
        "train_minutes": round(settings["train_seconds"] / 60, 2),
        "precision": settings["precision"],
        "cpu": platform.processor() or platform.machine(),
        "best_epoch": history.get("best_epoch", [None])[0],
        "clean": accuracy(model, data.x_test, data.y_test),
        "fgsm_0.25": accuracy(model, fgsm(model, data.x_test, data.y_test, EPS), data.y_test),
        "n_eval": n_eval,
        "aa_settings": {"targets": targets, "queries": queries},
    }
    for eps in (0.25, 0.3):
        t = time.perf_counter()
        result = autoattack(model, x, y, eps, targets=targets, queries=queries)
        row[f"aa_{eps}"] = result["robust"]
        row[f"aa_{eps}_fooled_by"] = result["fooled_by"]
        row[f"aa_{eps}_seconds"] = round(time.perf_counter() - t, 1)
    rows = json.loads(out.read_text()) if out.exists() else []
    rows = [r for r in rows if r["name"] != name] + [row]
    with write_atomically(out) as tmp:
        tmp.write_text(json.dumps(rows, indent=1) + "\n")
    print(json.dumps({k: v for k, v in row.items() if k != "recipe"}), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="+", choices=sorted(CANDIDATES))
    parser.add_argument("--n-eval", type=int, default=1000)
    parser.add_argument("--targets", type=int, default=3)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=Path("results/front.json"))
    parser.add_argument(
        "--precision", choices=["float32", "mixed_bfloat16"], default=None,
        help="training precision (default: mixed_bfloat16 where the CPU has bf16)",
    )  # fmt: skip
    args = parser.parse_args()
    for name in args.names:
        run(name, args.n_eval, args.targets, args.queries, args.out, args.precision)


if __name__ == "__main__":
    main()
