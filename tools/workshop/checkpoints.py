"""What `make check` judges: each lesson's checkpoints, in plain words, as data.

LESSONS is the one table of lesson knowledge, keyed by step folder name. A lesson
has checkpoints, each of a kind that says how it is judged (diy.JUDGES):

- TESTS: some of the step's own tests pass (fnmatch patterns of their function
  names). A step's tests that no checkpoint names prove that the earlier lessons
  still work.
- ASYNCHRONOUS_CONSUMER: the probe of the project (diy.PROBE) finds an
  asynchronous ChatConsumer.
- OWN_TESTS_PASS, OWN_TESTS_NOTICE: the lesson writes tests: the learner's own
  tests run and pass, and fail when group_send reaches nobody.
- TEST_DATABASE_FILE: the settings give the tests a database file.

Tests of the workshop's deliberate differences from the official tutorial are never
failures: `make check` reports them as "the workshop's version also ...".

A mistake (MISTAKES) is a known cause found in the tests' output, said once as the
one thing to fix and where the lesson explains it; a fatal one ends the run at its
first failing test, since every later test would only meet it again.
"""

import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass, field

TESTS = "tests"
ASYNCHRONOUS_CONSUMER = "consumer is asynchronous (probe)"
OWN_TESTS_PASS = "learner's own tests"
OWN_TESTS_NOTICE = "learner's tests notice a broken chat"
TEST_DATABASE_FILE = "test database is a file"


@dataclass(frozen=True)
class Hint:
    """What to fix when one of these tests fails, when it is another file than the
    checkpoint's own explanation names (a browser test needs the page, ...)."""

    tests: tuple[str, ...]  # fnmatch patterns of test function names
    fix: str


@dataclass(frozen=True)
class Checkpoint:
    title: str
    explain: str  # what to do when it fails, and where the lesson says so
    tests: tuple[str, ...] = ()  # fnmatch patterns of test function names
    kind: str = TESTS
    hints: tuple[Hint, ...] = ()

    def fixes_for(self, failed: list[str]) -> list[str]:
        """What to fix for these failing tests: each hint that names one of them,
        and the checkpoint's explanation for the others, each once."""
        fixes = []
        for name in failed:
            hint = next((h for h in self.hints if matches(name, h.tests)), None)
            fix = hint.fix if hint else self.explain
            if fix not in fixes:
                fixes.append(fix)
        return fixes or [self.explain]


@dataclass(frozen=True)
class Difference:
    tests: tuple[str, ...]
    also: str  # "the workshop's version also ..."
    because: str
    # For a difference no test shows: whether the learner's project lacks it, from
    # the probe of the project (see diy.PROBE).
    lacking: Callable[[dict], bool] | None = None


@dataclass
class Lesson:
    checkpoints: list[Checkpoint] = field(default_factory=list)
    differences: list[Difference] = field(default_factory=list)
    # Run the tests on whatever channel layer the learner's settings choose (the
    # tutorial's settings always use Redis), not on each layer the step names.
    layer_from_settings: bool = False
    # The test files the learner writes in this lesson: theirs are run, not the
    # step's, and must notice a chat whose group_send reaches nobody.
    own_tests: tuple[str, ...] = ()
    # The lesson begins in an empty folder, with startproject.
    starts_empty: bool = False


def matches(test_name: str, patterns: tuple[str, ...]) -> bool:
    base = test_name.split("[", 1)[0]
    return any(fnmatch.fnmatchcase(base, pattern) for pattern in patterns)


def plain_words(test_name: str) -> str:
    """test_message_comes_back_to_its_sender[redis] -> message comes back to its
    sender (on redis)."""
    base, _, parameters = test_name.partition("[")
    words = base.removeprefix("test_").replace("_", " ")
    return f"{words} (on {parameters.rstrip(']')})" if parameters else words


ROOM_NAMES = Difference(
    tests=(
        "test_room_page_explains_a_name_the_chat_cannot_use",
        "test_room_name_the_layer_cannot_use_is_refused_cleanly",
        "test_refused_room_names_leave_no_traceback_in_the_server_log",
        "test_room_name_with_a_slash_gets_the_page_that_says_why",
        "test_room_name_is_escaped_in_the_page",
        "test_a_room_name_the_chat_cannot_use_gets_a_page_that_says_why",
    ),
    also="refuses a room name the channel layer cannot use (such as “café” or"
    " “a/b”) with a page that says why",
    because="with the tutorial's code such a name crashes the consumer with a"
    " TypeError, or gets Django's 404 page",
)
REDIS_READ_TIMEOUT = Difference(
    tests=("test_idle_client_still_chats_after_six_seconds_on_redis",),
    also="keeps a socket that is idle for more than 5 seconds working on Redis"
    ' ("socket_timeout": None in CHANNEL_LAYERS)',
    because="redis-py 8 gives every connection a 5-second read timeout, and"
    " channels_redis waits about that long for an idle consumer's next message",
)
REDIS_CROWD = Difference(
    tests=("test_a_crowd_joins_chats_and_leaves_at_once",),
    also='serves 150 sockets joining a room at once on Redis ("max_connections"'
    " in CHANNEL_LAYERS)",
    because="redis-py 8 caps a connection pool at 100 connections",
)
IN_MEMORY_DEFAULT = Difference(
    tests=(),
    also="runs with nothing else installed: the in-memory channel layer, unless"
    " REDIS_URL is set",
    because="the official tutorial needs Redis from part 2 on",
    lacking=lambda found: str(found.get("layer_backend")).startswith("channels_redis"),
)
TUTORIAL_DIFFERENCES = [ROOM_NAMES, REDIS_READ_TIMEOUT, REDIS_CROWD, IN_MEMORY_DEFAULT]

