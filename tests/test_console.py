"""The console in a real headless browser (Debian's Chromium and chromedriver, driven by
Selenium) against a running worker, broker and Redis: the numbers the pages show are the
ones Kafka and Redis hold. Screenshots go to ``test-output/`` (ignored by git)."""

from __future__ import annotations

import asyncio
import shutil
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from feedamp.embedded.services import Service, free_port
from feedamp.feeds import FeedReader
from feedamp.feeds.activity import ActivityKeys, parse_cascade
from feedamp.kafka.topics import ensure_topics
from feedamp.ops.status import kafka_status
from redis.asyncio import Redis
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service as DriverService
from selenium.webdriver.common.by import By

from .conftest import WorkerHandle, make_settings, wait_until
from .factory import Events
from .kafka import read_topic, send, send_events

OUTPUT = Path(__file__).resolve().parent.parent / "test-output"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--disable-background-networking", "--disable-component-update",
                  "--no-first-run", "--disable-sync", "--window-size=1280,1400")  # fmt: skip


class ConsoleWorker(WorkerHandle):
    """A worker with its web port open."""

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.settings.web_port}{path}"


@pytest.fixture(scope="module")
def console_worker(
    broker: Service, redis_server: Service, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ConsoleWorker]:
    settings = make_settings(broker, redis_server, web_port=free_port())
    asyncio.run(ensure_topics(settings))
    handle = ConsoleWorker(settings, tmp_path_factory.mktemp("console") / "worker.log")
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    options = Options()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=DriverService(CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def shot(driver: webdriver.Chrome, name: str) -> Path:
    """A screenshot of the whole page, in ``test-output/``."""
    OUTPUT.mkdir(exist_ok=True)
    driver.set_window_size(1280, 800)
    for _ in range(3):  # the window grows until the page fits (at most 6000 px)
        height = int(driver.execute_script("return document.documentElement.scrollHeight"))
        inner = int(driver.execute_script("return window.innerHeight"))
        if height <= inner or inner >= 6000:
            break
        driver.set_window_size(1280, min(6000, driver.get_window_size()["height"] + height - inner))
    path = OUTPUT / f"console-{name}.png"
    assert driver.save_screenshot(str(path))
    return path


def number(text: str) -> int:
    return int(text.replace(",", "").split()[0])


async def open_page(driver: webdriver.Chrome, url: str) -> None:
    await asyncio.to_thread(driver.get, url)
    assert "feedamp console" in driver.title, driver.page_source[:500]


@pytest.fixture(scope="module")
def story() -> dict[str, str]:
    """The ids of this module's story."""
    tag = str(time.time_ns())[-7:]
    names = ("alice", "r1", "r2", "r3", "x1", "x2", "x3", "y1", "y2", "z1", "p1", "p2")
    return {n: f"{n}-{tag}" for n in names}


@pytest.fixture(scope="module")
def applied(console_worker: ConsoleWorker, story: dict[str, str]) -> dict[str, str]:
    """The story sent to the worker and applied: alice posts p1; r1 reposts it to 3
    followers and r2, r2 through r1's repost to 2 and r3, r3 through r2's to z1; r1's
    repost of the followers-only p2 is refused; two records are dead-lettered."""
    s, u = console_worker.settings, story
    ev = Events(start_ms=int(time.time() * 1000) - 60_000, step_ms=100)
    events = [ev.follow(u[f], u["r1"]) for f in ("x1", "x2", "x3", "r2")]
    events += [ev.follow(u[f], u["r2"]) for f in ("y1", "y2", "r3")]
    events += [ev.follow(u["z1"], u["r3"])]
    events += [ev.post(u["p1"], u["alice"], text="a clip worth sharing"),
               ev.post(u["p2"], u["alice"], visibility="followers")]  # fmt: skip
    r1, r2 = f"r-{u['p1']}-{u['r1']}", f"r-{u['p1']}-{u['r2']}"
    events += [ev.repost(u["p1"], u["alice"], u["r1"], comment="look"),
               ev.repost(u["p1"], u["alice"], u["r2"], via=r1),
               ev.repost(u["p1"], u["alice"], u["r3"], via=r2),
               ev.repost(u["p2"], u["alice"], u["r1"])]  # fmt: skip

    async def go() -> None:
        await send_events(s, events)
        await send(s, [(s.topics.posts, b"k", b"{oops"),
                       (s.topics.reposts, b"k", b'{"type": "repost"}')])  # fmt: skip
        redis = Redis.from_url(s.redis_url)
        keys = ActivityKeys(s.key_prefix)
        try:

            async def done() -> bool:
                lag, dead = await kafka_status(s)
                cascades = await redis.hlen(keys.cascade(u["p1"])) + await redis.hlen(
                    keys.cascade(u["p2"])
                )
                return cascades == 4 and dead == 2 and not sum(p.lag for p in lag)

            await wait_until(done, what="the story to be applied and committed")
        finally:
            await redis.aclose()

    asyncio.run(go())
    return story


async def test_overview_shows_what_kafka_and_redis_hold(console_worker, browser, applied):
    s, u = console_worker.settings, applied
    lag, dead = await kafka_status(s)
    await open_page(browser, console_worker.url("/console/"))
    page = browser.find_element
    assert number(page(By.CSS_SELECTOR, "[data-dead-letters]").text) == dead == 2
    assert number(page(By.CSS_SELECTOR, "[data-total-lag]").text) == sum(p.lag for p in lag)
    rows = {
        (r.get_attribute("data-topic"), int(r.get_attribute("data-partition"))): r
        for r in browser.find_elements(By.CSS_SELECTOR, "tr[data-topic]")
    }
    assert set(rows) == {(p.topic, p.partition) for p in lag}
    for p in lag:
        row = rows[(p.topic, p.partition)]
        assert number(row.find_element(By.CSS_SELECTOR, "[data-end]").text) == p.end
        assert number(row.find_element(By.CSS_SELECTOR, "[data-lag]").text) == p.lag
    posts_row = rows[(s.topics.posts, 0)]
    assert posts_row.find_element(By.CSS_SELECTOR, "[data-behind]").text.endswith(" ms")

    # Decisions by kind: the decisions topic, the decision logs in Redis and the page agree.
    published = Counter(
        orjson.loads(r.value)["decision"] for r in await read_topic(s, s.topics.decisions, 4)
    )
    assert published == {"delivered": 3, "refused": 1}
    redis = Redis.from_url(s.redis_url)
    keys = ActivityKeys(s.key_prefix)
    try:
        for kind in ("delivered", "restricted", "rate_limited", "refused", "accepted"):
            shown = page(By.CSS_SELECTOR, f"tr[data-kind='{kind}'] [data-sum]").text
            logged = await redis.zcard(keys.decision_log(kind))
            assert number(shown) == logged == published.get(kind, 0), kind
        # The top posts: reposts from the cascade hash, the reposters' followers.
        top = page(By.CSS_SELECTOR, f"tr[data-post='{u['p1']}']")
        values = [parse_cascade(v) for v in await redis.hvals(keys.cascade(u["p1"]))]
        assert number(top.find_element(By.CSS_SELECTOR, "[data-reposts]").text) == len(values)
        assert number(top.find_element(By.CSS_SELECTOR, "[data-recent]").text) == 3
        audience = sum([await redis.scard(f"{s.key_prefix}followers:{{{v[1]}}}") for v in values])
        shown = number(top.find_element(By.CSS_SELECTOR, "[data-audience]").text)
        assert shown == audience == 8
    finally:
        await redis.aclose()

    # Dead letters with the reasons their headers carry.
    letters = await read_topic(s, s.topics.dead_letter, 2)
    reasons = {dict(r.headers)["feedamp-reason"].decode() for r in letters}
    shown = {e.text for e in browser.find_elements(By.CSS_SELECTOR, "[data-reason]")}
    assert shown == reasons and len(reasons) == 2
    assert shot(browser, "overview").stat().st_size > 10_000


async def test_cascade_draws_the_tree_with_decisions_and_reach(console_worker, browser,
                                                               applied):  # fmt: skip
    s, u = console_worker.settings, applied
    await open_page(browser, console_worker.url(f"/console/post/{u['p1']}"))
    rows = {r.get_attribute("data-repost"): r
            for r in browser.find_elements(By.CSS_SELECTOR, "tr[data-repost]")}  # fmt: skip
    reader = FeedReader.from_url(s.redis_url, key_prefix=s.key_prefix)
    try:
        redis = reader.redis
        decided = await redis.hgetall(f"{s.key_prefix}decided:{{{u['p1']}}}")
        assert len(rows) == len(decided) == 3
        for reposter, followers in (("r1", ("x1", "x2", "x3", "r2")), ("r2", ("y1", "y2", "r3")),
                                    ("r3", ("z1",))):  # fmt: skip
            repost_id = f"r-{u['p1']}-{u[reposter]}"
            row = rows[repost_id]
            decision = decided[repost_id.encode()].decode().split("|")[0]
            assert row.find_element(By.CSS_SELECTOR, "[data-decision]").text.startswith(decision)
            shown = number(row.find_element(By.CSS_SELECTOR, "[data-reached]").text)
            # the feeds that hold the post attributed to this reposter
            holding = 0
            for f in followers:
                items = (await reader.following(u[f])).items
                holding += any(i.post_id == u["p1"] and u[reposter] in i.reposted_by
                               for i in items)  # fmt: skip
            assert shown == holding == len(followers), reposter
    finally:
        await reader.close()
    depths = [int(r.get_attribute("data-depth"))
              for r in browser.find_elements(By.CSS_SELECTOR, "tr[data-depth]")]  # fmt: skip
    assert depths == [1, 2, 3]
    svg = browser.find_element(By.ID, "cascade")
    assert len(svg.find_elements(By.TAG_NAME, "circle")) == 1 + 3  # the post and its reposts
    assert u["r3"] in svg.text and "1 feeds" in svg.text
    assert shot(browser, "cascade").stat().st_size > 10_000

    refused = console_worker.url(f"/console/post/{u['p2']}")
    await open_page(browser, refused)
    (row,) = browser.find_elements(By.CSS_SELECTOR, "tr[data-repost]")
    assert row.find_element(By.CSS_SELECTOR, "[data-decision]").text == "refused followers_only"
    assert number(row.find_element(By.CSS_SELECTOR, "[data-reached]").text) == 0


async def test_user_feeds_with_attribution_and_the_lookup_form(console_worker, browser, applied):
    s, u = console_worker.settings, applied
    await open_page(browser, console_worker.url("/console/"))
    box = browser.find_element(By.ID, "lookup")
    box.send_keys(u["y1"])
    browser.find_element(By.XPATH, "//button[text()='user']").click()

    async def arrived() -> bool:
        return browser.current_url.endswith(f"/console/user/{u['y1']}")

    await wait_until(arrived, what="the look-up form to open the user page")
    reader = FeedReader.from_url(s.redis_url, key_prefix=s.key_prefix)
    try:
        for name, read in (("following", reader.following), ("for-you", reader.for_you)):
            items = (await read(u["y1"])).items
            feed = browser.find_element(By.CSS_SELECTOR, f"[data-feed='{name}']")
            assert number(feed.find_element(By.CSS_SELECTOR, "[data-count]").text) == len(items)
            shown = [r.get_attribute("data-post")
                     for r in feed.find_elements(By.CSS_SELECTOR, "tr[data-post]")]  # fmt: skip
            assert shown == [i.post_id for i in items] == [u["p1"]]
            why = feed.find_element(By.CSS_SELECTOR, "[data-why]").text
            assert (
                why == f"reposted by {', '.join(items[0].reposted_by)}" == f"reposted by {u['r2']}"
            )
    finally:
        await reader.close()
    assert shot(browser, "user").stat().st_size > 5_000


async def test_a_bad_id_is_refused_in_one_line(console_worker, browser, applied):
    await open_page(browser, console_worker.url("/console/user/a%3Ab"))
    error = browser.find_element(By.CSS_SELECTOR, "[data-error]").text
    assert error == "InvalidEvent: field 'user_id' contains forbidden character ':'"
    status = await asyncio.to_thread(_status, console_worker.url("/console/post/a%2Cb"))
    assert status == 400


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
