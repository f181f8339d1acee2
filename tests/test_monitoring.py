"""What ships under deploy/ for monitoring: the alert rules pass promtool's checks and its unit
tests, the dashboard's queries are valid PromQL over metrics that exist, and every metric's
labels are of the bounded kinds (no person, code or token)."""

import json
import re
import subprocess
from pathlib import Path

import yaml
from prometheus_client.metrics import MetricWrapperBase

from server import metrics

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
PROMTOOL = "promtool"  # Debian's prometheus package; `make test` installs it
BOUNDED_LABELS = {"handler", "method", "status", "community", "source", "result", "reason",
                  "claimed", "outcome", "level", "type", "kind", "clock", "channel", "store", "op",
                  "job"}
SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum")}


def promtool(*args: str, cwd: Path) -> None:
    done = subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def defined() -> list[MetricWrapperBase]:
    return [m for m in vars(metrics).values() if isinstance(m, MetricWrapperBase)]


def sample_names() -> set[str]:
    return {family.name + suffix for metric in defined() for family in metric.describe()
            for suffix in SUFFIXES[family.type]}


def dashboard_queries() -> list[str]:
    board = json.loads((DEPLOY / "grafana" / "xiaoqu.json").read_text())
    return [target["expr"] for panel in board["panels"] for target in panel.get("targets", [])]


def names_in(expr: str) -> set[str]:
    return set(re.findall(r"\bxiaoqu_[a-z_]+", expr))


def test_alert_rules_pass_promtool_and_their_unit_tests():
    promtool("check", "rules", "alerts.yml", cwd=DEPLOY / "prometheus")
    promtool("test", "rules", "alerts.test.yml", cwd=DEPLOY / "prometheus")


def test_alerts_cover_bridges_breaches_and_stores_with_metrics_that_exist():
    rules = [rule for group in yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())[
        "groups"] for rule in group["rules"]]
    used = set().union(*(names_in(rule["expr"]) for rule in rules))
    assert used <= sample_names(), used - sample_names()
    assert {"XiaoquBridgeOffline", "XiaoquSlaBreachRate", "XiaoquStoreErrors"} <= {
        rule["alert"] for rule in rules}


def test_dashboard_queries_are_valid_promql_over_metrics_that_exist(tmp_path):
    queries = dashboard_queries()
    assert len(queries) >= 15
    used = set().union(*(names_in(q) for q in queries))
    assert used <= sample_names(), used - sample_names()
    # Every family the server defines has a panel.
    assert {name for m in defined() for name in [m.describe()[0].name]} <= {
        re.sub(r"_(total|bucket|count|sum)$", "", n) for n in used}
    # Grafana's variables filled in as Grafana would, then checked by promtool as rules.
    grafana = {"$__rate_interval": "5m", "$__range": "1h", "$community": ".*"}
    rules = [{"record": f"dashboard:query{i}", "expr": re.sub(
        r"\$\w+", lambda m: grafana[m[0]], query)} for i, query in enumerate(queries)]
    (tmp_path / "queries.yml").write_text(yaml.safe_dump({"groups": [
        {"name": "dashboard", "rules": rules}]}))
    promtool("check", "rules", "queries.yml", cwd=tmp_path)


def test_every_metric_label_is_bounded():
    for metric in defined():
        assert set(metric._labelnames) <= BOUNDED_LABELS, (metric._name, metric._labelnames)
