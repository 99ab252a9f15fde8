"""`edgegw usage --since 7d --by subject,model [--json | --csv]`: a running gateway's `/admin/usage`
as a table (admin token required)."""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from typing import Any

from gateway.client.policy import TOKEN_ENV, admin_answer, admin_client

_COLUMNS = ("requests", "input_tokens", "output_tokens", "cached_tokens", "cost")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("usage", help="tokens and requests by partner and model, from a running gateway")
    p.add_argument("--since", default="7d", help="7d, 24h, 30m, 2w, a Unix time or an ISO 8601 time (default 7d)")
    p.add_argument("--by", default="subject,model",
                   help="comma-separated usage labels to group by (default: subject,model)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="the gateway's answer as JSON")
    fmt.add_argument("--csv", action="store_true", help="rows as CSV")
    p.add_argument("--gateway", default=os.environ.get("EDGEGW_URL", "http://127.0.0.1:8080"),
                   help="the gateway's base URL (default: $EDGEGW_URL, else http://127.0.0.1:8080)")
    p.add_argument("--token", default=os.environ.get(TOKEN_ENV), help=f"an admin token (default: ${TOKEN_ENV})")
    p.set_defaults(func=_usage)


def _usage(args: argparse.Namespace) -> int:
    with admin_client(args, "usage") as client:
        data = admin_answer(client.get("/admin/usage", params={"since": args.since, "by": args.by}), "usage")
    if args.json:
        print(json.dumps(data, indent=2))
    elif args.csv:
        sys.stdout.write(to_csv(data))
    else:
        print(table(data))
    return 0


def _cells(data: dict[str, Any], row: dict[str, Any]) -> list[str]:
    out = [str(row.get(b, "")) for b in data["by"]]
    out += [str(row[c]) for c in _COLUMNS[:-1]]
    out.append("" if row.get("cost") is None else f"{row['cost']:.6f}")
    return out


def to_csv(data: dict[str, Any]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow([*data["by"], *_COLUMNS])
    for row in data["rows"]:
        writer.writerow(_cells(data, row))
    return buf.getvalue()


def table(data: dict[str, Any]) -> str:
    header = [*data["by"], *_COLUMNS]
    rows = [_cells(data, r) for r in data["rows"]]
    rows.append(["total", *[""] * (len(data["by"]) - 1), *_cells({"by": []}, data["totals"])])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) if i < len(data["by"]) else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths, strict=True)))]
    for r in rows:
        lines.append("  ".join(c.ljust(w) if i < len(data["by"]) else c.rjust(w)
                               for i, (c, w) in enumerate(zip(r, widths, strict=True))))
    lines.append(f"\n{data['scope']}: {data['note']}; since {data['since']} (hourly buckets)")
    return "\n".join(lines)
