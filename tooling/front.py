"""The robust-training front: train candidate recipes and measure each one the same way.

``python -m tooling.front NAME [NAME ...]`` trains each named candidate of :data:`CANDIDATES`
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

from helpers.artifacts import write_atomically
from helpers.attacks import EPS, fgsm
from helpers.autoattack import autoattack
from helpers.data import prepare_mnist
from helpers.evaluation import accuracy
from helpers.model import build_cnn
from helpers.training import Defense, Monitor, set_seed, train_model

ROBUST = {"dropout": False, "learning_rate": 2e-3}
KEEP_BEST = Monitor(eps=EPS, pgd_steps=10, restore_best="val_pgd_accuracy")


def candidate(width: int, epochs: int, defense: Defense, **train: Any) -> dict[str, Any]:
    """One recipe: ``build_cnn`` and ``train_model`` arguments."""
    build = {"width": width, **ROBUST, **train.pop("build", {})}
    return {
        "build": build,
        "train": {"epochs": epochs, "lr_schedule": "one_cycle", "defense": defense,
                  "monitor": KEEP_BEST, **train},
    }  # fmt: skip


CANDIDATES: dict[str, dict[str, Any]] = {
    "trades_b6_e30_k3": candidate(1, 8, Defense("trades", eps=0.3, steps=3, beta=6.0)),
    "trades_b3_e30_k3": candidate(1, 8, Defense("trades", eps=0.3, steps=3, beta=3.0)),
    "trades_b1_e30_k3": candidate(1, 8, Defense("trades", eps=0.3, steps=3, beta=1.0)),
    "trades_b6_e30_k5_12ep": candidate(1, 12, Defense("trades", eps=0.3, steps=5, beta=6.0)),
    "trades_b6_e30_k3_w2": candidate(2, 8, Defense("trades", eps=0.3, steps=3, beta=6.0)),
    "pgd3_e30": candidate(1, 8, Defense("pgd", eps=0.3, steps=3, adv_fraction=1.0)),
    "standard_12ep": {
        "build": {"width": 1, "dropout": True, "learning_rate": 1e-3},
        "train": {"epochs": 12, "lr_schedule": "cosine", "monitor": Monitor(eps=EPS)},
    },
    "fgsm_at_10ep": {
        "build": {"width": 1, "dropout": True, "learning_rate": 1e-3},
        "train": {
            "epochs": 10,
            "lr_schedule": "cosine",
            "defense": Defense("fgsm", eps=EPS, adv_fraction=0.5),
            "monitor": Monitor(eps=EPS, pgd_steps=10),
        },
    },
}


def run(name: str, n_eval: int, targets: int, queries: int, out: Path) -> dict[str, Any]:
    """Train candidate ``name``, measure it, append its row to ``out`` and return it."""
    recipe = CANDIDATES[name]
    set_seed(0)
    data = prepare_mnist(seed=0)
    model = build_cnn(name=name, **recipe["build"])
    start = time.perf_counter()
    history = train_model(
        model, data.x_train, data.y_train, validation_data=(data.x_val, data.y_val), seed=0,
        **recipe["train"],
    )  # fmt: skip
    minutes = (time.perf_counter() - start) / 60
    Path("build/front").mkdir(parents=True, exist_ok=True)
    model.save(f"build/front/{name}.keras")
    x, y = data.x_test[:n_eval], data.y_test[:n_eval]
    row: dict[str, Any] = {
        "name": name,
        "recipe": {k: {kk: vv._asdict() if hasattr(vv, "_asdict") else vv
                       for kk, vv in v.items()} for k, v in recipe.items()},
        "train_minutes": round(minutes, 2),
        "cpu": platform.processor() or platform.machine(),
        "best_epoch": history.get("best_epoch", [None])[0],
        "clean": accuracy(model, data.x_test, data.y_test),
        "fgsm_0.25": accuracy(model, fgsm(model, data.x_test, data.y_test, EPS), data.y_test),
        "n_eval": n_eval,
        "aa_settings": {"targets": targets, "queries": queries},
    }  # fmt: skip
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
    args = parser.parse_args()
    for name in args.names:
        run(name, args.n_eval, args.targets, args.queries, args.out)


if __name__ == "__main__":
    main()
