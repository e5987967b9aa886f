"""The built-in measures of scheme.md ("Measures"): one number per person and month, per source.

Everything is whole-column work (factorize, bincount, groupby, merge): a month holds about 200,000
people and six million attendance rows, where a per-person loop would take minutes. A measure with
no basis (a rate over zero) is NaN, which the indicator step turns into `neutral_points`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def _named(source: str, *names: str) -> tuple[str, ...]:
    return tuple(f"{source}.{name}" for name in names)


ATTENDANCE_MEASURES = _named(
    "attendance",
    "workdays",
    "attendance_rate",
    "late_count",
    "early_leave_count",
    "absent_days",
    "leave_days",
    "duty_filing_rate",
    "duty_review_rate",
    "missed_filing_streaks",
)
CASE_MEASURES = _named(
    "cases",
    "closed_count",
    "filed_count",
    "clearance_rate",
    "avg_duration_days",
    "simple_procedure_rate",
    "in_court_verdict_rate",
    "mediation_withdrawal_rate",
    "pending_count",
    "long_pending_count",
    "reversal_count",
    "remand_count",
    "acceptance_rate",
    "panel_fault_count",
    "closure_balance",
)
# the department's own result, shared by everyone in it (捆绑考核: bundled assessment)
DEPARTMENT_MEASURES = _named("cases", "dept_clearance_rate")
MEASURES: frozenset[str] = frozenset(ATTENDANCE_MEASURES + CASE_MEASURES + DEPARTMENT_MEASURES)

STATUSES = ("present", "late", "early_leave", "absent", "leave", "business_trip", "holiday")
# an unknown or missing status counts as a non-holiday, non-attended day
_OTHER_STATUS = len(STATUSES)
ACCEPTANCE_WINDOW = 12  # months, ending with the month computed


# --- column readers: the warehouse hands back object, str or string dtype, Int64 or float ---------


def _text(s: pd.Series) -> pd.Series:
    """Ids and months compare as text whatever dtype the driver returned; missing stays missing."""
    return s.astype("str")


def _codes(s: pd.Series, values: tuple[str, ...]) -> np.ndarray:
    """Position of each cell in `values` (-1 otherwise); only the distinct cells are looked up."""
    codes, uniques = pd.factorize(s)
    lookup = np.append(pd.Index(values).get_indexer(pd.Index(uniques)), -1)
    return lookup[codes]


def _is(s: pd.Series, *values: str) -> np.ndarray:
    return _codes(s, values) >= 0


def _flag(s: pd.Series) -> np.ndarray:
    """A 0/1/empty column as floats, empty (None, NA, '') as NaN."""
    if not pd.api.types.is_numeric_dtype(s.dtype):
        s = pd.to_numeric(s, errors="coerce")
    return s.to_numpy(dtype=float, na_value=np.nan)


def _dates(s: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """ISO date text as (datetime64[D], month number); each distinct date is parsed only once.

    An empty date is NaT with month number int64-min, which never equals a real month.
    """
    codes, uniques = pd.factorize(s)
    parsed = pd.to_datetime(pd.Index(uniques, dtype=object), format="ISO8601", errors="coerce")
    days = np.append(parsed.to_numpy().astype("datetime64[D]"), np.datetime64("NaT", "D"))
    months = days.astype("datetime64[M]").astype(np.int64)
    return days[codes], months[codes]


def _month_numbers(s: pd.Series) -> np.ndarray:
    """'YYYY-MM' as months since 1970-01, so month arithmetic (M − 11) is integer arithmetic."""
    codes, uniques = pd.factorize(_text(s))
    parsed = np.array([str(u) for u in uniques], dtype="datetime64[M]").astype(np.int64)
    return np.append(parsed, -(2**62))[codes]


def _group(month: np.ndarray, person: pd.Series) -> tuple[np.ndarray, np.ndarray, pd.Index]:
    """Integer group per row for (month number, person) plus each group's month and person.

    Grouping on integers and summing with bincount is several times faster than a groupby on a
    text column of millions of rows. Callers drop rows without a person first.
    """
    person_code, persons = pd.factorize(_text(person))
    width = max(len(persons), 1)
    group, pairs = pd.factorize(month * width + person_code)
    return group, pairs // width, pd.Index(persons)[pairs % width]


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, NaN (no basis) where den is 0."""
    num = np.asarray(num, dtype=float)
    den = np.asarray(den, dtype=float)
    return np.divide(num, den, out=np.full(num.shape, np.nan), where=den > 0)


