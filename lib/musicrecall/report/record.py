"""The metrics contract: the last cell of every notebook records its headline metrics.

A small replacement for scrapbook's ``glue`` (unmaintained): :func:`record_metrics` displays an HTML
table for the reader and, in the same output, a JSON bundle under :data:`METRICS_MIME`. The runner
(:mod:`musicrecall.report.runner`) reads that bundle back from the executed notebook, so metrics
travel inside the notebook and no side file can go stale.
"""

from __future__ import annotations

import html
import json
import math
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # polars only for the type of a lift table
    import polars as pl

from musicrecall.report.claims import CLAIMS_BY_ID, NOT_FALSIFIED, SUPPORTING, VERDICTS

METRICS_MIME = "application/vnd.musicrecall.metrics+json"
NA = "n/a"  # how a missing or non-finite value is shown


def finite_or_none(x: Any) -> float | None:
    """``x`` as a float, or ``None`` (JSON null) when it is missing or not a finite number.

    Also reads what older runs wrote: jupyter's message packer turns NaN into the *string* ``"nan"``
    (``jupyter_client.jsonutil.json_clean``), and such strings must never reach number formatting.
    """
    if x is None or isinstance(x, bool):
        return None if x is None else float(x)
    try:
        value = float(x)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def metric(name: str, value: float | None, ci: tuple[float, float] | None = None, *, unit: str = "",
           world: str = "default", note: str = "") -> dict[str, Any]:
    """One headline metric. ``ci`` is a 95% interval; ``world`` names the (placebo) world it comes from.

    A value that could not be measured (NaN or ``None``, e.g. clustering against a genre that imported
    data lacks) is recorded as JSON null and shown as "n/a", but only with a ``note`` saying why: a NaN
    without a reason is a bug and raises. An interval with a non-finite bound is recorded as null.
    """
    if value is not None and not isinstance(value, bool) and math.isinf(float(value)):
        raise ValueError(f"metric {name!r} is not finite: {value}")
    clean = finite_or_none(value)
    if clean is None and not note:
        raise ValueError(f"metric {name!r} is not finite: {value} (if it cannot be measured on this data, "
                         "pass note= with the reason; it is then recorded as null and shown as n/a)")
    lo, hi = (finite_or_none(ci[0]), finite_or_none(ci[1])) if ci is not None else (None, None)
    if lo is None or hi is None:
        lo = hi = None
    return {"name": name, "value": clean, "ci_lo": lo, "ci_hi": hi, "unit": unit, "world": world, "note": note}


def lift_table_metrics(frame: pl.DataFrame | None, prefix: str, world: str = "default") -> list[dict]:
    """Ledger metrics (:func:`metric`) of every row of a lift table (columns ``a``, ``b``, ``slice``, ``metric``,
    ``lift``, ``ci_lo``, ``ci_hi``, e.g. :func:`musicrecall.sequences.rolling_c2_table`); an undefined lift
    (the baseline scores 0) is recorded as n/a with that reason."""
    out = []
    for r in frame.iter_rows(named=True) if frame is not None else []:
        lift = float("nan") if r["lift"] is None else r["lift"]
        name = f"{prefix}_{r['a'].replace(' ', '_')}_vs_{r['b'].replace(' ', '_')}_{r['slice']}_{r['metric']}"
        ok = math.isfinite(lift)
        out.append(metric(name, lift, (r["ci_lo"], r["ci_hi"]) if ok else None, world=world,
                          note="" if ok else "undefined: the baseline scores 0 here"))
    return out

# The sanity rule for recorded metrics, by unit. A metric is a *share* and must lie in [0, 1] when
#   - it has no unit (unit ""): a metric with a unit ("s", "min", "x", ...) is a quantity, not a share;
#   - a token of its name (tokens split at "_") starts with a share word: hr@, recall, ndcg, precision,
#     coverage, share, rate, ratio ("unshared" is not "share");
#   - it is not signed: no token starts with lift, change, delta or diff (relative lifts leave [0, 1]);
#   - it is not a time: no token is seconds, s, ms, min, minutes or contains "time" (train_time,
#     runtime), and its unit is none of TIME_UNITS. Times depend on the machine's load, so no bound
#     may be asserted on them (issue 16: a loaded machine measured 2.69 s for a "_seconds" metric).
SHARE_WORDS = ("hr@", "recall", "ndcg", "precision", "coverage", "share", "rate", "ratio")
SIGNED_WORDS = ("lift", "change", "delta", "diff")
TIME_UNITS = ("s", "ms", "min", "h", "seconds", "minutes")
_TIME_TOKEN = re.compile(r"^(seconds?|s|ms|min|minutes|hours?)(@.*)?$|time")


def _tokens(name: str) -> list[str]:
    return [t for t in name.lower().split("_") if t]


def is_time(name: str, unit: str = "") -> bool:
    """Whether a metric is a duration (by its unit, or a name token such as ``seconds``, ``_s``, ``time``)."""
    return unit.lower() in TIME_UNITS or any(_TIME_TOKEN.search(t) for t in _tokens(name))


