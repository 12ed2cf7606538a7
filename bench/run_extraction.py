#!/usr/bin/env python3
"""The built-in engine's extraction on conversations (issue 12, part 1).

Starts `persona serve` on embedded defaults (a temp data directory, the
built-in engine only), plays every conversation of a JSONL file through the
HTTP API as a user would (one session each, its turns in order, each answer
to whatever persona asked before), reads the profile at the end and scores it:

  - each expected field value is one check (each expected interest is one);
  - each field listed in "absent" is one check: it must stay empty.

A string matches if it equals one of the accepted answers after
normalisation (case, accents, surrounding punctuation, a leading article,
Korean administrative suffixes such as 특별시/광역시/시). A city also matches
when the expected name, written in Korean, is the GeoNames name of the city
persona stored (persona stores cities by their English name). The Korean
names come from GeoNames as Debian ships them (libgeonames-common's ko
catalogue, keyed by GeoNames id, and libgeonames's city table for the ids);
this is the scorer's own lookup, independent of persona's code.

Usage: run_extraction.py [--data eval/extraction/heldout.jsonl] [--out FILE]
       [--failures]   (print every failed check; do not use on held-out data
                       while changing the engine: that would be tuning on it)
Prints a table; writes bench/results/extraction.json, with the extractor's
own time per message from build/bench/persona_extract_bench if it is built.
"""
import argparse
import ctypes
import gettext
import glob
import json
import os
import subprocess
import sys
import time
import unicodedata

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from persona_server import Server  # noqa: E402

KO_SUFFIXES = ("특별자치시", "특별자치도", "특별시", "광역시", "시", "도")


def fold(s):
    s = unicodedata.normalize("NFKD", str(s))
    s = "".join(ch for ch in s if not unicodedata.combining(ch))
    s = s.casefold().strip().strip(".,!?;:'\"()[]")
    for art in ("a ", "an ", "the "):
        if s.startswith(art):
            s = s[len(art):]
    return " ".join(s.split())


def korean_city_names():
    """Korean GeoNames name (suffixes stripped) → set of English names."""
    out = {}
    mo = "/usr/share/locale/ko/LC_MESSAGES/geonames.mo"
    libs = glob.glob("/usr/lib/*/libgeonames.so.0")
    if not os.path.exists(mo) or not libs:
        return out
    ko = gettext.GNUTranslations(open(mo, "rb"))._catalog
    geo = ctypes.CDLL(libs[0])
    glib = ctypes.CDLL("libglib-2.0.so.0")
    geo.geonames_get_city.restype = ctypes.c_void_p
    geo.geonames_city_get_name.restype = ctypes.c_char_p
    geo.geonames_city_get_name.argtypes = [ctypes.c_void_p]
    geo.geonames_city_free.argtypes = [ctypes.c_void_p]
    glib.g_variant_get_child_value.restype = ctypes.c_void_p
    glib.g_variant_get_child_value.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    glib.g_variant_get_string.restype = ctypes.c_char_p
    glib.g_variant_get_string.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    glib.g_variant_unref.argtypes = [ctypes.c_void_p]
    for i in range(geo.geonames_get_n_cities()):
        city = geo.geonames_get_city(i)
        child = glib.g_variant_get_child_value(city, 0)  # the GeoNames id
        gid = glib.g_variant_get_string(child, None).decode()
        glib.g_variant_unref(child)
        name = geo.geonames_city_get_name(city).decode()
        geo.geonames_city_free(city)
        k = ko.get(gid)
        if not k:
            continue
        k = strip_ko(k.strip()).strip()
        en = fold(name)
        for suffix in ("-si", "-gun", " city"):  # "Suwon-si", "Jeju City"
            if en.endswith(suffix):
                en = en[:-len(suffix)]
        out.setdefault(k, set()).add(en)
    return out


def strip_ko(s):
    for suffix in KO_SUFFIXES:
        if s.endswith(suffix) and len(s) > len(suffix):
            return s[:-len(suffix)]
    return s


def matches(field, expected, actual, ko_cities):
    accepted = expected if isinstance(expected, list) else [expected]
    if actual is None:
        return False
    if field == "age":
        return any(isinstance(a, int) and a == actual for a in accepted)
    if field == "phone":
        digits = lambda s: "".join(ch for ch in str(s) if ch.isdigit())
        return any(digits(a) and digits(a).lstrip("0") in digits(actual).lstrip("0")
                   for a in accepted) or any(
            digits(actual).endswith(digits(a)[-8:]) and len(digits(a)) >= 8 for a in accepted)
    got = fold(actual)
    for a in accepted:
        want = fold(a)
        if got == want or strip_ko(got) == strip_ko(want):
            return True
        if field == "city" and got in ko_cities.get(strip_ko(want), ()):
            return True
    return False


