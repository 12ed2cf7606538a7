"""deploy/: the container image definition and the Kubernetes manifests are
well-formed, consistent with each other, and point at real routes; on
PostgreSQL the ConfigMap's configuration boots a real node. The Prometheus
alert rules pass `promtool check rules` and their unit tests, a real
Prometheus (Debian's) scrapes persona and loads them, and the Grafana
dashboard asks only for metrics persona exports."""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse
import urllib.request

try:
    import yaml
except ImportError:  # a Python without PyYAML: Debian's python3-yaml (install-deps)
    sys.path.append("/usr/lib/python3/dist-packages")
    import yaml

from persona_server import ROOT, Redis, Server, free_port, postgres_only

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


PROM = os.path.join(DEPLOY, "prometheus")


class PrometheusTest(unittest.TestCase):
    def test_the_alert_rules_check_and_pass_their_unit_tests(self):
        for cmd in (["promtool", "check", "rules", "alerts.yml"],
                    ["promtool", "test", "rules", "alerts_test.yml"]):
            r = subprocess.run(cmd, cwd=PROM, capture_output=True, text=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        r = subprocess.run(["promtool", "check", "config", "prometheus.yml"], cwd=PROM,
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_a_real_prometheus_scrapes_persona_and_loads_the_rules(self):
        work = tempfile.mkdtemp(prefix="persona-prom-")
        flags = os.path.join(work, "flags.json")
        with open(flags, "w") as f:
            json.dump({"flags": {"persona.gate": {
                "state": "ENABLED", "variants": {"on": True, "off": False},
                "defaultVariant": "on"}}}, f)
        s = Server(extra_args=["--set", "ai.cache.enabled=true", "--set", "flags.file=" + flags])
        prom = None
        try:
            s.start()
            st, _, b = s.request("POST", "/v1/sessions", {"user_id": "p"})
            s.request("POST", "/v1/sessions/%s/messages" % b["session_id"], {"text": "hello"})
            shutil.copy(os.path.join(PROM, "alerts.yml"), work)
            port = free_port()
            with open(os.path.join(work, "prometheus.yml"), "w") as f:
                f.write("global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
                        "rule_files: [alerts.yml]\n"
                        "scrape_configs:\n"
                        "  - job_name: persona\n"
                        "    static_configs: [{targets: ['127.0.0.1:%d']}]\n" % s.port)
            prom = subprocess.Popen(
                ["prometheus", "--config.file=" + os.path.join(work, "prometheus.yml"),
                 "--storage.tsdb.path=" + os.path.join(work, "data"),
                 "--web.listen-address=127.0.0.1:%d" % port],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

            def api(path):
                with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path),
                                            timeout=5) as r:
                    return json.loads(r.read())

            def until(fn, what, timeout=60):
                deadline = time.time() + timeout
                while time.time() < deadline:
                    try:
                        v = fn()
                        if v:
                            return v
                    except (OSError, IndexError, KeyError):
                        pass  # not up yet
                    time.sleep(0.5)
                self.fail("timed out waiting for " + what)

            until(lambda: api("/api/v1/targets")["data"]["activeTargets"][0]["health"] == "up",
                  "the persona target to be up")
            steps = until(lambda: api("/api/v1/query?query=persona_steps_total")["data"]["result"],
                          "persona_steps_total in Prometheus")
            self.assertGreaterEqual(float(steps[0]["value"][1]), 1)
            groups = until(lambda: api("/api/v1/rules")["data"]["groups"], "the rules")
            rules = groups[0]["rules"]
            self.assertEqual(len(rules), 7)
            until(lambda: all(r["health"] == "ok" for r in
                              api("/api/v1/rules")["data"]["groups"][0]["rules"]),
                  "every rule evaluated")
            # Every metric the Grafana dashboard asks for is one persona exports.
            _, _, text = s.request("GET", "/metrics")
            exported = set(re.findall(r"^# TYPE (persona_[a-z0-9_]+)", text, re.M))
            dash = json.load(open(os.path.join(DEPLOY, "grafana", "persona.json")))
            asked = set()
            for p in dash["panels"]:
                for t in p["targets"]:
                    asked |= {re.sub(r"_(bucket|sum|count)$", "", m)
                              for m in re.findall(r"persona_[a-z0-9_]+", t["expr"])}
            self.assertTrue(asked, "the dashboard asks for nothing")
            self.assertEqual(asked - exported, set())
            # And every dashboard query is one Prometheus accepts.
            for p in dash["panels"]:
                for t in p["targets"]:
                    r = api("/api/v1/query?query=" + urllib.parse.quote(t["expr"]))
                    self.assertEqual(r["status"], "success", t["expr"])
            # persona stops: PersonaDown goes pending.
            s.stop()
            until(lambda: any(a["labels"]["alertname"] == "PersonaDown"
                              for a in api("/api/v1/alerts")["data"]["alerts"]),
                  "PersonaDown")
        finally:
            if prom:
                prom.terminate()
                prom.wait(timeout=20)
            s.cleanup()
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
