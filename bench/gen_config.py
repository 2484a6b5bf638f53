#!/usr/bin/env python3
"""Writes N mixed, valid Istio + Kubernetes objects into DIR, 100 objects per file.

Usage: gen_config.py DIR N
"""
import os
import sys


def objects(i):
    ns = f"ns{i % 20}"
    svc = f"svc{i}"
    host = f"{svc}.{ns}.svc.cluster.local"
    kinds = [
        f"""apiVersion: v1
kind: Service
metadata:
  name: {svc}
  namespace: {ns}
  labels: {{app: {svc}}}
spec:
  selector: {{app: {svc}}}
  ports:
  - name: http
    port: 9080
    targetPort: 9080
""",
        f"""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: {svc}
  namespace: {ns}
spec:
  hosts: [{svc}]
  http:
  - match:
    - headers:
        end-user: {{exact: jason}}
      uri: {{prefix: /api/v{i % 3}}}
    route:
    - destination: {{host: {svc}, subset: v2}}
    timeout: 3s
    retries: {{attempts: 3, perTryTimeout: 500ms, retryOn: "5xx,connect-failure"}}
  - route:
    - destination: {{host: {svc}, subset: v1}}
      weight: 90
    - destination: {{host: {svc}, subset: v2}}
      weight: 10
""",
        f"""apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: {svc}
  namespace: {ns}
spec:
  host: {host}
  trafficPolicy:
    loadBalancer: {{simple: LEAST_REQUEST}}
    connectionPool:
      tcp: {{maxConnections: 100, connectTimeout: 30ms}}
      http: {{http1MaxPendingRequests: 10, maxRequestsPerConnection: 10}}
    outlierDetection: {{consecutive5xxErrors: 7, interval: 5m, baseEjectionTime: 15m}}
  subsets:
  - name: v1
    labels: {{version: v1}}
  - name: v2
    labels: {{version: v2}}
""",
        f"""apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: ext{i}
  namespace: {ns}
spec:
  hosts: [api{i}.example.com]
  location: MESH_EXTERNAL
  resolution: DNS
  ports:
  - number: 443
    name: https
    protocol: TLS
""",
        f"""apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: {svc}
  namespace: {ns}
spec:
  selector:
    matchLabels: {{app: {svc}}}
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/{ns}/sa/client"]
    to:
    - operation:
        methods: [GET]
        paths: ["/api/*"]
""",
    ]
    return kinds[i % len(kinds)]


def main():
    out, count = sys.argv[1], int(sys.argv[2])
    os.makedirs(out, exist_ok=True)
    per_file = 100
    for f in range(0, count, per_file):
        docs = [objects(i) for i in range(f, min(f + per_file, count))]
        with open(os.path.join(out, f"objects-{f // per_file:04}.yaml"), "w") as fh:
            fh.write("---\n".join(docs))


if __name__ == "__main__":
    main()
