"""What every ``massive-rt`` command shares: stderr and stdout, logging, signals, exit codes, errors.

* :class:`Console` is everything the CLI writes to stderr, and the live status line when stderr is
  a terminal; :class:`ConsoleHandler` routes the library's log records through it
  (:func:`package_logging` installs a handler for the duration of a command).
* :class:`Stop` is the main thread's wake-up, set by SIGINT/SIGTERM (:meth:`Stop.on_signals`) or by
  another thread; :func:`wait` blocks on it. :func:`handling_signals` installs SIGINT and SIGTERM
  handlers on the main thread and restores the previous ones.
* Exit codes (docs/cli.md): :data:`EXIT_OK` 0 done (including SIGTERM and a closed pipe),
  :data:`EXIT_FAILURE` 1 runtime failure (refused key, port in use ...), :data:`EXIT_USAGE` 2 bad
  arguments (argparse's own errors, :class:`UsageError`, :class:`~massive_rt.ConfigurationError`),
  :data:`EXIT_INTERRUPTED` 130 stopped by Ctrl-C (SIGINT), after the same clean stop as SIGTERM
  (:func:`exit_code`).
* :func:`failure_line` is the one line a command prints for a connection's final failure (a
  refused key names the options to check, never the key); :class:`FailureEcho` keeps the
  library's own log lines about a failure the command reports itself off stderr unless ``-v``.
* :class:`CommandFailure` (exit 1) and :class:`UsageError` (exit 2) are what a command raises to
  end on one ``massive-rt COMMAND: error: ...`` line; :func:`error_exit` turns those, the
  library's errors and an ``OSError`` (a file that cannot be opened, a port in use) into that
  line and the exit code, in one place for every command.
* :func:`positive` and :func:`port` are the argument types the commands share;
  :func:`add_channel_options` and :func:`channels_from` the channels of ``stream``, ``status`` and
  ``record`` (``--validate-channels``, default ``$MASSIVE_VALIDATE_CHANNELS`` or ``strict``).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import selectors
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any, TextIO

from ..config import ENV_VALIDATE_CHANNELS
from ..enums import Market
from ..errors import AuthenticationError, ConfigurationError, MassiveRTError
from ..protocol import VALIDATE_MODES, check_validate_mode, parse_channels

__all__ = [
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "PROG",
    "AddParser",
    "add_channel_options",
    "channels_from",
    "CommandFailure",
    "Console",
    "ConsoleHandler",
    "FailureEcho",
    "Stop",
    "UsageError",
    "error_exit",
    "exit_code",
    "failure_line",
    "handling_signals",
    "log_level",
    "one_line",
    "package_logging",
    "port",
    "positive",
    "silence_stdout",
    "wait",
    "write_stderr",
]

logger = logging.getLogger(__name__)

PROG = "massive-rt"
EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
#: Ctrl-C (SIGINT): 128 + the signal's number, the shell's convention.
EXIT_INTERRUPTED = 128 + signal.SIGINT

#: ``add_parser`` of the ``massive-rt`` subcommands: each command module registers its subparser with it.
AddParser = Callable[..., argparse.ArgumentParser]

_REPEAT_SIGNAL = 0.5  # seconds: a second SIGINT/SIGTERM sooner than this is the same request


class UsageError(Exception):
    """A bad combination of arguments argparse cannot catch: reported on one line, exit 2."""


class CommandFailure(Exception):
    """A runtime failure a command reports on one line, exit 1 (a missing extra, a port in use)."""


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line."""
    if isinstance(exc, OSError) and exc.strerror:  # not "[Errno 2] No such file or directory: 'x'"
        where = exc.filename if exc.filename is not None else ""
        return " ".join(f"{exc.strerror}: {where}".split()).rstrip(":") if where else exc.strerror
    return " ".join(str(exc).split())


