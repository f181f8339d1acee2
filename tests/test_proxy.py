"""Behind reverse proxies: the client address is the one the trusted proxies saw, whatever
headers the client sends itself."""

import pytest
import pytest_asyncio

from server.settings import SettingsError, load_settings
from tests.builders import STAFF_PASSWORD


@pytest.fixture
def settings(settings):
    return settings.model_copy(update={"trusted_proxy_hops": 1})


async def guess(api_client, headers, password="guess"):
    return await api_client.post("/api/auth/staff", {"username": "ming", "password": password},
                                 headers=headers)


@pytest_asyncio.fixture
async def staff(app):
    await app.staff.create("ming", STAFF_PASSWORD, "Wang Ming", {"6650c0ffee0000000000000a": ["manager"]})


@pytest.mark.asyncio
async def test_the_address_the_proxy_appended_counts(api_client, staff, settings):
    # nginx: proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    for n in range(settings.login_max_failures):
        # The client rotates X-Real-Ip and what it puts in front of the proxy's entry.
        reply = await guess(api_client, {"X-Real-Ip": f"198.51.100.{n}",
                                         "X-Forwarded-For": f"192.0.2.{n}, 203.0.113.7"})
        assert reply.status == 401
    locked = await guess(api_client, {"X-Forwarded-For": "203.0.113.7"}, STAFF_PASSWORD)
    assert locked.status == 429
    assert (await guess(api_client, {"X-Forwarded-For": "198.51.100.2"},
                        STAFF_PASSWORD)).status == 200


@pytest.mark.asyncio
async def test_a_request_that_bypassed_the_proxy_counts_as_its_peer(api_client, staff, settings):
    for _ in range(settings.login_max_failures):
        assert (await guess(api_client, {})).status == 401  # no X-Forwarded-For: 127.0.0.1
    assert (await guess(api_client, {"X-Forwarded-For": "not an address"},
                        STAFF_PASSWORD)).status == 429


def test_the_retired_setting_that_trusted_x_real_ip_stops_the_service(tmp_path):
    with pytest.raises(SettingsError, match="TRUSTED_PROXY_HOPS"):
        load_settings(trust_proxy_headers=True, data_dir=tmp_path)
