"""The ERROR-log guard of tests/conftest.py, run on small inner test files (pytester)."""

from __future__ import annotations

from pathlib import Path

import pytest

# The inner tests run in this process, so their record reaches this test's guard too.
pytestmark = pytest.mark.allow_errors(r"^supervisor crashed: boom$", logger="massive_rt.pool")

CONFTEST = (Path(__file__).parent / "conftest.py").read_text()

LOGS_AN_ERROR = """
import logging, threading
import pytest

def log_from_a_thread():
    thread = threading.Thread(target=lambda: logging.getLogger("massive_rt.pool").error("supervisor crashed: boom"),
                              name="not-a-library-thread")
    thread.start()
    thread.join()

{marker}
def test_it():
    log_from_a_thread()
"""


def run(pytester: pytest.Pytester, marker: str = "") -> pytest.RunResult:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_inner=LOGS_AN_ERROR.format(marker=marker))
    return pytester.runpytest_inprocess("-p", "no:randomly", "-p", "no:cacheprovider")


@pytest.mark.timeout(120)
def test_an_unexpected_error_record_fails_the_test(pytester: pytest.Pytester) -> None:
    result = run(pytester)
    result.assert_outcomes(passed=1, errors=1)  # the test body passed; the guard failed it at teardown
    result.stdout.fnmatch_lines([
        "*massive_rt logged 1 unexpected ERROR/CRITICAL record(s)*",
        "*ERROR massive_rt.pool [[]not-a-library-thread[]]: supervisor crashed: boom*",
    ])  # fmt: skip


@pytest.mark.timeout(120)
def test_an_allowed_error_record_passes(pytester: pytest.Pytester) -> None:
    run(pytester, marker='@pytest.mark.allow_errors(r"supervisor crashed", logger="massive_rt.pool")').assert_outcomes(
        passed=1
    )


@pytest.mark.timeout(120)
def test_an_allowance_for_another_logger_or_message_does_not_cover_it(pytester: pytest.Pytester) -> None:
    other_logger = run(pytester, marker='@pytest.mark.allow_errors(r"supervisor crashed", logger="massive_rt.adapter")')
    other_logger.assert_outcomes(passed=1, errors=1)


@pytest.mark.timeout(120)
def test_a_malformed_allowance_is_an_error(pytester: pytest.Pytester) -> None:
    result = run(pytester, marker='@pytest.mark.allow_errors(r"supervisor crashed")')  # no logger
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*usage: @pytest.mark.allow_errors*"])
