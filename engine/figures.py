"""The PNG pictures of an evaluation (`--plots`): ROC/OSCR curves, score histograms, CAC's logits, training curves."""
import os
import sys

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from core.logfile import parse_log_line  # noqa: E402
from core.values import is_finite_number  # noqa: E402
from metrics import oscr_curve  # noqa: E402
from networks.weights import trained_on  # noqa: E402
from scorers import SCORER_LABELS  # noqa: E402

DPI = 110  # ~700 x 500 pixels per 6.4 x 4.8 inch panel pair: readable, small files


def _save(fig, path):
    try:
        fig.tight_layout()
        fig.savefig(path, dpi=DPI, format="png")  # `path` may be a temporary without the .png name
    finally:
        plt.close(fig)
    return path


def plot_path(stem, trial, kind):
    return f"{stem}_trial{trial}_{kind}.png"


def planned_plots(stem, trials, cac):
    """Every file draw_evaluation may write, to check before the evaluation starts."""
    kinds = ("roc", "hist", "logits", "training") if cac else ("roc", "hist", "training")
    return [plot_path(stem, t, kind) for t in trials for kind in kinds]


def roc_figure(result, path):
    fig, (roc_ax, oscr_ax) = plt.subplots(1, 2, figsize=(11, 4.8))
    labels = result.known_labels
    for i, (name, s) in enumerate(result.scores.items()):
        m, style = result.metrics[name], ("-", "--", ":")[i % 3]  # curves often overlap: tell them apart
        truth = np.r_[np.zeros(len(s.known_score)), np.ones(len(s.unknown_score))]
        fpr, tpr, _ = roc_curve(truth, np.r_[s.known_score, s.unknown_score])
        roc_ax.plot(fpr, tpr, ls=style, label=f"{SCORER_LABELS.get(name, name)}: AUROC {m['auroc']:.4f}")
        x, y = oscr_curve(s.known_score, s.known_pred == labels, s.unknown_score)
        oscr_ax.plot(x, y, ls=style, label=f"{SCORER_LABELS.get(name, name)}: OSCR {m['oscr']:.4f}")
    roc_ax.plot([0, 1], [0, 1], color="lightgrey", ls="--", lw=1)
    roc_ax.set(xlabel="known test images rejected (FPR)", ylabel="unknown test images rejected (TPR)",
               title=f"ROC, trial {result.trial} (unknown = positive)", xlim=(0, 1), ylim=(0, 1.01))
    oscr_ax.set(xlabel="unknown test images accepted (FPR)", ylabel="known images accepted and correct (CCR)",
                title=f"OSCR, trial {result.trial}", xlim=(0, 1), ylim=(0, 1.01))
    for ax in (roc_ax, oscr_ax):
        ax.legend(loc="lower right")
        ax.grid(alpha=0.3)
    return _save(fig, path)


def histogram_figure(result, path):
    names = list(result.scores)
    fig, axes = plt.subplots(1, len(names), figsize=(5.5 * len(names), 4.2), squeeze=False)
    for ax, name in zip(axes[0], names):
        s, m = result.scores[name], result.metrics[name]
        both = np.r_[s.known_score, s.unknown_score]
        # scores spanning decades (the CAC score: ~1e-4 for knowns, ~1 for unknowns) on a log axis
        log = both.min() > 0 and both.max() / both.min() > 100
        bins = (np.geomspace(both.min(), both.max(), 41) if log else
                np.linspace(both.min(), both.max(), 41) if np.ptp(both) > 0 else 10)
        counts = [ax.hist(v, bins=bins, alpha=0.6, label=f"{part} test images ({len(v)})")[0].max() / len(v)
                  for part, v in (("known", s.known_score), ("unknown", s.unknown_score))]
        if max(counts) > 0.4:  # one bar holds most images (max softmax saturates at 1): show the tails too
            ax.set_yscale("log")
        ax.axvline(m["threshold"], color="black", ls="--", lw=1, label="threshold (95% of known val)")
        ax.set(xlabel="unknown score (larger = more likely unknown)" + (", log scale" if log else ""), ylabel="images",
               xscale="log" if log else "linear", title=f"{SCORER_LABELS.get(name, name)}, trial {result.trial}")
        ax.legend()
    return _save(fig, path)


