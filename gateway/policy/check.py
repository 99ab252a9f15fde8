"""`edgegw check-config FILE --against RUNNING_URL`: the running gateway validates FILE in its own
environment and says which changes a reload would apply live, at the next connection, or at restart."""

from __future__ import annotations

import sys
from pathlib import Path

from gateway.policy.restart import RESTART


def check_against(file: str, url: str, token: str | None) -> int:
    """0: a reload applies everything; 2: the gateway refuses the file; 3: some changes need a restart."""
    import httpx

    if not token:
        print("edgegw check-config: --against needs an admin token (--token or $EDGEGW_ADMIN_TOKEN)",
              file=sys.stderr)
        return 2
    try:
        resp = httpx.post(url.rstrip("/") + "/admin/policy/check", content=Path(file).read_bytes(),
                          headers={"authorization": f"Bearer {token}"}, timeout=30)
    except httpx.HTTPError as exc:
        print(f"edgegw check-config: cannot reach {url}: {exc}", file=sys.stderr)
        return 2
    if resp.status_code != 200:
        try:
            message = resp.json()["error"]["message"]
        except Exception:
            message = resp.text[:300]
        print(f"edgegw check-config: {url} answered {resp.status_code}: {message}", file=sys.stderr)
        return 2
    data = resp.json()
    print(f"against {url}: running version {data['running']}, this file {data['version']}")
    if not data["changes"]:
        print("no changes")
        return 0
    width = max(len(c["key"]) for c in data["changes"])
    for change in data["changes"]:
        print(f"  {change['key']:<{width}}  {change['applies']:<15}  {change['why']}")
    restart = [c["key"] for c in data["changes"] if c["applies"] == RESTART]
    if restart:
        print(f"a restart is needed for: {', '.join(restart)} (a reload applies the rest)")
        return 3
    print("a reload applies every change")
    return 0
