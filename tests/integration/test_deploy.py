"""deploy/: the container image definition and the Kubernetes manifests are
well-formed, consistent with each other, and point at real routes; on
PostgreSQL the ConfigMap's configuration boots a real node."""
import os
import re
import subprocess
import sys
import unittest

try:
    import yaml
except ImportError:  # a Python without PyYAML: Debian's python3-yaml (install-deps)
    sys.path.append("/usr/lib/python3/dist-packages")
    import yaml

from persona_server import ROOT, Redis, Server, postgres_only

DEPLOY = os.path.join(ROOT, "deploy")


def manifests():
    out = {}
    k8s = os.path.join(DEPLOY, "k8s")
    for name in sorted(os.listdir(k8s)):
        if name.endswith(".yaml"):
            with open(os.path.join(k8s, name)) as f:
                for doc in yaml.safe_load_all(f):
                    out[doc["kind"]] = doc
    return out


class DeployTest(unittest.TestCase):
    def setUp(self):
        self.m = manifests()

    def test_every_manifest_is_complete(self):
        for kind in ("ConfigMap", "Secret", "Deployment", "Service",
                     "HorizontalPodAutoscaler", "PodDisruptionBudget"):
            self.assertIn(kind, self.m)
            doc = self.m[kind]
            self.assertTrue(doc.get("apiVersion"), kind)
            self.assertEqual(doc["metadata"]["name"], "persona", kind)

    def test_the_deployment_probes_real_routes_and_uses_the_config_and_secret(self):
        dep = self.m["Deployment"]["spec"]
        labels = dep["template"]["metadata"]["labels"]
        self.assertEqual(dep["selector"]["matchLabels"], labels)
        self.assertGreaterEqual(dep["replicas"], 2)
        (c,) = dep["template"]["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        self.assertEqual(ports, {"http": 8080, "mqtt": 1883})
        self.assertEqual(c["readinessProbe"]["httpGet"], {"path": "/readyz", "port": "http"})
        self.assertEqual(c["livenessProbe"]["httpGet"], {"path": "/healthz", "port": "http"})
        self.assertIn("cpu", c["resources"]["requests"])  # the HPA scales on it
        self.assertEqual(c["envFrom"][0]["secretRef"]["name"], self.m["Secret"]["metadata"]["name"])
        vols = {v["name"]: v for v in dep["template"]["spec"]["volumes"]}
        self.assertEqual(vols["config"]["configMap"]["name"], "persona")
        mounts = {v["mountPath"]: v["name"] for v in c["volumeMounts"]}
        self.assertEqual(mounts["/etc/persona"], "config")
        self.assertIn("/etc/persona/persona.yaml", c["args"])
        self.assertIn("persona.yaml", self.m["ConfigMap"]["data"])

    def test_service_hpa_and_pdb_select_the_deployment(self):
        labels = self.m["Deployment"]["spec"]["template"]["metadata"]["labels"]
        self.assertEqual(self.m["Service"]["spec"]["selector"], labels)
        self.assertEqual(self.m["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"], labels)
        targets = {p["targetPort"] for p in self.m["Service"]["spec"]["ports"]}
        self.assertEqual(targets, {"http", "mqtt"})
        hpa = self.m["HorizontalPodAutoscaler"]["spec"]
        self.assertEqual(hpa["scaleTargetRef"], {"apiVersion": "apps/v1", "kind": "Deployment",
                                                 "name": "persona"})
        (metric,) = hpa["metrics"]
        self.assertEqual(metric["resource"]["name"], "cpu")
        self.assertEqual(metric["resource"]["target"]["averageUtilization"], 70)

    def test_the_secret_holds_what_the_config_reads(self):
        cfg = yaml.safe_load(self.m["ConfigMap"]["data"]["persona.yaml"])
        keys = set(self.m["Secret"]["stringData"])
        self.assertIn(cfg["auth"]["jwt"]["hs256_secret_env"], keys)
        self.assertIn("PERSONA_STORE__URL", keys)
        self.assertIn("PERSONA_BUS__URL", keys)
        self.assertEqual(cfg["store"]["backend"], "postgres")
        self.assertEqual(cfg["bus"]["backend"], "redis")

    def test_the_image_is_debian_12_with_packages_that_exist(self):
        with open(os.path.join(DEPLOY, "Dockerfile")) as f:
            text = f.read()
        froms = re.findall(r"^FROM (\S+)", text, re.M)
        self.assertEqual(froms[0].split(":")[0], "debian")
        self.assertTrue(all(f.startswith("debian:12") for f in froms), froms)
        self.assertIn("EXPOSE 8080 1883", text)
        self.assertIn("/etc/persona/persona.yaml", text)
        install = re.search(r"--no-install-recommends \\\n(.*?)\n \&\&", text, re.S).group(1)
        pkgs = install.replace("\\", " ").split()
        self.assertIn("libpq5", pkgs)
        # Every runtime package is one Debian has (the names carry sonames).
        r = subprocess.run(["apt-cache", "show", "--no-all-versions"] + pkgs,
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)

    @postgres_only
    def test_the_configmaps_configuration_boots_a_node(self):
        redis = Redis().start()
        path = os.path.join(ROOT, "build", "deploy-persona.yaml")
        with open(path, "w") as f:
            f.write(self.m["ConfigMap"]["data"]["persona.yaml"])
        s = Server(extra_args=["--config", path, "--set", "bus.url=" + redis.url()],
                   env={"JWT_SECRET": "x" * 40})
        try:
            s.start()
            for probe in ("/readyz", "/healthz"):
                st, _, _ = s.request("GET", probe)
                self.assertEqual(st, 200, probe)
            st, _, _ = s.request("GET", "/v1/sessions/nope")
            self.assertEqual(st, 401)  # auth is on
        finally:
            s.cleanup()
            redis.cleanup()
            os.remove(path)


if __name__ == "__main__":
    unittest.main()
