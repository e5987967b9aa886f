"""Synthetic monthly extracts of a county court and county offices, written into the inbox layout.

Tests, the demo and the benchmarks need data that looks like what assessment offices really deliver
(Chinese headers, GB18030 next to UTF-8 with BOM, three date styles, Excel date cells, people hired,
leaving and moving mid-run, a case backlog, partial survey forms) at any scale from a town to a
prefecture city, and byte for byte reproducible so that landing and rerun tests can compare
checksums. Everything that grows with people is drawn and formatted with numpy/pandas, so 20,000
people (600,000 attendance rows a month) generate in seconds.

Without a scheme the data fit the demo schemes. With one (`--scheme town`), the roster, survey
rounds, adjustment register and nominations speak the scheme's categories, items, relations, levels
and rules, and a year of data uses every rule of it, veto rules included, so that each scheme under
scoring/schemes/ has a sample organisation that exercises it.

    python -m etl.generate --inbox DIR --people N --start 2026-01 --months 3 --seed 1 [--scheme ID]
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import re
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from etl.sample_profile import (
    ASSISTANT,
    FAST,
    JUDGE,
    LEADER,
    MIDDLE,
    PUBLIC,
    RELATIONS,
    SELF,
    STAFF,
    Form,
    Profile,
)

if TYPE_CHECKING:
    from openpyxl import Workbook

    from scoring.scheme import Scheme


# --- enumerations as written in the files --------------------------------------------------------
PRESENT, LATE, EARLY, ABSENT, LEAVE, TRIP, HOLIDAY = range(7)
STATUS_EN = np.array(
    ["present", "late", "early_leave", "absent", "leave", "business_trip", "holiday"]
)
STATUS_ZH = np.array(["正常", "迟到", "早退", "旷工", "请假", "出差", "休息日"])
FLAGS = np.array(["0", "1", ""])  # index 2: not required that day
PROCEDURE_ZH = np.array(["速裁", "简易", "普通"])  # summary, simple, ordinary
SUMMARY, SIMPLE, ORDINARY = range(3)
OUTCOME_ZH = np.array(["判决", "调解", "撤诉", "驳回", "其他", ""])  # last: pending
APPEAL_ZH = np.array(["维持", "改判", "发回重审", ""])  # upheld reversed remanded -
JUDGMENT, REVERSED, REMANDED = 0, 1, 2

# --- Chinese names and organisation --------------------------------------------------------------
SURNAMES = list(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁"
    "任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武"
) + ["欧阳", "司马", "诸葛"]
GIVEN = list(
    "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚桂英华玉萍红建文辉鹏飞斌宇浩凯秀琴云莉晨雪峰海波宁欣"
    "怡博佳嘉子梓涵轩俊志国庆春丹婷慧颖琳晓亮林鑫东阳倩蕾雨萌瑞昊天泽思雅婧"
)
RARE = list("䶮堃喆淏玥旻昇赟珺璟㛃")  # 䶮 and 㛃 exist in GB18030 but not in GBK
COUNTY_A = list("青临东南北西安永长清")
COUNTY_B = list("山河平川岭和宁水阳江")
BUREAUS = [
    "发展和改革局",
    "财政局",
    "教育局",
    "民政局",
    "司法局",
    "人力资源和社会保障局",
    "自然资源局",
    "生态环境局",
    "住房和城乡建设局",
    "交通运输局",
    "水利局",
    "农业农村局",
    "商务局",
    "文化和旅游局",
    "卫生健康局",
    "应急管理局",
    "审计局",
    "市场监督管理局",
    "统计局",
    "医疗保障局",
]
COURT_DEPTS = [
    ("立案庭", True),
    ("民事审判庭", True),
    ("刑事审判庭", True),
    ("办公室", False),
    ("执行局", True),
    ("行政审判庭", True),
    ("民事审判第二庭", True),
    ("政治部", False),
    ("审判监督庭", True),
    ("商事审判庭", True),
    ("少年家事审判庭", True),
    ("研究室", False),
    ("司法警察大队", False),
]
TOWNS = [
    "城关",
    "东关",
    "西关",
    "河口",
    "石桥",
    "马庄",
    "李集",
    "王楼",
    "张村",
    "新安",
    "柳林",
    "杨湖",
]
OFFICE_DEPTS = [
    "办公室",
    "综合科",
    "业务一科",
    "业务二科",
    "政策法规科",
    "业务三科",
    "财务审计科",
    "人事科",
]
CN_DIGITS = "零一二三四五六七八九"
PUBLIC_HOLIDAYS = {(1, 1), (5, 1), (5, 2), (5, 3)} | {(10, d) for d in range(1, 8)}
REASONS = {
    True: (
        "审判执行工作成绩突出，结案数和案件质效位居全院前列",
        "诉源治理工作成效显著，群众满意度高",
        "承办重大疑难案件，法律效果和社会效果良好",
    ),
    False: (
        "牵头推进重点项目，圆满完成年度目标任务",
        "优化营商环境工作成效显著，服务对象评价高",
        "承担急难险重任务，表现突出，群众认可度高",
    ),
}

NO_DATE = np.int64(-(10**9))  # sentinel day number for an empty date
EPOCH = dt.date(1970, 1, 1).toordinal()
FIXED_TIME = dt.datetime(2026, 1, 1)
# cases filed up to two years before the first month may still be pending in it
BACKLOG_DAYS = 730


@dataclass(frozen=True)
class Month:
    label: str
    year: int
    month: int
    start: int  # day number (days since 1970-01-01)
    end: int  # inclusive

    @property
    def days(self) -> np.ndarray:
        return np.arange(self.start, self.end + 1, dtype=np.int64)


@dataclass
class Org:
    """All units, departments and everyone who is on any month's roster (hires included)."""

    unit_id: np.ndarray
    unit_name: np.ndarray
    unit_court: np.ndarray
    unit_first_dept: np.ndarray
    unit_ndepts: np.ndarray
    dept_id: np.ndarray
    dept_name: np.ndarray
    dept_unit: np.ndarray
    dept_trial: np.ndarray
    dept: np.ndarray  # (months, people): department of each person in each month
    cat: np.ndarray  # role: LEADER ... ASSISTANT
    is_head: np.ndarray
    first_month: np.ndarray
    last_month: np.ndarray
    active_from: np.ndarray
    active_to: np.ndarray
    stable: np.ndarray  # never leaves or moves: may sit on case panels
    pid: np.ndarray
    name: np.ndarray
    coef: np.ndarray
    email: np.ndarray
    slack: np.ndarray  # scales lateness and absence
    forgetful: np.ndarray  # scales missed duty reports
    quality: np.ndarray  # what raters see
    public: np.ndarray  # serves the public: rated by service users
    keys: np.ndarray  # rater keys: people first, then outside raters
    leniency: np.ndarray  # per rater key
    slot: np.ndarray  # role, or FAST for a judge of 立案庭 when the scheme ranks them apart

    @property
    def n(self) -> int:
        return len(self.cat)

    def present(self, m: int) -> np.ndarray:
        return np.flatnonzero((self.first_month <= m) & (self.last_month >= m))


