"""AWS Bedrock (Converse and ConverseStream) against a fake Bedrock runtime
that verifies every request's SigV4 signature as AWS does."""
import http.client
import json
import re
import time
import unittest

import fake_bedrock as fb
from persona_server import Server
from test_llm import OFFLINE, contract, events, new_session, start_persona, step

MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
KEY, SECRET, TOKEN = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "FwoGZXIvYXdzEXAMPLETOKEN"


def bedrock(fake, **kw):
    p = {"name": "claude", "kind": "bedrock", "region": "us-east-1", "endpoint_url": fake.base_url,
         "model": MODEL, "timeout_ms": 2000, "price_in_per_mtok": 0.25, "price_out_per_mtok": 1.25}
    p.update(kw)
    return p


def aws_env(secret=SECRET, token=TOKEN):
    return {"AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": secret, "AWS_SESSION_TOKEN": token}


class BedrockTest(unittest.TestCase):
    def setUp(self):
        self.fake = fb.FakeBedrock(session_token=TOKEN).start()
        self.servers = []

    def tearDown(self):
        for s in self.servers:
            s.cleanup()
        self.fake.stop()

    def persona(self, providers, env, **kw):
        s = start_persona(providers, env=env, **kw)
        self.servers.append(s)
        return s

    def test_converse_signed_request_and_reply(self):
        s = self.persona([bedrock(self.fake), OFFLINE], aws_env())
        sid = new_session(s, "bea")
        self.fake.push(fb.reply(contract("Hi Bea!", [{"field": "name", "value": "Bea"}], "age"),
                                input_tokens=800, output_tokens=40))
        st, _, b = step(s, sid, "I'm Bea")
        self.assertEqual((st, b["source"], b["reply"]["text"]), (200, "llm", "Hi Bea!"), b)
        self.assertEqual(b["profile"], {"name": "Bea"})
        req = self.fake.requests[-1]
        self.assertTrue(req["verified"], req.get("error"))
        self.assertEqual((req["model_id"], req["operation"]), (MODEL, "converse"))
        self.assertIn("%3A", req["path"])  # the model id's ':' is encoded on the wire
        body = req["json"]
        self.assertIn("contact_preference", body["system"][0]["text"])
        self.assertEqual(body["messages"][-1], {"role": "user", "content": [{"text": "I'm Bea"}]})
        bot = [e for e in events(s, sid) if e["type"] == "message.assistant"][-1]["data"]
        self.assertEqual((bot["provider"], bot["model"]), ("claude", MODEL))
        self.assertEqual((bot["usage"]["tokens_in"], bot["usage"]["tokens_out"]), (800, 40))
        self.assertAlmostEqual(bot["usage"]["cost_usd"], (800 * 0.25 + 40 * 1.25) / 1e6)
        _, _, u = s.request("GET", "/v1/users/bea/usage")
        self.assertEqual(u["calls"], 1)

    def test_converse_stream_tokens(self):
        s = self.persona([bedrock(self.fake), OFFLINE], aws_env())
        sid = new_session(s)
        reply = "Nice to meet you, Kim. How old are you?"
        text = contract(reply, [{"field": "name", "value": "Kim"}], "age")
        chunks = [text[i:i + 7] for i in range(0, len(text), 7)]
        self.fake.push(fb.reply(text, chunks=chunks, chunk_delay_s=0.01))
        conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
        conn.request("POST", "/v1/sessions/%s/messages" % sid, body=json.dumps({"text": "I'm Kim"}),
                     headers={"Content-Type": "application/json", "Accept": "text/event-stream"})
        r = conn.getresponse()
        raw = r.read().decode()
        conn.close()
        frames = re.findall(r"event: (\w+)\ndata: (.*)\n\n", raw)
        self.assertEqual(frames[-1][0], "done", raw[-300:])
        tokens = "".join(json.loads(d)["text"] for k, d in frames if k == "token")
        self.assertEqual(tokens, reply)
        done = json.loads(frames[-1][1])
        self.assertEqual((done["profile"]["name"], done["source"]), ("Kim", "llm"))
        self.assertEqual(self.fake.requests[-1]["operation"], "converse-stream")
        self.assertTrue(self.fake.requests[-1]["verified"])

    def test_bad_credentials_fall_back_and_throttling_is_retried(self):
        s = self.persona([bedrock(self.fake), OFFLINE], aws_env(secret="wrong-secret"))
        sid = new_session(s)
        st, _, b = step(s, sid, "I'm Lee")
        self.assertEqual((st, b["source"], b["profile"].get("name")), (200, "builtin", "Lee"))
        self.assertFalse(self.fake.requests[-1]["verified"])
        bot = [e for e in events(s, sid) if e["type"] == "message.assistant"][-1]["data"]
        self.assertTrue(bot["fallbacks"][0].startswith("claude: "), bot["fallbacks"])
        s2 = self.persona([bedrock(self.fake, max_retries=2), OFFLINE], aws_env())
        sid = new_session(s2)
        self.fake.push(fb.throttle(retry_after="0"), fb.reply(contract("after a pause")))
        n = len(self.fake.requests)
        st, _, b = step(s2, sid, "hello")
        self.assertEqual((st, b["reply"]["text"], b["source"]), (200, "after a pause", "llm"))
        self.assertEqual(len(self.fake.requests) - n, 2)

    def test_credentials_from_config(self):
        s = self.persona([bedrock(self.fake, aws_access_key_id=KEY, aws_secret_access_key=SECRET,
                                  aws_session_token=TOKEN), OFFLINE],
                         {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SESSION_TOKEN": ""})
        sid = new_session(s)
        self.fake.push(fb.reply(contract("configured")))
        st, _, b = step(s, sid, "hello")
        self.assertEqual((st, b["reply"]["text"]), (200, "configured"))
        self.assertTrue(self.fake.requests[-1]["verified"])

    def test_a_hanging_model_is_cut_off_at_the_deadline(self):
        s = self.persona([bedrock(self.fake, timeout_ms=300), OFFLINE], aws_env(),
                         ai={"deadline_ms": 600})
        sid = new_session(s)
        self.fake.push(fb.hang(hang_s=5))
        t = time.time()
        st, _, b = step(s, sid, "I'm Max")
        self.assertEqual((st, b["source"]), (200, "builtin"))
        self.assertLess(time.time() - t, 0.6)


if __name__ == "__main__":
    unittest.main()
