"""The course's saved models under an AutoAttack the course did not write (issue 15).

Every robustness figure of the course comes from its own attacks (:mod:`helpers.autoattack`).
A figure only our own attacks reproduce is not a result, so this module attacks the same
saved models with the standard AutoAttack of ``torchattacks`` (Kim 2020), in PyTorch: APGD-CE
and APGD-T with 100 steps, APGD-T and FAB-T towards 9 target classes, Square with 5,000
queries, each run on what the earlier left standing (Croce & Hein 2020's ``standard``
version; torchattacks' own ``AutoAttack`` class runs APGD with 10 steps only, so the four
attacks are assembled here with the standard settings).

Two steps, so that the second needs neither TensorFlow nor the course:

1. ``python -m benchmarks.independent_autoattack export MODEL.keras OUT.npz``: the model's
   weights in PyTorch's layout (convolution kernels ``(out, in, h, w)``; the first Dense
   kernel's rows reordered from Keras' channels-last flattening to PyTorch's
   channels-first), with a check that both frameworks give the same logits on test images;
2. ``python -m benchmarks.independent_autoattack attack OUT.npz RESULT.json [--n N]
   [--eps 0.25 0.3]``: AutoAttack on the first ``N`` MNIST test images (all 10,000 by
   default), on a GPU where there is one. Needs ``torch`` and ``torchattacks`` (not in the
   course's requirements) and ``data/mnist.npz``;
3. ``python -m benchmarks.independent_autoattack ours MODEL.keras RESULT.json``: the
   course's own AutoAttack on the same images and budgets, added to ``RESULT.json``;
4. ``python -m benchmarks.independent_autoattack certified MODEL.keras RESULT.json``: the
   course's proofs (:func:`helpers.certify.certify`) on the same images and budgets, added to
   ``RESULT.json`` with the number of proved digits the attack broke. A proof holds for every
   image in the box, so that number must be 0; the command fails if it is not.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def export(model_path: Path, out: Path) -> dict[str, Any]:
    """Write ``model_path``'s weights in PyTorch's layout to ``out`` (see the module doc)."""
    import keras

    from helpers.model import logits_model

    model = keras.saving.load_model(model_path)
    net = logits_model(model)
    conv1, conv2 = model.get_layer("conv1"), model.get_layer("conv2")
    dense, logits = model.get_layer("dense"), model.get_layer("logits")
    c2 = conv2.kernel.shape[-1]
    # Keras flattens (5, 5, c2) as h, w, c; PyTorch flattens (c2, 5, 5) as c, h, w.
    dense_kernel = np.asarray(dense.kernel).reshape(5, 5, c2, -1).transpose(2, 0, 1, 3)
    weights = {
        "conv1.weight": np.asarray(conv1.kernel).transpose(3, 2, 0, 1),
        "conv1.bias": np.asarray(conv1.bias),
        "conv2.weight": np.asarray(conv2.kernel).transpose(3, 2, 0, 1),
        "conv2.bias": np.asarray(conv2.bias),
        "dense.weight": dense_kernel.reshape(c2 * 25, -1).T,
        "dense.bias": np.asarray(dense.bias),
        "logits.weight": np.asarray(logits.kernel).T,
        "logits.bias": np.asarray(logits.bias),
    }
    x = _test_images(256)[0]
    expected = np.asarray(net(x[..., None], training=False))
    np.savez(out, expected_logits=expected, **weights)
    return {"model": str(model_path), "out": str(out)}


def _test_images(n: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` MNIST test images ``(n, 28, 28)`` in [0, 1] and their labels."""
    with np.load(ROOT / "data" / "mnist.npz") as d:
        x, y = d["x_test"][:n].astype(np.float32) / 255.0, d["y_test"][:n].astype(np.int64)
    return x, y


def torch_cnn(weights: dict[str, np.ndarray]):
    """The course's CNN (no dropout: inference) in PyTorch, holding ``weights``."""
    import torch
    import torch.nn.functional as F

    class CNN(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            w = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in weights.items()}
            self.conv1 = torch.nn.Conv2d(w["conv1.weight"].shape[1], w["conv1.weight"].shape[0], 3)
            self.conv2 = torch.nn.Conv2d(w["conv2.weight"].shape[1], w["conv2.weight"].shape[0], 3)
            self.dense = torch.nn.Linear(*w["dense.weight"].shape[::-1])
            self.logits = torch.nn.Linear(*w["logits.weight"].shape[::-1])
            self.load_state_dict(w)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = F.max_pool2d(F.relu(self.conv1(x)), 2)
            x = F.max_pool2d(F.relu(self.conv2(x)), 2)
            return self.logits(F.relu(self.dense(x.flatten(1))))

    return CNN().eval()


