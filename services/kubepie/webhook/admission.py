"""The admission decision for a kubepie file server pod (AdmissionReview v1, JSONPatch).

Allowed only with a valid identity annotation signed by the gateway for this pod name; the
pod's ids are then set from it. Anything that would let the pod run as someone else or gain
privileges — differing ids at pod or container level, root, privileged containers, privilege
escalation, added capabilities, host namespaces — is denied rather than corrected, so that a
mistake in whoever built the pod is seen.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from joserfc.jwk import ECKey

from services.identity.claims import Identity, IdentityRefused
from services.kubepie.pod_identity import ANNOTATION, verify

API_VERSION = "admission.k8s.io/v1"
CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")


class Denied(Exception):
    """The pod may not be admitted; the message goes to whoever created it."""


def review(body: dict[str, Any], key: ECKey, *, now: float | None = None) -> dict[str, Any]:
    """The AdmissionReview answer to an AdmissionReview request."""
    if body.get("apiVersion") != API_VERSION or body.get("kind") != "AdmissionReview":
        raise ValueError("not an admission.k8s.io/v1 AdmissionReview")
    request = body.get("request") or {}
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise ValueError("the AdmissionReview has no request.uid")
    answer: dict[str, Any] = {"uid": uid}
    try:
        patch = decide(request, key, now=now)
    except Denied as exc:
        answer |= {"allowed": False, "status": {"code": 403, "reason": "Forbidden",
                                                "message": f"kubepie: {exc}"}}
    else:
        answer |= {"allowed": True, "patchType": "JSONPatch",
                   "patch": base64.b64encode(json.dumps(patch).encode()).decode()}
    return {"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": answer}


def decide(request: dict[str, Any], key: ECKey, *, now: float | None = None
           ) -> list[dict[str, Any]]:
    kind = request.get("kind") or {}
    if kind.get("kind") != "Pod" or kind.get("group", "") != "":
        raise Denied(f"only pods are handled here, not {kind.get('kind')!r}")
    if request.get("operation") != "CREATE":
        return []  # a pod's ids cannot change after creation
    pod = request.get("object") or {}
    meta = pod.get("metadata") or {}
    name = meta.get("name") or ""
    if not name:
        raise Denied("the pod has no name (generateName is not used by the gateway)")
    token = (meta.get("annotations") or {}).get(ANNOTATION)
    if not token:
        raise Denied(f"no {ANNOTATION} annotation: only the gateway starts file servers")
    try:
        identity = verify(token, name, key, now=now)
    except IdentityRefused as exc:
        raise Denied(str(exc)) from None
    if identity.uid == 0 or identity.gid == 0 or 0 in identity.gids:
        raise Denied("id 0 (root) is never admitted")
    spec = pod.get("spec") or {}
    _check_spec(spec, identity)
    return _patch(spec, identity)


def _check_spec(spec: dict[str, Any], identity: Identity) -> None:
    for flag in ("hostNetwork", "hostPID", "hostIPC", "hostUsers"):
        if spec.get(flag) is True and flag != "hostUsers":
            raise Denied(f"spec.{flag} is not allowed")
    context = spec.get("securityContext") or {}
    _same_ids("spec.securityContext", context, identity)
    extra = set(context.get("supplementalGroups") or []) - set(identity.gids)
    if extra:
        raise Denied(f"spec.securityContext.supplementalGroups has {sorted(extra)}, which "
                     "the identity does not")
    if context.get("fsGroup") not in (None, identity.gid):
        raise Denied("spec.securityContext.fsGroup differs from the identity's gid")
    for list_name in CONTAINER_LISTS:
        for container in spec.get(list_name) or []:
            where = f"spec.{list_name}[{container.get('name')}].securityContext"
            security = container.get("securityContext") or {}
            _same_ids(where, security, identity)
            if security.get("privileged") is True:
                raise Denied(f"{where}.privileged is not allowed")
            if security.get("allowPrivilegeEscalation") is True:
                raise Denied(f"{where}.allowPrivilegeEscalation is not allowed")
            if (security.get("capabilities") or {}).get("add"):
                raise Denied(f"{where}.capabilities.add is not allowed")


def _same_ids(where: str, context: dict[str, Any], identity: Identity) -> None:
    for field, wanted in (("runAsUser", identity.uid), ("runAsGroup", identity.gid)):
        if context.get(field) not in (None, wanted):
            raise Denied(f"{where}.{field}={context[field]} differs from the verified "
                         f"identity ({identity.username}: {wanted})")
    if context.get("runAsNonRoot") is False:
        raise Denied(f"{where}.runAsNonRoot=false is not allowed")


def _patch(spec: dict[str, Any], identity: Identity) -> list[dict[str, Any]]:
    values = {"runAsUser": identity.uid, "runAsGroup": identity.gid,
              "supplementalGroups": list(identity.gids), "runAsNonRoot": True}
    if not isinstance(spec.get("securityContext"), dict):
        return [{"op": "add", "path": "/spec/securityContext", "value": values}]
    return [{"op": "add", "path": f"/spec/securityContext/{name}", "value": value}
            for name, value in values.items()]
