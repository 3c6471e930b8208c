#!/usr/bin/env python3
"""Benchmark `riptide build` against `kubectl kustomize`.

usage: bench.py --riptide PATH [--kubectl kubectl] [--corpus DIR] [--sizes 1000,4000,20000]
                [--repeat N] [--skip-kubectl-above N] [--json FILE]

Runs both tools on (a) every case of the conformance corpus (when --corpus is given) and
(b) generated trees of the given numbers of output objects: overlays over shared bases, with
patches, generators, replacements and a name prefix. The two tools alternate on each case, so
both see the same machine state. For each case it prints the wall time of both, the ratio,
and the peak RSS of each (from wait4), then the median ratio and the growth of our time.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def run(cmd, cwd=None):
    """Runs cmd, returns (seconds, peak RSS in KiB, exit code)."""
    start = time.monotonic()
    with open(os.devnull, "wb") as null:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=null, stderr=null)
        _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.monotonic() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return elapsed, usage.ru_maxrss, proc.returncode


DEPLOYMENT = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: app{i}
  labels: {{app: app{i}}}
spec:
  replicas: 1
  selector:
    matchLabels: {{app: app{i}}}
  template:
    metadata:
      labels: {{app: app{i}}}
    spec:
      containers:
      - name: main
        image: registry.example.com/app:1.0.{i}
        env:
        - name: MODE
          valueFrom:
            configMapKeyRef: {{name: settings-{i}, key: mode}}
        ports:
        - containerPort: 8080
        volumeMounts:
        - {{name: config, mountPath: /etc/app}}
      volumes:
      - name: config
        configMap: {{name: settings-{i}}}
"""

SERVICE = """apiVersion: v1
kind: Service
metadata:
  name: app{i}
spec:
  selector: {{app: app{i}}}
  ports:
  - port: 80
    targetPort: 8080
"""


def generate(root, objects):
    """A tree producing about `objects` objects: bases of 50 apps (deployment, service,
    configmap generator) shared by overlays that add a prefix, patches and replacements."""
    per_base_apps = 50
    per_app = 3  # deployment, service, configmap
    n_bases = max(1, objects // (per_base_apps * per_app))
    for b in range(n_bases):
        base = os.path.join(root, "bases", f"b{b}")
        os.makedirs(base)
        docs = []
        gens = []
        for i in range(per_base_apps):
            docs.append(DEPLOYMENT.format(i=i))
            docs.append(SERVICE.format(i=i))
            gens.append(f"- name: settings-{i}\n  literals: [mode=base, index={i}]\n")
        with open(os.path.join(base, "apps.yaml"), "w") as fh:
            fh.write("---\n".join(docs))
        with open(os.path.join(base, "kustomization.yaml"), "w") as fh:
            fh.write("resources: [apps.yaml]\nconfigMapGenerator:\n" + "".join(gens))
        overlay = os.path.join(root, "overlays", f"o{b}")
        os.makedirs(overlay)
        with open(os.path.join(overlay, "kustomization.yaml"), "w") as fh:
            fh.write(f"""resources: [../../bases/b{b}]
namePrefix: o{b}-
namespace: ns{b}
commonLabels: {{overlay: o{b}}}
images:
- name: registry.example.com/app
  newTag: "2.0"
patches:
- target: {{kind: Deployment}}
  patch: |-
    apiVersion: apps/v1
    kind: Deployment
    metadata: {{name: any}}
    spec:
      replicas: 2
      template:
        spec:
          containers:
          - name: main
            resources:
              limits: {{cpu: 100m}}
- target: {{kind: Service}}
  patch: |-
    - op: add
      path: /metadata/annotations
      value: {{overlay: o{b}}}
configMapGenerator:
- name: settings-0
  behavior: merge
  literals: [mode=overlay]
replacements:
- source: {{kind: ConfigMap, name: settings-1, fieldPath: data.mode}}
  targets:
  - select: {{kind: Deployment, name: app1}}
    fieldPaths: [metadata.annotations.mode]
    options: {{create: true}}
""")
    with open(os.path.join(root, "kustomization.yaml"), "w") as fh:
        fh.write("resources:\n" + "".join(f"- overlays/o{b}\n" for b in range(n_bases)))
    return n_bases * per_base_apps * per_app


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--riptide", required=True)
    ap.add_argument("--kubectl", default="kubectl")
    ap.add_argument("--corpus", default=None, help="conformance cases directory")
    ap.add_argument("--sizes", default="1000,4000,20000")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--skip-kubectl-above", type=int, default=10**9,
                    help="do not run kubectl on generated trees larger than this")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rows = []

    def measure(name, path, cwd=None):
        ours, theirs = [], []
        for _ in range(args.repeat):
            ours.append(run([args.riptide, "build", path], cwd))
            if theirs is not None:
                theirs.append(run([args.kubectl, "kustomize", path], cwd))
        o = min(ours)
        t = min(theirs) if theirs else None
        row = {"case": name, "riptide_s": round(o[0], 4), "riptide_rss_kib": o[1]}
        if t:
            row.update({"kubectl_s": round(t[0], 4), "kubectl_rss_kib": t[1],
                        "ratio": round(t[0] / o[0], 1), "rss_ratio": round(t[1] / o[1], 1)})
        rows.append(row)
        print(f"{name:55s} riptide {o[0]*1000:9.1f} ms {o[1]/1024:7.1f} MiB"
              + (f"   kubectl {t[0]*1000:9.1f} ms {t[1]/1024:7.1f} MiB   {t[0]/o[0]:6.1f}x" if t else ""),
              flush=True)

    if args.corpus:
        manifest = os.path.join(os.path.dirname(args.corpus.rstrip("/")), "MANIFEST.tsv")
        entries = {}
        if os.path.exists(manifest):
            for line in open(manifest).read().splitlines()[1:]:
                cols = line.split("\t")
                entries[cols[0]] = cols[4]
        for case in sorted(os.listdir(args.corpus)):
            d = os.path.join(args.corpus, case)
            if os.path.isdir(d) and os.path.exists(os.path.join(d, "expected.yaml")):
                measure(case, entries.get(case, "input"), cwd=d)
        ratios = [r["ratio"] for r in rows if "ratio" in r]
        if ratios:
            print(f"corpus: median speed-up {statistics.median(ratios):.1f}x over {len(ratios)} cases")

    for size in [int(s) for s in args.sizes.split(",") if s]:
        tmp = tempfile.mkdtemp(prefix=f"riptide-bench-{size}-")
        try:
            n = generate(tmp, size)
            name = f"generated-{n}-objects"
            if size > args.skip_kubectl_above:
                o = run([args.riptide, "build", tmp])
                rows.append({"case": name, "riptide_s": round(o[0], 4), "riptide_rss_kib": o[1]})
                print(f"{name:55s} riptide {o[0]*1000:9.1f} ms {o[1]/1024:7.1f} MiB   (kubectl skipped)")
            else:
                measure(name, tmp)
        finally:
            shutil.rmtree(tmp)
    gen = [r for r in rows if r["case"].startswith("generated-")]
    if len(gen) > 1:
        a, b = gen[0], gen[-1]
        na, nb = int(a["case"].split("-")[1]), int(b["case"].split("-")[1])
        print(f"growth: {nb/na:.0f}x objects -> {b['riptide_s']/a['riptide_s']:.1f}x riptide time")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    sys.exit(main())