def is_share(name: str, unit: str = "") -> bool:
    """Whether a metric must lie in [0, 1]: see the rule above."""
    tokens = _tokens(name)
    return (unit == "" and not is_time(name, unit)
            and any(t.startswith(SHARE_WORDS) for t in tokens)
            and not any(t.startswith(SIGNED_WORDS) for t in tokens))


def metric_problems(m: dict[str, Any]) -> list[str]:
    """What is wrong with a recorded metric (empty when it is sane): a null value without a reason, a
    share outside [0, 1], or a value outside its own interval."""
    name, unit, value = m["name"], m.get("unit", ""), finite_or_none(m.get("value"))
    if value is None:
        return [] if m.get("note") else [f"{name}: no value and no note saying why"]
    problems = []
    if is_share(name, unit) and not 0.0 <= value <= 1.0:
        problems.append(f"{name} = {value} is a share (unit-less, named {SHARE_WORDS}) but lies outside [0, 1]")
    lo, hi = finite_or_none(m.get("ci_lo")), finite_or_none(m.get("ci_hi"))
    if lo is not None and hi is not None and not lo - 1e-9 <= value <= hi + 1e-9:
        problems.append(f"{name} = {value} lies outside its interval [{lo}, {hi}]")
    return problems


def headline(value: float | None, ci: tuple[float, float] | None = None, *, label: str,
             unit: str = "") -> dict[str, Any]:
    """A claim's headline effect, machine-readable, for the index's forest plot.

    ``value`` is an effect whose "no effect" is 0 (a relative lift, a difference, a correlation), with
    its 95% interval ``ci``. ``unit="%"`` means ``value`` is a fraction shown as a percentage (0.081 ->
    "+8.1%"); any other unit is shown as is. NaN or ``None`` is recorded as null ("n/a").
    """
    lo, hi = (finite_or_none(ci[0]), finite_or_none(ci[1])) if ci is not None else (None, None)
    if lo is None or hi is None:
        lo = hi = None
    return {"value": finite_or_none(value), "lo": lo, "hi": hi, "unit": unit, "label": label}


def format_effect(e: dict[str, Any] | None) -> str:
    """``"+8.1% [+5.2%, +11.0%]"`` for a :func:`headline` effect; "n/a" when it has no value."""
    value = finite_or_none(e.get("value")) if e else None
    if value is None:
        return NA

    def one(x: float) -> str:
        return f"{x:+.1%}" if e.get("unit") == "%" else f"{x:+.3g}"

    ci = f" [{one(e['lo'])}, {one(e['hi'])}]" if finite_or_none(e.get("lo")) is not None else ""
    unit = "" if e.get("unit") in ("", "%") else f" {e['unit']}"
    return f"{one(value)}{ci}{unit}"


_NOT_MEASURED = "placebo (not measured)"
_NO_PLACEBO_TEXT = ("", "n/a", "na", "none", "not run", "open", "-", "—")


def _has_placebo(placebo: str, placebo_effect: dict[str, Any] | None) -> bool:
    """Whether a placebo was actually measured: a placebo effect with a value, or a placebo text that
    is not one of the "not measured" spellings (older notebooks record text only)."""
    if placebo_effect is not None:
        return finite_or_none(placebo_effect.get("value")) is not None
    text = placebo.strip().lower()
    return not (text in _NO_PLACEBO_TEXT or text.startswith(("n/a", "not run", "none")))


def cap_verdict(row: dict[str, Any], reason: str) -> dict[str, Any]:
    """``row`` with a supporting verdict lowered to "not falsified" (the untested part named in
    ``not_tested``): a missing placebo must never count as a pass."""
    row = dict(row)
    if row["verdict"] in SUPPORTING:
        row["verdict_asked"] = row["verdict"]
        row["verdict"] = NOT_FALSIFIED
    if reason and reason not in row.get("not_tested", ""):
        row["not_tested"] = "; ".join(x for x in (row.get("not_tested", ""), reason) if x)
    return row


def record_claim(claim_id: str, *, ours: str = "", placebo: str = "", verdict: str, real: str = "",
                 note: str = "", effect: dict[str, Any] | None = None, placebo_effect: dict[str, Any] | None = None,
                 tested: str = "", not_tested: str = "") -> dict[str, Any]:
    """A claims-ledger row.

    ``ours``/``placebo``/``real`` are pre-formatted text (e.g. ``"+8.1% [5.2, 11.0]"``); ``effect`` and
    ``placebo_effect`` are the same headline effect as :func:`headline` dicts, read by the forest plot
    (``ours`` defaults to the formatted effect). ``tested``/``not_tested`` say what the verdict rests on.

    Verdict rule: "reproduced" or "partly" needs a measured placebo (``placebo_effect`` with a value, or
    a placebo text other than "n/a"/"not run"); without one the row reads "not falsified" and records the
    asked verdict in ``verdict_asked``. A row recorded on imported data is capped the same way by
    :func:`build_record` (real data has no placebo world).
    """
    if claim_id not in CLAIMS_BY_ID:
        raise ValueError(f"unknown claim id {claim_id!r}; expected one of {sorted(CLAIMS_BY_ID)}")
    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {VERDICTS}, not {verdict!r}")
    row: dict[str, Any] = {"id": claim_id, "ours": ours or (format_effect(effect) if effect else ""),
                           "placebo": placebo or (format_effect(placebo_effect) if placebo_effect else ""),
                           "real": real, "verdict": verdict, "note": note, "effect": effect,
                           "placebo_effect": placebo_effect, "tested": tested, "not_tested": not_tested}
    if not _has_placebo(placebo, placebo_effect):
        row = cap_verdict(row, "" if "placebo" in not_tested else _NOT_MEASURED)
    return row


