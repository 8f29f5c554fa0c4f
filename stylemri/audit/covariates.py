"""Usefulness of a covariate model: is each requested covariate in the generated images?

The checks are evaluate's (audit.covariate_proof: a predictor trained on real training images predicts
each covariate of generated images, beside the same predictor on held-out real subjects; morphometry vs
covariate, generated beside real); this file turns them into the audit's findings. One score per covariate,
comparable across kinds: the correlation with the requested value (continuous) or the accuracy above chance,
chance-corrected (categorical), as a fraction of the real held-out floor's.
"""

from __future__ import annotations

from typing import Any

from stylemri.audit.verdicts import THRESHOLDS, Finding, enough


def score(column: dict[str, Any], which: str) -> float | None:
    """`which` = generated | real_holdout: r (continuous), or (accuracy - chance) / (1 - chance)."""
    result = column[which]
    if column["kind"] == "continuous":
        return result.get("r")
    accuracy, chance = result.get("accuracy"), column.get("chance")
    if accuracy is None or chance is None or chance >= 1:
        return None
    return (accuracy - chance) / (1 - chance)


def findings(proof: dict[str, Any]) -> list[Finding]:
    """One finding per covariate (ratio to the floor, or why it is not judged), plus a warning for every clear
    real morphometry relation whose direction the generated images reverse. Writes `floor_ratio` into each
    column of `proof` (None when not judged)."""
    out: list[Finding] = []
    for name, col in proof["columns"].items():
        col["floor_ratio"] = None
        n = min(int(proof["num_generated"]), int(col["real_holdout"].get("n") or 0))
        generated, floor = score(col, "generated"), score(col, "real_holdout")
        what = "r" if col["kind"] == "continuous" else "chance-corrected accuracy"
        low = enough("covariate_ratio_pass", n, f"covariate {name}")
        if low is not None:
            out.append(low)
        elif floor is None or floor < THRESHOLDS["covariate_floor"].value:
            shown = "-" if floor is None else f"{floor:.2f}"
            out.append(Finding("warn", f"{name}: real held-out images show it little to the predictor "
                                       f"({what} {shown}); not judged", "covariate_floor"))
        else:
            ratio = (generated if generated is not None else 0.0) / floor
            col["floor_ratio"] = ratio
            words = (f"{name}: predicted from generated images {what} "
                     f"{'-' if generated is None else f'{generated:.2f}'} vs the real held-out floor {floor:.2f} "
                     f"(ratio {ratio:.2f})")
            status = ("pass" if ratio >= THRESHOLDS["covariate_ratio_pass"].value
                      else "fail" if ratio < THRESHOLDS["covariate_ratio_fail"].value else "warn")
            out.append(Finding(status, words, "covariate_ratio_fail" if status == "fail" else "covariate_ratio_pass"))
        if col["kind"] == "continuous":
            out += _reversed_slopes(name, col["morphometry"], int(proof["num_generated"]))
    return out


def _reversed_slopes(name: str, morphometry: dict[str, Any], n: int) -> list[Finding]:
    if enough("covariate_morphometry_r", n, "") is not None:
        return []  # too few images: the N warning above already says so
    out = []
    for measure, m in morphometry.items():
        real_r, real_slope, gen_slope = m["real"]["r"], m["real"]["slope"], m["generated"]["slope"]
        if real_r is None or real_slope is None or gen_slope is None:
            continue
        if abs(real_r) >= THRESHOLDS["covariate_morphometry_r"].value and (real_slope > 0) != (gen_slope > 0):
            way = ("rises", "falls") if real_slope > 0 else ("falls", "rises")
            out.append(Finding("warn", f"{name}: {measure.replace('_', ' ')} {way[0]} with {name} in real images "
                                       f"(r {real_r:.2f}) but {way[1]} with the requested {name} in generated ones",
                               "covariate_morphometry_r"))
    return out


__all__ = ["score", "findings"]
