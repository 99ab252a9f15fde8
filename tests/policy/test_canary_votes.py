"""Who may vote in a policy canary's judge (#26 break 1): the arm is picked from the token's claims
before they are verified, so a stranger can choose an arm; only requests that authenticated (or a
real caller the canary refused) may count. Junk tokens must neither veto a harmless canary nor mask
a canary that refuses every real partner."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import orjson
import yaml

from gateway.policy.canary import caller_bucket
from testkit.policy_load import Load, wait_until
from tests.conftest import issuer_config
from tests.policy.conftest import ISSUER, Stable, cli, limited, subjects


def junk_token(sub: str) -> str:
    """A token whose claims say what an attacker likes and whose signature is nothing."""
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(value)).rstrip(b"=").decode()

    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part({'iss': ISSUER, 'sub': sub, 'aud': 'edgegw'})}.c2ln"


def junk_subjects(count: int, inside: bool, share: float = 0.25) -> list[str]:
    found, i = [], 0
    while len(found) < count:
        name = f"junk-{i}"
        if (caller_bucket(ISSUER, name) < share) is inside:
            found.append(name)
        i += 1
    return found


def rollout(gw: Any, admin_token: str, new: Path, steps: str, min_requests: int) -> Any:
    return cli("rollout", str(new), "--gateway", gw.url, "--token", admin_token, "--steps", steps,
               "--min-requests", str(min_requests), "--min-step-s", "1", "--wait")


def test_junk_tokens_in_the_canary_share_cannot_veto_a_harmless_canary(tmp_path: Path,
                                                                       two_workers: Stable) -> None:
    gw, admin_token = two_workers.gw, two_workers.admin_token
    new = tmp_path / "new.yaml"
    new.write_text(yaml.safe_dump(limited(two_workers.backend, 200)))  # harmless: a limit nobody reaches
    inside, outside = subjects(4, 8)
    real = [gw.token(s) for s in inside + outside]
    junk = [junk_token(s) for s in junk_subjects(22, inside=True)]
    with Load(gw.url, real, rate=20) as load, Load(gw.url, junk, rate=5) as strangers:
        wait_until(lambda: load.total > 50, 20)
        out = rollout(gw, admin_token, new, "25,100", 20)
    assert strangers.statuses[401] > 22 * 2 and set(strangers.statuses) == {401}, strangers.statuses
    assert out.returncode == 0 and "promoted" in out.stdout, out.stdout + out.stderr
    assert load.failures == [], load.failures[:5]


def test_junk_tokens_on_stable_cannot_mask_a_canary_that_refuses_every_partner(tmp_path: Path,
                                                                              two_workers: Stable) -> None:
    gw, admin_token = two_workers.gw, two_workers.admin_token
    broken = limited(two_workers.backend, 100)
    broken["issuers"] = [issuer_config(audience="someone-else")]  # every real token is refused: 401
    new = tmp_path / "new.yaml"
    new.write_text(yaml.safe_dump(broken))
    inside, outside = subjects(4, 2)
    stable_tokens = [gw.token(s) for s in outside]
    junk = [junk_token(s) for s in junk_subjects(24, inside=False, share=0.5)]
    # Over 95% of stable's answers are 401s to strangers: the old judge saw canary 100% vs stable
    # 96% and allowed +5 points.
    with Load(gw.url, [gw.token(s) for s in inside] + stable_tokens, rate=1) as load, \
            Load(gw.url, junk, rate=15) as strangers:
        wait_until(lambda: strangers.total > 300, 30)
        out = rollout(gw, admin_token, new, "25,50", 20)
    stable_real = sum(n for key, n in load.by_token.items() if key.rsplit(":", 1)[0] in stable_tokens)
    assert set(strangers.statuses) == {401} and strangers.total > 19 * stable_real, (strangers.statuses,
                                                                                      stable_real)
    assert out.returncode == 1 and "rolled_back" in out.stdout, out.stdout + out.stderr
    assert "4xx rate" in out.stdout or "4xx rate" in cli("status", "--gateway", gw.url, "--token",
                                                           admin_token).stdout
    assert load.statuses[401] > 0  # the canary's callers did get its 401s, until the rollback