def _frame(presence: pd.DataFrame) -> pd.DataFrame:
    """(month, person_id) as text, on a fresh index; columns that are text already are kept as
    they are (a round trip through Python objects costs a city month about a second)."""
    return pd.DataFrame(
        {c: _text(presence[c]).reset_index(drop=True) for c in ("month", "person_id")}
    )


# --- attendance -----------------------------------------------------------------------------------


# per (month, person): days listed, days per status, required / filed / reviewed duty days, and
# missed-filing streaks; every attendance measure is a ratio or difference of these counts
ATTENDANCE_COUNTS: tuple[str, ...] = (
    "days",
    *STATUSES,
    "other_status",
    "duty_required",
    "duty_filed",
    "duty_reviewed",
    "missed_filing_streaks",
)


def attendance_counts(attendance: pd.DataFrame) -> pd.DataFrame:
    """The attendance counts of each (month, person_id) the rows hold.

    Rows are grouped on integer codes and counted with bincount, because the attendance table is
    one row per person per day (millions of rows) and string groupbys on it are too slow. The
    counts are what scoring needs of the days, so the load keeps them beside the rows
    (`attendance_month`) and a month is scored without reading its days again.
    """
    a = attendance
    valid = a["month"].notna() & a["person_id"].notna()
    if not valid.all():
        a = a[valid]
    group, months, persons = _group(_month_numbers(a["month"]), a["person_id"])
    n = len(months)

    status = _codes(a["status"], STATUSES)
    status[status < 0] = _OTHER_STATUS
    by_status = np.bincount(group * (_OTHER_STATUS + 1) + status, minlength=n * (_OTHER_STATUS + 1))
    by_status = by_status.reshape(n, _OTHER_STATUS + 1)

    filed = _flag(a["duty_filed"])
    required = ~np.isnan(filed)
    done = filed == 1
    reviewed = done & (_flag(a["duty_reviewed"]) == 1)
    out = pd.DataFrame(
        {
            "month": np.datetime_as_string(months.astype("datetime64[M]")).astype(object),
            "person_id": persons.to_numpy(dtype=object),
            "days": by_status.sum(axis=1),
        }
    )
    for i, name in enumerate((*STATUSES, "other_status")):
        out[name] = by_status[:, i]
    for name, flags in (("duty_required", required), ("duty_filed", done)):
        out[name] = np.bincount(group, weights=flags, minlength=n).astype(np.int64)
    out["duty_reviewed"] = np.bincount(group, weights=reviewed, minlength=n).astype(np.int64)
    out["missed_filing_streaks"] = _missed_streaks(group, a["date"], filed, n).astype(np.int64)
    return out


def attendance_measures(attendance: pd.DataFrame, presence: pd.DataFrame) -> pd.DataFrame:
    """Attendance measures for each (month, person_id) of `presence`, in its order, from the
    days themselves."""
    return attendance_measures_from_counts(attendance_counts(attendance), presence)


def attendance_measures_from_counts(counts: pd.DataFrame, presence: pd.DataFrame) -> pd.DataFrame:
    """Attendance measures for each (month, person_id) of `presence`, in its order, from the
    counts `attendance_counts` gives (a person without any: counts 0, rates without basis)."""
    per = counts[["month", "person_id"]].copy()
    per["m"] = _month_numbers(per["month"])
    per["person_id"] = _text(per["person_id"])
    c = {k: counts[k].to_numpy(dtype=float) for k in ATTENDANCE_COUNTS}
    expected = c["days"] - c["holiday"] - c["leave"]
    attended = c["present"] + c["late"] + c["early_leave"] + c["business_trip"]
    tallies = {
        "workdays": c["days"] - c["holiday"],
        "late_count": c["late"],
        "early_leave_count": c["early_leave"],
        "absent_days": c["absent"],
        "leave_days": c["leave"],
        "missed_filing_streaks": c["missed_filing_streaks"],
    }
    rates = {
        "attendance_rate": _ratio(attended, expected),
        "duty_filing_rate": _ratio(c["duty_filed"], c["duty_required"]),
        "duty_review_rate": _ratio(c["duty_reviewed"], c["duty_filed"]),
    }
    for name, values in (tallies | rates).items():
        per[f"attendance.{name}"] = values

    out = _frame(presence)
    out["m"] = _month_numbers(out["month"])
    out = out.merge(per.drop(columns=["month"]), how="left", on=["m", "person_id"])
    zero = [f"attendance.{name}" for name in tallies]
    out[zero] = out[zero].fillna(0.0)
    return out[["month", "person_id", *ATTENDANCE_MEASURES]]