STANDARD = (
    "torchattacks' APGD-CE (100 steps), APGD-T (100 steps, 9 targets), FAB-T (9 targets), "
    "Square (5,000 queries), each on what the earlier left standing: AutoAttack's standard "
    "version"
)


def attack(
    weights_path: Path, result_path: Path, n: int | None, budgets: list[float], model: str = ""
) -> dict:
    """Standard AutoAttack (torchattacks) on the first ``n`` test images at each budget;
    ``model`` says which saved model the weights came from (recorded in the result)."""
    import torch
    import torchattacks as ta

    device = "cuda" if torch.cuda.is_available() else "cpu"
    # full float32 on a GPU too (TF32 would round the convolutions to 10-bit mantissas)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    with np.load(weights_path) as f:
        weights = {k: f[k] for k in f.files if k != "expected_logits"}
        expected = f["expected_logits"]
    net = torch_cnn(weights).to(device)
    x_np, y_np = _test_images(n)
    x = torch.from_numpy(x_np[:, None]).to(device)
    y = torch.from_numpy(y_np).to(device)
    x_check = torch.from_numpy(_test_images(len(expected))[0][:, None]).to(device)
    with torch.no_grad():
        check = net(x_check).cpu().numpy()
    # the same network in both frameworks: same logits up to float32 rounding
    assert np.allclose(check, expected, atol=1e-3), np.abs(check - expected).max()
    result: dict[str, Any] = {
        "model": model or str(weights_path),
        "attack": STANDARD,
        "images": f"the first {len(x):,} MNIST test images",
        "implementation": f"torchattacks {ta.__version__}, torch {torch.__version__}, {device}",
        "n_images": len(x),
        "logits_max_difference_to_keras": float(np.abs(check - expected).max()),
    }
    with torch.no_grad():
        robust = net(x).argmax(1) == y
    result["clean"] = float(robust.float().mean())
    for eps in budgets:
        started = time.perf_counter()
        still = robust.clone()
        broken_by = {}
        for atk in (
            ta.APGD(net, norm="Linf", eps=eps, steps=100, n_restarts=1, loss="ce", seed=0),
            ta.APGDT(net, norm="Linf", eps=eps, steps=100, n_restarts=1, n_classes=10, seed=0),
            ta.FAB(net, norm="Linf", eps=eps, steps=100, n_restarts=1, multi_targeted=True,
                   n_classes=10, seed=0),
            ta.Square(net, norm="Linf", eps=eps, n_queries=5000, n_restarts=1, seed=0),
        ):  # fmt: skip
            idx = still.nonzero().flatten()
            if not len(idx):
                break
            x_adv = atk(x[idx], y[idx]).detach()
            within = float((x_adv - x[idx]).abs().max()) <= eps + 1e-5
            assert within and float(x_adv.min()) >= 0 and float(x_adv.max()) <= 1
            with torch.no_grad():
                fooled = net(x_adv).argmax(1) != y[idx]
            broken_by[atk.attack] = int(fooled.sum())
            still[idx[fooled]] = False
            print(f"eps {eps}: {atk.attack} broke {int(fooled.sum())}", flush=True)
        result[str(eps)] = {
            "robust": float(still.float().mean()),
            "broken_by": broken_by,
            "seconds": round(time.perf_counter() - started, 1),
            # which digits are lost (misclassified, or fooled by an attack): for `certified`
            "not_robust": (~still).nonzero().flatten().cpu().tolist(),
        }
        print(eps, result[str(eps)], flush=True)
        _write_result(result, result_path)  # after every budget
    return result