def logit_space_figure(result, path):
    """Test images' logits and the class-mean anchors; beyond 2 classes on the known logits' 2 principal axes."""
    known, unknown, anchors = (np.asarray(a, dtype=np.float64) for a in
                               (result.known_logits, result.unknown_logits, result.anchors))
    (known2, unknown2, anchors2), (xlabel, ylabel) = (known, unknown, anchors), ("logit of class 0", "logit of class 1")
    if known.shape[1] > 2:
        center = known.mean(0)
        _, sv, vt = np.linalg.svd(known - center, full_matrices=False)
        share = 100 * sv ** 2 / np.sum(sv ** 2)
        known2, unknown2, anchors2 = ((x - center) @ vt[:2].T for x in (known, unknown, anchors))
        xlabel, ylabel = (f"PC {i + 1} ({share[i]:.0f}% of variance)" for i in (0, 1))
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    colors = plt.get_cmap("tab10" if len(anchors) <= 10 else "tab20")
    ax.scatter(unknown2[:, 0], unknown2[:, 1], s=8, color="grey", alpha=0.45, label="unknown", zorder=1)
    for c, name in enumerate(result.class_names):
        mine = result.known_labels == c
        ax.scatter(known2[mine, 0], known2[mine, 1], s=8, color=colors(c % colors.N), alpha=0.8, label=name, zorder=2)
        ax.scatter(*anchors2[c], s=260, marker="*", color=colors(c % colors.N), edgecolor="black",
                   linewidth=1.2, zorder=3)
    ax.scatter([], [], s=150, marker="*", color="white", edgecolor="black", label="class-mean anchor")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=f"CAC logit space, trial {result.trial} (test images)")
    ax.legend(fontsize=8, markerscale=1.5, loc="best", ncol=2 if len(anchors) > 6 else 1)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def training_curves(log_path):
    """(runs, None) from a metrics.jsonl, a new run where the epoch does not increase; or (None, why not)."""
    runs, last, torn = [], None, 0
    try:
        with open(log_path, "rb") as f:
            for line in filter(bytes.strip, f):
                entry = parse_log_line(line)
                if entry is None:
                    torn += 1
                    continue
                if last is None or entry["epoch"] <= last:
                    runs.append([])
                runs[-1].append(entry)
                last = entry["epoch"]
    except OSError as e:
        return None, f"it cannot be read ({e.strerror})"
    if torn:
        print(f"warning: {log_path}: left out {torn} incomplete line(s) (from a crash or a full disk)", file=sys.stderr)
    if not runs or not any(is_finite_number(v) for e in runs[-1] for k, v in e.items() if k != "epoch"):
        return None, "it holds no complete line of numbers"
    return runs, None


def training_figure(runs, title, path):
    keys = [k for k in runs[-1][0] if k != "epoch"]
    panels = (("loss", [k for k in keys if "loss" in k.lower()]),
              ("accuracy (%)", [k for k in keys if "accuracy" in k]))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = plt.get_cmap("tab10")
    for ax, (ylabel, panel_keys) in zip(axes, panels):
        for i, key in enumerate(panel_keys):
            for r, run in enumerate(runs):
                points = [(e["epoch"], e[key]) for e in run if is_finite_number(e.get(key))]
                latest = r == len(runs) - 1
                ax.plot([p[0] for p in points], [p[1] for p in points], color=colors(i), marker=".",
                        ls="--" if key.startswith("val") else "-", alpha=1.0 if latest else 0.35,
                        label=key if latest else None)
        ax.set(xlabel="epoch", ylabel=ylabel, title=title)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    if len(runs) > 1:
        fig.text(0.5, 0.005, f"{len(runs)} runs in the log; faded = earlier runs", ha="center", fontsize=8)
    return _save(fig, path)


def draw_evaluation(results, stem, method, args, stage):
    """All pictures of one evaluation, each saved to `stage(its path)`; returns the paths they belong at."""
    paths = []
    for result in results:
        t, source = result.trial, trained_on(args.dataset)  # CIFAR+50 reuses CIFAR+10's run
        figures = [(roc_figure, "roc", [result]), (histogram_figure, "hist", [result])]
        if result.anchors is not None:
            figures.append((logit_space_figure, "logits", [result]))
        log = os.path.join("runs", f"{source}_{t}_{args.name}{method}", "metrics.jsonl")
        runs, problem = training_curves(log) if os.path.isfile(log) else (None, None)
        if runs:
            title = f"training of {source} trial {t} ({method}, name '{args.name}')"
            figures.append((training_figure, "training", [runs, title]))
        elif problem:
            print(f"warning: no training-curve plot for trial {t}: the training log {log} is damaged: {problem}",
                  file=sys.stderr)
        else:
            print(f"no training log {log} (weights trained elsewhere?): no training-curve plot for trial {t}")
        for figure, kind, inputs in figures:
            figure(*inputs, stage(plot_path(stem, t, kind)))
            paths.append(plot_path(stem, t, kind))
    return paths