CHAT_WORKS = (
    "test_message_comes_back_to_its_sender",
    "test_everyone_in_the_room_receives_each_message_in_order",
    "test_a_client_in_another_room_receives_nothing",
    "test_disconnect_leaves_the_rooms_group",
    "test_malformed_frame_reaches_nobody_else",
)
TUTORIAL_CHAT = [
    Checkpoint(
        "The room page opens a WebSocket to its room",
        "/chat/<room name>/ must render chat/room.html, which opens a socket to"
        " /ws/chat/<room name>/ (chat/views.py, chat/urls.py). See the lesson's"
        ' "What changed".',
        ("test_room_page_opens_a_socket_to_its_room",),
    ),
    Checkpoint(
        "mysite/asgi.py routes WebSockets to the consumer, checking their origin",
        'ProtocolTypeRouter needs a "websocket" entry:'
        " AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(...)))."
        ' See step2_sync_chat/README.md, "How it works".',
        (
            "test_asgi_application_routes_http_and_websocket",
            "test_handshake_from_another_origin_is_rejected",
            "test_handshake_without_an_origin_header_is_rejected",
        ),
    ),
    Checkpoint(
        "The channel layer works (the tutorial's check in manage.py shell)",
        "CHANNEL_LAYERS in mysite/settings.py must name a layer that can send and"
        ' receive. See step2_sync_chat/README.md, "How it works".',
        ("test_channel_layer_round_trip",),
    ),
    Checkpoint(
        "Every socket in a room receives each message, in order, and no other room does",
        "The consumer joins the room's group in connect() (group_add), sends each"
        " message to the group (group_send), and forwards group messages to its"
        ' socket (chat_message). See step2_sync_chat/README.md, "How it works".',
        CHAT_WORKS,
    ),
]

# --- the lessons: re-key this table when the step folders are renamed ---------------

