"""What `make check` judges: each step's checkpoints, in plain words.

A checkpoint is something the lesson teaches, proven by some of the step's own tests
(named by fnmatch patterns of their function names). A step's tests that no
checkpoint names prove that the earlier lessons still work. Tests of the workshop's
deliberate differences from the official tutorial are never failures: `make check`
reports them as "the workshop's version also ...".

A diagnosis turns what went wrong (the project's settings and code as a probe sees
them, or the tests' output) into the one thing to fix, and where the lesson says so.
"""

import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Checkpoint:
    title: str
    tests: tuple[str, ...]  # fnmatch patterns of test function names
    explain: str  # what to do when it fails, and where the lesson says so


@dataclass(frozen=True)
class Difference:
    tests: tuple[str, ...]
    also: str  # "the workshop's version also ..."
    because: str
    # For a difference no test shows: whether the learner's project lacks it, from
    # the probe of the project (see diy.PROBE).
    lacking: Callable[[dict], bool] | None = None


@dataclass
class StepChecks:
    checkpoints: list[Checkpoint] = field(default_factory=list)
    differences: list[Difference] = field(default_factory=list)
    # Run the tests on whatever channel layer the learner's settings choose (the
    # tutorial's settings always use Redis), not on each layer the step names.
    layer_from_settings: bool = False
    # The lesson is writing tests: the learner's own tests are run, and must notice
    # a chat whose group_send reaches nobody.
    learner_writes_tests: bool = False


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
        ("test_room_page_opens_a_socket_to_its_room",),
        "/chat/<room name>/ must render chat/room.html, which opens a socket to"
        " /ws/chat/<room name>/ (chat/views.py, chat/urls.py). See the lesson's"
        ' "What changed".',
    ),
    Checkpoint(
        "mysite/asgi.py routes WebSockets to the consumer, checking their origin",
        (
            "test_asgi_application_routes_http_and_websocket",
            "test_handshake_from_another_origin_is_rejected",
            "test_handshake_without_an_origin_header_is_rejected",
        ),
        'ProtocolTypeRouter needs a "websocket" entry:'
        " AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(...)))."
        ' See step2_sync_chat/README.md, "How it works".',
    ),
    Checkpoint(
        "The channel layer works (the tutorial's check in manage.py shell)",
        ("test_channel_layer_round_trip",),
        "CHANNEL_LAYERS in mysite/settings.py must name a layer that can send and"
        ' receive. See step2_sync_chat/README.md, "How it works".',
    ),
    Checkpoint(
        "Every socket in a room receives each message, in order, and no other room does",
        CHAT_WORKS,
        "The consumer joins the room's group in connect() (group_add), sends each"
        " message to the group (group_send), and forwards group messages to its"
        ' socket (chat_message). See step2_sync_chat/README.md, "How it works".',
    ),
]

