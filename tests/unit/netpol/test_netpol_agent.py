"""The agent process against a real apiserver in-process, with its own credentials and a recording backend."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path

import pytest

from control.client import (
    ADMIN_NETWORK_POLICIES,
    BASELINE_ADMIN_NETWORK_POLICIES,
    NAMESPACES,
    NETWORK_POLICIES,
    PODS,
    Client,
)
from firewall.tracing import Packet
from netpol.errors import NetpolError
from netpol.iptables import FakeIptables, IptablesCommand
from netpol.nftables import group_key_chain
from netpol.server import AgentConfig, NetpolAgent
from tests.harness import local_apiserver
from tests.netpol_cases import anp, banp, policy


class RecordingBackend:
    def __init__(self) -> None:
        self.applied: list[str] = []
        self.refuse = False
        self.changed = asyncio.Event()

    def apply(self, transaction: str) -> None:
        if self.refuse:
            raise NetpolError("nft refused the ruleset: injected")
        self.applied.append(transaction)
        self.changed.set()


async def until(predicate: Callable[[], object], what: str, timeout: float = 10) -> None:
    """Until PREDICATE holds; the timeout only guards against a hang and names what never happened."""
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"never happened: {what}") from None


def failures(agent: NetpolAgent) -> float:
    return agent.metrics.registry.get_sample_value("kube_network_policies_sync_failures_total") or 0




def test_the_agent_programs_policies_for_its_own_pods_and_keeps_them_when_a_sync_fails(tmp_path: Path) -> None:
    async def main() -> None:
        async with local_apiserver(tmp_path) as api:
            admin = api.client("admin")
            await admin.create(NAMESPACES, {"metadata": {"name": "x"}})
            pod = {"metadata": {"namespace": "x", "name": "a", "labels": {"app": "a"}},
                   "spec": {"nodeName": "worker-1", "containers": [{"name": "c", "image": "pause"}]}}
            created = await admin.create(PODS, pod, namespace="x")
            created["status"] = {"phase": "Running", "podIP": "10.244.1.7", "podIPs": [{"ip": "10.244.1.7"}]}
            await admin.update_status(PODS, created, namespace="x")

            backend = RecordingBackend()
            agent = NetpolAgent(api.client("netpol"), AgentConfig("worker-1", min_sync_period=0.01,
                                                                  healthz_address="127.0.0.1:0",
                                                                  metrics_address="127.0.0.1:0"), backend)
            task = asyncio.get_running_loop().create_task(agent.run())
            try:
                await until(lambda: backend.applied, "a first sync")
                assert "10.244.1.7 : goto" not in backend.applied[-1]  # not isolated yet

                await admin.create(NETWORK_POLICIES, policy("x", "deny", {"podSelector": {}}), namespace="x")
                deny = group_key_chain("Ingress", ("x/deny",))
                await until(lambda: f"10.244.1.7 : goto {deny}" in backend.applied[-1], "the deny")
                assert not backend.applied[-1].startswith("add table")  # a change, not the whole table

                # A refused sync: nothing new is recorded as applied, the failure is counted, and the
                # runner tries again until it lands.
                backend.refuse = True
                await admin.create(NETWORK_POLICIES, policy("x", "allow", {"podSelector": {}, "ingress": [{}]}),
                                   namespace="x")
                await until(lambda: failures(agent) >= 1, "a failed sync")
                assert agent.applied is None  # what the kernel holds is no longer taken for granted
                backend.refuse = False
                # The retry replaces the whole table rather than patching it.
                await until(lambda: "x/allow ingress rule 0" in backend.applied[-1], "the retried sync", timeout=15)
                assert backend.applied[-1].startswith("add table ip kubesim-netpol\ndelete table")
                assert agent.applied is not None and "ingress-x/allow" in agent.applied.chains
            finally:
                agent.stop()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    asyncio.run(main())


def test_sync_sends_changes_then_the_whole_table_after_a_failure_and_every_full_sync_period() -> None:
    # The sync method on its own: stores filled as the informers' watch fills them.
    async def main() -> None:
        backend = RecordingBackend()
        agent = NetpolAgent(Client("https://127.0.0.1:1"), AgentConfig("worker-1"), backend)
        agent.namespaces.store.put({"metadata": {"name": "x", "uid": "ns-x", "resourceVersion": "1"}})
        agent.pods.store.put({"metadata": {"namespace": "x", "name": "a", "uid": "pod-a", "resourceVersion": "1"},
                              "spec": {"nodeName": "worker-1"}, "status": {"phase": "Running", "podIP": "10.244.1.7"}})
        deny = policy("x", "deny", {"podSelector": {}})
        deny["metadata"].update(uid="np-deny", resourceVersion="1")
        agent.policies.store.put(deny)
        await agent.sync()
        assert backend.applied == []  # nothing before every informer has synced
        for informer in agent.informers:
            informer._synced = True

        def is_full(transaction: str) -> bool:
            return transaction.startswith("add table ip kubesim-netpol\ndelete table")

        await agent.sync()
        assert is_full(backend.applied[-1]) and "10.244.1.7 : goto" in backend.applied[-1]
        await agent.sync()
        assert len(backend.applied) == 1  # nothing changed: nothing sent

        allow = policy("x", "allow", {"podSelector": {}, "ingress": [{"ports": [{"port": 80}]}]})
        allow["metadata"].update(uid="np-allow", resourceVersion="2")
        agent.policies.store.put(allow)
        await agent.sync()
        assert not is_full(backend.applied[-1]) and "add chain ip kubesim-netpol ingress-x/allow" in backend.applied[-1]

        backend.refuse = True
        agent.policies.store.remove("x/allow")
        with pytest.raises(NetpolError):
            await agent.sync()
        assert failures(agent) == 1 and agent.applied is None
        backend.refuse = False
        await agent.sync()
        assert is_full(backend.applied[-1]) and "x/allow" not in backend.applied[-1]

        agent.config.full_sync_period = 0  # every sync is due for a full one
        agent.policies.store.put({**allow, "metadata": {**allow["metadata"], "resourceVersion": "3"}})
        await agent.sync()
        assert is_full(backend.applied[-1]) and "x/allow" in backend.applied[-1]

    asyncio.run(main())


def test_pods_no_policy_selects_come_and_go_without_a_word_to_nft_and_a_policy_brings_their_self_rule() -> None:
    async def main() -> None:
        backend = RecordingBackend()
        agent = NetpolAgent(Client("https://127.0.0.1:1"), AgentConfig("worker-1"), backend)
        agent.namespaces.store.put({"metadata": {"name": "x", "uid": "ns-x", "resourceVersion": "1"}})
        for informer in agent.informers:
            informer._synced = True
        await agent.sync()  # the first: the whole (empty) table
        assert len(backend.applied) == 1

        def pod(name: str, ip: str, version: str) -> dict[str, object]:
            return {"metadata": {"namespace": "x", "name": name, "uid": f"pod-{name}", "resourceVersion": version,
                                 "labels": {"app": name}},
                    "spec": {"nodeName": "worker-1"}, "status": {"phase": "Running", "podIP": ip}}

        for i in range(3):  # a Deployment starting on this node, with no policy in the cluster
            agent.pods.store.put(pod(f"p{i}", f"10.244.1.{i + 2}", "2"))
            await agent.sync()
        agent.pods.store.remove("x/p2")
        await agent.sync()
        assert len(backend.applied) == 1  # nothing any rule depends on changed

        deny = policy("x", "deny-p0", {"podSelector": {"matchLabels": {"app": "p0"}}})
        deny["metadata"].update(uid="np-deny", resourceVersion="3")
        agent.policies.store.put(deny)
        await agent.sync()
        # The isolated pod may still reach itself through a Service; the one left alone needs no rule.
        assert "10.244.1.2 . 10.244.1.2" in backend.applied[-1] and "10.244.1.3 . 10.244.1.3" not in backend.applied[-1]
        agent.policies.store.remove("x/deny-p0")
        await agent.sync()
        assert "10.244.1.2 . 10.244.1.2" not in backend.applied[-1] and "local-self" in backend.applied[-1]

    asyncio.run(main())


def test_in_iptables_mode_the_agent_writes_kube_nwplcy_chains(tmp_path: Path) -> None:
    async def main() -> None:
        async with local_apiserver(tmp_path) as api:
            admin = api.client("admin")
            await admin.create(NAMESPACES, {"metadata": {"name": "x"}})
            pod = {"metadata": {"namespace": "x", "name": "a", "labels": {"app": "a"}},
                   "spec": {"nodeName": "worker-1", "containers": [{"name": "c", "image": "pause"}]}}
            created = await admin.create(PODS, pod, namespace="x")
            created["status"] = {"phase": "Running", "podIP": "10.244.1.7", "podIPs": [{"ip": "10.244.1.7"}]}
            await admin.update_status(PODS, created, namespace="x")

            fake = FakeIptables()
            agent = NetpolAgent(api.client("netpol"), AgentConfig("worker-1", mode="iptables", min_sync_period=0.01,
                                                                  healthz_address="127.0.0.1:0",
                                                                  metrics_address="127.0.0.1:0"),
                                IptablesCommand(runner=fake))
            task = asyncio.get_running_loop().create_task(agent.run())
            probe = Packet("10.244.2.9", "10.244.1.7", 80)
            try:
                await until(lambda: fake.transactions, "a first sync")
                assert fake.trace(probe).verdict == "ACCEPT"
                await admin.create(NETWORK_POLICIES, policy("x", "web", {"podSelector": {}, "ingress": [
                    {"ports": [{"port": 8080}]}]}), namespace="x")
                await until(lambda: fake.trace(probe).verdict == "DROP", "the policy, in the fake's FORWARD")
                assert fake.trace(Packet("10.244.2.9", "10.244.1.7", 8080)).verdict == "ACCEPT"
                assert agent.metrics.registry.get_sample_value("kube_network_policies_rules") == 1
                # After the first, full sync, a change is restored alone: the policy's chain and the
                # group and top chains that name it, never a whole table (and no jump from FORWARD).
                change = fake.transactions[-1]
                assert "-A FORWARD" not in change and "-D FORWARD" not in change
                assert ":KUBE-NWPLCY-I-x.web - [0:0]" in change
            finally:
                agent.stop()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    asyncio.run(main())


def test_the_agent_watches_admin_network_policies_with_its_own_credentials(tmp_path: Path) -> None:
    async def main() -> None:
        async with local_apiserver(tmp_path) as api:
            admin = api.client("admin")
            await admin.create(NAMESPACES, {"metadata": {"name": "x"}})
            pod = {"metadata": {"namespace": "x", "name": "a"},
                   "spec": {"nodeName": "worker-1", "containers": [{"name": "c", "image": "pause"}]}}
            created = await admin.create(PODS, pod, namespace="x")
            created["status"] = {"phase": "Running", "podIP": "10.244.1.7", "podIPs": [{"ip": "10.244.1.7"}]}
            await admin.update_status(PODS, created, namespace="x")

            backend = RecordingBackend()
            agent = NetpolAgent(api.client("netpol"), AgentConfig("worker-1", min_sync_period=0.01,
                                                                  healthz_address="127.0.0.1:0",
                                                                  metrics_address="127.0.0.1:0"), backend)
            task = asyncio.get_running_loop().create_task(agent.run())
            try:
                await until(lambda: backend.applied, "a first sync")
                await admin.create(ADMIN_NETWORK_POLICIES, anp("deny-all", 5, {
                    "subject": {"namespaces": {}},
                    "ingress": [{"action": "Deny", "from": [{"namespaces": {}}]}]}))
                await admin.create(BASELINE_ADMIN_NETWORK_POLICIES, banp({
                    "subject": {"namespaces": {}}, "egress": [{"action": "Allow", "to": [{"namespaces": {}}]}]}))
                await until(lambda: '"AdminNetworkPolicy/deny-all ingress rule 0: Deny"' in "".join(backend.applied),
                            "the ANP's rule")
                await until(lambda: "goto egress-baseline" in "".join(backend.applied), "the BANP's map element")
                await until(lambda: agent.metrics.registry.get_sample_value(
                    "kube_network_policies_admin_policies") == 2, "both admin policies counted")
            finally:
                agent.stop()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    asyncio.run(main())