def _missed_streaks(group: np.ndarray, dates: pd.Series, filed: np.ndarray, n: int) -> np.ndarray:
    """Maximal runs (length ≥ 2) of duty_filed = 0 over required days, per group.

    Non-required days are dropped before looking at neighbours, so they neither break nor extend a
    run; a group boundary (month or person) always breaks one.
    """
    required = ~np.isnan(filed)
    g = group[required]
    miss = filed[required] == 0
    day, _ = pd.factorize(dates[required], sort=True)  # ISO text sorts as the date does
    order_key = g.astype(np.int64) * (int(day.max(initial=0)) + 2) + day
    if len(order_key) > 1 and (np.diff(order_key) < 0).any():
        order = np.argsort(order_key, kind="stable")
        g, miss = g[order], miss[order]
    pair = miss[:-1] & miss[1:] & (g[:-1] == g[1:])
    run_start = pair & ~np.concatenate(([False], pair[:-1]))
    return np.bincount(g[:-1][run_start], minlength=n).astype(float)


# --- cases ----------------------------------------------------------------------------------------


def case_measures(
    snapshots: pd.DataFrame,
    presence: pd.DataFrame,
    long_pending_days: int = 365,
    history: pd.DataFrame | None = None,
    months: list[str] | None = None,
) -> pd.DataFrame:
    """Case measures for each (month, person_id) of `presence` in `months` (default: every month
    of `presence`), in its order.

    Month M reads only the snapshot extracted for M; the look-back measures additionally read the
    monthly counts of earlier snapshots (acceptance_rate) and of earlier presence months of the same
    year (closure_balance), so `snapshots` and `presence` must carry those months too — or
    `history` carries their counts (month, person_id, closed, reversed, remanded as judge), as the
    warehouse aggregates them, for the snapshot months `snapshots` leaves out. Only the months whose
    snapshot is given get every measure right; the others are there for the look-back.
    """
    every = _frame(presence)
    every_m = _month_numbers(every["month"])
    if months is None:
        targets = np.unique(every_m)
    else:
        targets = np.unique(_month_numbers(pd.Series(months, dtype=object)))
    reported = np.isin(every_m, targets)
    out = every[reported].reset_index(drop=True)
    out["m"] = every_m[reported]
    window = np.unique((targets[:, None] - np.arange(ACCEPTANCE_WINDOW)).ravel())

    sm = _month_numbers(snapshots["month"])
    keep = np.isin(sm, window) & snapshots["judge_id"].notna().to_numpy()
    s = snapshots if keep.all() else snapshots[keep]
    sm = sm[keep]
    monthly = _monthly_counts(s, sm, long_pending_days)
    if history is not None and len(history):
        hm = _month_numbers(history["month"])
        use = np.isin(hm, window) & ~np.isin(hm, np.unique(sm))
        earlier = history.loc[use, ["person_id", "closed", "reversed", "remanded"]].assign(
            m=hm[use]
        )
        earlier["person_id"] = _text(earlier["person_id"])
        monthly = pd.concat([monthly, earlier], ignore_index=True).fillna(0.0)
    # (month, person) as one integer: merges and sums on it are many times faster than on text
    ids = pd.concat([_text(every["person_id"]), _text(monthly["person_id"])], ignore_index=True)
    person_code, persons = pd.factorize(ids)  # one pass of hashing over both
    width = max(len(persons), 1)
    every_key = every_m * width + person_code[: len(every)]
    out_key = every_key[reported]
    monthly_key = monthly["m"].to_numpy() * width + person_code[len(every) :]
    counts = monthly.columns.drop(["m", "person_id"])
    by_key = monthly[counts].set_axis(monthly_key)
    rows = by_key.reindex(out_key).fillna(0.0).reset_index(drop=True)
    sums = _acceptance(monthly["m"].to_numpy(), monthly_key % width, by_key, targets, width)
    rows[sums.columns] = sums.reindex(out_key).to_numpy()
    closed_every = by_key["closed"].reindex(every_key).fillna(0.0)
    mean = _closure_means(every_m, every_key, closed_every, width)
    rows["mean_closed"] = mean[reported]
    closed = rows["closed"].to_numpy(dtype=float)
    mean = rows["mean_closed"].to_numpy(dtype=float)
    balance = 1.0 - np.abs(closed - mean) / np.where(mean > 0, mean, 1.0)
    measures = {
        "closed_count": closed,
        "filed_count": rows["filed"],
        "clearance_rate": _ratio(closed, rows["filed"]),
        "avg_duration_days": _ratio(rows["duration_days"], rows["dated_closed"]),
        "simple_procedure_rate": _ratio(rows["simple"], closed),
        "in_court_verdict_rate": _ratio(rows["judgment_in_court"], rows["judgment"]),
        "mediation_withdrawal_rate": _ratio(rows["mediation_withdrawal"], closed),
        "pending_count": rows["pending"],
        "long_pending_count": rows["long_pending"],
        "reversal_count": rows["reversed"],
        "remand_count": rows["remanded"],
        "acceptance_rate": 1.0 - _ratio(rows["window_appealed"], rows["window_closed"]),
        "panel_fault_count": rows["panel_fault"],
        "closure_balance": np.where(mean > 0, np.clip(balance, 0.0, 1.0), 1.0),
    }
    result = out[["month", "person_id"]].copy()
    for name, values in measures.items():
        result[f"cases.{name}"] = np.asarray(values, dtype=float)
    return result