STEPS: dict[int, StepChecks] = {
    1: StepChecks(
        checkpoints=[
            Checkpoint(
                "The index page asks which chat room to enter",
                ("test_index_page_asks_for_a_room_name",),
                "GET /chat/ must render chat/templates/chat/index.html, through"
                " chat/views.py, chat/urls.py and an include in mysite/urls.py. See"
                ' step1_setup/README.md, "What changed".',
            ),
            Checkpoint(
                "manage.py runserver is Daphne, serving the ASGI application",
                (
                    "test_runserver_is_daphne_and_serves_the_index_page",
                    "test_manage_py_check_passes_with_daphne_installed_first",
                ),
                '"daphne" goes first in INSTALLED_APPS, and ASGI_APPLICATION ='
                ' "mysite.asgi.application". See step1_setup/README.md, "How it works".',
            ),
            Checkpoint(
                "mysite/asgi.py is a ProtocolTypeRouter for HTTP",
                ("test_asgi_application_routes_http_only",),
                'application = ProtocolTypeRouter({"http": get_asgi_application()}).'
                ' See step1_setup/README.md, "How it works".',
            ),
            Checkpoint(
                "There are no room pages yet",
                ("test_room_pages_do_not_exist_yet",),
                "/chat/lobby/ is a 404 until step 2: the room page is the next lesson.",
            ),
        ],
    ),
    2: StepChecks(
        checkpoints=TUTORIAL_CHAT,
        differences=[ROOM_NAMES, REDIS_READ_TIMEOUT, REDIS_CROWD],
        layer_from_settings=True,
    ),
    3: StepChecks(
        checkpoints=[
            Checkpoint(
                "The consumer is asynchronous",
                (),  # judged by the probe, not by a test: see STATIC_CHECKS
                "chat/consumers.py: ChatConsumer must be an AsyncWebsocketConsumer whose"
                " handlers are `async def` and await the channel layer (no"
                ' async_to_sync). See step3_async_chat/README.md, "What changed".',
            ),
            *TUTORIAL_CHAT,
        ],
        differences=[ROOM_NAMES, REDIS_READ_TIMEOUT, REDIS_CROWD],
        layer_from_settings=True,
    ),
    4: StepChecks(
        checkpoints=[
            Checkpoint(
                "Your browser tests run (python manage.py test chat.tests) and pass",
                (),  # the learner's own tests: see the check
                "chat/tests.py: a ChannelsLiveServerTestCase whose tests open the"
                " room in two windows and check what each shows. See"
                ' step4_testing/README.md, "What changed".',
            ),
            Checkpoint(
                "Your tests notice a chat whose messages reach nobody",
                (),
                "With group_send reaching nobody, at least one of your tests must fail:"
                " check that a second window receives the message. See"
                ' step4_testing/README.md, "How it works".',
            ),
            Checkpoint(
                "The test database is a file (a live server needs one)",
                (),
                'DATABASES["default"]["TEST"]["NAME"] must name a file. See'
                ' step4_testing/README.md, "How it works".',
            ),
        ],
        differences=[
            ROOM_NAMES,
            REDIS_READ_TIMEOUT,
            REDIS_CROWD,
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
        learner_writes_tests=True,
    ),
    5: StepChecks(
        checkpoints=[
            Checkpoint(
                "Visitors sign up, log in and log out; the rooms need a login",
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
                ),
                "Django's auth views at accounts/ (mysite/urls.py), the signup view,"
                " login_required on the rooms, and the login and signup templates."
                ' See step5_users/README.md, "What changed".',
            ),
            Checkpoint(
                "A socket without a logged-in user is closed with code 4401",
                ("test_anonymous_socket_*", "test_an_anonymous_socket_*"),
                'The consumer reads scope["user"]; an anonymous one is accepted, then'
                " closed with CLOSE_LOGIN_REQUIRED (4401). See step5_users/README.md.",
            ),
            Checkpoint(
                "Messages are JSON frames that say who wrote them",
                (
                    "test_message_carries_its_author_room_and_time",
                    "test_the_author_comes_from_the_session_not_from_the_frame",
                    "test_two_users_in_one_room_see_each_others_names",
                    "test_two_logged_in_users_chat_and_see_who_wrote_what",
                    "test_malformed_frame_gets_an_error_and_reaches_nobody",
                ),
                'The consumer (an AsyncJsonWebsocketConsumer) takes {"type":'
                ' "message", "text": ...} and sends {"type": "message", "author":'
                " ...}; anything else gets an error frame. See step5_users/README.md,"
                ' "The protocol".',
            ),
        ],
    ),
    6: StepChecks(
        checkpoints=[
            Checkpoint(
                "Messages are stored, numbered in their room, before anyone gets them",
                (
                    "test_message_is_stored_before_anyone_receives_it",
                    "test_messages_are_numbered_within_their_room",
                    "test_message_carries_its_author_room_and_time",
                ),
                "chat/models.py (Room, Message), a migration, and chat/store.py's"
                " save_message, called through database_sync_to_async before"
                ' group_send. See step6_history/README.md, "How it works".',
            ),
            Checkpoint(
                "A socket gets the history on joining, or what it missed (?after=N)",
                (
                    "test_joining_client_receives_the_last_50_messages",
                    "test_reconnecting_client_receives_everything_after_*",
                    "test_client_that_has_everything_receives_an_empty_history",
                    "test_the_history_is_there_after_a_reload_in_order_and_once",
                ),
                'The consumer sends a "history" frame after joining the group. See'
                ' step6_history/README.md, "How it works".',
            ),
            Checkpoint(
                "A gap is filled from the database, and nothing comes twice",
                (
                    "test_messages_the_layer_dropped_are_fetched_*",
                    "test_broadcasts_that_cross_are_shown_in_number_order_once",
                ),
                "chat_message() skips numbers it has sent and fetches from the"
                " database when one is missing. See step6_history/README.md.",
            ),
            Checkpoint(
                "The page reconnects by itself and catches up",
                (
                    "test_server_killed_and_restarted_clients_catch_up",
                    "test_room_page_reconnects_after_a_server_restart_and_catches_up",
                ),
                "room.html reconnects with backoff and ?after=<last id>. See"
                " step6_history/README.md.",
            ),
        ],
    ),
    7: StepChecks(
        checkpoints=[
            Checkpoint(
                "Several workers share the room through Redis",
                (
                    "test_clients_on_two_workers_chat_through_redis",
                    "test_an_unknown_redis_layer_is_refused_with_the_choices",
                    "test_runserver_serves_the_login_page_and_warns_*",
                ),
                "CHANNEL_LAYERS on Redis from REDIS_URL (REDIS_LAYER chooses"
                " channels_redis' layer). See step7_scaling_out/README.md.",
            ),
            Checkpoint(
                "The chat survives a Redis restart and a burst, with nothing lost",
                (
                    "test_redis_restart_mid_conversation",
                    "test_burst_reaches_every_member",
                    "test_messages_dropped_after_the_last_event_are_caught_up",
                    "test_a_socket_that_drops_during_a_send_still_leaves_the_room",
                    "test_disconnect_leaves_every_group",
                ),
                "chat/heartbeat.py joins the groups again and catches up what the"
                " layer dropped. See step7_scaling_out/README.md.",
            ),
            Checkpoint(
                "manage.py notify reaches everyone connected",
                ("test_notify_command_*",),
                "chat/management/commands/notify.py sends through the channel layer"
                " to the notifications group. See step7_scaling_out/README.md.",
            ),
        ],
    ),
    8: StepChecks(
        checkpoints=[
            Checkpoint(
                "Everyone sees who is online, across processes",
                (
                    "test_presence_*",
                    "test_two_sockets_of_one_user_count_once",
                    "test_a_crowd_joining_at_once_shares_presence_broadcasts",
                    "test_each_user_sees_who_is_online",
                ),
                "A Presence row per socket, refreshed by the heartbeat, and a"
                ' coalesced "presence" broadcast. See step8_presence/README.md.',
            ),
        ],
    ),
    9: StepChecks(
        checkpoints=[
            Checkpoint(
                "Hostile input gets an error frame; the server serves everyone else",
                (
                    "test_malformed_frame_gets_an_error_and_changes_nothing",
                    "test_a_frame_over_the_size_limit_*",
                    "test_any_*",
                    "test_hostile_frames_over_a_real_server_*",
                    "test_a_frame_over_the_servers_limit_*",
                    "test_an_after_that_is_not_a_message_number_*",
                ),
                "Check a frame's size before parsing it, and answer anything that is"
                " not a valid message with a typed error frame. See"
                " step9_hardening/README.md.",
            ),
            Checkpoint(
                "Limits: message size, and a rate limit per user across workers",
                (
                    "test_text_over_4_kib_*",
                    "test_message_size_limit_is_configurable",
                    "test_more_than_10_messages_a_second_are_refused",
                    "test_the_rate_limit_*",
                    "test_with_redis_the_rate_limit_is_kept_in_redis",
                    "test_a_message_the_server_refuses_stays_in_the_box_*",
                    "test_a_refused_message_comes_back_*",
                ),
                "chat/limits.py counts each user's messages in Redis. See"
                " step9_hardening/README.md.",
            ),
            Checkpoint(
                "Logging out closes that session's sockets; catch-up is bounded",
                (
                    "test_logging_out_*",
                    "test_a_reconnect_far_behind_*",
                ),
                "chat/signals.py on user_logged_out; catch-up a page at a time. See"
                " step9_hardening/README.md.",
            ),
        ],
    ),
    10: StepChecks(
        checkpoints=[
            Checkpoint(
                "Production settings come from the environment; check --deploy is clean",
                (
                    "test_*settings*",
                    "test_*database*",
                    "test_check_deploy_*",
                    "test_secure_cookies_*",
                    "test_logging_in_over_plain_http_*",
                    "test_collectstatic_*",
                ),  # fmt: skip
                "mysite/settings.py reads DJANGO_*, DATABASE_URL and STATIC_ROOT. See"
                " step10_production/README.md.",
            ),
            Checkpoint(
                "nginx in front of two app servers, with PostgreSQL and Redis",
                (
                    "test_users_on_both_app_servers_*",
                    "test_static_files_come_from_nginx",
                    "test_the_origin_check_works_through_the_proxy",
                    "test_logging_in_through_the_proxy_*",
                    "test_a_browser_logs_in_and_chats_through_the_proxy",
                    "test_an_app_server_killed_*",
                ),  # fmt: skip
                "deploy/: the nginx configuration, app-server.sh and release.sh. See"
                " step10_production/README.md.",
            ),
        ],
    ),
}


