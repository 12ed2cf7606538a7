// Starts a real `persona serve` on free ports with a throwaway data dir, for tests.
//
//   const srv = await startPersona();   // PERSONA_BIN or build/src/persona
//   srv.http  // "http://127.0.0.1:P"     srv.ws   // "ws://127.0.0.1:P/mqtt"
//   srv.tcp   // "mqtt://127.0.0.1:Q"     await srv.stop();
//
// PERSONA_URL + PERSONA_MQTT_URL test an already running server instead.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
export const repoRoot = resolve(here, "../../..");

export async function startPersona({ bin = process.env.PERSONA_BIN, args = [], timeoutMs = 30000 } = {}) {
  if (process.env.PERSONA_URL) {
    const http = process.env.PERSONA_URL.replace(/\/+$/, "");
    const u = new URL(http);
    return {
      http, ws: `ws://${u.host}/mqtt`, tcp: process.env.PERSONA_MQTT_URL || `mqtt://${u.hostname}:1883`,
      log: () => "", stop: async () => {},
    };
  }
  bin = resolve(bin || join(repoRoot, "build/src/persona"));
  if (!existsSync(bin)) throw new Error(`persona binary not found at ${bin} (set PERSONA_BIN)`);
  const tmp = mkdtempSync(join(tmpdir(), "persona-client-test-"));
  const child = spawn(bin, ["serve", "--http-listen", "127.0.0.1:0", "--mqtt-listen", "127.0.0.1:0",
    "--data-dir", join(tmp, "data"), ...args], { cwd: repoRoot, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout.on("data", (d) => { out += d; });
  child.stderr.on("data", (d) => { out += d; });
  const exited = new Promise((r) => child.once("exit", (code, sig) => r({ code, sig })));
  const addr = await new Promise((resolveAddr, reject) => {
    const timer = setTimeout(() => reject(new Error(`persona did not log its addresses within ${timeoutMs} ms:\n${out}`)), timeoutMs);
    const check = () => {
      for (const line of out.split("\n")) {
        if (!line.includes('"listening"')) continue;
        try {
          const j = JSON.parse(line);
          if (j.msg === "listening" && j.http && j.mqtt) { clearTimeout(timer); resolveAddr(j); return; }
        } catch (_) { /* partial line */ }
      }
    };
    child.stdout.on("data", check);
    child.stderr.on("data", check);
    exited.then(({ code, sig }) => { clearTimeout(timer); reject(new Error(`persona exited (${code ?? sig}) before listening:\n${out}`)); });
  });
  const wsPath = addr.mqtt_websocket || "/mqtt";
  return {
    http: `http://${addr.http}`,
    ws: `ws://${addr.http}${wsPath}`,
    tcp: `mqtt://${addr.mqtt}`,
    log: () => out,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        const t = setTimeout(() => child.kill("SIGKILL"), 5000);
        await exited;
        clearTimeout(t);
      }
      rmSync(tmp, { recursive: true, force: true });
    },
  };
}

export async function createSession(http, userId = "u_test") {
  const res = await fetch(`${http}/v1/sessions`, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ user_id: userId }),
  });
  if (res.status !== 201) throw new Error(`POST /v1/sessions: ${res.status} ${await res.text()}`);
  return res.json();
}