def play(server, conv, conn):
    st, _, body = server.request("POST", "/v1/sessions", {"user_id": "eval-" + conv["id"]},
                                 conn=conn)
    assert st == 201, body
    sid = body["session_id"]
    for text in conv["turns"]:
        st, _, body = server.request("POST", "/v1/sessions/%s/messages" % sid, {"text": text},
                                     conn=conn)
        assert st == 200, (st, body)
    st, _, body = server.request("GET", "/v1/sessions/%s/profile" % sid, conn=conn)
    assert st == 200, body
    return body["profile"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.path.join(ROOT, "eval", "extraction", "heldout.jsonl"))
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "extraction.json"))
    ap.add_argument("--failures", action="store_true")
    a = ap.parse_args()
    convs = [json.loads(l) for l in open(a.data, encoding="utf-8") if l.strip()]
    ko_cities = korean_city_names()
    server = Server().start()
    rows = {}  # (lang, field) → [passed, total]
    failures = []
    try:
        conn = server.conn(timeout=30)
        for conv in convs:
            profile = play(server, conv, conn)
            lang = conv.get("lang", "en")
            for field, expected in conv.get("expect", {}).items():
                if field == "interests":
                    have = [fold(x) for x in (profile.get("interests") or [])]
                    for item in (expected if isinstance(expected, list) else [expected]):
                        ok = any(fold(item) == h or fold(item) in h or h in fold(item)
                                 for h in have if h)
                        r = rows.setdefault((lang, field), [0, 0])
                        r[0] += ok
                        r[1] += 1
                        if not ok:
                            failures.append((conv["id"], field, item, profile.get(field)))
                    continue
                ok = matches(field, expected, profile.get(field), ko_cities)
                r = rows.setdefault((lang, field), [0, 0])
                r[0] += ok
                r[1] += 1
                if not ok:
                    failures.append((conv["id"], field, expected, profile.get(field)))
            for field in conv.get("absent", []) or []:
                ok = profile.get(field) in (None, [], "")
                r = rows.setdefault((lang, "absent:" + field), [0, 0])
                r[0] += ok
                r[1] += 1
                if not ok:
                    failures.append((conv["id"], "absent " + field, None, profile.get(field)))
        conn.close()
    finally:
        server.cleanup()
    passed = sum(r[0] for r in rows.values())
    total = sum(r[1] for r in rows.values())
    by_lang = {}
    for (lang, _), (p, t) in rows.items():
        b = by_lang.setdefault(lang, [0, 0])
        b[0] += p
        b[1] += t
    by_field = {}
    for (_, field), (p, t) in rows.items():
        key = "absent" if field.startswith("absent:") else field
        b = by_field.setdefault(key, [0, 0])
        b[0] += p
        b[1] += t
    rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "-C", ROOT, "status", "--porcelain"],
                                capture_output=True, text=True).stdout.strip())
    out = {"benchmark": "extraction", "data": os.path.relpath(a.data, ROOT),
           "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "persona": {"git_rev": rev, "git_dirty": dirty},
           "conversations": len(convs), "checks": total, "passed": passed,
           "score": round(passed / total, 4) if total else None,
           "by_language": {k: {"passed": v[0], "checks": v[1], "score": round(v[0] / v[1], 4)}
                           for k, v in sorted(by_lang.items())},
           "by_field": {k: {"passed": v[0], "checks": v[1], "score": round(v[0] / v[1], 4)}
                        for k, v in sorted(by_field.items())}}
    # The extractor's own time per message, in process (the same messages).
    bench = os.path.join(ROOT, "build", "bench", "persona_extract_bench")
    if os.path.exists(bench):
        r = subprocess.run([bench, os.path.join(ROOT, "schemas"), a.data, "20"],
                           capture_output=True, text=True)
        if r.returncode == 0:
            out["latency"] = json.loads(r.stdout)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    json.dump(out, open(a.out, "w"), indent=2, ensure_ascii=False)
    print("%-22s %8s %8s %7s" % ("", "passed", "checks", "score"))
    for k, v in sorted(by_field.items()):
        print("%-22s %8d %8d %6.1f%%" % (k, v[0], v[1], 100.0 * v[0] / v[1]))
    for k, v in sorted(by_lang.items()):
        print("%-22s %8d %8d %6.1f%%" % ("language " + k, v[0], v[1], 100.0 * v[0] / v[1]))
    print("%-22s %8d %8d %6.1f%%   (goal ≥ 90 %%)" % ("all", passed, total,
                                                     100.0 * passed / total))
    if "latency" in out:
        lat = out["latency"]
        print("extraction per message: p50 %.1f µs, p99 %.1f µs over %d calls (goal p99 ≤ 50 µs)"
              % (lat["p50_us"], lat["p99_us"], lat["calls"]))
    print("wrote " + a.out)
    if a.failures:
        for f in failures:
            print("FAIL", *f)


if __name__ == "__main__":
    main()
