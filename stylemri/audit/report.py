"""DIR/report.html (one self-contained, printable page: figures inline as PNG data URIs) and DIR/audit.json."""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path
from typing import Any

from stylemri.audit import figures
from stylemri.audit.run import AuditResult
from stylemri.io import atomic_write, write_json

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;
color:#222;line-height:1.4;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em} h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
h3{font-size:1.05em;margin-bottom:.3em}
table{border-collapse:collapse;margin:.5em 0 1em;font-size:.85em} td,th{border:1px solid #ccc;padding:3px 7px;
text-align:left;vertical-align:top} th{background:#f3f3f3} td.n{text-align:right;white-space:nowrap}
.badge{display:inline-block;padding:2px 12px;border-radius:10px;color:#fff;font-weight:600;text-transform:uppercase;
font-size:.85em} .pass{background:#2e8b57} .warn{background:#d68910} .fail{background:#c0392b}
.summary td{vertical-align:top;text-align:left} .muted{color:#666;font-size:.85em}
img{max-width:100%;display:block;margin:.4em 0} figure{margin:0;break-inside:avoid;page-break-inside:avoid}
section{break-before:auto} ul.warn li{color:#8a5a00}
@media print{body{max-width:none;margin:0} h2{break-after:avoid} .noprint{display:none}}
"""


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _img(fig: Any, alt: str) -> str:
    return f'<figure><img alt="{html.escape(alt)}" src="{_png(fig)}"></figure>'


def _fmt(v: Any) -> str:
    if isinstance(v, dict) and "value" in v:
        s = _fmt(v["value"])
        if "ci95" in v:
            s += f" <span class=muted>[{_fmt(v['ci95'][0])}, {_fmt(v['ci95'][1])}]</span>"
        return s
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    return html.escape(str(v))


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    def cell(c: Any) -> str:
        numeric = isinstance(c, (int, float)) or (isinstance(c, dict) and "value" in c)
        return f"<td class=n>{_fmt(c)}</td>" if numeric else f"<td>{_fmt(c)}</td>"

    body = "".join("<tr>" + "".join(cell(c) for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _badge(status: str) -> str:
    return f'<span class="badge {status}">{status}</span>'


def _verdict(section: dict[str, Any]) -> str:
    return f"<p>{_badge(section['verdict'])} {html.escape(section['reason'])}</p>"


def _fidelity(d: dict[str, Any]) -> str:
    out = ["<section><h2>Fidelity: do they look real?</h2>", _verdict(d["fidelity"])]
    metrics = figures.FIDELITY_METRICS
    for c, res in d["fidelity"]["per_class"].items():
        rows = [[m, res["synthetic"].get(m, {"value": float("nan")}), res["floor"].get(m, {"value": float("nan")})]
                for m in metrics]
        out.append(f"<h3>{html.escape(c)} (N = {d['n']['synthetic'][c]} per set)</h3>")
        out.append(_table(["figure", "synthetic vs training", "floor: holdout vs training"], rows))
    out.append(_img(figures.fidelity_figure(d["fidelity"]["per_class"]), "fidelity figures"))
    return "".join(out) + "</section>"


def _privacy(d: dict[str, Any], plots: dict[str, Any]) -> str:
    p = d["privacy"]
    out = ["<section><h2>Privacy: do they leak training patients?</h2>", _verdict(p)]
    for c, res in p["per_class"].items():
        out.append(f"<h3>{html.escape(c)}</h3>")
        rows = []
        for space in ("pixel", "feature"):
            r = res[space]
            rows.append([space, r["dcr_synthetic"]["median"], r["dcr_holdout"]["median"], r["holdout_q05"],
                         f"{r['close_copies']['count']}/{r['close_copies']['n']}", r["close_copies"]["p_value"],
                         r["shift_test"]["p_smaller"], r["shift_test"]["p_value"], r["authenticity"]["synthetic"],
                         r["authenticity"]["holdout"]])
        out.append(_table(["space", "median DCR synthetic", "median DCR holdout", "holdout 5% DCR", "close copies",
                           "binomial p", "P(syn < holdout)", "Mann-Whitney p", "authenticity synthetic",
                           "authenticity holdout"], rows))
        mia = res["membership"]
        out.append(_table(["membership attack", "ROC AUC [95%]"],
                          [[k, v] for k, v in mia.items() if isinstance(v, dict)]))
        pt = res["patients"]
        out.append(f"<p class=muted>{pt['patients_with_close']} of {pt['patients_reached']} training patients reached "
                   "have a synthetic image closer to them than their nearest other patient.</p>")
        out.append(_table(["patient", "close", "nearest of", "min d / other-patient d", "synthetic", "training"],
                          [[r["patient"], r["close"], r["nearest"], r["min_ratio"], r["synthetic"], r["training"]]
                           for r in pt["rows"]]))
        pl = plots["privacy"][c]
        out.append(_img(figures.dcr_figure(c, pl, res), f"{c} DCR and membership"))
        out.append(_img(figures.pairs_figure(c, pt, pl["synthetic"], plots["privacy"]["train_images"]),
                        f"{c} closest pairs"))
    return "".join(out) + "</section>"


def _utility(d: dict[str, Any], plots: dict[str, Any]) -> str:
    u = d["utility"]
    out = ["<section><h2>Usefulness: do they teach what real scans teach?</h2>", _verdict(u)]
    if "classifiers" in u:
        cl = u["classifiers"]
        out.append(f"<p class=muted>Small CNN, tested on {cl['test_images']} holdout images of {cl['test_patients']} "
                   "patients; intervals resample patients.</p>")
        out.append(_table(["trained on", "images", "AUC", "balanced accuracy"],
                          [[k, cl[k]["train_images"], cl[k]["auc"], cl[k]["balanced_accuracy"]]
                           for k in ("trtr", "tstr", "real_plus_synthetic")]))
        out.append(_img(figures.utility_figure(cl), "classifier scores"))
        cc = u["class_consistency"]
        out.append(_table(["requested class", "classified as requested", "holdout accuracy"],
                          [[c, r["consistency"], r.get("holdout_accuracy")] for c, r in cc["per_class"].items()]))
    morph = u["morphometry"]
    rows = []
    for c, r in morph["per_class"].items():
        for m in ("brain_area", "csf_fraction", "mean_intensity"):
            rows.append([c, m, r["synthetic_vs_real"][m]["real_mean"], r["synthetic_vs_real"][m]["mean"],
                         r["synthetic_vs_real"][m]["std_difference"], r["floor_holdout_vs_real"][m]["std_difference"]])
        rows.append([c, "histogram W1", "", "", r["synthetic_vs_real"]["histogram_w1"],
                     r["floor_holdout_vs_real"]["histogram_w1"]])
    out.append(_table(["class", "measure", "real mean", "synthetic mean", "synthetic vs real (d / W1)",
                       "floor: holdout vs real"], rows))
    for pair, ms in morph["class_differences"].items():
        out.append(f"<h3>class difference {html.escape(pair)} (Cohen's d)</h3>")
        out.append(_table(["measure", "real", "synthetic", "keeps sign", "size ratio"],
                          [[m, r["real"], r["synthetic"], r["keeps_sign"], r["size_ratio"]] for m, r in ms.items()]))
    out.append(_img(figures.morphometry_figure(plots["utility"]["morphometry"]), "morphometry"))
    if "covariates" in u:
        out.append(_covariates(u["covariates"], plots["covariates"]))
    return "".join(out) + "</section>"


def _covariates(proof: dict[str, Any], raw: dict[str, Any]) -> str:
    """The covariate proof of a --condition run: one row per covariate, and evaluate's figure."""
    from stylemri.audit.covariate_proof import proof_figure

    def words(d: dict[str, Any]) -> str:
        return ", ".join(f"{k} {_fmt(v)}" for k, v in d.items())

    rows = []
    for name, col in proof["columns"].items():
        csf = col["morphometry"]["csf_fraction"]
        if col["kind"] == "continuous":
            rows.append([name, "r", col["generated"]["r"], col["real_holdout"]["r"], "-", col["floor_ratio"],
                         csf["generated"]["slope"], csf["real"]["slope"], csf["curve_r"], col["real_holdout"]["n"]])
        else:
            rows.append([name, "accuracy", col["generated"]["accuracy"], col["real_holdout"]["accuracy"],
                         col["chance"], col["floor_ratio"], words(csf["generated"]), words(csf["real"]), "-",
                         col["real_holdout"]["n"]])
    rows = [[("-" if c is None else c) for c in r] for r in rows]
    return "".join([
        "<h3>Covariates: is each requested value in the images?</h3>",
        f"<p class=muted>{proof['num_generated']} generated images requested the covariates of real training samples "
        f"(so confounders are kept as in the data). A ridge predictor fitted on real images of "
        f"{proof['num_subjects_fit']} training subjects predicts each covariate of the generated images; the floor is "
        "the same predictor on the real images of the other subjects. Dark-CSF fraction vs covariate: slope in "
        "generated images against the requested value, in real images against the recorded one; curve r correlates "
        "their binned curves. A confounded covariate (MMSE falling with age) is predicted through the other one: "
        "docs/covariates.md.</p>",
        _table(["covariate", "score", "generated (vs requested)", "real held-out floor", "chance", "ratio to floor",
                "dark-CSF generated (slope / mean)", "dark-CSF real", "CSF curve r", "held-out images"], rows),
        _img(proof_figure(raw), "dark-CSF fraction vs covariate, real beside generated"),
    ])


def render_html(result: AuditResult, title: str) -> str:
    d = result.data
    summary = "".join(f"<tr><td><b>{k}</b></td><td>{_badge(d[k]['verdict'])}</td><td>{html.escape(d[k]['reason'])}"
                      f"</td></tr>" for k in ("fidelity", "privacy", "utility"))
    warn = "".join(f"<li>{html.escape(w)}</li>" for w in d["warnings"])
    n_rows = [[k, *[d["n"][k][c] for c in d["classes"]]] for k in ("training", "holdout", "synthetic")]
    t = d["protocol"]["timing_seconds"]
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{CSS}</style>"
        f"</head><body><h1>{html.escape(title)}</h1>",
        f"<p class=muted>Can these synthetic scans be shared and used? Fidelity, privacy and usefulness against "
        f"{d['n']['totals']['training']} training and {d['n']['totals']['holdout']} holdout images. How to read "
        "this report: docs/audit.md.</p>",
        f"<table class=summary>{summary}</table>",
        f"<ul class=warn>{warn}</ul>" if warn else "",
        "<h3>Images per set and class (equal N)</h3>", _table(["set", *d["classes"]], n_rows),
        _img(figures.samples_figure(result.plots["samples"]), "samples"),
        _fidelity(d), _privacy(d, result.plots), _utility(d, result.plots),
        "<section><h2>Protocol</h2>",
        _table(["", ""], [["feature network", d["protocol"]["feature_network"]],
                          ["weights", json.dumps(d["protocol"]["features"].get("weights", "-"))],
                          ["resolution", d["protocol"]["resolution"]], ["resizing", d["protocol"]["resizing"]],
                          ["seeds", json.dumps(d["protocol"]["seeds"])],
                          ["bootstrap", d["protocol"]["bootstrap_replicates"]],
                          ["patient overlap", json.dumps(d["overlap"])],
                          ["seconds per stage", ", ".join(f"{k} {v:g}" for k, v in t.items())]]),
        "<h3>Thresholds</h3>",
        _table(["key", "value", "min N", "meaning", "source"],
               [[r["key"], r["value"], r["min_n"], r["meaning"], r["source"]] for r in d["thresholds"]]),
        "</section></body></html>",
    ]
    return "".join(parts)


def json_safe(obj: Any) -> Any:
    """NaN / infinity -> None and numpy scalars -> Python numbers, so audit.json is strict JSON."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_report(outdir: str | Path, result: AuditResult, title: str = "stylemri audit") -> tuple[Path, Path]:
    """Write audit.json and report.html into `outdir`; returns their paths."""
    out = Path(outdir)
    page = render_html(result, title)  # render first: nothing is written if a figure fails
    json_path, html_path = out / "audit.json", out / "report.html"
    write_json(json_path, json_safe(result.data))
    with atomic_write(html_path, "w") as f:
        f.write(page)
    return json_path, html_path
