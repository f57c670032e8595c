"""Which connections Kubernetes NetworkPolicies allow, by the API's documented semantics
(networking.k8s.io/v1): a pod selected by any policy of its namespace with the Ingress type
is isolated, and then accepts exactly what some rule of those policies allows — a peer (a
podSelector alone means the policy's own namespace; with a namespaceSelector, those
namespaces; an empty selector everything it spans) on a listed port (none listed: all)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PodRef:
    namespace: str
    labels: dict[str, str]


def selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """A LabelSelector: matchLabels and matchExpressions (In, NotIn, Exists, DoesNotExist)."""
    if selector is None:
        return False
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], \
            expression.get("values") or []
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def _peer_matches(peer: dict[str, Any], policy_namespace: str, source: PodRef,
                  namespace_labels: dict[str, dict[str, str]]) -> bool:
    if "ipBlock" in peer:
        return False  # pod-to-pod traffic is judged by selectors, not by pod IPs
    if "namespaceSelector" in peer:
        if not selects(peer["namespaceSelector"], namespace_labels.get(source.namespace, {})):
            return False
    elif source.namespace != policy_namespace:
        return False
    return "podSelector" not in peer or selects(peer["podSelector"], source.labels)


def ingress_allowed(policies: list[dict[str, Any]], target: PodRef, source: PodRef,
                    port: int, namespace_labels: dict[str, dict[str, str]] | None = None
                    ) -> bool:
    namespaces = namespace_labels or {}
    selecting = [p for p in policies if p["metadata"].get("namespace") == target.namespace
                 and "Ingress" in p["spec"].get("policyTypes", ["Ingress"])
                 and selects(p["spec"]["podSelector"], target.labels)]
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get("ingress") or []:
            ports = rule.get("ports")
            if ports and not any(p.get("port") in (None, port) for p in ports):
                continue
            peers = rule.get("from")
            if not peers or any(_peer_matches(peer, policy["metadata"]["namespace"], source,
                                              namespaces) for peer in peers):
                return True
    return False


def egress_to_address_allowed(rules: list[dict[str, Any]], address: str, port: int) -> bool:
    """Egress to an address outside the cluster's pods: some rule has an ipBlock holding
    it (and not in its ``except``) on that port (no ports listed: all); no ``to``: all."""
    ip = ipaddress.ip_address(address)
    for rule in rules:
        ports = rule.get("ports")
        if ports and not any(p.get("port") in (None, port) for p in ports):
            continue
        peers = rule.get("to")
        if not peers:
            return True
        for peer in peers:
            block = peer.get("ipBlock")
            if block and ip in ipaddress.ip_network(block["cidr"]) and not any(
                    ip in ipaddress.ip_network(c) for c in block.get("except", [])):
                return True
    return False