def error_exit(command: str, exc: BaseException) -> tuple[str, int] | None:
    """The one line (``massive-rt COMMAND: error: ...``) and the exit code that end ``command`` on
    ``exc``; None for an exception that is a bug (its traceback is worth more than a line).

    Bad arguments (:class:`UsageError`, :class:`~massive_rt.ConfigurationError`) exit 2; runtime
    failures (:class:`CommandFailure`, the library's other errors, an ``OSError`` such as a file
    that cannot be opened or a port in use) exit 1.
    """
    if isinstance(exc, (UsageError, ConfigurationError)):
        code = EXIT_USAGE
    elif isinstance(exc, (CommandFailure, MassiveRTError, OSError)):
        code = EXIT_FAILURE
    else:
        return None
    return f"{PROG} {command}: error: {one_line(exc)}", code


def failure_line(error: BaseException) -> str:
    """The one line (without the ``massive-rt: error:`` prefix) that reports a connection's final
    failure: for a refused key, what to check (never the key itself)."""
    if isinstance(error, AuthenticationError):
        return ("authentication failed: the server refused the API key; check --api-key or MASSIVE_API_KEY "
                "(-v shows the server's reply)")  # fmt: skip
    return one_line(error)


# ----------------------------------------------------------------------------------------- stderr


class Console:
    """Everything the CLI writes to stderr, and the live status line when stderr is a terminal.

    The status line sits on the terminal's last line; any other output first erases it and then
    redraws it below. When stdout is the same terminal, the printer writes its lines through
    :meth:`stdout_line` for the same reason. The lock is taken only in that terminal case and once
    per status refresh, never while blocking on anything but the terminal itself.
    """

    def __init__(self, err: TextIO, out: TextIO) -> None:
        self._err = err
        self._out = out
        self.live = _isatty(err)
        self.shared_terminal = self.live and _isatty(out)
        self._lock = threading.Lock()
        self._status = ""

    def message(self, text: str) -> None:
        """Write one line (or several) to stderr, keeping the status line below it."""
        with self._lock:
            self._write_err(f"\r\x1b[K{text}\n{self._status}" if self._status else text + "\n")

    def status(self, text: str) -> None:
        """Show ``text`` as the live status line (no-op unless stderr is a terminal)."""
        if not self.live:
            return
        with self._lock:
            self._status = text
            self._write_err("\r\x1b[K" + text)

    def clear_status(self) -> None:
        """Remove the status line (before the summary)."""
        with self._lock:
            if self._status:
                self._status = ""
                self._write_err("\r\x1b[K")

    def stdout_line(self, line: str) -> None:
        """Write an event line to the terminal shared with the status line (an adapter callback).

        Raises:
            BrokenPipeError: stdout is gone (the printer handles it).
        """
        with self._lock:
            self._out.write("\r\x1b[K" + line)
            self._out.flush()
            if self._status:
                self._write_err(self._status)

    def _write_err(self, text: str) -> None:
        try:
            self._err.write(text)
            self._err.flush()
        except (OSError, ValueError):  # stderr closed (e.g. `2>&1 | head`): nothing left to tell
            self.live = False
            self._status = ""


class FailureEcho(logging.Filter):
    """Drops the library's log lines about what the command reports itself: a connection's final
    failure, reported on one line (:func:`failure_line`): the connection's ``failed:`` ERROR, and
    for a refused key the server's ``auth_failed`` status before it. Installed only without ``-v``;
    every other record passes.

    Args:
        every_failure: the command reports every connection's final failure (``stream``, ``record``
            and ``status`` on one client). False (a pool, which replaces a failed connection, or a
            command that reports none): only a refused key, which every command reports.
        cuts: the command's summary says where a cut recording stopped and why a corrupt one
            did (``replay``): the replay's own warning and error about it are dropped too.
    """

    def __init__(self, every_failure: bool, cuts: bool = False) -> None:
        super().__init__()
        self._every_failure = every_failure
        self._cuts = cuts
        self._refused: set[str] = set()  # connections whose auth_failed was seen

    def filter(self, record: logging.LogRecord) -> bool:
        if self._cuts and (getattr(record, "recording_cut", None) is not None
                           or getattr(record, "replay_error", None) is not None):  # fmt: skip
            return False
        connection = getattr(record, "connection", None)
        if not isinstance(connection, str) or not record.name.startswith("massive_rt."):
            return True
        args = record.args
        if isinstance(args, tuple) and args and args[0] == "auth_failed" and "server status" in str(record.msg):
            self._refused.add(connection)
            return False
        if record.levelno >= logging.ERROR and str(record.msg).startswith(f"[{connection}] failed: "):
            if connection in self._refused:
                self._refused.discard(connection)
                return False
            return not self._every_failure
        return True


