"""EndpointSlice and Endpoints controllers against the real apiserver; the test plays the kubelet."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from controllers_kit import cluster, eventually, run, set_pod_status

from control.client import ENDPOINT_SLICES, ENDPOINTS, NODES, PODS, SERVICES, Client, NotFound

SERVICE = {
    "metadata": {"name": "web", "labels": {"team": "a"}},
    "spec": {"selector": {"app": "web"}, "ports": [
        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
        {"name": "metrics", "port": 9090, "targetPort": 9100, "protocol": "TCP"}]},
}


def pod(name: str, *, node: str | None = "worker-1", port_name: str = "http") -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "pause", "ports": [
        {"name": port_name, "containerPort": 8080, "protocol": "TCP"}]}]}
    if node:
        spec["nodeName"] = node
    return {"metadata": {"name": name, "labels": {"app": "web"}}, "spec": spec}


async def slices(client: Client, service: str = "web") -> list[dict[str, Any]]:
    items = (await client.list(ENDPOINT_SLICES, namespace="default",
                               label_selector=f"kubernetes.io/service-name={service}"))["items"]
    return sorted(items, key=lambda s: s["metadata"]["name"])


def by_pod(slice_list: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["targetRef"]["name"]: e for s in slice_list for e in s.get("endpoints") or []}


def test_endpoint_slices_and_endpoints_follow_pods(tmp_path: Path) -> None:
    async def main() -> None:
        async with cluster(tmp_path, "endpointslice", "endpoint") as (_, admin):
            await admin.create(NODES, {"metadata": {"name": "worker-1",
                                                    "labels": {"topology.kubernetes.io/zone": "zone-a"}}})
            svc = await admin.create(SERVICES, SERVICE, namespace="default")

            async def placeholder() -> bool:
                s = await slices(admin)
                return len(s) == 1 and not s[0].get("endpoints")

            await eventually(placeholder, what="placeholder slice")

            p1 = await admin.create(PODS, pod("p1"), namespace="default")
            p2 = await admin.create(PODS, pod("p2"), namespace="default")
            await admin.create(PODS, pod("p3"), namespace="default")  # no IP: not an endpoint
            p4 = await admin.create(PODS, pod("p4", node=None, port_name="other"), namespace="default")
            await set_pod_status(admin, p1, ip="10.244.1.1", ready=True, when="2026-11-25T08:00:00Z")
            await set_pod_status(admin, p2, ip="10.244.1.2", ready=False, when="2026-11-25T08:00:01Z")
            await set_pod_status(admin, p4, ip="10.244.1.4", ready=True, when="2026-11-25T08:00:02Z")

            async def three() -> list[dict[str, Any]] | None:
                s = await slices(admin)
                return s if set(by_pod(s)) == {"p1", "p2", "p4"} else None

            found = await eventually(three, what="slices with p1, p2, p4")
            for s in found:
                assert s["metadata"]["name"].startswith("web-")
                assert s["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == \
                    "endpointslice-controller.k8s.io"
                assert s["metadata"]["labels"]["team"] == "a"
                assert s["addressType"] == "IPv4"
                [ref] = s["metadata"]["ownerReferences"]
                assert (ref["kind"], ref["name"], ref["uid"]) == ("Service", "web", svc["metadata"]["uid"])
            eps = by_pod(found)
            assert eps["p1"] == {"addresses": ["10.244.1.1"],
                                 "conditions": {"ready": True, "serving": True, "terminating": False},
                                 "nodeName": "worker-1", "zone": "zone-a",
                                 "targetRef": {"kind": "Pod", "namespace": "default", "name": "p1",
                                               "uid": p1["metadata"]["uid"]}}
            assert eps["p2"]["conditions"] == {"ready": False, "serving": False, "terminating": False}
            assert "nodeName" not in eps["p4"]
            # p4 has no port named "http": its slice has only the numeric targetPort.
            ports = {s["metadata"]["name"]: sorted((p["name"], p["port"]) for p in s["ports"]) for s in found}
            slice_of = {e["targetRef"]["name"]: s["metadata"]["name"] for s in found for e in s["endpoints"]}
            assert ports[slice_of["p1"]] == [("http", 8080), ("metrics", 9100)]
            assert ports[slice_of["p4"]] == [("metrics", 9100)]
            assert slice_of["p1"] == slice_of["p2"] != slice_of["p4"]

            # p2 turns ready: its endpoint follows, and the trigger time is its Ready transition.
            await set_pod_status(admin, p2, ip="10.244.1.2", ready=True, when="2026-11-25T08:30:00Z")

            async def p2_ready() -> dict[str, Any] | None:
                for s in await slices(admin):
                    for e in s.get("endpoints") or []:
                        if e["targetRef"]["name"] == "p2" and e["conditions"]["ready"]:
                            return s
                return None

            s = await eventually(p2_ready, what="p2 ready")
            assert s["metadata"]["annotations"]["endpoints.kubernetes.io/last-change-trigger-time"] == \
                "2026-11-25T08:30:00Z"

            # Legacy Endpoints.
            async def endpoints() -> dict[str, Any] | None:
                try:
                    ep = await admin.get(ENDPOINTS, "web", namespace="default")
                except NotFound:
                    return None
                ips = sorted(a["ip"] for ss in ep.get("subsets") or [] for a in ss.get("addresses") or [])
                return ep if ips == ["10.244.1.1", "10.244.1.2", "10.244.1.4"] else None

            ep = await eventually(endpoints, what="legacy endpoints")
            subset = next(ss for ss in ep["subsets"] if len(ss["addresses"]) == 2)
            assert sorted((p["name"], p["port"]) for p in subset["ports"]) == [("http", 8080), ("metrics", 9100)]
            assert subset["addresses"][0]["targetRef"]["name"] == "p1"
            assert subset["addresses"][0]["nodeName"] == "worker-1"

            # p1 is deleted (bound to a node: it terminates gracefully): serving+terminating, not ready.
            await admin.delete(PODS, "p1", namespace="default")

            async def p1_terminating() -> bool:
                e = by_pod(await slices(admin)).get("p1")
                return e is not None and e["conditions"] == {"ready": False, "serving": True, "terminating": True}

            await eventually(p1_terminating, what="p1 terminating")

            async def p1_out_of_endpoints() -> bool:
                ep = await admin.get(ENDPOINTS, "web", namespace="default")
                return all(a["ip"] != "10.244.1.1" for ss in ep.get("subsets") or []
                           for a in ss.get("addresses", []) + ss.get("notReadyAddresses", []))

            await eventually(p1_out_of_endpoints, what="p1 out of the legacy endpoints")

            # The Service goes: so do its slices and Endpoints.
            await admin.delete(SERVICES, "web", namespace="default")

            async def gone() -> bool:
                try:
                    await admin.get(ENDPOINTS, "web", namespace="default")
                    return False
                except NotFound:
                    return not await slices(admin)

            await eventually(gone, what="slices and endpoints removed")
            # The apiserver's own Endpoints are untouched.
            await admin.get(ENDPOINTS, "kubernetes", namespace="default")

    run(main)


def test_slices_hold_at_most_100_endpoints_and_publish_not_ready(tmp_path: Path) -> None:
    async def main() -> None:
        async with cluster(tmp_path, "endpointslice") as (_, admin):
            await admin.create(SERVICES, {"metadata": {"name": "db"}, "spec": {
                "clusterIP": "None", "publishNotReadyAddresses": True, "selector": {"app": "db"},
                "ports": [{"port": 5432}]}}, namespace="default")
            for i in range(130):
                p = await admin.create(PODS, {"metadata": {"name": f"db-{i}", "labels": {"app": "db"}},
                                              "spec": {"containers": [{"name": "c", "image": "x"}]}},
                                       namespace="default")
                await set_pod_status(admin, p, ip=f"10.244.2.{i}", ready=False)

            async def spread() -> list[dict[str, Any]] | None:
                s = await slices(admin, "db")
                return s if sum(len(x.get("endpoints") or []) for x in s) == 130 else None

            found = await eventually(spread, what="130 endpoints")
            assert sorted(len(s["endpoints"]) for s in found) == [30, 100]
            for s in found:
                assert s["metadata"]["labels"]["service.kubernetes.io/headless"] == ""
                assert s["ports"] == [{"name": "", "port": 5432, "protocol": "TCP"}]
                assert all(e["conditions"]["ready"] for e in s["endpoints"])  # publishNotReadyAddresses

    run(main)


def test_prefer_close_hints_each_endpoint_for_its_zone_and_turning_it_off_removes_them(tmp_path: Path) -> None:
    async def main() -> None:
        async with cluster(tmp_path, "endpointslice") as (_, admin):
            for node, zone in (("worker-1", "zone-a"), ("worker-2", "zone-b")):
                await admin.create(NODES, {"metadata": {"name": node, "labels": {"topology.kubernetes.io/zone": zone}}})
            svc = await admin.create(SERVICES, {**SERVICE, "spec": {**SERVICE["spec"],
                                                                     "trafficDistribution": "PreferClose"}},
                                     namespace="default")
            for name, node, ip in (("p1", "worker-1", "10.244.1.1"), ("p2", "worker-2", "10.244.2.1")):
                created = await admin.create(PODS, pod(name, node=node), namespace="default")
                await set_pod_status(admin, created, ip=ip, ready=True, when="2026-11-25T08:00:00Z")

            async def hinted() -> dict[str, Any] | None:
                eps = by_pod(await slices(admin))
                return eps if set(eps) == {"p1", "p2"} and all("hints" in e for e in eps.values()) else None

            eps = await eventually(hinted, what="both endpoints hinted")
            assert eps["p1"]["hints"] == {"forZones": [{"name": "zone-a"}]}
            assert eps["p2"]["hints"] == {"forZones": [{"name": "zone-b"}]}

            svc = await admin.get(SERVICES, "web", namespace="default")
            del svc["spec"]["trafficDistribution"]
            await admin.update(SERVICES, svc)

            async def unhinted() -> bool:
                eps = by_pod(await slices(admin))
                return set(eps) == {"p1", "p2"} and not any("hints" in e for e in eps.values())

            await eventually(unhinted, what="hints gone with trafficDistribution")

    run(main)
