"""A first end-to-end check through a real server and a real HTTP client."""

import httpx

from tests.conftest import ALICE, LiveServer

TAXII = "application/taxii+json;version=2.1"
INDICATOR = {
    "type": "indicator", "spec_version": "2.1",
    "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
    "created": "2024-01-01T00:00:00.000Z", "modified": "2024-01-01T00:00:00.000Z",
    "created_by_ref": ALICE,
    "pattern": "[ipv4-addr:value = '198.51.100.7']", "pattern_type": "stix",
    "valid_from": "2024-01-01T00:00:00Z",
}


def test_push_then_pull_round_trip(live: LiveServer):
    with httpx.Client(auth=live.env.basic("alice"), headers={"Accept": TAXII}) as client:
        pushed = client.post(live.collection() + "objects/", json={"objects": [INDICATOR]},
                             headers={"Content-Type": TAXII})
        assert pushed.status_code == 202
        assert pushed.json()["status"] == "complete"
        assert pushed.json()["success_count"] == 1
        pulled = client.get(live.collection() + "objects/")
        assert pulled.status_code == 200
        assert pulled.headers["content-type"] == TAXII
        assert pulled.json() == {"more": False, "objects": [INDICATOR]}
