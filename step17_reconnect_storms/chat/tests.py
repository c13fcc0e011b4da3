"""Browser tests: two users, each logged in in a browser of their own, chat.

Run them the tutorial's way, `python manage.py test chat.tests`, or with pytest.
Two headless Chromium instances, not two windows of one: windows share cookies,
so one browser can only be one user.
"""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from asgiref.sync import SyncToAsync
from channels.testing import ChannelsLiveServerTestCase
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection, connections
from django.test import Client, override_settings
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.wait import WebDriverWait

from testsupport.browser import make_driver, save_failure_artefacts

# Screenshots and console logs of failed tests go here (git ignores the folder).
ARTEFACTS = Path(settings.BASE_DIR) / "test-artifacts"
PASSWORD = "a-long-password-1"
# Tests only: a fast password hasher, as Django's documentation advises for tests
# (the default takes a quarter of a second of CPU per password, by design).
FAST_PASSWORDS = override_settings(
    PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]
)


def close_every_database_connection():
    """The live server is forked from this process. SQLite in WAL mode (see
    DATABASES) must not have a connection open across a fork: the child inherits
    SQLite's record of the file's locks but not the locks, and reads stale data (a
    user created by a later test "does not exist"). Nor must PostgreSQL's pool: the
    child would borrow the same open connections as this process, and the two
    would talk over one socket at once ("can't change 'autocommit' now"). Django
    opens new connections, and a new pool, when this process next needs them."""
    connections.close_all()
    for each in connections.all(initialized_only=True):
        if each.vendor == "postgresql":
            each.close_pool()
    # Tests that ran earlier may have left a connection open in the thread where
    # database_sync_to_async runs its calls: close it there. Then replace that
    # thread's executor by a new one, which starts its thread only when first
    # used: a child forked with the old one would wait forever for a thread it
    # does not have.
    executor = SyncToAsync.single_thread_executor
    executor.submit(connections.close_all).result()
    executor.shutdown()
    SyncToAsync.single_thread_executor = ThreadPoolExecutor(max_workers=1)


def remove_the_write_ahead_log():
    """The live server was killed with the database open, which leaves SQLite's -wal
    and -shm files behind; the last connection to close cleanly removes them.
    Without this, Django deletes test_db.sqlite3 but not those files, and the next
    run's new database would start next to a stale log."""
    connection.ensure_connection()
    connections.close_all()