LESSONS: dict[str, Lesson] = {
    "step1_setup": Lesson(
        starts_empty=True,
        checkpoints=[
            Checkpoint(
                "The index page asks which chat room to enter",
                "GET /chat/ must render chat/templates/chat/index.html, through"
                " chat/views.py, chat/urls.py and an include in mysite/urls.py. See"
                ' step1_setup/README.md, "What changed".',
                ("test_index_page_asks_for_a_room_name",),
            ),
            Checkpoint(
                "manage.py runserver is Daphne, serving the ASGI application",
                '"daphne" goes first in INSTALLED_APPS, and ASGI_APPLICATION ='
                ' "mysite.asgi.application". See step1_setup/README.md, "How it works".',
                (
                    "test_runserver_is_daphne_and_serves_the_index_page",
                    "test_manage_py_check_passes_with_daphne_installed_first",
                ),
            ),
            Checkpoint(
                "mysite/asgi.py is a ProtocolTypeRouter for HTTP",
                'application = ProtocolTypeRouter({"http": get_asgi_application()}).'
                ' See step1_setup/README.md, "How it works".',
                ("test_asgi_application_routes_http_only",),
            ),
            Checkpoint(
                "There are no room pages yet",
                "/chat/lobby/ is a 404 until step 2: the room page is the next lesson.",
                ("test_room_pages_do_not_exist_yet",),
            ),
        ],
    ),
    "step2_sync_chat": Lesson(
        checkpoints=TUTORIAL_CHAT,
        differences=TUTORIAL_DIFFERENCES,
        layer_from_settings=True,
    ),
    "step3_async_chat": Lesson(
        checkpoints=[
            Checkpoint(
                "The consumer is asynchronous",
                "chat/consumers.py: ChatConsumer must be an AsyncWebsocketConsumer whose"
                " handlers are `async def` and await the channel layer (no"
                ' async_to_sync). See step3_async_chat/README.md, "What changed".',
                kind=ASYNCHRONOUS_CONSUMER,
            ),
            *TUTORIAL_CHAT,
        ],
        differences=TUTORIAL_DIFFERENCES,
        layer_from_settings=True,
    ),
    "step4_testing": Lesson(
        checkpoints=[
            Checkpoint(
                "Your browser tests run (python manage.py test chat.tests) and pass",
                "chat/tests.py: a ChannelsLiveServerTestCase whose tests open the"
                " room in two windows and check what each shows. See"
                ' step4_testing/README.md, "What changed".',
                kind=OWN_TESTS_PASS,
            ),
            Checkpoint(
                "Your tests notice a chat whose messages reach nobody",
                "With group_send reaching nobody, at least one of your tests must fail:"
                " check that a second window receives the message. See"
                ' step4_testing/README.md, "How it works".',
                kind=OWN_TESTS_NOTICE,
            ),
            Checkpoint(
                "The test database is a file (a live server needs one)",
                'DATABASES["default"]["TEST"]["NAME"] must name a file. See'
                ' step4_testing/README.md, "How it works".',
                kind=TEST_DATABASE_FILE,
            ),
        ],
        differences=[
            *TUTORIAL_DIFFERENCES,
            Difference(
                tests=(),
                also="keeps the tests' database in its own file, test_db.sqlite3",
                because="with the tutorial's setting (the same file as NAME) every"
                " test run deletes your development database",
                lacking=lambda found: (
                    found.get("test_database", "").endswith("db.sqlite3")
                    and not found["test_database"].endswith("test_db.sqlite3")
                ),
            ),
        ],
        layer_from_settings=True,
        own_tests=("chat/tests.py", "chat/test_consumers.py"),
    ),
    "step5_users": Lesson(
        checkpoints=[
            Checkpoint(
                "Visitors sign up, log in and log out; the rooms need a login",
                "Django's auth views at accounts/ (mysite/urls.py), the signup view,"
                " login_required on the rooms, and the login and signup templates."
                ' See step5_users/README.md, "What changed".',
                (
                    "test_rooms_need_a_login",
                    "test_home_page_leads_to_the_rooms",
                    "test_sign_up_*",
                    "test_log_in_and_log_out",
                    "test_wrong_password_is_refused",
                    "test_index_page_asks_for_a_room_name_and_says_who_is_logged_in",
                    "test_visitor_who_is_not_logged_in_is_sent_to_the_login_page",
                    "test_a_visitor_signs_up_and_lands_in_the_rooms",
                    "test_runserver_serves_the_login_page",
                    "test_room_page_opens_a_socket_to_its_room",
                    "test_room_page_explains_a_name_the_chat_cannot_use",
                    "test_room_name_is_escaped_in_the_page",
                    "test_manage_py_check_passes",
                ),
            ),
            Checkpoint(
                "A socket without a logged-in user is closed with code 4401",
                'The consumer reads scope["user"]; an anonymous one is accepted, then'
                " closed with CLOSE_LOGIN_REQUIRED (4401). See step5_users/README.md.",
                (
                    "test_anonymous_socket_*",
                    "test_an_anonymous_socket_*",
                    "test_handshake_from_another_site_is_rejected",
                ),
            ),
            Checkpoint(
                "Messages are JSON frames that say who wrote them",
                'The consumer (an AsyncJsonWebsocketConsumer) takes {"type":'
                ' "message", "text": ...} and sends {"type": "message", "author":'
                " ...}; anything else gets an error frame. See step5_users/README.md,"
                ' "The protocol".',
                (
                    "test_message_carries_its_author_room_and_time",
                    "test_the_author_comes_from_the_session_not_from_the_frame",
                    "test_two_users_in_one_room_see_each_others_names",
                    "test_two_logged_in_users_chat_and_see_who_wrote_what",
                    "test_malformed_frame_gets_an_error_and_reaches_nobody",
                    "test_message_fans_out_to_every_user_in_the_room_only",
                    "test_a_message_is_not_seen_in_another_room",
                    "test_room_name_the_layer_cannot_use_is_refused",
                    "test_a_crowd_joins_chats_and_leaves_at_once",
                    "test_disconnect_leaves_the_rooms_group",
                    "test_markup_in_a_message_is_shown_as_text",
                    "test_message_is_echoed_to_its_sender_once",
                ),
                hints=(
                    Hint(
                        ("test_two_logged_in_users_chat_and_see_who_wrote_what",),
                        "A test in a real browser: chat/templates/chat/room.html sends"
                        ' {"type": "message", "text": ...} and shows each message with'
                        ' its author. See step5_users/README.md, "What changed".',
                    ),
                ),
            ),
        ],
    ),
    "step6_history": Lesson(
        checkpoints=[
            Checkpoint(
                "Messages are stored, numbered in their room, before anyone gets them",
                "chat/models.py (Room, Message), a migration, and chat/store.py's"
                " save_message, called through database_sync_to_async before"
                ' group_send. See step6_history/README.md, "How it works".',
                (
                    "test_message_is_stored_before_anyone_receives_it",
                    "test_messages_are_numbered_within_their_room",
                    "test_a_rooms_lock_is_not_kept_once_its_message_is_sent",
                    "test_malformed_frame_gets_an_error_and_changes_nothing",
                    "test_message_carries_its_author_room_and_time",
                ),
            ),
            Checkpoint(
                "A socket gets the room's latest messages on joining, each once",
                'The consumer sends a "history" frame after joining the group, and'
                " chat_message() skips a message the history had. See"
                ' step6_history/README.md, "How it works".',
                (
                    "test_joining_client_receives_the_last_50_messages",
                    "test_a_message_in_the_history_is_not_sent_again_by_its_broadcast",
                    "test_the_history_is_there_after_a_reload_in_order_and_once",
                    "test_the_history_outlives_the_server",
                ),
                hints=(
                    Hint(
                        ("test_the_history_is_there_after_a_reload_in_order_and_once",),
                        "A test in a real browser: chat/templates/chat/room.html shows"
                        ' the messages of the "history" frame, in order. See'
                        ' step6_history/README.md, "What changed".',
                    ),
                ),
            ),
        ],
    ),
    "step7_reconnecting": Lesson(
        checkpoints=[
            Checkpoint(
                "A reconnecting socket gets what it missed, and a gap is filled",
                "With ?after=N the history frame brings every message after N and"
                ' says where it starts ("after"); chat_message() fetches from the'
                " database when a number is missing. See"
                ' step7_reconnecting/README.md, "How it works".',
                (
                    "test_reconnecting_client_receives_everything_after_*",
                    "test_client_that_has_everything_receives_an_empty_history",
                    "test_a_page_newer_than_the_room_gets_*",
                    "test_a_history_says_which_message_it_follows",
                    "test_messages_the_layer_dropped_are_fetched_*",
                    "test_broadcasts_that_cross_are_shown_in_number_order_once",
                    "test_an_after_that_is_not_a_message_number_gets_the_latest",
                ),
            ),
            Checkpoint(
                "A message is acknowledged once stored, and stored once however often"
                " it is sent",
                'A message with a "client_id" gets an "ack" once stored; chat/store.py'
                " stores it once per author and client id (chat/models.py, a"
                ' migration). See step7_reconnecting/README.md, "How it works".',
                (
                    "test_a_message_with_a_client_id_is_acknowledged_once_stored",
                    "test_a_message_sent_again_is_stored_and_shown_once",
                    "test_two_users_may_make_up_the_same_client_id",
                    "test_a_client_id_that_is_not_an_id_gets_an_error",
                    "test_a_message_stored_but_never_acknowledged_is_stored_once",
                ),
            ),
            Checkpoint(
                "The page reconnects, keeps what you typed pending, and catches up",
                "chat/templates/chat/room.html reconnects with backoff and"
                " ?after=<last id>, keeps each message in #chat-pending until its"
                ' "ack", and sends it again after reconnecting. See'
                ' step7_reconnecting/README.md, "What changed".',
                (
                    "test_server_killed_and_restarted_clients_catch_up",
                    "test_room_page_reconnects_after_a_server_restart_and_catches_up",
                    "test_the_page_keeps_a_message_pending_*",
                    "test_a_page_newer_than_the_restored_database_starts_again",
                    "test_the_page_waits_a_random_part_of_the_backoff_*",
                    "test_a_page_that_is_left_stops_reconnecting_*",
                    "test_room_page_opens_a_socket_to_its_room",
                ),
                hints=(
                    Hint(
                        (
                            "test_the_page_waits_a_random_part_of_the_backoff_*",
                            "test_a_page_that_is_left_stops_reconnecting_*",
                        ),
                        "chat/templates/chat/room.html waits setTimeout(connect,"
                        " Math.random() * backoff) before reconnecting, starts the"
                        " backoff again on a socket's first history frame, and on"
                        ' pagehide clears that timer. See the "Reconnecting" row of'
                        ' step7_reconnecting/README.md, "The page contract".',
                    ),
                    Hint(
                        ("test_server_killed_and_restarted_clients_catch_up",),
                        "Clients that reconnect with ?after=N get every message after"
                        " N: chat/protocol.py reads it from the query string. See"
                        ' step7_reconnecting/README.md, "How it works".',
                    ),
                ),
            ),
        ],
    ),
    "step8_scaling_out": Lesson(
        checkpoints=[
            Checkpoint(
                "Several workers share the room through Redis",
                "CHANNEL_LAYERS on Redis from REDIS_URL (REDIS_LAYER chooses"
                " channels_redis' layer). See step8_scaling_out/README.md.",
                (
                    "test_clients_on_two_workers_chat_through_redis",
                    "test_an_unknown_redis_layer_is_refused_with_the_choices",
                    "test_runserver_serves_the_login_page_and_warns_*",
                ),
            ),
            Checkpoint(
                "The chat survives a Redis restart and a burst, with nothing lost",
                "chat/heartbeat.py joins the groups again and catches up what the"
                " layer dropped. See step8_scaling_out/README.md.",
                (
                    "test_redis_restart_mid_conversation",
                    "test_burst_reaches_every_member",
                    "test_messages_dropped_after_the_last_event_are_caught_up",
                    "test_a_message_whose_broadcast_fails_is_*",
                    "test_a_socket_that_drops_during_a_send_still_leaves_the_room",
                    "test_a_page_that_closes_as_the_server_sends_*",
                    "test_disconnect_leaves_every_group",
                    "test_server_killed_and_restarted_clients_catch_up",
                    "test_room_page_reconnects_after_a_server_restart_and_catches_up",
                ),
            ),
            Checkpoint(
                "manage.py notify reaches everyone connected",
                "chat/management/commands/notify.py sends through the channel layer"
                " to the notifications group (chat/groups.py). See"
                " step8_scaling_out/README.md.",
                ("test_notify_command_*",),
            ),
        ],
    ),
    "step9_presence": Lesson(
        checkpoints=[
            Checkpoint(
                "Everyone sees who is online, across processes",
                "A Presence row per socket, refreshed by the heartbeat, and a"
                ' coalesced "presence" broadcast. See step9_presence/README.md.',
                (
                    "test_presence_*",
                    "test_two_sockets_of_one_user_count_once",
                    "test_a_crowd_joining_at_once_shares_presence_broadcasts",
                    "test_each_user_sees_who_is_online",
                    "test_a_crowd_joins_chats_and_leaves_at_once",
                    "test_a_socket_that_drops_during_a_send_still_leaves_the_room",
                    "test_room_page_opens_a_socket_to_its_room",
                ),
                hints=(
                    Hint(
                        ("test_each_user_sees_who_is_online",),
                        "A test in a real browser: chat/templates/chat/room.html shows"
                        ' the users of the "presence" frame in #presence. See'
                        " step9_presence/README.md.",
                    ),
                ),
            ),
        ],
    ),
    "step10_hardening": Lesson(
        checkpoints=[
            Checkpoint(
                "Hostile input gets an error frame; the server serves everyone else",
                "chat/protocol.py checks a frame's size before parsing it and answers"
                " anything that is not a valid message with a typed error frame; too"
                " many of those close the socket (4008). See"
                " step10_hardening/README.md.",
                (
                    "test_malformed_frame_gets_an_error_and_changes_nothing",
                    "test_a_frame_over_the_size_limit_*",
                    "test_any_*",
                    "test_hostile_frames_over_a_real_server_*",
                    "test_a_frame_over_the_servers_limit_*",
                    "test_an_after_that_is_not_a_message_number_*",
                    "test_too_many_invalid_frames_close_the_socket",
                ),
            ),
            Checkpoint(
                "Limits: message size, messages per second, sockets per user,"
                " sign-ups per address",
                "chat/limits.py counts each user's messages (in Redis when there is"
                " one); the consumer counts a user's sockets; the sign-up view its"
                " address's sign-ups. See step10_hardening/README.md.",
                (
                    "test_text_over_4_kib_*",
                    "test_message_size_limit_is_configurable",
                    "test_more_than_10_messages_a_second_are_refused",
                    "test_the_rate_limit_*",
                    "test_with_redis_the_rate_limit_is_kept_in_redis",
                    "test_a_message_the_server_refuses_stays_in_the_box_*",
                    "test_a_refused_message_comes_back_*",
                    "test_a_user_with_too_many_sockets_gets_no_more",
                    "test_sign_up_is_limited_per_address",
                ),
                hints=(
                    Hint(
                        (
                            "test_a_message_the_server_refuses_stays_in_the_box_*",
                            "test_a_refused_message_comes_back_*",
                        ),
                        "A test in a real browser: chat/templates/chat/room.html puts a"
                        " refused message's text back into the box, with the reason."
                        " See step10_hardening/README.md.",
                    ),
                ),
            ),
            Checkpoint(
                "A reconnect far behind is caught up a page at a time, and bounded",
                "chat/store.py's messages_after takes a limit; the history frame says"
                ' how many it "skipped". See step10_hardening/README.md.',
                ("test_a_reconnect_far_behind_*",),
            ),
            Checkpoint(
                "A page that stops reading holds a bounded queue, and misses nothing",
                "chat/layers.py gives the pub/sub layer's queue for each socket the"
                " bound CHANNEL_CAPACITY (mysite/settings.py uses it for"
                ' REDIS_LAYER=pubsub) and drops what does not fit, with the warning "A'
                ' socket is N messages behind: dropping". See'
                " step10_hardening/README.md.",
                (
                    "test_a_page_that_stops_reading_*",
                    "test_a_channel_nobody_reads_*",
                    "test_burst_reaches_every_member",
                ),
            ),
        ],
    ),
    "step11_sessions": Lesson(
        checkpoints=[
            Checkpoint(
                "Logging out closes that session's sockets, even while Redis is down",
                "chat/signals.py on user_logged_out sends to the session's group"
                " (chat/groups.py), without waiting long for Redis. See"
                " step11_sessions/README.md.",
                ("test_logging_out_*",),
            ),
            Checkpoint(
                "A socket whose login has ended is closed with 4401",
                "chat/heartbeat.py asks chat/store.py's ended_sessions about its"
                " sockets' sessions on every beat. See step11_sessions/README.md.",
                ("test_the_heartbeat_closes_a_socket_whose_login_ended",),
            ),
            Checkpoint(
                "Only the site's own pages open a socket: scheme and port included",
                "mysite/origins.py's OriginCheck (used in mysite/asgi.py) checks the"
                " Origin against CSRF_TRUSTED_ORIGINS when it is set, else"
                " ALLOWED_HOSTS, and refuses an Origin that does not parse. See"
                " step11_sessions/README.md.",
                (
                    "test_with_csrf_trusted_origins_*",
                    "test_an_origin_that_does_not_parse_*",
                    "test_any_origin_header_*",
                ),
            ),
        ],
    ),
    "step12_at_scale": Lesson(
        checkpoints=[
            Checkpoint(
                "Presence is told as changes: the joiner gets the list, the room who"
                " came and who left",
                "chat/presence.py announces store.presence_changes() as numbered"
                ' "presence_diff" frames, encoded once; the consumer sends the whole'
                " list on joining and after a missed change. See"
                " step12_at_scale/README.md.",
                (
                    "test_a_joiner_gets_the_whole_list_*",
                    "test_the_others_hear_only_who_left",
                    "test_the_users_of_a_server_that_died_*",
                    "test_after_a_missed_change_*",
                    "test_a_change_whose_broadcast_failed_*",
                    "test_an_older_list_of_who_is_online_*",
                    "test_presence_updates_when_a_socket_dies_*",
                    "test_two_sockets_of_one_user_count_once",
                    "test_a_crowd_joining_at_once_shares_presence_broadcasts",
                ),  # fmt: skip
            ),
            Checkpoint(
                "A message costs two statements; a copy sent again is refused by the"
                " database, and its number given back",
                "chat/store.py's save_message takes the room's next number with one"
                " UPDATE ... RETURNING, inserts, and lets the unique constraint refuse"
                " a copy sent again (its transaction, and the number it took, rolled"
                " back). See step12_at_scale/README.md.",
                (
                    "test_a_message_costs_two_statements_*",
                    "test_a_message_sent_again_is_stored_and_shown_once",
                ),
            ),
        ],
    ),
    "step13_production": Lesson(
        checkpoints=[
            Checkpoint(
                "Production settings come from the environment; check --deploy is clean",
                "mysite/settings.py reads DJANGO_*, DATABASE_URL and STATIC_ROOT. See"
                " step13_production/README.md.",
                (
                    "test_*settings*",
                    "test_*database*",
                    "test_check_deploy_*",
                    "test_secure_cookies_*",
                    "test_logging_in_over_plain_http_*",
                    "test_collectstatic_*",
                    "test_uvicorn_alone_serves_the_stylesheet_*",
                    "test_debug_off_with_the_development_secret_key_*",
                    "test_postgres_variables_select_postgresql_too",
                ),  # fmt: skip
            ),
        ],
    ),
    "step14_deployment": Lesson(
        checkpoints=[
            Checkpoint(
                "nginx in front of two app servers, with PostgreSQL and Redis",
                "deploy/: the nginx configuration, with app-server.sh and release.sh."
                " See step14_deployment/README.md.",
                (
                    "test_users_on_both_app_servers_*",
                    "test_static_files_come_from_nginx",
                    "test_the_origin_check_works_through_the_proxy",
                    "test_logging_in_through_the_proxy_*",
                    "test_a_browser_logs_in_and_chats_through_the_proxy",
                    "test_an_app_server_killed_*",
                    "test_docker_runs_the_same_files_as_the_tested_stack",
                    "test_a_second_stop_signal_while_stopping_*",
                ),  # fmt: skip
            ),
            Checkpoint(
                "nginx limits each address's sockets and account pages, and passes"
                " on the real address that sign-ups are counted by",
                "deploy/nginx/chat.conf.template: limit_conn on /ws/, limit_req on"
                " /accounts/, and X-Forwarded-For set to the client's own address. See"
                " step14_deployment/README.md.",
                (
                    "test_one_address_gets_at_most_100_sockets",
                    "test_the_account_pages_are_rate_limited_per_address",
                    "test_a_made_up_forwarded_address_*",
                ),
            ),
        ],
    ),
    "step15_presence_in_redis": Lesson(
        checkpoints=[
            Checkpoint(
                "Presence is kept in Redis, or in the process's memory without it:"
                " no database query for who is online",
                "chat/online.py: enter, leave, refresh, told, versions and changes, as"
                " scripts run by Redis (LocalOnline without REDIS_URL); the consumer,"
                " the heartbeat and chat/presence.py call them instead of"
                " chat/store.py. See step15_presence_in_redis/README.md.",
                (
                    "test_a_join_and_a_leave_are_each_one_change",
                    "test_nothing_new_is_no_change",
                    "test_two_sockets_of_one_user_are_one_name",
                    "test_a_socket_that_dies_without_a_close_frame_expires",
                    "test_the_heartbeat_keeps_a_socket_online",
                    "test_announcements_at_once_tell_each_change_once",
                    "test_versions_go_up_even_after_redis_forgot_them",
                    "test_a_crowd_joins_chats_and_leaves_at_once",
                    "test_presence_is_kept_fresh_when_a_socket_cannot_join_*",
                    "test_the_users_of_a_server_that_died_*",
                ),  # fmt: skip
            ),
            Checkpoint(
                "The cap per user is counted and taken in one step: sockets opening at"
                " once cannot pass it",
                "chat/online.py's enter() drops the user's expired sockets, counts the"
                " rest and records the new one in one script (one step without an"
                " await, in memory). See step15_presence_in_redis/README.md.",
                (
                    "test_the_cap_cannot_be_passed_by_sockets_opening_at_once",
                    "test_an_expired_socket_leaves_room_under_the_cap",
                ),
            ),
        ],
    ),
    "step16_messages_in_batches": Lesson(
        checkpoints=[
            Checkpoint(
                "A room's messages that arrive while its last ones are stored wait,"
                " and are stored together: one transaction, numbered in the order sent",
                "chat/writer.py: send_message() queues the message for the room's"
                " writer, which takes the waiting ones a batch at a time;"
                " chat/store.py's save_messages() stores a batch with one UPDATE and"
                " one INSERT; one chat.messages event broadcasts it, and the"
                " consumer's chat_messages() shows each message in number order. See"
                " step16_messages_in_batches/README.md.",
                (
                    "test_messages_sent_at_once_are_stored_in_one_batch_in_order",
                    "test_a_batch_costs_two_statements",
                    "test_a_crowd_sending_at_once_is_shown_every_message_once_in_order",
                    "test_a_copy_sent_again_in_a_batch_is_stored_once_*",
                    "test_a_batch_the_database_refused_does_not_stop_the_rooms_writer",
                    "test_a_batch_after_a_dropped_message_is_caught_up_in_order_once",
                    "test_a_batch_whose_first_message_the_page_has_shows_the_rest",
                    "test_a_big_batch_is_broadcast_in_events_of_limited_size",
                    "test_two_copies_in_one_batch_are_stored_once",
                    "test_a_message_the_database_refuses_fails_alone",
                    "test_a_message_whose_broadcast_fails_is_acknowledged_and_caught_up",
                    "test_a_rooms_writer_is_not_kept_once_its_messages_are_sent",
                ),
            ),
            Checkpoint(
                "The rate limits of a batch's senders are checked in one step",
                "chat/limits.py: allow_messages() runs the sliding window for every"
                " message of the batch in one script (one round trip to Redis). See"
                " step16_messages_in_batches/README.md.",
                ("test_the_rate_limit_in_a_batch_refuses_only_the_messages_over_it",),
            ),
        ],
    ),
    "step17_reconnect_storms": Lesson(
        checkpoints=[
            Checkpoint(
                "A socket is accepted before its join's work, and joins take turns",
                "chat/consumers.py: connect() accepts the socket once the room name is"
                " valid, then runs join() inside joins_in_turn(), an asyncio.Semaphore"
                " of CHAT_JOINS_AT_ONCE (mysite/settings.py) for each event loop. See"
                " step17_reconnect_storms/README.md.",
                (
                    "test_a_socket_is_accepted_before_its_join_is_done",
                    "test_a_crowd_joins_a_few_at_a_time_and_each_gets_its_history",
                    # Rewritten: it waits for the history before counting the group.
                    "test_with_csrf_trusted_origins_only_those_origins_open_a_socket",
                ),
            ),
            Checkpoint(
                "A history costs two queries, however many messages it holds",
                "chat/store.py: history() reads the room's newest number once and hands"
                " it to messages_after(); the messages are read as plain values"
                " (values_list(*FRAME_COLUMNS)), not model objects. See"
                " step17_reconnect_storms/README.md.",
                ("test_a_history_costs_two_queries_however_many_messages_it_holds",),
            ),
        ],
    ),
}


