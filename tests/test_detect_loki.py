"""`kaudit detect --loki-url` against a shared Loki: one cluster's events (--cluster), behind
a gateway that wants credentials (basic auth or a bearer token, a tenant, a private CA), and
the LogQL/ruler rules of one cluster (--list --logql --cluster)."""

from __future__ import annotations

import json

import pytest

from doubles.loki import LokiDouble
from test_detect_cli import DETECT, V136, _push_corpus
from test_external_loki import PASSWORD, TOKEN, pki, secrets  # noqa: F401  (fixtures)

PROD = V136.name  # the v1.36 file's events carry cluster=prod-eu, every other file's cluster=lab


@pytest.fixture
def shared(pki):  # noqa: F811
    """A gateway in front of Loki 3: https with a private CA, basic auth or a token, tenants on."""
    d = LokiDouble("3.5.0", reject_old_samples_max_age_ns=10**30, tls=(str(pki[1]), str(pki[2])), auth_enabled=True,
                   basic_auth=("kaudit", PASSWORD), bearer_token=TOKEN).start()
    _push_corpus(d, {p.name: ("prod-eu" if p.name == PROD else "lab") for p in DETECT.glob("*.jsonl")}, tenant="team-a")
    yield d
    d.stop()


def _ids(doc: dict) -> dict[str, set]:
    return {g["rule"]["id"]: {a for f in g["findings"] for a in f["auditIDs"]} for g in doc["groups"] if not g["rule"]["aggregate"]}


def test_one_clusters_findings_through_a_gateway_with_credentials(cli, shared, pki, secrets):  # noqa: F811
    base = ["detect", "--loki-url", shared.url, "--since", "24h", "--loki-tenant", "team-a", "--loki-ca-file", pki[0], "-o", "json"]
    basic = cli([*base, "--loki-username", "kaudit", "--loki-password-file", secrets[0], "--cluster", "prod-eu"])
    assert basic.code == 3, basic.err
    offline = json.loads(cli(["detect", "--log", V136, "-o", "json"]).out)
    online = json.loads(basic.out)
    # the prod-eu events and only those, rule by rule (no LogQL approximation differs on them)
    assert _ids(online) == _ids(offline)
    assert set(_ids(online)) == {"secret-read-by-non-controller", "impersonation-used"}
    every = json.loads(cli([*base, "--loki-token-file", secrets[1]]).out)  # all clusters, with the token
    assert set(_ids(every)) > set(_ids(online))
    assert all(_ids(every)[r] >= ids for r, ids in _ids(online).items())
    seen = shared.requests("/loki/api/v1/query_range")
    assert seen and {r.headers.get("X-Scope-OrgID") for r in seen} == {"team-a"} and {r.status for r in seen} == {200}
    assert {r.headers.get("Authorization", "").split()[0] for r in seen} == {"Basic", "Bearer"}
    assert PASSWORD not in basic.out + basic.err and TOKEN not in basic.out + basic.err
    assert online["source"] == f"{shared.url} cluster prod-eu (last 24h)"


def test_the_gateway_refuses_a_hunt_without_credentials(cli, shared, pki):  # noqa: F811
    r = cli(["detect", "--loki-url", shared.url, "--loki-tenant", "team-a", "--loki-ca-file", pki[0]])
    assert r.code == 1 and shared.url in r.err and "401" in r.err and "hint:" in r.err and "Traceback" not in r.err


@pytest.mark.parametrize("argv,message", [
    (["--log", str(V136), "--cluster", "lab"], "--cluster goes with --loki-url"),
    (["--log", str(V136), "--loki-token-file", "/x"], "--loki-token-file goes with --loki-url"),
    (["--loki-url", "http://127.0.0.1:9", "--cluster", "has space"], "--cluster"),
    (["--loki-url", "http://127.0.0.1:9", "--loki-password-file", "/nonexistent/pw", "--loki-username", "u"], "/nonexistent/pw: no such file"),
])
def test_loki_options_errors(cli, argv, message):
    r = cli(["detect", *argv])
    assert r.code == 2 and message in r.err and "Traceback" not in r.err


def test_list_logql_and_ruler_rules_for_one_cluster(cli):
    from kaudit.adapters.rule_cache import packaged_rules
    from kaudit.core.detect.logql import rule_groups

    r = cli(["detect", "--list", "--logql", "--cluster", "prod-eu"])
    logql = [ln.split("logql: ", 1)[1] for ln in r.out.splitlines() if "logql: " in ln]
    alerts = [ln.split("alert: ", 1)[1] for ln in r.out.splitlines() if "alert: " in ln]
    assert len(logql) == len(alerts) == len(packaged_rules())
    assert all(q.startswith('{job="kubernetes-audit", cluster="prod-eu"') for q in logql)
    assert all('cluster="prod-eu"' in a for a in alerts)
    doc = json.loads(cli(["detect", "--list", "--cluster", "prod-eu", "-o", "json"]).out)
    assert doc["cluster"] == "prod-eu" and all('cluster="prod-eu"' in x["logql"] for x in doc["rules"])
    groups = rule_groups(packaged_rules(), cluster="prod-eu")["groups"][0]["rules"]
    assert [g["expr"] for g in groups] == [x["alert"] for x in doc["rules"]]
    plain = cli(["detect", "--list", "--logql"]).out
    assert "cluster=" not in plain