@FAST_PASSWORDS
class TwoUsersChatTests(ChannelsLiveServerTestCase):
    serve_static = True

    @classmethod
    def setUpClass(cls):
        close_every_database_connection()
        super().setUpClass()
        cls.drivers = []
        try:
            cls.drivers = [make_driver(), make_driver()]
        except BaseException:
            for driver in cls.drivers:
                driver.quit()
            super().tearDownClass()
            raise
        cls.alice_browser, cls.bob_browser = cls.drivers

    @classmethod
    def tearDownClass(cls):
        for driver in cls.drivers:
            driver.quit()
        super().tearDownClass()
        remove_the_write_ahead_log()

    def setUp(self):
        for name in ("alice", "bob"):
            User.objects.create_user(name, password=PASSWORD)
        for driver in self.drivers:
            driver.delete_all_cookies()

    def test_two_logged_in_users_chat_and_see_who_wrote_what(self):
        self._log_in(self.alice_browser, "alice")
        self._log_in(self.bob_browser, "bob")
        self._enter_room(self.alice_browser, "lobby")
        self._enter_room(self.bob_browser, "lobby")

        self._post(self.alice_browser, "hello bob")
        self._wait_for_text(
            self.bob_browser, "alice: hello bob", "bob did not see alice's message"
        )
        self._post(self.bob_browser, "hi alice")
        self._wait_for_text(
            self.alice_browser, "bob: hi alice", "alice did not see bob's answer"
        )

    def test_the_history_is_there_after_a_reload_in_order_and_once(self):
        self._log_in(self.alice_browser, "alice")
        self._log_in(self.bob_browser, "bob")
        self._enter_room(self.alice_browser, "lobby")
        self._enter_room(self.bob_browser, "lobby")
        self._post(self.alice_browser, "hello bob")
        self._wait_for_text(self.bob_browser, "alice: hello bob", "bob saw nothing")
        self._post(self.bob_browser, "hi alice")
        self._wait_for_text(self.bob_browser, "bob: hi alice", "bob lost his answer")

        self.bob_browser.refresh()
        self._wait_until_connected(self.bob_browser)

        self._wait_for_text(
            self.bob_browser, "bob: hi alice", "the history is gone after a reload"
        )
        log = self._log(self.bob_browser)
        self._check(log.count("hello bob") == 1, "a message is shown twice")
        self._check(
            log.index("hello bob") < log.index("hi alice"), "history is out of order"
        )

    def test_each_user_sees_who_is_online(self):
        self._log_in(self.alice_browser, "alice")
        self._log_in(self.bob_browser, "bob")
        self._enter_room(self.alice_browser, "lobby")
        self._enter_room(self.bob_browser, "lobby")

        self._wait_until(
            self.alice_browser,
            lambda d: d.find_element(By.ID, "presence").text == "alice, bob",
            "alice does not see bob online",
        )
        self.bob_browser.get(self.live_server_url + "/chat/")  # bob leaves the room
        self._wait_until(
            self.alice_browser,
            lambda d: d.find_element(By.ID, "presence").text == "alice",
            "alice still sees bob online after he left",
        )

    def test_a_message_the_server_refuses_stays_in_the_box_with_the_reason(self):
        too_long = "é" * 2049  # 4,098 bytes of UTF-8: over the 4 KiB limit
        self._log_in(self.alice_browser, "alice")
        self._enter_room(self.alice_browser, "lobby")
        box = self.alice_browser.find_element(By.ID, "chat-message-input")
        # Typed by script: the box itself stops typing at 4,096 characters.
        self.alice_browser.execute_script(
            "arguments[0].value = arguments[1]", box, too_long
        )

        self.alice_browser.find_element(By.ID, "chat-message-submit").click()

        self._wait_until(
            self.alice_browser,
            lambda d: "at most 4096 bytes" in d.find_element(By.ID, "chat-error").text,
            "the page did not say why the message was refused",
        )
        self._check(
            box.get_property("value") == too_long,
            "the refused message's text was lost from the box",
        )
        self._check(self._log(self.alice_browser) == "", "a refused message was shown")

    def test_logging_out_in_one_tab_sends_the_other_tab_to_the_login_page(self):
        driver = self.alice_browser
        self._log_in(driver, "alice")
        self._enter_room(driver, "lobby")
        driver.execute_script('window.open("about:blank", "_blank");')
        driver.switch_to.window(driver.window_handles[-1])
        driver.get(self.live_server_url + "/chat/")

        driver.find_element(By.ID, "logout").click()
        self._wait_until(
            driver,
            lambda d: "/accounts/login/" in d.current_url,
            "logging out did not lead to the login page",
        )
        driver.close()
        driver.switch_to.window(driver.window_handles[0])

        self._wait_until(
            driver,
            lambda d: "/accounts/login/?next=%2Fchat%2Flobby%2F" in d.current_url,
            "the room's tab stayed open after logging out in another tab",
        )

    def test_a_message_is_not_seen_in_another_room(self):
        self._log_in(self.alice_browser, "alice")
        self._log_in(self.bob_browser, "bob")
        self._enter_room(self.alice_browser, "room_1")
        self._enter_room(self.bob_browser, "room_2")

        self._post(self.alice_browser, "hello")
        self._wait_for_text(
            self.alice_browser, "alice: hello", "alice lost her message"
        )
        # bob's own message is a barrier: once he sees it, alice's would be there.
        self._post(self.bob_browser, "world")
        self._wait_for_text(self.bob_browser, "bob: world", "bob lost his message")
        self._check(
            "hello" not in self._log(self.bob_browser),
            "a message reached a window in another room",
        )

    def test_markup_in_a_message_is_shown_as_text(self):
        message = "<b>bold</b> <img src=x onerror=window.injected=1>"
        self._log_in(self.alice_browser, "alice")
        self._log_in(self.bob_browser, "bob")
        self._enter_room(self.alice_browser, "lobby")
        self._enter_room(self.bob_browser, "lobby")

        self._post(self.alice_browser, message)
        self._wait_for_text(
            self.bob_browser, message, "the message was not shown as its text"
        )
        self._check(
            self.bob_browser.find_elements(
                By.CSS_SELECTOR, "#chat-log b, #chat-log img"
            )
            == [],
            "the message's markup became elements of the page",
        )
        self._check(
            self.bob_browser.execute_script("return window.injected") is None,
            "the message's markup ran code in bob's browser",
        )

    def test_visitor_who_is_not_logged_in_is_sent_to_the_login_page(self):
        self.alice_browser.get(self.live_server_url + "/chat/lobby/")

        self._wait_until(
            self.alice_browser,
            lambda d: "/accounts/login/?next=/chat/lobby/" in d.current_url,
            "an anonymous visitor was not sent to the login page",
        )

    def test_a_visitor_signs_up_and_lands_in_the_rooms(self):
        driver = self.alice_browser
        driver.get(self.live_server_url + "/accounts/signup/")
        driver.find_element(By.NAME, "username").send_keys("newcomer")
        driver.find_element(By.NAME, "password1").send_keys(PASSWORD)
        driver.find_element(By.NAME, "password2").send_keys(PASSWORD)
        driver.find_element(By.ID, "signup").click()

        self._wait_until(
            driver,
            lambda d: d.find_element(By.ID, "username").text == "newcomer",
            "after signing up the visitor is not logged in",
        )

    # === Utility ===

    def _log_in(self, driver, username):
        """Logged in as the login page leaves a browser: with a session cookie.
        (Logging in with the form is tested in tests/test_pages.py.)"""
        client = Client()  # a browser of its own: a session of its own
        client.force_login(User.objects.get(username=username))
        driver.get(self.live_server_url + "/accounts/login/")  # the cookie's site
        driver.add_cookie(
            {"name": "sessionid", "value": client.cookies["sessionid"].value}
        )

    def _enter_room(self, driver, room_name):
        driver.get(self.live_server_url + f"/chat/{room_name}/")
        self._wait_until_connected(driver)

    def _wait_until_connected(self, driver):
        # The page shows its socket's state; typing before it is "connected" would
        # only wait, pending, until it is.
        self._wait_until(
            driver,
            lambda d: (
                d.find_element(By.ID, "connection-state").get_attribute("data-state")
                == "connected"
            ),
            "the room page did not connect",
        )

    def _post(self, driver, message):
        driver.find_element(By.ID, "chat-message-input").send_keys(message, Keys.ENTER)

    def _log(self, driver):
        return driver.find_element(By.ID, "chat-log").text

    def _wait_for_text(self, driver, text, message):
        self._wait_until(driver, lambda d: text in self._log(d), message)

    def _wait_until(self, driver, condition, message, timeout=5):
        try:
            WebDriverWait(driver, timeout).until(condition)
        except TimeoutException:
            self._fail_with_artefacts(message)

    def _check(self, condition, message):
        if not condition:
            self._fail_with_artefacts(message)

    def _fail_with_artefacts(self, message):
        folders = [
            save_failure_artefacts(driver, ARTEFACTS, f"{self.id()}-{name}")
            for name, driver in (
                ("alice", self.alice_browser),
                ("bob", self.bob_browser),
            )
        ]
        self.fail(f"{message}. Screenshots and console logs: {folders}")


