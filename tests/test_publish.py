"""Publishing a closed quarter end to end, on a real warehouse and a real SMTP server on loopback:
notices at `notify`, bulletins and bonus tables at `final`, nothing sent twice, and a rerun that
changes a final result published as a correction to exactly the people it changed."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import threading
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from openpyxl import load_workbook
from pypdf import PdfReader

from etl.generate import generate
from etl.pipeline import close_step, run_month, score_step
from etl.score import close_period_in_warehouse, score_months
from etl.warehouse import engine_for, mart_period_score
from etl.warehouse import roster as roster_table
from reports.mail import Smtp
from reports.publish import publish
from reports.render import score
from scoring.scheme import SCHEME_DIR, load_scheme
from tests.helpers import free_port, late_praise, table

TODAY = dt.date(2026, 4, 8)


class Inbox:
    """An SMTP server's handler that keeps every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.messages.append(msg)
        return "250 OK"

    def to(self, kind: str) -> list[tuple[str, str]]:
        """(recipient, document stem) of the messages whose attachment starts with `kind`."""
        out = []
        for m in self.messages:
            names = [p.get_filename() for p in m.iter_attachments()]
            stems = sorted({n.rsplit(".", 1)[0] for n in names if n and n.startswith(kind)})
            out += [(str(m["To"]), s) for s in stems]
        return sorted(out)


@pytest.fixture
def smtp():
    handler = Inbox()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, Smtp("127.0.0.1", port, security="none")
    finally:
        controller.stop()


def _text(pdf: Path) -> str:
    return "".join(page.extract_text() or "" for page in PdfReader(pdf).pages)