class ConsoleHandler(logging.Handler):
    """Routes the library's log records through the console, so they do not garble the status line."""

    def __init__(self, console: Console) -> None:
        super().__init__()
        self._console = console

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._console.message(self.format(record))
        except Exception:  # logging must never take the CLI down
            self.handleError(record)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def write_stderr(text: str) -> None:
    """One line to stderr, flushed: the console output of a command run without a :class:`Console`
    (``python -m massive_rt.relay``)."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def silence_stdout() -> None:
    """After a closed pipe, point stdout at /dev/null so the interpreter's final flush stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


# ---------------------------------------------------------------------------------------- logging


def log_level(verbose: int) -> int:
    """The ``massive_rt`` logger's level for ``-v`` given ``verbose`` times: WARNING, INFO, DEBUG."""
    return logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING


@contextlib.contextmanager
def package_logging(handler: logging.Handler, verbose: int, prefix: str) -> Iterator[None]:
    """Send the ``massive_rt`` logger's records to ``handler`` (lines ``<prefix>: LEVEL name: message``)
    at :func:`log_level` ``(verbose)``; remove and close it and restore the level afterwards."""
    handler.setFormatter(logging.Formatter(f"{prefix}: %(levelname)s %(name)s: %(message)s"))
    package_logger = logging.getLogger("massive_rt")
    package_logger.addHandler(handler)
    previous_level = package_logger.level
    package_logger.setLevel(log_level(verbose))
    try:
        yield
    finally:
        package_logger.removeHandler(handler)
        package_logger.setLevel(previous_level)
        with contextlib.suppress(Exception):
            handler.close()


# ---------------------------------------------------------------------------------------- signals


@contextlib.contextmanager
def handling_signals(handler: Callable[[int, FrameType | None], Any]) -> Iterator[bool]:
    """Let ``handler`` handle SIGINT and SIGTERM, then restore the previous handlers.

    Yields whether it did: only the main thread can handle signals, so elsewhere (e.g. ``main()``
    called from a thread) nothing is installed and it yields False.
    """
    if threading.current_thread() is not threading.main_thread():
        yield False
        return
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield True
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class Stop:
    """The main thread's wake-up: set by SIGINT/SIGTERM, or by the dispatcher (limit, closed pipe).

    Not a ``threading.Event``: ``Event.set()`` in a signal handler deadlocks if the signal lands
    while the main thread holds the Event's internal lock (inside ``Event.wait``). Here the handler
    only sets a flag; ``signal.set_wakeup_fd`` writes to a socket pair from C, and the main thread
    waits on that socket with ``selectors``. The dispatcher wakes it through the same socket.
    """

    def __init__(self) -> None:
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._flag = False
        self.signals = 0
        #: The first signal received (None: none), which decides the exit code (:func:`exit_code`).
        self.signum: int | None = None
        self._first_signal = 0.0

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        """Wake the main thread (any thread; lock-free)."""
        self._flag = True
        with contextlib.suppress(OSError):  # full buffer: a wake-up is pending anyway
            self._wake_w.send(b"\0")

    def wait(self, timeout: float | None) -> bool:
        """True once set; False when ``timeout`` passes first."""
        if not self._flag and self._selector.select(timeout):
            with contextlib.suppress(OSError):
                self._wake_r.recv(4096)
        return self._flag

    @contextlib.contextmanager
    def on_signals(self) -> Iterator[None]:
        """Let SIGINT and SIGTERM set this (a second one, while shutting down, exits at once —
        unless it comes within half a second of the first: ``timeout`` and service managers
        signal a process and then its group, and that is one request, not two)."""

        def handler(signum: int, _frame: FrameType | None) -> None:
            now = time.monotonic()
            if self.signals and now - self._first_signal >= _REPEAT_SIGNAL:
                os._exit(128 + signum)
            if not self.signals:
                self._first_signal = now
                self.signum = signum
            self.signals += 1
            self._flag = True  # the wakeup fd has already woken the selector

        with handling_signals(handler) as installed:
            if not installed:
                yield
                return
            previous_fd = signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)
            try:
                yield
            finally:
                signal.set_wakeup_fd(previous_fd)

    def close(self) -> None:
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()


