"""Which pod IPs kube-proxy routes to, read from iptables-save, and when one stops being routed."""

from __future__ import annotations

from lab.bench.endpoints import KubeProxyWatcher, NodeRules, routed_pod_ips

# the shape kube-proxy 1.29 writes in iptables mode (trimmed): one service with two
# endpoints, one of which is only left as a SEP chain nobody jumps to any more
NAT_TABLE = """\
*nat
:KUBE-SEP-AAAAAAAAAAAAAAAA - [0:0]
:KUBE-SEP-BBBBBBBBBBBBBBBB - [0:0]
:KUBE-SVC-XXXXXXXXXXXXXXXX - [0:0]
-A KUBE-EXT-XXXXXXXXXXXXXXXX -j KUBE-SVC-XXXXXXXXXXXXXXXX
-A KUBE-SEP-AAAAAAAAAAAAAAAA -s 192.168.1.5/32 -m comment --comment "app/app:http" -j KUBE-MARK-MASQ
-A KUBE-SEP-AAAAAAAAAAAAAAAA -p tcp -m comment --comment "app/app:http" -m tcp -j DNAT --to-destination 192.168.1.5:8080
-A KUBE-SEP-BBBBBBBBBBBBBBBB -p tcp -m comment --comment "app/app:http" -m tcp -j DNAT --to-destination 192.168.2.7:8080
-A KUBE-SVC-XXXXXXXXXXXXXXXX -m comment --comment "app/app:http -> 192.168.1.5:8080" -j KUBE-SEP-AAAAAAAAAAAAAAAA
COMMIT
""".splitlines()


def test_only_endpoints_a_service_chain_jumps_to_are_routed():
    assert routed_pod_ips(NAT_TABLE) == {"192.168.1.5"}
    assert routed_pod_ips([]) == frozenset()


def test_the_first_snapshot_without_the_ip_after_the_deletion():
    rules = NodeRules("n1", [(10.0, frozenset({"a", "b"})), (10.1, frozenset({"b"})), (10.2, frozenset({"b"}))])
    assert rules.unrouted_at("a", since=10.05) == 10.1
    assert rules.unrouted_at("a", since=9.0) == 10.1
    assert rules.unrouted_at("b", since=9.0) is None


def test_propagation_is_when_the_last_node_stopped_routing():
    watcher = KubeProxyWatcher.__new__(KubeProxyWatcher)  # the analysis only, no SSH sessions
    watcher.rules = {
        "n1": NodeRules("n1", [(10.0, frozenset({"a"})), (10.3, frozenset())]),
        "n2": NodeRules("n2", [(10.0, frozenset({"a"})), (10.4, frozenset({"a"})), (11.2, frozenset())]),
    }
    assert watcher.propagation("a", deleted_at=10.1) == 11.2 - 10.1
    watcher.rules["n3"] = NodeRules("n3", [(10.0, frozenset({"a"})), (12.0, frozenset({"a"}))])
    assert watcher.propagation("a", deleted_at=10.1) is None  # n3 still routes to it