# At most 2 messages per user, and a window long enough that any machine is fast
# enough to send 3 within it. Applied before the live server starts, so it has them.
@FAST_PASSWORDS
@override_settings(CHAT_MAX_MESSAGES_PER_SECOND=2, CHAT_RATE_WINDOW_SECONDS=600)
class RateLimitedChatTests(ChannelsLiveServerTestCase):
    serve_static = True

    @classmethod
    def setUpClass(cls):
        close_every_database_connection()
        super().setUpClass()
        try:
            cls.driver = make_driver()
        except BaseException:
            super().tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.driver.quit()
        super().tearDownClass()
        remove_the_write_ahead_log()

    def test_a_refused_message_comes_back_and_what_is_typed_next_replaces_it(self):
        User.objects.create_user("alice", password=PASSWORD)
        driver = self.driver
        driver.get(self.live_server_url + "/accounts/login/")
        driver.find_element(By.NAME, "username").send_keys("alice")
        driver.find_element(By.NAME, "password").send_keys(PASSWORD, Keys.ENTER)
        WebDriverWait(driver, 5).until(lambda d: d.find_elements(By.ID, "username"))
        driver.get(self.live_server_url + "/chat/lobby/")
        WebDriverWait(driver, 5).until(
            lambda d: (
                d.find_element(By.ID, "connection-state").get_attribute("data-state")
                == "connected"
            )
        )
        box = driver.find_element(By.ID, "chat-message-input")
        for text in ("one", "two", "three"):
            box.send_keys(text, Keys.ENTER)
        WebDriverWait(driver, 5).until(
            lambda d: box.get_property("value") == "three",
            "the refused message did not come back into the box",
        )

        box.send_keys("four")  # typed over the refused text, which is selected

        self.assertEqual(box.get_property("value"), "four")
        self.assertIn(
            "At most 2 messages", driver.find_element(By.ID, "chat-error").text
        )
        log = driver.find_element(By.ID, "chat-log").text
        self.assertIn("alice: two", log)
        self.assertNotIn("three", log)