def department_measures(snapshots: pd.DataFrame, people: pd.DataFrame) -> pd.DataFrame:
    """Per (month, person_id) of `people`: the measures of the department (roster `dept_id`) the
    person is in that month, over the cases that department handles (the case's `dept_id`).

    `dept_clearance_rate` = the department's cases closed in the month / filed in the month, the
    same for every member, assistants included: the team is assessed as one (捆绑考核).
    """
    s = snapshots[snapshots["dept_id"].notna() & snapshots["month"].notna()]
    sm = _month_numbers(s["month"])
    _, filed_month = _dates(s["filed_on"])
    _, closed_month = _dates(s["closed_on"])
    group, months, depts = _group(sm, s["dept_id"])
    closed = np.bincount(group, weights=closed_month == sm, minlength=len(months))
    filed = np.bincount(group, weights=filed_month == sm, minlength=len(months))
    rate = pd.Series(
        _ratio(closed, filed), index=pd.MultiIndex.from_arrays([months, depts.to_numpy()])
    )
    out = _frame(people)
    key = pd.MultiIndex.from_arrays(
        [_month_numbers(out["month"]), _text(people["dept_id"]).to_numpy()]
    )
    rate = rate[~rate.index.duplicated()]
    out["cases.dept_clearance_rate"] = rate.reindex(key).to_numpy(dtype=float)
    return out


LOOK_BACK_COUNTS: tuple[str, ...] = ("closed", "reversed", "remanded")


def look_back_counts(snapshots: pd.DataFrame) -> pd.DataFrame:
    """Per snapshot month and judge: cases closed, and appeals decided reversed or remanded, in
    that month — all that later months' look-back (acceptance_rate, closure_balance) needs of a
    snapshot, so the load keeps them (`case_month`) and scoring reads three numbers a judge and
    month instead of the year's case extracts."""
    s = snapshots[snapshots["judge_id"].notna() & snapshots["month"].notna()]
    sm = _month_numbers(s["month"])
    _, closed_month = _dates(s["closed_on"])
    _, decided_month = _dates(s["appeal_decided_on"])
    appeal = np.where(
        decided_month == sm, _codes(s["appeal_outcome"], ("reversed", "remanded")), -1
    )
    group, months, persons = _group(sm, s["judge_id"])
    out = pd.DataFrame(
        {
            "month": np.datetime_as_string(months.astype("datetime64[M]")).astype(object),
            "person_id": persons.to_numpy(dtype=object),
        }
    )
    flags = {"closed": closed_month == sm, "reversed": appeal == 0, "remanded": appeal == 1}
    for name, values in flags.items():
        out[name] = np.bincount(group, weights=values, minlength=len(months)).astype(np.int64)
    return out


