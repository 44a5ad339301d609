"""A map of the robust-training front, drawn fast on a GPU: which recipe levers move clean
and AutoAttack accuracy at the compute a 2-core CPU can spend (issue 15).

Not part of the course and not run by CI: it needs PyTorch, a GPU and ``torchattacks``
(none of them in the course's requirements). It trains a PyTorch replica of the course's
CNN (:func:`helpers.model.build_cnn`, no dropout, Keras' initialisation) with a replica of
:func:`helpers.training.train_model` (Adam 2e-3 on a one-cycle schedule, batch 128, 54,000
training images), one process per candidate of :data:`CONFIGS`, and measures each: clean
and FGSM (ε 0.25) accuracy on all 10,000 test images, PGD-20 and the standard AutoAttack's
components from ``torchattacks`` (an implementation independent of the course's:
APGD-CE and APGD-T with 100 steps, APGD-T and FAB-T towards 9 targets, Square with 5,000
queries, each on what the earlier left standing) on the first 1,000 test images. Each
result is a line of ``OUTDIR/sweep.jsonl``; ``cost_units`` counts forward+backward passes
per image per epoch times epochs (a standard epoch is 1), which is what a CPU pays for.
The course's own tooling (``tooling/front.py``) then trains the chosen recipe on the CPU.

usage: python -m tooling.gpu_front OUTDIR [--tiny] [--workers N] [--deadline S]
       [--only NAME,...] [--n-aa N]
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


# name: (defense, eps_train, steps, epochs, beta, ema, warmup, width, restore_best)
CONFIGS = {
    "A_pgd3_e25_ep8_best": ("pgd", 0.25, 3, 8, 0, 0, 0, 1, True),
    "B_pgd3_e30_ep24": ("pgd", 0.30, 3, 24, 0, 0, 0, 1, False),
    "C_pgd5_e30_ep16": ("pgd", 0.30, 5, 16, 0, 0, 0, 1, False),
    "D_pgd7_e30_ep12": ("pgd", 0.30, 7, 12, 0, 0, 0, 1, False),
    "E_pgd10_e30_ep9": ("pgd", 0.30, 10, 9, 0, 0, 0, 1, False),
    "F_pgd5_e30_ep16_ema_wu": ("pgd", 0.30, 5, 16, 0, 0.999, 0.3, 1, False),
    "G_trades6_k5_e30_ep14_wu": ("trades", 0.30, 5, 14, 6.0, 0, 0.3, 1, False),
    "H_trades6_k5_e30_ep14_ema_wu": ("trades", 0.30, 5, 14, 6.0, 0.999, 0.3, 1, False),
    "I_trades3_k5_e30_ep14_ema_wu": ("trades", 0.30, 5, 14, 3.0, 0.999, 0.3, 1, False),
    "J_pgd5_e30_w2_ep5_ema_wu": ("pgd", 0.30, 5, 5, 0, 0.999, 0.3, 2, False),
    "K_pgd5_e30_ep32_ema_wu": ("pgd", 0.30, 5, 32, 0, 0.999, 0.3, 1, False),
    "M_pgd5_e35_ep16_ema_wu": ("pgd", 0.35, 5, 16, 0, 0.999, 0.3, 1, False),
    "N_pgd5_e25_ep16_ema_wu": ("pgd", 0.25, 5, 16, 0, 0.999, 0.3, 1, False),
}


#: The budgets AutoAttack runs at, in order (a run stops starting them at its deadline).
EVAL_EPS = (0.25, 0.3)


def load_mnist():
    d = np.load(os.path.join(ROOT, "data", "mnist.npz"))
    f = lambda a: (a.astype(np.float32) / 255.0)[:, None]  # noqa: E731
    return (
        f(d["x_train"]),
        d["y_train"].astype(np.int64),
        f(d["x_test"]),
        d["y_test"].astype(np.int64),
    )


class CNN(nn.Module):
    """The course's CNN (no dropout): conv32-pool-conv64-pool-dense128-dense10, x width."""

    def __init__(self, width: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32 * width, 3)
        self.conv2 = nn.Conv2d(32 * width, 64 * width, 3)
        self.dense = nn.Linear(64 * width * 25, 128 * width)
        self.logits = nn.Linear(128 * width, 10)
        for m in self.modules():  # Keras' glorot_uniform, zero bias
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.logits(F.relu(self.dense(x.flatten(1))))


def one_cycle(progress: float, base: float) -> float:
    return base * (progress / 0.4 if progress < 0.4 else (1.0 - progress) / 0.6)


def pgd_examples(net, x, y, eps, steps, step, gen):
    x_adv = (x + (torch.rand(x.shape, generator=gen, device=x.device) * 2 - 1) * eps).clamp(0, 1)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = F.cross_entropy(net(x_adv), y)
        (g,) = torch.autograd.grad(loss, x_adv)
        x_adv = torch.min(torch.max(x_adv.detach() + step * g.sign(), x - eps), x + eps).clamp(0, 1)
    return x_adv.detach()


def kl(p_logits, q_logits):
    return (F.softmax(p_logits, 1) * (F.log_softmax(p_logits, 1) - F.log_softmax(q_logits, 1))).sum(
        1
    )


