"""What tests/validators/deploy.rs cannot do in Rust: read YAML, check it against the Kubernetes schemas and
render the Helm chart with Helm's own engine. Every command prints JSON on stdout.

    deploy_check.py load FILE...              the YAML documents of each file ("-": stdin)
    deploy_check.py validate VERSION...       validate the objects of a `load` answer (stdin) against
                                              each Kubernetes version's strict schemas
    deploy_check.py render CHART VALUES NAME NAMESPACE
                                              `helm template`: the chart's objects for these values
    deploy_check.py lint CHART VALUES KUBE_VERSION
                                              `helm lint --strict`: the findings

kubernetes-validate bundles the upstream OpenAPI schemas per version; "strict" refuses unknown
fields, so a misspelt or misplaced key fails. helm-python-sdk binds Helm's Go SDK (libhelm_c): the
templates render through the real Helm engine, not a reimplementation.
"""

import json
import sys

import yaml


def load_documents(path):
    text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
    return [doc for doc in yaml.safe_load_all(text) if doc is not None]


def cmd_load(paths):
    return [{"source": path, "object": doc} for path in paths for doc in load_documents(path)]


def cmd_validate(versions):
    from kubernetes_validate import utils

    results = []
    for item in json.load(sys.stdin):
        obj = item["object"]
        for version in versions:
            error = None
            try:
                utils.validate(obj, version, strict=True)
            except utils.ValidationError as e:
                path = ".".join(str(p) for p in e.path)
                error = f"{path}: {e.message}"
            except utils.SchemaNotFoundError as e:
                error = e.message
            results.append(
                {
                    "source": item["source"],
                    "kind": obj.get("kind"),
                    "name": (obj.get("metadata") or {}).get("name"),
                    "version": version,
                    "error": error,
                }
            )
    return results


def cmd_render(chart, values_path, name, namespace):
    import helm_python as helm

    with open(values_path, encoding="utf-8") as f:
        values = yaml.safe_load(f) or {}
    with helm.Chart.load(chart) as loaded:
        loaded.validate_schema(values)
        manifests = loaded.render(values, name=name, namespace=namespace, is_install=True)
    objects = []
    for template, text in sorted(manifests.items()):
        if template.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc is not None:
                objects.append({"source": template, "object": doc})
    return objects


def cmd_lint(chart, values_path, kube_version):
    import helm_python as helm

    with open(values_path, encoding="utf-8") as f:
        values = yaml.safe_load(f) or {}
    return helm.lint(chart, values, strict=True, kube_version=kube_version)


def main(argv):
    command, args = argv[0], argv[1:]
    if command == "load":
        out = cmd_load(args)
    elif command == "validate":
        out = cmd_validate(args)
    elif command == "render":
        out = cmd_render(*args)
    elif command == "lint":
        out = cmd_lint(*args)
    else:
        raise SystemExit(f"unknown command {command!r}")
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1:])