def _monthly_counts(s: pd.DataFrame, sm: np.ndarray, long_pending_days: int) -> pd.DataFrame:
    """Per (snapshot month, person) sums of every per-case flag; the rates are ratios of these."""
    filed, filed_month = _dates(s["filed_on"])
    closed, closed_month = _dates(s["closed_on"])
    _, decided_month = _dates(s["appeal_decided_on"])
    month_end = (sm + 1).astype("datetime64[M]").astype("datetime64[D]") - np.timedelta64(1, "D")

    closed_in = closed_month == sm
    dated = closed_in & ~np.isnat(filed)
    duration = np.where(dated, (closed - filed).astype("timedelta64[D]").astype(np.int64), 0)
    pending = (filed <= month_end) & ~(closed <= month_end)
    age = np.where(pending, (month_end - filed).astype("timedelta64[D]").astype(np.int64), 0)
    outcome = _codes(s["outcome"], ("judgment", "mediation", "withdrawal"))
    judgment = closed_in & (outcome == 0)
    decided_in = decided_month == sm
    appeal = np.where(decided_in, _codes(s["appeal_outcome"], ("reversed", "remanded")), -1)

    flags = {
        "closed": closed_in,
        "filed": filed_month == sm,
        "duration_days": duration,
        "dated_closed": dated,
        "simple": closed_in & _is(s["procedure"], "simple", "summary"),
        "judgment": judgment,
        "judgment_in_court": judgment & (_flag(s["verdict_in_court"]) == 1),
        "mediation_withdrawal": closed_in & (outcome > 0),
        "pending": pending,
        "long_pending": pending & (age > long_pending_days),
        "reversed": appeal == 0,
        "remanded": appeal == 1,
    }
    group, months, persons = _group(sm, s["judge_id"])
    judged = pd.DataFrame({"m": months, "person_id": persons})
    for name, values in flags.items():
        judged[name] = np.bincount(group, weights=values, minlength=len(months))

    faulted = (_flag(s["fault"]) == 1) & (appeal >= 0)
    panel = _panel_faults(sm[faulted], s["judge_id"][faulted], s["panel_ids"][faulted])
    both = judged.merge(panel, how="outer", on=["m", "person_id"])
    return both.fillna(0.0)


def _panel_faults(sm: np.ndarray, judge: pd.Series, panel_ids: pd.Series) -> pd.DataFrame:
    """Faulted, overturned cases per (month, panel member), the judge excluded (连带考核)."""
    members = pd.DataFrame(
        {
            "case": np.arange(len(sm)),
            "m": sm,
            "judge": _text(judge).to_numpy(),
            "person_id": _text(panel_ids).str.split(";").to_numpy(),
        }
    ).explode("person_id")
    members["person_id"] = _text(members["person_id"]).str.strip()
    members = members[
        members["person_id"].notna()
        & (members["person_id"] != "")
        & (members["person_id"] != members["judge"])
    ].drop_duplicates(["case", "person_id"])
    faults = members.groupby(["m", "person_id"], sort=False).size().astype(float)
    return faults.rename("panel_fault").reset_index()


def _acceptance(
    m: np.ndarray, code: np.ndarray, counts: pd.DataFrame, targets: np.ndarray, width: int
) -> pd.DataFrame:
    """Closed and overturned sums over the 12 snapshot months ending with each target month,
    indexed by the target's (month, person) key."""
    closed = counts["closed"].to_numpy(dtype=float)
    appealed = (counts["reversed"] + counts["remanded"]).to_numpy(dtype=float)
    keys, sums_closed, sums_appealed = [], [], []
    for lag in range(ACCEPTANCE_WINDOW):  # twelve whole-column passes, not a loop over people
        hit = np.isin(m + lag, targets)
        keys.append((m[hit] + lag) * width + code[hit])
        sums_closed.append(closed[hit])
        sums_appealed.append(appealed[hit])
    spread = pd.DataFrame(
        {
            "window_closed": np.concatenate(sums_closed),
            "window_appealed": np.concatenate(sums_appealed),
        },
        index=np.concatenate(keys),
    )
    return spread.groupby(level=0, sort=False).sum()


def _closure_means(m: np.ndarray, key: np.ndarray, closed: pd.Series, width: int) -> np.ndarray:
    """Mean closed_count from January to each month, over the months the person was present
    (rows of one (month, person) count once)."""
    code = key % width
    first = ~pd.Index(key).duplicated()
    order = np.lexsort((m[first], code[first]))  # by person, then month
    rows = np.flatnonzero(first)[order]
    values = closed.to_numpy(dtype=float)[rows]
    group = pd.Series(code[rows] * 10_000 + m[rows] // 12)  # person and year (months from 1970)
    running = pd.Series(values).groupby(group, sort=False)
    means = (running.cumsum() / (running.cumcount() + 1)).to_numpy()
    by_key = pd.Series(means, index=key[rows])
    return by_key.reindex(key).to_numpy()
