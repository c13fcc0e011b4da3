"""Browser tests: real headless Chromium windows chatting through a live Daphne server.

Run them the tutorial's way, `python manage.py test chat.tests`, or with pytest.
ChannelsLiveServerTestCase starts Daphne in another process, on a free port, with
the test database; Selenium drives the browser.
"""

from pathlib import Path

from channels.testing import ChannelsLiveServerTestCase
from django.conf import settings
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.wait import WebDriverWait

from testsupport.browser import make_driver, save_failure_artefacts

# Screenshots and console logs of failed tests go here (git ignores the folder).
ARTEFACTS = Path(settings.BASE_DIR) / "test-artifacts"


class ChatTests(ChannelsLiveServerTestCase):
    serve_static = True  # emulate StaticLiveServerTestCase

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        try:
            # Differs from the official tutorial (`webdriver.Chrome()`): a headless
            # browser found by testsupport/browser.py, or a skip that says how
            # to install one.
            cls.driver = make_driver()
        except BaseException:
            super().tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.driver.quit()
        super().tearDownClass()

    def test_when_chat_message_posted_then_seen_by_everyone_in_same_room(self):
        try:
            self._enter_chat_room("room_1")

            self._open_new_window()
            self._enter_chat_room("room_1")

            self._switch_to_window(0)
            self._post_message("hello")
            self._wait_until(
                lambda _: "hello" in self._chat_log_value,
                "Message was not received by window 1 from window 1",
            )
            self._switch_to_window(1)
            self._wait_until(
                lambda _: "hello" in self._chat_log_value,
                "Message was not received by window 2 from window 1",
            )
        finally:
            self._close_all_new_windows()

    def test_when_chat_message_posted_then_not_seen_by_anyone_in_different_room(self):
        try:
            self._enter_chat_room("room_1")

            self._open_new_window()
            self._enter_chat_room("room_2")

            self._switch_to_window(0)
            self._post_message("hello")
            self._wait_until(
                lambda _: "hello" in self._chat_log_value,
                "Message was not received by window 1 from window 1",
            )

            self._switch_to_window(1)
            self._post_message("world")
            self._wait_until(
                lambda _: "world" in self._chat_log_value,
                "Message was not received by window 2 from window 2",
            )
            self._check(
                "hello" not in self._chat_log_value,
                "Message was improperly received by window 2 from window 1",
            )
        finally:
            self._close_all_new_windows()

    # === Beyond the tutorial: more things a user would notice ===

    def test_window_joining_late_sees_later_messages_but_not_earlier_ones(self):
        try:
            self._enter_chat_room("room_1")
            self._post_message("before")
            self._wait_until(
                lambda _: "before" in self._chat_log_value,
                "Message was not received by window 1 from window 1",
            )

            self._open_new_window()
            self._enter_chat_room("room_1")

            self._switch_to_window(0)
            self._post_message("after")
            self._switch_to_window(1)
            self._wait_until(
                lambda _: "after" in self._chat_log_value,
                "A later message was not received by the window that joined late",
            )
            self._check(
                "before" not in self._chat_log_value,
                "The window that joined late received an earlier message"
                " (there is no history at this step)",
            )
        finally:
            self._close_all_new_windows()

    def test_markup_in_a_message_is_shown_as_text(self):
        message = "<b>bold</b> <script>window.injected = true;</script>"
        try:
            self._enter_chat_room("room_1")
            self._open_new_window()
            self._enter_chat_room("room_1")

            self._switch_to_window(0)
            self._post_message(message)
            self._switch_to_window(1)
            self._wait_until(
                lambda _: message in self._chat_log_value,
                "The message with markup did not arrive as the same text",
            )
            self._check(
                self.driver.find_elements(By.TAG_NAME, "b") == [],
                "The message's <b> became an element of the page",
            )
            self._check(
                self.driver.execute_script("return window.injected") is None,
                "The message's <script> ran in the receiving window",
            )
        finally:
            self._close_all_new_windows()

    def test_closing_one_window_does_not_stop_the_others_chatting(self):
        try:
            self._enter_chat_room("room_1")
            self._open_new_window()
            self._enter_chat_room("room_1")
            self._open_new_window()
            self._enter_chat_room("room_1")

            self._switch_to_window(1)
            self.driver.close()  # the second window goes away
            self._switch_to_window(0)
            self._post_message("still here")
            self._wait_until(
                lambda _: "still here" in self._chat_log_value,
                "Message was not received by window 1 from window 1",
            )
            self._switch_to_window(-1)
            self._wait_until(
                lambda _: "still here" in self._chat_log_value,
                "Message was not received by window 3 after window 2 closed",
            )
        finally:
            self._close_all_new_windows()

    def test_room_is_entered_from_the_index_page_with_enter(self):
        self.driver.get(self.live_server_url + "/chat/")
        self.driver.find_element(By.ID, "room-name-input").send_keys(
            "lobby", Keys.ENTER
        )
        self._wait_until(
            lambda _: self.driver.current_url.endswith("/chat/lobby/"),
            "Pressing Enter did not open the room",
        )
        self._wait_until_socket_open()

    def test_room_is_entered_from_the_index_page_with_the_button(self):
        self.driver.get(self.live_server_url + "/chat/")
        self.driver.find_element(By.ID, "room-name-input").send_keys("lobby")
        self.driver.find_element(By.ID, "room-name-submit").click()
        self._wait_until(
            lambda _: self.driver.current_url.endswith("/chat/lobby/"),
            "Clicking Enter did not open the room",
        )
        self._wait_until_socket_open()

    def test_a_room_name_the_chat_cannot_use_gets_a_page_that_says_why(self):
        for room_name in ("a/b", "../x", "café"):
            self.driver.get(self.live_server_url + "/chat/")
            self.driver.find_element(By.ID, "room-name-input").send_keys(
                room_name, Keys.ENTER
            )
            self._wait_until(
                lambda driver: driver.find_elements(By.ID, "room-name-refused"),
                f"Entering {room_name!r} did not lead to the page that says why",
            )
            self._check(
                f"There can be no room called “{room_name}”"
                in self.driver.find_element(By.ID, "room-name-refused").text,
                f"The page does not name {room_name!r}",
            )

    # === Utility ===

    def _enter_chat_room(self, room_name):
        self.driver.get(self.live_server_url + "/chat/")
        ActionChains(self.driver).send_keys(room_name, Keys.ENTER).perform()
        self._wait_until(
            lambda _: room_name in self.driver.current_url,
            f"The room page of {room_name} did not open",
        )
        self._wait_until_socket_open()

    def _wait_until_socket_open(self):
        # Differs from the official tutorial: wait until the page's WebSocket is
        # open. Typing before that sends into a socket that is still connecting
        # (an error in the page) and the message is lost: a flaky test.
        self._wait_until(
            lambda driver: driver.execute_script(
                "return typeof chatSocket !== 'undefined'"
                " && chatSocket.readyState === WebSocket.OPEN"
            ),
            "The room page's WebSocket did not open",
        )

    def _open_new_window(self):
        self.driver.execute_script('window.open("about:blank", "_blank");')
        self._switch_to_window(-1)

    def _close_all_new_windows(self):
        while len(self.driver.window_handles) > 1:
            self._switch_to_window(-1)
            self.driver.execute_script("window.close();")
        if len(self.driver.window_handles) == 1:
            self._switch_to_window(0)

    def _switch_to_window(self, window_index):
        self.driver.switch_to.window(self.driver.window_handles[window_index])

    def _post_message(self, message):
        ActionChains(self.driver).send_keys(message, Keys.ENTER).perform()

    @property
    def _chat_log_value(self):
        return self.driver.find_element(
            by=By.CSS_SELECTOR, value="#chat-log"
        ).get_property("value")

    # Differs from the official tutorial: a failed wait or check saves a
    # screenshot of every window and the browser console log, and says where.
    def _wait_until(self, condition, message, timeout=5):
        try:
            WebDriverWait(self.driver, timeout).until(condition)
        except TimeoutException:
            self._fail_with_artefacts(message)

    def _check(self, condition, message):
        if not condition:
            self._fail_with_artefacts(message)

    def _fail_with_artefacts(self, message):
        folder = save_failure_artefacts(self.driver, ARTEFACTS, self.id())
        self.fail(f"{message}. Screenshots and console log: {folder}")