def lesson_checks(step_name: str) -> Lesson:
    return LESSONS.get(step_name, Lesson())


# --- mistakes: the one thing that is wrong ------------------------------------------


@dataclass(frozen=True)
class Mistake:
    pattern: str  # a regular expression searched in the tests' output
    says: str  # what is wrong and what to do; {1}, {2}, ...: the pattern's groups
    # Every test would meet it again: the run stops at its first failing test.
    fatal: bool = False


MISTAKES = [
    Mistake(
        r"can't be used in 'await' expression",
        "A consumer is routed without .as_asgi(): in chat/routing.py write"
        " consumers.ChatConsumer.as_asgi() (step2_sync_chat/README.md).",
        fatal=True,
    ),
    Mistake(
        r"SynchronousOnlyOperation",
        "The asynchronous consumer calls the Django ORM directly, which may block"
        " the event loop, so Django refuses: wrap the database code with"
        " database_sync_to_async (notes/sync-vs-async.md).",
        fatal=True,
    ),
    Mistake(
        r"coroutine '((?:\w+\.)*(\w+))' was never awaited",
        "An await is missing: {1}() was called but not awaited, so it did nothing."
        " In an async consumer, write `await ...{2}(...)`"
        " (step3_async_chat/README.md).",
        fatal=True,
    ),
    Mistake(
        r"You cannot use AsyncToSync in the same thread as an async event loop",
        "async_to_sync is called from async code: in an async consumer, await the"
        " channel layer's coroutines directly (step3_async_chat/README.md).",
        fatal=True,
    ),
    Mistake(
        r"AppRegistryNotReady",
        "mysite/asgi.py imports the routing (and so the models) before"
        " get_asgi_application() has set Django up: call it first"
        " (step2_sync_chat/README.md).",
    ),
    Mistake(
        r"Error 111 connecting to ([\d.]+):(\d+)",
        "Your settings use Redis at {1}:{2}, and nothing answers there: start one"
        " (`make redis`), or use the in-memory layer (step2_sync_chat/README.md,"
        " Troubleshooting).",
    ),
]


