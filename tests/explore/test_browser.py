"""The explore page in a real headless Chromium (the system package, driven by playwright): move a
slider and see the clip, the return and the reward plot change; bad values get a message on the page;
a second method appears side by side."""
import os

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WAIT_MS = 60_000  # generous: the machine may be shared; the page's own timing is checked separately

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason=f"{CHROMIUM} is absent (apt-get install -y chromium chromium-driver)")


@pytest.fixture(scope="module")
def server(explore_run):
    """Clips of 100 steps (34 frames) keep the test short; the page's default is 250."""
    from hyperzero.explore import ExploreConfig, running_server

    with running_server(explore_run, ExploreConfig(port=0, clip_steps=100)) as url:
        yield url


@pytest.fixture(scope="module")
def page(server, tmp_path_factory):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM, headless=True,
            args=CHROMIUM_FLAGS, viewport={"width": 1280, "height": 900})
        page = context.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(server)
        page.wait_for_function("document.body.dataset.clips === '1'", timeout=WAIT_MS)
        yield page
        context.close()
        assert not errors, errors


def wait_for_clip(page, n: int) -> None:
    page.wait_for_function(f"Number(document.body.dataset.clips) >= {n} && document.body.dataset.state === 'done'",
                           timeout=WAIT_MS)


def last_frame(page, panel: int = 0) -> str:
    """Pause, scrub to the clip's last frame, and return the canvas as a data URL."""
    if page.locator(f"#panel-{panel} .play").inner_text() == "pause":
        page.locator(f"#panel-{panel} .play").click()
    page.locator(f"#scrub-{panel}").evaluate("el => { el.value = el.max; el.dispatchEvent(new Event('input')); }")
    return page.locator(f"#canvas-{panel}").evaluate("c => c.toDataURL('image/png')")


def test_moving_a_slider_changes_the_clip_the_return_and_the_plot(page):
    playing_a = page.locator("#canvas-0").evaluate("c => c.toDataURL('image/png')")
    page.wait_for_timeout(400)
    playing_b = page.locator("#canvas-0").evaluate("c => c.toDataURL('image/png')")
    assert playing_a != playing_b  # the clip plays
    before = {"return": page.locator("#return-0").inner_text(), "curve": page.locator("#curve-0").get_attribute("points"),
              "frame": last_frame(page), "value": page.locator("#value-speed").input_value()}
    assert "(1000 steps)" in before["return"] and len(before["curve"].split()) == 1000
    assert page.locator("#panel-0 .q-hat").inner_text() not in ("", "-")  # hyperzero has a value head
    page.locator("#panel-0 .play").click()  # play again

    slider = page.locator("#slider-speed")
    box = slider.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.93, box["y"] + box["height"] / 2, steps=5)
    page.mouse.up()  # release: one request
    wait_for_clip(page, 2)

    value = float(page.locator("#value-speed").input_value())
    assert value > 6.0 and str(value) != before["value"]  # beyond the training tasks' fastest speed (6)
    assert "extrapolation" in page.locator("#context-status").inner_text()
    after_return = page.locator("#return-0").inner_text()
    assert after_return != before["return"]
    assert page.locator("#curve-0").get_attribute("points") != before["curve"]
    assert last_frame(page) != before["frame"]
    timing = page.locator("#timing")
    first, clip = float(timing.get_attribute("data-first-frame-s")), float(timing.get_attribute("data-clip-s"))
    assert 0 < first <= clip
    assert page.locator("#panel-0 .download").get_attribute("href").endswith("/0.mp4")


def test_bad_values_get_a_message_on_the_page(page):
    box = page.locator("#value-speed")
    clips = int(page.evaluate("document.body.dataset.clips"))
    for typed, words in [("0", "value 0 is not allowed"), ("100", "outside its physical limits")]:
        box.fill(typed)
        box.press("Enter")
        page.wait_for_function("document.body.dataset.state === 'error'", timeout=WAIT_MS)
        message = page.locator("#message")
        assert message.is_visible() and words in message.inner_text()
        assert box.get_attribute("aria-invalid") == "true"
    box.fill("2")  # a dataset task with an expert summary
    box.press("Enter")
    wait_for_clip(page, clips + 1)
    assert not page.locator("#message").is_visible()
    assert "123.4" in page.locator("#panel-0 .expert").inner_text()
    assert "speed=2_torso_length=0.5" in page.locator("#panel-0 .role").inner_text()


def test_a_second_method_side_by_side(page):
    clips = int(page.evaluate("document.body.dataset.clips"))
    page.locator("#compare").select_option("mlp_policy")
    wait_for_clip(page, clips + 1)
    assert page.locator(".panel").count() == 2
    assert "mlp_policy" in page.locator("#panel-1 .panel-title").inner_text()
    assert page.locator("#curve-0").count() == 1 and page.locator("#curve-1").count() == 1
    assert page.locator("#panel-0 .q-hat").is_visible() and not page.locator("#panel-1 .q-hat").is_visible()
    assert "(1000 steps)" in page.locator("#return-1").inner_text()
    assert last_frame(page, 1).startswith("data:image/png")
