"""The deployed topology, tested: nginx in front of two app servers, with PostgreSQL
and Redis, started from local programs by testsupport/stack.py (as make step14-stack
does). All traffic goes through nginx, as a browser's would.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from http.cookiejar import CookieJar
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from testsupport.accounts import login_cookies
from testsupport.chat_client import ChatClient
from testsupport.servers import free_port, wait_for_port
from testsupport.stack import Stack

PASSWORD = "a-long-password-1"


@pytest.fixture(scope="module")
def stack():
    stack = Stack()
    try:
        yield stack.start()
    finally:
        stack.stop()


@pytest.fixture
def clients(stack, step_dir):
    opened = []

    def open_clients(room, *usernames):
        cookies = login_cookies(step_dir, stack.environment, list(usernames))
        for name, cookie in zip(usernames, cookies, strict=True):
            client = ChatClient(stack.port, room, cookie, name).connect()
            assert client.wait_for(lambda c: c.frames), f"{name} got no history"
            opened.append(client)
        return opened[-len(usernames) :]

    yield open_clients
    for client in opened:
        client.close()


def has_texts(*texts):
    return lambda client: all(text in client.texts() for text in texts)


def accepted_websockets(server) -> int:
    return server.output.count('"WebSocket /ws/chat/')


def test_users_on_both_app_servers_chat_through_nginx(stack, clients):
    before = [accepted_websockets(server) for server in stack.app_servers]

    people = clients("lobby", "alice", "bob", "carol", "dave")
    for person in people:
        person.send(f"hello from {person.name}")

    texts = [f"hello from {person.name}" for person in people]
    for person in people:
        assert person.wait_for(has_texts(*texts)), person.name
    # nginx shared the sockets out between the two app servers.
    after = [accepted_websockets(server) for server in stack.app_servers]
    assert all(now > then for now, then in zip(after, before, strict=True)), after


def test_static_files_come_from_nginx(stack):
    with urllib.request.urlopen(f"{stack.url}/static/chat/chat.css", timeout=10) as css:
        assert css.status == 200
        assert css.headers["Content-Type"] == "text/css"
        assert css.headers["Server"].startswith("nginx")
        assert "#chat-log" in css.read().decode()
    for server in stack.app_servers:
        assert "/static/" not in server.output, "an app server served a static file"


def test_the_origin_check_works_through_the_proxy(stack, step_dir):
    (cookie,) = login_cookies(step_dir, stack.environment, ["mallory"])
    url = f"ws://127.0.0.1:{stack.port}/ws/chat/lobby/"

    # Another site, and another program on the chat's own host (DJANGO_CSRF_TRUSTED_
    # ORIGINS has the scheme and the port, not only the host).
    for origin in (
        "http://evil.example",
        "http://127.0.0.1:1",
        "https://" + stack.url[7:],
    ):
        with pytest.raises(InvalidStatus) as refused:
            connect(url, origin=origin, additional_headers={"Cookie": cookie})

        assert refused.value.response.status_code == 403
    # The control: the chat's own origin, through the same proxy, gets in.
    with connect(
        url, origin=stack.url, additional_headers={"Cookie": cookie}
    ) as socket:
        assert '"type": "history"' in socket.recv(timeout=10)


def test_logging_in_through_the_proxy_passes_the_csrf_check(stack, step_dir):
    set_password(step_dir, stack, "erin")
    cookies = CookieJar()
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(cookies))
    page = browser.open(f"{stack.url}/accounts/login/", timeout=10).read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    form = {"csrfmiddlewaretoken": token, "username": "erin", "password": PASSWORD}

    browser.open(
        urllib.request.Request(
            f"{stack.url}/accounts/login/",
            data=urllib.parse.urlencode(form).encode(),
            headers={"Origin": stack.url},
        ),
        timeout=10,
    )

    rooms = browser.open(f"{stack.url}/chat/", timeout=10)
    assert rooms.geturl() == f"{stack.url}/chat/", "sent back to the login page"
    assert '<strong id="username">erin</strong>' in rooms.read().decode()


def test_a_made_up_forwarded_address_does_not_escape_the_signup_limit(stack):
    # nginx tells the app servers the address it sees, whatever a client claims in
    # X-Forwarded-For: each sign-up below claims another address, and all of them
    # count against one address's hourly limit (CHAT_MAX_SIGNUPS_PER_HOUR, 5).
    statuses = [
        sign_up(stack, f"newcomer{n}", forwarded_for=f"203.0.113.{n}") for n in range(6)
    ]

    assert statuses == [200, 200, 200, 200, 200, 429]


def sign_up(stack, username, forwarded_for):
    """Sign up through nginx; the status of the page it ends on."""
    browser = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(CookieJar())
    )
    spoofed = {"X-Forwarded-For": forwarded_for}
    page = browser.open(
        urllib.request.Request(f"{stack.url}/accounts/signup/", headers=spoofed),
        timeout=10,
    )
    token = re.search(
        r'name="csrfmiddlewaretoken" value="([^"]+)"', page.read().decode()
    )
    form = {
        "csrfmiddlewaretoken": token.group(1),
        "username": username,
        "password1": PASSWORD,
        "password2": PASSWORD,
    }
    request = urllib.request.Request(
        f"{stack.url}/accounts/signup/",
        data=urllib.parse.urlencode(form).encode(),
        headers={"Origin": stack.url, **spoofed},
    )
    try:
        with browser.open(request, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as refused:
        return refused.code


def set_password(step_dir, stack, username):
    """A user who logs in with a password, as a person does."""
    code = (
        "from django.contrib.auth.models import User;"
        f" u, _ = User.objects.get_or_create(username={username!r});"
        f" u.set_password({PASSWORD!r}); u.save()"
    )
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=step_dir,
        env={**os.environ, **stack.environment},
        check=True,
        capture_output=True,
        timeout=60,
    )


def test_a_browser_logs_in_and_chats_through_the_proxy(stack, step_dir, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.wait import WebDriverWait

    set_password(step_dir, stack, "frank")
    (watcher_cookie,) = login_cookies(step_dir, stack.environment, ["grace"])
    watcher = ChatClient(stack.port, "browsers", watcher_cookie).connect()
    browser.get(f"{stack.url}/accounts/login/")
    browser.find_element(By.NAME, "username").send_keys("frank")
    browser.find_element(By.NAME, "password").send_keys(PASSWORD, Keys.ENTER)
    WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.ID, "username"))
    browser.get(f"{stack.url}/chat/browsers/")
    WebDriverWait(browser, 10).until(
        lambda d: (
            d.find_element(By.ID, "connection-state").get_attribute("data-state")
            == "connected"
        )
    )

    box = browser.find_element(By.ID, "chat-message-input")
    box.send_keys("typed in a browser, through nginx", Keys.ENTER)

    assert watcher.wait_for(has_texts("typed in a browser, through nginx"))
    watcher.close()


def test_one_address_gets_at_most_100_sockets(stack, step_dir):
    # An office behind one address: six people, up to 17 tabs each (the app's own cap
    # is 20 per user). The 101st socket is refused by nginx, before any app server.
    cookies = login_cookies(step_dir, stack.environment, [f"desk{n}" for n in range(6)])
    url = f"ws://127.0.0.1:{stack.port}/ws/chat/office/"

    def open_socket(cookie):
        return connect(url, origin=stack.url, additional_headers={"Cookie": cookie})

    sockets = []
    try:
        with pytest.raises(InvalidStatus) as refused:
            for number in range(101):
                sockets.append(open_socket(cookies[number // 17]))
        assert refused.value.response.status_code == 429
        assert len(sockets) == 100
        assert stack.nginx.wait_for_output(
            'limiting connections by zone "sockets_per_address"'
        )
        # The control: it is a count of open sockets. One closes, one more gets in.
        sockets.pop().close()
        sockets.append(retry_until_open(lambda: open_socket(cookies[5])))
    finally:
        for socket in sockets:
            socket.close()


def retry_until_open(open_socket, within=10):
    """nginx counts a socket until it has seen it close: try again until it has."""
    deadline = time.monotonic() + within
    while True:
        try:
            return open_socket()
        except InvalidStatus:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_the_account_pages_are_rate_limited_per_address(stack):
    # A password guesser: 60 requests for the login page at once. nginx lets a burst
    # of 20 through (and 5 more a second), and answers the rest with 429 itself.
    def status(_):
        try:
            with urllib.request.urlopen(f"{stack.url}/accounts/login/", timeout=30):
                return 200
        except urllib.error.HTTPError as refused:
            return refused.code

    with ThreadPoolExecutor(max_workers=60) as pool:
        statuses = list(pool.map(status, range(60)))

    assert statuses.count(429) >= 10 and statuses.count(200) >= 20, statuses
    assert set(statuses) == {200, 429}, statuses
    assert stack.nginx.wait_for_output('by zone "accounts_per_address"')
    # It is a rate, not a ban: the login page answers again.
    deadline = time.monotonic() + 20
    while status(None) != 200:
        assert time.monotonic() < deadline, "the login page stayed refused"
        time.sleep(0.5)


def test_an_app_server_killed_its_clients_reconnect_to_the_other_and_catch_up(
    stack, clients
):
    people = clients("failover", "henry", "ida", "jack", "kate")
    for person in people:
        person.send(f"before, from {person.name}")
    for person in people:
        assert person.wait_for(lambda c: len(c.messages) == 4)

    stack.kill_app_server(0)
    # Those whose app server died see their socket close; the others chat on.
    cut_off = [person for person in people if person.wait_until_closed(timeout=3)]
    still_on = [person for person in people if person not in cut_off]
    assert cut_off and still_on, "nginx had put everyone on one app server"
    for person in still_on:
        person.send(f"meanwhile, from {person.name}")
    for person in cut_off:
        person.reconnect()  # through nginx, which now sends it to the other server
        person.send(f"back, from {person.name}")

    everything = 4 + len(people)
    for person in people:
        assert person.wait_for(lambda c: len(c.messages) == everything), person.name
        assert [m["id"] for m in person.messages] == list(range(1, everything + 1))
        assert person.texts() == people[0].texts()
    # Nothing stored was lost: a newcomer's history is the same conversation.
    (newcomer,) = clients("failover", "leo")
    assert newcomer.texts() == people[0].texts()


def test_a_second_stop_signal_while_stopping_still_stops_everything(step_dir, tmp_path):
    # `kill` twice (or Ctrl+C twice): the second must not cut stopping short and
    # leave PostgreSQL, Redis or an app server running without anyone to stop them.
    # A temporary folder of its own, where the stack's PostgreSQL puts its cluster
    # (readable by the postgres user, who runs it when the tests run as root).
    scratch = Path(tempfile.mkdtemp(prefix="stack-test-"))
    scratch.chmod(0o755)
    port = free_port()
    output = tmp_path / "stack.txt"
    with open(output, "w") as log:
        command = [sys.executable, "-m", "testsupport.stack", "--port", str(port)]
        process = subprocess.Popen(
            command,
            cwd=step_dir,
            env={**os.environ, "TMPDIR": str(scratch)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while "The chat, through nginx" not in output.read_text():
            if process.poll() == 2:  # "Cannot start the stack here: needs nginx: ..."
                pytest.skip(output.read_text().split("here: ", 1)[-1].splitlines()[0])
            assert process.poll() is None, output.read_text()
            assert time.monotonic() < deadline, output.read_text()
            time.sleep(0.2)

        process.send_signal(signal.SIGTERM)
        # nginx is stopped first: once it is gone, the stack is stopping the rest.
        while wait_for_port(port, timeout=0.1):
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
        left = list(scratch.glob("test-postgres-*"))
        shutil.rmtree(scratch, ignore_errors=True)

    assert "Stopped." in output.read_text()
    assert "Traceback" not in output.read_text()
    assert not left, f"PostgreSQL's folder left behind: {left}"
