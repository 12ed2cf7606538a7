#!/usr/bin/env python3
"""Paid tokens per 1,000 turns of a replayed mixed corpus, with the AI
optimizer off (primary model only) and on (intent gate, exact + semantic
response cache, cost router with a cheap tier); and persona's own time on the
steps a model answered (persona_ai_step_own_seconds: each step's time without
its provider call, measured by persona within the step).

The corpus (seeded, 100 users x 10 turns) is a mix a deployed assistant sees:
per user a greeting, two self-introduction facts, five questions drawn from
two CLINC150 *test* intents (users come back to what they care about, in
other words), "what do you know about me", and a thanks or goodbye. A
question is low priority with probability 0.15 and high with 0.10. The
persona phrases below were written for this benchmark, not taken from the
gate's training file. Two fake OpenAI-compatible servers (the primary and a
cheap model) answer every call after 100 ms, echoing the question, and bill
about one token per 4 bytes of prompt and reply.

Usage: replay_ai.py PERSONA_BIN CLINC_JSON  (prints one JSON object)
"""
import http.client
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from fake_openai import FakeOpenAI  # noqa: E402

USERS, THREADS, DELAY_MS = 100, 8, 100
GREETINGS = ["hi there", "hello!", "good morning", "hey, how's it going", "hiya", "good evening",
             "hello there, nice to meet you", "hey there"]
KNOW = ["what do you know about me?", "what have you learned about me so far",
        "tell me what you know about me", "what info do you have on me"]
BYE = ["thanks a lot!", "thank you so much", "ok bye", "thanks, see you later", "goodbye for now",
       "cheers, thanks"]
NAMES = ["Maya", "Tom", "Jin", "Sara", "Omar", "Lena", "Ravi", "Ana", "Ken", "Zoe"]
CITIES = ["Seoul", "Boston", "Lisbon", "Osaka", "Denver", "Berlin", "Austin", "Busan"]
JOBS = ["nurse", "teacher", "designer", "plumber", "chef", "lawyer", "pilot", "student"]


def corpus(clinc_path):
    data = json.load(open(clinc_path))
    by_intent = {}
    for text, intent in data["test"]:
        by_intent.setdefault(intent, []).append(text)
    intents = sorted(by_intent)
    rng = random.Random(12)
    users = []
    for u in range(USERS):
        mine = rng.sample(intents, 2)
        pool = [t for i in mine for t in by_intent[i]]
        qs = rng.sample(pool, 5)
        name, city, job = rng.choice(NAMES), rng.choice(CITIES), rng.choice(JOBS)
        turns = [(rng.choice(GREETINGS), "normal"),
                 ("I'm %s and I'm %d" % (name, rng.randint(20, 70)), "normal")]
        for q in qs:
            r = rng.random()
            turns.append((q, "low" if r < 0.15 else "high" if r < 0.25 else "normal"))
        turns.append(("I work as a %s in %s" % (job, city), "normal"))
        turns.append((rng.choice(KNOW), "normal"))
        turns.append((rng.choice(BYE), "normal"))
        users.append(("user%03d" % u, turns))
    return users


def start(persona_bin, providers, extra, work):
    cfg = os.path.join(work, "persona-%d.yaml" % len(os.listdir(work)))
    json.dump({"ai": {"deadline_ms": 5000, "providers": providers}}, open(cfg, "w"))
    data = tempfile.mkdtemp(dir=work)
    log = open(os.path.join(data, "log"), "w+")
    p = subprocess.Popen([persona_bin, "serve", "--config", cfg, "--http-listen", "127.0.0.1:0",
                          "--mqtt-listen", "off", "--data-dir", data, "--schemas-dir",
                          os.path.join(ROOT, "schemas"), "--set", "limits.http_per_user.rate=0",
                          "--set", "limits.connections_per_address.rate=0"] + extra,
                         stdout=log, stderr=subprocess.STDOUT)
    for _ in range(400):
        log.seek(0)
        m = re.search(r'"http":"[^"]*:(\d+)"', log.read())
        if m:
            return p, int(m.group(1))
        if p.poll() is not None:
            break
        time.sleep(0.05)
    log.seek(0)
    raise RuntimeError("persona did not start: " + log.read()[-2000:])


