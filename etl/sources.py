"""The six source extracts of sources.md as data: columns, Chinese aliases, types, enumerations.

Everything that reads, validates or loads a source takes its column facts from here, so a new alias
or enumerated label is added in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SOURCES = ("roster", "attendance", "cases", "surveys", "adjustments", "nominations")
REQUIRED_SOURCES = ("roster", "attendance")


@dataclass(frozen=True)
class Column:
    name: str
    kind: str = "text"  # text | number | integer | date | flag | enum | period
    aliases: tuple[str, ...] = ()
    required: bool = False  # every row must carry a value
    header_required: bool = False  # the file must have the column
    labels: dict[str, str] = field(default_factory=dict)  # Chinese label -> code, for enums


def _col(
    name: str,
    kind: str = "text",
    *aliases: str,
    req: bool = False,
    hdr: bool | None = None,
    labels: dict[str, str] | None = None,
) -> Column:
    return Column(name, kind, aliases, req, req if hdr is None else hdr, labels or {})


STATUS = {
    "正常": "present",
    "迟到": "late",
    "早退": "early_leave",
    "旷工": "absent",
    "请假": "leave",
    "出差": "business_trip",
    "休息日": "holiday",
}
PROCEDURE = {"速裁": "summary", "简易": "simple", "普通": "ordinary"}
OUTCOME = {
    "判决": "judgment",
    "调解": "mediation",
    "撤诉": "withdrawal",
    "驳回": "dismissal",
    "其他": "other",
}
APPEAL = {"维持": "upheld", "改判": "reversed", "发回重审": "remanded"}
RELATION = {
    "自评": "self",
    "上级": "superior",
    "同事互评": "peer",
    "互评": "peer",
    "同事": "peer",
    "下级": "subordinate",
    "群众": "public",
    "服务对象": "public",
}

COLUMNS: dict[str, tuple[Column, ...]] = {
    "roster": (
        _col("person_id", "text", "工号", "人员编号", req=True),
        _col("name", "text", "姓名", req=True),
        _col("unit_id", "text", "单位编码", req=True),
        _col("unit_name", "text", "单位", "单位名称", req=True),
        _col("dept_id", "text", "部门编码", req=True),
        _col("dept_name", "text", "部门", "科室", req=True),
        _col("category", "text", "人员类别", "类别", req=True),
        _col("post_coefficient", "number", "岗位系数"),
        _col("email", "text", "邮箱"),
        _col("active_from", "date", "入职日期", "到岗日期"),
        _col("active_to", "date", "离岗日期"),
    ),
    "attendance": (
        _col("person_id", "text", "工号", req=True),
        _col("date", "date", "日期", req=True),
        _col("status", "enum", "考勤结果", "状态", req=True, labels=STATUS),
        _col("duty_filed", "flag", "履职填报"),
        _col("duty_reviewed", "flag", "领导审阅"),
    ),
    "cases": (
        _col("case_id", "text", "案号", req=True),
        _col("dept_id", "text", "承办部门", req=True),
        _col("judge_id", "text", "承办人", "承办法官", req=True),
        _col("panel_ids", "text", "合议庭成员"),
        _col("filed_on", "date", "立案日期", req=True),
        _col("closed_on", "date", "结案日期"),
        _col("procedure", "enum", "程序", req=True, labels=PROCEDURE),
        _col("outcome", "enum", "结案方式", labels=OUTCOME),
        _col("verdict_in_court", "flag", "当庭宣判"),
        _col("appeal_outcome", "enum", "上诉结果", labels=APPEAL),
        _col("appeal_decided_on", "date", "二审结案日期"),
        _col("fault", "flag", "评查过错"),
    ),
    "surveys": (
        _col("survey_id", "text", "测评批次", req=True),
        _col("period", "period", "测评期间", req=True),
        _col("rater_key", "text", "评价人", req=True),
        _col("relation", "enum", "评价关系", req=True, labels=RELATION),
        _col("ratee_id", "text", "被评价人", req=True),
        _col("item", "text", "测评项目", req=True),
        _col("score", "text", "分数", "等次", req=True),
    ),
    "adjustments": (
        _col("person_id", "text", "工号", req=True),
        _col("date", "date", "日期", req=True),
        _col("rule", "text", "事项编码", req=True),
        _col("points", "number", "分值"),
        _col("count", "integer", "次数"),
        _col("note", "text", "说明"),
        _col("evidence", "text", "依据"),
    ),
    "nominations": (
        _col("person_id", "text", "工号", req=True),
        _col("period", "period", "期间", req=True),
        _col("reason", "text", "推荐理由", req=True),
        _col("approved_by", "text", "审定", req=True),
    ),
}


def column_names(source: str) -> list[str]:
    return [c.name for c in COLUMNS[source]]


def alias_map(source: str) -> dict[str, str]:
    """Header text (canonical name, any alias, lower-cased) -> canonical column name."""
    out: dict[str, str] = {}
    for c in COLUMNS[source]:
        out[c.name.lower()] = c.name
        for a in c.aliases:
            out[a.lower()] = c.name
    return out


def source_of(filename: str) -> str | None:
    """`attendance-court.csv` -> `attendance`; None for a file that names no source."""
    stem = filename.rsplit(".", 1)[0]
    head = stem.split("-", 1)[0].strip().lower()
    ext = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    return head if head in SOURCES and ext in ("csv", "xlsx") else None