# --- small helpers -------------------------------------------------------------------------------
def _months(start: str, months: int) -> list[Month]:
    if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", start) or months < 1:
        raise ValueError(f"start must be YYYY-MM and months >= 1, got {start!r}, {months}")
    first = np.datetime64(start, "M")
    out = []
    for i in range(months):
        m = first + i
        begin = int(m.astype("datetime64[D]").astype(np.int64))
        end = int((m + 1).astype("datetime64[D]").astype(np.int64)) - 1
        out.append(Month(str(m), int(str(m)[:4]), int(str(m)[5:]), begin, end))
    return out


def _cn_number(n: int) -> str:
    if n < 10:
        return CN_DIGITS[n]
    if n < 100:
        tens = "" if n < 20 else CN_DIGITS[n // 10]
        return tens + "十" + (CN_DIGITS[n % 10] if n % 10 else "")
    return str(n)


def _fmt_dates(days: np.ndarray, style: str) -> np.ndarray:
    """Format only the distinct days in Python; a column of 600,000 dates has at most 31 of them."""
    out = np.full(len(days), "", dtype=object)
    ok = days != NO_DATE
    uniq, inv = np.unique(days[ok], return_inverse=True)
    fmt = {
        "iso": "{:%Y-%m-%d}",
        "slash": "{0.year}/{0.month}/{0.day}",
        "zh": "{0.year}年{0.month}月{0.day}日",
    }
    text = [fmt[style].format(dt.date.fromordinal(EPOCH + int(d))) for d in uniq]
    out[ok] = np.array(text, dtype=object)[inv]
    return out


def _table(columns: dict[str, object]) -> pd.DataFrame:
    """Object columns: making arrow strings of 600,000 rows only to print them costs a second."""
    return pd.DataFrame(columns, dtype=object)


def _split(total: int, weights: np.ndarray) -> np.ndarray:
    """Integer parts of `total` proportional to weights, summing exactly (largest remainder)."""
    raw = total * weights / weights.sum()
    parts = np.floor(raw).astype(np.int64)
    parts[np.argsort(parts - raw, kind="stable")[: total - parts.sum()]] += 1
    return parts


def _cat_concat(*parts: np.ndarray | str) -> np.ndarray:
    out = parts[0]
    for p in parts[1:]:
        out = np.char.add(out, p)
    return out


# --- organisation --------------------------------------------------------------------------------
ORG_KINDS = ("mixed", "court", "office")


def _unit_sizes(
    rng: np.random.Generator, people: int, kind: str = "mixed"
) -> tuple[np.ndarray, np.ndarray]:
    """About one unit per 150 people, ~30% of them courts (all or none for a court or office
    organisation); a small mixed population is one court."""
    if people < 20:
        return np.array([people]), np.array([kind != "office"])
    n = max(2, round(people / 150))
    courts = {"mixed": max(1, round(n * 0.3)), "court": n, "office": 0}[kind]
    sizes = 5 + _split(people - 5 * n, rng.dirichlet(np.full(n, 8.0)))
    return sizes, np.arange(n) < courts


def _dept_sizes(rng: np.random.Generator, size: int) -> np.ndarray:
    """5–25 people a department; any unit of 10 or more has two, so a transfer is possible."""
    if size < 10:
        return np.array([size])
    lo, hi = max(2, -(-size // 25)), size // 5
    k = int(np.clip(round(size / rng.uniform(10, 16)), lo, hi))
    sizes = 5 + rng.multinomial(size - 5 * k, np.full(k, 1 / k))
    while sizes.max() > 25:
        big, small = np.argmax(sizes), np.argmin(sizes)
        sizes[small] += sizes[big] - 25
        sizes[big] = 25
    return sizes


def _dept_names(court: bool, k: int) -> list[tuple[str, bool]]:
    if court:
        extra = [(f"{t}人民法庭", True) for t in TOWNS] + [
            (f"第{_cn_number(i)}人民法庭", True) for i in range(1, 99)
        ]
        return (COURT_DEPTS + extra)[:k]
    extra = [f"业务{_cn_number(i)}科" for i in range(4, 100)]
    return [(n, False) for n in (OFFICE_DEPTS + extra)[:k]]


def _unit_names(court: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    counties = [a + b for a in COUNTY_A for b in COUNTY_B]
    ids, names, c_no, o_no = [], [], 0, 0
    for is_court in court.tolist():
        if is_court:
            c_no += 1
            ids.append(f"court{c_no:02d}")
            names.append(f"{counties[(c_no - 1) % 100]}县人民法院")
        else:
            o_no += 1
            county = counties[((o_no - 1) // len(BUREAUS)) % 100]
            ids.append(f"office{o_no:02d}")
            names.append(f"{county}县{BUREAUS[(o_no - 1) % len(BUREAUS)]}")
    return np.array(ids), np.array(names)


def _categories(
    rng: np.random.Generator, court: bool, dept_local: np.ndarray, trial: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Leaders 1–3; courts ~45% judges (trial divisions), rest assistants; offices ~20% middle."""
    s = len(dept_local)
    head = np.r_[True, dept_local[1:] != dept_local[:-1]]
    cat = np.full(s, ASSISTANT if court else STAFF)
    rest = ~head
    if court:
        trial_heads = head & trial
        share = (0.45 * s - trial_heads.sum()) / max(1, (rest & trial).sum())
        cat[trial_heads | (rest & trial & (rng.random(s) < share))] = JUDGE
    else:
        share = (0.2 * s - head.sum()) / max(1, rest.sum())
        cat[head | (rest & (rng.random(s) < share))] = MIDDLE
    n_lead = 1 if s < 30 else int(rng.integers(1, 3)) if s < 80 else int(rng.integers(2, 4))
    candidates = np.flatnonzero(rest) if rest.sum() >= n_lead else np.arange(s)
    cat[rng.choice(candidates, size=min(n_lead, len(candidates)), replace=False)] = LEADER
    return cat, head & (cat != LEADER)


def _structure(rng: np.random.Generator, people: int, kind: str) -> dict[str, np.ndarray]:
    sizes, court = _unit_sizes(rng, people, kind)
    unit_id, unit_name = _unit_names(court)
    d_id, d_name, d_unit, d_trial, first, ndep = [], [], [], [], [], []
    person_dept, cat, head = [], [], []
    for u, (size, is_court) in enumerate(zip(sizes.tolist(), court.tolist(), strict=True)):
        ds = _dept_sizes(rng, size)
        first.append(len(d_id))
        ndep.append(len(ds))
        for k, (name, trial) in enumerate(_dept_names(is_court, len(ds)), start=1):
            d_id.append(f"{unit_id[u]}-d{k}")
            d_name.append(name)
            d_unit.append(u)
            d_trial.append(trial)
        local = np.repeat(np.arange(len(ds)), ds)
        c, h = _categories(rng, is_court, local, np.array(d_trial[first[-1] :])[local])
        person_dept.append(first[-1] + local)
        cat.append(c)
        head.append(h)
    return {
        "unit_id": unit_id,
        "unit_name": unit_name,
        "unit_court": court,
        "unit_first_dept": np.array(first),
        "unit_ndepts": np.array(ndep),
        "dept_id": np.array(d_id),
        "dept_name": np.array(d_name),
        "dept_unit": np.array(d_unit),
        "dept_trial": np.array(d_trial),
        "dept0": np.concatenate(person_dept),
        "cat": np.concatenate(cat),
        "is_head": np.concatenate(head),
    }


def _transfer_targets(
    rng: np.random.Generator, s: dict[str, np.ndarray], depts: np.ndarray
) -> np.ndarray:
    """Another department of the same unit, or one of another unit of the same kind; -1 if none."""
    unit = s["dept_unit"][depts]
    k = s["unit_ndepts"][unit]
    first = s["unit_first_dept"][unit]
    same = first + (depts - first + 1 + rng.integers(0, np.maximum(k - 1, 1))) % k
    kind = s["unit_court"][unit]
    target = np.where(k >= 2, same, -1)
    for is_court in (True, False):
        group = np.flatnonzero(s["unit_court"] == is_court)
        sel = (kind == is_court) & ((k < 2) | (rng.random(len(depts)) < 0.2)) & (len(group) >= 2)
        pos = np.searchsorted(group, unit[sel])
        other = group[
            (pos + 1 + rng.integers(0, max(len(group) - 1, 1), size=sel.sum())) % len(group)
        ]
        target[sel] = s["unit_first_dept"][other] + rng.integers(0, s["unit_ndepts"][other])
    return target


def _changes(
    rng: np.random.Generator, s: dict[str, np.ndarray], people: int, months: list[Month]
) -> dict[str, np.ndarray]:
    """Leavers every month, hires and transfers from the second month: no roster is static."""
    n_m = len(months)
    cat, head, dept0 = s["cat"], s["is_head"], s["dept0"]
    leave_n = np.maximum(1, rng.binomial(people, 0.004, size=n_m))
    hire_n = np.maximum(1, rng.binomial(people, 0.004, size=n_m)) * (np.arange(n_m) > 0)
    move_n = np.maximum(1, rng.binomial(people, 0.003, size=n_m)) * (np.arange(n_m) > 0)
    pool = rng.permutation(np.flatnonzero(~head & (cat != LEADER) & (cat != JUDGE)))
    leavers = pool[: leave_n.sum()]
    movers = pool[len(leavers) : len(leavers) + move_n.sum()]
    leave_month = np.repeat(np.arange(n_m), leave_n)[: len(leavers)]
    move_month = np.repeat(np.arange(n_m), move_n)[: len(movers)]
    starts = np.array([m.start for m in months])
    ends = np.array([m.end for m in months])

    last = np.full(people, n_m - 1)
    last[leavers] = leave_month
    active_to = np.full(people, NO_DATE)
    active_to[leavers] = np.minimum(
        starts[leave_month] + rng.integers(2, 26, size=len(leavers)), ends[leave_month]
    )
    history = starts[0] - rng.integers(30, 26 * 365, size=people)
    active_from = np.where(rng.random(people) < 0.5, history, NO_DATE)

    hires = int(hire_n.sum())
    hire_month = np.repeat(np.arange(n_m), hire_n)
    hire_dept = rng.integers(0, len(s["dept_id"]), size=hires)
    hire_cat = np.where(s["unit_court"][s["dept_unit"][hire_dept]], ASSISTANT, STAFF)
    dept = np.tile(np.concatenate([dept0, hire_dept]), (n_m, 1))
    target = _transfer_targets(rng, s, dept0[movers])
    moved = (np.arange(n_m)[:, None] >= move_month[None, :]) & (target >= 0)
    dept[:, movers] = np.where(moved, target, dept[:, movers])
    stable = np.ones(people, bool)
    stable[leavers] = stable[movers] = False
    units = ("unit_id", "unit_name", "unit_court", "unit_first_dept", "unit_ndepts")
    depts = ("dept_id", "dept_name", "dept_unit", "dept_trial")
    return {k: s[k] for k in units + depts} | dict(
        dept=dept,
        cat=np.concatenate([cat, hire_cat]),
        is_head=np.r_[head, np.zeros(hires, bool)],
        first_month=np.r_[np.zeros(people, int), hire_month],
        last_month=np.r_[last, np.full(hires, n_m - 1)],
        active_from=np.r_[active_from, starts[hire_month] + rng.integers(4, 24, size=hires)],
        active_to=np.r_[active_to, np.full(hires, NO_DATE)],
        stable=np.r_[stable, np.zeros(hires, bool)],
    )


def _names(rng: np.random.Generator, n: int) -> np.ndarray:
    weights = 1 / (np.arange(len(SURNAMES)) + 8.0)
    surname = np.array(SURNAMES)[rng.choice(len(SURNAMES), size=n, p=weights / weights.sum())]
    given = np.array(GIVEN)
    first = given[rng.integers(0, len(GIVEN), size=n)]
    second = np.where(rng.random(n) < 0.7, given[rng.integers(0, len(GIVEN), size=n)], "")
    rare = np.array(RARE)[rng.integers(0, len(RARE), size=n)]
    second = np.where(rng.random(n) < 0.004, rare, second)
    if n >= 20:  # one 䶮 at least: a GBK decoder must fail on the files that carry names
        second[rng.integers(0, n)] = "䶮"
    return _cat_concat(surname, first, second)


def _people_attributes(
    rng: np.random.Generator, cat: np.ndarray, n_units: int
) -> dict[str, np.ndarray]:
    """Names, ids, pay coefficients and the hidden traits that make attendance and ratings vary."""
    n = len(cat)
    pid = np.char.zfill(np.arange(1, n + 1).astype(str), max(6, len(str(n))))
    name = _names(rng, n)
    coef_choice = {
        LEADER: ([1.5], [1.0]),
        MIDDLE: ([1.2, 1.5], [0.8, 0.2]),
        STAFF: ([0.8, 1.0], [0.3, 0.7]),
        JUDGE: ([1.0, 1.2], [0.4, 0.6]),
        ASSISTANT: ([0.8, 1.0], [0.5, 0.5]),
    }
    coef = np.zeros(n)
    for c, (values, p) in coef_choice.items():
        coef[cat == c] = rng.choice(values, size=(cat == c).sum(), p=p)
    email = np.where(rng.random(n) < 0.03, "", _cat_concat("p", pid, "@example.gov.cn"))
    traits = {
        "slack": np.clip(rng.lognormal(0, 0.7, size=n), 0.2, 5),
        "forgetful": np.clip(rng.lognormal(0, 0.8, size=n), 0.2, 6),
        "quality": rng.normal(84, 5, size=n),
        "public": rng.random(n) < 0.3,
    }
    # raters: the people, 5 county leaders, 30 service users per unit; an odd multiplier
    # modulo 2**48 is a bijection, so keys look random yet never collide
    n_keys = n + 5 + 30 * n_units
    mult = np.uint64(int(rng.integers(1, 2**46)) * 2 + 1)
    add = np.uint64(int(rng.integers(0, 2**47)))
    raw = (np.arange(n_keys, dtype=np.uint64) * mult + add) & np.uint64(2**48 - 1)
    keys = np.char.mod("rk-%012x", raw)
    leniency = rng.normal(0, 3, size=n_keys)
    return dict(pid=pid, name=name, coef=coef, email=email, keys=keys, leniency=leniency) | traits


def build_org(
    rng: np.random.Generator,
    people: int,
    months: list[Month],
    kind: str = "mixed",
    fast_track: bool = False,
) -> Org:
    """Units and departments, then who is where each month, then the people themselves."""
    where = _changes(rng, _structure(rng, people, kind), people, months)
    cat = where["cat"]
    fast = fast_track & (cat == JUDGE) & (where["dept_name"][where["dept"][0]] == "立案庭")
    traits = _people_attributes(rng, cat, len(where["unit_id"]))
    return Org(**where, **traits, slot=np.where(fast, FAST, cat))


# --- roster and attendance -----------------------------------------------------------------------
def roster(org: Org, m: int, month: Month, profile: Profile) -> pd.DataFrame:
    """The first month writes category names in Chinese, the others the scheme's ids."""
    p = org.present(m)
    d = org.dept[m, p]
    to = org.active_to[p]
    return _table(
        {
            "工号": org.pid[p],
            "姓名": org.name[p],
            "单位编码": org.unit_id[org.dept_unit[d]],
            "单位名称": org.unit_name[org.dept_unit[d]],
            "部门编码": org.dept_id[d],
            "部门": org.dept_name[d],
            "人员类别": (profile.cat_names if m == 0 else profile.cat_ids)[org.slot[p]],
            "岗位系数": org.coef[p],
            "邮箱": org.email[p],
            "入职日期": _fmt_dates(org.active_from[p], "iso"),
            "离岗日期": _fmt_dates(np.where(to <= month.end, to, NO_DATE), "iso"),
        }
    )


def _active_span(org: Org, p: np.ndarray, month: Month) -> tuple[np.ndarray, np.ndarray]:
    lo = np.maximum(org.active_from[p], month.start)
    hi = np.where(org.active_to[p] == NO_DATE, month.end, np.minimum(org.active_to[p], month.end))
    return lo, hi


def _day_off(month: Month) -> np.ndarray:
    days = month.days
    weekend = (days + 3) % 7 >= 5  # 1970-01-01 was a Thursday
    fixed = np.array([(month.month, d) in PUBLIC_HOLIDAYS for d in range(1, len(days) + 1)])
    return weekend | fixed


def _statuses(rng: np.random.Generator, org: Org, p: np.ndarray, off: np.ndarray) -> np.ndarray:
    """Per-person slackness scales lateness and absence; leave and trips are the same for all."""
    f = org.slack[p][:, None]
    cuts = np.cumsum(np.broadcast_arrays(0.002 * f, 0.02 * f, 0.01 * f, 0.025, 0.015), axis=0)
    u = rng.random((len(p), len(off)))
    order = np.array([ABSENT, LATE, EARLY, LEAVE, TRIP, PRESENT])
    status = order[(u[None] >= cuts).sum(axis=0)]
    status[:, off] = HOLIDAY
    return status


def _duty(
    rng: np.random.Generator,
    org: Org,
    p: np.ndarray,
    status: np.ndarray,
    active: np.ndarray,
    off: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Filing is required on days at work; a few people miss two workdays in a row (streak rule)."""
    filed = (rng.random(status.shape) >= 0.02 * org.forgetful[p][:, None]).astype(np.int8)
    pairs = np.flatnonzero(~off[:-1] & ~off[1:])
    if len(p) and len(pairs):
        full = active.all(axis=1)
        who = np.flatnonzero((rng.random(len(p)) < 0.015) & full)
        if len(who) == 0 and full.any():
            who = rng.choice(np.flatnonzero(full), size=1)
        day = pairs[rng.integers(0, len(pairs), size=len(who))]
        for shift in (0, 1):
            status[who, day + shift] = PRESENT
            filed[who, day + shift] = 0
    filed[status == ABSENT] = 0
    filed[(status == HOLIDAY) | (status == LEAVE)] = 2
    reviewed = np.where(filed == 1, (rng.random(status.shape) < 0.95).astype(np.int8), 2)
    return filed, reviewed


def attendance(
    rng: np.random.Generator, org: Org, m: int, month: Month
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Court (Chinese labels, 2026/3/5) and office (English codes, ISO dates) rows, person-major."""
    p = org.present(m)
    days = month.days
    lo, hi = _active_span(org, p, month)
    active = (days[None, :] >= lo[:, None]) & (days[None, :] <= hi[:, None])
    off = _day_off(month)
    status = _statuses(rng, org, p, off)
    filed, reviewed = _duty(rng, org, p, status, active, off)
    pi, di = np.nonzero(active)
    court = org.unit_court[org.dept_unit[org.dept[m, p]]][pi]
    cols = (
        org.pid[p][pi],
        days[di],
        status[pi, di],
        FLAGS[filed[pi, di]],
        FLAGS[reviewed[pi, di]],
    )
    pid, day, st, fl, rv = (c[court] for c in cols)
    court_df = _table(
        {
            "工号": pid,
            "日期": _fmt_dates(day, "slash"),
            "考勤结果": STATUS_ZH[st],
            "履职填报": fl,
            "领导审阅": rv,
        }
    )
    pid, day, st, fl, rv = (c[~court] for c in cols)
    office_df = _table(
        {
            "person_id": pid,
            "date": _fmt_dates(day, "iso"),
            "status": STATUS_EN[st],
            "duty_filed": fl,
            "duty_reviewed": rv,
        }
    )
    return court_df, office_df


# --- groups: who rates whom, who sits on a panel -------------------------------------------------
@dataclass(frozen=True)
class Groups:
    """Members of each group in shuffled order: a window of k after a random start is a sample."""

    members: np.ndarray
    start: np.ndarray
    size: np.ndarray
    pos: np.ndarray  # position of an entity inside its group, -1 if in none

    @classmethod
    def build(
        cls,
        rng: np.random.Generator,
        key: np.ndarray,
        members: np.ndarray,
        n_groups: int,
        n: int,
    ) -> Groups:
        order = np.lexsort((rng.random(len(members)), key))
        mem, k = members[order], key[order]
        size = np.bincount(k, minlength=n_groups)
        start = np.r_[0, np.cumsum(size)[:-1]]
        pos = np.full(n, -1)
        pos[mem] = np.arange(len(mem)) - start[k]
        return cls(mem, start, size, pos)

    def draw(
        self,
        rng: np.random.Generator,
        anchor: np.ndarray,
        group: np.ndarray,
        k: np.ndarray,
        exclude: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Up to k distinct members of each anchor's group, never the excluded position (itself)."""
        skip = np.full(len(anchor), -1) if exclude is None else exclude
        m = self.size[group] - (skip >= 0)
        k = np.minimum(k, m)
        rep = np.repeat(np.arange(len(anchor)), k)
        j = np.arange(len(rep)) - np.repeat(np.cumsum(k) - k, k)
        r = rng.integers(0, np.maximum(m, 1))
        pos = (r[rep] + j) % np.maximum(m[rep], 1)
        pos = pos + ((skip[rep] >= 0) & (pos >= skip[rep]))
        return anchor[rep], self.members[self.start[group[rep]] + pos]


# --- cases ---------------------------------------------------------------------------------------
def _case_type(dept_name: np.ndarray) -> np.ndarray:
    kinds = np.full(len(dept_name), "民初", dtype=object)
    for word, kind in (("刑事", "刑初"), ("行政", "行初"), ("执行", "执")):
        kinds[np.char.find(dept_name.astype(str), word) >= 0] = kind
    return kinds.astype(str)


def _year(days: np.ndarray) -> np.ndarray:
    return days.astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970


def _case_numbers(org: Org, judge: np.ndarray, filed: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """(year)鲁01xx民初123号, numbered per court, year and kind in filing order: unique."""
    dept = org.dept[0, judge]
    unit = org.dept_unit[dept]
    kinds, kind_idx = np.unique(_case_type(org.dept_name)[dept], return_inverse=True)
    year = _year(filed)
    group = (unit * 10_000 + year) * len(kinds) + kind_idx
    # one integer key sorts much faster than np.lexsort over 1.5 million cases
    order = np.argsort(group * 2**20 + filed - filed.min())
    g = group[order]
    new = np.r_[True, g[1:] != g[:-1]]
    idx = np.arange(len(g))
    seq = np.empty(len(g), np.int64)
    seq[order] = idx - np.maximum.accumulate(np.where(new, idx, 0)) + 1
    court_no = np.cumsum(org.unit_court) * org.unit_court
    code = np.char.add("鲁01", np.char.zfill(court_no.astype(str), 2))[unit[keep]]
    kind = kinds[kind_idx[keep]]
    return _cat_concat("(", year[keep].astype(str), ")", code, kind, seq[keep].astype(str), "号")


def _bench(org: Org) -> np.ndarray:
    """Judges and assistants who stay all run: a panel never names someone off the roster."""
    return np.flatnonzero(org.stable & np.isin(org.cat, [JUDGE, ASSISTANT]))


def _panels(
    rng: np.random.Generator, org: Org, judge: np.ndarray, ordinary: np.ndarray
) -> np.ndarray:
    """The judge plus two other stable judges or assistants of the same court, `;`-separated."""
    sit = _bench(org)
    unit_of = org.dept_unit[org.dept[0]]
    g = Groups.build(rng, unit_of[sit], sit, len(org.unit_id), org.n)
    j = judge[ordinary]
    u = unit_of[j]
    n = g.size[u]
    a = rng.integers(0, np.maximum(n - 1, 1))
    a = a + (a >= g.pos[j])
    lo, hi = np.minimum(a, g.pos[j]), np.maximum(a, g.pos[j])
    b = rng.integers(0, np.maximum(n - 2, 1))
    b = b + (b >= lo)
    b = b + (b >= hi)
    panel = np.full(len(judge), "", dtype=object)
    members = _cat_concat(
        org.pid[j],
        ";",
        org.pid[g.members[g.start[u] + a]],
        ";",
        org.pid[g.members[g.start[u] + b]],
    )
    panel[ordinary] = members
    return panel


def case_universe(
    rng: np.random.Generator, org: Org, months: list[Month]
) -> dict[str, np.ndarray] | None:
    """Every case any month of the run can show, with its whole future (closing, appeal, review)."""
    judges = np.flatnonzero(org.cat == JUDGE)
    if len(judges) == 0:
        return None
    t0, t1 = months[0].start - BACKLOG_DAYS, months[-1].end
    per_month = rng.uniform(12, 28, size=len(judges))
    judge = np.repeat(judges, rng.poisson(per_month * (t1 - t0 + 1) / 30.44))
    n = len(judge)
    filed = rng.integers(t0, t1 + 1, size=n)
    unit_of = org.dept_unit[org.dept[0, judge]]
    pool = np.bincount(org.dept_unit[org.dept[0, _bench(org)]], minlength=len(org.unit_id))
    proc = rng.choice(3, size=n, p=[0.3, 0.45, 0.25])
    proc = np.where((proc == ORDINARY) & (pool[unit_of] < 3), SIMPLE, proc)
    median, sigma = (
        np.array([18.0, 40.0, 85.0])[proc],
        np.array([0.45, 0.5, 0.55])[proc],
    )
    days = np.clip(np.exp(np.log(median) + sigma * rng.standard_normal(n)), 10, 240)
    days = np.where(
        (proc == ORDINARY) & (rng.random(n) < 0.02),
        rng.integers(370, 720, size=n),
        days,
    )
    closed = filed + np.rint(days).astype(np.int64)
    outcome = rng.choice(5, size=n, p=[0.5, 0.25, 0.15, 0.05, 0.05])
    judgment = outcome == JUDGMENT
    in_court = judgment & (rng.random(n) < np.array([0.6, 0.35, 0.2])[proc])
    appealed = judgment & (rng.random(n) < np.array([0.05, 0.1, 0.2])[proc])
    decided = np.where(appealed, closed + rng.integers(30, 123, size=n), NO_DATE)
    appeal = np.where(appealed, rng.choice(3, size=n, p=[0.76, 0.12, 0.12]), 3)
    fault = (
        (proc == ORDINARY) & ((appeal == REVERSED) | (appeal == REMANDED)) & (rng.random(n) < 0.5)
    )
    keep = (closed >= months[0].start) | (appealed & (decided >= months[0].start))
    case_id = np.full(n, "", dtype=object)
    case_id[keep] = _case_numbers(org, judge, filed, keep)
    order = np.flatnonzero(keep)[np.lexsort((judge[keep], filed[keep], unit_of[keep]))]
    columns = {
        "case_id": case_id,
        "judge": judge,
        "filed": filed,
        "closed": closed,
        "proc": proc,
        "outcome": outcome,
        "in_court": in_court,
        "decided": decided,
        "appeal": appeal,
        "fault": fault,
    }
    kept = {k: v[order] for k, v in columns.items()}
    kept["panel"] = _panels(rng, org, kept["judge"], kept["proc"] == ORDINARY)
    return kept


def cases(org: Org, universe: dict[str, np.ndarray], month: Month) -> pd.DataFrame:
    """A month's extract: every case alive in the month or with an appeal decided in it.

    Each case is shown as the court's system knew it at the month's end: no closing date, outcome
    or appeal result that only happened later.
    """
    s, e = month.start, month.end
    u = universe
    dec = u["decided"]
    c = {
        k: v[((u["filed"] <= e) & (u["closed"] >= s)) | ((dec >= s) & (dec <= e))]
        for k, v in u.items()
    }
    done = c["closed"] <= e
    known = (c["decided"] <= e) & (c["decided"] != NO_DATE)
    return _table(
        {
            "案号": c["case_id"],
            "承办部门": org.dept_id[org.dept[0, c["judge"]]],
            "承办法官": org.pid[c["judge"]],
            "合议庭成员": c["panel"],
            "立案日期": _fmt_dates(c["filed"], "zh"),
            "结案日期": _fmt_dates(np.where(done, c["closed"], NO_DATE), "zh"),
            "程序": PROCEDURE_ZH[c["proc"]],
            "结案方式": OUTCOME_ZH[np.where(done, c["outcome"], 5)],
            "当庭宣判": (done & c["in_court"]).astype(int),
            "上诉结果": APPEAL_ZH[np.where(known, c["appeal"], 3)],
            "二审结案日期": _fmt_dates(np.where(known, c["decided"], NO_DATE), "zh"),
            "评查过错": (known & c["fault"]).astype(int),
        }
    )


# --- surveys -------------------------------------------------------------------------------------
def _rating_pairs(
    rng: np.random.Generator, org: Org, m: int, extra: int = 0, public_all: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ratee, rater, relation) of one round; a rater rates a ratee once, in the closest relation.

    Cadres (leaders, middle cadres, heads of department) rate everyone below them and each other;
    the rank and file rate their own department's rank and file, so a department head is never
    drawn twice for one ratee, once as superior and once as peer. Each relation draws 3 raters or
    more (`extra` more, for a scheme that needs more to count a relation); the public rates those
    who serve it, or everyone (`public_all`).
    """
    p = org.present(m)
    dept = org.dept[m, p]
    unit = org.dept_unit[dept]
    cat = org.cat[p]
    n_keys, n_units, n_depts = len(org.keys), len(org.unit_id), len(org.dept_id)

    def groups(mask: np.ndarray, key: np.ndarray, n_groups: int) -> Groups:
        return Groups.build(rng, key[mask], p[mask], n_groups, n_keys)

    lead = cat == LEADER
    boss = lead | (cat == MIDDLE) | org.is_head[p]
    mid = boss & ~lead
    cadres, crowd_unit, crowd_dept = (
        groups(boss, unit, n_units),
        groups(~boss, unit, n_units),
        groups(~boss, dept, n_depts),
    )
    county = Groups.build(rng, np.zeros(5, np.int64), org.n + np.arange(5), 1, n_keys)
    public_ids = org.n + 5 + np.arange(30 * n_units)
    public = Groups.build(rng, (public_ids - org.n - 5) // 30, public_ids, n_units, n_keys)

    def some(lo: int, hi: int, mask: np.ndarray) -> np.ndarray:
        return rng.integers(lo + extra, hi + extra + 1, size=mask.sum())

    pub = org.public[p] | public_all
    parts = [
        (p, p, 0),
        (
            *cadres.draw(rng, p[~lead], unit[~lead], some(3, 3, ~lead), cadres.pos[p[~lead]]),
            1,
        ),
        (
            *county.draw(rng, p[lead], np.zeros(lead.sum(), np.int64), some(3, 3, lead)),
            1,
        ),
        (*crowd_unit.draw(rng, p[lead], unit[lead], some(3, 8, lead)), 2),
        (*crowd_dept.draw(rng, p[mid], dept[mid], some(3, 6, mid)), 2),
        (
            *crowd_dept.draw(
                rng, p[~boss], dept[~boss], some(3, 6, ~boss), crowd_dept.pos[p[~boss]]
            ),
            3,
        ),
        (
            *cadres.draw(rng, p[boss], unit[boss], some(3, 6, boss), cadres.pos[p[boss]]),
            3,
        ),
        (*public.draw(rng, p[pub], unit[pub], some(3, 5, pub)), 4),
    ]
    ratee = np.concatenate([a for a, _, _ in parts])
    rater = np.concatenate([b for _, b, _ in parts])
    rel = np.concatenate([np.full(len(a), r) for a, _, r in parts])
    _, first = np.unique(ratee * n_keys + rater, return_index=True)
    keep = np.sort(first)
    return ratee[keep], rater[keep], rel[keep]


def _period(month: Month, kind: str) -> tuple[str, str]:
    """The label of the month, quarter, half or year ending in `month`, and its survey_id prefix."""
    y, q, h = month.year, (month.month - 1) // 3 + 1, 1 if month.month <= 6 else 2
    return {
        "month": (month.label, month.label),
        "quarter": (f"{y}-Q{q}", f"{y}Q{q}"),
        "half": (f"{y}-H{h}", f"{y}H{h}"),
        "year": (str(y), str(y)),
    }[kind]


def _ends(month: Month, kind: str) -> bool:
    """Whether `month` is the last month of its month, quarter, half or year."""
    return month.month % {"month": 1, "quarter": 3, "half": 6, "year": 12}[kind] == 0


def _rank_in_group(group: np.ndarray) -> np.ndarray:
    """0, 1, 2, ... within each value of `group`, in the order the rows come."""
    order = np.argsort(group, kind="stable")
    g = group[order]
    rank = np.empty(len(g), np.int64)
    rank[order] = np.arange(len(g)) - np.searchsorted(g, g)
    return rank


def surveys(
    rng: np.random.Generator, org: Org, m: int, month: Month, forms: Sequence[Form], cadence: str
) -> pd.DataFrame:
    """One round (one survey_id a unit) of the components held at `cadence`, on one form each.

    Raters are drawn once for the round; each component keeps the ratees of its categories and
    the relations it weights. Self-ratings cover all of a component's items; other raters score
    the 2–3 items they can judge.
    """
    extra = max(0, max(f.min_raters for f in forms) - 3)
    pairs = _rating_pairs(rng, org, m, extra, any(f.public_all for f in forms))
    period, prefix = _period(month, cadence)
    tables = [_ratings(rng, org, m, f, pairs, period, prefix) for f in forms]
    return tables[0] if len(tables) == 1 else pd.concat(tables, ignore_index=True)


def _ratings(
    rng: np.random.Generator,
    org: Org,
    m: int,
    form: Form,
    pairs: tuple[np.ndarray, np.ndarray, np.ndarray],
    period: str,
    prefix: str,
) -> pd.DataFrame:
    """The rows of one component: a rating is a number, or now and then the nearest level."""
    keep = form.rated[org.slot[pairs[0]]] & form.relations[pairs[2]]
    ratee, rater, rel = (a[keep] for a in pairs)
    if form.thin:  # ~3% of (ratee, relation) keep min_raters − 1 raters: suppression shows
        group = ratee * len(RELATIONS) + rel
        uniq, inv = np.unique(group, return_inverse=True)
        few = (rng.random(len(uniq)) < 0.03) & (uniq % len(RELATIONS) != SELF)
        keep = ~few[inv] | (_rank_in_group(inv) < form.min_raters - 1)
        ratee, rater, rel = ratee[keep], rater[keep], rel[keep]
    k = len(form.items)
    n_items = np.where(rel == SELF, k, np.minimum(rng.integers(2, 4, size=len(rel)), k))
    rank = np.argsort(np.argsort(rng.random((len(rel), k)), axis=1), axis=1)
    pair, item = np.nonzero(rank < n_items[:, None])
    raw = (org.quality[ratee] + org.leniency[rater] + 5 * (rel == SELF))[pair] + rng.normal(
        0, 4, size=len(pair)
    )
    score = np.clip(np.rint(raw), 40, 100).astype(int)
    as_level = (rng.random(len(rel)) < np.where(rel == PUBLIC, 0.6, 0.05))[pair]
    text = score.astype(str)
    if len(form.levels):
        text = np.where(as_level, form.levels[np.digitize(score, form.floors)], text)
    unit = org.dept_unit[org.dept[m, ratee[pair]]]
    order = np.lexsort((item, rater[pair], rel[pair], ratee[pair], unit))
    return _table(
        {
            "survey_id": np.char.add(f"{prefix}-", org.unit_id[unit])[order],
            "period": period,
            "rater_key": org.keys[rater[pair]][order],
            "relation": RELATIONS[rel[pair]][order],
            "ratee_id": org.pid[ratee[pair]][order],
            "item": form.items[item][order],
            "score": text[order],
        }
    )


# --- adjustments and nominations -----------------------------------------------------------------
def adjustments(
    rng: np.random.Generator,
    org: Org,
    m: int,
    month: Month,
    profile: Profile,
    vetoes: np.ndarray,
    barred: np.ndarray,
) -> pd.DataFrame:
    """~5% of people get a bonus or deduction; `vetoes` (indices of veto rules) pick people who
    are not `barred`. A scheme's sample also names each rule every sixth month of the run, so
    that any six months use the whole register."""
    p = org.present(m)
    plain = np.array([r for r in profile.rules if not r.veto], dtype=object)
    who, rule = np.zeros(0, np.int64), np.zeros(0, np.int64)
    points, count, note = np.zeros(0), np.zeros(0, np.int64), np.zeros(0, str)
    if len(plain):
        who = p[rng.random(len(p)) < 0.05]
        if len(who) == 0:
            who = rng.choice(p, size=1)
        share = np.array([r.share for r in plain])
        rule = rng.choice(len(plain), size=len(who), p=share / share.sum())
        if profile.exercise:
            turn = np.flatnonzero(np.arange(len(plain)) % 6 == m % 6)
            who, rule = np.r_[who, rng.choice(p, size=len(turn))], np.r_[rule, turn]
        fixed = np.array([np.nan if r.points is None else r.points for r in plain])[rule]
        ranged = np.full(len(who), np.nan)
        for i, r in enumerate(plain):
            if r.grid:
                ranged = np.where(rule == i, rng.choice(np.array(r.grid), size=len(who)), ranged)
        blank = rng.random(len(who)) >= 0.3  # a fixed rule's points are usually left blank
        points = np.where(np.isnan(fixed), ranged, np.where(blank, np.nan, fixed))
        count = rng.choice([1, 2, 3], size=len(who), p=[0.85, 0.1, 0.05])
        notes = [np.array(r.notes)[rng.integers(0, len(r.notes), size=len(who))] for r in plain]
        note = np.array(notes)[rule, np.arange(len(who))]
    pool = p[~np.isin(p, barred)]
    veto = rng.choice(pool, size=min(len(vetoes), len(pool)), replace=False)
    vrules = np.array([r for r in profile.rules if r.veto], dtype=object)[vetoes[: len(veto)]]
    rules = np.r_[plain[rule], vrules]
    who = np.r_[who, veto]
    frame = pd.DataFrame(
        {
            "person": who,
            "rule": np.array([r.rule for r in rules], dtype=str),
            "points": np.r_[points, np.full(len(veto), np.nan)],
            "count": np.r_[count, np.ones(len(veto), int)],
            "note": np.r_[note, np.array([r.notes[0] for r in vrules], dtype=str)],
            "issuer": np.array([r.issuer for r in rules], dtype=str),
        }
    )
    lo, hi = _active_span(org, who, month)
    frame["date"] = lo + (rng.random(len(who)) * (hi - lo + 1)).astype(np.int64)
    frame["evidence"] = _cat_concat(
        frame["issuer"].to_numpy().astype(str),
        f"〔{month.year}〕",
        rng.integers(1, 200, size=len(who)).astype(str),
        "号",
    )
    return frame.sort_values(["person", "date", "rule"], kind="stable").reset_index(drop=True)


def nominations(
    rng: np.random.Generator,
    org: Org,
    m: int,
    month: Month,
    barred: np.ndarray,
    profile: Profile,
    refused: np.ndarray,
) -> pd.DataFrame:
    """1–2 special nominations per unit (1–3 for a scheme's sample), approved by its Party group;
    never someone with a veto but the `refused` ones, named to show the refusal. A scheme's
    sample puts at least one unit over its cap, floor(headcount × nomination_cap)."""
    here = org.present(m)
    p = here[~np.isin(here, barred)]
    unit = org.dept_unit[org.dept[m, p]]
    g = Groups.build(rng, unit, p, len(org.unit_id), org.n)
    units = np.arange(len(org.unit_id))
    k = rng.integers(1, profile.nominate + 1, size=len(units))
    if profile.exercise:
        heads = np.bincount(org.dept_unit[org.dept[m, here]], minlength=len(units))
        cap = np.floor(heads * profile.cap + 1e-9).astype(int)
        room = np.flatnonzero(cap < g.size)
        if not (k > cap).any() and len(room):
            u = room[np.argmin((cap - k)[room])]
            k[u] = cap[u] + 1
    _, who = g.draw(rng, units, units, k)
    who = np.sort(np.r_[who, refused])
    court = org.unit_court[org.dept_unit[org.dept[m, who]]]
    pick = rng.integers(0, 3, size=len(who))
    reason = np.where(court, np.array(REASONS[True])[pick], np.array(REASONS[False])[pick])
    return pd.DataFrame(
        {
            "person_id": org.pid[who],
            "period": _period(month, profile.pacesetters or "half")[0],
            "reason": reason,
            "approved_by": np.where(court, "院党组会", "局党组会"),
        }
    )


# --- writing -------------------------------------------------------------------------------------
def workbook_bytes(
    wb: Workbook,
    creator: str = "kaohe",
    when: dt.datetime = FIXED_TIME,
    change: Mapping[str, Callable[[bytes], bytes]] | None = None,
) -> bytes:
    """An openpyxl workbook's bytes, the same on every run: openpyxl stamps the save time into
    core.xml and every zip entry, so both are pinned to `when`. `change` rewrites parts by name
    on the way (what openpyxl will not write: a formula's cached value, a damaged part)."""
    wb.properties.creator = creator
    wb.properties.created = wb.properties.modified = when
    saved = io.BytesIO()
    wb.save(saved)
    stamp = when.strftime("%Y-%m-%dT%H:%M:%SZ").encode()
    out = io.BytesIO()
    with (
        zipfile.ZipFile(saved) as zin,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout,
    ):
        for info in zin.infolist():
            body = zin.read(info)
            if info.filename == "docProps/core.xml":
                body = re.sub(
                    rb"(<dcterms:(?:created|modified)[^>]*>)[^<]*", rb"\g<1>" + stamp, body
                )
            if change and info.filename in change:
                body = change[info.filename](body)
            entry = zipfile.ZipInfo(info.filename, date_time=when.timetuple()[:6])
            entry.compress_type = zipfile.ZIP_DEFLATED
            zout.writestr(entry, body)
    return out.getvalue()


def write_xlsx(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    ws = wb.create_sheet("Sheet1")
    ws.append(list(header))
    for row in rows:
        ws.append(list(row))
    path.write_bytes(workbook_bytes(wb))


def _write_adjustments(path: Path, org: Org, frame: pd.DataFrame) -> None:
    """Chinese headers and real Excel date cells; a fixed rule's points are usually left blank."""
    dates = [dt.date.fromordinal(EPOCH + int(d)) for d in frame["date"]]
    points = [None if np.isnan(x) else float(x) for x in frame["points"]]
    rows = zip(
        org.pid[frame["person"].to_numpy()].tolist(),
        dates,
        frame["rule"].tolist(),
        points,
        frame["count"].astype(int).tolist(),
        frame["note"].tolist(),
        frame["evidence"].tolist(),
        strict=True,
    )
    write_xlsx(path, ["工号", "日期", "事项编码", "分值", "次数", "说明", "依据"], rows)


def _write_csv(frame: pd.DataFrame, path: Path, encoding: str, newline: str = "\n") -> int:
    frame.to_csv(path, index=False, encoding=encoding, lineterminator=newline)
    return len(frame)


def _veto_plan(
    rng: np.random.Generator, people: int, months: int, profile: Profile
) -> list[np.ndarray]:
    """Per month, the veto rules used (indices into the profile's veto rules).

    About one veto per 500 people a year, at least one in a run big and long enough to matter. A
    scheme's sample (20 people and 3 months or more) uses each of its veto rules once, spread over
    the run, and vetoes no more than about 2% of the people.
    """
    plan = rng.binomial(people, 1 / 6000, size=months)
    if plan.sum() == 0 and people >= 100 and months >= 3:
        plan[months // 2] = 1
    n_rules = len(profile.vetoes)
    if n_rules == 0:
        plan[:] = 0
    elif profile.exercise and people >= 20 and months >= 3:
        at = np.rint(np.linspace(0, months - 1, n_rules)).astype(int)
        plan += np.bincount(at, minlength=months)
        room = max(n_rules, people // 50) - (np.cumsum(plan) - plan)
        plan = np.minimum(plan, np.maximum(room, 0))
    rules = np.arange(plan.sum()) % max(n_rules, 1)  # in order: every rule before any repeats
    return np.split(rules, np.cumsum(plan)[:-1])


def _write_month(
    folder: Path,
    rng: np.random.Generator,
    org: Org,
    m: int,
    month: Month,
    universe: dict[str, np.ndarray] | None,
    profile: Profile,
) -> dict[str, int]:
    """Roster, attendance, cases and the survey rounds held this month (one file)."""
    folder.mkdir(parents=True, exist_ok=True)
    table = roster(org, m, month, profile)
    n = {"roster": _write_csv(table, folder / "roster.csv", "utf-8-sig")}
    court, office = attendance(rng, org, m, month)
    n["attendance"] = 0
    if len(court):
        path = folder / "attendance-court.csv"
        n["attendance"] += _write_csv(court, path, "gb18030", "\r\n")
    if len(office):
        path = folder / "attendance-office.csv"
        n["attendance"] += _write_csv(office, path, "utf-8")
    if universe is not None:
        table = cases(org, universe, month)
        n["cases"] = _write_csv(table, folder / "cases.csv", "gb18030", "\r\n")
    rounds = [
        (c, [f for f in profile.forms if f.cadence == c])
        for c in ("month", "quarter", "year")
        if _ends(month, c)
    ]
    tables = [surveys(rng, org, m, month, forms, c) for c, forms in rounds if forms]
    tables = [t for t in tables if len(t)]  # a round that rates nobody here writes nothing
    if tables:
        table = tables[0] if len(tables) == 1 else pd.concat(tables, ignore_index=True)
        n["surveys"] = _write_csv(table, folder / "surveys.csv", "utf-8")
    return n


def generate(
    inbox: Path,
    people: int,
    start: str = "2026-01",
    months: int = 3,
    seed: int = 1,
    kind: str | None = None,
    scheme: Scheme | None = None,
) -> dict[str, dict[str, int]]:
    """Write `months` monthly extracts of `people` people; return data rows per month and source.

    `kind`: courts and offices (`mixed`), or only courts or only offices, for a scheme of one kind.
    Without a scheme, the data fit the demo schemes (and stay byte for byte what they were);
    with one, categories, survey rounds, adjustment rules and nominations are the scheme's, and
    the organisation is a court when the scheme measures cases, else an office.
    """
    profile = Profile.of(scheme)
    kind = kind or profile.kind
    if people < 1:
        raise ValueError("people must be at least 1")
    if kind not in ORG_KINDS:
        raise ValueError(f"kind must be one of {', '.join(ORG_KINDS)}")
    cal = _months(start, months)
    rng = np.random.default_rng(seed)
    org = build_org(rng, people, cal, kind, profile.fast_track)
    universe = case_universe(rng, org, cal)
    vetoes = _veto_plan(rng, people, months, profile)
    vetoed = np.zeros(0, np.int64)  # in the current pacesetter period: not nominated
    # a scheme's sample vetoes a person once in the run, and only one who stays all run (a
    # vetoed person can then always be nominated at the period's end, to be refused)
    barred = np.flatnonzero(~org.stable) if profile.exercise else np.zeros(0, np.int64)
    refuse = profile.exercise  # a scheme's sample nominates one vetoed person, to be refused
    refused = np.zeros(0, np.int64)
    counts: dict[str, dict[str, int]] = {}
    for m, month in enumerate(cal):
        folder = Path(inbox) / month.label
        n = counts[month.label] = _write_month(folder, rng, org, m, month, universe, profile)
        adj = adjustments(rng, org, m, month, profile, vetoes[m], barred)
        if len(adj):
            _write_adjustments(folder / "adjustments.xlsx", org, adj)
            n["adjustments"] = len(adj)
        new = adj.loc[adj["rule"].isin(profile.vetoes), "person"].to_numpy(np.int64)
        vetoed = np.r_[vetoed, new]
        barred = np.r_[barred, new] if profile.exercise else barred
        if profile.pacesetters and _ends(month, profile.pacesetters):
            if refuse:
                refused = vetoed[np.isin(vetoed, org.present(m))][:1]
                refuse = len(refused) == 0
            nom = nominations(rng, org, m, month, vetoed, profile, refused)
            refused = refused[:0]
            rows = nom.to_numpy().tolist()
            write_xlsx(folder / "nominations.xlsx", list(nom.columns), rows)
            n["nominations"] = len(nom)
            vetoed = np.zeros(0, np.int64)
    return counts


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m etl.generate", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--inbox",
        type=Path,
        required=True,
        help="folder to write <YYYY-MM>/<source>.* into",
    )
    parser.add_argument("--people", type=int, required=True)
    parser.add_argument("--start", default="2026-01", help="first month, YYYY-MM")
    parser.add_argument("--months", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--kind",
        choices=ORG_KINDS,
        help="which units to make (default: mixed, or what the scheme measures)",
    )
    parser.add_argument("--scheme", help="fit the data to this scheme (id or path)")
    args = parser.parse_args(argv)
    scheme = None
    if args.scheme:
        from scoring.scheme import load_scheme

        scheme = load_scheme(args.scheme)
    counts = generate(
        args.inbox, args.people, args.start, args.months, args.seed, args.kind, scheme
    )
    print(json.dumps(counts, ensure_ascii=False))


if __name__ == "__main__":
    main()