def test_a_quarter_is_published_told_once_and_corrected_only_where_it_changed(
    kaohe, tmp_path, smtp, listeners
):
    server, transport = smtp
    text = (SCHEME_DIR / "demo.yaml").read_text(encoding="utf-8")
    text = text.replace("pacesetters:\n  period: half", "pacesetters:\n  period: quarter")
    text = text.replace("bonus:\n  period: year", "bonus:\n  period: quarter")
    scheme_file = tmp_path / "quarterly.yaml"
    scheme_file.write_text(text, encoding="utf-8")
    ref = str(scheme_file)
    scheme = load_scheme(ref)
    generate(Path(kaohe.inbox), 40, "2026-01", 3, seed=5)
    for m in ("2026-01", "2026-02", "2026-03"):
        score_step(run_month(m, f"m-{m}", ref))
    close_step("2026-Q1", "close", ref)
    url = kaohe.warehouse_url
    period = table(url, "mart_period_score")
    # two people share one mailbox: neither notice may go there
    pair = list(period.sort_values("period_score").person_id.iloc[[3, 4]])
    engine = engine_for(url)
    with engine.begin() as conn:
        conn.execute(
            roster_table.update()
            .where(roster_table.c.person_id.in_(pair))
            .values(email="office@example.gov.cn")
        )
    engine.dispose()
    roster = table(url, "roster").sort_values("month").drop_duplicates("person_id", keep="last")
    roster = roster.set_index("person_id")  # who each person last was in the quarter
    emails = roster["email"].where(roster["email"].fillna("").str.contains("@"))
    reachable = set(emails.dropna().index) & set(period.person_id) - set(pair)
    # a hostile name in the data is shown as text and fetches nothing
    port = listeners[-1].port
    hostile = f'<img src="http://127.0.0.1:{port}/x"><script>alert(1)</script>'
    victim = period.sort_values("period_score").iloc[len(period) // 2]  # neither top nor low
    engine = engine_for(url)
    with engine.begin() as conn:
        conn.execute(
            mart_period_score.update()
            .where(mart_period_score.c.person_id == victim.person_id)
            .values(name=hostile)
        )
        # someone not graded this quarter (too few months): no rank, so the column holds a NULL
        conn.execute(
            mart_period_score.update()
            .where(
                mart_period_score.c.person_id
                == period.sort_values("period_score").person_id.iloc[1]
            )
            .values(rank_in_scope=None, graded=False, grade=None)
        )
    engine.dispose()
    period = table(url, "mart_period_score")  # as the quarter is published

    # notify: every person with an address gets their notice, once; the rest are listed
    out = publish("2026-Q1", "notify", "pub-1", ref, kaohe, transport, TODAY)
    notices = server.to("notice-")
    assert notices == sorted((emails[p], f"notice-{p}") for p in reachable)
    assert set(out["no_email"]) == set(period.person_id) - reachable - set(pair)
    assert sorted(out["shared_email"]) == sorted(pair)
    assert server.to("bulletin-") == [] and server.to("bonus-") == []
    folder = kaohe.output / scheme.id / "2026-Q1"
    top = period.sort_values(["category", "rank_in_scope"]).iloc[0]
    other = period[period.person_id != top.person_id].iloc[0]
    notice = _text(folder / f"notice-{top.person_id}.pdf")
    assert top["name"] in notice and other["name"] not in notice
    told = (folder / f"notice-{top.person_id}.html").read_text(encoding="utf-8")
    assert "第 1 名 / 共" in told  # a rank reads as a whole number, not "1.0"
    assert score(top.period_score) in notice.replace(" ", "")
    assert "2026年4月13日" in notice  # appeal window: 8 April + 5 days
    unit = top.unit_id
    assert "公示稿" in _text(folder / f"bulletin-{unit}.pdf")
    shown = (folder / f"notice-{victim.person_id}.html").read_text(encoding="utf-8")
    assert "&lt;img src=" in shown and "<img" not in shown and "<script>" not in shown
    assert "<script>alert(1)</script>" in _text(folder / f"notice-{victim.person_id}.pdf")
    assert "alert(1)" in _text(folder / f"bulletin-{victim.unit_id}.pdf")
    assert all(listener.seen == [] for listener in listeners)

    # a retry or rerun of the stage sends nothing
    again = publish("2026-Q1", "notify", "pub-2", ref, kaohe, transport, TODAY)
    assert again["sent"] == 0 and len(server.messages) == len(notices)

    # final: bulletins to each unit's leaders, bonus tables to finance; no notice again
    server.messages.clear()
    final = publish("2026-Q1", "final", "pub-3", ref, kaohe, transport, TODAY)
    leaders = roster[(roster.category == "leader") & emails.notna()]
    assert server.to("bulletin-") == sorted(
        (emails[p], f"bulletin-{u}") for p, u in leaders["unit_id"].items()
    )
    units = sorted(table(url, "mart_bonus_allocation").unit_id.unique())
    assert server.to("bonus-") == sorted(
        (a, f"bonus-{u}") for u in units for a in scheme.publication.finance
    )
    assert server.to("notice-") == [] and final["failed"] == []
    bonus = table(url, "mart_bonus_allocation")
    sheet = load_workbook(folder / f"bonus-{unit}.xlsx").active
    amounts = [c.value for c in sheet["H"] if isinstance(c.value, (int, float))]
    pool = bonus[bonus.unit_id == unit].amount_cents.sum()
    assert round(amounts[-1] * 100) == pool and round(sum(amounts[:-1]) * 100) == pool
    assert "公示稿" not in _text(folder / f"bulletin-{unit}.pdf")
    # a notify after the final of the same revision would put drafts over the final documents
    with pytest.raises(ValueError, match="has gone out at final"):
        publish("2026-Q1", "notify", "pub-late", ref, kaohe, transport, TODAY)

    # a late adjustment for the last-ranked person changes the final result: revision 2
    low = period[period.graded.astype(bool)].sort_values("period_score").iloc[0]
    engine = engine_for(url)
    with engine.begin() as conn:
        late_praise(conn, scheme.id, low.person_id, dt.date(2026, 3, 20))
    score_months(engine, scheme, "2026-03")
    close_period_in_warehouse(engine, scheme, "2026-Q1")
    engine.dispose()
    now = table(url, "mart_period_score")
    assert set(now.revision) == {2}
    before = period.set_index("person_id")
    after = now.set_index("person_id")
    moved = {
        p
        for p in after.index
        if abs(after.period_score[p] - before.period_score[p]) > 1e-9
        or after.rank_in_scope[p] != before.rank_in_scope[p]
        or after.grade[p] != before.grade[p]
        or after.pacesetter[p] != before.pacesetter[p]
    }
    alloc = table(url, "mart_bonus_allocation").set_index("person_id").amount_cents
    moved |= {p for p in alloc.index if alloc[p] != bonus.set_index("person_id").amount_cents[p]}
    assert low.person_id in moved
    server.messages.clear()
    publish("2026-Q1", "final", "pub-4", ref, kaohe, transport, TODAY)
    assert server.to("notice-") == sorted((emails[p], f"notice-{p}") for p in moved & reachable)
    touched = {after.unit_id[p] for p in moved}
    assert {s for _, s in server.to("bulletin-")} == {
        f"bulletin-{u}" for u in touched & set(leaders.unit_id)
    }
    corrected = _text(folder / f"notice-{low.person_id}.pdf")
    assert "更正" in corrected and score(after.period_score[low.person_id]) in corrected.replace(
        " ", ""
    )
    revisions = table(url, "published_result", "where stage = 'final'").groupby("revision").size()
    assert revisions.to_dict() == {1: len(period), 2: len(period)}  # revision 1 stays queryable
    log = table(url, "delivery_log")
    assert not log.duplicated(["document", "revision", "recipient"]).any()
    assert len(log) == len(notices) + len(leaders) + len(units) * len(
        scheme.publication.finance
    ) + len(server.messages)

    # a month is published the same way: its notices carry the month's own indicators
    server.messages.clear()
    march = publish("2026-03", "notify", "pub-5", ref, kaohe, transport, TODAY)
    monthly = table(url, "mart_monthly_score", "where month = '2026-03'").set_index("person_id")
    assert march["revision"] == 1 and march["failed"] == []
    assert len(server.to("notice-")) == len(set(monthly.index) & set(emails.dropna().index)) - 2
    assert sorted(march["shared_email"]) == sorted(pair)
    one = monthly.index[0]
    month_notice = _text(kaohe.output / scheme.id / "2026-03" / f"notice-{one}.pdf")
    assert "2026年3月" in month_notice and score(monthly.total_score[one]) in month_notice
