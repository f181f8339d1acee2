"""The visitor's share page as a phone's browser shows it: scripts run, the QR appears."""

from datetime import timedelta

import pytest

from tests.browser import rendered_dom
from tests.builders import make_community, make_resident

pytestmark = pytest.mark.asyncio


async def test_share_page_shows_a_live_qr_then_the_cancellation(app, api_client, base_url):
    c = await make_community(app, "web")
    _, token = await make_resident(app, c, "host", room="1-1-102")
    now = app.clock.now()
    invite = (await api_client.post(f"/api/communities/{c.id}/invitations", {
        "name": "王小明 Wang", "purpose": "dinner", "valid_from": now.isoformat(),
        "valid_to": (now + timedelta(hours=6)).isoformat()}, token=token)).body
    share_url = base_url + "/p/" + invite["share_url"].rsplit("/p/", 1)[1]

    dom = await rendered_dom(share_url)
    qr = dom.split('id="qr"', 1)[1].split("</div>", 1)[0]
    assert "<svg" in qr and ("<path" in qr or "<rect" in qr)  # the script drew the code
    assert "有效 · Valid" in dom and "王小明 Wang" in dom

    reply = await api_client.delete(f"/api/communities/{c.id}/invitations/{invite['id']}",
                                    token=token)
    assert reply.status == 200, reply.body
    dom = await rendered_dom(share_url)
    assert "<svg" not in dom and "王小明 Wang" not in dom  # only the pass's state is shown
    assert "已取消 · Cancelled" in dom
