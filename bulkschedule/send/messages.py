"""Every text a run or a preview gives the operator about a row, as pure functions.

The report is the operator's only way to know what to do next, so each message says what happened
and what to do. They live here, apart from the scheduling, so that the wording can be read (and
reviewed) in one place and the runner reads as logic. Journal notes (the ``message`` kept with a
row in the journal) are here too: a later run quotes them.
"""

from __future__ import annotations

UNKNOWN_NEXT_RUN = "the next run will check (by listing the module's sessions) before sending it"

#: The halt reason of a stop signal (also the ``stopped because`` a caller may show).
STOP_REQUESTED = "stop requested"

#: What a retried failure was, for `retries_exhausted` (``"<what> 5 times; last: ..."``).
SERVER_ERROR = "Zoho answered with a server error"
NOT_REACHED = "Could not reach Zoho"

#: The journal note of a row found by listing.
FOUND_BY_LISTING = "found by listing"
#: An update Zoho confirmed.
UPDATED = "updated"


# -- halting ---------------------------------------------------------------------------------------


def zoho_answered(answer: str) -> str:
    """Why a fatal answer stopped the run."""
    return f"Zoho answered: {answer}"


def halted_unresolved() -> str:
    return f"May have been created (an earlier request got no reply); {UNKNOWN_NEXT_RUN}."


def halted_by_fatal(fatal: str, last_error: str) -> str:
    return f"Not sent: the run stopped because Zoho answered: {fatal}{_last(last_error)}"


def halted_before_sending(last_error: str) -> str:
    return f"Not sent: the run was stopped before this row was sent{_last(last_error)}."


def _last(last_error: str) -> str:
    return f" (last answer for this row: {last_error})" if last_error else ""


def stopped_while_sending() -> str:
    return (
        "The run stopped while this row was being sent; it may have been created; "
        f"{UNKNOWN_NEXT_RUN}."
    )


def unexpected_unsent(exc: BaseException) -> str:
    return f"Not sent: {exc!r}"


def unexpected_maybe_sent(exc: BaseException) -> str:
    return f"Unexpected error ({exc!r}); it may have been created; {UNKNOWN_NEXT_RUN}."


# -- answers to a create call ----------------------------------------------------------------------


def possible_duplicate(session_id: str, stored: str) -> str:
    """The created row's message: empty, unless the journal already held another session."""
    if stored == session_id:
        return ""
    return f"Possible duplicate: this identity was already created as {stored}."


def no_reply_note(answer: str) -> str:
    return f"no reply: {answer}"


def retries_exhausted(what: str, tries: int, answer: str) -> str:
    return f"{what} {tries} times; last: {answer}"


def unclassified(answer: str) -> str:
    return f"Unclassified answer: {answer}"


def locked_out_note(answer: str) -> str:
    return f"locked out: {answer}"


def refused_after_full_lock(answer: str) -> str:
    return f"Refused again after waiting out a full lock period: {answer}"


def no_reply_not_created(tries: int, last_error: str) -> str:
    return f"No reply to {tries} attempts (last: {last_error}); listing shows it was not created."


# -- the journal said no (claim) -------------------------------------------------------------------


def already_created(session_id: str | None) -> str:
    return f"Already created (session {session_id}); not sent again."


def created_differently(session_id: str | None) -> str:
    return (
        f"Already created as session {session_id} with different details; "
        "not sent again. Edit that session in Zoho, or give this row a new key."
    )


def busy_too_long(claim_message: str, busy_wait: float) -> str:
    return (
        f"Not sent by this run: {claim_message} for over "
        f"{busy_wait:.0f} s. That run may still create it; check its "
        "results, or run again later (the journal will know)."
    )


# -- reconciliation (listing the module's sessions) ------------------------------------------------


def found_own() -> str:
    return "Created (the reply was lost; found by listing)."


def found_existing(stale_note: str) -> str:
    return f"Already created (found by listing; {stale_note}); not sent again."


def listing_refused_after_full_lock(answer: str) -> str:
    return (
        "May have been created; listing the module's sessions was refused again "
        f"after a full lock period ({answer}); {UNKNOWN_NEXT_RUN}."
    )


def not_yet_checked_note(answer: str) -> str:
    return f"not yet checked: {answer}"


def could_not_check(answer: str) -> str:
    return f"May have been created; could not check ({answer}); {UNKNOWN_NEXT_RUN}."


def listing_failed(answer: str) -> str:
    return (
        "May have been created; listing the module's sessions to check failed "
        f"({answer}); {UNKNOWN_NEXT_RUN}."
    )


def listing_failed_times(times: int, answer: str) -> str:
    return (
        "May have been created; listing the module's sessions to check failed "
        f"{times} times (last: {answer}); {UNKNOWN_NEXT_RUN}."
    )


def listing_again_note(answer: str, delay: float) -> str:
    return f"not yet checked: listing failed ({answer}); listing again in {delay:.1f} s"


def listing_retry_reason(answer: str) -> str:
    return f"listing to check failed: {answer}"


def hold_lost(journal_state: str) -> str:
    """The journal stopped holding a row for this run while it waited to list again."""
    return (
        "May have been created; while this run waited to list the module's sessions "
        f"again, the journal stopped holding it for this run (it now says: {journal_state}); "
        "not sent again. Run again later: the next run decides from the journal."
    )


# -- preview (dry run) -----------------------------------------------------------------------------


def preview_same_session(first: str) -> str:
    """``first``: the earlier session (``row 3``, or ``row 3 (12-01-2027)``)."""
    return f"Same session as {first}; sent once."


def preview_same_identity(first: str) -> str:
    return (
        f"Same identity as {first} with different details; only {first} would be sent."
    )


def preview_exists(session_id: str | None) -> str:
    return f"Already created (session {session_id}); would not be sent."


def preview_changed(session_id: str | None) -> str:
    return f"Already created as session {session_id} with different details; would not be sent."


def preview_busy(run_id: int | None) -> str:
    return f"Being sent right now by run #{run_id}; a new run would wait for it."


def preview_maybe_created() -> str:
    return (
        "An earlier run may have created it (no confirmed reply); the run would list the "
        "module's sessions first and send it only if it is not there."
    )


def preview_last_time(message: str) -> str:
    note = f" Last time: {message}" if message else ""
    return note.strip()


def update_unconfirmed() -> str:
    return ("The run stopped while this row's update was being sent; it may or may not have "
            "landed, and the next run sends it again (an update may be sent twice).")
