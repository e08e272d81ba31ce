"""Integration fixtures: each real server is a plain process on a free loopback port."""

import pytest

from tests.servers.alertmanager import alertmanager  # noqa: F401
from tests.servers.influx import influxd, influxd_auth, influxd_own, victoria_metrics  # noqa: F401
from tests.servers.mosquitto import mosquitto, mosquitto_auth, mosquitto_tls  # noqa: F401
from tests.servers.netns import test_host  # noqa: F401
from tests.servers.snmpd import snmp_agent, snmpd_server  # noqa: F401


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark everything under tests/integration as an integration test."""
    for item in items:
        if "/integration/" in str(item.path):
            item.add_marker(pytest.mark.integration)