def trades_examples(net, x, eps, steps, step, gen):
    with torch.no_grad():
        clean = net(x)
    x_adv = (x + (torch.rand(x.shape, generator=gen, device=x.device) * 2 - 1) * eps).clamp(0, 1)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = kl(clean, net(x_adv)).sum()
        (g,) = torch.autograd.grad(loss, x_adv)
        x_adv = torch.min(torch.max(x_adv.detach() + step * g.sign(), x - eps), x + eps).clamp(0, 1)
    return x_adv.detach()


@torch.no_grad()
def accuracy(net, x, y, bs=2000):
    return float(
        sum(
            (net(x[i : i + bs]).argmax(1) == y[i : i + bs]).sum().item()
            for i in range(0, len(x), bs)
        )
        / len(x)
    )


def pgd_accuracy(net, x, y, eps, steps, seed=0, bs=2000):
    gen = torch.Generator(device=x.device).manual_seed(seed)
    correct = 0
    for i in range(0, len(x), bs):
        xa = pgd_examples(net, x[i : i + bs], y[i : i + bs], eps, steps, 2.5 * eps / steps, gen)
        with torch.no_grad():
            correct += (net(xa).argmax(1) == y[i : i + bs]).sum().item()
    return correct / len(x)


def fgsm_accuracy(net, x, y, eps, bs=2000):
    correct = 0
    for i in range(0, len(x), bs):
        xb, yb = x[i : i + bs].clone().requires_grad_(True), y[i : i + bs]
        (g,) = torch.autograd.grad(F.cross_entropy(net(xb), yb), xb)
        with torch.no_grad():
            correct += (net((xb + eps * g.sign()).clamp(0, 1)).argmax(1) == yb).sum().item()
    return correct / len(x)