# --- diagnoses: the one thing that is wrong ------------------------------------------


@dataclass(frozen=True)
class Diagnosis:
    message: str


def diagnose(probe: dict, output: str, step: int) -> list[Diagnosis]:
    """What is wrong, most fundamental first, from the probe of the learner's
    project (see diy.PROBE) and the tests' output."""
    found = []

    def say(message):
        found.append(Diagnosis(message))

    if probe.get("error"):
        say(
            f"Your project does not start: {probe['error']}. Fix that first"
            " (`make run` shows the whole error)."
        )
        return found
    apps = probe.get("installed_apps", [])
    if "daphne" not in apps:
        say(
            'INSTALLED_APPS does not list "daphne", so `manage.py runserver` is'
            " Django's own WSGI server, which cannot speak WebSocket: every /ws/"
            ' address gets a 404. Put "daphne" first in INSTALLED_APPS'
            ' (step1_setup/README.md, "How it works").'
        )
    elif "django.contrib.staticfiles" in apps and apps.index("daphne") > apps.index(
        "django.contrib.staticfiles"
    ):
        say(
            '"daphne" comes after "django.contrib.staticfiles" in INSTALLED_APPS, whose'
            " runserver then wins. Move it to the top (step1_setup/README.md)."
        )
    if not probe.get("asgi_application"):
        say(
            'mysite/settings.py has no ASGI_APPLICATION = "mysite.asgi.application":'
            " Daphne's runserver does not know what to serve (step1_setup/README.md)."
        )
    if step >= 2 and "websocket" not in probe.get("protocols", ["websocket"]):
        say(
            'mysite/asgi.py routes only "http": add a "websocket" entry to'
            ' ProtocolTypeRouter (step2_sync_chat/README.md, "How it works").'
        )
    if step >= 2 and probe.get("consumer_source") is not None:
        source = probe["consumer_source"]
        if "group_add" not in source:
            say(
                "chat/consumers.py never joins the room's group: without"
                " channel_layer.group_add(...) in connect(), a message sent to the"
                " group reaches nobody, not even its sender"
                ' (step2_sync_chat/README.md, "How it works").'
            )
    if "can't be used in 'await' expression" in output:
        say(
            "A consumer is routed without .as_asgi(): in chat/routing.py write"
            " consumers.ChatConsumer.as_asgi() (step2_sync_chat/README.md)."
        )
    if "SynchronousOnlyOperation" in output:
        say(
            "The asynchronous consumer calls the Django ORM directly, which may block"
            " the event loop, so Django refuses: wrap the database code with"
            " database_sync_to_async (notes/sync-vs-async.md)."
        )
    never_awaited = re.search(r"coroutine '([\w.]+)' was never awaited", output)
    if never_awaited:
        say(
            f"An await is missing: {never_awaited.group(1)}() was called but not"
            " awaited, so it did nothing. In an async consumer, write"
            f" `await ...{never_awaited.group(1).rsplit('.', 1)[-1]}(...)`"
            " (step3_async_chat/README.md)."
        )
    if "You cannot use AsyncToSync in the same thread as an async event loop" in output:
        say(
            "async_to_sync is called from async code: in an async consumer, await the"
            " channel layer's coroutines directly (step3_async_chat/README.md)."
        )
    if "AppRegistryNotReady" in output:
        say(
            "mysite/asgi.py imports the routing (and so the models) before"
            " get_asgi_application() has set Django up: call it first"
            " (step2_sync_chat/README.md)."
        )
    redis_down = re.search(r"Error 111 connecting to ([\d.]+):(\d+)", output)
    if redis_down:
        say(
            f"Your settings use Redis at {redis_down.group(1)}:{redis_down.group(2)},"
            " and nothing answers there: start one (`make redis`), or use the"
            " in-memory layer (step2_sync_chat/README.md, Troubleshooting)."
        )
    return found


def consumer_is_asynchronous(probe: dict) -> str | None:
    """None if chat/consumers.py's ChatConsumer is asynchronous; else why not."""
    bases = probe.get("consumer_bases", [])
    if not bases:
        return "chat/consumers.py has no ChatConsumer."
    if "SyncConsumer" in bases or "AsyncConsumer" not in bases:
        return (
            f"ChatConsumer is a {bases[1]} (synchronous): lesson 3 rewrites it as an"
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