def exit_code(code: int, signum: int | None) -> int:
    """``code``, unless the command ended normally because of SIGINT: then :data:`EXIT_INTERRUPTED`
    (130). SIGTERM (a service manager's stop) keeps 0."""
    return EXIT_INTERRUPTED if code == EXIT_OK and signum == signal.SIGINT else code


def wait(stop: Stop, deadline: float | None, tick: Callable[[], None] | None) -> None:
    """Block until ``stop`` is set or ``deadline`` passes, calling ``tick`` about once a second."""
    while not stop.is_set():
        timeout = 1.0 if tick is not None else None
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            timeout = remaining if timeout is None else min(timeout, remaining)
        if stop.wait(timeout):
            return
        if tick is not None:
            tick()


# ---------------------------------------------------------------------------------- argument types


def positive(kind: Callable[[str], float]) -> Callable[[str], Any]:
    """An argparse type: ``kind(text)``, which must be finite and > 0."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a valid number") from None
        if not (value > 0 and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
        return value

    parse.__name__ = kind.__name__
    return parse


def port(text: str) -> int:
    """An argparse type: a TCP port number, 0 to 65535 (0: any free port)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} must be between 0 and 65535")
    return value


def add_channel_options(parser: argparse.ArgumentParser) -> None:
    """Add ``CHANNEL...`` and ``--validate-channels`` to ``parser``."""
    parser.add_argument("channels", nargs="+", metavar="CHANNEL", help="e.g. T.AAPL, Q.MSFT, AM.* (quote the *)")
    parser.add_argument("--validate-channels", choices=VALIDATE_MODES, metavar="MODE",
                        help="a channel prefix massive_rt does not know: strict (refuse it), warn (subscribe "
                        f"and warn once) or off (subscribe); default ${ENV_VALIDATE_CHANNELS} or strict")  # fmt: skip


def channels_from(args: argparse.Namespace, market: Market) -> tuple[str, ...]:
    """The channels of ``args``, validated for ``market`` in the mode ``args.validate_channels``
    (set to the mode in force: the option, else ``$MASSIVE_VALIDATE_CHANNELS``, else ``strict``).

    Raises:
        ConfigurationError: a bad channel (the hint names ``--validate-channels``), or a bad mode
            in the environment variable.
    """
    if args.validate_channels is None:
        from_env = os.environ.get(ENV_VALIDATE_CHANNELS, "").strip()
        args.validate_channels = check_validate_mode(from_env, ENV_VALIDATE_CHANNELS) if from_env else "strict"
    try:
        return parse_channels(args.channels, market, args.validate_channels)
    except ConfigurationError as exc:
        # The library's hint names its option; the command's user has a flag instead.
        hint = "validate_channels='warn' subscribes it anyway"
        if hint not in exc.message:
            raise
        raise ConfigurationError(exc.message.replace(hint, "--validate-channels warn subscribes it anyway"),
                                 field=exc.field) from None  # fmt: skip
