"""The request latency series keep a bounded set of labels whatever clients send."""

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families


def request_labels(client: TestClient) -> set[tuple[str, str, str]]:
    families = text_string_to_metric_families(client.get("/metrics").text)
    family = next(f for f in families if f.name == "shardtrain_http_request_duration_seconds")
    return {
        (s.labels["method"], s.labels["route"], s.labels["status"])
        for s in family.samples
        if s.name.endswith("_count")
    }


def test_routes_are_templates_and_odd_methods_and_paths_share_a_label(
    client: TestClient,
) -> None:
    client.get("/v1/jobs/job_0123456789abcdef01234567")
    client.request("BREW", "/v1/jobs")
    client.get("/no/such/path/3f9a")
    labels = request_labels(client)
    assert ("GET", "/v1/jobs/{job_id}", "404") in labels
    assert ("other", "/v1/jobs", "405") in labels
    assert ("GET", "unmatched", "404") in labels
    assert not any("job_0123" in route or "3f9a" in route for _, route, _ in labels)
