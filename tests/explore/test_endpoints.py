"""The explore server's HTTP endpoints on a real uvicorn server: malformed input gets 4xx JSON,
a clip streams, a newer request of the same page supersedes a running one, clips download as mp4."""
import json
import os
import re
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import pytest

from tests.explore.conftest import EXPERT_RETURN, ndjson

GOOD = {"context": {"speed": 3.0}, "method": "hyperzero", "seed": 0, "episode_seed": 1_000_000, "clip_steps": 30}


def post(url: str, body, timeout: float = 60.0):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url + "api/rollout", data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.status, resp.headers.get("Content-Type"), resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read().decode()


def test_page_and_run_facts(server):
    with urllib.request.urlopen(server, timeout=10) as resp:
        page = resp.read().decode()
    assert resp.status == 200 and "/static/explore.js" in page
    for asset in ("static/explore.js", "static/explore.css"):
        with urllib.request.urlopen(server + asset, timeout=10) as resp:
            assert resp.status == 200
    with urllib.request.urlopen(server + "api/run", timeout=10) as resp:
        facts = json.loads(resp.read())
    assert facts["defaults"]["method"] == "hyperzero" and facts["defaults"]["seed"] == 0
    assert facts["defaults"]["clip_steps"] == 250 and facts["context_names"] == ["speed"]


@pytest.mark.parametrize("body, status, words", [
    ({**GOOD, "context": {"speed": "fast"}}, 422, "context.speed: Input should be a valid number"),
    ({**GOOD, "context": {"speed": True}}, 422, "context.speed"),
    ({**GOOD, "context": {"speed": None}}, 422, "context.speed"),
    ({**GOOD, "context": {"speed": 0}}, 400, "value 0 is not allowed"),
    ({**GOOD, "context": {"speed": 1e6}}, 400, "outside its physical limits [-30.0, 30.0]"),
    ({**GOOD, "context": {"speed": 2.0, "gravity": 4.0}}, 400, "not varied by this run"),
    ({**GOOD, "context": {"speed": 2.0, "torso_length": 0.6}}, 400, "'torso_length' = 0.6 is not varied by this run"),
    ({**GOOD, "context": {"speed": 2.0, "wind": 1.0}}, 400, "unknown context feature(s) ['wind']"),
    ({**GOOD, "context": {"speed": 5e-324}}, 400, "below the minimum 0.05 m/s"),
    ({**GOOD, "context": {}}, 400, "give a value for every varied feature"),
    ({**GOOD, "method": "maml"}, 400, "fitted methods: ['hyperzero', 'mlp_policy']"),
    ({**GOOD, "seed": 3}, 400, "its fitted seeds: [0]"),
    ({**GOOD, "compare": "nope"}, 400, "method 'nope' has no complete fit"),
    ({**GOOD, "episode_seed": -1}, 422, "episode_seed"),
    ({**GOOD, "clip_steps": 0}, 422, "clip_steps"),
    ({**GOOD, "clip_steps": 5000}, 400, "exceeds the limit 1000"),
    ({**GOOD, "surprise": 1}, 422, "surprise: Extra inputs are not permitted"),
    ({k: v for k, v in GOOD.items() if k != "method"}, 422, "method: Field required"),
    ({**GOOD, "client": "a b/../c"}, 422, "client"),
    (b'{"context": {"speed": NaN}, "method": "hyperzero", "seed": 0, "episode_seed": 1}', 400, "not finite"),
    (b"speed=3", 422, "not valid JSON"),
])
def test_malformed_or_out_of_range_input_gets_a_4xx_json_message(server, body, status, words):
    code, content_type, text = post(server, body)
    assert code == status and content_type == "application/json"
    assert words in json.loads(text)["error"]


def test_a_context_feature_given_twice_is_refused(server):
    body = json.dumps({**GOOD, "context": {"speed": 2.0}}).replace('{"speed": 2.0}', '{"speed": 2.0, "speed": 3.0}')
    code, content_type, text = post(server, body.encode())
    assert code == 422 and content_type.startswith("application/json")
    assert "'speed' twice" in json.loads(text)["error"]


def test_a_clip_streams_as_json_events(server):
    code, content_type, text = post(server, {**GOOD, "context": {"speed": 2.0}, "compare": "mlp_policy"})
    assert code == 200 and content_type.startswith("application/x-ndjson")
    events = ndjson(text)
    start, done = events[0], events[-1]
    assert start["type"] == "start" and done["type"] == "done"
    assert [p["method"] for p in start["panels"]] == ["hyperzero", "mlp_policy"]
    assert start["panels"][0]["has_q"] and isinstance(start["panels"][0]["q_hat"], float)
    assert not start["panels"][1]["has_q"] and start["panels"][1]["q_hat"] is None
    assert start["task"]["expert"]["return_mean"] == EXPERT_RETURN and start["task"]["roles"][0] in ("train", "test")
    frames = [e for e in events if e["type"] == "frame"]
    assert len(frames) == 2 * start["frames"] and {f["panel"] for f in frames} == {0, 1}
    assert all(p["steps"] == 1000 for p in done["panels"])
    clip = start["clip"]
    with urllib.request.urlopen(f"{server}api/clips/{clip}/1.mp4", timeout=60) as resp:
        video = resp.read()
    assert resp.headers.get("Content-Type") == "video/mp4" and video[4:8] == b"ftyp"
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{server}api/clips/999/0.mp4", timeout=10)
    assert err.value.code == 404 and "roll it out again" in json.loads(err.value.read())["error"]


