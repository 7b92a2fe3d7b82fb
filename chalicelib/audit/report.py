"""The auditor's report: one self-contained HTML file (no external assets): the coverage grid
(resources × days), the digest chain, and every finding."""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime
from html import escape
from typing import Any

from ..errors import LogarchiveError
from .model import AuditResult

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222}
h1{font-size:20px}h2{font-size:16px;margin-top:28px}
.verdict{padding:10px 14px;border-radius:6px;font-weight:600;display:inline-block}
.pass{background:#dff3e3;color:#135c24}.fail{background:#fbe0e0;color:#8a1414}
table{border-collapse:collapse;margin-top:8px}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f4f4f4}
.grid td{width:64px;text-align:center;font-size:12px}
.green{background:#4caf50;color:#fff}.amber{background:#ffb300}.red{background:#e53935;color:#fff}
.empty{background:#fafafa;color:#aaa}
code{font-size:12px;word-break:break-all}
.legend span{display:inline-block;padding:2px 8px;margin-right:8px;border-radius:3px}
"""


def render(result: AuditResult, opts: Any) -> str:
    days = sorted({d for (_, d) in result.grid})
    resources = sorted({r for (r, _) in result.grid})
    n = len(result.findings)
    verdict = ("pass", "PASSED") if result.ok else ("fail", f"FAILED, {n} finding{'' if n == 1 else 's'}")
    scope = (f"{opts.start_date} – {opts.end_date}" if getattr(opts, "start_date", None)
             else "all archives of the stack")
    out = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>logarchive audit: {escape(result.stack)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Audit of stack <code>{escape(result.stack)}</code> in "
        f"<code>s3://{escape(result.bucket)}</code></h1>",
        f"<p>Scope: {escape(str(scope))}. Audited at {datetime.now(UTC):%Y-%m-%d %H:%M:%SZ}. "
        f"{escape(result.lock)}.</p>",
        f"<p class='verdict {verdict[0]}'>{verdict[1]}: {escape(result.counts())}</p>",
        "<h2>Coverage (resources × days of the archives' first lines)</h2>",
        "<p class='legend'><span class='green'>verified</span><span class='amber'>pending or explained"
        "</span><span class='red'>finding</span></p>",
    ]
    if resources:
        out.append("<table class='grid'><tr><th>resource</th>"
                   + "".join(f"<th>{d:%m-%d}<br>{d:%Y}</th>" for d in days) + "</tr>")
        for r in resources:
            cells = []
            for d in days:
                c = result.grid.get((r, d))
                if c is None:
                    cells.append("<td class='empty'>–</td>")
                    continue
                title = (f"{c.verified} verified, {c.pending} pending, {c.explained} explained, "
                         f"{c.findings} findings")
                n = c.verified + c.pending
                cells.append(f"<td class='{c.colour}' title='{escape(title)}'>{n}"
                             + (f" ✗{c.findings}" if c.findings else "") + "</td>")
            out.append(f"<tr><th>{escape(r)}</th>{''.join(cells)}</tr>")
        out.append("</table>")
    else:
        out.append("<p>No archives in scope.</p>")
    out.append(f"<h2>Findings ({len(result.findings)})</h2>")
    if result.findings:
        out.append("<table><tr><th>finding</th><th>object</th><th>detail</th></tr>")
        for f in result.findings:
            out.append(f"<tr><td class='red'>{escape(f.kind)}</td><td><code>{escape(f.object)}</code></td>"
                       f"<td>{escape(f.detail)}</td></tr>")
        out.append("</table>")
    else:
        out.append("<p>None.</p>")
    out.append(f"<h2>Digest chain ({len(result.digests)})</h2>")
    if result.digests:
        out.append("<table><tr><th>#</th><th>digest</th><th>ends</th><th>archives</th><th>events</th>"
                   "<th>signing key</th><th>status</th></tr>")
        for row in sorted(result.digests, key=lambda r: (r.sequence or 0, r.key)):
            cls = "green" if row.status == "verified" else "red"
            out.append(f"<tr><td>{row.sequence or '?'}</td><td><code>{escape(row.key)}</code></td>"
                       f"<td>{escape(row.end_time)}</td><td>{row.archives}</td><td>{row.events}</td>"
                       f"<td><code>{escape(row.signing_key_id[:16])}…</code></td>"
                       f"<td class='{cls}'>{escape(row.status)}</td></tr>")
        out.append("</table>")
    if result.pending:
        out.append(f"<h2>Pending ({len(result.pending)})</h2><p>Archived after the last digest: no "
                   "digest lists them yet, so their deletion or replacement cannot be proven until "
                   "the next digest is sealed.</p><ul>")
        out += [f"<li><code>{escape(k)}</code></li>" for k in result.pending]
        out.append("</ul>")
    if result.before_digests:
        out.append(f"<h2>Before digests began ({len(result.before_digests)})</h2><p>Archived before "
                   "the first digest; <code>logarchive digest backfill</code> can seal them.</p>")
    if result.explained:
        out.append(f"<h2>Explained gaps ({len(result.explained)})</h2><ul>")
        out += [f"<li>{escape(x)}</li>" for x in result.explained]
        out.append("</ul>")
    out.append("<h2>What this audit does not prove</h2><ul>"
               "<li>The newest digest: deleting it before the next one is sealed leaves no trace in a "
               "copy of the archive (Object Lock prevents it).</li>"
               "<li>Pending archives: no digest lists them yet.</li>"
               "<li>Archives from before digests began, until a backfill seals them.</li>"
               "<li>Bytes no shipper staged (deleted by Docker first, or on a host whose state was not "
               "given), and a lost last segment without the hosts' states.</li>"
               "<li>Who held the signing key: a digest proves only that its holder signed it.</li>"
               "</ul><p>docs/AUDIT.md §1 explains each.</p>")
    out.append("</body></html>\n")
    return "\n".join(out)


def write(path: str, result: AuditResult, opts: Any) -> None:
    """Write through a temporary file in the same folder and rename: never half a report."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".audit-", suffix=".html", dir=folder)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(render(result, opts))
        os.replace(tmp, path)
    except OSError as exc:
        raise LogarchiveError(f"--report {path}: {exc.strerror or exc}") from None