def call(port, method, path, body=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request(method, path, json.dumps(body) if body is not None else None,
              {"Content-Type": "application/json"})
    r = c.getresponse()
    out = r.read()
    c.close()
    return r.status, json.loads(out) if out and out[:1] in b"{[" else out.decode()


def own_time(metrics_text):
    """p50/p99 (bucket upper bounds, ms) of persona_ai_step_own_seconds."""
    buckets = []
    for line in metrics_text.splitlines():
        m = re.match(r'persona_ai_step_own_seconds_bucket\{le="([^"]+)"\} (\d+)', line)
        if m:
            buckets.append((float("inf") if m.group(1) == "+Inf" else float(m.group(1)),
                            int(m.group(2))))
    total = buckets[-1][1] if buckets else 0

    def q(p):
        for le, n in buckets:
            if total and n >= p * total:
                return round(le * 1000, 2)
        return None
    return {"steps": total, "p50_ms_at_most": q(0.5), "p99_ms_at_most": q(0.99)}


def replay(persona_bin, users, optimizer, big, small, work):
    primary = {"name": "primary", "kind": "openai", "base_url": big.base_url, "model": "big",
               "timeout_ms": 4000, "price_in_per_mtok": 2.5, "price_out_per_mtok": 10.0}
    cheap = {"name": "cheap", "kind": "openai", "base_url": small.base_url, "model": "small",
             "timeout_ms": 4000, "price_in_per_mtok": 0.15, "price_out_per_mtok": 0.6,
             "tier": "cheap"}
    offline = {"name": "offline", "kind": "builtin"}
    if optimizer:
        p, port = start(persona_bin, [primary, cheap, offline],
                        ["--set", "ai.gate.enabled=true", "--set", "ai.cache.enabled=true"], work)
    else:
        p, port = start(persona_bin, [primary, offline], [], work)
    sources, lock = {}, threading.Lock()
    todo = list(users)

    def worker():
        while True:
            with lock:
                if not todo:
                    return
                user, turns = todo.pop()
            st, s = call(port, "POST", "/v1/sessions", {"user_id": user})
            assert st == 201, s
            for text, priority in turns:
                body = {"text": text}
                if optimizer and priority != "normal":
                    body["priority"] = priority
                st, r = call(port, "POST", "/v1/sessions/%s/messages" % s["session_id"], body)
                assert st == 200, r
                with lock:
                    sources[r["source"]] = sources.get(r["source"], 0) + 1
    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    t0 = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.time() - t0
    usage = {"calls": 0, "tokens_in": 0, "tokens_out": 0, "cost_usd": 0.0,
             "primary_tokens": 0, "cheap_tokens": 0, "avoided_gate": 0, "avoided_cache": 0}
    for user, _ in users:
        st, u = call(port, "GET", "/v1/users/%s/usage" % user)
        for k in ("calls", "tokens_in", "tokens_out", "cost_usd"):
            usage[k] += u[k]
        usage["primary_tokens"] += (u["by_tier"]["primary"]["tokens_in"] +
                                    u["by_tier"]["primary"]["tokens_out"])
        usage["cheap_tokens"] += u["by_tier"]["cheap"]["tokens_in"] + u["by_tier"]["cheap"]["tokens_out"]
        usage["avoided_gate"] += u["calls_avoided"]["gate"]
        usage["avoided_cache"] += u["calls_avoided"]["cache"]
    _, metrics = call(port, "GET", "/metrics")
    p.terminate()
    p.wait(timeout=20)
    turns = sum(len(t) for _, t in users)
    paid = usage["tokens_in"] + usage["tokens_out"]
    return {"turns": turns, "seconds": round(took, 2), "sources": sources,
            "model_calls": usage["calls"], "paid_tokens": paid,
            "paid_tokens_per_1000_turns": round(paid * 1000 / turns),
            "primary_tokens_per_1000_turns": round(usage["primary_tokens"] * 1000 / turns),
            "cheap_tokens_per_1000_turns": round(usage["cheap_tokens"] * 1000 / turns),
            "cost_usd_per_1000_turns": round(usage["cost_usd"] * 1000 / turns, 4),
            "calls_avoided": {"gate": usage["avoided_gate"], "cache": usage["avoided_cache"]},
            "own_time": own_time(metrics)}


def main():
    persona_bin, clinc = sys.argv[1], sys.argv[2]
    users = corpus(clinc)
    work = tempfile.mkdtemp(prefix="persona-replay-")
    big, small = FakeOpenAI().start(), FakeOpenAI().start()
    big.count_tokens = small.count_tokens = True
    # Models take time: with answers after 100 ms the 8 replay threads leave
    # the CPU to persona, as in a deployment (the own-time figure).
    big.delay_ms = small.delay_ms = DELAY_MS
    try:
        off = replay(persona_bin, users, False, big, small, work)
        on = replay(persona_bin, users, True, big, small, work)
    finally:
        big.stop()
        small.stop()
        subprocess.run(["rm", "-rf", work])
    saved = 1 - on["paid_tokens"] / off["paid_tokens"]
    print(json.dumps({"corpus": "%d users x 10 turns (bench/replay_ai.py)" % USERS,
                      "off": off, "on": on, "paid_tokens_saved": round(saved, 4),
                      "cost_saved": round(1 - on["cost_usd_per_1000_turns"] /
                                          off["cost_usd_per_1000_turns"], 4)}))


if __name__ == "__main__":
    main()