def found_mistake(mistake: Mistake, text: str) -> str | None:
    """What the mistake says, if the text shows it."""
    seen = re.search(mistake.pattern, text)
    return mistake.says.format(seen[0], *seen.groups()) if seen else None


def probe_problems(probe: dict, routes_websockets: bool) -> list[str]:
    """What the probe of the learner's project (see diy.PROBE) shows is wrong, most
    fundamental first. `routes_websockets`: the lesson's project routes them."""
    if probe.get("error"):
        return [
            f"Your project does not start: {probe['error']}. Fix that first"
            " (`make run` shows the whole error)."
        ]
    found = []
    apps = probe.get("installed_apps", [])
    if "daphne" not in apps:
        found.append(
            'INSTALLED_APPS does not list "daphne", so `manage.py runserver` is'
            " Django's own WSGI server, which cannot speak WebSocket: every /ws/"
            ' address gets a 404. Put "daphne" first in INSTALLED_APPS'
            ' (step1_setup/README.md, "How it works").'
        )
    elif "django.contrib.staticfiles" in apps and apps.index("daphne") > apps.index(
        "django.contrib.staticfiles"
    ):
        found.append(
            '"daphne" comes after "django.contrib.staticfiles" in INSTALLED_APPS, whose'
            " runserver then wins. Move it to the top (step1_setup/README.md)."
        )
    if not probe.get("asgi_application"):
        found.append(
            'mysite/settings.py has no ASGI_APPLICATION = "mysite.asgi.application":'
            " Daphne's runserver does not know what to serve (step1_setup/README.md)."
        )
    if routes_websockets and "websocket" not in probe.get("protocols", ["websocket"]):
        found.append(
            'mysite/asgi.py routes only "http": add a "websocket" entry to'
            ' ProtocolTypeRouter (step2_sync_chat/README.md, "How it works").'
        )
    source = probe.get("consumer_source")
    if source is not None and "group_add" not in source:
        found.append(
            "chat/consumers.py never joins the room's group: without"
            " channel_layer.group_add(...) in connect(), a message sent to the"
            " group reaches nobody, not even its sender"
            ' (step2_sync_chat/README.md, "How it works").'
        )
    return found


def consumer_is_asynchronous(probe: dict) -> str | None:
    """None if chat/consumers.py's ChatConsumer is asynchronous; else why not."""
    if probe.get("error"):
        return f"Your project does not start: {probe['error']}."
    bases = probe.get("consumer_bases", [])
    if not bases:
        return "chat/consumers.py has no ChatConsumer."
    if "SyncConsumer" in bases or "AsyncConsumer" not in bases:
        return (
            f"ChatConsumer is a {bases[1]} (synchronous): the lesson rewrites it as an"
            " AsyncWebsocketConsumer whose handlers are `async def`"
            ' (step3_async_chat/README.md, "What changed").'
        )
    not_coroutines = probe.get("handlers_not_coroutines", [])
    if not_coroutines:
        return (
            f"{', '.join(not_coroutines)} in ChatConsumer must be `async def`"
            " (step3_async_chat/README.md)."
        )
    if "async_to_sync" in probe.get("consumer_source", ""):
        return (
            "chat/consumers.py still calls async_to_sync: in an async consumer, await"
            " the channel layer directly (step3_async_chat/README.md)."
        )
    return None