def ours(model_path: Path, result_path: Path) -> dict:
    """The course's own AutoAttack (:func:`helpers.autoattack.autoattack_by_budget`, notebook
    06's settings) on the same first test images and budgets as the result in
    ``result_path``, written into it as ``"ours"``: the two compared digit set for digit set."""
    import keras

    from helpers.autoattack import autoattack_by_budget
    from helpers.training import set_seed

    result = json.loads(result_path.read_text())
    budgets = _budgets(result)
    # notebook 06's settings, as the last make reproduce recorded them
    used = json.loads((ROOT / "results" / "metrics.json").read_text())["evaluation"]["autoattack"]
    settings = {k: used[k] for k in ("apgd_steps", "targets", "queries")} | {"seed": 0}
    set_seed(0)
    x, y = _test_images(result["n_images"])
    runs = autoattack_by_budget(
        keras.saving.load_model(model_path), x[..., None], y, budgets, **settings
    )
    result["ours"] = {
        "attack": "helpers.autoattack.autoattack_by_budget, notebook 06's settings",
        "settings": settings,
        **{str(eps): {"robust": float(run["robust"])} for eps, run in runs.items()},
    }
    _write_result(result, result_path)
    return result["ours"]


def _budgets(result: dict[str, Any]) -> list[float]:
    """The budgets a result of :func:`attack` holds (its keys ``"0.25"``, ``"0.3"``, ...)."""
    return sorted(float(k) for k in result if k.replace(".", "", 1).isdigit())


def certified(model_path: Path, result_path: Path) -> dict:
    """The course's proofs (:func:`helpers.certify.certify`) on the same first test images
    and budgets as the result in ``result_path``, written into it as ``"certified"``: per
    budget the share proved and how many proved digits the attack broke. Raises
    ``AssertionError`` if that number is not 0: a proof covers every image of the box, so a
    proved digit the attack broke means a bug in the proof (or in the attack)."""
    import keras

    from helpers.certify import certify

    result = json.loads(result_path.read_text())
    x, y = _test_images(result["n_images"])
    model = keras.saving.load_model(model_path)
    record: dict[str, Any] = {"proof": "helpers.certify.certify (interval bound propagation)"}
    for eps in _budgets(result):
        if "not_robust" not in result[str(eps)]:
            raise ValueError(
                f"{result_path} has no per-digit outcome at ε = {eps}: it was written before "
                "`attack` recorded one; run `attack` again"
            )
        proved = certify(model, x[..., None], y, eps)
        broken = np.zeros(len(x), bool)
        broken[result[str(eps)]["not_robust"]] = True
        record[str(eps)] = {
            "certified": float(proved.mean()),
            "certified_but_broken": int((proved & broken).sum()),
        }
    result["certified"] = record
    _write_result(result, result_path)
    failures = {e: r for e, r in record.items() if e != "proof" and r["certified_but_broken"]}
    assert not failures, f"the attack broke digits the proof certified: {failures}"
    return record


def _write_result(result: dict[str, Any], path: Path) -> None:
    """``result`` as JSON at ``path``, never half-written (:func:`helpers.paths.write_atomically`:
    it imports no TensorFlow, so the attack step stays free of it)."""
    from helpers.paths import write_atomically

    with write_atomically(path) as temporary:
        temporary.write_text(json.dumps(result, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.independent_autoattack")
    sub = parser.add_subparsers(dest="command", required=True)
    e = sub.add_parser("export", help="a saved .keras model's weights in PyTorch's layout")
    e.add_argument("model", type=Path)
    e.add_argument("out", type=Path)
    a = sub.add_parser("attack", help="torchattacks' standard AutoAttack on the weights")
    a.add_argument("weights", type=Path)
    a.add_argument("result", type=Path)
    a.add_argument("--n", type=int, default=None, help="first N test images (default: all)")
    a.add_argument("--eps", type=float, nargs="+", default=[0.25, 0.3])
    a.add_argument("--model", default="", help="which saved model the weights are, for the record")
    o = sub.add_parser("ours", help="the course's AutoAttack on the same images, into RESULT")
    o.add_argument("model", type=Path)
    o.add_argument("result", type=Path)
    c = sub.add_parser("certified", help="the course's proofs on the same images, into RESULT")
    c.add_argument("model", type=Path)
    c.add_argument("result", type=Path)
    args = parser.parse_args(argv)
    if args.command == "export":
        print(export(args.model, args.out))
    elif args.command == "ours":
        print(ours(args.model, args.result))
    elif args.command == "certified":
        print(certified(args.model, args.result))
    else:
        attack(args.weights, args.result, args.n, args.eps, args.model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