def train(name, cfg, data, device, tiny, train_deadline, seed=0):
    defense, eps, k, epochs, beta, ema_decay, warmup, width, restore_best = cfg
    x_tr, y_tr, x_val, y_val = data
    if tiny:
        epochs = 1
    torch.manual_seed(seed)
    net = CNN(width).to(device).to(memory_format=torch.channels_last)
    ema = CNN(width).to(device)
    ema.load_state_dict(net.state_dict())
    opt = torch.optim.Adam(net.parameters(), lr=2e-3, eps=1e-7)
    gen = torch.Generator(device=device).manual_seed(seed)
    n, bs = len(x_tr), 128
    steps_per_epoch = -(-n // bs)
    total = epochs * steps_per_epoch
    history, best, best_state = [], -1.0, None
    t0 = time.perf_counter()
    t = 0
    for epoch in range(epochs):
        perm = torch.randperm(n, device=device, generator=gen)
        for s in range(steps_per_epoch):
            idx = perm[s * bs : (s + 1) * bs]
            x, y = x_tr[idx], y_tr[idx]
            progress = t / total
            for gparam in opt.param_groups:
                gparam["lr"] = one_cycle(progress, 2e-3)
            e = eps * (min(1.0, progress / warmup) if warmup else 1.0)
            step = 2.5 * e / k
            if defense == "pgd":
                x_adv = pgd_examples(net, x, y, e, k, step, gen) if e > 0 else x
                loss = F.cross_entropy(net(x_adv), y)
            else:
                x_adv = trades_examples(net, x, e, k, step, gen) if e > 0 else x
                logits, adv_logits = net(torch.cat([x, x_adv])).chunk(2)
                loss = (
                    F.cross_entropy(logits, y, reduction="none") + beta * kl(logits, adv_logits)
                ).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            t += 1
            if ema_decay:
                d = min(ema_decay, (1 + t) / (10 + t))
                with torch.no_grad():
                    for pe, pn in zip(ema.parameters(), net.parameters(), strict=True):
                        pe.mul_(d).add_(pn.detach(), alpha=1 - d)
            if tiny and s >= 20:
                break
        judge = ema if ema_decay else net
        val_pgd = pgd_accuracy(judge, x_val[:500], y_val[:500], eps, 10, seed)
        val_clean = accuracy(judge, x_val, y_val)
        history.append(
            {
                "epoch": epoch + 1,
                "val_clean": val_clean,
                "val_pgd10": val_pgd,
                "seconds": time.perf_counter() - t0,
            }
        )
        print(
            f"[{name}] epoch {epoch + 1}/{epochs} val clean {val_clean:.4f} pgd10 {val_pgd:.4f} "
            f"{time.perf_counter() - t0:.0f}s",
            flush=True,
        )
        if time.time() > train_deadline and epoch + 1 < epochs:
            history.append({"truncated_after_epoch": epoch + 1})
            break
        if restore_best and val_pgd > best:
            best, best_state = val_pgd, {kk: v.clone() for kk, v in net.state_dict().items()}
    final = ema if ema_decay else net
    if restore_best and best_state is not None:
        net.load_state_dict(best_state)
        final = net
    passes = (k + 1) if defense == "pgd" else (k + 2)
    return (
        final.eval(),
        history,
        time.perf_counter() - t0,
        passes * epochs * (width**2 if width > 1 else 1),
    )


def autoattack_accuracy(net, x, y, eps, tiny):
    import torchattacks as ta

    steps = 5 if tiny else 100
    queries = 50 if tiny else 5000
    attacks = [
        ta.APGD(net, norm="Linf", eps=eps, steps=steps, n_restarts=1, loss="ce", seed=0),
        ta.APGDT(net, norm="Linf", eps=eps, steps=steps, n_restarts=1, n_classes=10, seed=0),
        ta.FAB(
            net,
            norm="Linf",
            eps=eps,
            steps=steps,
            n_restarts=1,
            multi_targeted=True,
            n_classes=10,
            seed=0,
        ),
        ta.Square(net, norm="Linf", eps=eps, n_queries=queries, n_restarts=1, seed=0),
    ]
    robust = torch.ones(len(x), dtype=torch.bool, device=x.device)
    with torch.no_grad():
        robust &= net(x).argmax(1) == y
    broken_by = {}
    for atk in attacks:
        idx = robust.nonzero().flatten()
        if len(idx) == 0:
            break
        x_adv = atk(x[idx], y[idx]).detach()
        # check the perturbation really is within the ball and the image valid
        assert (
            float((x_adv - x[idx]).abs().max()) <= eps + 1e-5
            and float(x_adv.min()) >= 0
            and float(x_adv.max()) <= 1
        )
        with torch.no_grad():
            ok = net(x_adv).argmax(1) == y[idx]
        broken_by[atk.attack] = int((~ok).sum())
        robust[idx[~ok]] = False
    return float(robust.float().mean()), broken_by


def run_one(name, out, tiny, deadline, n_aa):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    x_train, y_train, x_test, y_test = load_mnist()
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(x_train))
    tr, va = perm[:54000], perm[54000:]
    T = lambda a: torch.from_numpy(a).to(device)  # noqa: E731
    if tiny:
        tr, va = tr[:3000], va[:600]
    data = (T(x_train[tr]), T(y_train[tr]), T(x_train[va]), T(y_train[va]))
    xt, yt = T(x_test), T(y_test)
    net, history, seconds, cost = train(name, CONFIGS[name], data, device, tiny, deadline - 100)
    row = {
        "name": name,
        "config": CONFIGS[name],
        "train_seconds": seconds,
        "cost_units": cost,
        "history": history,
        "device": device,
    }
    row["clean"] = accuracy(net, xt, yt)
    row["fgsm_0.25"] = fgsm_accuracy(net, xt, yt, 0.25)
    n = 200 if tiny else n_aa
    xs, ys = xt[:n], yt[:n]
    row["pgd20_0.25"] = pgd_accuracy(net, xs, ys, 0.25, 20)
    row["pgd20_0.3"] = pgd_accuracy(net, xs, ys, 0.3, 20)
    for eps in EVAL_EPS:
        if time.time() > deadline:
            row[f"aa_{eps}"] = None
            continue
        t0 = time.perf_counter()
        acc, by = autoattack_accuracy(net, xs, ys, eps, tiny)
        row[f"aa_{eps}"], row[f"aa_by_{eps}"], row[f"aa_seconds_{eps}"] = (
            acc,
            by,
            time.perf_counter() - t0,
        )
    row["n_aa"] = n
    with open(os.path.join(out, "sweep.jsonl"), "a") as f:
        f.write(json.dumps(row) + "\n")
    print(
        f"[{name}] DONE clean {row['clean']:.4f} fgsm {row['fgsm_0.25']:.4f} "
        f"aa.25 {row['aa_0.25']} aa.3 {row['aa_0.3']} train {seconds:.0f}s",
        flush=True,
    )


def main():
    out = sys.argv[1]
    tiny = "--tiny" in sys.argv
    workers = (
        int(sys.argv[sys.argv.index("--workers") + 1]) if "--workers" in sys.argv else len(CONFIGS)
    )
    deadline = time.time() + (
        float(sys.argv[sys.argv.index("--deadline") + 1]) if "--deadline" in sys.argv else 1e9
    )
    names = list(CONFIGS)
    if "--only" in sys.argv:
        names = sys.argv[sys.argv.index("--only") + 1].split(",")
    n_aa = int(sys.argv[sys.argv.index("--n-aa") + 1]) if "--n-aa" in sys.argv else 1000
    os.makedirs(out, exist_ok=True)
    if "--worker" in sys.argv:
        name = sys.argv[sys.argv.index("--worker") + 1]
        torch.set_num_threads(1)
        try:
            run_one(name, out, tiny, deadline, n_aa)
        except Exception:
            traceback.print_exc()
        return
    import subprocess

    procs, pending = [], list(names)
    while pending or procs:
        while pending and len(procs) < workers:
            name = pending.pop(0)
            cmd = [
                sys.executable,
                __file__,
                out,
                "--worker",
                name,
                "--deadline",
                str(deadline - time.time()),
                "--n-aa",
                str(n_aa),
            ]
            if tiny:
                cmd.append("--tiny")
            procs.append(subprocess.Popen(cmd))
        time.sleep(1)
        procs = [p for p in procs if p.poll() is None]


if __name__ == "__main__":
    main()