REAL_DATA_UNTESTED = "placebo world (none exists for real data)"


def cap_for_dataset(row: dict[str, Any], dataset: str) -> dict[str, Any]:
    """A claim row of a run on ``dataset``: on imported data it can at most read "not falsified"."""
    if str(dataset) in ("", "world"):
        return row
    # real data has no placebo at all: say so once, instead of "placebo (not measured)"
    row = {**row, "not_tested": "; ".join(x for x in row.get("not_tested", "").split("; ") if x and x != _NOT_MEASURED)}
    # the notebook may have said it already ("placebo world (imported data)"): say it once
    row = cap_verdict(row, "" if "placebo" in row["not_tested"] else REAL_DATA_UNTESTED)
    if not row.get("tested"):
        row["tested"] = "the effect on this dataset's test split" if (row.get("effect") or row.get("ours")
                                                                   or row.get("real")) else ""
    return row


def format_value(x: Any) -> str:
    """A recorded number for display; null, NaN and old ``"nan"`` strings read as "n/a"."""
    value = finite_or_none(x)
    return NA if value is None else f"{value:.4g}"


def format_ci(m: dict[str, Any]) -> str:
    """``[lo, hi]`` of a recorded metric, or an empty string when it has no interval."""
    lo, hi = finite_or_none(m.get("ci_lo")), finite_or_none(m.get("ci_hi"))
    return "" if lo is None or hi is None else f"[{format_value(lo)}, {format_value(hi)}]"


def sanitize_json(obj: Any) -> Any:
    """A copy of ``obj`` where every non-finite float (and the ``"nan"``/``"inf"`` strings older runs
    stored for them in number fields) is ``None``: what goes into ``metrics.json`` is strict JSON."""
    if isinstance(obj, dict):
        return {k: (finite_or_none(v) if k in _NUMBER_FIELDS and isinstance(v, str) else sanitize_json(v))
                for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [sanitize_json(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


# Fields that hold numbers in a record; a string there ("nan", "inf") is a NaN written by an older run.
_NUMBER_FIELDS = frozenset({"value", "ci_lo", "ci_hi", "lo", "hi", "seconds"})


def dumps(obj: Any) -> str:
    """Strict JSON (NaN never written, neither as ``NaN`` nor as ``"nan"``)."""
    return json.dumps(sanitize_json(obj), indent=1, sort_keys=True, allow_nan=False)


def build_record(notebook: str, metrics: list[dict[str, Any]], *, profile: str, dataset: str = "world",
                 seed: int = 0, claims: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The JSON payload of one notebook's headline metrics (and claims-ledger rows, if any).

    Claims recorded on imported data (``dataset`` other than ``"world"``) are capped at "not falsified".
    """
    claims = [cap_for_dataset(row, str(dataset)) for row in claims or []]
    payload = sanitize_json({"notebook": notebook, "profile": profile, "dataset": str(dataset), "seed": seed,
                             "metrics": metrics, "claims": claims})
    # Fail here, in the notebook, if something is not serialisable; NaN is null by now, so jupyter's
    # packer cannot turn it into the string "nan".
    json.dumps(payload, allow_nan=False)
    return payload


def record_metrics(notebook: str, metrics: list[dict[str, Any]], *, profile: str, dataset: str = "world",
                   seed: int = 0, claims: list[dict[str, Any]] | None = None) -> None:
    """Display the notebook's headline metrics as a table, with the payload the runner collects."""
    payload = build_record(notebook, metrics, profile=profile, dataset=dataset, seed=seed, claims=claims)
    rows = "".join(
        f"<tr><td>{html.escape(m['name'])}</td><td>{format_value(m['value'])}</td><td>{format_ci(m)}</td>"
        f"<td>{html.escape(m['world'])}</td><td>{html.escape(m['note'])}</td></tr>"
        for m in metrics
    )
    table = (f"<p><b>Headline metrics of {html.escape(notebook)}</b> (profile {html.escape(profile)}, "
             f"dataset {html.escape(dataset)}, seed {seed})</p><table><tr><th>metric</th><th>value</th>"
             f"<th>95% CI</th><th>world</th><th>note</th></tr>{rows}</table>")
    try:
        from IPython.display import display

        display({"text/html": table, "text/plain": f"{len(metrics)} metrics of {notebook}", METRICS_MIME: payload},
                raw=True)
    except ImportError as err:  # pragma: no cover - IPython is a dependency
        raise RuntimeError("record_metrics needs IPython; use build_record outside notebooks") from err
