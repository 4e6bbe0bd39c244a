"""The published numbers the reproduce table shows beside ours, each with its source, and the
difference (ours minus published), so that a reader sees whether a run reproduced them.

The CAC paper's numbers are its CAC open-set AUROC per data set (mean over the 5 standard splits;
the paper reports no accuracy beside them, so none is shown). They are the values the project's
specification recalls from the paper's table (../shared/SPEC.md section 7, "not re-read here"):
the paper's text was not at hand when this was written, and the table says so. Vaze et al.'s are
the numbers their README gives for their released MLS networks on TinyImageNet (their recipe),
shown under --recipe modern and vaze.
"""
SOURCES = {
    "miller2021": "Miller et al., WACV 2021 (arXiv 2004.02434), results table: CAC's open-set AUROC, mean of 5 "
                  "trials; values as recalled in the project's specification (SPEC.md section 7), not re-read "
                  "from the paper",
    "vaze2022": "Vaze et al., ICLR 2022: github.com/sgvaze/osr_closed_set_all_you_need README.md line 82 (their "
                "released TinyImageNet networks, MLS, mean of 5 splits, 84.2% accuracy, 83.0% AUROC)",
}
ALL = ("paper", "modern", "vaze")
# (data set, method, scorer, metric) -> (value, source, recipes whose tables show it)
PUBLISHED = {
    ("MNIST", "CAC", "cac", "auroc"): (0.991, "miller2021", ALL),
    ("SVHN", "CAC", "cac", "auroc"): (0.941, "miller2021", ALL),
    ("CIFAR10", "CAC", "cac", "auroc"): (0.801, "miller2021", ALL),
    ("CIFAR+10", "CAC", "cac", "auroc"): (0.877, "miller2021", ALL),
    ("CIFAR+50", "CAC", "cac", "auroc"): (0.870, "miller2021", ALL),
    ("TinyImageNet", "CAC", "cac", "auroc"): (0.760, "miller2021", ALL),
    ("TinyImageNet", "CE", "max_logit", "auroc"): (0.830, "vaze2022", ("modern", "vaze")),
    ("TinyImageNet", "CE", "max_logit", "accuracy"): (0.842, "vaze2022", ("modern", "vaze")),
}
LABELS = {"auroc": "AUROC", "accuracy": "accuracy"}


def compare(table):
    """A row per published number of the table's data sets, methods and recipe: ours (the
    summary's mean, std and n, or None before any trial is done), the published value, the
    difference and the source."""
    rows = []
    for (ds, method, scorer, metric), (value, source, recipes) in PUBLISHED.items():
        if ds not in table["datasets"] or method not in table["methods"] or table["recipe"] not in recipes:
            continue
        ours = table["summary"].get(ds, {}).get(method, {}).get(scorer, {}).get(metric)
        rows.append({"dataset": ds, "method": method, "scorer": scorer, "metric": metric, "ours": ours,
                     "published": value, "difference": None if ours is None else ours["mean"] - value,
                     "source": source})
    return rows


def markdown_lines(rows):
    """The comparison as Markdown lines (none when no published number applies)."""
    if not rows:
        return []
    used = list(dict.fromkeys(r["source"] for r in rows))
    lines = ["Published numbers beside ours (difference: our mean minus the published number):", "",
             "| data set | metric | method, scorer | ours (mean ± std, n) | published | difference | source |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        ours = r["ours"]
        mine = "…" if ours is None else f"{ours['mean']:.4f} ± {ours['std']:.4f} (n={ours['n']})"
        diff = "…" if r["difference"] is None else f"{r['difference']:+.4f}"
        lines.append(f"| {r['dataset']} | {LABELS[r['metric']]} | {r['method']} `{r['scorer']}` | {mine} | "
                     f"{r['published']:.3f} | {diff} | [{used.index(r['source']) + 1}] |")
    lines.append("")
    lines += [f"[{i + 1}] {SOURCES[key]}." for i, key in enumerate(used)]
    return lines + [""]