def test_a_newer_request_of_the_same_page_supersedes_the_running_one(server):
    """The first request asks for a long clip; as soon as its first frame arrives the same page asks
    again. The first stream must end `superseded` (not run to its end), the second completes."""
    body = {**GOOD, "client": "page-A", "clip_steps": 1000}
    request = urllib.request.Request(server + "api/rollout", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    first_events = []
    with urllib.request.urlopen(request, timeout=60) as first:
        for line in first:
            first_events.append(json.loads(line))
            if first_events[-1]["type"] == "frame":
                break
        results = {}
        second = threading.Thread(target=lambda: results.update(
            zip(("code", "type", "text"), post(server, {**GOOD, "client": "page-A", "context": {"speed": -3.0}}))))
        second.start()
        first_events += [json.loads(line) for line in first]
        second.join(timeout=60)
    assert first_events[-1] == {"type": "superseded"}
    assert sum(e["type"] == "frame" for e in first_events) < first_events[0]["frames"]
    assert results["code"] == 200 and ndjson(results["text"])[-1]["type"] == "done"


def test_cli_serves_on_a_free_port_and_prints_the_address(explore_run):
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    proc = subprocess.Popen([sys.executable, "-m", "hyperzero", "explore", str(explore_run), "--port", "0", "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert match, (line, proc.stderr.read() if proc.poll() is not None else "")
        with urllib.request.urlopen(match.group(0) + "api/run", timeout=30) as resp:
            assert json.loads(resp.read())["run"] == "explore-test"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def get(url: str, host: str | None = None, timeout: float = 10.0):
    request = urllib.request.Request(url, headers={"Host": host} if host is not None else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.status, resp.headers.get("Content-Type"), resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read().decode()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "LOCALHOST:8765", "127.0.0.1:1", "[::1]", "[::1]:8765"])
def test_loopback_host_names_are_answered(server, host):
    code, _, text = get(server + "api/run", host)
    assert code == 200 and json.loads(text)["context_names"] == ["speed"]


@pytest.mark.parametrize("host, status", [("evil.example", 421), ("evil.example:8765", 421), ("127.0.0.2", 421),
                                          ("192.168.1.5", 421), ("localhost.evil.example", 421),
                                          ("a b", 400), ("[::1", 400), ("localhost:http", 400)])
def test_other_host_names_get_a_json_refusal(server, host, status):
    """A DNS-rebinding page reaches the server under its own name: refused, with the page's address and the fix."""
    code, content_type, text = get(server + "api/run", host)
    assert code == status and content_type == "application/json"
    error = json.loads(text)["error"]
    assert "DNS rebinding" in error and "--allow-host" in error and "http://127.0.0.1:" in error
    assert "run_dir" not in text and "tasks" not in text


def test_host_policy_of_other_binds():
    from hyperzero.explore import ExploreConfig
    from hyperzero.explore.app import host_policy

    lan = host_policy(ExploreConfig(host="192.168.1.5"))
    assert lan.allows("192.168.1.5") and lan.allows("localhost") and lan.allows("::1")
    assert not lan.allows("evil.example") and not lan.allows("10.0.0.1")
    everywhere = host_policy(ExploreConfig(host="0.0.0.0"))
    assert everywhere.allows("10.0.0.1") and everywhere.allows("fe80::1") and not everywhere.allows("evil.example")
    named = host_policy(ExploreConfig(host="0.0.0.0", allowed_hosts=("Lab-PC.example:8765",)))
    assert named.allows("lab-pc.example") and not named.allows("evil.example")
    assert host_policy(ExploreConfig(allowed_hosts=("*",))).allows("evil.example")
    with pytest.raises(ValueError, match="allowed host 'http://x/' must be a host name"):
        ExploreConfig(allowed_hosts=("http://x/",)).check()


def test_a_damaged_model_gets_a_json_error_naming_the_file_and_the_server_keeps_serving(explore_run, tmp_path):
    import shutil

    from hyperzero.explore import ExploreConfig, running_server
    from tests.reliability.conftest import garble

    run = tmp_path / "run"
    shutil.copytree(explore_run, run)
    damaged = run / "fits" / "mlp_policy" / "seed_0" / "model.pt"
    garble(damaged)
    config = ExploreConfig(port=0, method="hyperzero", episode_steps=20, clip_steps=10)
    with running_server(run, config) as url:
        for body in ({**GOOD, "method": "mlp_policy", "clip_steps": 10},
                     {**GOOD, "compare": "mlp_policy", "clip_steps": 10}):
            code, content_type, text = post(url, body)
            assert code == 500 and content_type == "application/json", text
            answer = json.loads(text)
            assert answer["file"] == str(damaged)
            assert f"{damaged} cannot be loaded" in answer["error"] and "delete" in answer["error"]
        code, _, text = post(url, {**GOOD, "clip_steps": 10})  # the other fits still work
        assert code == 200 and ndjson(text)[-1]["type"] == "done"
